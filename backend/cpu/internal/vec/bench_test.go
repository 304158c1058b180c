package vec

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// benchN is the benchmark length: 4M floats, 16 MiB per operand, bigger
// than the caches of the machines this was tuned on.
const benchN = 4 << 20

// parallel runs f over [0, n) split into GOMAXPROCS contiguous ranges, as
// the CPU backend's parallel-for does.
func parallel(n int, f func(lo, hi int)) {
	p := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for i := 1; i < p; i++ {
		wg.Go(func() { f(i*n/p, (i+1)*n/p) })
	}
	f(0, n/p)
	wg.Wait()
}

// bestOf returns the shortest of reps timings of f.
func bestOf(reps int, f func()) time.Duration {
	best := time.Duration(1<<63 - 1)
	for range reps {
		t := time.Now()
		f()
		best = min(best, time.Since(t))
	}
	return best
}

// benchGBPS times f (moving bytes bytes per call) and reports its GB/s and
// its ratio to copy's GB/s, measured just before in the same run: Go's
// copy of a buffer as long, over the same goroutines, counting 8 bytes
// (a read and a write) per element. Both are the best of several calls.
func benchGBPS(b *testing.B, bytes float64, f func()) {
	src, dst := make([]float32, benchN), make([]float32, benchN)
	cp := func() { parallel(benchN, func(lo, hi int) { copy(dst[lo:hi], src[lo:hi]) }) }
	cp()
	copyT := bestOf(20, cp)
	f()
	t := bestOf(20, f)
	for b.Loop() {
		f()
	}
	gbps := bytes / t.Seconds() / 1e9
	b.ReportMetric(gbps, "GB/s")
	b.ReportMetric(gbps/(8*benchN/copyT.Seconds()/1e9), "of_copy")
}

// BenchmarkKernels times the element-wise and row kernels of every kernel
// set (with streaming stores, which is what the backend uses at this size)
// over 4M floats on GOMAXPROCS goroutines, reporting GB/s of the memory
// each must at least move (each operand read once, each output written
// once) and the ratio to copy's bandwidth in the same run.
func BenchmarkKernels(b *testing.B) {
	x, y, z := make([]float32, benchN), make([]float32, benchN), make([]float32, benchN)
	m, v := make([]float32, benchN), make([]float32, benchN)
	for i := range x {
		x[i] = float32(i%1000)/125 - 4
		y[i] = float32(i%777)/777 - 0.5
		v[i] = 1e-4
	}
	const cols = 1024
	w := y[:cols]
	step := NewAdamWStep(1e-6, 0.9, 0.999, 1e-8, 0.01, 1)
	rows := func(k *Kernels, f func(r int)) func() {
		return func() {
			parallel(benchN/cols, func(lo, hi int) {
				for r := lo; r < hi; r++ {
					f(r)
				}
			})
		}
	}
	row := func(s []float32, r int) []float32 { return s[r*cols : (r+1)*cols] }
	type op struct {
		name  string
		bytes int // per element
		run   func(k *Kernels) func()
	}
	ew := func(f func(k *Kernels, lo, hi int)) func(k *Kernels) func() {
		return func(k *Kernels) func() {
			return func() { parallel(benchN, func(lo, hi int) { f(k, lo, hi) }) }
		}
	}
	ops := []op{
		{"add", 12, ew(func(k *Kernels, lo, hi int) { k.Add(z[lo:hi], x[lo:hi], y[lo:hi]) })},
		{"mul", 12, ew(func(k *Kernels, lo, hi int) { k.Mul(z[lo:hi], x[lo:hi], y[lo:hi]) })},
		{"add_row", 8, func(k *Kernels) func() { return rows(k, func(r int) { k.Add(row(z, r), row(x, r), w) }) }},
		{"scale", 8, ew(func(k *Kernels, lo, hi int) { k.MulScalar(z[lo:hi], x[lo:hi], 0.5) })},
		{"axpy", 12, ew(func(k *Kernels, lo, hi int) { k.Axpy(z[lo:hi], 1e-3, x[lo:hi]) })},
		{"exp", 8, ew(func(k *Kernels, lo, hi int) { k.Exp(z[lo:hi], x[lo:hi]) })},
		{"silu", 8, ew(func(k *Kernels, lo, hi int) { k.SiLU(z[lo:hi], x[lo:hi]) })},
		{"gelu", 8, ew(func(k *Kernels, lo, hi int) { k.GELU(z[lo:hi], x[lo:hi]) })},
		{"tanh", 8, ew(func(k *Kernels, lo, hi int) { k.Tanh(z[lo:hi], x[lo:hi]) })},
		{"silu_grad", 12, ew(func(k *Kernels, lo, hi int) { k.SiLUGrad(z[lo:hi], x[lo:hi], y[lo:hi]) })},
		{"gelu_grad", 12, ew(func(k *Kernels, lo, hi int) { k.GELUGrad(z[lo:hi], x[lo:hi], y[lo:hi]) })},
		{"gelu_tanh", 8, ew(func(k *Kernels, lo, hi int) { k.GELUTanh(z[lo:hi], x[lo:hi]) })},
		{"gelu_tanh_grad", 12, ew(func(k *Kernels, lo, hi int) { k.GELUTanhGrad(z[lo:hi], x[lo:hi], y[lo:hi]) })},
		{"sum_rows", 4, func(k *Kernels) func() { return rows(k, func(r int) { _ = k.Sum(row(x, r)) }) }},
		// Cross-entropy's pass over a row of logits: the sum of
		// exponentials below the row's maximum, with the next row's
		// maximum.
		{"exp_sum_next_max", 4, func(k *Kernels) func() {
			return rows(k, func(r int) {
				var next []float32
				if r+1 < benchN/cols {
					next = row(x, r+1)
				}
				_, _ = k.ExpSumNextMax(row(x, r), next, 4)
			})
		}},
		{"softmax", 8, func(k *Kernels) func() {
			return rows(k, func(r int) {
				xr, zr := row(x, r), row(z, r)
				mx := k.MaxScaled(xr, 1)
				s := k.ExpShift(zr, xr, 1, mx)
				k.ScaleTo(zr, zr, 1/s)
			})
		}},
		{"softmax_grad", 12, func(k *Kernels) func() {
			return rows(k, func(r int) {
				yr, gr := row(y, r), row(x, r)
				k.SoftmaxGrad(row(z, r), yr, gr, 1, k.Dot(yr, gr))
			})
		}},
		// The same with each row's dot product taken in the pass over
		// the row before, as the CPU backend runs whole rows.
		{"softmax_grad_next", 12, func(k *Kernels) func() {
			return func() {
				parallel(benchN/cols, func(lo, hi int) {
					dot := k.Dot(row(y, lo), row(x, lo))
					for r := lo; r < hi; r++ {
						var ny, ng []float32
						if r+1 < hi {
							ny, ng = row(y, r+1), row(x, r+1)
						}
						dot = k.SoftmaxGradNext(row(z, r), row(y, r), row(x, r), 1, dot, ny, ng)
					}
				})
			}
		}},
		{"rmsnorm", 8, func(k *Kernels) func() {
			return rows(k, func(r int) {
				xr := row(x, r)
				k.ScaleMul(row(z, r), xr, w, 1/(k.SumSquares(xr)/cols+1e-5))
			})
		}},
		{"layernorm", 8, func(k *Kernels) func() {
			return rows(k, func(r int) {
				xr := row(x, r)
				c := float64(xr[0])
				sd, ssd := k.SumsAbout(xr, c)
				dm := sd / cols
				k.Normalize(row(z, r), xr, w, w, c+dm, 1/((ssd-sd*dm)/cols+1e-5))
			})
		}},
		{"rmsnorm_grad", 12, func(k *Kernels) func() {
			return rows(k, func(r int) {
				xr, gr := row(x, r), row(y, r)
				_, dot := k.SumSquaresDot3(xr, w, gr)
				k.RMSNormGrad(row(z, r), xr, w, gr, 0.5, dot*1e-3)
			})
		}},
		{"adamw", 28, ew(func(k *Kernels, lo, hi int) { k.AdamW(z[lo:hi], y[lo:hi], m[lo:hi], v[lo:hi], &step) })},
	}
	for _, o := range ops {
		for _, k := range All() {
			k := k.Streaming()
			b.Run(o.name+"/"+k.Name, func(b *testing.B) {
				benchGBPS(b, float64(o.bytes)*benchN, o.run(k))
			})
		}
	}
}
