package train

import (
	"context"
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
	w.phase(false) // an evaluation
	c.add(200)
	c.add(-200)
	w.phase(true)
	c.add(20) // more steps, which keep 20
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

	// A backend that keeps no peaks: nothing, and no panic.
	w = newMemWatch(renamed{openCPU(t), "x", "y"}, true)
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
