package peft

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/graph"
)

// TestDropoutStepDeterminesMasks checks that a layer's dropout masks are
// a function of (layer, step, micro-batch, forward since SetDropoutStep)
// alone: a layer that ran other training forwards first drops, after
// SetDropoutStep(7, 1), exactly what a fresh layer drops after the same
// call, as a resumed run needs; and that the masks differ between
// forwards, micro-batches and steps.
func TestDropoutStepDeterminesMasks(t *testing.T) {
	b := openCPU(t)
	const out, in, n = 9, 8, 6
	x := randn(rand.New(rand.NewPCG(2, 3)), n*in, 1)
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"sora", Config{Method: SORA, R: 2, Alpha: 4, RotationRank: 2, Dropout: 0.4}},
		{"dora-peft", Config{Method: DoRAPEFT, R: 2, Alpha: 4, Dropout: 0.4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			mk := func() *Layer {
				l := testLayer(t, b, c.cfg, out, in, 51)
				perturb(t, l, 6) // B ≠ 0, so that the dropped input shows in the output
				return l
			}
			train := func(l *Layer) []float32 {
				g := graph.New(b)
				defer g.Close()
				y, err := l.Forward(g, g.Input(x, n, in)).Download()
				if err != nil {
					t.Fatal(err)
				}
				return y
			}
			same := func(a, b []float32) bool {
				for i := range a {
					if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
						return false
					}
				}
				return true
			}
			used, fresh := mk(), mk()
			train(used) // forwards before any SetDropoutStep, as from step 0
			used.SetDropoutStep(3, 0)
			train(used)
			train(used)
			used.SetDropoutStep(7, 1)
			u1, u2 := train(used), train(used)
			fresh.SetDropoutStep(7, 1)
			f1, f2 := train(fresh), train(fresh)
			if !same(u1, f1) || !same(u2, f2) {
				t.Fatal("after SetDropoutStep(7, 1) a layer with a history drops differently from a fresh one")
			}
			if same(f1, f2) {
				t.Error("two forwards after one SetDropoutStep drop the same elements")
			}
			for _, sm := range [][2]int{{7, 0}, {8, 1}, {1, 7}} {
				fresh.SetDropoutStep(sm[0], sm[1])
				if same(train(fresh), f1) {
					t.Errorf("step %d, micro-batch %d drops what step 7, micro-batch 1 drops", sm[0], sm[1])
				}
			}
			// Evaluation drops nothing and does not count as a forward.
			fresh.SetDropoutStep(7, 1)
			forward(t, fresh, b, x, n, in)
			if !same(train(fresh), f1) {
				t.Error("an evaluation forward changed the next training forward's mask")
			}
		})
	}
}

// TestDropoutCheckpointedForwardCountsOnce checks that a forward inside a
// checkpointed segment counts as one forward for the masks: its
// recomputation during Backward (which replays the segment's seeds) does
// not advance the layer's count, so the next forward after a checkpointed
// step drops what it drops after a plain one.
func TestDropoutCheckpointedForwardCountsOnce(t *testing.T) {
	b := openCPU(t)
	const out, in, n = 9, 8, 6
	x := randn(rand.New(rand.NewPCG(4, 5)), n*in, 1)
	cfg := Config{Method: LoRA, R: 2, Alpha: 4, Dropout: 0.4}
	var second [][]float32
	for _, checkpoint := range []bool{false, true} {
		l := testLayer(t, b, cfg, out, in, 53)
		perturb(t, l, 6)
		l.SetDropoutStep(2, 0)
		g := graph.New(b)
		in0 := g.Input(x, n, in)
		var y *graph.Value
		if checkpoint {
			y = g.Checkpoint(func(g *graph.Tape, v []*graph.Value) []*graph.Value {
				return []*graph.Value{l.Forward(g, v[0])}
			}, in0)[0]
		} else {
			y = l.Forward(g, in0)
		}
		if err := g.Backward(g.Sum(y)); err != nil {
			t.Fatal(err)
		}
		g.Reset()
		y2, err := l.Forward(g, g.Input(x, n, in)).Download()
		if err != nil {
			t.Fatal(err)
		}
		g.Close()
		second = append(second, y2)
	}
	for i := range second[0] {
		if math.Float32bits(second[0][i]) != math.Float32bits(second[1][i]) {
			t.Fatalf("the forward after a checkpointed one drops differently from the forward after a plain one (element %d: %v, %v)", i, second[1][i], second[0][i])
		}
	}
}
