package refops

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/backend"
)

// The references are checked against identities that do not share their
// code: derivatives against central differences, normalisations against
// what they normalise, rotations against their inverse.

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*(1+math.Abs(b)) }

func randn(rng *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	return x
}

func TestUnaryDerivMatchesDifferences(t *testing.T) {
	const h = 1e-6
	for _, op := range backend.UnaryOps {
		for _, x := range []float64{0.3, 0.9, 1.7, -0.6} {
			if x < 0 && (op == backend.Log || op == backend.Sqrt || op == backend.Rsqrt) {
				continue
			}
			fd := (Unary(op, x+h) - Unary(op, x-h)) / (2 * h)
			if d := UnaryDeriv(op, x); !near(d, fd, 1e-6) {
				t.Errorf("%s'(%g) = %g, central difference %g", op, x, d, fd)
			}
		}
	}
}

func TestSoftmaxRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const batch, queries, keys = 2, 3, 5
	x := randn(rng, batch*queries*keys)
	for _, causal := range []bool{false, true} {
		y := SoftmaxMasked(x, queries, keys, backend.SoftmaxParams{Scale: 0.75, Causal: causal, QueryOffset: 1})
		for r := 0; r < batch*queries; r++ {
			vis := SoftmaxVisible(r, queries, keys, causal, 1)
			var s float64
			for j := 0; j < keys; j++ {
				v := y[r*keys+j]
				if j >= vis && v != 0 {
					t.Errorf("causal=%v row %d key %d: masked entry %g", causal, r, j, v)
				}
				s += v
			}
			if !near(s, 1, 1e-12) {
				t.Errorf("causal=%v row %d sums to %g", causal, r, s)
			}
			// Ratios of visible entries are exp(scale·Δx).
			if vis >= 2 && !near(y[r*keys+1]/y[r*keys], math.Exp(0.75*(x[r*keys+1]-x[r*keys])), 1e-12) {
				t.Errorf("causal=%v row %d: ratio of the first two entries is off", causal, r)
			}
		}
	}
}

func TestNorms(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const rows, cols = 3, 6
	x := randn(rng, rows*cols)
	ones := []float64{1, 1, 1, 1, 1, 1}
	rms := RMSNorm(x, ones, 0)
	ln := LayerNorm(x, ones, nil, 0)
	for r := range rows {
		var ss, mean, vr float64
		for j := range cols {
			ss += rms[r*cols+j] * rms[r*cols+j]
			mean += ln[r*cols+j]
		}
		for j := range cols {
			vr += ln[r*cols+j] * ln[r*cols+j]
		}
		if !near(ss/cols, 1, 1e-12) || !near(mean, 0, 1e-12) || !near(vr/cols, 1, 1e-12) {
			t.Errorf("row %d: mean square after RMSNorm %g, mean and variance after LayerNorm %g, %g; want 1, 0, 1", r, ss/cols, mean/cols, vr/cols)
		}
	}
	w := []float64{2, 0, -1, 1, 3, 0.5}
	beta := []float64{1, 2, 3, 4, 5, 6}
	lnw := LayerNorm(x, w, beta, 0)
	for i := range x {
		if !near(lnw[i], ln[i]*w[i%cols]+beta[i%cols], 1e-12) {
			t.Fatalf("LayerNorm with gamma and beta at %d: %g, want %g", i, lnw[i], ln[i]*w[i%cols]+beta[i%cols])
		}
	}
}

func TestRoPEInverse(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const batch, seq, heads, d = 2, 3, 2, 6
	x := randn(rng, batch*seq*heads*d)
	for _, layout := range []backend.RoPELayout{backend.Interleaved, backend.HalfSplit} {
		p := backend.RoPEParams{Layout: layout, Theta: 100, Offset: 2}
		y := RoPE(x, batch, seq, heads, d, p)
		p.Inverse = true
		back := RoPE(y, batch, seq, heads, d, p)
		var nx, ny float64
		for i := range x {
			if !near(back[i], x[i], 1e-12) {
				t.Fatalf("%v: inverse rotation at %d gives %g, want %g", layout, i, back[i], x[i])
			}
			nx += x[i] * x[i]
			ny += y[i] * y[i]
		}
		if !near(ny, nx, 1e-12) || near(y[d+1], x[d+1], 1e-9) {
			t.Errorf("%v: rotation changed the norm (%g → %g) or left a rotated element alone", layout, nx, ny)
		}
	}
}

func TestCrossEntropy(t *testing.T) {
	logits := []float64{0, 0, 0, 0, 1, 2, 3, 4, 5, 5, 5, 5}
	got := CrossEntropy(logits, 4, []int32{2, 3, -100}, -100, 0)
	lse := math.Log(math.Exp(1) + math.Exp(2) + math.Exp(3) + math.Exp(4))
	want := []float64{math.Log(4), lse - 4, 0}
	for i := range want {
		if !near(got[i], want[i], 1e-12) {
			t.Errorf("row %d: %g, want %g", i, got[i], want[i])
		}
	}
	// Uniform logits: every target and every smoothing give log(vocab).
	if got := CrossEntropy(logits[:4], 4, []int32{1}, -1, 0.3); !near(got[0], math.Log(4), 1e-12) {
		t.Errorf("smoothed loss on uniform logits %g, want log 4", got[0])
	}
}

// TestSoftmaxWindow checks the sliding window against what it must be: a
// row sees the min(w, position+1) keys ending at its query's position
// (counted independently of SoftmaxSees), renormalised from the plain
// causal softmax; a window as long as the last position changes nothing;
// and the gradient matches central differences of Σ dy⊙softmax.
func TestSoftmaxWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const batch, queries, keys, offset = 2, 4, 7, 3
	x := randn(rng, batch*queries*keys)
	causal := backend.SoftmaxParams{Causal: true, QueryOffset: offset, Scale: 0.8}
	full := SoftmaxMasked(x, queries, keys, causal)
	for _, w := range []int{1, 2, 3, queries + offset, 100} {
		p := causal
		p.Window = w
		y := SoftmaxMasked(x, queries, keys, p)
		for r := 0; r < batch*queries; r++ {
			pos := r%queries + offset
			lo := max(0, pos-w+1) // keys lo..pos are seen
			var kept float64
			for j := lo; j <= pos; j++ {
				kept += full[r*keys+j]
			}
			seen := 0
			for j := range keys {
				v := y[r*keys+j]
				if v != 0 {
					seen++
				}
				want := 0.0
				if j >= lo && j <= pos {
					want = full[r*keys+j] / kept
				}
				if !near(v, want, 1e-12) || (want == 0 && v != 0) {
					t.Errorf("window %d row %d key %d: %g, want %g", w, r, j, v, want)
				}
			}
			if seen != min(w, pos+1) {
				t.Errorf("window %d row %d (position %d) sees %d keys, want %d", w, r, pos, seen, min(w, pos+1))
			}
		}
	}

	// The gradient of Σ dy⊙softmax(x) by central differences, window 2.
	p := causal
	p.Window = 2
	dy := randn(rng, len(x))
	y := SoftmaxMasked(x, queries, keys, p)
	g := SoftmaxGrad(y, dy, queries, keys, p)
	loss := func(x []float64) float64 {
		var s float64
		for i, v := range SoftmaxMasked(x, queries, keys, p) {
			s += v * dy[i]
		}
		return s
	}
	const h = 1e-6
	for i := range x {
		xp, xm := append([]float64(nil), x...), append([]float64(nil), x...)
		xp[i] += h
		xm[i] -= h
		if fd := (loss(xp) - loss(xm)) / (2 * h); !near(g[i], fd, 1e-6) {
			t.Errorf("gradient %d: %g, central difference %g", i, g[i], fd)
		}
	}
}

// TestGELUTanh checks the tanh-approximate GELU against its definition
// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) where float64 evaluates that
// without cancelling (x ≥ −3), against the tail's own expansion below,
// its derivative against central differences and the definition's
// derivative, and its limits.
func TestGELUTanh(t *testing.T) {
	const beta, kappa = 0.7978845608028654, 0.044715
	def := func(x float64) float64 { return 0.5 * x * (1 + math.Tanh(beta*(x+kappa*x*x*x))) }
	defDeriv := func(x float64) float64 {
		th := math.Tanh(beta * (x + kappa*x*x*x))
		return 0.5*(1+th) + 0.5*x*(1-th*th)*beta*(1+3*kappa*x*x)
	}
	rel := func(got, want float64) float64 { return math.Abs(got-want) / math.Max(math.Abs(want), 1e-300) }
	for x := -3.0; x <= 6; x += 0.0625 {
		// The definition's own rounding: that of 1 + tanh z, relative
		// to its size (1e−3 at x = −3).
		tanhTol := 1e-15 / (1 + math.Tanh(beta*(x+kappa*x*x*x)))
		if e := rel(Unary(backend.GELUTanh, x), def(x)); e > tanhTol {
			t.Errorf("GELUTanh(%g) = %g, definition %g (relative %.2g)", x, Unary(backend.GELUTanh, x), def(x), e)
		}
		if d := UnaryDeriv(backend.GELUTanh, x); math.Abs(d-defDeriv(x)) > 1e-14+tanhTol {
			t.Errorf("GELUTanh'(%g) = %g, definition's derivative %g", x, d, defDeriv(x))
		}
	}
	// Below, 1 + tanh cancels; with z = β(x + κx³), 1 + tanh z =
	// 2e^{2z}/(1 + e^{2z}), which float64 evaluates to the precision of
	// 2z, whose rounding (1e−16 of up to 280 at x = −12) is the exponent's.
	for x := -12.0; x < -3; x += 0.25 {
		z := beta * (x + kappa*x*x*x)
		want := x * math.Exp(2*z) / (1 + math.Exp(2*z))
		if e := rel(Unary(backend.GELUTanh, x), want); e > 1e-13 {
			t.Errorf("GELUTanh(%g) = %g, want %g (relative %.2g)", x, Unary(backend.GELUTanh, x), want, e)
		}
	}
	// The derivative against central differences over the whole range
	// where it is not negligible, the left tail included, relative to
	// the larger of its two terms (σ(y) = f/x and the whole), since they
	// cancel at x ≈ −0.75. The differences' truncation error, h²·f‴/6,
	// is about 1e−8 of f′ at x = −11.
	for x := -11.0; x <= 11; x += 0.125 {
		h := 1e-5
		fd := (Unary(backend.GELUTanh, x+h) - Unary(backend.GELUTanh, x-h)) / (2 * h)
		d := UnaryDeriv(backend.GELUTanh, x)
		scale := math.Abs(d)
		if x != 0 {
			scale = math.Max(scale, math.Abs(Unary(backend.GELUTanh, x)/x))
		}
		if math.Abs(d-fd) > 1e-7*scale {
			t.Errorf("GELUTanh'(%g) = %.12g, central difference %.12g", x, d, fd)
		}
	}
	// Limits: x for large x, −0 for very negative x, derivative 1 and 0,
	// finite everywhere on the float32 range.
	for _, x := range []float64{10, 30, 100, 1e10, 1e30, math.MaxFloat32} {
		if f, d := Unary(backend.GELUTanh, x), UnaryDeriv(backend.GELUTanh, x); f != x || d != 1 {
			t.Errorf("GELUTanh(%g) = %g, derivative %g; want %g and 1", x, f, d, x)
		}
		if x < 30 {
			continue // GELUTanh(−10) is −1.2e−37, not yet 0
		}
		if f, d := Unary(backend.GELUTanh, -x), UnaryDeriv(backend.GELUTanh, -x); f != 0 || d != 0 {
			t.Errorf("GELUTanh(%g) = %g, derivative %g; want 0 and 0", -x, f, d)
		}
	}
}
