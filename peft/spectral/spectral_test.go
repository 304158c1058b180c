package spectral

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// withSingular builds an m×n matrix U·diag(sigma)·Vᵀ with random orthogonal
// U and V, so its singular values are known exactly.
func withSingular(rng *rand.Rand, m, n int, sigma []float64) []float64 {
	orth := func(k int) *mat.Dense {
		a := mat.NewDense(k, k, nil)
		for i := range k {
			for j := range k {
				a.Set(i, j, rng.NormFloat64())
			}
		}
		var qr mat.QR
		qr.Factorize(a)
		var q mat.Dense
		qr.QTo(&q)
		return &q
	}
	u, v := orth(m), orth(n)
	s := mat.NewDense(m, n, nil)
	for i, x := range sigma {
		s.Set(i, i, x)
	}
	var us, usv mat.Dense
	us.Mul(u, s)
	usv.Mul(&us, v.T())
	return usv.RawMatrix().Data
}

func TestClosedForms(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name       string
		m, n       int
		sigma      []float64
		entropy    float64
		nonZero    int
		stableRank float64
	}{
		{"rank one", 6, 4, []float64{3}, 0, 1, 1},
		{"equal four", 5, 4, []float64{2, 2, 2, 2}, math.Log(4), 4, 4},
		{"equal two of three", 3, 7, []float64{1, 1}, math.Log(2), 2, 2},
		{"energies 1/2 1/4 1/4", 4, 4, []float64{math.Sqrt(2), 1, 1}, 1.5 * math.Ln2, 3, 2},
		{"zero", 3, 3, nil, 0, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := Analyze(c.m, c.n, withSingular(rng, c.m, c.n, c.sigma))
			if err != nil {
				t.Fatal(err)
			}
			if st.NonZero != c.nonZero {
				t.Errorf("NonZero = %d, want %d (σ = %v)", st.NonZero, c.nonZero, st.Singular)
			}
			near(t, "entropy", st.Entropy, c.entropy)
			near(t, "stable rank", st.StableRank, c.stableRank)
			if c.nonZero > 1 {
				near(t, "normalised entropy", st.NormalizedEntropy, c.entropy/math.Log(float64(c.nonZero)))
			}
			var fro float64
			for _, s := range c.sigma {
				fro += s * s
			}
			near(t, "Frobenius", st.Frobenius, math.Sqrt(fro))
			if len(c.sigma) > 0 {
				near(t, "spectral", st.Spectral, c.sigma[0])
			}
		})
	}
}

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9*max(1, math.Abs(want)) {
		t.Errorf("%s = %.12g, want %.12g", what, got, want)
	}
}

func TestDeltaSubtractsInFloat64(t *testing.T) {
	w0 := []float32{1, 2, 3, 4}
	w := []float32{1, 2, 3, 4 + 1.0/1024}
	st, err := Delta(2, 2, w, w0)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "spectral", st.Spectral, 1.0/1024)
	if st.NonZero != 1 || st.Entropy != 0 {
		t.Errorf("rank-one delta: NonZero %d entropy %g", st.NonZero, st.Entropy)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := Analyze(2, 3, make([]float64, 5)); err == nil {
		t.Error("short data accepted")
	}
	if _, err := Analyze(1, 2, []float64{1, math.NaN()}); err == nil {
		t.Error("NaN accepted")
	}
	if _, err := Delta(1, 2, []float32{1, 2}, []float32{1}); err == nil {
		t.Error("mismatched W0 accepted")
	}
}
