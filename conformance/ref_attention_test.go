package conformance

import (
	"math"
	"math/rand"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/refops"
)

// The attention reference is the yardstick of every backend's fused
// attention, so it is checked here by other routes: the forward against
// the unfused composition (scores, refops' masked softmax, a gonum
// product) with the key/value head of each query head looked up in a
// table, and the backward against central finite differences of the
// forward. A mistake shared by the reference and a kernel would otherwise
// pass unseen.

var refAttnTests = []struct {
	name string
	s    attnShape
	p    backend.AttentionParams
	span float64
}{
	{"plain", attnShape{B: 1, Tq: 3, Tk: 5, H: 2, KV: 2, D: 4}, backend.AttentionParams{Scale: 0.5}, 1},
	{"gqa causal", attnShape{B: 2, Tq: 4, Tk: 4, H: 4, KV: 2, D: 3}, backend.AttentionParams{Scale: 0.7, Causal: true}, 1},
	{"mqa offset", attnShape{B: 1, Tq: 3, Tk: 7, H: 3, KV: 1, D: 5}, backend.AttentionParams{Scale: 0.4, Causal: true, QueryOffset: 4}, 1},
	{"window softcap", attnShape{B: 1, Tq: 5, Tk: 8, H: 4, KV: 1, D: 3}, backend.AttentionParams{Scale: 1, Softcap: 2, Causal: true, QueryOffset: 3, Window: 3}, 2},
	{"gqa 4 softcap", attnShape{B: 2, Tq: 3, Tk: 6, H: 8, KV: 2, D: 2}, backend.AttentionParams{Scale: 0.9, Softcap: 1.5}, 2},
	{"decode window 1", attnShape{B: 1, Tq: 1, Tk: 6, H: 2, KV: 1, D: 3}, backend.AttentionParams{Scale: 0.5, Causal: true, QueryOffset: 5, Window: 1}, 1},
	{"decode window 3", attnShape{B: 2, Tq: 1, Tk: 9, H: 4, KV: 2, D: 3}, backend.AttentionParams{Scale: 0.5, Causal: true, QueryOffset: 8, Window: 3}, 1},
	{"queries beyond keys", attnShape{B: 1, Tq: 6, Tk: 3, H: 2, KV: 1, D: 2}, backend.AttentionParams{Scale: 0.8, Causal: true}, 1},
	// Segments: documents of 3, 1 and 3 keys; two sequences packed
	// differently, not causal; queries the last 4 of 9 keys with a window
	// and a cap; not causal with a query offset (the last key's document
	// holds no query); one document.
	{"segments causal", attnShape{B: 1, Tq: 7, Tk: 7, H: 2, KV: 1, D: 3}, backend.AttentionParams{Scale: 0.6, Causal: true, Segments: docs("0:3+1:1+2:3")}, 1},
	{"segments gqa batch", attnShape{B: 2, Tq: 5, Tk: 5, H: 4, KV: 2, D: 2}, backend.AttentionParams{Scale: 0.8, Segments: docs("4:2+9:3", "-1:1+0:4")}, 1},
	{"segments offset window softcap", attnShape{B: 1, Tq: 4, Tk: 9, H: 2, KV: 1, D: 3}, backend.AttentionParams{Scale: 1, Softcap: 2, Causal: true, QueryOffset: 5, Window: 3, Segments: docs("0:6+1:3")}, 2},
	{"segments offset not causal", attnShape{B: 1, Tq: 3, Tk: 6, H: 2, KV: 2, D: 2}, backend.AttentionParams{Scale: 0.7, QueryOffset: 2, Segments: docs("3:3+7:2+8:1")}, 1},
	{"segments one document", attnShape{B: 1, Tq: 5, Tk: 5, H: 2, KV: 1, D: 3}, backend.AttentionParams{Scale: 0.5, Causal: true, Segments: docs("2:5")}, 1},
}

func randVals(rng *rand.Rand, n int, span float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = span * (2*rng.Float64() - 1)
	}
	return x
}

// refQKV draws q, k and v for shape s: q and k uniform in [-span, span],
// v in [-1, 1].
func refQKV(rng *rand.Rand, s attnShape, span float64) (q, k, v []float64) {
	q = randVals(rng, s.B*s.Tq*s.H*s.D, span)
	k = randVals(rng, s.B*s.Tk*s.KV*s.D, span)
	return q, k, randVals(rng, len(k), 1)
}

func TestRefAttentionMatchesComposition(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, tt := range refAttnTests {
		t.Run(tt.name, func(t *testing.T) {
			s, p := tt.s, tt.p
			q, k, v := refQKV(rng, s, tt.span)
			out, lse := refAttention(q, k, v, s, p)

			// Which key/value head serves each query head, by counting:
			// the first H/KV heads use 0, the next H/KV use 1, and so on.
			kvOf := make([]int, 0, s.H)
			for g := 0; g < s.KV; g++ {
				for n := 0; n < s.H/s.KV; n++ {
					kvOf = append(kvOf, g)
				}
			}
			mask := backend.SoftmaxParams{Scale: 1, Causal: p.Causal, QueryOffset: p.QueryOffset, Window: p.Window}
			// Segments, another way: number each key's document by
			// counting the changes of number before it in its sequence.
			docOf := make([]int, s.B*s.Tk)
			for b := 0; b < s.B && p.Segments != nil; b++ {
				for j := 1; j < s.Tk; j++ {
					docOf[b*s.Tk+j] = docOf[b*s.Tk+j-1]
					if p.Segments[b*s.Tk+j] != p.Segments[b*s.Tk+j-1] {
						docOf[b*s.Tk+j]++
					}
				}
			}
			sameDoc := func(b, i, j int) bool {
				return p.Segments == nil || docOf[b*s.Tk+j] == docOf[b*s.Tk+i+p.QueryOffset]
			}
			for b := 0; b < s.B; b++ {
				for h := 0; h < s.H; h++ {
					// Gather this head's q [Tq, D], k and v [Tk, D].
					Q := mat.NewDense(s.Tq, s.D, nil)
					K := mat.NewDense(s.Tk, s.D, nil)
					V := mat.NewDense(s.Tk, s.D, nil)
					for i := 0; i < s.Tq; i++ {
						for d := 0; d < s.D; d++ {
							Q.Set(i, d, q[((b*s.Tq+i)*s.H+h)*s.D+d])
						}
					}
					for j := 0; j < s.Tk; j++ {
						for d := 0; d < s.D; d++ {
							K.Set(j, d, k[((b*s.Tk+j)*s.KV+kvOf[h])*s.D+d])
							V.Set(j, d, v[((b*s.Tk+j)*s.KV+kvOf[h])*s.D+d])
						}
					}
					var S mat.Dense
					S.Mul(Q, K.T())
					scores := make([]float64, s.Tq*s.Tk)
					for i := 0; i < s.Tq; i++ {
						for j := 0; j < s.Tk; j++ {
							x := float64(p.Scale) * S.At(i, j)
							if p.Softcap > 0 {
								x = float64(p.Softcap) * math.Tanh(x/float64(p.Softcap))
							}
							if !sameDoc(b, i, j) {
								x = math.Inf(-1) // exp gives it weight 0
							}
							scores[i*s.Tk+j] = x
						}
					}
					P := mat.NewDense(s.Tq, s.Tk, refops.SoftmaxMasked(scores, s.Tq, s.Tk, mask))
					var O mat.Dense
					O.Mul(P, V)
					for i := 0; i < s.Tq; i++ {
						for d := 0; d < s.D; d++ {
							got, want := out[((b*s.Tq+i)*s.H+h)*s.D+d], O.At(i, d)
							if math.Abs(got-want) > 1e-12 {
								t.Fatalf("out[%d,%d,%d,%d] = %.15g, composition gives %.15g", b, i, h, d, got, want)
							}
						}
						// lse: the log of the sum, summed directly (the
						// test's scores are small enough not to overflow).
						var sum float64
						for j := 0; j < s.Tk; j++ {
							sees := refops.SoftmaxSees(i, j, s.Tq, mask) && sameDoc(b, i, j)
							if s.sees(b, i, j, p) != sees {
								t.Fatalf("sequence %d, query %d, key %d: attnShape.sees says %v, refops.SoftmaxSees and the document count %v", b, i, j, !sees, sees)
							}
							if sees {
								sum += math.Exp(scores[i*s.Tk+j])
							}
						}
						if got, want := lse[(b*s.H+h)*s.Tq+i], math.Log(sum); math.Abs(got-want) > 1e-12 {
							t.Fatalf("lse[%d,%d,%d] = %.15g, log Σ exp gives %.15g", b, h, i, got, want)
						}
					}
				}
			}
		})
	}
}

// TestRefAttentionGradFiniteDifferences checks the analytic gradients of
// L = Σ dout⊙out against central differences of refAttention.
func TestRefAttentionGradFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, tt := range refAttnTests {
		t.Run(tt.name, func(t *testing.T) {
			s, p := tt.s, tt.p
			q, k, v := refQKV(rng, s, tt.span)
			dout := randVals(rng, len(q), 1)
			dq, dk, dv := refAttentionGrad(q, k, v, dout, s, p)
			loss := func() float64 {
				out, _ := refAttention(q, k, v, s, p)
				var l float64
				for i := range out {
					l += dout[i] * out[i]
				}
				return l
			}
			const h = 1e-5
			for _, x := range []struct {
				name string
				val  []float64
				grad []float64
			}{{"dq", q, dq}, {"dk", k, dk}, {"dv", v, dv}} {
				var num, den float64
				for i := range x.val {
					old := x.val[i]
					x.val[i] = old + h
					up := loss()
					x.val[i] = old - h
					down := loss()
					x.val[i] = old
					fd := (up - down) / (2 * h)
					num += (fd - x.grad[i]) * (fd - x.grad[i])
					den += fd * fd
				}
				if den == 0 {
					// A query that sees one key has weight 1 whatever
					// q·k is: no gradient flows to q or k.
					if num != 0 || x.name == "dv" {
						t.Errorf("%s: the finite differences are all zero, the analytic gradient not (squared error %g)", x.name, num)
					}
					continue
				}
				// Central differences in float64 with h = 1e-5 are good to
				// about h² ≈ 1e-10 relative; an analytic slip (a missing
				// factor, a wrong head) is of order 1.
				r := math.Sqrt(num / den)
				if r > 1e-7 {
					t.Errorf("%s: relative error %.3g against central differences", x.name, r)
				}
				t.Logf("%s: relative error %.2g", x.name, r)
			}
		})
	}
}

// TestRefAttentionSegmentsAreDocumentsAlone checks the reference's
// segment rule against what it means: packed attention, forward and
// backward, equals each document's attention computed alone, without
// segments (a document's keys get no gradient from other documents'
// queries, and keys of a document without queries none at all), and a
// sequence that is one document equals no segments.
func TestRefAttentionSegmentsAreDocumentsAlone(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	n := 0
	for _, tt := range append(refAttnTests, struct {
		name string
		s    attnShape
		p    backend.AttentionParams
		span float64
	}{"tiles", attnShape{B: 2, Tq: 40, Tk: 70, H: 4, KV: 2, D: 3}, backend.AttentionParams{Scale: 0.5, Causal: true, QueryOffset: 30, Window: 20, Segments: docs("0:1+1:33+2:36", "0:31+1:1+5:38")}, 2}) {
		if tt.p.Segments == nil {
			continue
		}
		n++
		t.Run(tt.name, func(t *testing.T) {
			c := attnCase{s: tt.s, p: tt.p, span: tt.span}
			q, k, v := refQKV(rng, c.s, tt.span)
			dout := randVals(rng, len(q), 1)
			out, lse := refAttention(q, k, v, c.s, c.p)
			dq, dk, dv := refAttentionGrad(q, k, v, dout, c.s, c.p)
			qw, kw := c.s.H*c.s.D, c.s.KV*c.s.D
			// What the documents alone give, put back in place; keys of
			// documents without queries keep 0.
			aOut, aLSE := make([]float64, len(out)), make([]float64, len(lse))
			aDQ, aDK, aDV := make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
			seen := make([]bool, c.s.B*c.s.Tq)
			for _, r := range c.docRuns() {
				if r.i1 == r.i0 {
					continue
				}
				a := c.alone(r)
				qa := rowsOf(q, r.b, r.i0, r.i1, c.s.Tq, qw)
				ka, va := rowsOf(k, r.b, r.k0, r.k1, c.s.Tk, kw), rowsOf(v, r.b, r.k0, r.k1, c.s.Tk, kw)
				o, l := refAttention(qa, ka, va, a.s, a.p)
				gq, gk, gv := refAttentionGrad(qa, ka, va, rowsOf(dout, r.b, r.i0, r.i1, c.s.Tq, qw), a.s, a.p)
				copy(rowsOf(aOut, r.b, r.i0, r.i1, c.s.Tq, qw), o)
				copy(rowsOf(aDQ, r.b, r.i0, r.i1, c.s.Tq, qw), gq)
				copy(rowsOf(aDK, r.b, r.k0, r.k1, c.s.Tk, kw), gk)
				copy(rowsOf(aDV, r.b, r.k0, r.k1, c.s.Tk, kw), gv)
				for h := 0; h < c.s.H; h++ {
					for i := r.i0; i < r.i1; i++ {
						aLSE[(r.b*c.s.H+h)*c.s.Tq+i] = l[h*a.s.Tq+i-r.i0]
						seen[r.b*c.s.Tq+i] = true
					}
				}
			}
			for i, ok := range seen {
				if !ok {
					t.Fatalf("query %d of sequence %d is in no document: docRuns is wrong", i%c.s.Tq, i/c.s.Tq)
				}
			}
			for _, x := range []struct {
				name        string
				packed, doc []float64
			}{{"out", out, aOut}, {"lse", lse, aLSE}, {"dq", dq, aDQ}, {"dk", dk, aDK}, {"dv", dv, aDV}} {
				for i := range x.packed {
					if math.Abs(x.packed[i]-x.doc[i]) > 1e-12 {
						t.Fatalf("%s[%d] = %.15g packed, %.15g from its document alone", x.name, i, x.packed[i], x.doc[i])
					}
				}
			}
			// One document: the segments change nothing.
			if len(c.docRuns()) == c.s.B {
				np := c.p
				np.Segments = nil
				o, l := refAttention(q, k, v, c.s, np)
				for i := range o {
					if o[i] != out[i] {
						t.Fatalf("out[%d] = %.15g with one document, %.15g without segments", i, out[i], o[i])
					}
				}
				for i := range l {
					if l[i] != lse[i] {
						t.Fatalf("lse[%d] = %.15g with one document, %.15g without segments", i, lse[i], l[i])
					}
				}
			}
		})
	}
	if n < 5 {
		t.Fatalf("%d reference tests have segments: the test is wrong", n)
	}
}
