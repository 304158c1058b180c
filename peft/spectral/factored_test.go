package spectral

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// compareStats reports how far a is from b: the largest difference of
// their singular values relative to σ₁ (b's), and of every derived field
// relative to its size; an error when the counts of values or NonZero
// differ.
func compareStats(t *testing.T, a, b Stats) (sigma, fields float64) {
	t.Helper()
	if len(a.Singular) != len(b.Singular) {
		t.Fatalf("%d singular values against %d", len(a.Singular), len(b.Singular))
	}
	if a.NonZero != b.NonZero {
		t.Errorf("NonZero %d against %d (σ %v against %v)", a.NonZero, b.NonZero, a.Singular, b.Singular)
	}
	scale := b.Spectral
	for i := range a.Singular {
		d := math.Abs(a.Singular[i] - b.Singular[i])
		if scale > 0 {
			d /= scale
		}
		sigma = max(sigma, d)
	}
	for _, f := range [][2]float64{
		{a.Entropy, b.Entropy}, {a.NormalizedEntropy, b.NormalizedEntropy}, {a.StableRank, b.StableRank},
		{a.Frobenius, b.Frobenius}, {a.Spectral, b.Spectral},
	} {
		fields = max(fields, math.Abs(f[0]-f[1])/max(math.Abs(f[1]), 1e-300))
	}
	return sigma, fields
}

func randomMatrix(rng *rand.Rand, rows, cols int, scale float64) []float64 {
	m := make([]float64, rows*cols)
	for i := range m {
		m[i] = rng.NormFloat64() * scale
	}
	return m
}

// TestAnalyzeFactored: the singular values of L·R from the factors agree
// with the dense SVD of the formed product, zeros included, and so does
// every statistic, on tall, wide and square shapes, rank-deficient
// factors, zero factors and factors too wide to be thin.
func TestAnalyzeFactored(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []struct {
		name             string
		rows, cols, k    int
		scale            float64
		duplicateColumns bool // L's last column repeats its first: rank k − 1
		zeroLeft         bool
	}{
		{"tall", 96, 40, 6, 1, false, false},
		{"wide", 30, 110, 5, 1, false, false},
		{"square", 64, 64, 12, 1, false, false},
		{"rank one", 50, 20, 1, 1, false, false},
		{"tiny values", 40, 30, 4, 1e-9, false, false},
		{"large values", 40, 30, 4, 1e9, false, false},
		{"rank deficient", 70, 45, 7, 1, true, false},
		{"zero left factor", 20, 16, 3, 1, false, true},
		{"no factors", 9, 5, 0, 1, false, false},
		{"k = min − 1", 12, 9, 8, 1, false, false},
		{"k = min, formed", 12, 9, 9, 1, false, false},
		{"k > min, formed", 6, 10, 9, 1, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := randomMatrix(rng, c.rows, c.k, c.scale)
			r := randomMatrix(rng, c.k, c.cols, 1)
			if c.duplicateColumns {
				for i := range c.rows {
					l[i*c.k+c.k-1] = l[i*c.k]
				}
			}
			if c.zeroLeft {
				clear(l)
			}
			var p mat.Dense
			if c.k > 0 {
				p.Mul(mat.NewDense(c.rows, c.k, l), mat.NewDense(c.k, c.cols, r))
			} else {
				p.ReuseAs(c.rows, c.cols)
			}
			lc, rc := slices.Clone(l), slices.Clone(r)
			got, err := AnalyzeFactored(c.rows, c.cols, c.k, l, r)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(l, lc) || !slices.Equal(r, rc) {
				t.Error("AnalyzeFactored changed its factors")
			}
			want, err := Analyze(c.rows, c.cols, p.RawMatrix().Data)
			if err != nil {
				t.Fatal(err)
			}
			wantRank := min(c.k, c.rows, c.cols)
			if c.duplicateColumns {
				wantRank--
			}
			if c.zeroLeft {
				wantRank = 0
			}
			if got.NonZero != wantRank {
				t.Errorf("NonZero %d, want %d (σ %v)", got.NonZero, wantRank, got.Singular)
			}
			sigma, fields := compareStats(t, got, want)
			if sigma > 1e-12 || fields > 1e-12 {
				t.Errorf("against the dense SVD: singular values differ by %.3g of σ₁, statistics by %.3g relative", sigma, fields)
			}
			t.Logf("σ₁ %.6g, rank %d: singular values within %.2g of σ₁, statistics within %.2g", got.Spectral, got.NonZero, sigma, fields)
			if n := min(c.rows, c.cols); c.k < n {
				for i, v := range got.Singular[c.k:] {
					if v != 0 {
						t.Errorf("σ[%d] = %g beyond the factors' rank, want an exact zero", c.k+i, v)
					}
				}
			}
		})
	}
}

func TestAnalyzeInPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	m := randomMatrix(rng, 17, 11, 1)
	keep := slices.Clone(m)
	want, err := Analyze(17, 11, m)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m, keep) {
		t.Fatal("Analyze changed its input")
	}
	got, err := AnalyzeInPlace(17, 11, m)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Singular, want.Singular) || got.Entropy != want.Entropy || got.NonZero != want.NonZero {
		t.Errorf("in place %+v, copying %+v", got, want)
	}
	var svd mat.SVD
	if !svd.Factorize(mat.NewDense(17, 11, keep), mat.SVDNone) {
		t.Fatal("gonum SVD failed")
	}
	for i, v := range svd.Values(nil) {
		if math.Abs(v-got.Singular[i]) > 1e-13*got.Spectral {
			t.Errorf("σ[%d] = %.17g, gonum's mat.SVD %.17g", i, got.Singular[i], v)
		}
	}
}

func TestAnalyzeFactoredBadInput(t *testing.T) {
	cases := []struct {
		name          string
		rows, cols, k int
		l, r          []float64
		want          string
	}{
		{"short left", 3, 4, 2, make([]float64, 5), make([]float64, 8), "factors [3×2]·[2×4]"},
		{"short right", 3, 4, 2, make([]float64, 6), make([]float64, 7), "factors [3×2]·[2×4]"},
		{"negative k", 3, 4, -1, nil, nil, "data length"},
		{"zero rows", 0, 4, 1, nil, make([]float64, 4), "data length"},
		{"NaN left", 2, 3, 1, []float64{1, math.NaN()}, []float64{1, 2, 3}, "element 1 (row 1, column 0) of the left factor is NaN"},
		{"Inf right", 2, 3, 1, []float64{1, 2}, []float64{1, math.Inf(-1), 3}, "element 1 (row 0, column 1) of the right factor is -Inf"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := AnalyzeFactored(c.rows, c.cols, c.k, c.l, c.r)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := AnalyzeInPlace(2, 2, []float64{1, 2, math.Inf(1), 4}); err == nil || !strings.Contains(err.Error(), "row 1, column 0") {
		t.Errorf("AnalyzeInPlace of an Inf: %v", err)
	}
}
