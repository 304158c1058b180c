package cpu

import (
	"testing"
	"time"

	"github.com/sora-go/sora/backend"
)

// BenchmarkMatMulBF16 times MatMul with a float32 B and with the same B
// stored as bfloat16, alternately in the same loop, on the products of a
// LoRA fine-tune's frozen linear layer (hidden 2048, as Llama 3.2 1B; a
// 512-token batch): the forward x·Wᵀ, the backward dy·W, and one token's
// x·Wᵀ during generation, for a 2048×2048 W and an 8192×3072 one (Llama
// 3.2 3B's MLP, too big for the caches); and products of a few tokens,
// where a float32 B not transposed is read in place but a bfloat16 one
// has to be widened into packed panels first. It reports "bf16/f32", the time
// with the bfloat16 B over the time with the float32 one (below 1: the
// bfloat16 weight is faster), and each one's GFLOP/s. ns/op covers both.
// It asserts nothing.
//
//	go test -run '^$' -bench MatMulBF16 ./backend/cpu
func BenchmarkMatMulBF16(b *testing.B) {
	cases := []struct {
		name    string
		m, n, k int
		transB  bool
	}{
		{"forward_xWt/512x2048x2048", 512, 2048, 2048, true},
		{"backward_dyW/512x2048x2048", 512, 2048, 2048, false},
		{"token_xWt/1x2048x2048", 1, 2048, 2048, true},
		{"few_tokens_dyW/8x2048x2048", 8, 2048, 2048, false},
		{"few_tokens_xWt/16x2048x2048", 16, 2048, 2048, true},
		{"token_xWt/1x8192x3072", 1, 8192, 3072, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			be := New(Options{})
			rng := newRNG(1)
			bShape := []int{c.k, c.n}
			if c.transB {
				bShape = []int{c.n, c.k}
			}
			w := uniform(rng, c.n*c.k, -1, 1)
			w32 := uploadDType(b, be, backend.Float32, w, bShape...)
			w16 := uploadDType(b, be, backend.BFloat16, w, bShape...)
			x := upload(b, be, uniform(rng, c.m*c.k, -1, 1), c.m, c.k)
			y, err := be.Alloc(backend.Float32, c.m, c.n)
			if err != nil {
				b.Fatal(err)
			}
			p := backend.MatMulParams{TransB: c.transB, Alpha: 1}
			be.MatMul(y, x, w32, p)
			be.MatMul(y, x, w16, p)
			var t32, t16 time.Duration
			for b.Loop() {
				t0 := time.Now()
				be.MatMul(y, x, w32, p)
				t1 := time.Now()
				be.MatMul(y, x, w16, p)
				t32, t16 = t32+t1.Sub(t0), t16+time.Since(t1)
			}
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			flops := 2 * float64(c.m) * float64(c.n) * float64(c.k) * float64(b.N)
			b.ReportMetric(float64(t16)/float64(t32), "bf16/f32")
			b.ReportMetric(flops/t32.Seconds()/1e9, "f32_GFLOP/s")
			b.ReportMetric(flops/t16.Seconds()/1e9, "bf16_GFLOP/s")
		})
	}
}
