package peft

import (
	"math"

	"github.com/sora-go/sora/graph"
)

// rotation is R = I + S (first order) or exp(S) (exact) for the
// skew-symmetric S = s_p·(D·Cᵀ − C·Dᵀ), held in low rank as S = u·vᵀ with
//
//	E = D − C,  v = [C, E],  u = s_p·[E, −C]   (both [out, 2r_p])
//
// since D·Cᵀ − C·Dᵀ = E·Cᵀ − C·Eᵀ. Writing S through E rather than D makes
// every product exactly zero while D = C (the initialisation), so the layer
// then computes the frozen layer bit for bit.
//
// exp(u·vᵀ) = I + u·φ(vᵀu)·vᵀ with φ(M) = Σₖ Mᵏ/(k+1)!, because
// (u·vᵀ)ᵏ⁺¹ = u·(vᵀu)ᵏ·vᵀ: the exact rotation costs one more product of
// [out, 2r_p] by [2r_p, 2r_p] (u·φ) than the first-order one. The layer
// applies R to activations through fusedLinear, never as an [N, out]
// pass of its own.
type rotation struct {
	u, v *graph.Value
	phi  *graph.Value // φ(vᵀu) [2r_p, 2r_p]; nil for the first-order form
}

// rotationScale returns s_p = min(1, 1/(‖C‖_F + ‖D‖_F + 1e-6)) as a
// one-element value, differentiated through as in the reference.
func rotationScale(g *graph.Tape, c, d *graph.Value) *graph.Value {
	return g.MinScalar(g.Reciprocal(g.AddScalar(g.Add(g.Norm(c), g.Norm(d)), 1e-6)), 1)
}

func (l *Layer) rotation(g *graph.Tape) rotation {
	e := g.Sub(l.d, l.c)
	v := g.Concat(1, l.c, e)
	// u = s_p·[E, −C] = v·(s_p·J) with J = [[0, −I], [I, 0]]: a product
	// with a [2r_p, 2r_p] matrix in place of a negation, a second
	// concatenation and an [out, 2r_p] scale by the scalar s_p (whose
	// backward is another such pass and a reduction). Each element of u is
	// one product s_p·(±x) plus exact zeros, so u is the same either way,
	// bit for bit.
	// J is the layer's constant l.swap, built once by init.
	u := g.MatMul(v, g.Mul(l.swap, rotationScale(g, l.c, l.d)))
	r := rotation{u: u, v: v}
	if l.cfg.ExactRotation {
		r.phi = phiSeries(g, g.MatMulTN(v, u))
	}
	return r
}

// swapNeg returns J = [[0, −I], [I, 0]] ([2n, 2n], row-major): [C, E]·J =
// [E, −C].
func swapNeg(n int) []float32 {
	j := make([]float32, 4*n*n)
	for i := range n {
		j[i*2*n+n+i] = -1  // row i, column n+i
		j[(n+i)*2*n+i] = 1 // row n+i, column i
	}
	return j
}

// left returns R·x for x [out, k]: x + u·(φ·(vᵀ·x)).
func (r rotation) left(g *graph.Tape, x *graph.Value) *graph.Value {
	t := g.MatMulTN(r.v, x)
	if r.phi != nil {
		t = g.MatMul(r.phi, t)
	}
	return g.Add(x, g.MatMul(r.u, t))
}

// Parameters of φ's evaluation. After scaling M by 2⁻ʲ so that
// ‖X‖_F ≤ phiTheta, the Taylor polynomial of degree phiDegree leaves a tail
// Σ_{k>K} ‖X‖ᵏ/(k+1)! ≤ θ⁹/10!·(1/(1−θ/11)) < 6e-10 for θ = 1/2, K = 8: far
// below float32 rounding (6e-8). Each of the j doublings
// φ(2X) = φ(X) + ½·φ(X)·X·φ(X) is exact algebra (all terms are functions of
// X and commute), so the result's error is that of float32 arithmetic.
const (
	phiTheta  = 0.5
	phiDegree = 8
)

// phiSeries returns φ(m) = Σₖ mᵏ/(k+1)! for a small square m, by scaling
// and doubling, with graph ops so that gradients flow. The number of
// doublings depends on ‖m‖_F, which is read back to the host (m is
// [2r_p, 2r_p], so this is a few dozen bytes); s_p keeps ‖m‖ moderate, so j
// is usually 0 to 3.
func phiSeries(g *graph.Tape, m *graph.Value) *graph.Value {
	n := m.Dim(0)
	j := 0
	if host, err := m.Download(); err == nil {
		s := 0.0
		for _, v := range host {
			s += float64(v) * float64(v)
		}
		if norm := math.Sqrt(s); norm > phiTheta && !math.IsInf(norm, 0) && !math.IsNaN(norm) {
			j = min(int(math.Ceil(math.Log2(norm/phiTheta))), 60)
		}
	}
	eyeData := make([]float32, n*n)
	for i := range n {
		eyeData[i*n+i] = 1
	}
	eye := g.Input(eyeData, n, n)
	x := m
	if j > 0 {
		x = g.Scale(m, float32(math.Ldexp(1, -j)))
	}
	// Horner: T_K = I, T_k = I + X·T_{k+1}/(k+2), φ = T_0.
	t := eye
	for k := phiDegree - 1; k >= 0; k-- {
		t = g.Add(eye, g.Scale(g.MatMul(x, t), float32(1/float64(k+2))))
	}
	for i := j - 1; i >= 0; i-- {
		// φ(2X) = φ(X) + ½ φ(X)·X·φ(X), from X = M/2^(i+1) to 2X = M/2^i.
		xh := g.Scale(m, float32(math.Ldexp(1, -(i+1))))
		t = g.Add(t, g.Scale(g.MatMul(t, g.MatMul(xh, t)), 0.5))
	}
	return t
}
