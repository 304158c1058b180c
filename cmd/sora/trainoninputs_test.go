package main

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestFinetuneTrainOnInputs: --train-on-inputs trains every token but
// each row's first (the data line counts them and says so), run.json
// records it, a resume must keep it, and --task classify refuses it.
func TestFinetuneTrainOnInputs(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "train.json")
	writeBoolQ(t, data, 8)
	out := filepath.Join(dir, "run")
	args := []string{"finetune", "--model", model, "--tokenizer", tok, "--data", data, "--steps", "2", "--batch", "4", "--save-every", "1", "--no-spectrum", "--out", out}
	code, stdout, errOut := runCLI(t, append(args, "--train-on-inputs")...)
	if code != exitOK {
		t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
	}
	m := regexp.MustCompile(`train data: \S+, (\d+) sequences, (\d+) tokens \(instruction rows\), (\d+) trained tokens \(prompts included: --train-on-inputs\)`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no data line counting the prompts:\n%s", stdout)
	}
	seqs, _ := strconv.Atoi(m[1])
	tokens, _ := strconv.Atoi(m[2])
	if trained, _ := strconv.Atoi(m[3]); trained != tokens-seqs {
		t.Errorf("%d trained tokens of %d in %d sequences, want every token but the first of each", trained, tokens, seqs)
	}
	var sum runSummary
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	if v, ok := sum.Config["train_on_inputs"].(bool); !ok || !v {
		t.Errorf("run.json config train_on_inputs = %v, want true", sum.Config["train_on_inputs"])
	}
	code, _, errOut = runCLI(t, append(args, "--resume", "--steps", "3")...)
	if code == exitOK || !strings.Contains(errOut, "train-on-inputs") {
		t.Errorf("resume without --train-on-inputs: status %d, stderr %q; want a refusal naming it", code, errOut)
	}
	code, _, errOut = runCLI(t, "finetune", "--model", model, "--tokenizer", tok, "--task", "classify", "--data", data, "--train-on-inputs", "--out", filepath.Join(dir, "c"))
	if code != exitUsage || !strings.Contains(errOut, "--train-on-inputs trains a language model's prompt tokens") {
		t.Errorf("--task classify --train-on-inputs: status %d, stderr %q", code, errOut)
	}
}
