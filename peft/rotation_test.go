package peft

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/sora-go/sora/graph"
)

func randDense(rng *rand.Rand, r, c int, scale float64) *mat.Dense {
	m := mat.NewDense(r, c, nil)
	for i := range r {
		for j := range c {
			m.Set(i, j, scale*rng.NormFloat64())
		}
	}
	return m
}

func identity(n int) *mat.Dense {
	m := mat.NewDense(n, n, nil)
	for i := range n {
		m.Set(i, i, 1)
	}
	return m
}

// opNorm is the spectral norm ‖M‖₂ = σ_max.
func opNorm(m mat.Matrix) float64 {
	var svd mat.SVD
	svd.Factorize(m, mat.SVDNone)
	return svd.Values(nil)[0]
}

// TestFirstOrderAlgebra: for R = I + S with the skew-symmetric S built
// from C and D, Sᵀ = −S and RᵀR − I = −S² (float64, from the factors).
func TestFirstOrderAlgebra(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, scale := range []float64{0.05, 0.3, 1, 4} {
		const out, rp = 11, 3
		rot := newRot64(randDense(rng, out, rp, scale), randDense(rng, out, rp, scale), false)
		r := rot.dense()
		var s mat.Dense
		s.Sub(r, identity(out))
		var skew mat.Dense
		skew.Add(&s, s.T())
		if e := mat.Norm(&skew, math.Inf(1)); e > 1e-15*math.Max(1, mat.Norm(&s, math.Inf(1))) {
			t.Errorf("scale %g: S + Sᵀ has max-norm %.3g", scale, e)
		}
		var rtr, s2, lhs mat.Dense
		rtr.Mul(r.T(), r)
		rtr.Sub(&rtr, identity(out))
		s2.Mul(&s, &s)
		lhs.Add(&rtr, &s2) // RᵀR − I + S² = 0
		if e := mat.Norm(&lhs, math.Inf(1)); e > 1e-14*math.Max(1, mat.Norm(&s2, math.Inf(1))) {
			t.Errorf("scale %g: ‖RᵀR − I + S²‖ = %.3g", scale, e)
		}
		if mat.Norm(&s2, math.Inf(1)) < 1e-6 {
			t.Errorf("scale %g: S² ≈ 0, the check is vacuous", scale)
		}
	}
}

// TestFirstOrderErrorBound: ‖exp(S) − (I + S)‖ ≤ e^‖S‖ − 1 − ‖S‖ on random
// skew-symmetric S of many norms, with gonum's matrix exponential, in the
// spectral and the Frobenius norm; and the low-rank exact form agrees with
// gonum's exponential of the dense S.
func TestFirstOrderErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, scale := range []float64{0.01, 0.1, 0.5, 1, 2, 5} {
		for trial := range 4 {
			const out, rp = 10, 2
			c, d := randDense(rng, out, rp, scale), randDense(rng, out, rp, scale)
			first := newRot64(c, d, false).dense()
			var s mat.Dense
			s.Sub(first, identity(out))
			var e, diff mat.Dense
			e.Exp(&s)
			diff.Sub(&e, first)
			for _, nm := range []struct {
				name string
				f    func(mat.Matrix) float64
			}{{"spectral", opNorm}, {"frobenius", func(m mat.Matrix) float64 { return mat.Norm(m, 2) }}} {
				ns := nm.f(&s)
				bound := math.Exp(ns) - 1 - ns
				if err := nm.f(&diff); err > bound*(1+1e-12)+1e-16 {
					t.Errorf("scale %g trial %d: %s ‖exp(S) − I − S‖ = %.6g exceeds e^‖S‖ − 1 − ‖S‖ = %.6g", scale, trial, nm.name, err, bound)
				}
			}
			exact := newRot64(c, d, true).dense()
			if err := maxAbsDiff(exact.RawMatrix().Data, e.RawMatrix().Data); err > 1e-13 {
				t.Errorf("scale %g trial %d: low-rank exp(S) differs from gonum's by %.3g", scale, trial, err)
			}
		}
	}
}

// TestPhiSeries: φ(M) evaluated with graph ops in float32 (scaling and
// doubling) against the float64 block-exponential reference, for norms
// from 0 to 50.
func TestPhiSeries(t *testing.T) {
	b := openCPU(t)
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 8
	for _, scale := range []float64{0, 0.01, 0.1, 0.5, 2, 10, 50} {
		m := randDense(rng, n, n, scale/math.Sqrt(n*n))
		want := phi64(m).RawMatrix().Data
		g := graph.New(b)
		got, err := phiSeries(g, g.Input(to32(m.RawMatrix().Data), n, n)).Download()
		g.Close()
		if err != nil {
			t.Fatal(err)
		}
		// φ grows like e^‖M‖/‖M‖: compare relative to its size.
		if e := relMax(got, want); e > 2e-5*math.Max(1, scale/5) {
			t.Errorf("‖M‖_F ≈ %g: relative error %.3g", scale, e)
		} else {
			t.Logf("‖M‖_F ≈ %g: relative error %.2g", scale, e)
		}
	}
}

// TestExactRotationOrthogonal: with ExactRotation the device rotation is
// orthogonal to float32 precision and equals gonum's exp(S), also for
// rotations far from the identity (many doublings); the first-order one is
// not orthogonal, by ‖S²‖.
func TestExactRotationOrthogonal(t *testing.T) {
	b := openCPU(t)
	rng := rand.New(rand.NewPCG(7, 8))
	const out, in, rp = 16, 4, 3
	for _, scale := range []float64{0.05, 0.3, 1, 3, 10} {
		for _, exact := range []bool{true, false} {
			l := testLayer(t, b, Config{Method: PostOrtho, R: 1, Alpha: 1, RotationRank: rp, ExactRotation: exact}, out, in, 9)
			c, d := randDense(rng, out, rp, scale), randDense(rng, out, rp, scale)
			set(t, l.c, to32(c.RawMatrix().Data))
			set(t, l.d, to32(d.RawMatrix().Data))
			ch, _ := download64(l.c)
			dh, _ := download64(l.d)
			ref := newRot64(mat.NewDense(out, rp, ch), mat.NewDense(out, rp, dh), false).dense()
			var s, e mat.Dense
			s.Sub(ref, identity(out))
			e.Exp(&s)

			g := graph.New(b)
			g.SetNoGrad(true)
			eye := to32(identity(out).RawMatrix().Data)
			rt, err := l.rotation(g).left(g, g.Input(eye, out, out)).Download() // R·I
			g.Close()
			if err != nil {
				t.Fatal(err)
			}
			r := mat.NewDense(out, out, to64(rt))
			var rrt mat.Dense
			rrt.Mul(r, r.T())
			rrt.Sub(&rrt, identity(out))
			orth := maxAbs(&rrt)
			sn := opNorm(&s)
			if exact {
				// float32 rounding, amplified by the doublings for large ‖S‖.
				if orth > 1e-6*math.Max(1, sn) {
					t.Errorf("scale %g: exact rotation ‖RRᵀ − I‖_max = %.3g", scale, orth)
				}
				if err := relMax(to32(r.RawMatrix().Data), e.RawMatrix().Data); err > 1e-6*math.Max(1, sn) {
					t.Errorf("scale %g: exact rotation differs from gonum exp(S) by %.3g relative", scale, err)
				}
				t.Logf("scale %g (‖S‖₂ = %.3g): exact ‖RRᵀ − I‖_max = %.2g", scale, sn, orth)
			} else {
				var s2 mat.Dense
				s2.Mul(&s, &s)
				want := maxAbs(&s2) // RRᵀ − I = −S² for R = I + S
				if math.Abs(orth-want) > 1e-5*math.Max(1, want) {
					t.Errorf("scale %g: first-order ‖RRᵀ − I‖_max = %.6g, want ‖S²‖_max = %.6g", scale, orth, want)
				}
			}
		}
	}
}

func maxAbs(m *mat.Dense) float64 {
	x := 0.0
	for _, v := range m.RawMatrix().Data {
		x = math.Max(x, math.Abs(v))
	}
	return x
}
