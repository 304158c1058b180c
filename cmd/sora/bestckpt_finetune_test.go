package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/train"
)

// TestBestCkptBadFlags checks that the flag combinations --keep-best and
// --early-stopping cannot serve are usage errors naming the flags, found
// before anything loads (the model named does not exist).
func TestBestCkptBadFlags(t *testing.T) {
	model := filepath.Join(t.TempDir(), "m.bin")
	base := []string{"--model", model, "--tokenizer", "t.bin", "--data", "x"}
	plus := func(args []string, more ...string) []string { return append(slices.Clone(args), more...) }
	withEval := plus(base, "--eval-data", "y", "--eval-every", "5")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--keep-best"}, "--keep-best needs --model"},
		{[]string{"--early-stopping", "3"}, "--early-stopping needs --model"},
		{plus(base, "--keep-best"), "they need --eval-data (or --eval-split) and --eval-every N"},
		{plus(base, "--eval-data", "y", "--early-stopping", "3"), "they need --eval-data (or --eval-split) and --eval-every N"},
		{plus(withEval, "--early-stopping", "-1"), "--early-stopping -1"},
		{plus(withEval, "--early-stopping-delta", "0.1"), "set --early-stopping too"},
		{plus(withEval, "--early-stopping", "2", "--early-stopping-delta", "NaN"), "--early-stopping-delta NaN"},
		{plus(withEval, "--best-metric", "accuracy"), "set one of them"},
		{plus(withEval, "--keep-best", "--best-metric", "f1"), `unknown metric "f1"; want loss, accuracy or mcc`},
		{plus(withEval, "--keep-best", "--best-metric", "mcc"), "the evaluation of --task lm does not report mcc; it reports loss and accuracy"},
	} {
		code, stdout, errOut := runCLI(t, append([]string{"finetune"}, c.args...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("finetune %v: status %d, stderr %q; want status %d and %q", c.args, code, errOut, exitUsage, c.want)
		}
		if stdout != "" {
			t.Errorf("finetune %v printed %q before refusing", c.args, stdout)
		}
	}
	// The classifier's evaluation reports the MCC: the same flags pass the
	// checks and fail only on the missing model.
	code, _, errOut := runCLI(t, plus(append([]string{"finetune"}, withEval...), "--task", "classify", "--keep-best", "--best-metric", "eval_mcc")...)
	if code == exitOK || strings.Contains(errOut, "metric") || !strings.Contains(errOut, "m.bin") {
		t.Errorf("classify with --best-metric eval_mcc: status %d, stderr %q; want a failure about m.bin alone", code, errOut)
	}
}

// TestBestCkptFinetuneEval runs sora finetune with --keep-best and
// --early-stopping on stories260K until the evaluations stop improving,
// then scores best/ with sora eval: it must get the loss that best.json
// and metrics.jsonl record for the best step, not the final weights'
// (the run makes the two differ). run.json and the summary line say where
// the best is and why the run stopped; a resume with another
// --early-stopping is refused naming it. With --method full, best/ holds
// the whole model, which sora eval takes as --model.
func TestBestCkptFinetuneEval(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath, evalPath := writeBoolQPair(t, dir, 16, 8)
	for _, method := range []string{"lora", "full"} {
		t.Run(method, func(t *testing.T) {
			out := filepath.Join(dir, method)
			lr := "2e-2"
			if method == "full" {
				lr = "5e-3"
			}
			args := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath, "--eval-data", evalPath,
				"--method", method, "--steps", "40", "--batch", "4", "--lr", lr, "--eval-every", "2", "--keep-best", "--early-stopping", "2",
				"--no-spectrum", "--out", out}
			code, stdout, errOut := runCLI(t, args...)
			if code != exitOK {
				t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
			}
			var sum runSummary
			b, err := os.ReadFile(filepath.Join(out, "run.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &sum); err != nil {
				t.Fatal(err)
			}
			if sum.StoppedEarly == nil || sum.Best == nil || sum.BestDir != filepath.Join(out, train.BestDir) {
				t.Fatalf("run.json: stopped %+v, best %+v in %q; want an early stop and best/ (raise --steps or --lr if the loss no longer turns up)\n%s", sum.StoppedEarly, sum.Best, sum.BestDir, stdout)
			}
			if sum.Steps != sum.StoppedEarly.Step || sum.Steps >= 40 || sum.Best.Step >= sum.Steps {
				t.Errorf("run.json: %d steps, stopped after %d, best at %d", sum.Steps, sum.StoppedEarly.Step, sum.Best.Step)
			}
			rec, err := train.ReadBest(out)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Step != sum.Best.Step || rec.Value != sum.Best.Value || rec.Metric != "eval_loss" {
				t.Errorf("best.json %+v, run.json %+v", rec, sum.Best)
			}
			rs, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
			if err != nil {
				t.Fatal(err)
			}
			lastBest := 0
			for _, r := range rs {
				if r.Best {
					lastBest = r.Step
					if *r.EvalLoss != rec.Value && r.Step == rec.Step {
						t.Errorf("metrics.jsonl's best at step %d has loss %v, best.json %v", r.Step, *r.EvalLoss, rec.Value)
					}
				}
			}
			if lastBest != rec.Step {
				t.Errorf("metrics.jsonl's last best is step %d, best.json's %d", lastBest, rec.Step)
			}
			wantLine := "best/ (step " + itoa(rec.Step) + ", eval_loss "
			if !strings.Contains(lastLine(stdout), wantLine) || !strings.Contains(stdout, "stopped early after step "+itoa(sum.Steps)+" of 40") {
				t.Errorf("the summary does not say where the best is (%q) or that the run stopped:\n%s", wantLine, stdout)
			}
			// The reason is said once, as the run stops, not again in
			// the summary.
			if n := strings.Count(stdout, sum.StoppedEarly.Reason); n != 1 {
				t.Errorf("the reason %q is printed %d times, want once:\n%s", sum.StoppedEarly.Reason, n, stdout)
			}
			// The zero-shot evaluation is the log's first record, step 0,
			// and no candidate for the best.
			if len(rs) == 0 || rs[0].Step != 0 || rs[0].EvalLoss == nil || sum.ZeroShot == nil || *rs[0].EvalLoss != sum.ZeroShot.Loss || rs[0].Best {
				t.Errorf("metrics.jsonl begins with %+v; want the zero-shot evaluation %+v at step 0", rs[0], sum.ZeroShot)
			}
			if math.Abs(sum.Final.Loss-rec.Value) < 1e-3 {
				t.Fatalf("the final loss %v is the best's %v: the check below would not tell the two apart", sum.Final.Loss, rec.Value)
			}

			evalArgs := []string{"eval", "--backend", "cpu", "--tokenizer", tok, "--data", evalPath, "--json", filepath.Join(dir, method+"-eval.json")}
			if method == "full" {
				evalArgs = append(evalArgs, "--model", filepath.Join(out, train.BestDir, "model.bin"))
			} else {
				evalArgs = append(evalArgs, "--model", model, "--adapter", filepath.Join(out, train.BestDir))
			}
			code, eout, eerr := runCLI(t, evalArgs...)
			if code != exitOK {
				t.Fatalf("eval of best/: status %d\n%s\n%s", code, eout, eerr)
			}
			var rep evalReport
			b, err = os.ReadFile(filepath.Join(dir, method+"-eval.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if math.Abs(rep.Loss-rec.Value) > 1e-4*rec.Value {
				t.Errorf("sora eval of best/: loss %v; best.json records %v (the final weights' is %v)", rep.Loss, rec.Value, sum.Final.Loss)
			}

			resume := append(slices.Clone(args), "--resume")
			for i, a := range resume {
				if a == "--early-stopping" {
					resume[i+1] = "4"
				}
			}
			code, _, errOut = runCLI(t, resume...)
			if code != exitFailure || !strings.Contains(errOut, "early-stopping 2 (now 4)") {
				t.Errorf("resume with --early-stopping 4: status %d, stderr %q; want a refusal naming it", code, errOut)
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestBestCkptClassify keeps the best classifier by its MCC and scores
// best/ with sora eval, which must restore the head saved with the
// adapter there and find best.json's MCC and loss.
func TestBestCkptClassify(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	cola := writeCoLA(t, dir, 24)
	out := filepath.Join(dir, "run")
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--task", "classify",
		"--data", cola, "--eval-data", cola, "--method", "lora", "--steps", "12", "--batch", "8", "--lr", "1e-2", "--eval-every", "3",
		"--keep-best", "--best-metric", "mcc", "--no-spectrum", "--out", out)
	if code != exitOK {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}
	rec, err := train.ReadBest(out)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Metric != "eval_mcc" || rec.Eval == nil || rec.Eval.MCC == nil || *rec.Eval.MCC != rec.Value {
		t.Fatalf("best.json %+v: want the eval_mcc of its evaluation", rec)
	}
	jsonPath := filepath.Join(dir, "eval.json")
	code, eout, eerr := runCLI(t, "eval", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--adapter", filepath.Join(out, train.BestDir),
		"--data", cola, "--json", jsonPath)
	if code != exitOK {
		t.Fatalf("eval of best/: status %d\n%s\n%s", code, eout, eerr)
	}
	var rep evalReport
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Task != "classify" || rep.MCC == nil || math.Abs(*rep.MCC-rec.Value) > 1e-9 || math.Abs(rep.Loss-rec.Eval.Loss) > 1e-4*rec.Eval.Loss {
		t.Errorf("sora eval of best/: task %s, MCC %v, loss %v; best.json: MCC %v, loss %v", rep.Task, rep.MCC, rep.Loss, rec.Value, rec.Eval.Loss)
	}
}

// TestBestCkptDescribe checks the summary's line on the best evaluation:
// where its weights are and how to score them, and the note when no
// evaluation during training beat the zero-shot one, for a lower-is-better
// and a higher-is-better metric.
func TestBestCkptDescribe(t *testing.T) {
	mcc := func(v float64) *float64 { return &v }
	loss := &train.Best{Step: 40, Metric: "eval_loss", Value: 0.5}
	acc := &train.Best{Step: 20, Metric: "eval_mcc", Value: 0.3}
	for _, c := range []struct {
		name     string
		best     *train.Best
		dir      string
		zeroShot *train.EvalResult
		want     []string
		not      []string
	}{
		{"adapter, trained better", loss, "runs/x/best", &train.EvalResult{Loss: 0.9}, []string{"eval_loss 0.5000 at step 40", "sora eval --adapter runs/x/best"}, []string{"zero-shot"}},
		{"loss no better than zero-shot", loss, "runs/x/best", &train.EvalResult{Loss: 0.4}, []string{"no evaluation during training beat the zero-shot eval_loss 0.4000"}, nil},
		{"mcc better", acc, "", &train.EvalResult{MCC: mcc(0.1)}, []string{"eval_mcc 0.3000 at step 20"}, []string{"zero-shot", "sora eval"}},
		{"mcc no better", acc, "", &train.EvalResult{MCC: mcc(0.5)}, []string{"beat the zero-shot eval_mcc 0.5000"}, nil},
		{"mcc equal", acc, "", &train.EvalResult{MCC: mcc(0.3)}, []string{"beat the zero-shot"}, nil},
		{"no zero-shot", acc, "", nil, nil, []string{"zero-shot"}},
		{"NaN zero-shot loss", loss, "", &train.EvalResult{Loss: math.NaN()}, []string{"the zero-shot eval_loss was NaN, so there is nothing to compare it with"}, []string{"beat"}},
		{"NaN zero-shot mcc", acc, "", &train.EvalResult{MCC: mcc(math.NaN())}, []string{"the zero-shot eval_mcc was NaN"}, []string{"beat"}},
	} {
		got := describeBest(c.best, c.dir, c.dir != "", c.zeroShot)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", c.name, got, w)
			}
		}
		for _, w := range c.not {
			if strings.Contains(got, w) {
				t.Errorf("%s: %q says %q", c.name, got, w)
			}
		}
	}
}

// TestRunSummaryNonFinite: run.json holds evaluations with a NaN or
// infinite loss (as text, the way the trainer's files hold them) and
// reads them back.
func TestRunSummaryNonFinite(t *testing.T) {
	ev := &train.EvalResult{Loss: math.NaN(), Accuracy: 0.5, Targets: 4, Sequences: 4}
	in := runSummary{Command: "finetune", ZeroShot: &train.EvalResult{Loss: math.Inf(1), Sequences: 4}, Final: ev,
		Best: &train.Best{Step: 2, Metric: "eval_accuracy", Value: 0.5, Eval: ev}}
	path := filepath.Join(t.TempDir(), "run.json")
	if err := writeJSON(path, in); err != nil {
		t.Fatalf("writing run.json: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out runSummary
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("reading run.json back: %v\n%s", err, b)
	}
	if out.ZeroShot == nil || !math.IsInf(out.ZeroShot.Loss, 1) || out.Final == nil || !math.IsNaN(out.Final.Loss) || out.Final.Accuracy != 0.5 ||
		out.Best == nil || out.Best.Eval == nil || !math.IsNaN(out.Best.Eval.Loss) {
		t.Errorf("run.json read back zero-shot %+v, final %+v, best %+v", out.ZeroShot, out.Final, out.Best)
	}
}
