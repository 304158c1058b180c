package cpu

import (
	"fmt"
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

// opsN is the size of BenchmarkOps' operands: 4M floats (16 MiB each),
// rows of opsCols for the row kernels.
const (
	opsN    = 4 << 20
	opsCols = 1024
)

// BenchmarkOps times the element-wise and row ops on 4M floats through the
// backend interface, forward and backward, and reports each as GB/s of the
// memory it must at least move (every operand read once, every output
// written once) and as the ratio "of_copy" to the bandwidth of Go's copy
// of an equally long buffer over the same goroutines, counted as 8 bytes
// per element and measured in the same run just before the op. Both are
// the best of three rounds of 50 calls, which is what the hardware can do
// when no other work interferes. Run it once per kernel path:
//
//	go test -run XXX -bench Ops ./backend/cpu
//	SORA_CPU_PORTABLE=1 go test -run XXX -bench Ops ./backend/cpu
func BenchmarkOps(b *testing.B) {
	opts, err := OptionsFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	be := New(opts)
	b.Logf("%s", be.Device())
	rows := opsN / opsCols
	rng := newRNG(9)
	tensor := func(lo, hi float64, shape ...int) backend.Tensor {
		t, err := be.Alloc(backend.Float32, shape...)
		if err != nil {
			b.Fatal(err)
		}
		be.Upload(t, uniform(rng, t.Len(), lo, hi))
		return t
	}
	x, y, out := tensor(-4, 4, rows, opsCols), tensor(-1, 1, rows, opsCols), tensor(-1, 1, rows, opsCols)
	pos := tensor(0, 0.01, rows, opsCols)
	w, bias, col := tensor(0.5, 1.5, opsCols), tensor(-0.1, 0.1, opsCols), tensor(0, 0, rows)
	col1 := tensor(0.5, 1.5, rows, 1)
	dw := tensor(0, 0, opsCols)
	m := tensor(0, 0, rows, opsCols)
	logits := tensor(-4, 4, 64, opsN/64)
	targets := make([]int32, 64)
	for i := range targets {
		targets[i] = int32(i * 997)
	}
	loss := tensor(0, 0, 64)
	scalarAll, err := tensor(1, 2, 1).Strided(0, backend.Shape{rows, opsCols}, []int{0, 0})
	if err != nil {
		b.Fatal(err)
	}
	adam := backend.AdamWParams{LR: 1e-6, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 3}
	ops := []struct {
		name  string
		bytes int // per element
		run   func()
	}{
		{"add", 12, func() { be.Binary(backend.Add, out, x, y) }},
		{"mul", 12, func() { be.Binary(backend.Mul, out, x, y) }},
		{"div", 12, func() { be.Binary(backend.Div, out, y, x) }},
		{"add_row", 8, func() { be.Binary(backend.Add, out, x, w) }},
		{"mul_column", 8, func() { be.Binary(backend.Mul, out, x, col1) }},
		{"scale", 8, func() { be.Scale(out, x, 0.5) }},
		{"axpy", 12, func() { be.Axpy(out, 1e-3, x) }},
		{"exp", 8, func() { be.Unary(backend.Exp, out, x) }},
		{"silu", 8, func() { be.Unary(backend.SiLU, out, x) }},
		{"gelu", 8, func() { be.Unary(backend.GELU, out, x) }},
		{"silu_grad", 12, func() { be.UnaryGrad(backend.SiLU, out, x, y) }},
		{"gelu_grad", 12, func() { be.UnaryGrad(backend.GELU, out, x, y) }},
		{"gelu_tanh", 8, func() { be.Unary(backend.GELUTanh, out, x) }},
		{"gelu_tanh_grad", 12, func() { be.UnaryGrad(backend.GELUTanh, out, x, y) }},
		{"sum_rows", 4, func() { be.ReduceRows(backend.Sum, col, x) }},
		{"sum_columns", 4, func() { be.SumColumns(w, x) }},
		{"softmax", 8, func() { be.Softmax(out, x, backend.SoftmaxParams{}) }},
		{"softmax_grad", 12, func() { be.SoftmaxGrad(out, pos, y, backend.SoftmaxParams{}) }},
		{"rmsnorm", 8, func() { be.RMSNorm(out, x, w, 1e-5) }},
		{"rmsnorm_grad", 12, func() { be.RMSNormGrad(out, dw, x, w, y, 1e-5) }},
		{"layernorm", 8, func() { be.LayerNorm(out, x, w, bias, 1e-5) }},
		{"layernorm_grad", 12, func() { be.LayerNormGrad(out, dw, bias, x, w, y, 1e-5) }},
		{"cross_entropy", 4, func() { be.CrossEntropy(loss, logits, targets, backend.CrossEntropyParams{IgnoreIndex: -100}) }},
		{"cross_entropy_grad", 8, func() {
			be.CrossEntropyGrad(out, logits, targets, backend.CrossEntropyParams{IgnoreIndex: -100, Scale: 1.0 / 64})
		}},
		{"adamw", 28, func() { be.AdamW(out, y, m, pos, adam) }},
		// Copies that a tape makes: a loss gradient broadcast from one
		// value, and a gradient added into another.
		{"broadcast", 4, func() { be.Copy(out, scalarAll, false) }},
		{"copy_add", 12, func() { be.Copy(out, x, true) }},
	}
	src, dst := make([]float32, opsN), make([]float32, opsN)
	copyAll := func() {
		be.parallelFor(opsN, 1, func(lo, hi int) { copy(dst[lo:hi], src[lo:hi]) })
	}
	// best returns the time per call of f: the best of three rounds of
	// 50 calls each, after a warm-up call, as "sora bench ops" measures.
	best := func(f func()) time.Duration {
		f()
		d := time.Duration(1<<63 - 1)
		for range 3 {
			t := time.Now()
			for range 50 {
				f()
			}
			d = min(d, time.Since(t)/50)
		}
		return d
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			copyGBPS := 8 * opsN / best(copyAll).Seconds() / 1e9
			gbps := float64(op.bytes) * opsN / best(op.run).Seconds() / 1e9
			for b.Loop() {
				op.run()
			}
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(gbps, "GB/s")
			b.ReportMetric(copyGBPS, "copy_GB/s")
			b.ReportMetric(gbps/copyGBPS, "of_copy")
		})
	}
}

// BenchmarkSoftmaxWindow times a sliding-window causal softmax (and its
// backward) against the plain causal one on the same [8, 512, 512] scores
// in the same run, alternating calls, and reports the windowed time over
// the causal time as "of_causal". A window of 64 of 512 keys reads and
// exponentiates about 64/256.5 of what causal does (a causal row sees
// 256.5 keys on average), so the forward should come in well under 1;
// the writes of the masked zeros, the same in both, keep it above that
// fraction. Like every benchmark here it asserts nothing:
//
//	go test -run XXX -bench SoftmaxWindow ./backend/cpu
func BenchmarkSoftmaxWindow(b *testing.B) {
	const heads, T, window = 8, 512, 64
	be := New(Options{})
	alloc := func(lo, hi float64) backend.Tensor {
		t, err := be.Alloc(backend.Float32, heads, T, T)
		if err != nil {
			b.Fatal(err)
		}
		be.Upload(t, uniform(newRNG(3), t.Len(), lo, hi))
		return t
	}
	x, y, dy, dx := alloc(-8, 8), alloc(0, 0), alloc(-1, 1), alloc(0, 0)
	causal := backend.SoftmaxParams{Causal: true, Scale: 0.125}
	windowed := causal
	windowed.Window = window
	for _, c := range []struct {
		name string
		run  func(p backend.SoftmaxParams)
	}{
		{"softmax", func(p backend.SoftmaxParams) { be.Softmax(y, x, p) }},
		{"softmax_grad", func(p backend.SoftmaxParams) { be.SoftmaxGrad(dx, y, dy, p) }},
	} {
		b.Run(fmt.Sprintf("%s/%dx%dx%d/window=%d", c.name, heads, T, T, window), func(b *testing.B) {
			be.Softmax(y, x, windowed) // a genuine y for the backward
			c.run(causal)
			c.run(windowed)
			var tc, tw time.Duration
			for b.Loop() {
				t0 := time.Now()
				c.run(causal)
				t1 := time.Now()
				c.run(windowed)
				tc, tw = tc+t1.Sub(t0), tw+time.Since(t1)
			}
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(tw)/float64(tc), "of_causal")
		})
	}
}
