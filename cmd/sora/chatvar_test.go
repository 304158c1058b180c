package main

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/sora-go/sora/models/chat"
)

// TestChatVarNumbers checks that --chat-var numbers reach the template as
// Python's json gives them to transformers: an integer stays an integer
// ({{ n + 1 }} is 3, not 3.0), in a template rendered from the flags, from
// chat_template_vars.json, and in the GGUF export's baked literals.
func TestChatVarNumbers(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var c chatFlags
	c.add(fs)
	if err := fs.Parse([]string{"--chat", "--chat-var", "n=2", "--chat-var", "f=2.5", "--chat-var", "s=hi", "--chat-var", "b=true", "--chat-var", "x=1 2"}); err != nil {
		t.Fatal(err)
	}
	tmpl, err := chat.Parse("t.jinja", "{{ n + 1 }} {{ f }} {{ s }} {{ b }} {{ x }}", nil)
	if err != nil {
		t.Fatal(err)
	}
	const want = "3 2.5 hi True 1 2"
	render := func(vars map[string]any) string {
		t.Helper()
		out, err := tmpl.Render(nil, chat.Options{Vars: vars})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := render(c.vars); got != want {
		t.Errorf("from the flags: %q, want %q", got, want)
	}
	path := filepath.Join(t.TempDir(), adapterVarsFile)
	if err := os.WriteFile(path, []byte(`{"n": 2, "f": 2.5, "s": "hi", "b": true, "x": "1 2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	vars, err := readChatVars(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := render(vars); got != want {
		t.Errorf("from %s: %q, want %q", adapterVarsFile, got, want)
	}
	for name, lit := range map[string]string{"n": "2", "f": "2.5", "s": `"hi"`, "b": "true"} {
		if got, ok := jinjaLiteral(vars[name]); !ok || got != lit {
			t.Errorf("jinjaLiteral(%s = %v) = %q, %v; want %q", name, vars[name], got, ok, lit)
		}
	}
}
