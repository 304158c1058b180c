package graph_test

import (
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/gradcheck"
)

// fusedMulAdd is a custom op y = a ⊙ b + a with a hand-written backward
// da = dy ⊙ (b + 1), db = dy ⊙ a; wrongSign flips db.
func fusedMulAdd(g *graph.Tape, a, b *graph.Value, wrongSign bool) *graph.Value {
	be := g.Backend()
	return g.Custom("FusedMulAdd", a.Shape(), []*graph.Value{a, b},
		func(out backend.Tensor) {
			be.Binary(backend.Mul, out, a.Tensor(), b.Tensor())
			be.Axpy(out, 1, a.Tensor())
		},
		func(dy backend.Tensor, grads *graph.Grads) {
			if grads.Needs(1) {
				t, _ := be.Alloc(backend.Float32, a.Shape()...)
				be.Binary(backend.Mul, t, dy, a.Tensor())
				if wrongSign {
					be.Scale(t, t, -1)
				}
				grads.Add(1, t)
				be.Free(t)
			}
			if grads.Needs(0) {
				dst, acc := grads.Target(0)
				if acc {
					t, _ := be.Alloc(backend.Float32, a.Shape()...)
					be.Binary(backend.Mul, t, dy, b.Tensor())
					be.Axpy(t, 1, dy)
					grads.Add(0, t)
					be.Free(t)
					return
				}
				be.Binary(backend.Mul, dst, dy, b.Tensor())
				be.Axpy(dst, 1, dy)
			}
		})
}

func TestCustomOp(t *testing.T) {
	b := openCPU(t)
	for _, tc := range []struct{ wrong, fusedFirst bool }{{false, false}, {false, true}, {true, false}} {
		wrong := tc.wrong
		c := gradcheck.Case{
			Name:   "custom/fused_mul_add",
			Inputs: []gradcheck.Input{{Name: "a", Shape: []int{3, 4}}, {Name: "b", Shape: []int{3, 4}}},
			Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value {
				// a is used twice. Backward runs the later op first, so
				// the fused op's backward either writes a's gradient
				// (Target, accumulate false) or adds to it.
				if tc.fusedFirst {
					f := fusedMulAdd(g, v[0], v[1], wrong)
					return g.Add(f, g.Square(v[0]))
				}
				sq := g.Square(v[0])
				return g.Add(fusedMulAdd(g, v[0], v[1], wrong), sq)
			},
			Reference: func(x [][]float64) []float64 {
				out := make([]float64, len(x[0]))
				for i, a := range x[0] {
					out[i] = a*x[1][i] + a + a*a
				}
				return out
			},
		}
		r, err := gradcheck.Check(b, c, gradcheck.Options{Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if r.Passed() == wrong {
			t.Errorf("wrong sign %v, fused first %v: %s", wrong, tc.fusedFirst, r)
		}
	}
}
