package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestFinetuneUnmatchedTarget checks that a --target pattern that selects
// no layer while the others do (a misspelling) is warned of, naming it,
// and that patterns that all match draw no warning.
func TestFinetuneUnmatchedTarget(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := writeCatRows(t, dir)
	for i, tc := range []struct {
		target, warn string
	}{
		{"q_proj,v_prj", "v_prj matches no layer of this model"},
		{"q_proj,c_attn,v_proj", "c_attn matches no layer of this model"},
		{"q_proj,v_proj", ""},
		{`all-linear`, ""},
		{`model\.layers\.0\..*`, ""},
	} {
		code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
			"--method", "lora", "--target", tc.target, "--steps", "1", "--no-spectrum", "--out", filepath.Join(dir, "run", string(rune('a'+i))))
		if code != exitOK {
			t.Fatalf("--target %s: status %d\n%s\n%s", tc.target, code, stdout, errOut)
		}
		if got := strings.Contains(errOut, "matches no layer"); got != (tc.warn != "") || !strings.Contains(errOut, tc.warn) {
			t.Errorf("--target %s: stderr %q; want a warning saying %q", tc.target, errOut, tc.warn)
		}
	}
}

// TestFinetuneTargetMatchesNothing checks that a --target that selects no
// layer at all (a misspelt name) is a usage error, exit 2, that keeps
// peft's message naming the patterns and the model's layers.
func TestFinetuneTargetMatchesNothing(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := writeCatRows(t, dir)
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
		"--method", "lora", "--target", "q_porj", "--steps", "1", "--no-spectrum", "--out", filepath.Join(dir, "run"))
	if code != exitUsage {
		t.Errorf("status %d; want %d (usage)\n%s\n%s", code, exitUsage, stdout, errOut)
	}
	for _, want := range []string{`"q_porj"`, "select none of the model's", "self_attn.q_proj"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q; want it to say %q", errOut, want)
		}
	}
}
