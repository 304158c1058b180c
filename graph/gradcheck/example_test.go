package gradcheck_test

import (
	"fmt"
	"math"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/gradcheck"
)

// Checking a layer's gradients: once against finite differences on the
// backend, once against a float64 reference of its forward.
func ExampleCheck() {
	b, err := backend.Open("cpu")
	if err != nil {
		panic(err)
	}
	defer b.Close()
	c := gradcheck.Case{
		Name:   "tanh_linear",
		Inputs: []gradcheck.Input{{Name: "x", Shape: []int{2, 3}}, {Name: "w", Shape: []int{4, 3}}},
		Forward: func(g *graph.Tape, in []*graph.Value) *graph.Value {
			return g.Tanh(g.Linear(in[0], in[1], nil))
		},
	}
	r, err := gradcheck.Check(b, c, gradcheck.Options{Seed: 1})
	fmt.Println(r.Method, r.Passed(), err)

	c.Reference = func(in [][]float64) []float64 {
		x, w := in[0], in[1]
		out := make([]float64, 0, 8)
		for i := range 2 {
			for o := range 4 {
				s := 0.0
				for k := range 3 {
					s += x[i*3+k] * w[o*3+k]
				}
				out = append(out, math.Tanh(s))
			}
		}
		return out
	}
	r, err = gradcheck.Check(b, c, gradcheck.Options{Seed: 1})
	fmt.Println(r.Method, r.Passed(), err)
	// Output:
	// finite differences true <nil>
	// float64 reference true <nil>
}
