// Package spectral measures the singular value spectrum of a weight update
// ΔW = W' − W0, the analysis the paper "Calibrating and Rotating" uses to
// compare PEFT methods: singular value entropy (how evenly the update's
// energy spreads over directions) and stable rank.
//
// All computation is in float64 with gonum's LAPACK, whatever precision the
// weights were trained in. A matrix given densely is reduced by a full SVD
// ([Analyze], O(m·n·min(m, n))); one given as a product of thin factors
// L·R, as a LoRA update is, by QR factorisations of the factors and the
// SVD of a small core ([AnalyzeFactored], O((m + n)·k²)), which gives the
// same singular values without forming the product.
package spectral

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// Stats summarises the singular values σ₁ ≥ σ₂ ≥ … of a matrix.
type Stats struct {
	// Singular holds every singular value, largest first.
	Singular []float64
	// NonZero counts the singular values above the numerical-rank cut-off
	// max(rows, cols)·ε·σ₁ (ε the float64 machine epsilon), as
	// numpy.linalg.matrix_rank does; the rest are treated as zero.
	NonZero int
	// Entropy is −Σ pᵢ ln pᵢ over the non-zero singular values, with
	// pᵢ = σᵢ² / Σⱼ σⱼ². It is 0 for a rank-1 or zero matrix and ln(n) for
	// n equal singular values.
	Entropy float64
	// NormalizedEntropy is Entropy / ln(NonZero), in [0, 1]; 0 when
	// NonZero ≤ 1.
	NormalizedEntropy float64
	// StableRank is ‖M‖_F² / ‖M‖₂² = Σσᵢ² / σ₁², 0 for the zero matrix.
	// Like Frobenius, it sums over the non-zero singular values (see
	// NonZero): those below the cut-off change Σσᵢ² by less than
	// min(rows, cols)·(max(rows, cols)·ε)² relative, far below float64's
	// rounding.
	StableRank float64
	// Frobenius is ‖M‖_F = sqrt(Σσᵢ²), over the non-zero singular values.
	Frobenius float64
	// Spectral is ‖M‖₂ = σ₁.
	Spectral float64
}

// ErrShape reports a matrix whose data does not match its dimensions.
var ErrShape = errors.New("spectral: data length does not match rows×cols")

// Analyze computes the spectrum of the rows×cols row-major matrix m,
// leaving m as it was.
func Analyze(rows, cols int, m []float64) (Stats, error) {
	if err := checkDense(rows, cols, m); err != nil {
		return Stats{}, err
	}
	return analyzeInPlace(rows, cols, append([]float64(nil), m...))
}

// AnalyzeInPlace is [Analyze] using m itself as the SVD's workspace: m is
// overwritten, and the copy of it that Analyze makes (rows·cols·8 bytes) is
// saved. For a caller that builds a matrix only to analyse it.
func AnalyzeInPlace(rows, cols int, m []float64) (Stats, error) {
	if err := checkDense(rows, cols, m); err != nil {
		return Stats{}, err
	}
	return analyzeInPlace(rows, cols, m)
}

func checkDense(rows, cols int, m []float64) error {
	if rows <= 0 || cols <= 0 || len(m) != rows*cols {
		return fmt.Errorf("%w: %d×%d with %d values", ErrShape, rows, cols, len(m))
	}
	for i, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("spectral: element %d (row %d, column %d) is %v", i, i/cols, i%cols, v)
		}
	}
	return nil
}

// analyzeInPlace runs LAPACK's dgesvd without singular vectors on m
// (destroyed), as gonum's mat.SVD does on its own copy.
func analyzeInPlace(rows, cols int, m []float64) (Stats, error) {
	s, ok := singularInPlace(rows, cols, m)
	if !ok {
		return Stats{}, errors.New("spectral: SVD did not converge")
	}
	return FromSingular(s, max(rows, cols)), nil
}

func singularInPlace(rows, cols int, m []float64) ([]float64, bool) {
	a := blas64.General{Rows: rows, Cols: cols, Stride: cols, Data: m}
	none := blas64.General{Stride: 1}
	s := make([]float64, min(rows, cols))
	work := []float64{0}
	lapack64.Gesvd(lapack.SVDNone, lapack.SVDNone, a, none, none, s, work, -1)
	work = make([]float64, int(work[0]))
	ok := lapack64.Gesvd(lapack.SVDNone, lapack.SVDNone, a, none, none, s, work, len(work))
	return s, ok
}

// AnalyzeFactored computes the spectrum of the rows×cols matrix M = L·R
// from its factors, L [rows, k] and R [k, cols] (both row-major), without
// forming M: with the thin QR factorisations L = Q_L·T_L and
// Rᵀ = Q_R·T_R (T_L, T_R upper triangular k×k), M = Q_L·(T_L·T_Rᵀ)·Q_Rᵀ,
// and since Q_L and Q_R have orthonormal columns M has the singular values
// of the k×k core T_L·T_Rᵀ, and min(rows, cols) − k zeros. The Stats are
// those [Analyze] gives for M, whose min(rows, cols) singular values they
// hold, the zeros included, so that the two agree to rounding (about
// ε·‖L‖·‖R‖ in each singular value) in every field. Householder QR is
// backward stable, so the small singular values are as accurate as a dense
// SVD makes them.
//
// When k ≥ min(rows, cols) the factors are no thinner than M and M is
// formed and analysed densely.
func AnalyzeFactored(rows, cols, k int, l, r []float64) (Stats, error) {
	if rows <= 0 || cols <= 0 || k < 0 || len(l) != rows*k || len(r) != k*cols {
		return Stats{}, fmt.Errorf("%w: factors [%d×%d]·[%d×%d] with %d and %d values", ErrShape, rows, k, k, cols, len(l), len(r))
	}
	for _, f := range []struct {
		name       string
		data       []float64
		rows, cols int
	}{{"left", l, rows, k}, {"right", r, k, cols}} {
		for i, v := range f.data {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return Stats{}, fmt.Errorf("spectral: element %d (row %d, column %d) of the %s factor is %v", i, i/f.cols, i%f.cols, f.name, v)
			}
		}
	}
	n := min(rows, cols)
	if k >= n {
		var p mat.Dense
		p.Mul(mat.NewDense(rows, k, l), mat.NewDense(k, cols, r))
		return analyzeInPlace(rows, cols, p.RawMatrix().Data)
	}
	sigma := make([]float64, n)
	if k > 0 {
		tl := upperQR(rows, k, append([]float64(nil), l...))
		rt := make([]float64, cols*k) // Rᵀ, row-major [cols, k]
		for i := range k {
			for j, v := range r[i*cols : (i+1)*cols] {
				rt[j*k+i] = v
			}
		}
		tr := upperQR(cols, k, rt)
		var core mat.Dense
		core.Mul(mat.NewDense(k, k, tl), mat.NewDense(k, k, tr).T())
		s, ok := singularInPlace(k, k, core.RawMatrix().Data)
		if !ok {
			return Stats{}, errors.New("spectral: SVD of the factored core did not converge")
		}
		copy(sigma, s)
	}
	return FromSingular(sigma, max(rows, cols)), nil
}

// upperQR returns the k×k upper-triangular factor T of the QR
// factorisation of the row-major rows×k matrix a (rows ≥ k), which it
// overwrites.
func upperQR(rows, k int, a []float64) []float64 {
	g := blas64.General{Rows: rows, Cols: k, Stride: k, Data: a}
	tau := make([]float64, k)
	work := []float64{0}
	lapack64.Geqrf(g, tau, work, -1)
	work = make([]float64, int(work[0]))
	lapack64.Geqrf(g, tau, work, len(work))
	t := make([]float64, k*k)
	for i := range k {
		copy(t[i*k+i:(i+1)*k], a[i*k+i:(i+1)*k])
	}
	return t
}

// Delta analyses W' − W0 for two row-major float32 matrices of the same
// shape, subtracting in float64 so no precision is lost to cancellation.
func Delta(rows, cols int, w, w0 []float32) (Stats, error) {
	if len(w) != rows*cols || len(w0) != rows*cols {
		return Stats{}, fmt.Errorf("%w: %d×%d with %d and %d values", ErrShape, rows, cols, len(w), len(w0))
	}
	d := make([]float64, len(w))
	for i := range w {
		d[i] = float64(w[i]) - float64(w0[i])
	}
	return Analyze(rows, cols, d)
}

// FromSingular computes the statistics from singular values (any order,
// all ≥ 0) of a matrix whose larger dimension is maxDim, which sets the
// numerical-rank cut-off.
func FromSingular(sigma []float64, maxDim int) Stats {
	s := append([]float64(nil), sigma...)
	sortDescending(s)
	st := Stats{Singular: s}
	if len(s) == 0 || s[0] == 0 {
		return st
	}
	st.Spectral = s[0]
	cut := float64(maxDim) * eps64 * s[0]
	var energy float64
	for _, v := range s {
		if v > cut {
			st.NonZero++
			energy += v * v
		}
	}
	for _, v := range s[:st.NonZero] {
		if p := v * v / energy; p > 0 {
			st.Entropy -= p * math.Log(p)
		}
	}
	if st.NonZero > 1 {
		st.NormalizedEntropy = st.Entropy / math.Log(float64(st.NonZero))
	}
	st.Frobenius = math.Sqrt(energy)
	st.StableRank = energy / (s[0] * s[0])
	return st
}

// eps64 is the float64 machine epsilon, 2⁻⁵².
const eps64 = 1.0 / (1 << 52)

func sortDescending(s []float64) {
	// Insertion sort: gonum already returns σ in descending order, so this
	// is one linear pass in the common case.
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] > s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
