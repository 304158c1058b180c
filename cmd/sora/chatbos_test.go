package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/tokenizer"
)

// TestGenerateChatAsEval checks that "sora generate --chat" prompts the
// model with the tokens evaluation prompts a conversation row with
// (data.Set.EncodePrompts through the chat renderer finetune and eval
// use), for a template that writes BOS's text first and for one that
// writes none, with a tokenizer that adds BOS (stories260K's): the reply
// printed must be the greedy continuation of those tokens. Before,
// generate encoded the template's text without BOS, so that a template
// that writes none prompted the model without the BOS it was trained and
// evaluated with.
func TestGenerateChatAsEval(t *testing.T) {
	dir := storiesHF(t)
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tok.BOS() < 0 {
		t.Fatal("the converted tokenizer has no BOS")
	}
	w, err := loadWeights(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(t, testbackend.Open(t, "cpu"), w)
	const steps = 60
	for _, tc := range []struct{ name, template string }{
		{"bos", "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"},
		{"no-bos", "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte(tc.template), 0o644); err != nil {
				t.Fatal(err)
			}
			src := &chatSource{flags: &chatFlags{}, tokSrc: dir, addsBOS: true}
			r, err := src.renderer()
			if err != nil {
				t.Fatal(err)
			}
			set := &data.Set{Name: "row", Format: data.FormatMessages, Rows: []data.Row{{Line: 1, Messages: []data.Message{
				{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Once upon a time"}, {Role: "assistant", Content: "there was a dog."}}}}}
			prompts, _, err := set.EncodePrompts(tok, r, w.Config.MaxSeqLen)
			if err != nil {
				t.Fatal(err)
			}
			ids := prompts[0]
			if ids[0] != tok.BOS() || countID(ids, tok.BOS()) != 1 {
				t.Fatalf("evaluation's prompt %v: want one BOS, first", ids)
			}
			want := greedyReply(t, m, tok, ids, steps)
			if strings.TrimSpace(want) == "" {
				t.Fatal("the reference generated nothing")
			}
			code, out, errOut := runCLI(t, "generate", "--model", dir, "--steps", "60", "--temperature", "0",
				"--chat", "--system", "Be brief.", "--prompt", "Once upon a time")
			if code != exitOK {
				t.Fatalf("generate: status %d; stderr:\n%s", code, errOut)
			}
			if out != want {
				t.Errorf("generate --chat printed\n%q\nwant the reply to evaluation's prompt:\n%q", out, want)
			}
		})
	}
}
