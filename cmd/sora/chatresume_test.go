package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFinetuneResumeChatTemplate checks that a run on conversations is not
// resumed with another chat template or another --chat-var that changes
// the rendered text: the training data's digest covers the tokens and loss
// masks the template made, so the resume is refused as one on other data.
// The same flags resume (the run had finished, so nothing is trained).
func TestFinetuneResumeChatTemplate(t *testing.T) {
	dir, hf := t.TempDir(), storiesHF(t)
	const tmpl = "{{ bos_token }}{% for m in messages %}{{ m.role }}{{ sep if sep is defined else ': ' }}{{ m.content }}{{ eos_token if m.role == 'assistant' else '\n' }}{% endfor %}{% if add_generation_prompt %}assistant{{ sep if sep is defined else ': ' }}{% endif %}"
	if err := os.WriteFile(filepath.Join(hf, "chat_template.jinja"), []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.jinja")
	if err := os.WriteFile(other, []byte(strings.Replace(tmpl, "else '\n'", "else ' \n'", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for i := range 8 {
		rows = append(rows, map[string]any{"messages": []map[string]string{
			{"role": "user", "content": "Once upon a time"}, {"role": "assistant", "content": []string{"there was a dog.", "a cat sat."}[i%2]}}})
	}
	data := filepath.Join(dir, "chat.jsonl")
	writeJSONL(t, data, rows)
	out := filepath.Join(dir, "run")
	args := []string{"finetune", "--model", hf, "--data", data, "--steps", "2", "--batch", "4", "--method", "lora", "--out", out}
	if code, stdout, errOut := runCLI(t, args...); code != exitOK {
		t.Fatalf("first run: status %d\n%s\n%s", code, stdout, errOut)
	}
	for _, extra := range [][]string{{"--chat-template", other}, {"--chat-var", "sep=-> "}} {
		code, stdout, errOut := runCLI(t, append(append(args, "--resume"), extra...)...)
		if code == exitOK || !strings.Contains(errOut, "other data") {
			t.Errorf("--resume %v: status %d, stderr %q; want it refused as other data\n%s", extra, code, errOut, stdout)
		}
	}
	if code, stdout, errOut := runCLI(t, append(args, "--resume", "--chat-var", "unused=1")...); code != exitOK || !strings.Contains(stdout, "nothing left to train") {
		t.Errorf("--resume with a variable the template does not read: status %d\n%s\n%s", code, stdout, errOut)
	}
}

// TestFinetuneChatNoTemplate checks the error for conversations and a
// model folder without a chat template: it names the data file and the
// folder, and says to give --chat-template or to write other rows, not to
// leave out --chat, which finetune and eval do not have.
func TestFinetuneChatNoTemplate(t *testing.T) {
	dir, hf := t.TempDir(), storiesHF(t)
	data := filepath.Join(dir, "chat.jsonl")
	writeJSONL(t, data, []map[string]any{{"messages": []map[string]string{{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}}}})
	for _, args := range [][]string{
		{"finetune", "--model", hf, "--data", data, "--steps", "1", "--out", filepath.Join(dir, "run")},
		{"eval", "--model", hf, "--data", data, "--json", ""},
	} {
		code, _, errOut := runCLI(t, args...)
		if code != exitFailure || !strings.Contains(errOut, data) || !strings.Contains(errOut, "no chat template in "+hf) ||
			!strings.Contains(errOut, "--chat-template FILE") || strings.Contains(errOut, "--chat:") || strings.Contains(errOut, "leave out --chat") {
			t.Errorf("%s: status %d, stderr %q; want a failure naming the data and the folder, pointing to --chat-template", args[0], code, errOut)
		}
	}
}
