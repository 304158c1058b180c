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
}

func randVals(rng *rand.Rand, n int, span float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = span * (2*rng.Float64() - 1)
	}
	return x
}

func TestRefAttentionMatchesComposition(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, tt := range refAttnTests {
		t.Run(tt.name, func(t *testing.T) {
			s, p := tt.s, tt.p
			q := randVals(rng, s.B*s.Tq*s.H*s.D, tt.span)
			k := randVals(rng, s.B*s.Tk*s.KV*s.D, tt.span)
			v := randVals(rng, s.B*s.Tk*s.KV*s.D, 1)
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
							if refops.SoftmaxSees(i, j, s.Tq, mask) != attnSees(i, j, p) {
								t.Fatalf("query %d, key %d: attnSees disagrees with refops.SoftmaxSees", i, j)
							}
							if attnSees(i, j, p) {
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
			q := randVals(rng, s.B*s.Tq*s.H*s.D, tt.span)
			k := randVals(rng, s.B*s.Tk*s.KV*s.D, tt.span)
			v := randVals(rng, s.B*s.Tk*s.KV*s.D, 1)
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
