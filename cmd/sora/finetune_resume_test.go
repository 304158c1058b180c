package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFinetuneHugeEpochs checks that an --epochs whose step count does
// not fit in an int is a usage error naming --epochs, found before the
// zero-shot evaluation, instead of a run of negative steps.
func TestFinetuneHugeEpochs(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "train.json")
	writeBoolQ(t, data, 8)
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", data,
		"--epochs", "1e300", "--batch", "4", "--out", filepath.Join(dir, "run"))
	if code != exitUsage || !strings.Contains(errOut, "epochs = 1e+300") || !strings.Contains(errOut, "more than a run can count") {
		t.Errorf("status %d, stderr %q; want a usage error about --epochs", code, errOut)
	}
	if strings.Contains(stdout, "training:") || strings.Contains(stdout, "zero-shot") {
		t.Errorf("the run started before the error:\n%s", stdout)
	}
}

// TestFinetuneRemovesStaleRunJSON checks that a run removes the temporary
// run.json a process killed while writing it left in --out, and leaves
// names that are not such temporaries. (The trainer's own temporaries are
// tested in package train.)
func TestFinetuneRemovesStaleRunJSON(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "train.json")
	writeBoolQ(t, data, 8)
	out := filepath.Join(dir, "run")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	stale, keep := filepath.Join(out, ".run.json.tmp-4242"), filepath.Join(out, ".run.json.tmp-mine")
	for _, p := range []string{stale, keep} {
		if err := os.WriteFile(p, []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", data,
		"--steps", "1", "--batch", "4", "--out", out)
	if code != exitOK {
		t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
	}
	if _, err := os.Stat(stale); err == nil || !strings.Contains(stdout, "removed "+stale) {
		t.Errorf("the stale %s is still there, or not reported:\n%s", stale, stdout)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("%s, not a temporary of ours, was removed: %v", keep, err)
	}
}
