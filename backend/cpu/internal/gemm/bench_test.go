package gemm

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	gonumblas "gonum.org/v1/gonum/blas/gonum"
)

// BenchmarkSgemm reports GFLOP/s for each kernel, transpose, size and
// thread count, gonum's Sgemm on the same problem (gonum_GFLOP/s), and
// their ratio, x_gonum. GOMAXPROCS is set to the thread count for both
// (gonum parallelises over GOMAXPROCS). The two are measured alternately
// in the same run, three rounds each of at least 0.1 s besides the timed
// b.N loop, and each side's best round counts, so that load from other
// processes on a shared machine shows up in both rather than in one. In a
// build with the noasm tag gonum runs its pure-Go code (and this package
// only its pure-Go kernel), and the metrics are named gonum-noasm instead.
// Run with, e.g.,
//
//	go test -run '^$' -bench 'Sgemm/.*/NN/n=1024' ./backend/cpu/internal/gemm
//	go test -tags noasm -run '^$' -bench 'Sgemm/go.*/NN/n=1024' ./backend/cpu/internal/gemm
//	GOEXPERIMENT=simd go test -run '^$' -bench 'Sgemm/go-simd.*/n=1024/t=1' ./backend/cpu/internal/gemm
//
// On arm64 the first lists the neon and go kernels side by side;
// BenchmarkSgemmVsGo puts their ratio in one line. The last measures the
// go-simd kernels, which exist only in a GOEXPERIMENT=simd build.
func BenchmarkSgemm(b *testing.B) {
	sizes := []int{256, 512, 1024}
	if !testing.Short() {
		sizes = append(sizes, 2048)
	}
	for _, kr := range kernelsUnderTest() {
		for _, tr := range []string{"NN", "NT", "TN"} {
			for _, n := range sizes {
				for _, threads := range []int{1, runtime.NumCPU()} {
					name := fmt.Sprintf("%s/%s/n=%d/t=%d", kr.name, tr, n, threads)
					b.Run(name, func(b *testing.B) {
						defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
						ta, tb := tr[0] == 'T', tr[1] == 'T'
						a, bm, c := randMatrices(n)
						e := NewEngine(Config{Threads: threads})
						e.k = kr
						ours := func() { e.Sgemm(ta, tb, n, n, n, 1, a, n, bm, n, 0, c, n) }
						ours()
						b.ResetTimer()
						for i := 0; i < b.N; i++ {
							ours()
						}
						b.StopTimer()
						flops := 2 * float64(n*n*n)
						gf := flops * float64(b.N) / b.Elapsed().Seconds() / 1e9
						gonum := gonumSgemm(ta, tb, n, n, n, a, n, bm, n, c, n)
						base := 0.0
						for round := range 3 {
							base = max(base, flops*callRate(gonum, 100*time.Millisecond)/1e9)
							if round < 2 {
								gf = max(gf, flops*callRate(ours, 100*time.Millisecond)/1e9)
							}
						}
						b.ReportMetric(gf, "GFLOP/s")
						b.ReportMetric(base, gonumName+"_GFLOP/s")
						b.ReportMetric(gf/base, "x_"+gonumName)
					})
				}
			}
		}
	}
}

// BenchmarkSgemmVsGo compares each SIMD micro-kernel (neon on arm64; the
// AVX and SSE ones on amd64, and the go-simd ones in a GOEXPERIMENT=simd
// build) with the scalar pure-Go kernel and gonum on square NN products
// on one thread, all three measured in the same run: alternately, three
// rounds of at least 0.1 s each, best round counting, so that load from
// other processes shows up in all of them. It reports
// the kernel's GFLOP/s, the pure-Go kernel's (go_GFLOP/s) and gonum's,
// and the ratios x_go and x_gonum. On an arm64 machine:
//
//	go test -run '^$' -bench SgemmVsGo ./backend/cpu/internal/gemm
func BenchmarkSgemmVsGo(b *testing.B) {
	for _, kr := range kernelsUnderTest() {
		if kr == goKernel {
			continue
		}
		for _, n := range []int{256, 512, 1024} {
			b.Run(fmt.Sprintf("%s/n=%d", kr.name, n), func(b *testing.B) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
				a, bm, c := randMatrices(n)
				e := NewEngine(Config{Threads: 1})
				e.k = kr
				g := NewEngine(Config{Threads: 1})
				g.k = goKernel
				ours := func() { e.Sgemm(false, false, n, n, n, 1, a, n, bm, n, 0, c, n) }
				pure := func() { g.Sgemm(false, false, n, n, n, 1, a, n, bm, n, 0, c, n) }
				gonum := gonumSgemm(false, false, n, n, n, a, n, bm, n, c, n)
				ours()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					ours()
				}
				b.StopTimer()
				flops := 2 * float64(n) * float64(n) * float64(n)
				gf := flops * float64(b.N) / b.Elapsed().Seconds() / 1e9
				var goGF, gonumGF float64
				for range 3 {
					gf = max(gf, flops*callRate(ours, 100*time.Millisecond)/1e9)
					goGF = max(goGF, flops*callRate(pure, 100*time.Millisecond)/1e9)
					gonumGF = max(gonumGF, flops*callRate(gonum, 100*time.Millisecond)/1e9)
				}
				b.ReportMetric(gf, "GFLOP/s")
				b.ReportMetric(goGF, "go_GFLOP/s")
				b.ReportMetric(gonumGF, gonumName+"_GFLOP/s")
				b.ReportMetric(gf/goGF, "x_go")
				b.ReportMetric(gf/gonumGF, "x_"+gonumName)
			})
		}
	}
}

// callRate calls f for at least d (and at least once) and returns calls
// per second.
func callRate(f func(), d time.Duration) float64 {
	start, runs := time.Now(), 0
	for time.Since(start) < d || runs == 0 {
		f()
		runs++
	}
	return float64(runs) / time.Since(start).Seconds()
}

// gonumSgemm returns a call of gonum's Sgemm computing C = op(A)·op(B),
// with the same arguments as Engine.Sgemm takes.
func gonumSgemm(ta, tb bool, m, n, k int, a []float32, lda int, bm []float32, ldb int, c []float32, ldc int) func() {
	tA, tB := blas.NoTrans, blas.NoTrans
	if ta {
		tA = blas.Trans
	}
	if tb {
		tB = blas.Trans
	}
	var impl gonumblas.Implementation
	return func() { impl.Sgemm(tA, tB, m, n, k, 1, a, lda, bm, ldb, 0, c, ldc) }
}

// BenchmarkSgemmShapes covers the non-square products of fine-tuning a
// small transformer (dim 768, 1024 tokens, LoRA rank 8): the frozen
// weight's product, the rank-8 adapter products forward and backward, and
// a one-token product. GFLOP/s and x_gonum as in BenchmarkSgemm, one
// thread.
func BenchmarkSgemmShapes(b *testing.B) {
	shapes := []struct {
		name    string
		tr      string
		m, n, k int
	}{
		{"x·W", "NN", 1024, 768, 768},
		{"x·A(lora)", "NN", 1024, 8, 768},
		{"(xA)·B(lora)", "NN", 1024, 768, 8},
		{"dY·Bᵀ(lora)", "NT", 1024, 8, 768},
		{"xᵀ·dH(lora dA)", "TN", 768, 8, 1024},
		{"(xA)ᵀ·dY(lora dB)", "TN", 8, 768, 1024},
		{"token·W", "NN", 1, 4096, 4096},
	}
	for _, kr := range kernelsUnderTest() {
		for _, s := range shapes {
			b.Run(fmt.Sprintf("%s/%s/%s_%dx%dx%d", kr.name, s.name, s.tr, s.m, s.n, s.k), func(b *testing.B) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
				ta, tb := s.tr[0] == 'T', s.tr[1] == 'T'
				// Random operands: gonum skips zeros of A, which would
				// flatter the baseline.
				rng := rand.New(rand.NewPCG(6, uint64(s.m*s.n*s.k)))
				a, bm, c := make([]float32, s.m*s.k), make([]float32, s.k*s.n), make([]float32, s.m*s.n)
				for i := range a {
					a[i] = rng.Float32() - 0.5
				}
				for i := range bm {
					bm[i] = rng.Float32() - 0.5
				}
				lda, ldb := s.k, s.n
				if ta {
					lda = s.m
				}
				if tb {
					ldb = s.k
				}
				e := NewEngine(Config{Threads: 1})
				e.k = kr
				ours := func() { e.Sgemm(ta, tb, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n) }
				ours()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					ours()
				}
				b.StopTimer()
				flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
				gf := flops * float64(b.N) / b.Elapsed().Seconds() / 1e9
				gonum := gonumSgemm(ta, tb, s.m, s.n, s.k, a, lda, bm, ldb, c, s.n)
				base := 0.0
				for round := range 3 {
					base = max(base, flops*callRate(gonum, 100*time.Millisecond)/1e9)
					if round < 2 {
						gf = max(gf, flops*callRate(ours, 100*time.Millisecond)/1e9)
					}
				}
				b.ReportMetric(gf, "GFLOP/s")
				b.ReportMetric(gf/base, "x_"+gonumName)
			})
		}
	}
}

func randMatrices(n int) (a, b, c []float32) {
	rng := rand.New(rand.NewPCG(3, uint64(n)))
	a, b, c = make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i] = rng.Float32() - 0.5
		b[i] = rng.Float32() - 0.5
	}
	return a, b, c
}

// BenchmarkSgemmRowDot times products of a few rows by a transposed
// weight, x·Wᵀ for one token or a handful (generation with stories260K:
// dim 64, hidden 172, vocab 512; a 4096-wide layer), through Engine.rowDots
// and, as the baseline of the same run, through the tiled product that
// packs W; x_tiled is the ratio. It also covers row counts just past
// defaultRowDotMax, to show where the tiled product takes over. One thread.
func BenchmarkSgemmRowDot(b *testing.B) {
	shapes := []shape{
		{1, 64, 64}, {1, 172, 64}, {1, 64, 172}, {1, 512, 64},
		{2, 64, 64}, {4, 172, 64}, {4, 64, 172}, {6, 172, 64}, {8, 300, 32}, {12, 172, 64},
	}
	if !testing.Short() {
		shapes = append(shapes, shape{1, 4096, 4096})
	}
	for _, kr := range kernelsUnderTest() {
		for _, s := range shapes {
			b.Run(fmt.Sprintf("%s/%dx%dx%d", kr.name, s.m, s.n, s.k), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(7, uint64(s.m*s.n*s.k)))
				x, w, c := make([]float32, s.m*s.k), make([]float32, s.n*s.k), make([]float32, s.m*s.n)
				for i := range x {
					x[i] = rng.Float32() - 0.5
				}
				for i := range w {
					w[i] = rng.Float32() - 0.5
				}
				rate := func(e *Engine, runs int) float64 {
					e.Sgemm(false, true, s.m, s.n, s.k, 1, x, s.k, w, s.k, 0, c, s.n)
					start := time.Now()
					for range runs {
						e.Sgemm(false, true, s.m, s.n, s.k, 1, x, s.k, w, s.k, 0, c, s.n)
					}
					return float64(runs) / time.Since(start).Seconds()
				}
				e := NewEngine(Config{Threads: 1})
				e.k = kr
				e.rowDotMax = max(s.m, defaultRowDotMax)
				tiled := NewEngine(Config{Threads: 1})
				tiled.k = kr
				tiled.rowDotMax = 0
				b.ResetTimer()
				got := rate(e, b.N)
				b.StopTimer()
				base := 0.0
				for range 3 { // best of three, each about as long as the timed loop
					base = max(base, rate(tiled, b.N))
				}
				b.ReportMetric(2*float64(s.m*s.n*s.k)*got/1e9, "GFLOP/s")
				b.ReportMetric(got/base, "x_tiled")
			})
		}
	}
}
