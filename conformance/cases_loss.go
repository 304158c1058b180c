package conformance

import (
	"fmt"
	"math"

	"github.com/sora-go/sora/backend"
)

func init() {
	type cc struct {
		rows, vocab int
		span        float64 // logits uniform in [-span, span]
		ignore      int32   // the ignore index
		ignored     int     // how many rows get the ignore index as target
		smoothing   float32
		nonFinite   bool // ignored rows hold +Inf, NaN and −Inf logits
	}
	cases := []cc{
		{rows: 1, vocab: 1, span: 1, ignore: -100},
		{rows: 7, vocab: 13, span: 1, ignore: -100},
		{rows: 3, vocab: 127, span: 4, ignore: -100},
		{rows: 2, vocab: 4096, span: 4, ignore: -100},
		{rows: 4, vocab: 32000, span: 4, ignore: -100},
		{rows: 5, vocab: 13, span: 60, ignore: -100},
		{rows: 64, vocab: 2053, span: 4, ignore: -100, ignored: 7, smoothing: 0.1},
		{rows: 9, vocab: 13, span: 2, ignore: -100, ignored: 3},
		// An ignore index that is also a valid class: rows with that
		// target are ignored, other rows are not.
		{rows: 9, vocab: 13, span: 2, ignore: 5, ignored: 3},
		{rows: 3, vocab: 3, span: 2, ignore: -100, ignored: 3},
		{rows: 7, vocab: 13, span: 2, ignore: -100, smoothing: 0.1},
		{rows: 3, vocab: 127, span: 4, ignore: -100, smoothing: 0.25},
		{rows: 9, vocab: 13, span: 2, ignore: -100, ignored: 2, smoothing: 0.1},
		{rows: 4, vocab: 7, span: 2, ignore: -100, smoothing: 1},
		// Ignored rows count for nothing, whatever their logits hold.
		{rows: 6, vocab: 13, span: 2, ignore: -100, ignored: 3, smoothing: 0.1, nonFinite: true},
	}
	name := func(op string, c cc) string {
		s := fmt.Sprintf("%s/%s/range=%g", op, dims(c.rows, c.vocab), c.span)
		if c.ignored > 0 {
			s += fmt.Sprintf("/ignore=%d,ignored_rows=%d", c.ignore, c.ignored)
		}
		if c.smoothing != 0 {
			s += fmt.Sprintf("/smoothing=%g", c.smoothing)
		}
		if c.nonFinite {
			s += "/nonfinite_ignored_rows"
		}
		return s
	}
	// poison puts +Inf, NaN and −Inf into the ignored rows' logits when
	// the case asks for it.
	poison := func(c cc, lv []float32, t []int32) {
		if !c.nonFinite {
			return
		}
		for r, tg := range t {
			if tg == c.ignore {
				row := lv[r*c.vocab : (r+1)*c.vocab]
				row[0], row[1], row[2] = float32(math.Inf(1)), float32(math.NaN()), float32(math.Inf(-1))
			}
		}
	}
	// targets draws a class per row, never the ignore index, then sets
	// the first c.ignored rows (in a random order) to the ignore index.
	targets := func(e *Env, c cc) []int32 {
		t := make([]int32, c.rows)
		for i := range t {
			for {
				t[i] = int32(e.Rand.Intn(c.vocab))
				if t[i] != c.ignore {
					break
				}
			}
		}
		for _, r := range e.Rand.Perm(c.rows)[:c.ignored] {
			t[r] = c.ignore
		}
		return t
	}
	for _, c := range cases {
		c := c
		Register(Case{
			Name: name("cross_entropy", c),
			Op:   backend.OpCrossEntropy,
			Run: func(e *Env) {
				lv := e.Uniform(c.rows*c.vocab, -c.span, c.span)
				t := targets(e, c)
				poison(c, lv, t)
				logits := e.Input(lv, c.rows, c.vocab)
				p := backend.CrossEntropyParams{IgnoreIndex: c.ignore, Smoothing: c.smoothing}
				o := e.Output(c.rows)
				e.B.CrossEntropy(o.T, logits, t, p)
				e.Check(o, refCrossEntropy(lv, t, c.vocab, p))
			},
		})
	}
	for i, c := range cases {
		c := c
		// Scale as a mean over the counted rows, and an arbitrary one.
		scale := float32(1) / float32(max(c.rows-c.ignored, 1))
		if i%3 == 2 {
			scale = 2.5
		}
		Register(Case{
			Name: name("cross_entropy_grad", c) + fmt.Sprintf("/scale=%g", scale),
			Op:   backend.OpCrossEntropyGrad,
			Run: func(e *Env) {
				lv := e.Uniform(c.rows*c.vocab, -c.span, c.span)
				t := targets(e, c)
				poison(c, lv, t)
				logits := e.Input(lv, c.rows, c.vocab)
				p := backend.CrossEntropyParams{IgnoreIndex: c.ignore, Smoothing: c.smoothing, Scale: scale}
				o := e.Output(c.rows, c.vocab)
				e.B.CrossEntropyGrad(o.T, logits, t, p)
				e.Check(o, refCrossEntropyGrad(lv, t, c.vocab, p))
			},
		})
	}
}
