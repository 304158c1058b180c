package vec

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkAgainstGo times each assembly set's kernels against the Go
// set's on one row of 4096 elements (in the L1 cache, one goroutine),
// alternating the two in the same run, and reports the assembly's time
// per element and speedup: Go's best time over its own (the go_x metric;
// above 1 is faster). On arm64 this compares NEON with Go:
//
//	go test -run '^$' -bench AgainstGo ./backend/cpu/internal/vec/
//
// Under an emulator (qemu) the numbers say nothing about hardware.
func BenchmarkAgainstGo(b *testing.B) {
	const n = 4096
	g := gen{rand.New(rand.NewPCG(21, 21))}
	x, y, z := g.uniform(n, -4, 4), g.uniform(n, 0.5, 2), make([]float32, n)
	acc := make([]float64, n)
	ops := []struct {
		name string
		run  func(k *Kernels)
	}{
		{"fill", func(k *Kernels) { k.Fill(z, 1.5) }},
		{"add", func(k *Kernels) { k.Add(z, x, y) }},
		{"div", func(k *Kernels) { k.Div(z, x, y) }},
		{"mul_scalar", func(k *Kernels) { k.MulScalar(z, x, 0.5) }},
		{"axpy", func(k *Kernels) { k.Axpy(z, 1e-3, x) }},
		{"scale_mul", func(k *Kernels) { k.ScaleMul(z, x, y, 0.7) }},
		{"sum", func(k *Kernels) { _ = k.Sum(x) }},
		{"dot", func(k *Kernels) { _ = k.Dot(x, y) }},
		{"sum_squares_dot3", func(k *Kernels) { _, _ = k.SumSquaresDot3(x, y, z) }},
		{"max", func(k *Kernels) { _ = k.Max(x) }},
		{"max_scaled", func(k *Kernels) { _ = k.MaxScaled(x, 0.125) }},
		{"accumulate", func(k *Kernels) { k.Accumulate(acc, x) }},
		{"normalize", func(k *Kernels) { k.Normalize(z, x, y, y, 0.1, 1.3) }},
		{"softmax_grad", func(k *Kernels) { k.SoftmaxGrad(z, x, y, 0.5, 0.25) }},
		{"rmsnorm_grad", func(k *Kernels) { k.RMSNormGrad(z, x, y, x, 0.9, 0.01) }},
		{"exp", func(k *Kernels) { k.Exp(z, x) }},
		{"sigmoid", func(k *Kernels) { k.Sigmoid(z, x) }},
		{"silu", func(k *Kernels) { k.SiLU(z, x) }},
		{"sigmoid_grad", func(k *Kernels) { k.SigmoidGrad(z, x, y) }},
		{"silu_grad", func(k *Kernels) { k.SiLUGrad(z, x, y) }},
		{"log", func(k *Kernels) { k.Log(z, y) }},
		{"tanh", func(k *Kernels) { k.Tanh(z, x) }},
		{"tanh_grad", func(k *Kernels) { k.TanhGrad(z, x, y) }},
		{"gelu", func(k *Kernels) { k.GELU(z, x) }},
		{"gelu_grad", func(k *Kernels) { k.GELUGrad(z, x, y) }},
		{"gelu_tanh", func(k *Kernels) { k.GELUTanh(z, x) }},
		{"gelu_tanh_grad", func(k *Kernels) { k.GELUTanhGrad(z, x, y) }},
		{"exp_shift", func(k *Kernels) { _ = k.ExpShift(z, x, 1, 4) }},
		{"exp_shift_sum", func(k *Kernels) { _ = k.ExpShiftSum(x, 4) }},
	}
	for _, o := range ops {
		for _, k := range All()[1:] {
			b.Run(o.name+"/"+k.Name, func(b *testing.B) {
				// Each timing is the best of 30 batches of 20 calls,
				// the two sets taking turns.
				batch := func(k *Kernels) func() {
					return func() {
						for range 20 {
							o.run(k)
						}
					}
				}
				tk, tg := time.Duration(1<<63-1), time.Duration(1<<63-1)
				for range 30 {
					tk = min(tk, bestOf(1, batch(k)))
					tg = min(tg, bestOf(1, batch(Go)))
				}
				for b.Loop() {
					o.run(k)
				}
				b.ReportMetric(float64(tk.Nanoseconds())/20/n*1000, "ps/elem")
				b.ReportMetric(float64(tg)/float64(tk), "go_x")
			})
		}
	}
}
