package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestMergeTiedHeadNote checks that merging an adapter on the output head
// of a model whose head is the token embedding (stories260K) says that
// the embedding changes with it, and that one without the head says
// nothing of the kind.
func TestMergeTiedHeadNote(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := filepath.Join(dir, "train.json")
	writeVariedRows(t, rows, 8)
	for _, c := range []struct {
		target string
		note   bool
	}{{"q_proj,lm_head", true}, {"q_proj", false}} {
		run := filepath.Join(dir, strings.ReplaceAll(c.target, ",", "-"))
		code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
			"--method", "lora", "--target", c.target, "--steps", "1", "--batch", "4", "--no-spectrum", "--out", run)
		if code != exitOK {
			t.Fatalf("finetune --target %s: status %d\n%s\n%s", c.target, code, stdout, errOut)
		}
		code, stdout, errOut = runCLI(t, "merge", "--backend", "cpu", "--model", model, "--adapter", filepath.Join(run, "adapter"), "--out", filepath.Join(dir, "merged.bin"))
		if code != exitOK {
			t.Fatalf("merge --target %s: status %d\n%s\n%s", c.target, code, stdout, errOut)
		}
		if got := strings.Contains(errOut, "ties to its token embedding"); got != c.note {
			t.Errorf("--target %s: note about the tied head %v, want %v; stderr:\n%s", c.target, got, c.note, errOut)
		}
	}
}
