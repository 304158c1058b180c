package conformance

import (
	"fmt"
	"math"
	"strconv"

	"github.com/sora-go/sora/backend"
)

// Cases of the optional fused attention ops, Attention and AttentionGrad.
// A backend whose Supports says no to them skips every case here but the
// last, which checks that it refuses the calls instead.
//
// The shapes are small (the suite runs under emulators too) but chosen to
// reach what tiled kernels get wrong: one query (decoding) and one key,
// queries fewer or more than keys, query offsets, sliding windows of
// width 1 and of widths and positions that cross the block edges (16, 32
// and 64) kernels use, sequences of 65 to 130 so that queries and keys
// each span several tiles, grouped-query heads (one key/value head, as
// many as the query heads, groups of 2 and 4), odd head sizes, a batch of
// 2, Gemma 2's soft-capping, and scores of several hundred, where exp of
// a score overflows float32 and of the others underflows, so only a
// kernel that subtracts each row's maximum gets finite results.

// attnCase is one shape and parameter set of Attention.
type attnCase struct {
	s    attnShape
	p    backend.AttentionParams
	span float64 // q and k are uniform in [-span, span], v in [-1, 1]
	// noLSE registers the forward a second time without lse.
	noLSE bool
}

// suffix names the case: its dimensions, then the parameters in the order
// of AttentionParams, then the span of q and k unless it is 1.
func (c attnCase) suffix() string {
	s := fmt.Sprintf("b=%d,tq=%d,tk=%d,h=%d,kv=%d,d=%d/scale=%s", c.s.B, c.s.Tq, c.s.Tk, c.s.H, c.s.KV, c.s.D, fmtF32(c.p.Scale))
	if c.p.Softcap != 0 {
		s += "/softcap=" + fmtF32(c.p.Softcap)
	}
	if c.p.Causal {
		s += fmt.Sprintf("/causal,offset=%d", c.p.QueryOffset)
		if c.p.Window != 0 {
			s += fmt.Sprintf(",window=%d", c.p.Window)
		}
	} else if c.p.QueryOffset != 0 {
		// Without the causal mask only segments give the offset a meaning.
		s += fmt.Sprintf("/offset=%d", c.p.QueryOffset)
	}
	if c.span != 1 {
		s += "/range=" + fmtF(c.span)
	}
	if c.p.Segments != nil {
		s += "/docs=" + docsString(c.p.Segments, c.s.Tk)
	}
	return s
}

// fmtF32 formats a float32 parameter in its shortest form.
func fmtF32(v float32) string { return strconv.FormatFloat(float64(v), 'g', -1, 32) }

func (c attnCase) qShape() []int   { return []int{c.s.B, c.s.Tq, c.s.H, c.s.D} }
func (c attnCase) kShape() []int   { return []int{c.s.B, c.s.Tk, c.s.KV, c.s.D} }
func (c attnCase) lseShape() []int { return []int{c.s.B, c.s.H, c.s.Tq} }

// attnInputs are a case's q, k and v, uploaded, and their values.
type attnInputs struct {
	q, k, v    backend.Tensor
	qv, kv, vv []float32
}

func (c attnCase) inputs(e *Env) attnInputs {
	var in attnInputs
	in.qv = e.Uniform(c.s.B*c.s.Tq*c.s.H*c.s.D, -c.span, c.span)
	in.kv = e.Uniform(c.s.B*c.s.Tk*c.s.KV*c.s.D, -c.span, c.span)
	in.vv = e.Uniform(len(in.kv), -1, 1)
	in.q = e.Input(in.qv, c.qShape()...)
	in.k = e.Input(in.kv, c.kShape()...)
	in.v = e.Input(in.vv, c.kShape()...)
	return in
}

// forward runs Attention into fresh poisoned outputs and checks out (and
// lse unless noLSE) against the reference under the attention threshold.
func (c attnCase) forward(e *Env, in attnInputs, noLSE bool) (out, lse *Out) {
	out = e.Output(c.qShape()...).SetName("out")
	var lseT backend.Tensor
	if !noLSE {
		lse = e.Output(c.lseShape()...).SetName("lse")
		lseT = lse.T
	}
	e.B.Attention(out.T, lseT, in.q, in.k, in.v, c.p)
	ro, rl := refAttention(F64(in.qv), F64(in.kv), F64(in.vv), c.s, c.p)
	key := string(backend.OpAttention)
	e.CheckTol(key, out, ro)
	if lse != nil {
		e.CheckTol(key, lse, rl)
	}
	return out, lse
}

// checkUnseenKeysZero checks that the key/value rows no query of their
// group sees get gradients of exactly 0: masked scores contribute
// nothing, so a kernel may not leave them unwritten (the NaN poison would
// show) nor write anything else. With segments, which keys those are
// depends on the sequence.
func (c attnCase) checkUnseenKeysZero(e *Env, dk, dv *Out) {
	unseen := make([]bool, c.s.B*c.s.Tk) // by sequence and key
	some := false
	for b := 0; b < c.s.B; b++ {
		for j := 0; j < c.s.Tk; j++ {
			u := true
			for i := 0; i < c.s.Tq && u; i++ {
				u = !c.s.sees(b, i, j, c.p)
			}
			unseen[b*c.s.Tk+j] = u
			some = some || u
		}
	}
	if !some {
		return
	}
	for _, o := range []*Out{dk, dv} {
		vals := e.Values(o)
		bad, first := 0, -1
		for i, x := range vals {
			if unseen[i/(c.s.KV*c.s.D)] && x != 0 {
				if first < 0 {
					first = i
				}
				bad++
			}
		}
		if bad > 0 {
			bj := first / (c.s.KV * c.s.D)
			e.Errorf("%s: %d elements of keys no query sees are not exactly 0, first at index %d (sequence %d, key %d): %g",
				o.Name(), bad, first, bj/c.s.Tk, bj%c.s.Tk, vals[first])
		}
	}
}

// largeScores reports whether c's scores reach a few hundred. Most rows
// then have one key of weight 1 − tiny, and the gradients of q and k
// cancel to almost nothing: dq_i = Scale·Σ_j P_ij (dout_i·(v_j − out_i))
// k_j, where out_i ≈ v_j of the dominant key. A float32 backward takes
// out and lse in float32 (lse of a few hundred is off by 1e-5, and so is
// every P_ij = exp(s_ij − lse) it derives), so it cannot do better than
// the rounding of the terms: a plain float32 implementation (the one of
// broken_attention_test.go) misses dq by an NMSE of up to 6% in some of
// 100 seeds. So dq and dk are judged against the size of their terms
// there (Env.checkTerms, under the same limit); dv = Σ_i P_ij dout_i does
// not cancel and keeps its NMSE.
func (c attnCase) largeScores() bool { return c.span >= 7 }

// attnCases are the shapes of both ops.
var attnCases = []attnCase{
	// One query, one key: out is v whatever the score.
	{s: attnShape{B: 1, Tq: 1, Tk: 1, H: 1, KV: 1, D: 1}, p: backend.AttentionParams{Scale: 1}, span: 1, noLSE: true},
	// Not causal, fewer queries than keys; a batch of 2 with groups of 2.
	{s: attnShape{B: 1, Tq: 3, Tk: 5, H: 2, KV: 2, D: 4}, p: backend.AttentionParams{Scale: 0.5}, span: 1},
	{s: attnShape{B: 2, Tq: 7, Tk: 7, H: 4, KV: 2, D: 8}, p: backend.AttentionParams{Scale: 0.35355339, Causal: true}, span: 1, noLSE: true},
	// One key/value head (multi-query), odd head size, a query offset.
	{s: attnShape{B: 1, Tq: 5, Tk: 9, H: 4, KV: 1, D: 6}, p: backend.AttentionParams{Scale: 0.4, Causal: true, QueryOffset: 4}, span: 1},
	// Decoding: one query at the last position; with a window and groups
	// of 4.
	{s: attnShape{B: 2, Tq: 1, Tk: 13, H: 4, KV: 4, D: 5}, p: backend.AttentionParams{Scale: 0.45, Causal: true, QueryOffset: 12}, span: 1, noLSE: true},
	{s: attnShape{B: 1, Tq: 1, Tk: 37, H: 8, KV: 2, D: 7}, p: backend.AttentionParams{Scale: 0.378, Causal: true, QueryOffset: 36, Window: 17}, span: 2},
	// More queries than keys: those past the last key see them all.
	{s: attnShape{B: 1, Tq: 9, Tk: 5, H: 2, KV: 1, D: 4}, p: backend.AttentionParams{Scale: 0.5, Causal: true}, span: 1},
	// Window 1: each query sees only itself (weight 1, no gradient to q
	// or k).
	{s: attnShape{B: 1, Tq: 9, Tk: 9, H: 2, KV: 1, D: 3}, p: backend.AttentionParams{Scale: 0.6, Causal: true, Window: 1}, span: 1},
	{s: attnShape{B: 2, Tq: 4, Tk: 10, H: 3, KV: 3, D: 5}, p: backend.AttentionParams{Scale: 0.45, Causal: true, QueryOffset: 6, Window: 3}, span: 1},
	// Soft-capping, with scores of the order of the cap.
	{s: attnShape{B: 2, Tq: 6, Tk: 11, H: 6, KV: 3, D: 12}, p: backend.AttentionParams{Scale: 0.2887, Softcap: 5}, span: 3, noLSE: true},
	{s: attnShape{B: 1, Tq: 16, Tk: 16, H: 2, KV: 2, D: 16}, p: backend.AttentionParams{Scale: 0.25, Softcap: 20, Causal: true, Window: 4}, span: 4},
	// Across tiles: sequences of 65 to 130 over blocks of 16, 32 or 64,
	// with windows of exactly those widths and of one more, so that a
	// window's first key falls on and next to a block edge.
	{s: attnShape{B: 1, Tq: 70, Tk: 70, H: 2, KV: 1, D: 24}, p: backend.AttentionParams{Scale: 0.2041, Causal: true}, span: 2},
	{s: attnShape{B: 2, Tq: 65, Tk: 129, H: 2, KV: 2, D: 9}, p: backend.AttentionParams{Scale: 0.3333}, span: 2, noLSE: true},
	{s: attnShape{B: 1, Tq: 100, Tk: 130, H: 4, KV: 2, D: 20}, p: backend.AttentionParams{Scale: 0.2236, Causal: true, QueryOffset: 30, Window: 33}, span: 2},
	{s: attnShape{B: 1, Tq: 96, Tk: 96, H: 2, KV: 1, D: 8}, p: backend.AttentionParams{Scale: 0.3536, Causal: true, Window: 16}, span: 2},
	{s: attnShape{B: 1, Tq: 33, Tk: 97, H: 4, KV: 1, D: 13}, p: backend.AttentionParams{Scale: 0.2774, Softcap: 30, Causal: true, QueryOffset: 64, Window: 64}, span: 3, noLSE: true},
	{s: attnShape{B: 1, Tq: 80, Tk: 80, H: 4, KV: 2, D: 16}, p: backend.AttentionParams{Scale: 0.25, Causal: true, Window: 32}, span: 2},
	{s: attnShape{B: 1, Tq: 1, Tk: 130, H: 4, KV: 1, D: 32}, p: backend.AttentionParams{Scale: 0.1768, Causal: true, QueryOffset: 129, Window: 65}, span: 2},
	{s: attnShape{B: 1, Tq: 17, Tk: 81, H: 2, KV: 1, D: 80}, p: backend.AttentionParams{Scale: 0.1118, Causal: true, QueryOffset: 64}, span: 2},
	// Scores of a few hundred: one key dominates most rows, exp of the
	// others underflows, and exp of the largest overflows float32
	// unless the row's maximum is subtracted first; with a window the
	// maximum must be taken over the window; with a cap the scores are
	// bounded by it though the raw ones overflow. (The backward of these
	// is judged against the size of its terms: see largeScores.)
	{s: attnShape{B: 1, Tq: 17, Tk: 17, H: 2, KV: 1, D: 16}, p: backend.AttentionParams{Scale: 1, Causal: true}, span: 7},
	{s: attnShape{B: 2, Tq: 5, Tk: 40, H: 4, KV: 2, D: 16}, p: backend.AttentionParams{Scale: 1}, span: 7, noLSE: true},
	{s: attnShape{B: 1, Tq: 7, Tk: 23, H: 4, KV: 2, D: 16}, p: backend.AttentionParams{Scale: 1, Causal: true, QueryOffset: 16, Window: 5}, span: 7},
	{s: attnShape{B: 1, Tq: 9, Tk: 9, H: 2, KV: 1, D: 16}, p: backend.AttentionParams{Scale: 0.5, Softcap: 50, Causal: true}, span: 8},
}

func init() {
	for _, c := range attnCases {
		registerAttention(c)
	}
	for _, c := range attnCases {
		registerAttentionGrad(c, "", nil, nil)
	}
	// dq, dk and dv start out holding finite garbage rather than NaN:
	// they are overwritten, not accumulated into.
	c := attnCases[3]
	registerAttentionGrad(c, "/garbage_outputs", func(e *Env, shape []int) *Out {
		return e.OutputInit(e.Uniform(backend.Shape(shape).NumElements(), -1000, 1000), shape...)
	}, nil)
	registerAttentionRefusals()
}

// registerAttention registers the forward of c, and with c.noLSE its
// variant without lse.
func registerAttention(c attnCase) {
	for _, noLSE := range []bool{false, true} {
		if noLSE && !c.noLSE {
			continue
		}
		name := string(backend.OpAttention) + "/" + c.suffix()
		if noLSE {
			name += "/no_lse"
		}
		Register(Case{
			Name: name,
			Op:   backend.OpAttention,
			Run: func(e *Env) {
				c.forward(e, c.inputs(e), noLSE)
			},
		})
	}
}

// registerAttentionGrad registers the backward of c. The forward runs on
// the backend first and its out and lse, as computed, are AttentionGrad's
// inputs, as the graph passes them; the reference gradients come from q,
// k and v alone. output makes dq, dk and dv (nil: poisoned with NaN);
// more, when not nil, checks them further, given the inputs and the
// upstream gradient.
func registerAttentionGrad(c attnCase, variant string, output func(e *Env, shape []int) *Out,
	more func(e *Env, in attnInputs, dov []float32, dq, dk, dv *Out)) {
	if output == nil {
		output = func(e *Env, shape []int) *Out { return e.Output(shape...) }
	}
	Register(Case{
		Name:  string(backend.OpAttentionGrad) + "/" + c.suffix() + variant,
		Op:    backend.OpAttentionGrad,
		Needs: []backend.Op{backend.OpAttention},
		Run: func(e *Env) {
			in := c.inputs(e)
			fo, fl := c.forward(e, in, false)
			// Re-placed as inputs between NaN guards: AttentionGrad must
			// read exactly these and leave them as they are.
			out := e.Input(e.Values(fo), c.qShape()...)
			lse := e.Input(e.Values(fl), c.lseShape()...)
			dov := e.Uniform(len(in.qv), -1, 1)
			dout := e.Input(dov, c.qShape()...)
			dq := output(e, c.qShape()).SetName("dq")
			dk := output(e, c.kShape()).SetName("dk")
			dv := output(e, c.kShape()).SetName("dv")
			e.B.AttentionGrad(dq.T, dk.T, dv.T, in.q, in.k, in.v, out, lse, dout, c.p)
			q64, k64, v64, do64 := F64(in.qv), F64(in.kv), F64(in.vv), F64(dov)
			rq, rk, rv := refAttentionGrad(q64, k64, v64, do64, c.s, c.p)
			if c.largeScores() {
				mq, mk := refAttentionGradTerms(q64, k64, v64, do64, c.s, c.p)
				e.checkTerms(string(backend.OpAttentionGrad), dq, rq, mq)
				e.checkTerms(string(backend.OpAttentionGrad), dk, rk, mk)
			} else {
				e.Check(dq, rq)
				e.Check(dk, rk)
			}
			e.Check(dv, rv)
			c.checkUnseenKeysZero(e, dk, dv)
			if more != nil {
				more(e, in, dov, dq, dk, dv)
			}
		},
	})
}

// registerAttentionRefusals registers the invalid calls (a sticky error
// naming the op, cleared by Sync, and the backend working afterwards), and
// the case every backend runs: without the ops a valid call is refused,
// with them an invalid one is; either way the outputs stay untouched.
func registerAttentionRefusals() {
	q := func(e *Env) backend.Tensor { return scratch(e, 1, 4, 2, 8) }
	kv := func(e *Env) backend.Tensor { return scratch(e, 1, 6, 1, 8) }
	rejects("attention_no_scale", backend.OpAttention, "Attention with Scale 0", func(e *Env) {
		e.B.Attention(e.Output(1, 4, 2, 8).T, backend.Tensor{}, q(e), kv(e), kv(e), backend.AttentionParams{})
	})
	rejects("attention_heads_not_multiple", backend.OpAttention, "Attention of 3 query heads over 2 key/value heads", func(e *Env) {
		e.B.Attention(e.Output(1, 4, 3, 8).T, backend.Tensor{}, scratch(e, 1, 4, 3, 8), scratch(e, 1, 6, 2, 8), scratch(e, 1, 6, 2, 8),
			backend.AttentionParams{Scale: 1})
	})
	rejects("attention_window_leaves_no_key", backend.OpAttention, "Attention whose last query's window is past the keys", func(e *Env) {
		e.B.Attention(e.Output(1, 4, 2, 8).T, e.Output(1, 2, 4).T, q(e), kv(e), kv(e),
			backend.AttentionParams{Scale: 1, Causal: true, QueryOffset: 5, Window: 3})
	})
	rejects("attention_grad_lse_shape", backend.OpAttentionGrad, "AttentionGrad with lse [1,4,2]", func(e *Env) {
		e.B.AttentionGrad(e.Output(1, 4, 2, 8).T, e.Output(1, 6, 1, 8).T, e.Output(1, 6, 1, 8).T,
			q(e), kv(e), kv(e), q(e), scratch(e, 1, 4, 2), q(e), backend.AttentionParams{Scale: 1})
	})
	rejects("attention_grad_no_lse", backend.OpAttentionGrad, "AttentionGrad without lse", func(e *Env) {
		e.B.AttentionGrad(e.Output(1, 4, 2, 8).T, e.Output(1, 6, 1, 8).T, e.Output(1, 6, 1, 8).T,
			q(e), kv(e), kv(e), q(e), backend.Tensor{}, q(e), backend.AttentionParams{Scale: 1})
	})

	Register(Case{
		Name:  "sticky/attention_refused",
		Needs: []backend.Op{backend.OpScale},
		Run: func(e *Env) {
			p := backend.AttentionParams{Scale: 0.35}
			why := "(a backend without the op)"
			if e.B.Supports(backend.OpAttention) {
				p.Scale, why = float32(math.NaN()), "with Scale NaN"
			}
			out, lse := e.Output(1, 4, 2, 8).SetName("out"), e.Output(1, 2, 4).SetName("lse")
			e.B.Attention(out.T, lse.T, q(e), kv(e), kv(e), p)
			expectOpError(e, "Sync after Attention "+why, e.B.Sync(), backend.OpAttention)
			expectCleared(e)

			p, why = backend.AttentionParams{Scale: 0.35}, "(a backend without the op)"
			if e.B.Supports(backend.OpAttentionGrad) {
				p.Softcap, why = -1, "with Softcap −1"
			}
			dq, dk, dv := e.Output(1, 4, 2, 8).SetName("dq"), e.Output(1, 6, 1, 8).SetName("dk"), e.Output(1, 6, 1, 8).SetName("dv")
			e.B.AttentionGrad(dq.T, dk.T, dv.T, q(e), kv(e), kv(e), q(e), scratch(e, 1, 2, 4), q(e), p)
			expectOpError(e, "Sync after AttentionGrad "+why, e.B.Sync(), backend.OpAttentionGrad)
			expectCleared(e)
			for _, o := range []*Out{out, lse, dq, dk, dv} {
				expectUntouched(e, o, o.name)
			}
			afterwards(e)
		},
	})
}
