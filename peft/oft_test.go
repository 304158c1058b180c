package peft

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// skewFromPacked builds block r's skew-symmetric Q from Hugging Face's
// packed vector: vec fills the strict upper triangle in the order of
// torch.triu_indices(bs, bs, 1) (row by row), Q = U − Uᵀ.
func skewFromPacked(vec []float64, bs int) *mat.Dense {
	u := mat.NewDense(bs, bs, nil)
	k := 0
	for i := range bs {
		for j := i + 1; j < bs; j++ {
			u.Set(i, j, vec[k])
			k++
		}
	}
	var q mat.Dense
	q.Sub(u, u.T())
	return &q
}

// TestOFTMatchesPEFTForward computes y = (x·R_bd)·W0ᵀ + b the way Hugging
// Face PEFT's OFT forward does (einsum "...rk,rkc->...rc" on the input
// reshaped to blocks, then the base layer), from an explicit dense
// block-diagonal R_bd whose blocks are I + 2Q + 2Q² + 2Q³ + Q⁴ (five
// Cayley–Neumann terms, written out), and compares the layer's forward and
// merged weight.
func TestOFTMatchesPEFTForward(t *testing.T) {
	b := openCPU(t)
	rng := rand.New(rand.NewPCG(1, 5))
	const out, in, bs, n = 5, 8, 4, 3
	l := testLayer(t, b, Config{Method: OFT, OFTBlockSize: bs}, out, in, 1)
	if l.oft.nb != in/bs || l.oftR.Dim(1) != bs*(bs-1)/2 {
		t.Fatalf("oft_R %v, want [%d, %d]", l.oftR.Shape(), in/bs, bs*(bs-1)/2)
	}
	packed := randn(rng, l.oftR.Len(), 0.2)
	set(t, l.oftR, packed)

	rbd := mat.NewDense(in, in, nil)
	nel := bs * (bs - 1) / 2
	for r := range in / bs {
		q := skewFromPacked(to64(packed[r*nel:(r+1)*nel]), bs)
		var q2, q3, q4 mat.Dense
		q2.Mul(q, q)
		q3.Mul(&q2, q)
		q4.Mul(&q3, q)
		for i := range bs {
			for j := range bs {
				v := 2*q.At(i, j) + 2*q2.At(i, j) + 2*q3.At(i, j) + q4.At(i, j)
				if i == j {
					v++
				}
				rbd.Set(r*bs+i, r*bs+j, v)
			}
		}
	}
	x := randn(rng, n*in, 1)
	w0, _ := download64(l.base.W)
	b0, _ := download64(l.base.B)
	var xr, y mat.Dense
	xr.Mul(mat.NewDense(n, in, to64(x)), rbd)
	y.Mul(&xr, mat.NewDense(out, in, w0).T())
	for i := range n {
		for j := range out {
			y.Set(i, j, y.At(i, j)+b0[j])
		}
	}
	got := forward(t, l, b, x, n, in)
	if e := relMax(got, y.RawMatrix().Data); e > 1e-6 {
		t.Errorf("forward: relative error %.3g against (x·R_bd)·W0ᵀ + b", e)
	}
	var wp mat.Dense // W' = W0·R_bdᵀ, PEFT's merge
	wp.Mul(mat.NewDense(out, in, w0), rbd.T())
	w, _, err := l.EffectiveWeight()
	if err != nil {
		t.Fatal(err)
	}
	if e := relMax(w, wp.RawMatrix().Data); e > 1e-6 {
		t.Errorf("merged weight: relative error %.3g against W0·R_bdᵀ", e)
	}
}

// TestCayleyNeumannLimit: with many terms and a small Q, the series is the
// Cayley transform (I + Q)(I − Q)⁻¹ (gonum's solver), an orthogonal
// matrix; with PEFT's default five terms it is orthogonal only
// approximately.
func TestCayleyNeumannLimit(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	const bs = 6
	vec := make([]float64, bs*(bs-1)/2)
	for i := range vec {
		vec[i] = 0.05 * rng.NormFloat64()
	}
	q := skewFromPacked(vec, bs)
	var ipq, imq, cayley mat.Dense
	ipq.Add(identity(bs), q)
	imq.Sub(identity(bs), q)
	// C = (I + Q)(I − Q)⁻¹  ⇔  (I − Q)ᵀ Cᵀ = (I + Q)ᵀ
	var ct mat.Dense
	if err := ct.Solve(imq.T(), ipq.T()); err != nil {
		t.Fatal(err)
	}
	cayley.CloneFrom(ct.T())
	long := cayleyNeumann64(q, 40)
	if e := maxAbsDiff(long.RawMatrix().Data, cayley.RawMatrix().Data); e > 1e-14 {
		t.Errorf("40-term series differs from the Cayley transform by %.3g", e)
	}
	orthErr := func(r *mat.Dense) float64 {
		var rrt mat.Dense
		rrt.Mul(r, r.T())
		rrt.Sub(&rrt, identity(bs))
		return maxAbs(&rrt)
	}
	if e := orthErr(long); e > 1e-14 {
		t.Errorf("Cayley transform not orthogonal: %.3g", e)
	}
	short := orthErr(cayleyNeumann64(q, 5))
	if short < 1e-12 || short > 1e-3 {
		t.Errorf("five-term series: orthogonality error %.3g, expected small but not zero", short)
	}
	t.Logf("orthogonality error: 5 terms %.2g, 40 terms %.2g", short, orthErr(long))
	if math.IsNaN(short) {
		t.Fatal("NaN")
	}
}
