package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// cancelOnDownload is a backend that calls cancel after each Download
// once armed: in an evaluation, which downloads each batch's logits, the
// context is then cancelled after its first batch. Used by pointer: the
// graph compares backends.
type cancelOnDownload struct {
	backend.Backend
	armed  *bool
	cancel func()
}

func (c *cancelOnDownload) Download(dst []float32, src backend.Tensor) error {
	err := c.Backend.Download(dst, src)
	if *c.armed {
		c.cancel()
	}
	return err
}

// armOnStepReport is a Progress that arms a cancelOnDownload when step
// step is reported (after the step, before the evaluation that follows
// it), keeping the messages.
type armOnStepReport struct {
	messages
	step  int
	armed *bool
}

func (a *armOnStepReport) Step(s Status) {
	if s.Step == a.step {
		*a.armed = true
	}
}

// TestEvaluateCancelledMidway cancels the context of Evaluate after its
// first batch of three: it must stop before the second, with an error
// wrapping context.Canceled that says how far it got, and no result.
func TestEvaluateCancelledMidway(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	armed := true
	b := &cancelOnDownload{openCPU(t), &armed, cancel}
	m, _ := tinyModel(t, b, "", 4)
	seqs := randomSeqs(6, tinyConfig().VocabSize, 9)
	ev, err := Evaluate(ctx, m, LM, seqs, 2, 0)
	if !errors.Is(err, context.Canceled) || ev != nil {
		t.Fatalf("cancelled after the first batch: result %v, error %v; want none and one wrapping %v", ev, err, context.Canceled)
	}
	if !strings.Contains(err.Error(), "after 1 of 3 batches") {
		t.Errorf("error %q; want it to say it stopped after 1 of 3 batches", err)
	}
}

// evalRecords returns the evaluations metrics.jsonl of out records, each
// as its step and the bits of its loss.
func evalRecords(t *testing.T, out string) [][2]uint64 {
	t.Helper()
	rs, err := ReadMetrics(filepath.Join(out, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var evs [][2]uint64
	for _, r := range rs {
		if r.EvalLoss != nil {
			evs = append(evs, [2]uint64{uint64(r.Step), math.Float64bits(*r.EvalLoss)})
		}
	}
	return evs
}

// TestInterruptedInEvaluation cancels Run's context in an evaluation, as
// Ctrl-C in sora finetune does: in one during training after its first
// batch of three, and in the final one (cancelled during the last step,
// so that it begins cancelled). Run must stop the evaluation there, as a
// cancellation between steps stops the run: with an *InterruptedError
// after that step wrapping context.Canceled and a checkpoint of it, the
// evaluation left out of metrics.jsonl. A resume must take the evaluation
// (saying so, for the one during training) and end as the uninterrupted
// run ends: the same trainable weights, bit for bit, and the same
// evaluations logged.
func TestInterruptedInEvaluation(t *testing.T) {
	seqs := randomSeqs(8, tinyConfig().VocabSize, 5)
	eval := randomSeqs(6, tinyConfig().VocabSize, 6)
	opts := func(out string, evalEvery int) Options {
		return Options{Steps: 4, Batch: 2, LR: 1e-2, Schedule: "constant", Seed: 3, EvalEvery: evalEvery, EvalBatch: 2, Out: out, NoSpectra: true}
	}
	// run trains a fresh model with o under ctx; b wraps its backend.
	run := func(ctx context.Context, o Options, b *cancelOnDownload, prog Progress, beforeStep func(int)) ([][]float32, *Result, error) {
		_, pm := tinyModel(t, b, peft.LoRA, 2)
		tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Eval: eval, Options: o,
			SaveAdapter: saveTrainable(pm), Progress: prog, beforeStep: beforeStep}
		res, err := tr.Run(ctx)
		return download(t, pm.Trainable()), res, err
	}
	for _, c := range []struct {
		name      string
		evalEvery int
		step      int    // the step after which the evaluation is interrupted
		note      string // what the resume says first; "" for nothing
	}{
		{"during training", 2, 2, "note: evaluating after step 2 first"},
		{"final", 0, 4, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			ref, interrupted := filepath.Join(dir, "ref"), filepath.Join(dir, "interrupted")
			never := new(bool)
			cpu := openCPU(t)
			want, wantRes, err := run(context.Background(), opts(ref, c.evalEvery), &cancelOnDownload{cpu, never, func() {}}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			armed := new(bool)
			prog := &armOnStepReport{step: c.step, armed: armed}
			var before func(int)
			if c.evalEvery == 0 {
				// Cancelled during the last step: the run trains it to
				// the end and begins the final evaluation cancelled.
				before = func(done int) {
					if done == c.step-1 {
						cancel()
					}
				}
			}
			_, _, err = run(ctx, opts(interrupted, c.evalEvery), &cancelOnDownload{cpu, armed, cancel}, prog, before)
			var ie *InterruptedError
			if !errors.As(err, &ie) || !errors.Is(err, context.Canceled) || ie.Step != c.step {
				t.Fatalf("Run cancelled in the evaluation after step %d: %v; want an InterruptedError after that step wrapping %v", c.step, err, context.Canceled)
			}
			if st, err := readState(ie.Checkpoint); err != nil || st.Step != c.step {
				t.Fatalf("checkpoint %q of the interrupted run: step %d, %v; want step %d", ie.Checkpoint, st.Step, err, c.step)
			}
			if slices.ContainsFunc(prog.got, func(m string) bool { return strings.HasPrefix(m, "eval at step") }) {
				t.Errorf("the interrupted evaluation finished: %q", prog.got)
			}
			if evs := evalRecords(t, interrupted); slices.ContainsFunc(evs, func(e [2]uint64) bool { return e[0] == uint64(c.step) }) {
				t.Errorf("metrics.jsonl records the interrupted evaluation after step %d", c.step)
			}

			o := opts(interrupted, c.evalEvery)
			o.Resume = true
			msgs := &messages{}
			got, res, err := run(context.Background(), o, &cancelOnDownload{cpu, never, func() {}}, msgs, nil)
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if said := slices.ContainsFunc(msgs.got, func(m string) bool { return strings.HasPrefix(m, c.note) }); c.note != "" && !said {
				t.Errorf("the resume does not say %q: %q", c.note, msgs.got)
			}
			if i, j, same := sameBits(want, got); !same {
				t.Errorf("trainable weights after the resume differ from the uninterrupted run's at tensor %d, element %d", i, j)
			}
			if a, b := evalRecords(t, ref), evalRecords(t, interrupted); !slices.Equal(a, b) {
				t.Errorf("evaluations logged (step, loss bits): resumed %v, uninterrupted %v", b, a)
			}
			if res.Eval == nil || wantRes.Eval == nil || res.Eval.Loss != wantRes.Eval.Loss {
				t.Errorf("final evaluation of the resumed run %+v, of the uninterrupted one %+v", res.Eval, wantRes.Eval)
			}
		})
	}
}

// TestResumeEvalNote checks the note of a resume that takes the
// evaluation at its step first, which must not say why the log or the
// checkpoint lacks it: the run that wrote them may have been stopped in
// it, or killed after logging it, or have planned none there (a run
// without evaluations, interrupted after step 6 and resumed with one
// every 3 steps, which nothing that selects forbids).
func TestResumeEvalNote(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name      string
		first     func(o *Options) // the interrupted run's options, from selectOptions
		stopAt    int              // as runTo's
		resume    func(o *Options) // the resume's
		step      int
		wantAfter string // the note after its "note: evaluating after step N first: ", %s the checkpoint
	}{
		{"no evaluation planned", func(o *Options) { o.KeepBest, o.EarlyStopping, o.EvalEvery = false, 0, 0 }, 5,
			func(o *Options) { o.KeepBest, o.EarlyStopping, o.EvalEvery = false, 0, 3 }, 6, "metrics.jsonl has no evaluation there"},
		{"selecting, stopped in the evaluation", func(o *Options) {}, 3, func(o *Options) {}, 4,
			"checkpoint %s has no judgment of an evaluation there"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := selectOptions(filepath.Join(dir, c.name))
			c.first(&o)
			_, err := runTo(t, o, c.stopAt)
			var ie *InterruptedError
			if !errors.As(err, &ie) || ie.Step != c.step {
				t.Fatalf("first run: %v; want an interruption after step %d", err, c.step)
			}
			o = selectOptions(o.Out)
			c.resume(&o)
			o.Resume = true
			o.Steps = c.step + 1
			_, pm := tinyModel(t, openCPU(t), peft.LoRA, 3)
			tr, ev := selectData()
			msgs := &messages{}
			if _, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: tr, Eval: ev, Options: o, SaveAdapter: saveTrainable(pm), Progress: msgs}).Run(context.Background()); err != nil {
				t.Fatalf("resume: %v", err)
			}
			want := fmt.Sprintf("note: evaluating after step %d first: ", c.step)
			if strings.Contains(c.wantAfter, "%s") {
				want += fmt.Sprintf(c.wantAfter, ie.Checkpoint)
			} else {
				want += c.wantAfter
			}
			if !slices.Contains(msgs.got, want) {
				t.Errorf("the resume's messages %q; want %q among them", msgs.got, want)
			}
		})
	}
}
