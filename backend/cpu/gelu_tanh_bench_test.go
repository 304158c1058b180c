package cpu

import (
	"math"
	"testing"
	"time"

	"github.com/sora-go/sora/backend"
)

// geluTanhForward and geluTanhBackward are GELU's tanh approximation and
// its backward as models/llama computed them before the backend had the
// GELUTanh op: the element-wise kernels of a custom tape op, 9 calls
// forward and 22 backward, each a pass over the activation. They are
// BenchmarkGELUTanhFused's baseline, kept op for op as they were
// (PyTorch's order of operations for z = β·(x + κ·x³)). The backward
// overwrites dy and uses out (the forward's output) as scratch; dx
// receives the gradient.
func geluTanhForward(b backend.Backend, out, x backend.Tensor) {
	inner(b, out, x)
	b.Unary(backend.Tanh, out, out)
	b.Binary(backend.Mul, out, out, x)
	b.Axpy(out, 1, x)
	b.Scale(out, out, 0.5)
}

// The constants of the tanh approximation: √(2/π) and κ.
const geluBeta, geluKappa = 0.7978845608028654, 0.044715

// inner sets z = β·(x + κ·x³).
func inner(b backend.Backend, z, x backend.Tensor) {
	b.Binary(backend.Mul, z, x, x)
	b.Binary(backend.Mul, z, z, x)
	b.Scale(z, z, geluKappa)
	b.Axpy(z, 1, x)
	b.Scale(z, z, geluBeta)
}

// geluTanhBackward: dx = 0.5·dy·(1 + tanh z) + dy·(1 − tanh² z)·(0.5β·x
// + 1.5βκ·x³).
func geluTanhBackward(b backend.Backend, out, x, dy, dx backend.Tensor) {
	inner(b, out, x)
	b.Unary(backend.Tanh, out, out)
	b.Binary(backend.Mul, out, out, dy)
	b.Axpy(out, 1, dy)
	b.Scale(out, out, 0.5)
	b.Copy(dx, out, false)
	inner(b, out, x)
	b.UnaryGrad(backend.Tanh, dy, out, dy)
	b.Binary(backend.Mul, out, x, x)
	b.Binary(backend.Mul, out, out, x)
	b.Scale(out, out, 1.5*geluBeta*geluKappa)
	b.Axpy(out, 0.5*geluBeta, x)
	b.Binary(backend.Mul, dy, dy, out)
	b.Axpy(dx, 1, dy)
}

// BenchmarkGELUTanhFused times GELU's tanh approximation forward and
// backward on 4M floats (Gemma's [tokens, intermediate] activation, 16 MiB)
// two ways in the same run: the fused GELUTanh op (Unary, then UnaryGrad
// in place as the tape calls it) and the composite of element-wise ops it
// replaced (geluTanhComposite). It reports each one's time per
// forward+backward and "speedup", the composite's time over the fused
// op's. dy is restored before each round, outside the timing, since both
// backwards overwrite it. It first checks that the two agree.
//
//	go test -run XXX -bench GELUTanhFused ./backend/cpu
func BenchmarkGELUTanhFused(b *testing.B) {
	opts, err := OptionsFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	be := New(opts)
	b.Logf("%s", be.Device())
	rng := newRNG(17)
	tensor := func(data []float32) backend.Tensor {
		t, err := be.Alloc(backend.Float32, len(data))
		if err != nil {
			b.Fatal(err)
		}
		be.Upload(t, data)
		return t
	}
	dyData := uniform(rng, opsN, -1, 1)
	x, dy0 := tensor(uniform(rng, opsN, -4, 4)), tensor(dyData)
	dy, out, dx := tensor(dyData), tensor(make([]float32, opsN)), tensor(make([]float32, opsN))
	fused := func() {
		be.Unary(backend.GELUTanh, out, x)
		be.UnaryGrad(backend.GELUTanh, dy, x, dy)
	}
	composite := func() {
		geluTanhForward(be, out, x)
		geluTanhBackward(be, out, x, dy, dx)
	}
	// The two must compute the same thing (to float32 rounding).
	get := func(t backend.Tensor) []float32 {
		h := make([]float32, opsN)
		if err := be.Download(h, t); err != nil {
			b.Fatal(err)
		}
		return h
	}
	geluTanhForward(be, out, x)
	cy := get(out)
	geluTanhBackward(be, out, x, dy, dx)
	cdx := get(dx)
	be.Copy(dy, dy0, false)
	be.Unary(backend.GELUTanh, out, x)
	fy := get(out)
	be.UnaryGrad(backend.GELUTanh, dy, x, dy)
	fdx := get(dy)
	for i := range cy {
		if math.Abs(float64(cy[i]-fy[i])) > 1e-5 || math.Abs(float64(cdx[i]-fdx[i])) > 1e-5 {
			b.Fatalf("element %d: composite gives %g, %g; fused %g, %g", i, cy[i], cdx[i], fy[i], fdx[i])
		}
	}
	var tc, tf time.Duration
	for b.Loop() {
		be.Copy(dy, dy0, false)
		t0 := time.Now()
		composite()
		tc += time.Since(t0)
		be.Copy(dy, dy0, false)
		t1 := time.Now()
		fused()
		tf += time.Since(t1)
	}
	if err := be.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(tc.Microseconds())/float64(b.N), "composite_µs")
	b.ReportMetric(float64(tf.Microseconds())/float64(b.N), "fused_µs")
	b.ReportMetric(float64(tc)/float64(tf), "speedup")
}
