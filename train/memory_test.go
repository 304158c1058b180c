package train

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// countingTracker is a backend (Name only) whose memory is a counter
// that tests move by hand, with a peak as backends keep it.
type countingTracker struct {
	backend.Backend
	inUse, peak int64
	resets      int
}

func (c *countingTracker) Name() string { return "counting" }

func (c *countingTracker) add(n int64) {
	c.inUse += n
	c.peak = max(c.peak, c.inUse)
}

func (c *countingTracker) MemoryUsage() backend.MemoryUsage {
	// Reserved is twice in use, to tell the two apart.
	return backend.MemoryUsage{InUse: c.inUse, PeakInUse: c.peak, Reserved: 2 * c.inUse, PeakReserved: 2 * c.peak, DeviceTotal: 1000}
}

func (c *countingTracker) ResetPeakMemory() { c.peak = c.inUse; c.resets++ }

// TestMemWatch follows the run's peaks through phases of training and
// evaluation on a counter, against peaks worked out by hand: the run's
// take in what the backend held before the watch began, the training
// steps' only their own phases.
func TestMemWatch(t *testing.T) {
	c := &countingTracker{}
	c.add(100) // loading: a transient 100
	c.add(-60)
	w := newMemWatch(c, true)
	c.add(50) // a step
	c.add(-50)
	w.step()
	w.phase(false) // an evaluation
	c.add(200)
	c.add(-200)
	w.phase(true)
	c.add(20) // more steps, which keep 20
	w.step()
	spans := []DeviceSpan{{FromStep: 1, Backend: "other"}, {FromStep: 3, Backend: "counting", PeakMemoryBytes: 95, PeakReservedBytes: 150}}
	w.noteSpan(spans, DeviceSpan{Backend: "counting"})
	got := *w.result()
	want := Memory{Backend: "counting", PeakInUse: 240, PeakReserved: 480, TrainPeakInUse: 90, TrainPeakReserved: 180, DeviceTotal: 1000}
	if got != want {
		t.Errorf("result %+v; want %+v", got, want)
	}
	// The span keeps the larger of what it held (an earlier process's
	// 95) and this run's (90 in use, 180 reserved).
	if sp := spans[1]; sp.PeakMemoryBytes != 95 || sp.PeakReservedBytes != 180 {
		t.Errorf("the span's peaks %d, %d; want 95 and 180", sp.PeakMemoryBytes, sp.PeakReservedBytes)
	}
	if spans[0].PeakMemoryBytes != 0 {
		t.Errorf("an earlier device's span took this run's peak: %+v", spans[0])
	}
	// Another device's span is left alone.
	w.noteSpan(spans, DeviceSpan{Backend: "else"})
	if c.resets != 3 {
		t.Errorf("%d resets; want one a phase", c.resets)
	}

	// A run that trains nothing records no training peak, nor a span's.
	c = &countingTracker{}
	c.add(10)
	w = newMemWatch(c, false)
	c.add(5)
	spans = []DeviceSpan{{FromStep: 1, Backend: "counting"}}
	w.noteSpan(spans, DeviceSpan{Backend: "counting"})
	if got := *w.result(); got != (Memory{Backend: "counting", PeakInUse: 15, PeakReserved: 30, DeviceTotal: 1000}) || spans[0].PeakMemoryBytes != 0 {
		t.Errorf("a run without steps: %+v, span %+v", got, spans[0])
	}

	// Nor does one whose training phases end no step (a resume whose
	// first evaluation stops it early): a step reported outside them
	// does not count.
	c = &countingTracker{}
	c.add(10)
	w = newMemWatch(c, false)
	c.add(30) // the evaluation
	c.add(-30)
	w.step()
	w.phase(true)
	c.add(5)
	spans = []DeviceSpan{{FromStep: 1, Backend: "counting"}}
	w.noteSpan(spans, DeviceSpan{Backend: "counting"})
	if got := *w.result(); got != (Memory{Backend: "counting", PeakInUse: 40, PeakReserved: 80, DeviceTotal: 1000}) || spans[0].PeakMemoryBytes != 0 {
		t.Errorf("training phases without a step: %+v, span %+v", got, spans[0])
	}

	// A backend that keeps no peaks: nothing, and no panic.
	w = newMemWatch(renamed{openCPU(t), "x", "y"}, true)
	w.step()
	w.phase(false)
	w.noteSpan(spans, DeviceSpan{Backend: "x", Device: "y"})
	if m := w.result(); m != nil {
		t.Errorf("a backend without MemoryTracker: %+v", m)
	}
}

// fixedSeqs returns n sequences of length l with tokens from 3 up.
func fixedSeqs(n, l, vocab int) []data.Sequence {
	out := make([]data.Sequence, n)
	for i := range out {
		toks := make([]int32, l)
		toks[0] = 1
		for j := 1; j < l; j++ {
			toks[j] = int32(3 + (i*7+j*5)%(vocab-3))
		}
		out[i] = data.Sequence{Tokens: toks, PromptLen: 1, Row: i}
	}
	return out
}

// TestRunMemory trains on the CPU with one short sequence a step and
// evaluates 32 full-length sequences at once between steps: the
// training steps' peak holds at least the model, the adapter's
// gradients and AdamW's two moments, and the run's peak, which takes in
// the evaluations, is higher.
func TestRunMemory(t *testing.T) {
	b := openCPU(t)
	_, pm := tinyModel(t, b, peft.LoRA, 1)
	cfg := tinyConfig()
	before := b.BytesInUse() // the model and its adapter
	tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: fixedSeqs(4, 4, cfg.VocabSize), Eval: fixedSeqs(32, cfg.MaxSeqLen, cfg.VocabSize),
		Options: Options{Steps: 3, Batch: 1, LR: 1e-3, Seed: 1, EvalEvery: 2, EvalBatch: 32, NoSpectra: true}}
	res, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := res.Memory
	if m == nil {
		t.Fatal("no Memory on the CPU backend")
	}
	state := 3 * 4 * res.Trainable // gradients and two moments, float32
	if m.Backend != "cpu" || m.TrainPeakInUse < before+state || m.PeakInUse <= m.TrainPeakInUse ||
		m.PeakReserved <= m.PeakInUse || m.TrainPeakReserved <= m.TrainPeakInUse || m.DeviceTotal != 0 {
		t.Errorf("%+v; want training steps' peak at least %d (model %d, optimizer state %d), the run's above it, reserved above in use (the CPU backend's scratch)",
			*m, before+state, before, state)
	}
	t.Logf("model %d bytes; peaks: training steps %d, run %d", before, m.TrainPeakInUse, m.PeakInUse)
}

// TestResumeWithoutStepsHasNoTrainingPeak resumes runs that train no step
// and checks that they report no training steps' peak (Memory's 0 "when
// this Run trained no step") while the run's peak takes in what they did:
// a resume whose first evaluation (the one the interrupted run was
// stopped in) ends the run by early stopping, and a resume cancelled
// before its first step. Before, the watch counted a training phase as
// training, steps or none.
func TestResumeWithoutStepsHasNoTrainingPeak(t *testing.T) {
	dir := t.TempDir()
	ref, err := runTo(t, selectOptions(filepath.Join(dir, "ref")), -1)
	if err != nil {
		t.Fatal(err)
	}
	if ref.EarlyStop == nil {
		t.Fatal("the uninterrupted run did not stop early; the test needs it to")
	}
	stop := ref.EarlyStop.Step
	for i, c := range []struct {
		name      string
		stopAt    int  // as runTo's: the first run trains one step more
		cancelled bool // the resume's context is cancelled from the start
	}{
		{"early stopping at the resume's evaluation", stop - 1, false},
		{"cancelled before the first step", stop - 4, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := selectOptions(filepath.Join(dir, fmt.Sprint("run", i)))
			if _, err := runTo(t, o, c.stopAt); !IsInterrupted(err) {
				t.Fatalf("first run: %v; want an interruption", err)
			}
			o.Resume = true
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if c.cancelled {
				cancel()
			}
			_, pm := tinyModel(t, openCPU(t), peft.LoRA, 3)
			tr, ev := selectData()
			res, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: tr, Eval: ev, Options: o, SaveAdapter: saveTrainable(pm)}).Run(ctx)
			if c.cancelled != IsInterrupted(err) || (!c.cancelled && err != nil) {
				t.Fatalf("resume: %v; want an interruption %v", err, c.cancelled)
			}
			if res.Steps != res.StartStep && !c.cancelled || res.StartStep != c.stopAt+1 {
				t.Fatalf("resume from step %d trained to step %d; want none from step %d", res.StartStep, res.Steps, c.stopAt+1)
			}
			if !c.cancelled && (res.EarlyStop == nil || res.EarlyStop.Step != stop) {
				t.Fatalf("resume: early stop %+v; want one at step %d", res.EarlyStop, stop)
			}
			m := res.Memory
			if m == nil {
				t.Fatal("no Memory on the CPU backend")
			}
			if m.TrainPeakInUse != 0 || m.TrainPeakReserved != 0 || m.PeakInUse <= 0 {
				t.Errorf("a resume that trained no step: %+v; want no training steps' peak and the run's above 0", *m)
			}
		})
	}
}
