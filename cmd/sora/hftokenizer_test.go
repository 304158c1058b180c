package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testdata"
)

// TestHFFolderBringsItsTokenizer converts stories260K with its tokenizer
// into a Hugging Face folder and checks that the folder is a whole model:
// generate and finetune take it without --tokenizer and compute exactly
// what they compute with the tokenizer.bin given (the tokenizer.json
// encodes the data as the tokenizer.bin does), and merge copies the
// tokenizer into the merged folder.
func TestHFFolderBringsItsTokenizer(t *testing.T) {
	model, tok := stories260K(t)
	boolq := testdata.Path(t, "datasets/llm-adapters/boolq/train.json")
	dir := filepath.Join(t.TempDir(), "stories260K-hf")
	if code, _, errOut := runCLI(t, "convert", "--model", model, "--tokenizer", tok, "--out", dir); code != 0 {
		t.Fatalf("convert: exit status %d; stderr:\n%s", code, errOut)
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("convert --tokenizer wrote no %s: %v", name, err)
		}
	}
	code, out, errOut := runCLI(t, "generate", "--model", dir, "--prompt", "Once upon a time", "--steps", "60", "--temperature", "0")
	if code != 0 {
		t.Fatalf("generate without --tokenizer: exit status %d; stderr:\n%s", code, errOut)
	}
	if out != want60 {
		t.Fatalf("generate from the folder with its own tokenizer:\n%q\nwant llama2.c's\n%q", out, want60)
	}

	// The same short run with the folder's tokenizer and with tok512.bin.
	runs := t.TempDir()
	adapters := map[string][]byte{}
	for name, extra := range map[string][]string{"own": nil, "bin": {"--tokenizer", tok}} {
		args := append([]string{"finetune", "--model", dir, "--data", boolq, "--max-train", "32", "--steps", "2",
			"--batch", "8", "--method", "sora", "--out", filepath.Join(runs, name)}, extra...)
		if code, _, errOut := runCLI(t, args...); code != 0 {
			t.Fatalf("finetune (%s tokenizer): exit status %d; stderr:\n%s", name, code, errOut)
		}
		b, err := os.ReadFile(filepath.Join(runs, name, "adapter", "adapter_model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		adapters[name] = b
	}
	if !bytes.Equal(adapters["own"], adapters["bin"]) {
		t.Error("the adapter trained with the folder's tokenizer.json differs from the one trained with tok512.bin")
	}

	// A chat template (transformers writes it as chat_template.jinja since
	// 4.50) and generation settings go with the tokenizer.
	for name, content := range map[string]string{
		"chat_template.jinja":    "{% for m in messages %}{{ m.content }}{% endfor %}",
		"generation_config.json": `{"bos_token_id": 1, "eos_token_id": 2}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	merged := filepath.Join(t.TempDir(), "merged")
	if code, _, errOut := runCLI(t, "merge", "--model", dir, "--adapter", filepath.Join(runs, "own", "adapter"), "--out", merged); code != 0 {
		t.Fatalf("merge: exit status %d; stderr:\n%s", code, errOut)
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"} {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(merged, name))
		if err != nil {
			t.Fatalf("merge into a Hugging Face folder left out the base's %s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("the merged folder's %s differs from the base's", name)
		}
	}
	if code, _, errOut := runCLI(t, "generate", "--model", merged, "--steps", "8", "--temperature", "0"); code != 0 {
		t.Errorf("generate from the merged folder without --tokenizer: exit status %d; stderr:\n%s", code, errOut)
	}
}

// TestTokenizerRequired checks that a model without a tokenizer of its own
// is a usage error naming what to give, for every command that reads one,
// and that convert refuses a tokenizer it cannot write.
func TestTokenizerRequired(t *testing.T) {
	model, tok := stories260K(t)
	bare := filepath.Join(t.TempDir(), "bare-hf")
	if code, _, errOut := runCLI(t, "convert", "--model", model, "--out", bare); code != 0 {
		t.Fatalf("convert: exit status %d; stderr:\n%s", code, errOut)
	}
	data := testdata.Path(t, "datasets/llm-adapters/boolq/train.json")
	for _, tc := range []struct {
		name, model, want string
	}{
		{"llama2c", model, "only a Hugging Face folder holding tokenizer.json or tokenizer.model brings its own"},
		{"folder without tokenizer", bare, "has neither tokenizer.json nor tokenizer.model"},
		{"missing model", filepath.Join(t.TempDir(), "typo-hf"), "does not exist"},
	} {
		for _, args := range [][]string{
			{"generate", "--model", tc.model},
			{"eval", "--model", tc.model, "--data", data},
			{"finetune", "--model", tc.model, "--data", data, "--out", filepath.Join(t.TempDir(), "run")},
		} {
			t.Run(tc.name+"/"+args[0], func(t *testing.T) {
				code, _, errOut := runCLI(t, args...)
				if code != exitUsage || !strings.Contains(errOut, tc.want) {
					t.Errorf("exit status %d, stderr:\n%s\nwant %d and %q", code, errOut, exitUsage, tc.want)
				}
				if tc.name != "missing model" && !strings.Contains(errOut, "--tokenizer is required") {
					t.Errorf("stderr:\n%s\nwant it to say --tokenizer is required", errOut)
				}
			})
		}
	}
	// Converting again into a folder that has a tokenizer, without one,
	// removes it: the commands would read it as the new model's.
	redo := filepath.Join(t.TempDir(), "redo")
	for _, extra := range [][]string{{"--tokenizer", tok}, nil} {
		args := append([]string{"convert", "--model", model, "--out", redo}, extra...)
		if code, _, errOut := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: exit status %d; stderr:\n%s", args, code, errOut)
		}
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
		if _, err := os.Stat(filepath.Join(redo, name)); !os.IsNotExist(err) {
			t.Errorf("a convert without --tokenizer left the earlier %s in place (stat: %v)", name, err)
		}
	}
	// convert writes a llama2.c tokenizer.bin as Hugging Face files; a
	// tokenizer.json is refused, and so is one of another vocabulary.
	hfTok := filepath.Join(t.TempDir(), "hf")
	if code, _, errOut := runCLI(t, "convert", "--model", model, "--tokenizer", tok, "--out", hfTok); code != 0 {
		t.Fatalf("convert: exit status %d; stderr:\n%s", code, errOut)
	}
	short := filepath.Join(t.TempDir(), "short.bin")
	b, err := os.ReadFile(tok)
	if err != nil {
		t.Fatal(err)
	}
	// The first 500 of its 512 entries: 4 bytes of max_token_length, then
	// per token a score, a length and the piece.
	off := 4
	for range 500 {
		off += 8 + int(binary.LittleEndian.Uint32(b[off+4:]))
	}
	if err := os.WriteFile(short, b[:off], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ tok, want string }{
		{filepath.Join(hfTok, "tokenizer.json"), "convert takes the llama2.c tokenizer.bin"},
		{short, "vocab_size is 512"},
	} {
		out := filepath.Join(t.TempDir(), "out")
		code, _, errOut := runCLI(t, "convert", "--model", model, "--tokenizer", tc.tok, "--out", out)
		if code != exitFailure || !strings.Contains(errOut, tc.want) {
			t.Errorf("convert --tokenizer %s: exit status %d, stderr:\n%s\nwant %d and %q", tc.tok, code, errOut, exitFailure, tc.want)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("a refused convert left %s behind", out)
		}
	}
}

// TestGenerateHFGenerationSettings checks generate with a folder whose
// tokenizer_config.json says add_bos_token false: the prompt's first token
// is printed (Generate emits the tokens after the first, which used to be
// BOS, so the text lost its first word), and an empty prompt, which then
// has no token to start from, is a usage error rather than a panic. It also
// checks that every eos_token_id of generation_config.json stops the
// generation, not only tokenizer_config.json's EOS.
func TestGenerateHFGenerationSettings(t *testing.T) {
	dir := storiesHF(t)
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	noBOS := bytes.Replace(cfg, []byte(`"add_bos_token": true`), []byte(`"add_bos_token": false`), 1)
	if bytes.Equal(noBOS, cfg) {
		t.Fatal("tokenizer_config.json has no \"add_bos_token\": true to change")
	}
	if err := os.WriteFile(cfgPath, noBOS, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "generate", "--model", dir, "--prompt", "Once upon a time", "--steps", "20", "--temperature", "0")
	if code != 0 {
		t.Fatalf("generate: exit status %d; stderr:\n%s", code, errOut)
	}
	if !strings.HasPrefix(out, "Once upon a time") {
		t.Errorf("generate without BOS printed %q; want the prompt first, \"Once upon a time\"", out)
	}
	code, _, errOut = runCLI(t, "generate", "--model", dir, "--steps", "20", "--temperature", "0")
	if code != exitUsage || !strings.Contains(errOut, "no BOS") || !strings.Contains(errOut, "--prompt") {
		t.Errorf("generate without BOS or prompt: exit status %d, stderr:\n%s\nwant %d and a message asking for --prompt", code, errOut, exitUsage)
	}

	// Greedy decoding from "Once upon a time" goes on ", there was a
	// little girl named Lily."; ending the generation at "." (id 426 in
	// tok512) as a second eos_token_id stops it there.
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(`{"bos_token_id": 1, "eos_token_id": [2, 426]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "generate", "--model", dir, "--prompt", "Once upon a time", "--steps", "60", "--temperature", "0")
	if code != 0 {
		t.Fatalf("generate: exit status %d; stderr:\n%s", code, errOut)
	}
	if want := "Once upon a time, there was a little girl named Lily\n"; out != want {
		t.Errorf("generate with eos_token_id [2, 426] printed %q, want %q", out, want)
	}
}
