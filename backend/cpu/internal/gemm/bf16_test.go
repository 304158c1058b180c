package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// bf16Shapes adds to testShapes the shapes of the row-dot path (a few
// rows times Bᵀ, fewer than 8 columns, odd column counts, k tails of
// every length the kernels split off) and of B packed by several threads.
var bf16Shapes = append(append([]shape(nil), testShapes...),
	shape{1, 37, 300}, shape{2, 8, 16}, shape{4, 64, 129}, shape{3, 5, 70}, shape{1, 17, 31},
	shape{1, 40, 1023}, shape{2, 9, 8}, shape{150, 150, 150}, shape{40, 300, 70},
)

// TestSgemmBF16MatchesFloat64Reference runs SgemmBF16 on every kernel,
// thread count, shape and transpose against the float64 product of the
// widened values.
func TestSgemmBF16MatchesFloat64Reference(t *testing.T) {
	scalars := []struct{ alpha, beta float32 }{{1, 0}, {0.75, -1.5}}
	for _, kr := range kernelsUnderTest() {
		for _, threads := range []int{1, 3} {
			e := NewEngine(Config{Threads: threads})
			e.k = kr
			rng := rand.New(rand.NewPCG(5, uint64(threads)))
			for _, s := range bf16Shapes {
				for _, tr := range []struct{ a, b bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
					for si, sc := range scalars {
						pad := (si + s.m) % 3
						name := fmt.Sprintf("%s/t%d/%dx%dx%d/%s/a%v_b%v", kr.name, threads, s.m, s.n, s.k, transName(tr.a, tr.b), sc.alpha, sc.beta)
						t.Run(name, func(t *testing.T) {
							checkSgemmDType(t, e, rng, tr.a, tr.b, s, sc.alpha, sc.beta, pad, true)
						})
					}
				}
			}
		}
	}
}

// TestSgemmBF16SmallBlocks is TestSgemmSmallBlocks for a bfloat16 B: every
// blocking loop, and the shared B packed in several passes.
func TestSgemmBF16SmallBlocks(t *testing.T) {
	for _, kr := range kernelsUnderTest() {
		small := *kr
		small.kc, small.mc, small.nc = 5, 2*kr.mr, 2*kr.nr
		for _, threads := range []int{1, 3} {
			e := NewEngine(Config{Threads: threads})
			e.k = &small
			e.minFlops, e.bBudget = 1, 2*small.kc*small.nc
			rng := rand.New(rand.NewPCG(6, uint64(threads)))
			for _, s := range []shape{{23, 47, 31}, {3 * kr.mr, 5 * kr.nr, 40}, {12 * kr.mr, 3 * kr.nr, 23}} {
				for _, tr := range []struct{ a, b bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
					t.Run(fmt.Sprintf("%s/t%d/%dx%dx%d/%s", kr.name, threads, s.m, s.n, s.k, transName(tr.a, tr.b)), func(t *testing.T) {
						checkSgemmDType(t, e, rng, tr.a, tr.b, s, 1.25, 0.5, 1, true)
					})
				}
			}
		}
	}
}

// TestSgemmBF16WarmAllocatesNothing is TestSgemmWarmAllocatesNothing for
// a bfloat16 B, on the tiled, row-dot and skinny paths.
func TestSgemmBF16WarmAllocatesNothing(t *testing.T) {
	for _, kr := range kernelsUnderTest() {
		for _, threads := range []int{1, 2} {
			e := NewEngine(Config{Threads: threads})
			e.k = kr
			for _, s := range []shape{{96, 96, 96}, {8, 512, 128}, {1, 100, 70}, {3, 5, 64}, {100, 8, 128}} {
				a, b, c := make([]float32, s.m*s.k), make([]uint16, s.k*s.n), make([]float32, s.m*s.n)
				for _, tr := range []struct{ a, b bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
					lda, ldb := s.k, s.n
					if tr.a {
						lda = s.m
					}
					if tr.b {
						ldb = s.k
					}
					e.SgemmBF16(tr.a, tr.b, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n)
					allocs := testing.AllocsPerRun(20, func() {
						e.SgemmBF16(tr.a, tr.b, s.m, s.n, s.k, 1, a, lda, b, ldb, 0.5, c, s.n)
					})
					if allocs != 0 {
						t.Errorf("%s, %d threads, %dx%dx%d %s: %v allocations per warm SgemmBF16, want 0",
							kr.name, threads, s.m, s.n, s.k, transName(tr.a, tr.b), allocs)
					}
				}
			}
		}
	}
}
