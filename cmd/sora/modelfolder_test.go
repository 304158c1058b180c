package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestModelFolderWithoutConfig checks that a --model folder without
// config.json, such as the folder that holds a llama2.c checkpoint, is
// refused by every command that reads a base model with a message saying
// that it is no Hugging Face checkpoint and naming the .bin file it holds,
// which the user most likely meant, rather than with the failure to open
// config.json.
func TestModelFolderWithoutConfig(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"stories260K.bin", "tok512.bin"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("not read"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tok := filepath.Join(dir, "tok512.bin")
	data := filepath.Join(t.TempDir(), "train.json")
	if err := os.WriteFile(data, []byte(`[{"instruction": "Add 1 and 2.", "input": "", "output": "3"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"generate", []string{"generate", "--model", dir, "--tokenizer", tok, "--prompt", "x"},
			[]string{"is a folder without config.json", "stories260K.bin, tok512.bin"}},
		{"generate without --tokenizer", []string{"generate", "--model", dir, "--prompt", "x"},
			[]string{"is a folder without config.json", "stories260K.bin, tok512.bin"}},
		{"eval", []string{"eval", "--model", dir, "--tokenizer", tok, "--data", data},
			[]string{"is a folder without config.json", "stories260K.bin"}},
		{"finetune", []string{"finetune", "--model", dir, "--tokenizer", tok, "--data", data, "--steps", "1", "--out", filepath.Join(t.TempDir(), "run")},
			[]string{"is a folder without config.json", "stories260K.bin"}},
		{"convert to GGUF", []string{"convert", "--model", dir, "--tokenizer", tok, "--out", filepath.Join(t.TempDir(), "m.gguf")},
			[]string{"is a folder without config.json", "stories260K.bin"}},
		{"a folder without .bin files", []string{"generate", "--model", empty, "--tokenizer", tok, "--prompt", "x"},
			[]string{"is a folder without config.json, so not a Hugging Face checkpoint"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			if code == exitOK {
				t.Fatalf("exit 0 for a model folder without config.json; stderr:\n%s", errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if strings.Contains(errOut, "panic") {
				t.Errorf("stderr:\n%s", errOut)
			}
		})
	}
}
