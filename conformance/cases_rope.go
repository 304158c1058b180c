package conformance

import (
	"fmt"
	"math"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/gradcheck"
	"github.com/sora-go/sora/internal/refops"
)

// scaledFreqs returns θ^(−2i/d) divided by a factor that grows from 1 at
// the first pair to 8 at the last: the shape of Llama 3.1's scaled
// frequencies, whose low frequencies are slowed and high ones kept.
func scaledFreqs(d int, theta float64) []float64 {
	half := d / 2
	f := make([]float64, half)
	for i := range f {
		div := 1.0
		if half > 1 {
			div += 7 * float64(i) / float64(half-1)
		}
		f[i] = math.Pow(theta, -float64(2*i)/float64(d)) / div
	}
	return f
}

// mixedFreqs returns d/2 frequencies in [−2, 2) from rng, the second of them
// 0: a backend must not assume they are positive, decreasing or geometric.
func mixedFreqs(e *Env, d int) []float64 {
	f := make([]float64, d/2)
	for i := range f {
		f[i] = 4*e.Rand.Float64() - 2
	}
	if len(f) > 1 {
		f[1] = 0
	}
	return f
}

func init() {
	type rc struct {
		shape   []int // [batch, seq, heads, headDim]
		theta   float32
		freqs   string // "" (theta's frequencies), "scaled" or "mixed" (RoPEParams.Freqs)
		offset  int
		inverse bool
		inPlace bool
	}
	var cases []rc
	for _, s := range [][]int{{1, 1, 1, 2}, {2, 7, 3, 8}, {1, 13, 2, 64}, {3, 5, 4, 6}, {1, 127, 1, 128}, {2, 129, 4, 64}} {
		cases = append(cases, rc{shape: s, theta: 10000})
	}
	cases = append(cases,
		rc{shape: []int{2, 7, 3, 8}, theta: 10000, inverse: true},
		rc{shape: []int{1, 13, 2, 64}, theta: 10000, inverse: true, offset: 5},
		rc{shape: []int{2, 3, 2, 16}, theta: 10000, offset: 37},
		rc{shape: []int{1, 1, 4, 32}, theta: 10000, offset: 500},
		rc{shape: []int{1, 9, 2, 128}, theta: 500000},
		rc{shape: []int{2, 7, 3, 8}, theta: 10000, inPlace: true},
		rc{shape: []int{1, 5, 2, 16}, theta: 10000, offset: 3, inverse: true, inPlace: true},
	)
	// Explicit per-pair frequencies (RoPEParams.Freqs), which override
	// Theta: the theta of these cases is a wrong one, so a backend that
	// ignored Freqs would fail them.
	cases = append(cases,
		rc{shape: []int{1, 1, 1, 2}, theta: 10, freqs: "mixed", offset: 5},
		rc{shape: []int{2, 7, 3, 8}, theta: 10, freqs: "mixed"},
		rc{shape: []int{2, 7, 3, 8}, theta: 10, freqs: "mixed", offset: 9, inverse: true},
		rc{shape: []int{1, 13, 2, 64}, theta: 10, freqs: "scaled"},
		rc{shape: []int{1, 9, 2, 128}, theta: 10, freqs: "scaled", offset: 131000},
		rc{shape: []int{2, 5, 2, 64}, theta: 10, freqs: "scaled", offset: 8190, inverse: true},
		rc{shape: []int{2, 129, 4, 64}, theta: 10, freqs: "scaled", offset: 3},
		rc{shape: []int{1, 5, 2, 16}, theta: 10, freqs: "mixed", offset: 3, inPlace: true},
		rc{shape: []int{1, 5, 2, 16}, theta: 10, freqs: "scaled", offset: 70000, inverse: true, inPlace: true},
	)
	for _, layout := range []backend.RoPELayout{backend.Interleaved, backend.HalfSplit} {
		for _, c := range cases {
			layout, c := layout, c
			name := fmt.Sprintf("rope/%s/%s/theta=%g", layout, dims(c.shape...), c.theta)
			if c.freqs != "" {
				name = fmt.Sprintf("rope/freqs/%s/%s/%s", layout, dims(c.shape...), c.freqs)
			}
			if c.offset != 0 {
				name += fmt.Sprintf("/offset=%d", c.offset)
			}
			if c.inverse {
				name += "/inverse"
			}
			if c.inPlace {
				name += "/inplace"
			}
			Register(Case{
				Name: name,
				Op:   backend.OpRoPE,
				Run: func(e *Env) {
					p := backend.RoPEParams{Layout: layout, Theta: c.theta, Offset: c.offset, Inverse: c.inverse}
					switch d := c.shape[3]; c.freqs {
					case "scaled":
						p.Freqs = scaledFreqs(d, 500000)
					case "mixed":
						p.Freqs = mixedFreqs(e, d)
					}
					n := backend.Shape(c.shape).NumElements()
					x := e.Uniform(n, -1, 1)
					src, o := e.inOut(x, c.inPlace, c.shape...)
					e.B.RoPE(o.T, src, p)
					e.Check(o, refops.RoPE(F64(x), c.shape[0], c.shape[1], c.shape[2], c.shape[3], p))
				},
			})
		}
	}

	// RoPE's backward with Freqs: graph.Tape.RoPE runs the same params
	// with Inverse flipped, Freqs included. Its gradient is checked
	// against the derivative of the float64 reference, like the Theta
	// cases of gradcheck.OpCases.
	for _, layout := range []backend.RoPELayout{backend.Interleaved, backend.HalfSplit} {
		for _, off := range []int{0, 9000} {
			shape := []int{2, 3, 2, 6}
			freqs := []float64{1, 0.05, -0.4}
			p := backend.RoPEParams{Layout: layout, Theta: 10, Offset: off, Freqs: freqs}
			registerGradCase(gradcheck.Case{
				Name:   fmt.Sprintf("grad/op/rope/freqs/%s/offset%d", layout, off),
				Op:     backend.OpRoPE,
				Inputs: []gradcheck.Input{{Name: "x", Shape: shape}},
				Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value {
					return g.RoPE(v[0], p)
				},
				Reference: func(x [][]float64) []float64 {
					return refops.RoPE(x[0], shape[0], shape[1], shape[2], shape[3], p)
				},
			})
		}
	}

	// Frequencies of the wrong count, or not finite, are refused.
	rejects("rope_freqs_count", backend.OpRoPE, "RoPE of head dimension 8 with 3 frequencies", func(e *Env) {
		e.B.RoPE(e.Output(1, 2, 1, 8).T, scratch(e, 1, 2, 1, 8), backend.RoPEParams{Layout: backend.HalfSplit, Freqs: []float64{1, 0.1, 0.01}})
	})
	rejects("rope_freqs_nan", backend.OpRoPE, "RoPE with a NaN frequency", func(e *Env) {
		e.B.RoPE(e.Output(1, 2, 1, 4).T, scratch(e, 1, 2, 1, 4), backend.RoPEParams{Layout: backend.Interleaved, Freqs: []float64{1, math.NaN()}})
	})
}
