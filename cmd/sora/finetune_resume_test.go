package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/train"
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

// TestFinetuneResumeFinished resumes a run that had finished: it trains
// nothing, reports the run's final training loss and step time (not 0),
// writes run.json with the run's figures and the same final evaluation,
// and adds no second final evaluation to metrics.jsonl. A resume with
// another --alpha is refused naming it; one with another --lr is taken
// with a note.
func TestFinetuneResumeFinished(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath, evalPath := writeBoolQPair(t, dir, 12, 4)
	out := filepath.Join(dir, "run")
	args := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath, "--eval-data", evalPath,
		"--method", "lora", "--steps", "4", "--batch", "4", "--lr", "1e-2", "--save-every", "2", "--out", out}
	evals := func() int {
		t.Helper()
		rs, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range rs {
			if r.EvalLoss != nil {
				n++
			}
		}
		return n
	}
	code, stdout, errOut := runCLI(t, args...)
	if code != exitOK {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}
	var first runSummary
	readJSON(t, filepath.Join(out, "run.json"), &first)
	loss, nEval := finalLoss(t, stdout), evals()

	code, stdout, errOut = runCLI(t, append(args, "--resume")...)
	if code != exitOK || !strings.Contains(stdout, "nothing left to train") {
		t.Fatalf("resume of the finished run: status %d\n%s\n%s", code, stdout, errOut)
	}
	if got := finalLoss(t, stdout); got != loss {
		t.Errorf("the resumed finished run reports final training loss %s; the run ended with %s", got, loss)
	}
	var again runSummary
	readJSON(t, filepath.Join(out, "run.json"), &again)
	if !(again.StepMillis > 0) || !(again.TokensPerSec > 0) || again.ResumedAfter != 4 {
		t.Errorf("run.json after resuming the finished run: %v ms/step, %v tokens/s, resumed after step %d; want the run's figures and 4",
			again.StepMillis, again.TokensPerSec, again.ResumedAfter)
	}
	if again.Final == nil || first.Final == nil || again.Final.Loss != first.Final.Loss || again.Steps != 4 {
		t.Errorf("run.json's final evaluation %+v after the resume, %+v before", again.Final, first.Final)
	}
	if n := evals(); n != nEval {
		t.Errorf("metrics.jsonl holds %d evaluations after the resume, %d before", n, nEval)
	}

	code, _, errOut = runCLI(t, append(args, "--resume", "--alpha", "32")...)
	if code != exitFailure || !strings.Contains(errOut, "alpha 16 (now 32)") {
		t.Errorf("resume with another --alpha: status %d, stderr %q; want a refusal naming alpha", code, errOut)
	}
	// No step of the finished run trains with the new rate: run.json
	// keeps the run's own, and the note says so.
	code, stdout, errOut = runCLI(t, append(args, "--resume", "--lr", "5e-3")...)
	if code != exitOK || !strings.Contains(stdout, "learning rate 0.005 where it was made with 0.01: the run had finished its 4 steps, so no step trains with the new rate") {
		t.Errorf("resume of the finished run with another --lr: status %d\n%s\n%s\nwant it taken with a note that nothing uses it", code, stdout, errOut)
	}
	var lrs runSummary
	readJSON(t, filepath.Join(out, "run.json"), &lrs)
	if lrs.Config["lr"] != 0.01 || lrs.LRHistory != nil {
		t.Errorf("run.json after resuming the finished run with --lr 5e-3: lr %v, lr_history %v; want the run's 0.01 and no history", lrs.Config["lr"], lrs.LRHistory)
	}
}

// TestFinetuneResumeNewLR resumes a run from its checkpoint after step 2
// of 4 (as a run killed after it leaves the folder) with another --lr:
// run.json then reports the rate of the last steps and, in lr_history,
// which steps trained with which rate.
func TestFinetuneResumeNewLR(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath := filepath.Join(dir, "train.json")
	writeBoolQ(t, trainPath, 12)
	out := filepath.Join(dir, "run")
	args := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath,
		"--method", "lora", "--steps", "4", "--batch", "4", "--lr", "1e-2", "--save-every", "2", "--out", out}
	if code, stdout, errOut := runCLI(t, args...); code != exitOK {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}
	// Back to the checkpoint after step 2.
	ck := filepath.Join(out, train.CheckpointsDir)
	if err := os.RemoveAll(filepath.Join(ck, "step-000004")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ck, "latest"), []byte("step-000002\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, errOut := runCLI(t, append(args, "--resume", "--lr", "5e-3")...)
	if code != exitOK || !strings.Contains(stdout, "learning rate 0.005 where it was made with 0.01: the schedule goes on from step 2") {
		t.Fatalf("resume with another --lr: status %d\n%s\n%s", code, stdout, errOut)
	}
	var got runSummary
	readJSON(t, filepath.Join(out, "run.json"), &got)
	want := []train.LRSpan{{FromStep: 1, LR: 0.01}, {FromStep: 3, LR: 0.005}}
	if got.Config["lr"] != 0.005 || !slices.Equal(got.LRHistory, want) {
		t.Errorf("run.json: lr %v, lr_history %+v; want 0.005 and %+v", got.Config["lr"], got.LRHistory, want)
	}
	// Resumed again once finished, with the first rate: nothing trains, and
	// the record stays.
	if code, stdout, errOut := runCLI(t, append(args, "--resume")...); code != exitOK {
		t.Fatalf("resume of the finished run: status %d\n%s\n%s", code, stdout, errOut)
	}
	got = runSummary{}
	readJSON(t, filepath.Join(out, "run.json"), &got)
	if got.Config["lr"] != 0.005 || !slices.Equal(got.LRHistory, want) {
		t.Errorf("run.json after resuming the finished run with --lr 1e-2: lr %v, lr_history %+v; want 0.005 and %+v", got.Config["lr"], got.LRHistory, want)
	}
}

// finalLoss returns the final training loss sora finetune printed on
// stdout, as printed.
func finalLoss(t *testing.T, stdout string) string {
	t.Helper()
	_, after, ok := strings.Cut(stdout, "final training loss ")
	if !ok {
		t.Fatalf("no final training loss in:\n%s", stdout)
	}
	return strings.Fields(after)[0]
}
