package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/gemm"
	"github.com/sora-go/sora/internal/refops"
)

// attnShape is the shape of an attention call: q and out [B, Tq, H, D],
// k and v [B, Tk, KV, D].
type attnShape struct{ B, Tq, Tk, H, KV, D int }

func (s attnShape) qLen() int { return s.B * s.Tq * s.H * s.D }
func (s attnShape) kLen() int { return s.B * s.Tk * s.KV * s.D }

// packed returns AttentionParams.Segments for sequences of the given
// document lengths, one list per batch element. The document numbers
// grow in uneven steps and do not restart per sequence, as only equality
// within a sequence may matter.
func packed(docs ...[]int) []int32 {
	var seg []int32
	id := int32(3)
	for _, lens := range docs {
		for x, n := range lens {
			for range n {
				seg = append(seg, id)
			}
			id += int32(1 + x%3)
		}
	}
	return seg
}

// withSegments returns p with Segments set.
func withSegments(p backend.AttentionParams, seg []int32) backend.AttentionParams {
	p.Segments = seg
	return p
}

// attnData is an attention call's inputs on the host: q, k, v and the
// upstream gradient dout.
type attnData struct{ q, k, v, dout []float32 }

// newAttnData draws q, k, v and dout for shape s, uniform in [-1, 1].
func newAttnData(rng *rand.Rand, s attnShape) attnData {
	q, k, v := uniform(rng, s.qLen(), -1, 1), uniform(rng, s.kLen(), -1, 1), uniform(rng, s.kLen(), -1, 1)
	return attnData{q, k, v, uniform(rng, s.qLen(), -1, 1)}
}

// ref returns the float64 reference's results for x, gradients included.
func (x attnData) ref(s attnShape, p backend.AttentionParams) refAttn {
	return refAttention(s, p, f64(x.q), f64(x.k), f64(x.v), f64(x.dout))
}

// attnRun is one call's tensors on a backend: x's inputs uploaded, the
// outputs poisoned with NaN.
type attnRun struct{ q, k, v, dout, out, lse, dq, dk, dv backend.Tensor }

func newAttnRun(t *testing.T, be *Backend, s attnShape, x attnData) attnRun {
	t.Helper()
	return attnRun{
		q: upload(t, be, x.q, s.B, s.Tq, s.H, s.D), k: upload(t, be, x.k, s.B, s.Tk, s.KV, s.D),
		v: upload(t, be, x.v, s.B, s.Tk, s.KV, s.D), dout: upload(t, be, x.dout, s.B, s.Tq, s.H, s.D),
		out: poisoned(t, be, s.B, s.Tq, s.H, s.D), lse: poisoned(t, be, s.B, s.H, s.Tq),
		dq: poisoned(t, be, s.B, s.Tq, s.H, s.D), dk: poisoned(t, be, s.B, s.Tk, s.KV, s.D), dv: poisoned(t, be, s.B, s.Tk, s.KV, s.D),
	}
}

// forward runs Attention with lse.
func (r attnRun) forward(be *Backend, p backend.AttentionParams) {
	be.Attention(r.out, r.lse, r.q, r.k, r.v, p)
}

// backward runs AttentionGrad on the forward's out and lse.
func (r attnRun) backward(be *Backend, p backend.AttentionParams) {
	be.AttentionGrad(r.dq, r.dk, r.dv, r.q, r.k, r.v, r.out, r.lse, r.dout, p)
}

// checkGrads compares dq, dk and dv with want's by checkRel.
func (r attnRun) checkGrads(t *testing.T, be *Backend, want refAttn) {
	t.Helper()
	checkRel(t, "dq", download(t, be, r.dq), want.dq, attnTol)
	checkRel(t, "dk", download(t, be, r.dk), want.dk, attnTol)
	checkRel(t, "dv", download(t, be, r.dv), want.dv, attnTol)
}

// refAttn holds a float64 reference attention's results.
type refAttn struct {
	out, lse      []float64
	dq, dk, dv    []float64 // set by refAttentionGrad
	probs, scores [][]float64
}

// refAttention computes attention in float64 with plain loops: out, lse,
// and, when dout is not nil, the gradients of Σ dout⊙out with respect to
// q, k and v, from the softmax's own backward (δ = Σ_j P·dP, not the
// dout·out shortcut the kernels take).
func refAttention(s attnShape, p backend.AttentionParams, q, k, v, dout []float64) refAttn {
	r := refAttn{out: make([]float64, s.qLen()), lse: make([]float64, s.B*s.H*s.Tq)}
	if dout != nil {
		r.dq, r.dk, r.dv = make([]float64, s.qLen()), make([]float64, s.kLen()), make([]float64, s.kLen())
	}
	G := s.H / s.KV
	qi := func(b, i, h int) int { return ((b*s.Tq+i)*s.H + h) * s.D }
	kj := func(b, j, g int) int { return ((b*s.Tk+j)*s.KV + g) * s.D }
	sc := make([]float64, s.Tk)  // capped scores
	raw := make([]float64, s.Tk) // Scale·q·k
	pr := make([]float64, s.Tk)
	for b := range s.B {
		for h := range s.H {
			g := h / G
			for i := range s.Tq {
				m := math.Inf(-1)
				for j := range s.Tk {
					if !refops.AttentionSees(p, s.Tk, b, i, j) {
						continue
					}
					dot := 0.0
					for x := range s.D {
						dot += q[qi(b, i, h)+x] * k[kj(b, j, g)+x]
					}
					raw[j] = float64(p.Scale) * dot
					sc[j] = raw[j]
					if p.Softcap > 0 {
						c := float64(p.Softcap)
						sc[j] = c * math.Tanh(raw[j]/c)
					}
					m = max(m, sc[j])
				}
				sum := 0.0
				for j := range s.Tk {
					pr[j] = 0
					if refops.AttentionSees(p, s.Tk, b, i, j) {
						pr[j] = math.Exp(sc[j] - m)
						sum += pr[j]
					}
				}
				r.lse[(b*s.H+h)*s.Tq+i] = m + math.Log(sum)
				o := r.out[qi(b, i, h) : qi(b, i, h)+s.D]
				for j := range s.Tk {
					pr[j] /= sum
					for x := range o {
						o[x] += pr[j] * v[kj(b, j, g)+x]
					}
				}
				if dout == nil {
					continue
				}
				dO := dout[qi(b, i, h) : qi(b, i, h)+s.D]
				dP := make([]float64, s.Tk)
				delta := 0.0
				for j := range s.Tk {
					for x := range dO {
						dP[j] += dO[x] * v[kj(b, j, g)+x]
					}
					delta += pr[j] * dP[j]
				}
				for j := range s.Tk {
					if !refops.AttentionSees(p, s.Tk, b, i, j) {
						continue
					}
					dS := pr[j] * (dP[j] - delta) * float64(p.Scale)
					if p.Softcap > 0 {
						t := math.Tanh(raw[j] / float64(p.Softcap))
						dS *= 1 - t*t
					}
					for x := range s.D {
						r.dq[qi(b, i, h)+x] += dS * k[kj(b, j, g)+x]
						r.dk[kj(b, j, g)+x] += dS * q[qi(b, i, h)+x]
						r.dv[kj(b, j, g)+x] += pr[j] * dO[x]
					}
				}
			}
		}
	}
	return r
}

// attnCases covers the mask variants, grouped-query attention, head sizes
// odd and even, and sequence lengths that are not multiples of the block
// (64 rows: 64 positions for one head per group, 32 for two, 16 for four,
// 8 for eight).
var attnCases = []struct {
	name string
	s    attnShape
	p    backend.AttentionParams
}{
	{"full", attnShape{1, 5, 7, 2, 2, 4}, backend.AttentionParams{Scale: 0.5}},
	{"full/blocks", attnShape{2, 70, 45, 2, 1, 6}, backend.AttentionParams{Scale: 0.4}},
	{"causal", attnShape{2, 70, 70, 2, 2, 8}, backend.AttentionParams{Scale: 0.35, Causal: true}},
	{"causal/gqa2/odd", attnShape{2, 67, 67, 4, 2, 5}, backend.AttentionParams{Scale: 0.45, Causal: true}},
	{"causal/mqa/odd", attnShape{1, 37, 37, 4, 1, 7}, backend.AttentionParams{Scale: 0.38, Causal: true}},
	{"causal/gqa8", attnShape{1, 20, 20, 8, 1, 4}, backend.AttentionParams{Scale: 0.5, Causal: true}},
	{"causal/offset", attnShape{1, 9, 20, 2, 1, 6}, backend.AttentionParams{Scale: 0.4, Causal: true, QueryOffset: 11}},
	{"causal/offset/blocks", attnShape{2, 40, 90, 4, 2, 8}, backend.AttentionParams{Scale: 0.35, Causal: true, QueryOffset: 50}},
	{"causal/more-queries", attnShape{1, 10, 4, 2, 2, 3}, backend.AttentionParams{Scale: 0.6, Causal: true}},
	{"decode", attnShape{2, 1, 37, 4, 2, 8}, backend.AttentionParams{Scale: 0.35, Causal: true, QueryOffset: 36}},
	{"decode/full", attnShape{1, 1, 13, 3, 1, 5}, backend.AttentionParams{Scale: 0.45}},
	{"window", attnShape{1, 50, 50, 4, 2, 6}, backend.AttentionParams{Scale: 0.4, Causal: true, Window: 7}},
	{"window/1", attnShape{1, 12, 12, 2, 1, 4}, backend.AttentionParams{Scale: 0.5, Causal: true, Window: 1}},
	{"window/offset", attnShape{2, 10, 30, 2, 2, 5}, backend.AttentionParams{Scale: 0.45, Causal: true, QueryOffset: 20, Window: 5}},
	{"window/decode", attnShape{1, 1, 40, 4, 1, 8}, backend.AttentionParams{Scale: 0.35, Causal: true, QueryOffset: 39, Window: 9}},
	{"window/wide", attnShape{1, 70, 70, 1, 1, 4}, backend.AttentionParams{Scale: 0.5, Causal: true, Window: 100}},
	{"softcap", attnShape{1, 33, 33, 2, 2, 16}, backend.AttentionParams{Scale: 1, Softcap: 2, Causal: true}},
	{"softcap/full/gqa", attnShape{2, 9, 14, 4, 2, 9}, backend.AttentionParams{Scale: 0.8, Softcap: 1.5}},
	{"softcap/window/gqa", attnShape{1, 40, 40, 4, 2, 8}, backend.AttentionParams{Scale: 0.7, Softcap: 3, Causal: true, Window: 6}},
	{"peaky", attnShape{1, 30, 30, 2, 1, 8}, backend.AttentionParams{Scale: 4, Causal: true}},

	// Packed sequences: documents of length 1, documents across the
	// block edges (64, 32 and 16 positions for 1, 2 and 4 heads per
	// group), sequences of a batch packed differently, one document per
	// sequence, and queries placed at the later keys.
	{"seg/causal", attnShape{2, 150, 150, 2, 2, 8}, withSegments(backend.AttentionParams{Scale: 0.35, Causal: true}, packed([]int{1, 63, 2, 70, 14}, []int{100, 1, 1, 48}))},
	{"seg/causal/single", attnShape{2, 70, 70, 2, 1, 6}, withSegments(backend.AttentionParams{Scale: 0.4, Causal: true}, packed([]int{70}, []int{69, 1}))},
	{"seg/full/gqa2", attnShape{2, 90, 90, 2, 1, 6}, withSegments(backend.AttentionParams{Scale: 0.4}, packed([]int{5, 40, 1, 44}, []int{90}))},
	{"seg/causal/gqa4/odd", attnShape{1, 77, 77, 4, 1, 5}, withSegments(backend.AttentionParams{Scale: 0.45, Causal: true}, packed([]int{16, 17, 1, 1, 42}))},
	{"seg/causal/gqa8", attnShape{2, 30, 30, 8, 1, 4}, withSegments(backend.AttentionParams{Scale: 0.5, Causal: true}, packed([]int{7, 9, 1, 13}, []int{2, 28}))},
	{"seg/ones", attnShape{1, 20, 20, 2, 1, 4}, withSegments(backend.AttentionParams{Scale: 0.5, Causal: true}, packed([]int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}))},
	{"seg/ones/full", attnShape{1, 6, 6, 2, 2, 4}, withSegments(backend.AttentionParams{Scale: 0.5}, packed([]int{1, 1, 2, 1, 1}))},
	{"seg/window", attnShape{2, 100, 100, 2, 1, 8}, withSegments(backend.AttentionParams{Scale: 0.4, Causal: true, Window: 9}, packed([]int{3, 30, 67}, []int{50, 50}))},
	{"seg/window/2", attnShape{1, 150, 150, 1, 1, 4}, withSegments(backend.AttentionParams{Scale: 0.5, Causal: true, Window: 2}, packed([]int{70, 80}))},
	{"seg/window/wide", attnShape{1, 70, 70, 1, 1, 4}, withSegments(backend.AttentionParams{Scale: 0.5, Causal: true, Window: 40}, packed([]int{20, 50}))},
	{"seg/softcap", attnShape{1, 70, 70, 2, 2, 16}, withSegments(backend.AttentionParams{Scale: 1, Softcap: 2, Causal: true}, packed([]int{33, 37}))},
	{"seg/softcap/full/gqa", attnShape{2, 40, 40, 4, 2, 9}, withSegments(backend.AttentionParams{Scale: 0.8, Softcap: 1.5}, packed([]int{10, 10, 20}, []int{1, 39}))},
	{"seg/softcap/window/gqa", attnShape{1, 60, 60, 4, 2, 8}, withSegments(backend.AttentionParams{Scale: 0.7, Softcap: 3, Causal: true, Window: 6}, packed([]int{15, 2, 43}))},
	{"seg/offset", attnShape{2, 40, 100, 4, 2, 8}, withSegments(backend.AttentionParams{Scale: 0.35, Causal: true, QueryOffset: 60}, packed([]int{30, 40, 30}, []int{99, 1}))},
	{"seg/offset/inner", attnShape{1, 10, 30, 2, 1, 5}, withSegments(backend.AttentionParams{Scale: 0.45, Causal: true, QueryOffset: 5}, packed([]int{4, 3, 20, 3}))},
	{"seg/offset/full", attnShape{1, 20, 50, 2, 1, 6}, withSegments(backend.AttentionParams{Scale: 0.4, QueryOffset: 25}, packed([]int{20, 10, 20}))},
	{"seg/offset/window", attnShape{2, 30, 60, 2, 2, 5}, withSegments(backend.AttentionParams{Scale: 0.45, Causal: true, QueryOffset: 30, Window: 12}, packed([]int{35, 5, 20}, []int{1, 1, 58}))},
	{"seg/decode", attnShape{2, 1, 37, 4, 2, 8}, withSegments(backend.AttentionParams{Scale: 0.35, Causal: true, QueryOffset: 36}, packed([]int{20, 17}, []int{36, 1}))},
}

// poisonScratch fills the scratch the attention ops reuse with NaN, as a
// previous op may leave it with anything, so that reading scratch the
// call did not write first shows in the results.
func poisonScratch(be *Backend) {
	for _, buf := range be.scratch32(1, 1<<18) {
		for i := range buf {
			buf[i] = float32(math.NaN())
		}
	}
	ints := be.scratchInts(max(cap(be.ints), 1<<18))
	for i := range ints {
		ints[i] = math.MinInt32 / 2
	}
}

// relErr returns max |got − want| / max |want|: errors measured against
// the tensor's scale, so that elements near zero (gradients that nearly
// cancel) do not dominate, while a wrong mask edge, which moves outputs
// by a sizeable fraction of their scale, stands out.
func relErr(got []float32, want []float64) float64 {
	var e, m float64
	for i, w := range want {
		g := float64(got[i])
		if math.IsNaN(g) || math.IsInf(g, 0) {
			return math.Inf(1)
		}
		e, m = max(e, math.Abs(g-w)), max(m, math.Abs(w))
	}
	if m == 0 {
		return e
	}
	return e / m
}

// checkRel fails when got is further than tol from want by relErr.
func checkRel(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	if e := relErr(got, want); !(e <= tol) {
		t.Errorf("%s: relative error %.3g > %.1g", name, e, tol)
		assertClose(t, name, got, want, 0, tol*maxAbs(want))
	}
}

func maxAbs(x []float64) float64 {
	m := 0.0
	for _, v := range x {
		m = max(m, math.Abs(v))
	}
	return m
}

// attnTol bounds relErr for the fused kernels: float32 scores and
// exponentials against float64 ones, a few ulps of the largest output.
const attnTol = 5e-6

func TestAttention(t *testing.T) {
	for ci, tc := range attnCases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			x := newAttnData(newRNG(uint64(100+ci)), s)
			ref := x.ref(s, tc.p)
			eachConfig(t, func(t *testing.T, be *Backend) {
				poisonScratch(be)
				r := newAttnRun(t, be, s, x)
				r.forward(be, tc.p)
				checkRel(t, "out", download(t, be, r.out), ref.out, attnTol)
				// lse is compared absolutely: it is a logarithm, whose
				// error is relative to the sum.
				assertClose(t, "lse", download(t, be, r.lse), ref.lse, 0, 2e-6*max(1, maxAbs(ref.lse)))

				// Without lse the outputs are the same.
				out2 := poisoned(t, be, s.B, s.Tq, s.H, s.D)
				be.Attention(out2, backend.Tensor{}, r.q, r.k, r.v, tc.p)
				if got, want := download(t, be, out2), download(t, be, r.out); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("out without lse differs from out with it")
				}

				r.backward(be, tc.p)
				r.checkGrads(t, be, ref)
			})
		})
	}
}

// TestAttentionRefGrad checks the float64 reference's gradients, and the
// kernels' on the same tiny case, against central finite differences of
// the reference's forward: the loss Σ w⊙out for fixed random w.
func TestAttentionRefGrad(t *testing.T) {
	cases := []struct {
		name string
		s    attnShape
		p    backend.AttentionParams
	}{
		{"causal/offset/gqa", attnShape{1, 3, 5, 4, 2, 3}, backend.AttentionParams{Scale: 0.7, Causal: true, QueryOffset: 2}},
		{"softcap/window", attnShape{2, 4, 4, 2, 1, 3}, backend.AttentionParams{Scale: 1.3, Softcap: 1.5, Causal: true, Window: 2}},
		{"full", attnShape{1, 2, 3, 1, 1, 5}, backend.AttentionParams{Scale: 0.9}},
		{"seg/causal/gqa", attnShape{2, 5, 5, 2, 1, 3}, withSegments(backend.AttentionParams{Scale: 0.8, Causal: true}, packed([]int{2, 3}, []int{1, 4}))},
		{"seg/full/offset", attnShape{1, 3, 6, 1, 1, 4}, withSegments(backend.AttentionParams{Scale: 0.9, QueryOffset: 2}, packed([]int{3, 3}))},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			x := newAttnData(newRNG(uint64(7+ci)), s) // dout is the loss's weights w
			q, k, v, w := f64(x.q), f64(x.k), f64(x.v), f64(x.dout)
			ref := x.ref(s, tc.p)
			loss := func(q, k, v []float64) float64 {
				out := refAttention(s, tc.p, q, k, v, nil).out
				l := 0.0
				for i := range out {
					l += w[i] * out[i]
				}
				return l
			}
			num := map[string][]float64{
				"dq": numGrad(func(x []float64) float64 { return loss(x, k, v) }, q),
				"dk": numGrad(func(x []float64) float64 { return loss(q, x, v) }, k),
				"dv": numGrad(func(x []float64) float64 { return loss(q, k, x) }, v),
			}
			for name, analytic := range map[string][]float64{"dq": ref.dq, "dk": ref.dk, "dv": ref.dv} {
				for i := range analytic {
					if d := math.Abs(analytic[i] - num[name][i]); d > 1e-7*max(1, maxAbs(num[name])) {
						t.Errorf("reference %s[%d] = %.10g, finite differences %.10g", name, i, analytic[i], num[name][i])
					}
				}
			}
			be := New(Options{Threads: 1})
			r := newAttnRun(t, be, s, x)
			r.forward(be, tc.p)
			r.backward(be, tc.p)
			r.checkGrads(t, be, refAttn{dq: num["dq"], dk: num["dk"], dv: num["dv"]})
			if err := be.Sync(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestAttentionPackedMatchesAlone checks the promise of sequence packing
// with the kernels themselves: every document of a packed batch gets the
// outputs, lse and gradients of the same document run alone as a batch
// of one (its keys, and the queries at them, with the offset that places
// them), and the keys no query sees get zero gradients.
func TestAttentionPackedMatchesAlone(t *testing.T) {
	cases := []struct {
		name string
		s    attnShape
		p    backend.AttentionParams
		docs [][]int
	}{
		{"causal", attnShape{2, 130, 130, 2, 2, 8}, backend.AttentionParams{Scale: 0.4, Causal: true}, [][]int{{1, 64, 3, 62}, {90, 40}}},
		{"full/gqa4", attnShape{2, 60, 60, 4, 1, 6}, backend.AttentionParams{Scale: 0.5}, [][]int{{17, 1, 42}, {60}}},
		{"window/softcap/gqa2", attnShape{1, 80, 80, 4, 2, 8}, backend.AttentionParams{Scale: 0.7, Softcap: 2, Causal: true, Window: 10}, [][]int{{5, 33, 2, 40}}},
		{"offset", attnShape{2, 30, 70, 2, 1, 5}, backend.AttentionParams{Scale: 0.45, Causal: true, QueryOffset: 35}, [][]int{{20, 30, 20}, {40, 30}}},
		{"offset/full", attnShape{1, 12, 40, 2, 2, 4}, backend.AttentionParams{Scale: 0.45, QueryOffset: 14}, [][]int{{10, 10, 20}}},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, p := tc.s, withSegments(tc.p, packed(tc.docs...))
			x := newAttnData(newRNG(uint64(300+ci)), s)
			eachConfig(t, func(t *testing.T, be *Backend) {
				r := newAttnRun(t, be, s, x)
				r.forward(be, p)
				r.backward(be, p)
				gOut, gLSE, gdq, gdk, gdv := download(t, be, r.out), download(t, be, r.lse), download(t, be, r.dq), download(t, be, r.dk), download(t, be, r.dv)
				qw, kw := s.H*s.D, s.KV*s.D // floats per position
				for b, lens := range tc.docs {
					j0 := 0
					for _, n := range lens {
						j1 := j0 + n
						// The queries at keys [j0, j1).
						i0, i1 := max(j0-p.QueryOffset, 0), min(j1-p.QueryOffset, s.Tq)
						kr := func(x []float32) []float32 { return x[(b*s.Tk+j0)*kw : (b*s.Tk+j1)*kw] }
						name := fmt.Sprintf("sequence %d keys [%d, %d)", b, j0, j1)
						if i0 >= i1 {
							for _, g := range [][]float32{kr(gdk), kr(gdv)} {
								for x, val := range g {
									if val != 0 {
										t.Fatalf("%s: no query sees them, but key gradient [%d] = %g", name, x, val)
									}
								}
							}
							j0 = j1
							continue
						}
						qr := func(x []float32) []float32 { return x[(b*s.Tq+i0)*qw : (b*s.Tq+i1)*qw] }
						a := attnShape{1, i1 - i0, n, s.H, s.KV, s.D}
						ap := tc.p
						ap.QueryOffset = i0 + p.QueryOffset - j0
						ar := newAttnRun(t, be, a, attnData{qr(x.q), kr(x.k), kr(x.v), qr(x.dout)})
						ar.forward(be, ap)
						ar.backward(be, ap)
						var lseRows []float32
						for h := range s.H {
							o := (b*s.H + h) * s.Tq
							lseRows = append(lseRows, gLSE[o+i0:o+i1]...)
						}
						// Errors are measured against the scale of the
						// whole packed tensor: a document's gradients may
						// be all rounding (one key without a mask: zero
						// but for it).
						for _, c := range []struct {
							what           string
							got, want, all []float32
						}{
							{"out", qr(gOut), download(t, be, ar.out), gOut},
							{"lse", lseRows, download(t, be, ar.lse), gLSE},
							{"dq", qr(gdq), download(t, be, ar.dq), gdq},
							{"dk", kr(gdk), download(t, be, ar.dk), gdk},
							{"dv", kr(gdv), download(t, be, ar.dv), gdv},
						} {
							assertClose(t, name+" "+c.what, c.got, f64(c.want), 0, 1e-6*maxAbs(f64(c.all)))
						}
						j0 = j1
					}
				}
			})
		})
	}
}

// TestAttentionMatchesUnfused checks the fused ops against the backend's
// own unfused composition (MatMul, Softmax with the same mask, MatMul;
// SoftmaxGrad and the three gradient products), on one head with a
// causal mask and an offset, as an independent path through other
// kernels.
func TestAttentionMatchesUnfused(t *testing.T) {
	const tq, tk, d = 19, 27, 6
	p := backend.AttentionParams{Scale: 0.4, Causal: true, QueryOffset: 8}
	rng := newRNG(3)
	q32, k32, v32, do32 := uniform(rng, tq*d, -1, 1), uniform(rng, tk*d, -1, 1), uniform(rng, tk*d, -1, 1), uniform(rng, tq*d, -1, 1)
	be := New(Options{Threads: 1})
	q, k, v, dout := upload(t, be, q32, 1, tq, 1, d), upload(t, be, k32, 1, tk, 1, d), upload(t, be, v32, 1, tk, 1, d), upload(t, be, do32, 1, tq, 1, d)
	q2, k2, v2, do2 := q.MustReshape(tq, d), k.MustReshape(tk, d), v.MustReshape(tk, d), dout.MustReshape(tq, d)
	sc, pr, o := poisoned(t, be, tq, tk), poisoned(t, be, tq, tk), poisoned(t, be, tq, d)
	be.MatMul(sc, q2, k2, backend.MatMulParams{TransB: true, Alpha: 1})
	be.Softmax(pr, sc, p.Mask())
	be.MatMul(o, pr, v2, backend.MatMulParams{Alpha: 1})
	dp, dq, dk, dv := poisoned(t, be, tq, tk), poisoned(t, be, tq, d), poisoned(t, be, tk, d), poisoned(t, be, tk, d)
	be.MatMul(dp, do2, v2, backend.MatMulParams{TransB: true, Alpha: 1})
	be.SoftmaxGrad(dp, pr, dp, p.Mask())
	be.MatMul(dq, dp, k2, backend.MatMulParams{Alpha: 1})
	be.MatMul(dk, dp, q2, backend.MatMulParams{TransA: true, Alpha: 1})
	be.MatMul(dv, pr, do2, backend.MatMulParams{TransA: true, Alpha: 1})

	out, lse := poisoned(t, be, 1, tq, 1, d), poisoned(t, be, 1, 1, tq)
	fdq, fdk, fdv := poisoned(t, be, 1, tq, 1, d), poisoned(t, be, 1, tk, 1, d), poisoned(t, be, 1, tk, 1, d)
	be.Attention(out, lse, q, k, v, p)
	be.AttentionGrad(fdq, fdk, fdv, q, k, v, out, lse, dout, p)
	for _, c := range []struct {
		name      string
		got, want backend.Tensor
	}{{"out", out, o}, {"dq", fdq, dq}, {"dk", fdk, dk}, {"dv", fdv, dv}} {
		checkRel(t, c.name, download(t, be, c.got), f64(download(t, be, c.want)), attnTol)
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestAttentionSplits runs the backward where there are fewer (batch,
// key/value head) pairs than attnTasks, which splits each pair's blocks
// into parts with private dk and dv sums, and checks the results are the
// reference's and, since the splits follow from the shape, the same as a
// single thread's, bit for bit, dk and dv included.
func TestAttentionSplits(t *testing.T) {
	causal := backend.AttentionParams{Scale: 0.4, Causal: true}
	cases := []struct {
		s       attnShape
		threads int
		p       backend.AttentionParams
	}{
		{attnShape{1, 150, 150, 2, 1, 8}, 2, causal},
		{attnShape{1, 150, 150, 4, 1, 8}, 3, causal},
		{attnShape{3, 70, 70, 1, 1, 5}, 2, causal},
		{attnShape{1, 200, 200, 1, 1, 4}, 4, causal},
		{attnShape{1, 150, 150, 2, 1, 8}, 2, backend.AttentionParams{Scale: 0.4, Causal: true, Window: 20}},
		{attnShape{1, 100, 180, 4, 1, 8}, 3, backend.AttentionParams{Scale: 0.4, Causal: true, QueryOffset: 70, Window: 33}},
		{attnShape{1, 130, 90, 1, 1, 4}, 2, backend.AttentionParams{Scale: 0.4}},
		{attnShape{1, 200, 200, 2, 1, 8}, 3, withSegments(causal, packed([]int{1, 70, 30, 64, 35}))},
		{attnShape{1, 150, 150, 4, 1, 8}, 3, withSegments(causal, packed([]int{150}))},
		{attnShape{2, 100, 100, 1, 1, 4}, 3, withSegments(backend.AttentionParams{Scale: 0.4}, packed([]int{50, 50}, []int{10, 1, 89}))},
		{attnShape{1, 80, 160, 4, 1, 8}, 3, withSegments(backend.AttentionParams{Scale: 0.4, Causal: true, QueryOffset: 80, Window: 33}, packed([]int{100, 20, 40}))},
	}
	for ci, tc := range cases {
		s, p := tc.s, tc.p
		t.Run(fmt.Sprintf("%v/threads%d/window%d/segments%v", s, tc.threads, p.Window, p.Segments != nil), func(t *testing.T) {
			x := newAttnData(newRNG(uint64(50+ci)), s)
			ref := x.ref(s, p)
			var first [][]float32
			for _, threads := range []int{1, tc.threads} {
				be := New(Options{Threads: threads})
				be.grain = 1
				poisonScratch(be)
				d := backend.AttentionDims{Batch: s.B, Queries: s.Tq, Keys: s.Tk, Heads: s.H, KVHeads: s.KV, HeadDim: s.D}
				c := newAttnCall(d, p, be.kern)
				if p.Segments != nil {
					be.attnSegments(&c, p.Segments)
				}
				if _, splits := be.gradPlan(&c); splits == 1 {
					t.Fatalf("case does not split: %d items", c.gradItems())
				}
				r := newAttnRun(t, be, s, x)
				r.forward(be, p)
				r.backward(be, p)
				r.checkGrads(t, be, ref)
				got := [][]float32{download(t, be, r.dq), download(t, be, r.dk), download(t, be, r.dv)}
				if err := be.Sync(); err != nil {
					t.Fatal(err)
				}
				if first == nil {
					first = got
					continue
				}
				if msg := bitsDiffer(got, first); msg != "" {
					t.Errorf("dq, dk, dv differ between 1 and %d threads: %s", threads, msg)
				}
			}
		})
	}
}

func TestAttentionSplitCount(t *testing.T) {
	for _, c := range []struct{ items, tasks, blocks, want int }{
		{1, 1, 8, 1}, {8, 2, 8, 1}, {1, 2, 8, 2}, {1, 2, 1, 1}, {3, 2, 8, 1},
		{2, 16, 8, 8}, {2, 16, 32, 8}, {4, 16, 32, 4}, {5, 16, 32, 4}, {6, 16, 32, 3},
		{16, 16, 8, 1}, {1, 16, 4, 4},
	} {
		if got := attnSplits(c.items, c.tasks, c.blocks); got != c.want {
			t.Errorf("attnSplits(%d items, %d tasks, %d blocks) = %d, want %d", c.items, c.tasks, c.blocks, got, c.want)
		}
	}
}

// TestAttentionTasks checks that the backward's tasks, and so its splits,
// follow from the work and grain, whatever the thread cap.
func TestAttentionTasks(t *testing.T) {
	for _, threads := range []int{1, 2, 7} {
		be := New(Options{Threads: threads})
		for _, c := range []struct{ n, cost, want int }{
			{1, 1, 1}, {4, defaultGrain / 4, 1}, {2, defaultGrain, 2}, {3, 2 * defaultGrain, 6},
			{100, defaultGrain, attnTasks}, {1, 1 << 30, attnTasks},
		} {
			if got := be.tasksFor(c.n, c.cost); got != c.want {
				t.Errorf("%d threads: tasksFor(%d, %d) = %d, want %d", threads, c.n, c.cost, got, c.want)
			}
		}
	}
}

// TestAttentionEmpty checks calls with no queries: nothing to write in
// the forward, and zero key gradients in the backward.
func TestAttentionEmpty(t *testing.T) {
	be := New(Options{Threads: 1})
	q, out, dq, dout := poisoned(t, be, 2, 0, 2, 4), poisoned(t, be, 2, 0, 2, 4), poisoned(t, be, 2, 0, 2, 4), poisoned(t, be, 2, 0, 2, 4)
	k, v := upload(t, be, make([]float32, 2*3*2*4), 2, 3, 2, 4), upload(t, be, make([]float32, 2*3*2*4), 2, 3, 2, 4)
	lse := poisoned(t, be, 2, 2, 0)
	dk, dv := poisoned(t, be, 2, 3, 2, 4), poisoned(t, be, 2, 3, 2, 4)
	p := backend.AttentionParams{Scale: 0.5}
	be.Attention(out, lse, q, k, v, p)
	be.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, x := range []backend.Tensor{dk, dv} {
		for i, g := range download(t, be, x) {
			if g != 0 {
				t.Fatalf("key gradient [%d] = %g with no queries, want 0", i, g)
			}
		}
	}
}

// TestAttentionErrors checks that invalid calls record an error (the
// shared validation's) and write nothing.
func TestAttentionErrors(t *testing.T) {
	be := New(Options{Threads: 1})
	q, k, v := poisoned(t, be, 1, 3, 2, 4), poisoned(t, be, 1, 3, 2, 4), poisoned(t, be, 1, 3, 2, 4)
	out := upload(t, be, make([]float32, 24), 1, 3, 2, 4)
	bad := []struct {
		name string
		call func()
	}{
		{"scale 0", func() { be.Attention(out, backend.Tensor{}, q, k, v, backend.AttentionParams{}) }},
		{"window without causal", func() {
			be.Attention(out, backend.Tensor{}, q, k, v, backend.AttentionParams{Scale: 1, Window: 2})
		}},
		{"grad without lse", func() {
			be.AttentionGrad(out, k, v, q, k, v, out, backend.Tensor{}, out, backend.AttentionParams{Scale: 1})
		}},
	}
	for _, c := range bad {
		c.call()
		if err := be.Sync(); err == nil {
			t.Errorf("%s: no error recorded", c.name)
		}
	}
	for i, x := range download(t, be, out) {
		if x != 0 {
			t.Fatalf("out[%d] = %g after refused calls, want it untouched", i, x)
		}
	}
	if !be.Supports(backend.OpAttention) || !be.Supports(backend.OpAttentionGrad) {
		t.Error("Supports does not report the attention ops")
	}
}

// TestAttentionNoAllocs checks that warmed-up single-threaded calls
// allocate nothing: scratch and matrix-multiply engines are reused.
func TestAttentionNoAllocs(t *testing.T) {
	s := attnShape{2, 70, 70, 4, 2, 8}
	p := backend.AttentionParams{Scale: 0.35, Causal: true, Softcap: 20}
	be := New(Options{Threads: 1})
	r := newAttnRun(t, be, s, newAttnData(newRNG(9), s))
	// The backward splits each item even on one thread (the splits follow
	// from the shape), so its copies' reduction is among what must not
	// allocate.
	c := newAttnCall(backend.AttentionDims{Batch: s.B, Queries: s.Tq, Keys: s.Tk, Heads: s.H, KVHeads: s.KV, HeadDim: s.D}, p, be.kern)
	if _, splits := be.gradPlan(&c); splits < 2 {
		t.Fatalf("the backward does not split at this shape (%d splits)", splits)
	}
	for _, p := range []backend.AttentionParams{p, withSegments(p, packed([]int{1, 40, 29}, []int{70}))} {
		fwd := func() { be.Attention(r.out, backend.Tensor{}, r.q, r.k, r.v, p) }
		fwdLSE := func() { r.forward(be, p) }
		bwd := func() { r.backward(be, p) }
		fwdLSE()
		bwd()
		seg := p.Segments != nil
		if n := testing.AllocsPerRun(5, fwd); n != 0 {
			t.Errorf("Attention (segments %v) allocates %v times per call once warm", seg, n)
		}
		if n := testing.AllocsPerRun(5, fwdLSE); n != 0 {
			t.Errorf("Attention with lse (segments %v) allocates %v times per call once warm", seg, n)
		}
		if n := testing.AllocsPerRun(5, bwd); n != 0 {
			t.Errorf("AttentionGrad (segments %v) allocates %v times per call once warm", seg, n)
		}
		if err := be.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAttentionRandom runs calls of random shapes and parameters (causal
// or not, offsets, windows, caps, groups, packed documents of 1 to 100
// keys, 1 to 4 threads with the smallest grain, so that the backward
// splits and the workers take blocks in every order) against the float64
// reference: the tables above pick the edges, this looks between them.
func TestAttentionRandom(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	rng := newRNG(12345)
	for c := range n {
		s := attnShape{B: 1 + rng.IntN(3), Tk: 1 + rng.IntN(90), KV: 1 + rng.IntN(2), D: 1 + rng.IntN(9)}
		s.H = s.KV * (1 + rng.IntN(5))
		p := backend.AttentionParams{Scale: float32(0.2 + rng.Float64()), Causal: rng.IntN(4) != 0}
		if rng.IntN(3) == 0 {
			p.Softcap = float32(0.5 + 3*rng.Float64())
		}
		if rng.IntN(2) == 0 {
			// Packed: every query sits at a key.
			s.Tq = 1 + rng.IntN(s.Tk)
			p.QueryOffset = rng.IntN(s.Tk - s.Tq + 1)
			docs := make([][]int, s.B)
			for b := range docs {
				for left := s.Tk; left > 0; {
					n := 1 + rng.IntN(min(left, []int{2, 8, 40, 100}[rng.IntN(4)]))
					docs[b] = append(docs[b], n)
					left -= n
				}
			}
			p.Segments = packed(docs...)
		} else {
			s.Tq = 1 + rng.IntN(90)
			p.QueryOffset = rng.IntN(s.Tk + 3)
			if !p.Causal {
				p.QueryOffset -= 2 // ignored, negative included
			}
		}
		if p.Causal && rng.IntN(2) == 0 {
			p.Window = 1 + rng.IntN(30)
			if p.QueryOffset-p.Window >= s.Tk-s.Tq {
				p.Window = 0 // it would leave the last query no key
			}
		}
		threads := 1 + rng.IntN(4)
		x := newAttnData(rng, s)
		name := fmt.Sprintf("call %d: %+v, %+v, %d threads", c, s, p, threads)
		ref := x.ref(s, p)
		be := New(Options{Threads: threads})
		be.grain, be.gemmGrain = 1, 1
		poisonScratch(be)
		r := newAttnRun(t, be, s, x)
		r.forward(be, p)
		r.backward(be, p)
		if err := be.Sync(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// dq and dk may cancel to almost nothing (a query that sees two
		// keys of nearly the same value, say), where the rounding of
		// their terms, of the order of Scale·D for inputs in [-1, 1],
		// is what is left: they are measured against that scale at
		// least.
		terms := float64(p.Scale) * float64(s.D)
		for _, o := range []struct {
			what  string
			got   backend.Tensor
			want  []float64
			floor float64
		}{{"out", r.out, ref.out, 0}, {"dq", r.dq, ref.dq, terms}, {"dk", r.dk, ref.dk, terms}, {"dv", r.dv, ref.dv, 0}} {
			got := download(t, be, o.got)
			e := 0.0
			for i, w := range o.want {
				e = max(e, math.Abs(float64(got[i])-w))
			}
			if e /= max(maxAbs(o.want), o.floor); !(e <= attnTol) {
				t.Fatalf("%s: %s relative error %.3g > %.1g", name, o.what, e, attnTol)
			}
		}
		assertClose(t, name+" lse", download(t, be, r.lse), ref.lse, 0, 2e-6*max(1, maxAbs(ref.lse)))
	}
}

// TestAddKeyGrads checks addKeyGrads on every placement of a block's keys
// against the rows written before, cov: the calls' blocks always overlap
// the rows written before them and reach no further than they do, but
// its gap and past-the-end cases must keep its promise too (rows in cov
// summed into, others written, a gap between them cleared).
func TestAddKeyGrads(t *testing.T) {
	const keys, D, m, ldk = 12, 3, 2, 4 // dst rows of D values, ldk apart
	c := attnCall{d: backend.AttentionDims{HeadDim: D}}
	e := gemm.NewEngine(gemm.Config{Threads: 1})
	rng := newRNG(5)
	bm := uniform(rng, m*D, -1, 1)
	for _, tc := range []struct {
		lo, hi int
		cov    keyRange
	}{
		{3, 7, keyRange{-1, -1}}, // nothing written yet
		{2, 6, keyRange{4, 10}},  // overlapping, earlier (the kernels' case)
		{4, 10, keyRange{4, 10}}, // the same keys
		{5, 8, keyRange{2, 10}},  // inside
		{1, 4, keyRange{7, 10}},  // before, with a gap of 3
		{8, 11, keyRange{2, 5}},  // after, with a gap of 3
		{0, 12, keyRange{4, 6}},  // around
	} {
		a := uniform(rng, m*(tc.hi-tc.lo), -1, 1)
		dst := uniform(rng, keys*ldk, -1, 1)
		want := f64(dst)
		for j := range keys {
			inCov, inBlock := j >= tc.cov.lo && j < tc.cov.hi, j >= tc.lo && j < tc.hi
			gap := tc.cov.lo >= 0 && !inCov && !inBlock && j >= min(tc.lo, tc.cov.lo) && j < max(tc.hi, tc.cov.hi)
			for x := range D {
				w := &want[j*ldk+x]
				switch {
				case inBlock:
					if !inCov {
						*w = 0
					}
					for r := range m {
						*w += float64(a[r*(tc.hi-tc.lo)+j-tc.lo]) * float64(bm[r*D+x])
					}
				case gap:
					*w = 0
				}
			}
		}
		got := c.addKeyGrads(e, dst, ldk, a, bm, D, m, tc.lo, tc.hi, tc.cov)
		name := fmt.Sprintf("keys [%d, %d) after %v", tc.lo, tc.hi, tc.cov)
		wantCov := keyRange{tc.lo, tc.hi}
		if tc.cov.lo >= 0 {
			wantCov = keyRange{min(tc.lo, tc.cov.lo), max(tc.hi, tc.cov.hi)}
		}
		if got != wantCov {
			t.Errorf("%s: returned %v, want %v", name, got, wantCov)
		}
		assertClose(t, name, dst, want, 0, 1e-6)
	}
}
