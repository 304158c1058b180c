package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/train"
)

// zeroShotLines returns stdout's lines that report the evaluation before
// training.
func zeroShotLines(stdout string) []string {
	var out []string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "before training (zero-shot") || strings.Contains(l, "zero-shot again") {
			out = append(out, l)
		}
	}
	return out
}

// TestFinetuneResumeReusesZeroShot: a --resume reports the zero-shot
// evaluation its checkpoint recorded, saying so in its one line, without
// evaluating the model again (the record, altered in the checkpoint, is
// what it reports and what run.json keeps), and metrics.jsonl keeps one
// evaluation of step 0. With other evaluation data (another --max-eval)
// it evaluates again, saying why.
func TestFinetuneResumeReusesZeroShot(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath, evalPath := writeBoolQPair(t, dir, 12, 6)
	out := filepath.Join(dir, "run")
	args := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath, "--eval-data", evalPath,
		"--method", "lora", "--steps", "4", "--batch", "4", "--lr", "1e-2", "--save-every", "2", "--no-spectrum", "--out", out}
	code, stdout, errOut := runCLI(t, args...)
	if code != exitOK {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}
	first := zeroShotLines(stdout)
	if len(first) != 1 || !strings.HasPrefix(first[0], "before training (zero-shot): loss ") {
		t.Fatalf("the fresh run's zero-shot lines %q", first)
	}
	var sum runSummary
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	if sum.ZeroShot == nil {
		t.Fatal("run.json has no zero-shot evaluation")
	}

	// Back to the checkpoint after step 2, its record of the zero-shot
	// loss altered to a value no evaluation of this model gives.
	ck := filepath.Join(out, train.CheckpointsDir)
	if err := os.RemoveAll(filepath.Join(ck, "step-000004")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ck, "latest"), []byte("step-000002\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(ck, "step-000002", "trainer_state.json")
	var st map[string]any
	readJSON(t, statePath, &st)
	zs, ok := st["zero_shot"].(map[string]any)
	if !ok {
		t.Fatalf("%s records no zero_shot: %v", statePath, st)
	}
	zs["eval"].(map[string]any)["loss"] = 1.5
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	code, stdout, errOut = runCLI(t, append(args, "--resume")...)
	if code != exitOK {
		t.Fatalf("resume: status %d\n%s\n%s", code, stdout, errOut)
	}
	want := "before training (zero-shot, as the run recorded it when it began; not evaluated again): loss 1.5000 per answer token"
	if got := zeroShotLines(stdout); len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Errorf("the resume's zero-shot lines %q; want one, %q…", got, want)
	}
	var again runSummary
	readJSON(t, filepath.Join(out, "run.json"), &again)
	if again.ZeroShot == nil || again.ZeroShot.Loss != 1.5 || again.ZeroShot.Accuracy != sum.ZeroShot.Accuracy ||
		again.ZeroShot.Sequences != sum.ZeroShot.Sequences || again.ZeroShot.Targets != sum.ZeroShot.Targets {
		t.Errorf("run.json's zero-shot evaluation after the resume %+v; want the record's (loss 1.5, else %+v)", again.ZeroShot, sum.ZeroShot)
	}
	if !strings.Contains(stdout, "held-out loss: 1.5000 zero-shot → ") {
		t.Errorf("the summary does not compare with the recorded zero-shot loss:\n%s", stdout)
	}
	rs, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	zeros := 0
	for _, r := range rs {
		if r.Step == 0 && r.EvalLoss != nil {
			zeros++
			if *r.EvalLoss != sum.ZeroShot.Loss {
				t.Errorf("metrics.jsonl's step 0 loss %v; the run's zero-shot loss was %v", *r.EvalLoss, sum.ZeroShot.Loss)
			}
		}
	}
	if zeros != 1 {
		t.Errorf("metrics.jsonl holds %d evaluations of step 0 after the resume; want 1", zeros)
	}

	// Other evaluation data: evaluated again, with the reason.
	code, stdout, errOut = runCLI(t, append(args, "--resume", "--max-eval", "3")...)
	if code != exitOK {
		t.Fatalf("resume with --max-eval 3: status %d\n%s\n%s", code, stdout, errOut)
	}
	got := zeroShotLines(stdout)
	if len(got) != 2 || !strings.Contains(got[0], "note: evaluating zero-shot again: the zero-shot evaluation that checkpoint") ||
		!strings.Contains(got[0], "was taken on other evaluation data (6 sequences") || !strings.HasPrefix(got[1], "before training (zero-shot): loss ") ||
		strings.Contains(got[1], "1.5000") {
		t.Errorf("the zero-shot lines of a resume with other evaluation data: %q; want the reason, then a new evaluation", got)
	}
}

// TestFinetuneResumeMoreSteps trains a run of 20 steps with --keep-best,
// then resumes it with --steps 60: it trains steps 21 to 60 with the
// linear schedule computed for 60 steps (the rate of step 21 checked
// against the formula) and the run's warm-up (1 step; 5% of 60 would be
// 3), says so, and records the new length in run.json (config.steps,
// steps_history) and the checkpoints; best/ holds the best of all the
// evaluations, those after the extension included. A resume with fewer
// steps than trained is refused naming both, before anything loads; one
// without --steps (whose --epochs would make another number) is refused
// saying what to give; one with another --warmup is refused; one with
// --steps 60 trains nothing and keeps the record.
func TestFinetuneResumeMoreSteps(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath, evalPath := writeBoolQPair(t, dir, 12, 4)
	out := filepath.Join(dir, "run")
	base := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath, "--eval-data", evalPath,
		"--method", "lora", "--batch", "4", "--lr", "1e-2", "--eval-every", "10", "--keep-best", "--no-spectrum", "--out", out}
	with := func(extra ...string) []string { return append(slices.Clone(base), extra...) }
	if code, stdout, errOut := runCLI(t, with("--steps", "20")...); code != exitOK {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}

	code, stdout, errOut := runCLI(t, with("--steps", "60", "--resume")...)
	if code != exitOK {
		t.Fatalf("resume with --steps 60: status %d\n%s\n%s", code, stdout, errOut)
	}
	const lr, warmup = 1e-2, 1
	next := float64(60-20) / float64(60-warmup)
	for _, want := range []string{
		"made for 20 steps, with 60: the linear schedule (with 1 step of warm-up) is computed again for 60 steps and goes on from step 20, as Hugging Face's Trainer does: step 21 trains at 0.678 × the peak rate 0.01, where the 20-step schedule had come to its end",
		"training: 60 steps of 4 sequences (micro-batch 4), lr 0.01 with 1 warm-up step and linear decay",
		"trained steps 21 to 60 (resumed after step 20)",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the extended run's output lacks %q:\n%s", want, stdout)
		}
	}
	rs, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	steps, bestStep, bestLoss := 0, -1, math.Inf(1)
	for _, r := range rs {
		if r.Loss != nil {
			steps++
			if r.Step == 21 && math.Abs(*r.LR-lr*next) > 1e-12 {
				t.Errorf("step 21 trained at %v; want %v × %v", *r.LR, next, lr)
			}
		}
		if r.EvalLoss != nil && r.Step > 0 && *r.EvalLoss < bestLoss {
			bestStep, bestLoss = r.Step, *r.EvalLoss
		}
	}
	if steps != 60 {
		t.Errorf("metrics.jsonl logs %d training steps; want 60", steps)
	}
	var sum runSummary
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	wantHistory := []train.StepsSpan{{FromStep: 1, Steps: 20}, {FromStep: 21, Steps: 60}}
	if sum.Steps != 60 || sum.Config["steps"] != 60.0 || sum.Config["warmup"] != float64(warmup) || !slices.Equal(sum.StepsHistory, wantHistory) {
		t.Errorf("run.json: steps %d, config steps %v, warmup %v, steps_history %+v; want 60, 60, %d, %+v",
			sum.Steps, sum.Config["steps"], sum.Config["warmup"], sum.StepsHistory, warmup, wantHistory)
	}
	info, err := train.ReadCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	if info.Step != 60 || info.TotalSteps != 60 || info.Warmup != warmup {
		t.Errorf("the newest checkpoint records step %d of %d, warm-up %d; want 60 of 60, %d", info.Step, info.TotalSteps, info.Warmup, warmup)
	}
	best, err := train.ReadBest(out)
	if err != nil {
		t.Fatal(err)
	}
	if best.Step != bestStep || best.Value != bestLoss || sum.Best == nil || sum.Best.Step != bestStep {
		t.Errorf("best.json at step %d (%v), run.json's best %+v; the evaluations' best is step %d (%v)", best.Step, best.Value, sum.Best, bestStep, bestLoss)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--steps", "10"}, "with steps 10: the run has trained 60 steps already, of the 60 it was made for; resume it with 60 steps, as it was made (it has finished), or more to train it longer"},
		{[]string{"--steps", "80", "--warmup", "4"}, "it was made with warmup 1 (now 4)"},
	} {
		code, stdout, errOut := runCLI(t, with(append(c.args, "--resume")...)...)
		if code != exitFailure || !strings.Contains(errOut, c.want) || stdout != "" {
			t.Errorf("--resume %v: status %d, stderr %q, stdout %q; want %d and %q before anything loads", c.args, code, errOut, stdout, exitFailure, c.want)
		}
	}
	// --steps 0 is the flag's "use --epochs", not a number of steps
	// asked for: refused as its absence is, after the data loads and
	// before the model does.
	for _, steps := range [][]string{nil, {"--steps", "0"}} {
		code, stdout, errOut := runCLI(t, with(append(steps, "--resume")...)...)
		if want := "--resume: the run in " + out + " was made for 60 steps, and without --steps this run makes 3 (--epochs 1 of 12 sequences in batches of 4): give --steps 60 to resume it as it was made (it has finished), or more to train it longer"; code != exitFailure || !strings.Contains(errOut, want) || modelLoaded(stdout) {
			t.Errorf("--resume %v: status %d, stderr %q\n%s\nwant %q before the model loads", steps, code, errOut, stdout, want)
		}
	}

	code, stdout, errOut = runCLI(t, with("--steps", "60", "--resume")...)
	if code != exitOK || !strings.Contains(stdout, "nothing left to train: the run had finished its 60 steps") || strings.Contains(stdout, "computed again") {
		t.Errorf("a second resume with --steps 60: status %d\n%s\n%s", code, stdout, errOut)
	}
	sum = runSummary{}
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	if sum.Config["steps"] != 60.0 || !slices.Equal(sum.StepsHistory, wantHistory) {
		t.Errorf("run.json after the second resume: steps %v, steps_history %+v; want 60 and %+v", sum.Config["steps"], sum.StepsHistory, wantHistory)
	}

	// A run made with its own --warmup is resumed for more steps with it,
	// as with every flag; left out, it is refused, saying where the
	// other warm-up came from.
	own := filepath.Join(dir, "own")
	noWarmup := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath,
		"--method", "lora", "--batch", "4", "--no-spectrum", "--out", own}
	mine := append(slices.Clone(noWarmup), "--warmup", "2")
	if code, stdout, errOut := runCLI(t, append(slices.Clone(mine), "--steps", "4")...); code != exitOK {
		t.Fatalf("finetune --warmup 2: status %d\n%s\n%s", code, stdout, errOut)
	}
	if code, stdout, errOut := runCLI(t, append(slices.Clone(noWarmup), "--steps", "8", "--resume")...); code != exitFailure || stdout != "" ||
		!strings.Contains(errOut, "it was made with warmup 2 (now 0, 5% of the 4 steps it was made for, which --warmup -1 takes); give --warmup 2, as it was made") {
		t.Errorf("--resume --steps 8 without the run's --warmup 2: status %d, stderr %q, stdout %q; want a refusal naming warmup before anything loads", code, errOut, stdout)
	}
	if code, stdout, errOut := runCLI(t, append(slices.Clone(mine), "--steps", "8", "--resume")...); code != exitOK || !strings.Contains(stdout, "trained steps 5 to 8") {
		t.Errorf("--resume --steps 8 --warmup 2: status %d\n%s\n%s", code, stdout, errOut)
	}
}

// modelLoaded reports whether a finetune's output says that the model
// loaded.
func modelLoaded(stdout string) bool {
	return slices.ContainsFunc(strings.Split(stdout, "\n"), func(l string) bool { return strings.HasPrefix(l, "model: ") })
}

// rewind makes the run in out look as a run killed after step leaves
// it: the checkpoints after it are removed, and latest names its own.
func rewind(t *testing.T, out string, step int) {
	t.Helper()
	ck := filepath.Join(out, train.CheckpointsDir)
	name := fmt.Sprintf("step-%06d", step)
	ents, err := os.ReadDir(ck)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "step-") && e.Name() > name {
			if err := os.RemoveAll(filepath.Join(ck, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(ck, name)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ck, "latest"), []byte(name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFinetuneResumeEndedAtItsStep: a run of 4 steps interrupted after
// step 2 and resumed with --steps 2 ends there, and says so (not that it
// finished its 2 steps); run.json then has config.steps 2 with the
// steps_history of the 4-step schedule its steps trained on. Resumed
// without --steps it is refused with what to give; with --steps 4 its
// schedule simply goes on, as the note says, and the adapter is byte
// for byte that of the uninterrupted 4-step run. A run interrupted inside
// its warm-up is refused an end there, saying so, before anything loads.
func TestFinetuneResumeEndedAtItsStep(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath, _ := writeBoolQPair(t, dir, 12, 4)
	out := filepath.Join(dir, "run")
	base := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath,
		"--method", "lora", "--batch", "4", "--lr", "1e-2", "--save-every", "2", "--no-spectrum", "--out", out}
	with := func(extra ...string) []string { return append(slices.Clone(base), extra...) }
	if code, stdout, errOut := runCLI(t, with("--steps", "4")...); code != exitOK {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}
	adapterFile := filepath.Join(out, "adapter", "adapter_model.safetensors")
	whole, err := os.ReadFile(adapterFile)
	if err != nil {
		t.Fatal(err)
	}
	rewind(t, out, 2)

	code, stdout, errOut := runCLI(t, with("--steps", "2", "--resume")...)
	if want := "nothing left to train: the run ends at step 2, the step it had reached (it was made for 4: --steps 4 takes it on)"; code != exitOK || !strings.Contains(stdout, want) {
		t.Errorf("--resume --steps 2: status %d\n%s\n%s\nwant %q", code, stdout, errOut, want)
	}
	var sum runSummary
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	if h := []train.StepsSpan{{FromStep: 1, Steps: 4}}; sum.Config["steps"] != 2.0 || !slices.Equal(sum.StepsHistory, h) {
		t.Errorf("run.json of the run ended at step 2: steps %v, steps_history %+v; want 2 and %+v", sum.Config["steps"], sum.StepsHistory, h)
	}

	code, stdout, errOut = runCLI(t, with("--resume")...)
	if want := "--resume: the run in " + out + " ended at step 2, the step it had reached (it was made for 4), and without --steps this run makes 3 (--epochs 1 of 12 sequences in batches of 4): give --steps 2 to resume it as it is, or more to train it longer (4 takes its schedule on as it was)"; code != exitFailure || !strings.Contains(errOut, want) || modelLoaded(stdout) {
		t.Errorf("--resume without --steps: status %d, stderr %q\n%s\nwant %q before the model loads", code, errOut, stdout, want)
	}

	code, stdout, errOut = runCLI(t, with("--steps", "4", "--resume")...)
	if want := "made for 2 steps (steps 1 to 2 trained on the 4-step schedule), with 4: the 4-step linear schedule that steps 1 to 2 trained on simply goes on, so the run trains as a fresh 4-step run with 0 steps of warm-up would"; code != exitOK || !strings.Contains(stdout, want) {
		t.Errorf("--resume --steps 4: status %d\n%s\n%s\nwant %q", code, stdout, errOut, want)
	}
	if got, err := os.ReadFile(adapterFile); err != nil || !bytes.Equal(got, whole) {
		t.Errorf("the run ended at step 2 and taken on to 4 has another adapter than the uninterrupted 4-step run (%v)", err)
	}
	sum = runSummary{}
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	if sum.Config["steps"] != 4.0 || sum.StepsHistory != nil {
		t.Errorf("run.json of the run taken on to 4 steps: steps %v, steps_history %+v; want 4 and none (one schedule throughout)", sum.Config["steps"], sum.StepsHistory)
	}

	warm := filepath.Join(dir, "warm")
	args := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath,
		"--method", "lora", "--batch", "4", "--warmup", "7", "--save-every", "3", "--no-spectrum", "--out", warm}
	if code, stdout, errOut := runCLI(t, append(slices.Clone(args), "--steps", "8")...); code != exitOK {
		t.Fatalf("finetune --warmup 7: status %d\n%s\n%s", code, stdout, errOut)
	}
	rewind(t, warm, 6)
	code, stdout, errOut = runCLI(t, append(slices.Clone(args), "--steps", "6", "--resume")...)
	if want := "with steps 6: the run cannot end before its warm-up of 7 steps does; resume it with at least 7 steps (8 finishes the run as it was made)"; code != exitFailure || stdout != "" || !strings.Contains(errOut, want) {
		t.Errorf("--resume --steps 6 inside the warm-up of 7: status %d, stderr %q, stdout %q; want %q before anything loads", code, errOut, stdout, want)
	}
}

// TestFinetuneResumeAfterPatience: a run whose final evaluation runs out
// its early stopping's patience (--early-stopping 1 with a delta no
// evaluation improves by), resumed with more steps, stops at once, as a
// run made that long stops there: the same adapter byte for byte, and
// run.json records the stop. Resumed without --steps, it is told the
// number it was made for and that it trains no more (not to train it
// longer); with --epochs 3, it is refused before the model loads.
func TestFinetuneResumeAfterPatience(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath, evalPath := writeBoolQPair(t, dir, 12, 4)
	args := func(out string, extra ...string) []string {
		return append([]string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath, "--eval-data", evalPath,
			"--method", "lora", "--batch", "4", "--lr", "1e-2", "--schedule", "constant", "--eval-every", "2", "--early-stopping", "1",
			"--early-stopping-delta", "100", "--keep-best", "--save-every", "2", "--no-spectrum", "--out", out}, extra...)
	}
	short, fresh := filepath.Join(dir, "short"), filepath.Join(dir, "fresh")
	code, stdout, errOut := runCLI(t, args(fresh, "--steps", "10")...)
	if code != exitOK || !strings.Contains(stdout, "early stopping after step 4 of 10") {
		t.Fatalf("the 10-step run: status %d\n%s\n%s\nwant an early stop after step 4", code, stdout, errOut)
	}
	code, stdout, errOut = runCLI(t, args(short, "--steps", "4")...)
	if code != exitOK || strings.Contains(stdout, "stopped early") || !strings.Contains(stdout, "1 of 1 evaluations without improvement") {
		t.Fatalf("the 4-step run: status %d\n%s\n%s\nwant its final evaluation to run out the patience, without a stop", code, stdout, errOut)
	}
	code, stdout, errOut = runCLI(t, args(short, "--steps", "10", "--resume")...)
	if want := "nothing left to train: early stopping ends the run after step 4 of 10, where its final evaluation ran out the patience"; code != exitOK || !strings.Contains(stdout, want) ||
		!strings.Contains(stdout, "early stopping ends the run after step 4, where its evaluation ran out the patience, as in a run made for 10 steps") || strings.Contains(stdout, "trained steps") {
		t.Errorf("--resume --steps 10: status %d\n%s\n%s\nwant %q", code, stdout, errOut, want)
	}
	for _, f := range []string{"adapter/adapter_model.safetensors", "best/adapter_model.safetensors"} {
		a, errA := os.ReadFile(filepath.Join(short, f))
		b, errB := os.ReadFile(filepath.Join(fresh, f))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s of the extended run differs from the 10-step run's (%v, %v)", f, errA, errB)
		}
	}
	var sum runSummary
	readJSON(t, filepath.Join(short, "run.json"), &sum)
	if sum.StoppedEarly == nil || sum.StoppedEarly.Step != 4 || sum.Config["steps"] != 10.0 {
		t.Errorf("run.json: stopped %+v, steps %v; want a stop after step 4 of 10", sum.StoppedEarly, sum.Config["steps"])
	}

	code, stdout, errOut = runCLI(t, args(short, "--resume")...)
	if want := "give --steps 10 to resume it as it was made (early stopping ended it after step 4: it trains no more)"; code != exitFailure || !strings.Contains(errOut, want) || strings.Contains(errOut, "longer") {
		t.Errorf("--resume without --steps: status %d, stderr %q\n%s\nwant %q", code, errOut, stdout, want)
	}
	code, stdout, errOut = runCLI(t, args(short, "--epochs", "3", "--resume")...)
	if want := "with steps 9: early stopping ended its run after step 4 of the 10 it was made for"; code != exitFailure || !strings.Contains(errOut, want) || modelLoaded(stdout) {
		t.Errorf("--resume --epochs 3: status %d, stderr %q\n%s\nwant %q before the model loads", code, errOut, stdout, want)
	}
}

// TestFinetuneResumeDamagedZeroShot: a classifier's checkpoint whose
// zero-shot record lost its MCC (which the line describing it reads) is
// not reported: the resume says why and evaluates the model again.
func TestFinetuneResumeDamagedZeroShot(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	path := writeCoLA(t, dir, 20)
	out := filepath.Join(dir, "run")
	args := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--task", "classify", "--data", path, "--eval-data", path,
		"--method", "lora", "--steps", "2", "--batch", "10", "--lr", "1e-2", "--no-spectrum", "--out", out}
	if code, stdout, errOut := runCLI(t, args...); code != exitOK {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}
	info, err := train.ReadCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(info.Dir, "trainer_state.json")
	var st map[string]any
	readJSON(t, statePath, &st)
	ev, ok := st["zero_shot"].(map[string]any)["eval"].(map[string]any)
	if !ok || ev["mcc"] == nil {
		t.Fatalf("%s records no zero-shot MCC: %v", statePath, st["zero_shot"])
	}
	delete(ev, "mcc")
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, errOut := runCLI(t, append(args, "--resume")...)
	got := zeroShotLines(stdout)
	if code != exitOK || len(got) != 2 || !strings.Contains(got[0], "note: evaluating zero-shot again: the zero-shot evaluation that checkpoint "+info.Dir+" records is damaged: it has no mcc") ||
		!strings.HasPrefix(got[1], "before training (zero-shot): loss ") || !strings.Contains(got[1], "MCC") {
		t.Errorf("resume: status %d, zero-shot lines %q\n%s\n%s\nwant the reason, then a new evaluation", code, got, stdout, errOut)
	}
}
