package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/models/chat"
	"github.com/sora-go/sora/models/llama"
)

// TestBakeChatVars writes --chat-var values into a template as Jinja
// sets before it, the template after them unchanged; the template so
// written renders with no variables what the original renders with them
// (the chat package, like transformers and llama.cpp, trims the newline
// after a block), a leading newline of the template included. A list is
// left out, and noted.
func TestBakeChatVars(t *testing.T) {
	const tmpl = "\n{%- if enable_thinking is defined and not enable_thinking %}[no-think]{% endif %}" +
		"{% for m in messages %}{{ greeting }}{{ m['content'] }}{% if n == 2 %}two{% endif %}{{ r }}{% endfor %}"
	vars := map[string]any{"enable_thinking": false, "greeting": "say \"hi\"\\\n\t", "n": float64(2), "r": 0.25, "tools": []any{1.0}}
	got, notes := bakeChatVars(tmpl, vars)
	const sets = "{%- set enable_thinking = false %}\n{%- set greeting = \"say \\\"hi\\\"\\\\\\n\\t\" %}\n{%- set n = 2 %}\n{%- set r = 0.25 %}\n"
	if !strings.HasPrefix(got, sets) || strings.TrimPrefix(got, sets) != tmpl {
		t.Fatalf("baked template:\n%s\nwant the sets\n%s\nthen the template unchanged", got, sets)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "tools") {
		t.Errorf("notes %q; want one naming tools", notes)
	}
	delete(vars, "tools")
	msgs := []chat.Message{{Role: "user", Content: "a"}, {Role: "assistant", Content: "b"}}
	render := func(text string, vars map[string]any) string {
		tt, err := chat.Parse("test", text, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := tt.Render(msgs, chat.Options{Vars: vars})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	want := render(tmpl, vars)
	if !strings.Contains(want, "[no-think]") || !strings.Contains(want, "say \"hi\"") || !strings.Contains(want, "two") {
		t.Fatalf("the original renders %q; the test expects the variables to show", want)
	}
	if got := render(got, nil); got != want {
		t.Errorf("baked template renders %q; the original with the variables %q", got, want)
	}
	if _, notes := bakeChatVars("x", map[string]any{"not a name": true, "ctl": "a\x01"}); len(notes) != 2 {
		t.Errorf("notes %q; want a name that is no identifier and a control character refused", notes)
	}
}

// TestMergedConfig: merging an adapter that targets the output head of a
// tied model unties it; one that does not, or an untied base, keeps the
// base's configuration.
func TestMergedConfig(t *testing.T) {
	for _, c := range []struct {
		targets    string
		tied, want bool
	}{{`["lm_head"]`, true, false}, {`["q_proj", "lm_head"]`, true, false}, {`["q_proj"]`, true, true}, {`"all-linear"`, true, true}, {`["lm_head"]`, false, false}} {
		dir := t.TempDir()
		conf := `{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4, "target_modules": ` + c.targets + `}`
		if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := mergedConfig(llama.Config{TiedEmbeddings: c.tied}, dir); got.TiedEmbeddings != c.want {
			t.Errorf("targets %s, tied %v: merged tied %v, want %v", c.targets, c.tied, got.TiedEmbeddings, c.want)
		}
	}
}

// TestMergeGGUFChecksFirst: a padding token the tokenizer lacks is refused
// before the adapter is even read (its weights file is missing here, which
// the merge would report first).
func TestMergeGGUFChecksFirst(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	folder := filepath.Join(dir, "hf")
	if code, stdout, errOut := runCLI(t, "convert", "--model", model, "--tokenizer", tok, "--out", folder); code != exitOK {
		t.Fatalf("convert to a folder: status %d\n%s\n%s", code, stdout, errOut)
	}
	cfgPath := filepath.Join(folder, "tokenizer_config.json")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var tc map[string]any
	if err := json.Unmarshal(b, &tc); err != nil {
		t.Fatal(err)
	}
	tc["pad_token"] = "<no such token>"
	if b, err = json.Marshal(tc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ad := filepath.Join(dir, "adapter")
	if err := os.MkdirAll(ad, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := `{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4, "target_modules": ["lm_head"]}`
	if err := os.WriteFile(filepath.Join(ad, "adapter_config.json"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "m.gguf")
	code, stdout, errOut := runCLI(t, "merge", "--backend", "cpu", "--model", folder, "--adapter", ad, "--out", out)
	if code != exitFailure || !strings.Contains(errOut, "padding token") {
		t.Errorf("merge with a padding token the tokenizer lacks: status %d, stderr %q; want %d and the padding token refused before the merge\n%s", code, errOut, exitFailure, stdout)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a file was written")
	}
}

// TestConvertGGUFTemporariesAndName: the temporaries an interrupted
// export to the same file left are removed, saying so, and no others; the
// file is named after the model (general.name).
func TestConvertGGUFTemporariesAndName(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	stale, other := filepath.Join(dir, ".m.gguf.tmp-12345"), filepath.Join(dir, ".n.gguf.tmp-1")
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("half a model"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, errOut := runCLI(t, "convert", "--model", model, "--tokenizer", tok, "--out", filepath.Join(dir, "m.gguf"))
	if code != exitOK {
		t.Fatalf("convert: status %d\n%s\n%s", code, stdout, errOut)
	}
	if _, err := os.Stat(stale); err == nil || !strings.Contains(errOut, "removed "+stale) {
		t.Errorf("the stale temporary is still there, or its removal unsaid: %q", errOut)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another file's temporary was removed: %v", err)
	}
	f := openGGUF(t, filepath.Join(dir, "m.gguf"))
	want := strings.TrimSuffix(filepath.Base(model), ".bin")
	if v, _ := f.Get("general.name"); func() string { s, _ := v.Str(); return s }() != want {
		t.Errorf("general.name %v, want %q", v, want)
	}
}
