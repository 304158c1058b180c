package conformance

import (
	"fmt"
	"math"

	"github.com/sora-go/sora/backend"
)

func init() {
	// ReduceRows: one element per row of src.
	type red struct{ src, dst []int }
	for _, op := range backend.ReduceOps {
		for _, s := range []red{
			{[]int{1, 1}, []int{1}},
			{[]int{7, 13}, []int{7}},
			{[]int{13, 1}, []int{13}},
			{[]int{3, 5, 127}, []int{3, 5}},
			{[]int{2, 4096}, []int{2}},
			{[]int{127}, []int{1}},
			{[]int{301, 509}, []int{301}},
		} {
			op, s := op, s
			Register(Case{
				Name: fmt.Sprintf("reduce_rows/%s/%s", op, dims(s.src...)),
				Op:   backend.OpReduceRows,
				Run: func(e *Env) {
					n := backend.Shape(s.src).NumElements()
					cols := s.src[len(s.src)-1]
					x := e.Uniform(n, -1, 1)
					src := e.Input(x, s.src...)
					o := e.Output(s.dst...)
					e.B.ReduceRows(op, o.T, src)
					ref := make([]float64, n/cols)
					for r := range ref {
						acc := 0.0
						if op == backend.Max {
							acc = math.Inf(-1)
						}
						for _, v := range x[r*cols : (r+1)*cols] {
							switch op {
							case backend.Sum:
								acc += float64(v)
							case backend.SumSquares:
								acc += float64(v) * float64(v)
							case backend.Max:
								acc = math.Max(acc, float64(v))
							}
						}
						ref[r] = acc
					}
					e.Check(o, ref)
				},
			})
		}
	}

	// SumColumns: Σ over rows, one element per column.
	for _, s := range [][]int{{1, 1}, {7, 13}, {127, 3}, {3, 5, 7}, {4096, 2}, {1, 127}, {509, 301}, {16384, 3}} {
		s := s
		Register(Case{
			Name: "sum_columns/" + dims(s...),
			Op:   backend.OpSumColumns,
			Run: func(e *Env) {
				n := backend.Shape(s).NumElements()
				cols := s[len(s)-1]
				x := e.Uniform(n, -1, 1)
				src := e.Input(x, s...)
				o := e.Output(cols)
				e.B.SumColumns(o.T, src)
				ref := make([]float64, cols)
				for i, v := range x {
					ref[i%cols] += float64(v)
				}
				e.Check(o, ref)
			},
		})
	}
}
