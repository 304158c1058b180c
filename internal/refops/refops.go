// Package refops holds float64 reference implementations of the backend
// ops, written from the op documentation in package backend and
// independently of every backend. The backend conformance suite and the
// graph's gradient checks compare against them. Data is row-major; every
// intermediate is float64.
package refops

import (
	"math"

	"github.com/sora-go/sora/backend"
)

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// gaussCDF is Φ(x), the standard normal distribution function.
func gaussCDF(x float64) float64 { return 0.5 * (1 + math.Erf(x/math.Sqrt2)) }

// The constants of GELU's tanh approximation: √(2/π) and κ.
const (
	geluTanhBeta  = 0.7978845608028654 // √(2/π)
	geluTanhKappa = 0.044715
)

// sigmoidPair returns σ(y) and σ(−y) without overflow or cancellation:
// with e = exp(−|y|), σ(|y|) = 1/(1+e) and σ(−|y|) = e/(1+e).
func sigmoidPair(y float64) (s, sNeg float64) {
	e := math.Exp(-math.Abs(y))
	hi, lo := 1/(1+e), e/(1+e)
	if y >= 0 {
		return hi, lo
	}
	return lo, hi
}

// geluTanh returns GELU's tanh approximation and its derivative in the
// form x·σ(y), y = 2β·(x + κx³), which is 0.5·x·(1 + tanh(y/2)) exactly
// but keeps its relative precision in the left tail, where 1 + tanh
// cancels (it is 0 in float64 from x ≈ −7.4 on, though the function is a
// normal float32 down to x ≈ −9.9). y is formed as x·(2β + 2βκ·x²) so that
// it stays finite for every finite float32 x (|x|³ ≤ 4e115).
func geluTanh(x float64) (f, df float64) {
	x2 := x * x
	y := x * (2*geluTanhBeta + 2*geluTanhBeta*geluTanhKappa*x2)
	dy := 2*geluTanhBeta + 6*geluTanhBeta*geluTanhKappa*x2
	s, sNeg := sigmoidPair(y)
	f = x * s
	df = s
	// t underflows to 0 from |x| ≈ 20; skipping the term then keeps
	// huge x (beyond 1e100 or so, where dy overflows) from giving 0·∞.
	if t := s * sNeg; t != 0 {
		df += x * t * dy
	}
	return f, df
}

// Unary returns f(x) for a unary op; it panics on an op it does not know,
// which is a missing reference, not a data error.
func Unary(op backend.UnaryOp, x float64) float64 {
	switch op {
	case backend.Exp:
		return math.Exp(x)
	case backend.Log:
		return math.Log(x)
	case backend.Sqrt:
		return math.Sqrt(x)
	case backend.Rsqrt:
		return 1 / math.Sqrt(x)
	case backend.Tanh:
		return math.Tanh(x)
	case backend.SiLU:
		return x * sigmoid(x)
	case backend.GELU:
		return x * gaussCDF(x)
	case backend.ReLU:
		return math.Max(x, 0)
	case backend.Neg:
		return -x
	case backend.Square:
		return x * x
	case backend.Sigmoid:
		return sigmoid(x)
	case backend.GELUTanh:
		f, _ := geluTanh(x)
		return f
	}
	panic("refops: no reference for unary op " + op.String())
}

// UnaryDeriv returns f'(x) for a unary op (ReLU's derivative at 0 is 0);
// it panics on an op it does not know.
func UnaryDeriv(op backend.UnaryOp, x float64) float64 {
	switch op {
	case backend.Exp:
		return math.Exp(x)
	case backend.Log:
		return 1 / x
	case backend.Sqrt:
		return 0.5 / math.Sqrt(x)
	case backend.Rsqrt:
		return -0.5 / (x * math.Sqrt(x))
	case backend.Tanh:
		t := math.Tanh(x)
		return 1 - t*t
	case backend.SiLU:
		s := sigmoid(x)
		return s * (1 + x*(1-s))
	case backend.GELU:
		return gaussCDF(x) + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi)
	case backend.ReLU:
		if x > 0 {
			return 1
		}
		return 0
	case backend.Neg:
		return -1
	case backend.Square:
		return 2 * x
	case backend.Sigmoid:
		s := sigmoid(x)
		return s * (1 - s)
	case backend.GELUTanh:
		_, d := geluTanh(x)
		return d
	}
	panic("refops: no reference derivative for unary op " + op.String())
}

// SoftmaxVisible reports how many leading keys row r of a [batch, queries,
// keys] softmax may attend to: all of them, or with causal those up to
// query (r mod queries) + offset. It knows no sliding window; see
// SoftmaxSees.
func SoftmaxVisible(r, queries, keys int, causal bool, offset int) int {
	if !causal {
		return keys
	}
	return max(0, min(keys, r%queries+offset+1))
}

// SoftmaxSees reports whether row r of a [batch, queries, keys] softmax
// with p may attend to key j, spelled out from the rule of
// backend.SoftmaxParams one entry at a time: with Causal, the row's query
// sits at position (r mod queries) + QueryOffset and sees keys at or before
// it, and with a Window w > 0 only those fewer than w positions before it.
func SoftmaxSees(r, j, queries int, p backend.SoftmaxParams) bool {
	if !p.Causal {
		return true
	}
	pos := r%queries + p.QueryOffset
	if j > pos {
		return false
	}
	return p.Window == 0 || pos-j < p.Window
}

// AttentionSees reports whether query i of sequence b sees key j under
// p, of a call whose sequences have keys keys each, spelled out from the
// rule of backend.AttentionParams: the query sits at key position
// pos = i + QueryOffset; with Segments it sees only keys of its document
// (Segments[b·keys + j] equal to Segments[b·keys + pos]), and with Causal
// only keys at or before pos, and with a Window w > 0 only those fewer
// than w positions before it. It deliberately does not go through
// backend.SegmentBounds, which kernels may use, so that a mistake there
// cannot hide in the reference too.
func AttentionSees(p backend.AttentionParams, keys, b, i, j int) bool {
	pos := i + p.QueryOffset
	if p.Segments != nil && p.Segments[b*keys+j] != p.Segments[b*keys+pos] {
		return false
	}
	if !p.Causal {
		return true
	}
	return j <= pos && (p.Window == 0 || pos-j < p.Window)
}

// SoftmaxMasked computes softmax(s·x) over each row of keys elements, with
// s = p.EffectiveScale() and the mask of p (causal, query offset, sliding
// window; see SoftmaxSees): masked entries are exactly 0, and a row that
// sees no key (which the backends' validation refuses) is all 0.
func SoftmaxMasked(x []float64, queries, keys int, p backend.SoftmaxParams) []float64 {
	return softmax(x, queries, keys, float64(p.EffectiveScale()), p)
}

// softmax is SoftmaxMasked with the scale given, in float64; p gives only
// the mask.
func softmax(x []float64, queries, keys int, scale float64, p backend.SoftmaxParams) []float64 {
	out := make([]float64, len(x))
	for r := 0; r < len(x)/keys; r++ {
		row := x[r*keys : (r+1)*keys]
		mx := math.Inf(-1)
		for j := range keys {
			if SoftmaxSees(r, j, queries, p) {
				mx = math.Max(mx, scale*row[j])
			}
		}
		var sum float64
		for j := range keys {
			if SoftmaxSees(r, j, queries, p) {
				out[r*keys+j] = math.Exp(scale*row[j] - mx)
				sum += out[r*keys+j]
			}
		}
		for j := range keys {
			if sum > 0 {
				out[r*keys+j] /= sum
			}
		}
	}
	return out
}

// SoftmaxGrad computes the backward of SoftmaxMasked from its output y and
// the upstream gradient dy: s·y ⊙ (dy − Σ dy⊙y) over the keys each row
// sees, 0 where masked.
func SoftmaxGrad(y, dy []float64, queries, keys int, p backend.SoftmaxParams) []float64 {
	scale := float64(p.EffectiveScale())
	out := make([]float64, len(y))
	for r := 0; r < len(y)/keys; r++ {
		var dot float64
		for j := range keys {
			if SoftmaxSees(r, j, queries, p) {
				dot += dy[r*keys+j] * y[r*keys+j]
			}
		}
		for j := range keys {
			if SoftmaxSees(r, j, queries, p) {
				out[r*keys+j] = scale * y[r*keys+j] * (dy[r*keys+j] - dot)
			}
		}
	}
	return out
}

// RMSNorm computes x / sqrt(mean(x²) + eps) ⊙ w over each row of len(w)
// elements.
func RMSNorm(x, w []float64, eps float64) []float64 {
	cols := len(w)
	out := make([]float64, len(x))
	for r := 0; r < len(x)/cols; r++ {
		row := x[r*cols : (r+1)*cols]
		var ss float64
		for _, v := range row {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(cols)+eps)
		for j, v := range row {
			out[r*cols+j] = v * inv * w[j]
		}
	}
	return out
}

// MeanInvStd returns the mean of x and 1/sqrt(var + eps) with the biased
// variance.
func MeanInvStd(x []float64, eps float64) (mean, inv float64) {
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	var vr float64
	for _, v := range x {
		vr += (v - mean) * (v - mean)
	}
	vr /= float64(len(x))
	return mean, 1 / math.Sqrt(vr+eps)
}

// LayerNorm computes (x − mean)/sqrt(var + eps) ⊙ gamma + beta over each
// row of len(gamma) elements, with the biased variance; beta may be nil.
func LayerNorm(x, gamma, beta []float64, eps float64) []float64 {
	cols := len(gamma)
	out := make([]float64, len(x))
	for r := 0; r < len(x)/cols; r++ {
		row := x[r*cols : (r+1)*cols]
		mean, inv := MeanInvStd(row, eps)
		for j, v := range row {
			y := (v - mean) * inv * gamma[j]
			if beta != nil {
				y += beta[j]
			}
			out[r*cols+j] = y
		}
	}
	return out
}

// RoPE rotates each pair of x [batch, seq, heads, d]: pair i of the token
// at sequence index t is rotated by φ = (Offset+t)·f_i counter-clockwise,
// f_i = Freqs[i] when Freqs is set and Theta^(−2i/d) otherwise, (a, b) → (a cos φ − b sin φ, a sin φ + b cos φ), or by
// −φ when Inverse. Interleaved pairs are (2i, 2i+1), half-split pairs
// (i, i+d/2).
func RoPE(x []float64, batch, seq, heads, d int, p backend.RoPEParams) []float64 {
	out := make([]float64, len(x))
	half := d / 2
	for bi := 0; bi < batch; bi++ {
		for t := 0; t < seq; t++ {
			pos := float64(p.Offset + t)
			for h := 0; h < heads; h++ {
				base := ((bi*seq+t)*heads + h) * d
				for i := 0; i < half; i++ {
					f := math.Pow(float64(p.Theta), -2*float64(i)/float64(d))
					if p.Freqs != nil {
						f = p.Freqs[i]
					}
					phi := pos * f
					if p.Inverse {
						phi = -phi
					}
					ia, ib := base+2*i, base+2*i+1
					if p.Layout == backend.HalfSplit {
						ia, ib = base+i, base+i+half
					}
					a, b := x[ia], x[ib]
					s, c := math.Sincos(phi)
					out[ia] = a*c - b*s
					out[ib] = a*s + b*c
				}
			}
		}
	}
	return out
}

// LogSoftmax returns log softmax of one row.
func LogSoftmax(row []float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = math.Max(mx, v)
	}
	var sum float64
	for _, v := range row {
		sum += math.Exp(v - mx)
	}
	lse := mx + math.Log(sum)
	out := make([]float64, len(row))
	for j, v := range row {
		out[j] = v - lse
	}
	return out
}

// CrossEntropy returns each row's −Σ_j q_j log softmax(logits)_j for
// logits [len(targets), vocab], with q = (1−smoothing)·one-hot(target) +
// smoothing/vocab, and 0 for rows whose target is ignore.
func CrossEntropy(logits []float64, vocab int, targets []int32, ignore int32, smoothing float64) []float64 {
	out := make([]float64, len(targets))
	for r, t := range targets {
		if t == ignore {
			continue
		}
		ls := LogSoftmax(logits[r*vocab : (r+1)*vocab])
		var all float64
		for _, v := range ls {
			all += v
		}
		out[r] = -(1-smoothing)*ls[t] - smoothing/float64(vocab)*all
	}
	return out
}
