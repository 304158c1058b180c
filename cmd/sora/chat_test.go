package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
)

// TestGenerateChat runs "sora generate --chat" on stories260K converted to
// a Hugging Face folder with a chat template, and checks its reply against
// a generation run here from the template's text written out by hand: the
// template writes <s> first, so the tokens are the text's own, as
// transformers' apply_chat_template makes them (one BOS, first), and only
// the reply is printed. It also checks --chat-template and --chat-var, and the errors
// for a folder without a template and for --system without --chat.
func TestGenerateChat(t *testing.T) {
	dir := storiesHF(t)
	code, _, errOut := runCLI(t, "generate", "--model", dir, "--chat", "--prompt", "Once upon a time")
	if code != exitFailure || !strings.Contains(errOut, "no chat template") || !strings.Contains(errOut, "--chat-template") {
		t.Errorf("--chat on a folder without a template: status %d, stderr:\n%s\nwant %d, saying so and naming --chat-template", code, errOut, exitFailure)
	}
	if code, _, errOut := runCLI(t, "generate", "--model", dir, "--system", "Be brief."); code != exitUsage || !strings.Contains(errOut, "need --chat") {
		t.Errorf("--system without --chat: status %d, stderr:\n%s\nwant %d", code, errOut, exitUsage)
	}

	const folderTemplate = "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
	if err := os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte(folderTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.jinja")
	if err := os.WriteFile(other, []byte("{{ bos_token }}{{ messages[-1].content }}{% if not plain %}!{% endif %}"), 0o644); err != nil {
		t.Fatal(err)
	}

	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := loadWeights(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(t, testbackend.Open(t, "cpu"), w)
	const steps = 60
	for _, tc := range []struct {
		name string
		args []string
		text string // the template's text for them
	}{
		{"folder", []string{"--chat", "--system", "Be brief.", "--prompt", "Once upon a time"},
			"<s>system: Be brief.\nuser: Once upon a time\nassistant:"},
		{"file", []string{"--chat-template", other, "--prompt", "Once upon a time"}, "<s>Once upon a time!"},
		{"var", []string{"--chat-template", other, "--chat-var", "plain=true", "--prompt", "Once upon a time"}, "<s>Once upon a time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids := tok.Encode(tc.text, false, false)
			if ids[0] != tok.BOS() || strings.Count(tc.text, "<s>") != 1 || countID(ids, tok.BOS()) != 1 {
				t.Fatalf("%q encodes to %v: want one BOS, first", tc.text, ids)
			}
			want := greedyReply(t, m, tok, ids, steps)
			if strings.TrimSpace(want) == "" {
				t.Fatalf("the reference generated nothing after %q", tc.text)
			}
			args := append([]string{"generate", "--model", dir, "--steps", "60", "--temperature", "0"}, tc.args...)
			code, out, errOut := runCLI(t, args...)
			if code != exitOK {
				t.Fatalf("generate %v: status %d; stderr:\n%s", tc.args, code, errOut)
			}
			if out != want {
				t.Errorf("generate %v printed\n%q\nwant the reply to the template's text %q:\n%q", tc.args, out, tc.text, want)
			}
		})
	}
}

// greedyReply is what "sora generate --chat --temperature 0 --steps
// steps" prints after the prompt ids: the greedy continuation of ids,
// decoded, and a newline.
func greedyReply(t *testing.T, m *llama.Model, tok *tokenizer.Tokenizer, ids []int, steps int) string {
	t.Helper()
	gen, err := m.NewGenerator(steps)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	seq, err := gen.Generate(ids, llama.GenerateOptions{Steps: steps, Stop: stopTokens(tok)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok.DecodeAll(seq[len(ids):]) + "\n"
}

func countID(ids []int, id int) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}
