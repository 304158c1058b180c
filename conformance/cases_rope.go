package conformance

import (
	"fmt"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/refops"
)

func init() {
	type rc struct {
		shape   []int // [batch, seq, heads, headDim]
		theta   float32
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
	for _, layout := range []backend.RoPELayout{backend.Interleaved, backend.HalfSplit} {
		for _, c := range cases {
			layout, c := layout, c
			name := fmt.Sprintf("rope/%s/%s/theta=%g", layout, dims(c.shape...), c.theta)
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
					n := backend.Shape(c.shape).NumElements()
					x := e.Uniform(n, -1, 1)
					src, o := e.inOut(x, c.inPlace, c.shape...)
					p := backend.RoPEParams{Layout: layout, Theta: c.theta, Offset: c.offset, Inverse: c.inverse}
					e.B.RoPE(o.T, src, p)
					e.Check(o, refops.RoPE(F64(x), c.shape[0], c.shape[1], c.shape[2], c.shape[3], p))
				},
			})
		}
	}
}
