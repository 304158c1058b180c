package cpu

import (
	"math"
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
