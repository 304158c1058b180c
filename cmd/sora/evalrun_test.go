package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// TestEvalSampleFromRun checks that sora eval of a finetune run's adapter
// with --max-eval draws the rows the run evaluated (its --seed + 1) and
// generates as many answer tokens, unless told otherwise: its loss is
// then the run's final evaluation loss.
func TestEvalSampleFromRun(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := filepath.Join(dir, "rows.json")
	writeBoolQ(t, rows, 24)
	run := filepath.Join(dir, "run")
	finetuneCLI(t, "--model", model, "--tokenizer", tok, "--data", rows, "--method", "lora", "--steps", "2", "--seed", "7",
		"--eval-data", rows, "--max-eval", "5", "--max-new-tokens", "9", "--no-spectrum", "--out", run)
	var sum runSummary
	readJSON(t, filepath.Join(run, "run.json"), &sum)
	if sum.Final == nil {
		t.Fatal("run.json has no final evaluation")
	}
	eval := func(extra ...string) (evalReport, string) {
		t.Helper()
		out := filepath.Join(dir, "eval.json")
		args := append([]string{"eval", "--backend", "cpu", "--tokenizer", tok, "--adapter", filepath.Join(run, "adapter"),
			"--data", rows, "--max-eval", "5", "--json", out}, extra...)
		code, stdout, errOut := runCLI(t, args...)
		if code != exitOK {
			t.Fatalf("eval %v: status %d\n%s\n%s", extra, code, stdout, errOut)
		}
		var rep evalReport
		readJSON(t, out, &rep)
		return rep, stdout
	}
	rep, stdout := eval()
	for _, want := range []string{"note: --seed 8, which draws the --max-eval rows the training run (--seed 7", "note: --max-new-tokens 9"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("eval output lacks %q:\n%s", want, stdout)
		}
	}
	if rep.Rows != 5 || math.Abs(rep.Loss-sum.Final.Loss) > 1e-4 {
		t.Errorf("eval of the run's sample: %d rows, loss %v; the run's final evaluation: loss %v", rep.Rows, rep.Loss, sum.Final.Loss)
	}
	// Explicit flags win, without a note.
	if _, stdout := eval("--seed", "43", "--max-new-tokens", "4"); strings.Contains(stdout, "note: --seed") || strings.Contains(stdout, "note: --max-new-tokens") {
		t.Errorf("explicit --seed and --max-new-tokens were overridden:\n%s", stdout)
	}
}
