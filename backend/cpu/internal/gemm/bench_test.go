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

// BenchmarkSgemm reports GFLOP/s for each kernel, transpose and size, and
// x_gonum: the ratio to gonum's native Sgemm measured in the same run with
// GOMAXPROCS set to the same thread count (gonum parallelises over
// GOMAXPROCS). Run with, e.g.,
//
//	go test -run '^$' -bench 'Sgemm/.*/NN/n=1024' ./backend/cpu/internal/gemm
func BenchmarkSgemm(b *testing.B) {
	sizes := []int{256, 512, 1024}
	if !testing.Short() {
		sizes = append(sizes, 2048)
	}
	baseline := map[string]float64{}
	for _, kr := range kernelsUnderTest() {
		for _, tr := range []string{"NN", "NT", "TN"} {
			for _, n := range sizes {
				for _, threads := range []int{1, runtime.NumCPU()} {
					name := fmt.Sprintf("%s/%s/n=%d/t=%d", kr.name, tr, n, threads)
					b.Run(name, func(b *testing.B) {
						ta, tb := tr[0] == 'T', tr[1] == 'T'
						a, bm, c := randMatrices(n)
						e := NewEngine(Config{Threads: threads})
						e.k = kr
						e.Sgemm(ta, tb, n, n, n, 1, a, n, bm, n, 0, c, n)
						b.ResetTimer()
						for i := 0; i < b.N; i++ {
							e.Sgemm(ta, tb, n, n, n, 1, a, n, bm, n, 0, c, n)
						}
						b.StopTimer()
						gf := 2 * float64(n*n*n) * float64(b.N) / b.Elapsed().Seconds() / 1e9
						key := fmt.Sprintf("%s/%d/%d", tr, n, threads)
						if _, ok := baseline[key]; !ok {
							baseline[key] = gonumGflops(ta, tb, n, threads)
						}
						b.ReportMetric(gf, "GFLOP/s")
						b.ReportMetric(gf/baseline[key], "x_gonum")
					})
				}
			}
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

// gonumGflops times gonum's Sgemm on the same problem, taking the best of
// several runs of at least 0.2 s.
func gonumGflops(ta, tb bool, n, threads int) float64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
	a, bm, c := randMatrices(n)
	tA, tB := blas.NoTrans, blas.NoTrans
	if ta {
		tA = blas.Trans
	}
	if tb {
		tB = blas.Trans
	}
	var impl gonumblas.Implementation
	best := 0.0
	for rep := 0; rep < 3; rep++ {
		start, runs := time.Now(), 0
		for time.Since(start) < 200*time.Millisecond || runs == 0 {
			impl.Sgemm(tA, tB, n, n, n, 1, a, n, bm, n, 0, c, n)
			runs++
		}
		best = max(best, 2*float64(n*n*n)*float64(runs)/time.Since(start).Seconds()/1e9)
	}
	return best
}
