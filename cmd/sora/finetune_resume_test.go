package main

import (
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
