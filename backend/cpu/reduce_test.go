package cpu

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/sora-go/sora/backend"
)

func TestReduceRows(t *testing.T) {
	shapes := [][]int{{1}, {5, 1}, {3, 7}, {2, 3, 13}, {500, 33}}
	ref := map[backend.ReduceOp]func(row []float32) float64{
		backend.Sum: func(row []float32) float64 {
			var s float64
			for _, v := range row {
				s += float64(v)
			}
			return s
		},
		backend.SumSquares: func(row []float32) float64 {
			var s float64
			for _, v := range row {
				s += float64(v) * float64(v)
			}
			return s
		},
		backend.Max: func(row []float32) float64 {
			m := math.Inf(-1)
			for _, v := range row {
				m = math.Max(m, float64(v))
			}
			return m
		},
	}
	for _, op := range backend.ReduceOps {
		for _, shape := range shapes {
			t.Run(op.String()+shapeName(shape...), func(t *testing.T) {
				eachConfig(t, func(t *testing.T, be *Backend) {
					rows, cols := backend.Shape(shape).Rows()
					data := uniform(newRNG(uint64(rows*cols)), rows*cols, -1, 1)
					src := upload(t, be, data, shape...)
					dst := poisoned(t, be, rows)
					be.ReduceRows(op, dst, src)
					want := make([]float64, rows)
					for r := range want {
						want[r] = ref[op](data[r*cols : (r+1)*cols])
					}
					// float64 accumulation: one final rounding.
					assertClose(t, "dst", download(t, be, dst), want, 6e-8, 1e-30)
				})
			})
		}
	}
}

func TestReduceMaxNaN(t *testing.T) {
	be := New(Options{})
	nan := float32(math.NaN())
	src := upload(t, be, []float32{nan, 1, 2, 1, nan, 2, -1, -3, -2}, 3, 3)
	dst := poisoned(t, be, 3)
	be.ReduceRows(backend.Max, dst, src)
	got := download(t, be, dst)
	if !math.IsNaN(float64(got[0])) || !math.IsNaN(float64(got[1])) || got[2] != -1 {
		t.Errorf("max rows = %v, want [NaN NaN -1]", got)
	}
}

func TestSumColumns(t *testing.T) {
	shapes := [][]int{{1, 1}, {7, 1}, {1, 9}, {13, 5}, {2, 3, 4}, {1000, 3}}
	for _, shape := range shapes {
		t.Run(shapeName(shape...), func(t *testing.T) {
			eachConfig(t, func(t *testing.T, be *Backend) {
				rows, cols := backend.Shape(shape).Rows()
				data := uniform(newRNG(uint64(rows+cols)), rows*cols, -1, 1)
				src := upload(t, be, data, shape...)
				dst := poisoned(t, be, cols)
				be.SumColumns(dst, src)
				want := make([]float64, cols)
				for r := range rows {
					for j := range cols {
						want[j] += float64(data[r*cols+j])
					}
				}
				assertClose(t, "dst", download(t, be, dst), want, 6e-8, 1e-12)
			})
		})
	}
}

// TestPieceSumsTree checks that pieceSums adds the pieces' vectors in its
// fixed pairwise tree, bit for bit, whatever order the pieces finish in and
// whether they finish one after another or at once.
func TestPieceSumsTree(t *testing.T) {
	const n = 5
	// pairwise is the tree's sum of piece vectors [lo, hi), written out
	// recursively from its definition.
	var pairwise func(v [][]float64, lo, hi int) []float64
	pairwise = func(v [][]float64, lo, hi int) []float64 {
		if hi-lo == 1 {
			return slices.Clone(v[lo])
		}
		mid := (lo + hi) / 2
		a, b := pairwise(v, lo, mid), pairwise(v, mid, hi)
		for j := range a {
			a[j] += b[j]
		}
		return a
	}
	rng := rand.New(rand.NewPCG(1, 2))
	be := New(Options{Threads: 1})
	for c := 1; c <= maxPieces; c++ {
		// Values of very different sizes, so that the order of the
		// additions shows in the result's bits.
		vals := make([][]float64, c)
		for p := range vals {
			vals[p] = make([]float64, n)
			for j := range vals[p] {
				vals[p][j] = math.Ldexp(rng.Float64()-0.5, rng.IntN(60)-30)
			}
		}
		want := pairwise(vals, 0, c)
		for trial := range 4 {
			s := be.pieceSums(c, n)
			fill := func(p int) {
				copy(s.start(p), vals[p])
				s.finish(p)
			}
			if trial%2 == 0 {
				for _, p := range rng.Perm(c) {
					fill(p)
				}
			} else {
				var wg sync.WaitGroup
				for p := range c {
					wg.Go(func() { fill(p) })
				}
				wg.Wait()
			}
			if got := s.total(); !slices.Equal(got, want) {
				t.Fatalf("c=%d trial %d: total %v, want the tree's %v", c, trial, got, want)
			}
		}
	}
}
