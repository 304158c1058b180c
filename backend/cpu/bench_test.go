package cpu

import (
	"runtime"
	"testing"
	"time"

	"github.com/sora-go/sora/backend"
)

// BenchmarkParallel times representative ops on a one-thread backend and
// on a GOMAXPROCS-thread backend in the same run and reports the ratio of
// their times as "speedup" (ns/op covers both runs together). It is the
// check that the parallel-for pays off and that its grain keeps small ops
// inline; it asserts nothing.
func BenchmarkParallel(b *testing.B) {
	type setup func(be *Backend) func()
	alloc := func(be *Backend, shape ...int) backend.Tensor {
		t, err := be.Alloc(backend.Float32, shape...)
		if err != nil {
			b.Fatal(err)
		}
		data := uniform(newRNG(1), t.Len(), -1, 1)
		be.Upload(t, data)
		return t
	}
	cases := []struct {
		name string
		prep setup
	}{
		{"gelu/1M", func(be *Backend) func() {
			x, y := alloc(be, 1<<20), alloc(be, 1<<20)
			return func() { be.Unary(backend.GELU, y, x) }
		}},
		{"add/4096x4096", func(be *Backend) func() {
			x, y := alloc(be, 4096, 4096), alloc(be, 4096)
			return func() { be.Binary(backend.Add, x, x, y) }
		}},
		{"softmax/causal/8x256x256", func(be *Backend) func() {
			x, y := alloc(be, 8, 256, 256), alloc(be, 8, 256, 256)
			return func() { be.Softmax(y, x, backend.SoftmaxParams{Causal: true, Scale: 0.125}) }
		}},
		{"rmsnorm_grad/512x1024", func(be *Backend) func() {
			x, w, dy, dx, dw := alloc(be, 512, 1024), alloc(be, 1024), alloc(be, 512, 1024), alloc(be, 512, 1024), alloc(be, 1024)
			return func() { be.RMSNormGrad(dx, dw, x, w, dy, 1e-5) }
		}},
		{"copy/transpose/1024x1024", func(be *Backend) func() {
			x, y := alloc(be, 1024, 1024), alloc(be, 1024, 1024)
			xt, _ := x.Permute(1, 0)
			return func() { be.Copy(y, xt, false) }
		}},
		{"matmul/batch32/64x64x64", func(be *Backend) func() {
			a, bm, c := alloc(be, 32, 64, 64), alloc(be, 32, 64, 64), alloc(be, 32, 64, 64)
			return func() { be.MatMul(c, a, bm, backend.MatMulParams{TransB: true, Alpha: 1}) }
		}},
		{"cross_entropy_grad/64x8192", func(be *Backend) func() {
			x, d := alloc(be, 64, 8192), alloc(be, 64, 8192)
			targets := make([]int32, 64)
			return func() {
				be.CrossEntropyGrad(d, x, targets, backend.CrossEntropyParams{IgnoreIndex: -100, Scale: 1.0 / 64})
			}
		}},
		{"small/rmsnorm/4x64", func(be *Backend) func() {
			x, w, y := alloc(be, 4, 64), alloc(be, 64), alloc(be, 4, 64)
			return func() { be.RMSNorm(y, x, w, 1e-5) }
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			serial, par := New(Options{Threads: 1}), New(Options{})
			runS, runP := c.prep(serial), c.prep(par)
			runS()
			runP()
			var ts, tp time.Duration
			for b.Loop() {
				t0 := time.Now()
				runS()
				t1 := time.Now()
				runP()
				ts, tp = ts+t1.Sub(t0), tp+time.Since(t1)
			}
			if err := serial.Sync(); err != nil {
				b.Fatal(err)
			}
			if err := par.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(ts)/float64(tp), "speedup")
			b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "threads")
		})
	}
}
