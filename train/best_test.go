package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// TestSelectionJudge plays scripted sequences of evaluation results (one
// every 10 steps) through the selection's judgment and early stopping
// rule: which evaluations are the best so far (strictly better than all
// before), and after which one the patience runs out.
func TestSelectionJudge(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		name     string
		higher   bool
		delta    float64
		patience int
		values   []float64
		best     []int // the steps judged best so far
		stale    []int // the patience count after each evaluation
		stop     int   // the step after which the run stops (0: never)
	}{
		{"loss falling", false, 0, 2, []float64{3, 2, 1}, []int{10, 20, 30}, []int{0, 0, 0}, 0},
		{"loss rises after its best", false, 0, 3, []float64{3, 2, 2.5, 2.2, 2.1, 1}, []int{10, 20}, []int{0, 0, 1, 2, 3}, 50},
		{"an equal value is no improvement", false, 0, 2, []float64{2, 2, 2}, []int{10}, []int{0, 1, 2}, 30},
		{"a new best resets the count", false, 0, 2, []float64{2, 2.1, 1.9, 2.0, 1.95, 1.8}, []int{10, 30}, []int{0, 1, 0, 1, 2}, 50},
		{"accuracy, higher is better", true, 0, 3, []float64{0.5, 0.6, 0.6, 0.55, 0.7, 0.7}, []int{10, 20, 50}, []int{0, 0, 1, 2, 0, 1}, 0},
		{"negative MCC", true, 0, 1, []float64{-0.2, -0.1, -0.3}, []int{10, 20}, []int{0, 0, 1}, 30},
		// Each value a new best, none better by more than the delta: the
		// best moves but the patience runs out (Hugging Face's threshold).
		{"small gains under the delta", false, 0.1, 3, []float64{3, 2.95, 2.9, 2.85}, []int{10, 20, 30, 40}, []int{0, 1, 2, 3}, 40},
		// The gain is measured from the best so far (2.95), not from the
		// last improvement (3).
		{"delta from the best so far", false, 0.1, 3, []float64{3, 2.95, 2.8, 2.75}, []int{10, 20, 30, 40}, []int{0, 1, 0, 1}, 0},
		{"delta, higher is better", true, 0.05, 2, []float64{0.5, 0.54, 0.6, 0.62, 0.63}, []int{10, 20, 30, 40, 50}, []int{0, 1, 0, 1, 2}, 50},
		{"NaN is never best", false, 0, 3, []float64{nan, 3, nan, 4, 2}, []int{20, 50}, []int{1, 0, 1, 2, 0}, 0},
		{"no patience: never stops", false, 0, 0, []float64{1, 2, 3, 4}, []int{10}, []int{0, 1, 2, 3}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var s selection
			var best, stale []int
			stop := 0
			for i, v := range c.values {
				step := 10 * (i + 1)
				if s.judge(step, v, c.higher, c.delta) {
					best = append(best, step)
					s.Best = &Best{Step: step, Value: v}
				}
				stale = append(stale, s.Stale)
				if s.stops(c.patience) {
					stop = step
					break
				}
			}
			if !slices.Equal(best, c.best) {
				t.Errorf("best at steps %v, want %v", best, c.best)
			}
			if !slices.Equal(stale, c.stale) {
				t.Errorf("patience counts %v, want %v", stale, c.stale)
			}
			if stop != c.stop {
				t.Errorf("stopped after step %d, want %d", stop, c.stop)
			}
		})
	}
}

// TestSelectionJudgesAStepOnce checks that an evaluation of a step already
// judged (a resumed run's final evaluation of a finished run) neither
// counts against the patience nor becomes a new best.
func TestSelectionJudgesAStepOnce(t *testing.T) {
	s := selection{}
	if !s.judge(10, 2, false, 0) {
		t.Fatal("the first evaluation is not the best")
	}
	s.Best = &Best{Step: 10, Value: 2}
	s.judge(20, 3, false, 0)
	if s.judge(20, 1, false, 0) || s.Stale != 1 || s.Judged != 20 {
		t.Errorf("judging step 20 again: stale %d, judged %d; want 1 and 20, and no new best", s.Stale, s.Judged)
	}
}

func TestParseMetric(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Metric
		err  bool
	}{
		{"", MetricLoss, false}, {"loss", MetricLoss, false}, {"eval_loss", MetricLoss, false},
		{"Accuracy", MetricAccuracy, false}, {"eval_mcc", MetricMCC, false}, {" MCC ", MetricMCC, false},
		{"f1", "", true}, {"eval_", "", true}, {"answer_accuracy", "", true},
	} {
		got, err := ParseMetric(c.in)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("ParseMetric(%q) = %q, %v; want %q, error %v", c.in, got, err, c.want, c.err)
		}
	}
	if !MetricMCC.HigherIsBetter() || !MetricAccuracy.HigherIsBetter() || MetricLoss.HigherIsBetter() {
		t.Error("loss is lower-is-better, accuracy and mcc higher-is-better")
	}
	if err := MetricMCC.ForTask(LM); err == nil || !strings.Contains(err.Error(), "loss and accuracy") {
		t.Errorf("mcc for lm: %v; want an error naming loss and accuracy", err)
	}
	for _, m := range TaskMetrics(Classify) {
		if err := m.ForTask(Classify); err != nil {
			t.Errorf("%s for classify: %v", m, err)
		}
	}
}

func TestOptionsValidateSelection(t *testing.T) {
	ok := Options{Steps: 10, EvalEvery: 2, KeepBest: true, EarlyStopping: 2, EarlyStoppingDelta: 0.01, BestMetric: "eval_mcc", Out: "x"}
	if err := ok.WithDefaults(10).Validate(); err != nil {
		t.Fatalf("%+v: %v", ok, err)
	}
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Steps: 10, KeepBest: true, Out: "x"}, "eval-every = 0"},
		{Options{Steps: 10, EarlyStopping: 3}, "eval-every = 0"},
		{Options{Steps: 10, EvalEvery: 2, EarlyStopping: -1}, "early-stopping = -1"},
		{Options{Steps: 10, EvalEvery: 2, EarlyStopping: 1, EarlyStoppingDelta: -0.1}, "early-stopping-delta = -0.1"},
		{Options{Steps: 10, EvalEvery: 2, EarlyStopping: 1, EarlyStoppingDelta: math.Inf(1)}, "early-stopping-delta"},
		{Options{Steps: 10, EvalEvery: 2, EarlyStoppingDelta: 0.1}, "set early-stopping too"},
		{Options{Steps: 10, EvalEvery: 2, BestMetric: "accuracy"}, "best-metric = accuracy"},
		{Options{Steps: 10, EvalEvery: 2, KeepBest: true, BestMetric: "f1", Out: "x"}, "best-metric = f1: want loss, accuracy or mcc"},
		{Options{Steps: 10, EvalEvery: 2, KeepBest: true}, "keep-best needs the output folder"},
	} {
		err := c.o.WithDefaults(10).Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one about %q", c.o, err, c.want)
		}
	}
}

// saveTrainable returns a Trainer.SaveAdapter that writes pm's trainable
// tensors, as they are, into the folder.
func saveTrainable(pm *peft.Model) func(dir string) error {
	return func(dir string) error { return saveParams(filepath.Join(dir, "weights.safetensors"), pm.Trainable()) }
}

// selectOptions are the options of the selection tests: a constant rate,
// so that a run cut short at a step holds the weights a longer run holds
// there, and a high one, under which the held-out loss (see selectData)
// falls, then wavers (on this machine: best at step 20, stop after 24).
func selectOptions(out string) Options {
	return Options{Steps: 40, Batch: 4, LR: 3e-2, Schedule: "constant", Seed: 5, EvalEvery: 2, SaveEvery: 10,
		KeepBest: true, EarlyStopping: 2, Out: out, NoSpectra: true}
}

// selectData returns 8 random training sequences and 8 held-out ones,
// half of them training sequences: the half the model learns by heart
// lowers the held-out loss, the other half raises it.
func selectData() (train, eval []data.Sequence) {
	train = randomSeqs(8, tinyConfig().VocabSize, 21)
	return train, append(slices.Clone(train[:4]), randomSeqs(4, tinyConfig().VocabSize, 22)...)
}

// expectSelection applies the rule, as the documentation states it, to
// the evaluations that metrics.jsonl records (lower loss is better, delta
// 0): the steps that were the best so far, and the step after which the
// patience runs out (0: never).
func expectSelection(t *testing.T, rs []Record, patience int) (bestSteps []int, stop int) {
	t.Helper()
	best := math.Inf(1)
	stale := 0
	for _, r := range rs {
		if r.EvalLoss == nil {
			continue
		}
		if *r.EvalLoss < best {
			best = *r.EvalLoss
			bestSteps = append(bestSteps, r.Step)
			stale = 0
		} else {
			stale++
		}
		if stale == patience && stop == 0 {
			stop = r.Step
		}
	}
	return bestSteps, stop
}

// readFiles returns the files of dir by name, but for skip.
func readFiles(t *testing.T, dir string, skip ...string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		if slices.Contains(skip, e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

// sameFiles reports where two folders' files differ ("" where they hold
// the same files, byte for byte).
func sameFiles(a, b map[string][]byte) string {
	if len(a) != len(b) || len(a) == 0 {
		return "different sets of files"
	}
	for name, x := range a {
		if y, ok := b[name]; !ok || !bytes.Equal(x, y) {
			return name + " differs"
		}
	}
	return ""
}

// cancelOnMessage is a Progress that cancels the run's context when it is
// shown a message that starts with prefix.
type cancelOnMessage struct {
	Quiet
	prefix string
	cancel func()
}

func (c *cancelOnMessage) Message(s string) {
	if strings.HasPrefix(s, c.prefix) {
		c.cancel()
	}
}

// runWithProgress trains a fresh tiny LoRA model with options o, as runTo
// does, under a context that prog cancels.
func runWithProgress(t *testing.T, o Options, prog *cancelOnMessage) (*Result, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prog.cancel = cancel
	b := openCPU(t)
	_, pm := tinyModel(t, b, peft.LoRA, 3)
	tr, ev := selectData()
	return (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: tr, Eval: ev, Options: o, SaveAdapter: saveTrainable(pm), Progress: prog}).Run(ctx)
}

// runTo trains a fresh tiny LoRA model with options o and returns the
// result (failing on an error).
func runTo(t *testing.T, o Options, stopAt int) (*Result, error) {
	t.Helper()
	b := openCPU(t)
	_, pm := tinyModel(t, b, peft.LoRA, 3)
	tr, ev := selectData()
	return runStoppingAt(&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: tr, Eval: ev, Options: o, SaveAdapter: saveTrainable(pm)}, stopAt)
}

// TestEarlyStoppingRun trains until early stopping ends the run and checks
// it against the rule applied to the evaluations it logged: it stops
// after the evaluation the rule names, its best/ is that of the last
// evaluation marked best, whose weights equal, byte for byte, those that
// the final save of a run of that many steps writes, and its final
// adapter equals that of a run as long as it trained. The checkpoint
// records the stop, and a resume trains no further.
func TestEarlyStoppingRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "es")
	res, err := runTo(t, selectOptions(out), -1)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ReadMetrics(filepath.Join(out, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	wantBest, wantStop := expectSelection(t, rs, 2)
	if wantStop == 0 || res.EarlyStop == nil {
		t.Fatalf("the run did not stop early (stop %v, rule %d); the test needs evaluations that turn up", res.EarlyStop, wantStop)
	}
	if res.Steps != wantStop || res.EarlyStop.Step != wantStop {
		t.Errorf("stopped after step %d (%+v); the rule stops after step %d", res.Steps, res.EarlyStop, wantStop)
	}
	var marked []int
	for _, r := range rs {
		if r.Best {
			marked = append(marked, r.Step)
		}
		if r.Step > wantStop {
			t.Errorf("metrics.jsonl has a record of step %d, after the stop", r.Step)
		}
	}
	if !slices.Equal(marked, wantBest) {
		t.Errorf("metrics.jsonl marks steps %v best; the rule says %v", marked, wantBest)
	}
	bestStep := wantBest[len(wantBest)-1]
	if bestStep == wantStop || bestStep == 2 {
		t.Fatalf("best at step %d of %d: the test needs a best in the middle", bestStep, wantStop)
	}
	rec, err := ReadBest(out)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Step != bestStep || rec.Metric != "eval_loss" || res.Best == nil || res.Best.Step != bestStep || res.BestDir != filepath.Join(out, BestDir) {
		t.Errorf("best.json %+v, result %+v in %q; want step %d of eval_loss in %s", rec, res.Best, res.BestDir, bestStep, filepath.Join(out, BestDir))
	}
	for _, r := range rs {
		if r.Step == bestStep && r.EvalLoss != nil && *r.EvalLoss != rec.Value {
			t.Errorf("best.json's value %v, metrics.jsonl's %v", rec.Value, *r.EvalLoss)
		}
	}
	if !strings.Contains(res.EarlyStop.Reason, "2 evaluations in a row") {
		t.Errorf("reason %q", res.EarlyStop.Reason)
	}
	st, err := readState(filepath.Join(out, CheckpointsDir, "step-"+pad6(wantStop)))
	if err != nil {
		t.Fatal(err)
	}
	if st.Selection == nil || st.Selection.Stop == nil || st.Selection.Best.Step != bestStep || st.Selection.Stale != 2 {
		t.Errorf("the final checkpoint's selection %+v; want stopped, best %d, 2 without improvement", st.Selection, bestStep)
	}

	// Runs of exactly bestStep and wantStop steps, without selection.
	for _, c := range []struct {
		steps int
		dir   string
	}{{bestStep, filepath.Join(out, BestDir)}, {wantStop, filepath.Join(out, AdapterDir)}} {
		o := selectOptions(filepath.Join(dir, "plain-"+pad6(c.steps)))
		o.Steps, o.KeepBest, o.EarlyStopping, o.EvalEvery = c.steps, false, 0, 0
		if _, err := runTo(t, o, -1); err != nil {
			t.Fatal(err)
		}
		if d := sameFiles(readFiles(t, c.dir, BestFile), readFiles(t, filepath.Join(o.Out, AdapterDir))); d != "" {
			t.Errorf("%s against the adapter of a %d-step run: %s", c.dir, c.steps, d)
		}
	}

	// A resume of the stopped run trains nothing and keeps best/.
	before := readFiles(t, filepath.Join(out, BestDir))
	o := selectOptions(out)
	o.Resume = true
	res2, err := runTo(t, o, -1)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Steps != wantStop || res2.EarlyStop == nil || res2.Best.Step != bestStep {
		t.Errorf("resumed: %d steps, stop %+v, best %+v; want %d steps, stopped, best %d", res2.Steps, res2.EarlyStop, res2.Best, wantStop, bestStep)
	}
	if d := sameFiles(before, readFiles(t, filepath.Join(out, BestDir))); d != "" {
		t.Errorf("best/ after the resume: %s", d)
	}
}

func pad6(n int) string { return fmt.Sprintf("%06d", n) }

// TestSelectionResume interrupts a run that keeps its best and stops
// early, resumes it in fresh objects, and checks that it stops where the
// uninterrupted run stops with the same best/ byte for byte and the same
// evaluations logged. It is interrupted in two places: in the step after
// the first of the evaluations without improvement that stop it, so that
// the patience count must survive in the checkpoint (a count lost at the
// resume would stop the run later); and in the step before that
// evaluation, which the interruption then skips (the evaluation begins
// cancelled), so that the resume must take and judge it before it trains
// on (without it, the run would stop later too); and there again, with the
// resume interrupted as that evaluation ends, whose checkpoint must then
// record the judgment (the log has the evaluation, so a second resume
// does not take it again); and there again, with the resume killed
// between logging that evaluation and recording its judgment in the
// checkpoint (the checkpoint's state put back as the interrupted run
// wrote it, the log holding the evaluation), so that the second resume
// must take it again, judged by the checkpoint rather than the log,
// without logging it twice. A resume with another patience, metric,
// keep-best or evaluation interval is refused naming it.
func TestSelectionResume(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	resA, err := runTo(t, selectOptions(a), -1)
	if err != nil {
		t.Fatal(err)
	}
	if resA.EarlyStop == nil {
		t.Fatal("the uninterrupted run did not stop early")
	}
	rs, err := ReadMetrics(filepath.Join(a, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	// The evaluation before the last: the first of the two without
	// improvement.
	mid := resA.Steps - selectOptions("").EvalEvery
	for _, r := range rs {
		if r.Step == mid && r.EvalLoss != nil && r.Best {
			t.Fatalf("the evaluation at step %d was a best", mid)
		}
	}

	for i, c := range []struct {
		name   string
		stopAt int // the steps done when the step the context is cancelled in begins
		step   int // the step the run stops after
		judged int // the last evaluation its checkpoint has judged
		again  bool
		crash  bool // with again: the resume dies before its judgment is saved
	}{
		{"after the evaluation", mid, mid + 1, mid, false, false},
		{"at the evaluation", mid - 1, mid, mid - selectOptions("").EvalEvery, false, false},
		{"at the evaluation, then after the resume's", mid - 1, mid, mid - selectOptions("").EvalEvery, true, false},
		{"at the evaluation, then a crash after the resume's", mid - 1, mid, mid - selectOptions("").EvalEvery, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := filepath.Join(dir, fmt.Sprint("b", i))
			_, err := runTo(t, selectOptions(b), c.stopAt)
			var ie *InterruptedError
			if !errors.As(err, &ie) || ie.Step != c.step {
				t.Fatalf("interrupted run: %v; want an interruption after step %d", err, c.step)
			}
			st, err := readState(ie.Checkpoint)
			if err != nil {
				t.Fatal(err)
			}
			if sel := st.Selection; sel == nil || sel.Best == nil || sel.Judged != c.judged || c.judged == mid && sel.Stale < 1 {
				t.Fatalf("the checkpoint after step %d records selection %+v; want a best, judged up to step %d (with a patience count when that is step %d)", c.step, sel, c.judged, mid)
			}

			if i == 0 {
				for _, c := range []struct {
					change func(*Options)
					want   string
				}{
					{func(o *Options) { o.EarlyStopping = 5 }, "early-stopping 2 (now 5)"},
					{func(o *Options) { o.KeepBest = false }, "keep-best true (now false)"},
					{func(o *Options) { o.BestMetric = "accuracy" }, "best-metric loss (now accuracy)"},
					{func(o *Options) { o.EvalEvery = 4 }, "eval-every 2 (now 4)"},
				} {
					o := selectOptions(b)
					o.Resume = true
					c.change(&o)
					if _, err := runTo(t, o, -1); err == nil || !strings.Contains(err.Error(), c.want) {
						t.Errorf("resume: %v; want a refusal naming %q", err, c.want)
					}
				}
			}

			statePath := filepath.Join(ie.Checkpoint, stateFile)
			unjudged, err := os.ReadFile(statePath)
			if err != nil {
				t.Fatal(err)
			}
			o := selectOptions(b)
			o.Resume = true
			if c.again {
				_, err := runWithProgress(t, o, &cancelOnMessage{prefix: fmt.Sprintf("eval at step %d:", mid)})
				if !errors.As(err, &ie) || ie.Step != mid {
					t.Fatalf("resume interrupted as its evaluation ends: %v; want an interruption after step %d", err, mid)
				}
				if st, err := readState(ie.Checkpoint); err != nil || st.Selection == nil || st.Selection.Judged != mid || st.Selection.Stale < 1 {
					t.Fatalf("the checkpoint after the resume's evaluation records selection %+v (%v); want it judged up to step %d, with a patience count", st.Selection, err, mid)
				}
			}
			if c.crash {
				// What a kill between the evaluation's line in
				// metrics.jsonl and the judgment's save leaves: the log
				// has it (the evaluation was no best, so best/ is as
				// before), the checkpoint has not judged it.
				if evs := evalRecords(t, b); len(evs) == 0 || evs[len(evs)-1][0] != uint64(mid) {
					t.Fatalf("metrics.jsonl's evaluations %v; want the last at step %d", evs, mid)
				}
				if err := os.WriteFile(statePath, unjudged, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			resC, err := runTo(t, o, -1)
			if err != nil {
				t.Fatal(err)
			}
			if resC.Steps != resA.Steps || resC.EarlyStop == nil || resC.Best.Step != resA.Best.Step || resC.Best.Value != resA.Best.Value {
				t.Errorf("resumed run: %d steps, stop %+v, best %+v; the uninterrupted run: %d steps, best %+v", resC.Steps, resC.EarlyStop, resC.Best, resA.Steps, resA.Best)
			}
			if d := sameFiles(readFiles(t, filepath.Join(a, BestDir)), readFiles(t, filepath.Join(b, BestDir))); d != "" {
				t.Errorf("best/ of the resumed run against the uninterrupted one's: %s", d)
			}
			if d := sameFiles(readFiles(t, filepath.Join(a, AdapterDir)), readFiles(t, filepath.Join(b, AdapterDir))); d != "" {
				t.Errorf("adapter/ of the resumed run against the uninterrupted one's: %s", d)
			}
			if ea, eb := evalRecords(t, a), evalRecords(t, b); !slices.Equal(ea, eb) {
				t.Errorf("evaluations logged (step, loss bits): resumed %v, uninterrupted %v", eb, ea)
			}
		})
	}
}

// TestBestRepairedOnResume stops a run right after the checkpoint of a
// new best, removes best/ as a kill between the two saves would have left
// it, and checks that the resume writes best/ again from the checkpoint's
// weights, byte for byte as it was, and says so; and that a fresh run in
// a folder with an earlier run's best/ removes it.
func TestBestRepairedOnResume(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	// Stopped once the first evaluation, a best at step 2, has ended: its
	// checkpoint and best/ are written before the run stops.
	_, err := runWithProgress(t, selectOptions(out), &cancelOnMessage{prefix: "eval at step 2:"})
	var ie *InterruptedError
	if !errors.As(err, &ie) || ie.Step != 2 {
		t.Fatalf("%v; want an interruption after step 2", err)
	}
	want := readFiles(t, filepath.Join(out, BestDir))
	if rec, err := ReadBest(out); err != nil || rec.Step != 2 {
		t.Fatalf("best.json %+v, %v; want step 2", rec, err)
	}
	if err := os.RemoveAll(filepath.Join(out, BestDir)); err != nil {
		t.Fatal(err)
	}
	b := openCPU(t)
	_, pm := tinyModel(t, b, peft.LoRA, 3)
	tr, ev := selectData()
	o := selectOptions(out)
	o.Resume = true
	msgs := &messages{}
	var got map[string][]byte
	trainer := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: tr, Eval: ev, Options: o, SaveAdapter: saveTrainable(pm), Progress: msgs}
	trainer.beforeStep = func(done int) {
		if got == nil {
			got = readFiles(t, filepath.Join(out, BestDir))
		}
	}
	if _, err := trainer.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := sameFiles(want, got); d != "" {
		t.Errorf("best/ written at the resume: %s", d)
	}
	if !slices.ContainsFunc(msgs.got, func(m string) bool { return strings.HasPrefix(m, "wrote "+filepath.Join(out, BestDir)) }) {
		t.Errorf("the resume does not say it wrote best/: %q", msgs.got)
	}

	// A fresh run into the folder (its checkpoints gone) removes the
	// earlier best/ before it trains.
	if err := os.RemoveAll(filepath.Join(out, CheckpointsDir)); err != nil {
		t.Fatal(err)
	}
	o = selectOptions(out)
	o.KeepBest, o.EarlyStopping, o.EvalEvery, o.Steps = false, 0, 0, 1
	if _, err := runTo(t, o, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, BestDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the earlier run's best/ is still there: %v", err)
	}
}

// tinyClassifier is tinyModel with LoRA and a new trainable head of two
// classes, as sora finetune --task classify trains.
func tinyClassifier(t *testing.T, b backend.Backend) (*llama.Model, *peft.Model) {
	t.Helper()
	m, pm := tinyModel(t, b, peft.LoRA, 4)
	if err := m.AddScoreHead(2, 1); err != nil {
		t.Fatal(err)
	}
	for _, p := range llama.LayerParams(m.Score) {
		if err := p.SetTrainable(true); err != nil {
			t.Fatal(err)
		}
	}
	return m, pm
}

// TestKeepBestByMCC keeps the best of a classifier by its MCC, which is
// higher-is-better: best.json holds the largest eval_mcc that
// metrics.jsonl records, at its first step.
func TestKeepBestByMCC(t *testing.T) {
	b := openCPU(t)
	m, pm := tinyClassifier(t, b)
	out := filepath.Join(t.TempDir(), "cls")
	tr, ev := randomSeqs(16, tinyConfig().VocabSize, 31), randomSeqs(16, tinyConfig().VocabSize, 32)
	o := Options{Steps: 16, Batch: 4, LR: 1e-2, Schedule: "constant", Seed: 2, EvalEvery: 2, KeepBest: true, BestMetric: "mcc", Out: out, NoSpectra: true}
	res, err := (&Trainer{Model: m, Adapter: pm, Task: Classify, Classes: 2, Train: tr, Eval: ev, Options: o, SaveAdapter: saveTrainable(pm)}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ReadMetrics(filepath.Join(out, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	top, at, distinct := math.Inf(-1), 0, map[float64]bool{}
	for _, r := range rs {
		if r.EvalMCC == nil {
			continue
		}
		distinct[*r.EvalMCC] = true
		if *r.EvalMCC > top {
			top, at = *r.EvalMCC, r.Step
		}
	}
	if len(distinct) < 2 {
		t.Fatalf("every evaluation has the same MCC; the test would choose nothing")
	}
	rec, err := ReadBest(out)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Step != at || rec.Value != top || rec.Metric != "eval_mcc" || res.Best.Step != at {
		t.Errorf("best.json %+v; metrics.jsonl's highest eval_mcc is %v at step %d", rec, top, at)
	}

	// LM evaluations have no MCC: refused before training.
	m2, pm2 := tinyModel(t, b, peft.LoRA, 4)
	o.Out = filepath.Join(t.TempDir(), "lm")
	_, err = (&Trainer{Model: m2, Adapter: pm2, Train: tr, Eval: ev, Options: o, SaveAdapter: saveTrainable(pm2)}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "reports loss and accuracy") {
		t.Errorf("best-metric mcc with an LM: %v", err)
	}
	if _, err := os.Stat(filepath.Join(o.Out, MetricsFile)); err == nil {
		t.Error("the refused run wrote metrics")
	}
	// Without evaluation data, or without SaveAdapter.
	o.BestMetric = ""
	for _, tc := range []struct {
		tr   *Trainer
		want string
	}{
		{&Trainer{Model: m2, Adapter: pm2, Train: tr, Options: o, SaveAdapter: saveTrainable(pm2)}, "no evaluation data"},
		{&Trainer{Model: m2, Adapter: pm2, Train: tr, Eval: ev, Options: o}, "no SaveAdapter"},
	} {
		if _, err := tc.tr.Run(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v; want %q", err, tc.want)
		}
	}
}

// TestKeepBestAtTheEnd keeps the best of a run whose final evaluation is
// its best (held-out data the model learns by heart): best/ then holds
// the files of adapter/, byte for byte; the final checkpoint records the
// judgment of that evaluation, taken after it was written, so that a
// resume of the finished run finds best/ as its checkpoint says, warns of
// nothing and judges nothing again.
func TestKeepBestAtTheEnd(t *testing.T) {
	b := openCPU(t)
	out := filepath.Join(t.TempDir(), "run")
	tr, _ := selectData()
	o := selectOptions(out)
	o.Steps, o.LR, o.EarlyStopping, o.EvalEvery = 9, 1e-2, 0, 4 // evaluations after steps 4, 8 and 9
	run := func(o Options) (*Result, *messages) {
		_, pm := tinyModel(t, b, peft.LoRA, 3)
		msgs := &messages{}
		res, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: tr, Eval: tr, Options: o, SaveAdapter: saveTrainable(pm), Progress: msgs}).Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return res, msgs
	}
	res, _ := run(o)
	if res.Best == nil || res.Best.Step != 9 {
		t.Fatalf("best %+v; want the final evaluation's (step 9)", res.Best)
	}
	if d := sameFiles(readFiles(t, filepath.Join(out, BestDir), BestFile), readFiles(t, filepath.Join(out, AdapterDir))); d != "" {
		t.Errorf("best/ against adapter/: %s", d)
	}
	st, err := readState(filepath.Join(out, CheckpointsDir, "step-000009"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Selection == nil || st.Selection.Judged != 9 || st.Selection.Best == nil || st.Selection.Best.Step != 9 {
		t.Errorf("the final checkpoint's selection %+v; want step 9 judged, and best", st.Selection)
	}
	o.Resume = true
	res2, msgs := run(o)
	if w := msgs.warnings(); len(w) > 0 || res2.Best.Step != 9 || res2.BestDir == "" {
		t.Errorf("resuming the finished run: best %+v in %q, warnings %q", res2.Best, res2.BestDir, w)
	}
}

// TestBestNonFiniteRoundTrip: an evaluation with a NaN loss (and an
// infinite best value) is written into a checkpoint's trainer state and
// best.json, which JSON numbers cannot hold, as text under non_finite,
// and read back as it was.
func TestBestNonFiniteRoundTrip(t *testing.T) {
	mcc := math.Inf(-1)
	for _, b := range []*Best{
		{Step: 4, Epoch: 0.5, Metric: "eval_accuracy", Value: 0.75, Eval: &EvalResult{Loss: math.NaN(), Targets: 8, Accuracy: 0.75, MCC: &mcc, Sequences: 8}},
		{Step: 2, Epoch: 0.25, Metric: "eval_loss", Value: math.Inf(1), Eval: &EvalResult{Loss: math.Inf(1), Targets: 3, Accuracy: 0, Sequences: 3}},
	} {
		same := func(got *Best) bool {
			g, w := got.Eval, b.Eval
			sameF := func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) }
			return got.Step == b.Step && got.Epoch == b.Epoch && got.Metric == b.Metric && sameF(got.Value, b.Value) && g != nil &&
				sameF(g.Loss, w.Loss) && g.Targets == w.Targets && g.Accuracy == w.Accuracy && g.Sequences == w.Sequences &&
				(g.MCC == nil) == (w.MCC == nil) && (g.MCC == nil || sameF(*g.MCC, *w.MCC))
		}
		dir := t.TempDir()
		if err := writeState(dir, trainerState{Step: 4, TotalSteps: 8, Selection: &selection{Best: b, Judged: 4}}); err != nil {
			t.Fatalf("writing the trainer state: %v", err)
		}
		st, err := readState(dir)
		if err != nil {
			t.Fatalf("reading the trainer state: %v", err)
		}
		if st.Selection == nil || st.Selection.Best == nil || !same(st.Selection.Best) {
			t.Errorf("trainer state read back %+v; want %+v", st.Selection, b)
		}
		raw, _ := os.ReadFile(filepath.Join(dir, stateFile))
		if !strings.Contains(string(raw), `"non_finite"`) {
			t.Errorf("trainer_state.json holds no non_finite:\n%s", raw)
		}
		tr := &Trainer{Options: Options{Out: dir}, SaveAdapter: func(string) error { return nil }}
		if _, err := tr.writeBest(b); err != nil {
			t.Fatalf("writing best/: %v", err)
		}
		got, err := ReadBest(dir)
		if err != nil {
			t.Fatalf("reading best.json: %v", err)
		}
		if !same(got) {
			t.Errorf("best.json read back %+v (eval %+v); want %+v (eval %+v)", got, got.Eval, b, b.Eval)
		}
	}
	// Finite values stay numbers, where they always were.
	b, err := json.Marshal(Best{Step: 1, Metric: "eval_loss", Value: 1.5, Eval: &EvalResult{Loss: 1.5, Targets: 2, Sequences: 1}})
	if err != nil || string(b) != `{"step":1,"epoch":0,"metric":"eval_loss","value":1.5,"eval":{"loss":1.5,"targets":2,"accuracy":0,"sequences":1}}` {
		t.Errorf("finite best as JSON: %s (%v)", b, err)
	}
	for _, bad := range []string{`{"loss":1,"non_finite":{"loss":"7"}}`, `{"non_finite":{"targets":"NaN"}}`} {
		var e EvalResult
		if err := json.Unmarshal([]byte(bad), &e); err == nil {
			t.Errorf("%s read as %+v; want an error", bad, e)
		}
	}
}

// TestNaNEvaluationKeepsBest runs a classifier whose embedding of a token
// that only the evaluation data uses is NaN, so that every evaluation's
// loss is NaN, keeping the best by accuracy: the first evaluation becomes
// the best, NaN loss and all, and the run still checkpoints, writes
// best/ and finishes.
func TestNaNEvaluationKeepsBest(t *testing.T) {
	b := openCPU(t)
	m, pm := tinyClassifier(t, b)
	// randomSeqs never uses token 2: only the evaluation sequence that is
	// given it reads its NaN embedding.
	h, err := m.Embed.Download()
	if err != nil {
		t.Fatal(err)
	}
	h[2*tinyConfig().Dim] = float32(math.NaN())
	b.Upload(m.Embed.Tensor(), h)
	tr, ev := randomSeqs(16, tinyConfig().VocabSize, 31), randomSeqs(8, tinyConfig().VocabSize, 32)
	ev[0].Tokens[len(ev[0].Tokens)-1] = 2
	out := filepath.Join(t.TempDir(), "cls")
	o := Options{Steps: 6, Batch: 4, LR: 1e-2, Schedule: "constant", Seed: 2, EvalEvery: 2, KeepBest: true, BestMetric: "accuracy", Out: out, NoSpectra: true}
	res, err := (&Trainer{Model: m, Adapter: pm, Task: Classify, Classes: 2, Train: tr, Eval: ev, Options: o, SaveAdapter: saveTrainable(pm)}).Run(context.Background())
	if err != nil {
		t.Fatalf("the run failed: %v", err)
	}
	if res.Steps != 6 || res.Best == nil || res.Best.Eval == nil || !math.IsNaN(res.Best.Eval.Loss) || res.Eval == nil || !math.IsNaN(res.Eval.Loss) {
		t.Fatalf("result: %d steps, best %+v, final eval %+v; want 6 steps and NaN losses", res.Steps, res.Best, res.Eval)
	}
	rec, err := ReadBest(out)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Step != res.Best.Step || rec.Eval == nil || !math.IsNaN(rec.Eval.Loss) || rec.Value != res.Best.Value {
		t.Errorf("best.json %+v; want the run's best %+v with its NaN loss", rec, res.Best)
	}
	dir, err := LatestCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	st, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Step != 6 || st.Selection == nil || st.Selection.Best == nil || !math.IsNaN(st.Selection.Best.Eval.Loss) {
		t.Errorf("checkpoint %s: step %d, selection %+v", dir, st.Step, st.Selection)
	}
}
