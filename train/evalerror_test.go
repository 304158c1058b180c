package train

import (
	"context"
	"errors"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// failingAlloc is a backend whose Alloc fails, with errAllocInjected,
// once armed.
type failingAlloc struct {
	backend.Backend
	armed *bool
}

var errAllocInjected = errors.New("injected: no memory left")

func (f failingAlloc) Alloc(dt backend.DType, shape ...int) (backend.Tensor, error) {
	if *f.armed {
		return backend.Tensor{}, errAllocInjected
	}
	return f.Backend.Alloc(dt, shape...)
}

// armOnStep is a Progress that arms a failingAlloc when step step is
// reported: after the step, before the evaluation that follows it.
type armOnStep struct {
	Quiet
	step  int
	armed *bool
}

func (a armOnStep) Step(s Status) {
	if s.Step == a.step {
		*a.armed = true
	}
}

// TestEvalErrorOfRun checks that Run reports an evaluation that failed,
// during training or the final one, as an *EvalError naming the step after
// which it ran and wrapping the cause, and a failed step as no EvalError.
func TestEvalErrorOfRun(t *testing.T) {
	seqs := randomSeqs(8, tinyConfig().VocabSize, 5)
	for _, c := range []struct {
		name      string
		evalEvery int
		armAt     int // the step after which allocations fail; 0: before step 1
		want      int // the EvalError's step; 0: none
	}{
		{"during training", 2, 2, 2},
		{"final", 0, 3, 3},
		{"step", 2, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			armed := new(bool)
			b := failingAlloc{openCPU(t), armed}
			_, pm := tinyModel(t, b, peft.LoRA, 1)
			tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Eval: seqs[:3], Progress: armOnStep{step: c.armAt, armed: armed},
				Options: Options{Steps: 3, Batch: 2, LR: 1e-3, EvalEvery: c.evalEvery, NoSpectra: true}}
			if c.armAt == 0 {
				tr.beforeStep = func(int) { *armed = true }
			}
			_, err := tr.Run(context.Background())
			var ee *EvalError
			switch {
			case !errors.Is(err, errAllocInjected):
				t.Fatalf("Run: %v; want the injected failure", err)
			case c.want == 0 && errors.As(err, &ee):
				t.Errorf("a failed step is reported as an evaluation's: %v", err)
			case c.want != 0 && (!errors.As(err, &ee) || ee.Step != c.want):
				t.Errorf("Run: %v; want an EvalError after step %d", err, c.want)
			}
		})
	}
}
