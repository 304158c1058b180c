package conformance

import (
	"fmt"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/refops"
)

type smCase struct {
	shape   []int
	p       backend.SoftmaxParams
	span    float64 // inputs uniform in [-span, span]
	inPlace bool
}

func (c smCase) suffix() string {
	s := dims(c.shape...)
	if c.p.Scale != 0 {
		s += "/scale=" + fmtF(float64(c.p.Scale))
	}
	if c.p.Causal {
		s += fmt.Sprintf("/causal,offset=%d", c.p.QueryOffset)
	}
	if c.p.Window != 0 {
		s += fmt.Sprintf(",window=%d", c.p.Window)
	}
	if c.span != 1 {
		s += "/range=" + fmtF(c.span)
	}
	if c.inPlace {
		s += "/inplace"
	}
	return s
}

// queries returns the query count of a causal softmax over shape.
func (c smCase) queries() int {
	rows, _ := backend.Shape(c.shape).Rows()
	if len(c.shape) >= 3 {
		return c.shape[len(c.shape)-2]
	}
	return rows
}

// checkMaskedZero checks that every entry the mask of p hides (causal,
// sliding window) is exactly 0 in o, as SoftmaxParams promises: a tiny
// probability there would pass the NMSE check yet let attention leak
// outside the window.
func checkMaskedZero(e *Env, o *Out, queries, keys int, p backend.SoftmaxParams) {
	if !p.Causal {
		return
	}
	bad, first := 0, -1
	for i, v := range e.Values(o) {
		if v != 0 && !refops.SoftmaxSees(i/keys, i%keys, queries, p) {
			if first < 0 {
				first = i
			}
			bad++
		}
	}
	if bad > 0 {
		e.Errorf("%s: %d masked entries are not exactly 0, first at row %d key %d", o.Name(), bad, first/keys, first%keys)
	}
}

func init() {
	cases := []smCase{
		{shape: []int{1, 1}, span: 1},
		{shape: []int{7, 13}, span: 1},
		{shape: []int{3, 127}, span: 4},
		{shape: []int{2, 4096}, span: 4},
		{shape: []int{2, 3, 5, 17}, span: 1},
		{shape: []int{7, 13}, p: backend.SoftmaxParams{Scale: 0.125}, span: 8},
		// Logits far beyond exp's float32 range: needs the max subtracted.
		{shape: []int{3, 127}, span: 100},
		{shape: []int{7, 7}, p: backend.SoftmaxParams{Causal: true}, span: 2},
		{shape: []int{3, 5, 9}, p: backend.SoftmaxParams{Causal: true, QueryOffset: 4}, span: 2},
		{shape: []int{2, 2, 4, 6}, p: backend.SoftmaxParams{Causal: true, QueryOffset: 2, Scale: 0.5}, span: 2},
		{shape: []int{2, 3, 13}, p: backend.SoftmaxParams{Causal: true, QueryOffset: 10}, span: 2},
		{shape: []int{6, 4}, p: backend.SoftmaxParams{Causal: true}, span: 2},
		{shape: []int{5, 9}, p: backend.SoftmaxParams{Causal: true}, span: 2},
		{shape: []int{1, 64, 64}, p: backend.SoftmaxParams{Causal: true, Scale: 0.125}, span: 8},
		{shape: []int{97, 1031}, span: 4},
		{shape: []int{4, 129, 129}, p: backend.SoftmaxParams{Causal: true, Scale: 0.125}, span: 8},
		{shape: []int{7, 13}, span: 1, inPlace: true},
		{shape: []int{3, 5, 9}, p: backend.SoftmaxParams{Causal: true, QueryOffset: 4}, span: 2, inPlace: true},
		// Sliding windows (SoftmaxParams.Window): width 1 (each query sees
		// itself), narrower than the sequence, as long as it (the same
		// mask as plain causal), longer; with a query offset as in cached
		// generation, one query per row as in decoding, and rows whose
		// visible keys start and end off the vector boundaries (67 = 64 +
		// 3 keys starting at key 65) so that the kernels' heads and tails
		// run. Span 100 needs the maximum taken over the window only.
		{shape: []int{3, 7, 7}, p: backend.SoftmaxParams{Causal: true, Window: 1}, span: 2},
		{shape: []int{2, 9, 9}, p: backend.SoftmaxParams{Causal: true, Window: 4, Scale: 0.5}, span: 2},
		{shape: []int{2, 2, 13, 13}, p: backend.SoftmaxParams{Causal: true, Window: 13}, span: 2},
		{shape: []int{3, 6, 6}, p: backend.SoftmaxParams{Causal: true, Window: 10}, span: 2},
		{shape: []int{2, 3, 21}, p: backend.SoftmaxParams{Causal: true, QueryOffset: 18, Window: 7}, span: 2},
		{shape: []int{2, 3, 13}, p: backend.SoftmaxParams{Causal: true, QueryOffset: 10, Window: 20}, span: 2},
		{shape: []int{4, 1, 37}, p: backend.SoftmaxParams{Causal: true, QueryOffset: 36, Window: 17}, span: 2},
		{shape: []int{2, 5, 131}, p: backend.SoftmaxParams{Causal: true, QueryOffset: 126, Window: 67, Scale: 0.125}, span: 8},
		{shape: []int{4, 129, 129}, p: backend.SoftmaxParams{Causal: true, Window: 33, Scale: 0.125}, span: 8},
		{shape: []int{2, 7, 23}, p: backend.SoftmaxParams{Causal: true, QueryOffset: 16, Window: 5}, span: 100},
		{shape: []int{3, 5, 9}, p: backend.SoftmaxParams{Causal: true, QueryOffset: 4, Window: 3}, span: 2, inPlace: true},
	}
	for _, c := range cases {
		c := c
		Register(Case{
			Name: "softmax/" + c.suffix(),
			Op:   backend.OpSoftmax,
			Run: func(e *Env) {
				n := backend.Shape(c.shape).NumElements()
				_, keys := backend.Shape(c.shape).Rows()
				x := e.Uniform(n, -c.span, c.span)
				src, o := e.inOut(x, c.inPlace, c.shape...)
				e.B.Softmax(o.T, src, c.p)
				e.Check(o, refSoftmax(x, c.queries(), keys, c.p))
				checkMaskedZero(e, o, c.queries(), keys, c.p)
			},
		})
	}
	for _, c := range cases {
		c := c
		if c.span == 100 {
			continue // the same as any other y for the backward
		}
		Register(Case{
			Name: "softmax_grad/" + c.suffix(),
			Op:   backend.OpSoftmaxGrad,
			Run: func(e *Env) {
				n := backend.Shape(c.shape).NumElements()
				_, keys := backend.Shape(c.shape).Rows()
				// y is a genuine softmax output (masked entries 0), as
				// the forward would have produced it.
				y64 := refSoftmax(e.Uniform(n, -c.span, c.span), c.queries(), keys, c.p)
				yv := make([]float32, n)
				for i, v := range y64 {
					yv[i] = float32(v)
				}
				dyv := e.Uniform(n, -1, 1)
				y := e.Input(yv, c.shape...)
				dy, o := e.inOut(dyv, c.inPlace, c.shape...)
				e.B.SoftmaxGrad(o.T, y, dy, c.p)
				e.Check(o, refSoftmaxGrad(yv, dyv, c.queries(), keys, c.p))
				checkMaskedZero(e, o, c.queries(), keys, c.p)
			},
		})
	}
}
