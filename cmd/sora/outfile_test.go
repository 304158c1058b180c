package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFinetuneOutIsFile checks that an --out naming a regular file, or a
// path beneath one, is refused as a usage error before anything loads or
// runs, naming the flag and what it wants, for a real run and for the
// built-in demonstration alike.
func TestFinetuneOutIsFile(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := writeCatRows(t, dir)
	file := filepath.Join(dir, "tiny.json")
	if err := os.WriteFile(file, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	real := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows, "--steps", "1", "--no-spectrum"}
	demo := []string{"finetune", "--backend", "cpu", "--steps", "1", "--pretrain-steps", "1"}
	for _, tc := range []struct {
		name string
		args []string
		out  string
		want string
	}{
		{"run, file", real, file, "--out " + file + ": is a file; want a folder"},
		{"run, beneath a file", real, filepath.Join(file, "run"), "--out " + filepath.Join(file, "run") + ": " + file + " is a file; want a folder"},
		{"demo, file", demo, file, "--out " + file + ": is a file; want a folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, errOut := runCLI(t, append(tc.args, "--out", tc.out)...)
			if code != exitUsage {
				t.Errorf("status %d; want %d (usage)", code, exitUsage)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q; want it to say %q", errOut, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q; want nothing (refused before anything loads)", stdout)
			}
			if b, err := os.ReadFile(file); err != nil || string(b) != "{}\n" {
				t.Errorf("%s now holds %q (%v); want it untouched", file, b, err)
			}
		})
	}
}
