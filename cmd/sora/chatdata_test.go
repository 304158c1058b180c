package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chatDataTemplate writes each turn as "role: content", ends the
// assistant's with EOS and the others with a newline, and opens an
// assistant turn for generation: so a one-turn conversation is the
// prompt/completion row {"prompt": "user: P\nassistant: ", "completion":
// C} with BOS before it and EOS after it.
const chatDataTemplate = "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token if m.role == 'assistant' else '\n' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"

// writeJSONL writes rows as JSON Lines.
func writeJSONL(t *testing.T, path string, rows []map[string]any) {
	t.Helper()
	var b bytes.Buffer
	for _, r := range rows {
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFinetuneDataFormats trains stories260K (as a Hugging Face folder
// with a chat template) on the same BoolQ-like rows written in three
// formats that must mean the same tokens and the same loss: one-turn
// conversations (messages, rendered by the template, trained on the
// assistant's turn), prompt/completion rows holding the template's text,
// and, with the prompt left empty, text rows. The adapters must be the
// same bytes, and the evaluation of conversations the same predictions as
// that of prompt/completion rows. A multi-turn conversation, which needs a
// loss mask of two spans, trains and is scored too.
func TestFinetuneDataFormats(t *testing.T) {
	dir, hf := t.TempDir(), storiesHF(t)
	var chat, pc, text, multi []map[string]any
	for i := range 12 {
		ans := []string{"true", "false"}[i%3%2]
		q := fmt.Sprintf("is %d a small number? Answer true or false.", i)
		c := "the correct answer is " + ans
		chat = append(chat, map[string]any{"messages": []map[string]string{{"role": "user", "content": q}, {"role": "assistant", "content": c}}, "answer": ans})
		pc = append(pc, map[string]any{"prompt": "user: " + q + "\nassistant: ", "completion": c, "answer": ans})
		text = append(text, map[string]any{"prompt": "", "completion": "user: " + q + "\nassistant: " + c})
		multi = append(multi, map[string]any{"messages": []map[string]string{
			{"role": "user", "content": q}, {"role": "assistant", "content": "Let me think."},
			{"role": "user", "content": "And the answer?"}, {"role": "assistant", "content": c}}, "answer": ans})
	}
	files := map[string][]map[string]any{"chat": chat, "pc": pc, "text": text, "multi": multi}
	for name, rows := range files {
		writeJSONL(t, filepath.Join(dir, name+".jsonl"), rows)
	}
	textRows := make([]map[string]any, len(text))
	for i, r := range text {
		textRows[i] = map[string]any{"text": r["completion"]}
	}
	writeJSONL(t, filepath.Join(dir, "text-only.jsonl"), textRows)

	finetune := func(name, data string, extra ...string) (stdout string) {
		t.Helper()
		args := append([]string{"finetune", "--model", hf, "--data", filepath.Join(dir, data), "--steps", "2", "--batch", "4",
			"--method", "sora", "--out", filepath.Join(dir, "run-"+name)}, extra...)
		code, out, errOut := runCLI(t, args...)
		if code != exitOK {
			t.Fatalf("finetune on %s: status %d; stderr:\n%s", data, code, errOut)
		}
		return out
	}
	adapter := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, "run-"+name, "adapter", "adapter_model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// Without a template, conversations are refused, naming the flag.
	code, _, errOut := runCLI(t, "finetune", "--model", hf, "--data", filepath.Join(dir, "chat.jsonl"), "--steps", "1", "--out", filepath.Join(dir, "run-none"))
	if code == exitOK || !strings.Contains(errOut, "conversations") || !strings.Contains(errOut, "--chat-template") {
		t.Fatalf("conversations without a chat template: status %d, stderr:\n%s\nwant a failure naming --chat-template", code, errOut)
	}
	tmpl := filepath.Join(dir, "chat.jinja")
	if err := os.WriteFile(tmpl, []byte(chatDataTemplate), 0o644); err != nil {
		t.Fatal(err)
	}

	outChat := finetune("chat", "chat.jsonl", "--chat-template", tmpl)
	finetune("pc", "pc.jsonl")
	if !strings.Contains(outChat, "(messages rows)") {
		t.Errorf("finetune on conversations does not name their format:\n%s", outChat)
	}
	if !bytes.Equal(adapter("chat"), adapter("pc")) {
		t.Error("the adapter trained on one-turn conversations differs from the one trained on the same text as prompt/completion rows")
	}
	// The template goes with the adapter (the model's folder has none), so
	// eval and generate with the adapter render as training did; only the
	// adapter trained on conversations carries one.
	chatAdapter := filepath.Join(dir, "run-chat", "adapter")
	if b, err := os.ReadFile(filepath.Join(chatAdapter, adapterTemplateFile)); err != nil || string(b) != chatDataTemplate {
		t.Errorf("the adapter trained on conversations holds %q (%v); want the template it was trained with", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "run-pc", "adapter", adapterTemplateFile)); err == nil {
		t.Error("the adapter trained on prompt/completion rows holds a chat template")
	}
	if code, out, errOut := runCLI(t, "eval", "--model", hf, "--adapter", chatAdapter, "--data", filepath.Join(dir, "chat.jsonl"), "--json", "", "--show", "0"); code != exitOK {
		t.Errorf("eval of conversations with the adapter's template: status %d; stderr:\n%s\n%s", code, errOut, out)
	}
	if code, out, errOut := runCLI(t, "generate", "--model", hf, "--adapter", chatAdapter, "--chat", "--prompt", "is 3 a small number?", "--steps", "40", "--temperature", "0"); code != exitOK || strings.TrimSpace(out) == "" {
		t.Errorf("generate --chat with the adapter's template: status %d, output %q; stderr:\n%s", code, out, errOut)
	}
	// So does a merge of the adapter: the merged folder is a model that
	// renders as the adapter was trained.
	merged := filepath.Join(dir, "merged-chat")
	if code, out, errOut := runCLI(t, "merge", "--model", hf, "--adapter", chatAdapter, "--out", merged); code != exitOK {
		t.Fatalf("merge: status %d; stderr:\n%s\n%s", code, errOut, out)
	}
	if b, err := os.ReadFile(filepath.Join(merged, "chat_template.jinja")); err != nil || string(b) != chatDataTemplate {
		t.Errorf("the merged model folder holds the template %q (%v); want the adapter's", b, err)
	}
	if code, out, errOut := runCLI(t, "eval", "--model", merged, "--data", filepath.Join(dir, "chat.jsonl"), "--json", "", "--show", "0"); code != exitOK {
		t.Errorf("eval of conversations with the merged model: status %d; stderr:\n%s\n%s", code, errOut, out)
	}
	// Full fine-tuning writes a whole model folder, which "sora eval" and
	// "sora generate" take as --model: the template it was trained with
	// goes into that folder, in place of the base's (here none).
	finetune("full", "chat.jsonl", "--chat-template", tmpl, "--method", "full")
	fullModel := filepath.Join(dir, "run-full", "adapter", "model")
	if b, err := os.ReadFile(filepath.Join(fullModel, "chat_template.jinja")); err != nil || string(b) != chatDataTemplate {
		t.Errorf("the fully fine-tuned model folder holds the template %q (%v); want the one it was trained with", b, err)
	}
	if code, out, errOut := runCLI(t, "eval", "--model", fullModel, "--data", filepath.Join(dir, "chat.jsonl"), "--json", "", "--show", "0"); code != exitOK {
		t.Errorf("eval of conversations with the fully fine-tuned model: status %d; stderr:\n%s\n%s", code, errOut, out)
	}
	finetune("text", "text-only.jsonl")
	finetune("pc-text", "text.jsonl")
	if !bytes.Equal(adapter("text"), adapter("pc-text")) {
		t.Error("the adapter trained on text rows differs from the one trained on prompt/completion rows with an empty prompt")
	}

	// The template may also come from the model's folder.
	if err := os.WriteFile(filepath.Join(hf, "chat_template.jinja"), []byte(chatDataTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	outMulti := finetune("multi", "multi.jsonl", "--eval-data", filepath.Join(dir, "multi.jsonl"))
	if !strings.Contains(outMulti, "answer accuracy") {
		t.Errorf("finetune with conversations as --eval-data scored no answers:\n%s", outMulti)
	}

	// Evaluating the conversations generates from the same prompts as the
	// prompt/completion rows: the same predictions.
	preds := map[string][]prediction{}
	for _, name := range []string{"chat", "pc"} {
		js := filepath.Join(dir, "eval-"+name+".json")
		code, out, errOut := runCLI(t, "eval", "--model", hf, "--adapter", filepath.Join(dir, "run-pc", "adapter"),
			"--data", filepath.Join(dir, name+".jsonl"), "--json", js, "--show", "0")
		if code != exitOK {
			t.Fatalf("eval on %s: status %d; stderr:\n%s\n%s", name, code, errOut, out)
		}
		var rep evalReport
		b, err := os.ReadFile(js)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.AnswerRows != len(chat) {
			t.Fatalf("eval on %s scored %d rows, want %d", name, rep.AnswerRows, len(chat))
		}
		preds[name] = rep.Predictions
	}
	for i := range preds["chat"] {
		if c, p := preds["chat"][i], preds["pc"][i]; c.Output != p.Output || c.Pred != p.Pred {
			t.Errorf("row %d: conversation generated %q, prompt/completion row %q", i+1, c.Output, p.Output)
		}
	}
}

// TestFinetuneChatNotPrefixStable: conversations of several assistant
// turns with a template that renders earlier turns otherwise once later
// ones follow (here: marks the last message, as Qwen3's drops earlier
// thinking) are refused with the way out; the same conversations with the
// assistant's turns marked by {% generation %} blocks train.
func TestFinetuneChatNotPrefixStable(t *testing.T) {
	dir, hf := t.TempDir(), storiesHF(t)
	rows := []map[string]any{}
	for i := range 4 {
		rows = append(rows, map[string]any{"messages": []map[string]string{
			{"role": "user", "content": fmt.Sprintf("is %d small?", i)}, {"role": "assistant", "content": "maybe"},
			{"role": "user", "content": "and?"}, {"role": "assistant", "content": "yes"}}})
	}
	data := filepath.Join(dir, "multi.jsonl")
	writeJSONL(t, data, rows)
	unstable := filepath.Join(dir, "unstable.jinja")
	marked := filepath.Join(dir, "marked.jinja")
	const body = "{% for m in messages %}{{ m.role }}: {% if loop.last %}(last) {% endif %}"
	if err := os.WriteFile(unstable, []byte(body+"{{ m.content }}{{ eos_token if m.role == 'assistant' else '\n' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marked, []byte(body+"{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{{ eos_token }}{% endgeneration %}{% else %}{{ m.content }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "finetune", "--model", hf, "--data", data, "--chat-template", unstable, "--steps", "1", "--batch", "2", "--out", filepath.Join(dir, "r1"))
	if code == exitOK || !strings.Contains(errOut, "not prefix-stable") || !strings.Contains(errOut, "{% generation %}") {
		t.Errorf("a template that is not prefix-stable: status %d, stderr:\n%s\nwant a failure naming {%% generation %%} blocks", code, errOut)
	}
	if code, _, errOut := runCLI(t, "finetune", "--model", hf, "--data", data, "--chat-template", marked, "--steps", "1", "--batch", "2", "--out", filepath.Join(dir, "r2")); code != exitOK {
		t.Errorf("the same conversations with {%% generation %%} blocks: status %d, stderr:\n%s", code, errOut)
	}
}

// TestFinetuneSavesChatVars: the --chat-var variables a run rendered its
// conversations with are saved beside the adapter's template, and
// generate with the adapter renders with them unless --chat-var says
// otherwise.
func TestFinetuneSavesChatVars(t *testing.T) {
	dir, hf := t.TempDir(), storiesHF(t)
	rows := []map[string]any{}
	for i := range 4 {
		rows = append(rows, map[string]any{"messages": []map[string]string{
			{"role": "user", "content": fmt.Sprintf("is %d small?", i)}, {"role": "assistant", "content": "yes"}}})
	}
	data := filepath.Join(dir, "chat.jsonl")
	writeJSONL(t, data, rows)
	tmpl := filepath.Join(dir, "greet.jinja")
	const text = "{{ bos_token }}{{ greet }}{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token if m.role == 'assistant' else '\n' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "run")
	if code, _, errOut := runCLI(t, "finetune", "--model", hf, "--data", data, "--chat-template", tmpl, "--chat-var", "greet=Once upon a time. ",
		"--steps", "1", "--batch", "2", "--out", out); code != exitOK {
		t.Fatalf("finetune: status %d; stderr:\n%s", code, errOut)
	}
	ad := filepath.Join(out, "adapter")
	vars, err := readChatVars(filepath.Join(ad, adapterVarsFile))
	if err != nil || len(vars) != 1 || vars["greet"] != "Once upon a time. " {
		t.Fatalf("saved variables %v (%v); want greet", vars, err)
	}
	gen := func(extra ...string) string {
		t.Helper()
		args := append([]string{"generate", "--model", hf, "--adapter", ad, "--chat", "--prompt", "Lily", "--steps", "40", "--temperature", "0"}, extra...)
		code, stdout, errOut := runCLI(t, args...)
		if code != exitOK {
			t.Fatalf("generate %v: status %d; stderr:\n%s", extra, code, errOut)
		}
		return stdout
	}
	saved, given, other := gen(), gen("--chat-var", "greet=Once upon a time. "), gen("--chat-var", "greet=")
	if saved != given {
		t.Errorf("generate with the adapter's saved variables printed %q; with them given, %q", saved, given)
	}
	if saved == other {
		t.Errorf("generate printed %q with and without the variable; the test cannot see it", saved)
	}

	// A merged folder keeps them too, and generates what the adapter does.
	merged := filepath.Join(dir, "merged")
	if code, _, errOut := runCLI(t, "merge", "--adapter", ad, "--model", hf, "--out", merged); code != exitOK {
		t.Fatalf("merge: status %d; stderr:\n%s", code, errOut)
	}
	if vars, err := readChatVars(filepath.Join(merged, adapterVarsFile)); err != nil || vars["greet"] != "Once upon a time. " {
		t.Fatalf("variables in the merged folder: %v (%v); want greet", vars, err)
	}
	code, mergedOut, errOut := runCLI(t, "generate", "--model", merged, "--chat", "--prompt", "Lily", "--steps", "40", "--temperature", "0")
	if code != exitOK || mergedOut != saved {
		t.Errorf("generate from the merged folder: status %d, %q; with the adapter %q\n%s", code, mergedOut, saved, errOut)
	}

	// A full fine-tune's model folder is a --model of its own: the
	// variables go into it, and generate from it renders with them.
	full := filepath.Join(dir, "full")
	if code, _, errOut := runCLI(t, "finetune", "--model", hf, "--data", data, "--chat-template", tmpl, "--chat-var", "greet=Once upon a time. ",
		"--method", "full", "--steps", "1", "--batch", "2", "--no-spectrum", "--out", full); code != exitOK {
		t.Fatalf("finetune --method full: status %d; stderr:\n%s", code, errOut)
	}
	model := filepath.Join(full, "adapter", "model")
	if vars, err := readChatVars(filepath.Join(model, adapterVarsFile)); err != nil || vars["greet"] != "Once upon a time. " {
		t.Fatalf("variables saved with the fully fine-tuned model: %v (%v); want greet", vars, err)
	}
	genFull := func(extra ...string) string {
		t.Helper()
		args := append([]string{"generate", "--model", model, "--chat", "--prompt", "Lily", "--steps", "40", "--temperature", "0"}, extra...)
		code, stdout, errOut := runCLI(t, args...)
		if code != exitOK {
			t.Fatalf("generate --model %s %v: status %d; stderr:\n%s", model, extra, code, errOut)
		}
		return stdout
	}
	if saved, given, other := genFull(), genFull("--chat-var", "greet=Once upon a time. "), genFull("--chat-var", "greet="); saved != given || saved == other {
		t.Errorf("generate from the full fine-tune's folder: %q; with the variable given %q, with it empty %q", saved, given, other)
	}
}
