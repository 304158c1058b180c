// Package spectral measures the singular value spectrum of a weight update
// ΔW = W' − W0, the analysis the paper "Calibrating and Rotating" uses to
// compare PEFT methods: singular value entropy (how evenly the update's
// energy spreads over directions) and stable rank.
//
// All computation is in float64 with gonum's SVD, whatever precision the
// weights were trained in.
package spectral

import (
	"errors"
	"fmt"
	"math"

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
	StableRank float64
	// Frobenius is ‖M‖_F = sqrt(Σσᵢ²).
	Frobenius float64
	// Spectral is ‖M‖₂ = σ₁.
	Spectral float64
}

// ErrShape reports a matrix whose data does not match its dimensions.
var ErrShape = errors.New("spectral: data length does not match rows×cols")

// Analyze computes the spectrum of the rows×cols row-major matrix m.
func Analyze(rows, cols int, m []float64) (Stats, error) {
	if rows <= 0 || cols <= 0 || len(m) != rows*cols {
		return Stats{}, fmt.Errorf("%w: %d×%d with %d values", ErrShape, rows, cols, len(m))
	}
	for i, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return Stats{}, fmt.Errorf("spectral: element %d (row %d, column %d) is %v", i, i/cols, i%cols, v)
		}
	}
	var svd mat.SVD
	if !svd.Factorize(mat.NewDense(rows, cols, m), mat.SVDNone) {
		return Stats{}, errors.New("spectral: SVD did not converge")
	}
	return FromSingular(svd.Values(nil), max(rows, cols)), nil
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
