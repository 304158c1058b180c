package gradcheck

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/refops"
)

func in(name string, shape ...int) Input { return Input{Name: name, Shape: shape} }

func inRange(name string, lo, hi float64, shape ...int) Input {
	return Input{Name: name, Shape: shape, Lo: lo, Hi: hi}
}

// unaryCase checks a one-input op against a float64 function of it.
func unaryCase(name string, x Input, f func(g *graph.Tape, x *graph.Value) *graph.Value, ref func(x []float64) []float64) Case {
	return Case{
		Name:      name,
		Inputs:    []Input{x},
		Forward:   func(g *graph.Tape, v []*graph.Value) *graph.Value { return f(g, v[0]) },
		Reference: func(x [][]float64) []float64 { return ref(x[0]) },
	}
}

// OpCases returns a reference check for every op of package graph: each
// op's backward against the derivative of a float64 reference of its
// forward, on small shapes with every broadcast, batch and layout variant.
func OpCases() []Case {
	var cs []Case
	add := func(c Case) {
		op, ok := focus[strings.Split(c.Name, "/")[0]]
		if !ok {
			panic("gradcheck: no focus op for case " + c.Name)
		}
		c.Name, c.Op = "grad/op/"+c.Name, op
		cs = append(cs, c)
	}

	// Binary ops with each broadcast of b against a of shape [2, 3, 5].
	bcs := []struct {
		kind  string
		shape []int
	}{{"same", []int{2, 3, 5}}, {"scalar", []int{1}}, {"row", []int{5}}, {"col", []int{2, 3, 1}}}
	for _, op := range backend.BinaryOps {
		for _, bc := range bcs {
			b := in("b", bc.shape...)
			if op == backend.Div {
				b = inRange("b", 0.5, 1.5, bc.shape...)
			}
			op, kind := op, bc.kind
			add(Case{
				Name:   fmt.Sprintf("%s/%s", op, kind),
				Inputs: []Input{in("a", 2, 3, 5), b},
				Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value {
					switch op {
					case backend.Add:
						return g.Add(v[0], v[1])
					case backend.Sub:
						return g.Sub(v[0], v[1])
					case backend.Mul:
						return g.Mul(v[0], v[1])
					}
					return g.Div(v[0], v[1])
				},
				Reference: func(x [][]float64) []float64 { return refBinary(op, x[0], 5, x[1], kind) },
			})
		}
	}

	add(unaryCase("scale", in("x", 4, 3),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.Scale(x, -0.7) },
		func(x []float64) []float64 { return mapf(x, func(v float64) float64 { return -0.7 * v }) }))
	add(unaryCase("add_scalar", in("x", 4, 3),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.AddScalar(x, 0.25) },
		func(x []float64) []float64 { return mapf(x, func(v float64) float64 { return v + 0.25 }) }))
	add(unaryCase("reciprocal", inRange("x", 0.5, 2, 2, 5),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.Reciprocal(x) },
		func(x []float64) []float64 { return mapf(x, func(v float64) float64 { return 1 / v }) }))
	add(unaryCase("min_scalar", in("x", 3, 4),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.MinScalar(x, 0.3) },
		func(x []float64) []float64 { return mapf(x, func(v float64) float64 { return math.Min(v, 0.3) }) }))
	add(unaryCase("max_scalar", in("x", 3, 4),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.MaxScalar(x, -0.2) },
		func(x []float64) []float64 { return mapf(x, func(v float64) float64 { return math.Max(v, -0.2) }) }))
	for _, op := range backend.UnaryOps {
		x := in("x", 3, 5)
		switch op {
		case backend.Log, backend.Sqrt, backend.Rsqrt:
			x = inRange("x", 0.5, 2, 3, 5)
		case backend.Exp, backend.Tanh, backend.SiLU, backend.GELU, backend.Sigmoid:
			x = inRange("x", -2, 2, 3, 5)
		case backend.GELUTanh:
			// Past the bend near −0.75 and into both tails, where the
			// cubic term matters.
			x = inRange("x", -4, 4, 3, 5)
		}
		add(unaryCase(op.String(), x,
			func(g *graph.Tape, x *graph.Value) *graph.Value { return g.Unary(op, x) },
			func(x []float64) []float64 { return mapf(x, func(v float64) float64 { return refops.Unary(op, v) }) }))
	}
	add(Case{
		Name:    "scale_rows",
		Inputs:  []Input{in("x", 2, 3, 4), in("d", 6)},
		Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value { return g.ScaleRows(v[0], v[1]) },
		Reference: func(x [][]float64) []float64 {
			return refBinary(backend.Mul, x[0], 4, x[1], "col")
		},
	})
	add(Case{
		Name:      "scale_columns",
		Inputs:    []Input{in("x", 3, 4), in("d", 4)},
		Forward:   func(g *graph.Tape, v []*graph.Value) *graph.Value { return g.ScaleColumns(v[0], v[1]) },
		Reference: func(x [][]float64) []float64 { return refBinary(backend.Mul, x[0], 4, x[1], "row") },
	})

	// Reductions.
	rowsOf := func(f func([]float64) float64) func([]float64) []float64 {
		return func(x []float64) []float64 {
			return refRows(x, 4, func(r []float64) []float64 { return []float64{f(r)} })
		}
	}
	add(unaryCase("sum_rows", in("x", 2, 3, 4), (*graph.Tape).SumRows, rowsOf(sum)))
	add(unaryCase("mean_rows", in("x", 2, 3, 4), (*graph.Tape).MeanRows,
		rowsOf(func(r []float64) float64 { return sum(r) / 4 })))
	add(unaryCase("sumsq_rows", in("x", 2, 3, 4), (*graph.Tape).SumSqRows, rowsOf(sumsq)))
	add(unaryCase("sum_columns", in("x", 3, 4), (*graph.Tape).SumColumns, func(x []float64) []float64 {
		out := make([]float64, 4)
		for i, v := range x {
			out[i%4] += v
		}
		return out
	}))
	whole := func(f func([]float64) float64) func([]float64) []float64 {
		return func(x []float64) []float64 { return []float64{f(x)} }
	}
	add(unaryCase("sum", in("x", 3, 4), (*graph.Tape).Sum, whole(sum)))
	add(unaryCase("mean", in("x", 3, 4), (*graph.Tape).Mean, whole(func(x []float64) float64 { return sum(x) / 12 })))
	add(unaryCase("sumsq", in("x", 3, 4), (*graph.Tape).SumSq, whole(sumsq)))
	add(unaryCase("norm", in("x", 3, 4), (*graph.Tape).Norm, whole(func(x []float64) float64 { return math.Sqrt(sumsq(x)) })))

	// Matrix products: plain, transposed, batched, shared operands.
	mm := []struct {
		name   string
		a, b   []int
		ta, tb bool
	}{
		{"matmul/2d", []int{3, 4}, []int{4, 5}, false, false},
		{"matmul_nt/2d", []int{3, 4}, []int{5, 4}, false, true},
		{"matmul_tn/2d", []int{4, 3}, []int{4, 5}, true, false},
		{"matmul/batched", []int{2, 3, 4}, []int{2, 4, 5}, false, false},
		{"matmul/shared_b", []int{2, 3, 4}, []int{4, 5}, false, false},
		{"matmul_tn/shared_b", []int{2, 4, 3}, []int{4, 5}, true, false},
		{"matmul/shared_a", []int{3, 4}, []int{2, 4, 5}, false, false},
		{"matmul_nt/shared_a", []int{3, 4}, []int{2, 5, 4}, false, true},
		{"matmul_tn/batched", []int{2, 4, 3}, []int{2, 4, 5}, true, false},
		{"matmul_nt/rank4", []int{2, 2, 3, 4}, []int{2, 2, 5, 4}, false, true},
	}
	for _, c := range mm {
		add(Case{
			Name:   c.name,
			Inputs: []Input{in("a", c.a...), in("b", c.b...)},
			Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value {
				switch {
				case c.ta:
					return g.MatMulTN(v[0], v[1])
				case c.tb:
					return g.MatMulNT(v[0], v[1])
				}
				return g.MatMul(v[0], v[1])
			},
			Reference: func(x [][]float64) []float64 {
				na, ar, ac := batchOf(c.a)
				nb, br, bc := batchOf(c.b)
				return refMatMul(x[0], na, ar, ac, c.ta, x[1], nb, br, bc, c.tb)
			},
		})
	}
	add(Case{
		Name:    "linear",
		Inputs:  []Input{in("x", 2, 3, 4), in("w", 5, 4), in("bias", 5)},
		Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value { return g.Linear(v[0], v[1], v[2]) },
		Reference: func(x [][]float64) []float64 {
			y := refMatMul(x[0], 1, 6, 4, false, x[1], 1, 5, 4, true)
			return refBinary(backend.Add, y, 5, x[2], "row")
		},
	})

	// Shapes.
	add(unaryCase("reshape", in("x", 2, 6),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.Square(g.Reshape(x, 3, -1)) },
		func(x []float64) []float64 { return mapf(x, func(v float64) float64 { return v * v }) }))
	add(unaryCase("permute", in("x", 2, 3, 4),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.Permute(x, 2, 0, 1) },
		func(x []float64) []float64 { return refPermute(x, []int{2, 3, 4}, []int{2, 0, 1}) }))
	add(unaryCase("transpose", in("x", 2, 3, 2, 4),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.Transpose(x, 1, 2) },
		func(x []float64) []float64 { return refPermute(x, []int{2, 3, 2, 4}, []int{0, 2, 1, 3}) }))
	add(unaryCase("slice/axis0", in("x", 5, 3),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.Slice(x, 0, 1, 4) },
		func(x []float64) []float64 { return refSlice(x, []int{5, 3}, 0, 1, 4) }))
	add(unaryCase("slice/axis1", in("x", 2, 5, 3),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.Slice(x, 1, 1, 4) },
		func(x []float64) []float64 { return refSlice(x, []int{2, 5, 3}, 1, 1, 4) }))
	add(unaryCase("slice/last", in("x", 2, 5, 6),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.Slice(x, -1, 2, 5) },
		func(x []float64) []float64 { return refSlice(x, []int{2, 5, 6}, 2, 2, 5) }))
	add(Case{
		Name:    "concat/axis1",
		Inputs:  []Input{in("a", 2, 2, 3), in("b", 2, 1, 3), in("c", 2, 3, 3)},
		Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value { return g.Concat(1, v...) },
		Reference: func(x [][]float64) []float64 {
			var out []float64
			for p := range 2 {
				out = append(out, x[0][p*6:(p+1)*6]...)
				out = append(out, x[1][p*3:(p+1)*3]...)
				out = append(out, x[2][p*9:(p+1)*9]...)
			}
			return out
		},
	})
	add(Case{
		Name:      "concat/axis0",
		Inputs:    []Input{in("a", 2, 3), in("b", 1, 3)},
		Forward:   func(g *graph.Tape, v []*graph.Value) *graph.Value { return g.Concat(0, v[0], v[1]) },
		Reference: func(x [][]float64) []float64 { return append(append([]float64(nil), x[0]...), x[1]...) },
	})
	add(unaryCase("repeat_interleave", in("x", 2, 3, 2, 4),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.RepeatInterleave(x, 2, 3) },
		func(x []float64) []float64 { return refRepeat(x, []int{2, 3, 2, 4}, 2, 3) }))

	// Attention and normalisation kernels.
	sm := []struct {
		name  string
		shape []int
		p     backend.SoftmaxParams
	}{
		{"softmax/plain", []int{3, 5}, backend.SoftmaxParams{}},
		{"softmax/scaled", []int{3, 5}, backend.SoftmaxParams{Scale: 0.5}},
		{"softmax/causal", []int{2, 4, 4}, backend.SoftmaxParams{Causal: true, Scale: 1.5}},
		{"softmax/causal_offset", []int{2, 3, 5}, backend.SoftmaxParams{Causal: true, QueryOffset: 2}},
		{"softmax/causal_rank4", []int{2, 2, 3, 3}, backend.SoftmaxParams{Causal: true}},
		{"softmax/window", []int{2, 5, 5}, backend.SoftmaxParams{Causal: true, Window: 2, Scale: 0.7}},
		{"softmax/window_offset", []int{2, 3, 6}, backend.SoftmaxParams{Causal: true, QueryOffset: 3, Window: 4}},
	}
	for _, c := range sm {
		add(unaryCase(c.name, inRange("x", -2, 2, c.shape...),
			func(g *graph.Tape, x *graph.Value) *graph.Value { return g.Softmax(x, c.p) },
			func(x []float64) []float64 {
				rows, keys := backend.Shape(c.shape).Rows()
				queries := rows
				if len(c.shape) >= 3 {
					queries = c.shape[len(c.shape)-2]
				}
				return refops.SoftmaxMasked(x, queries, keys, c.p)
			}))
	}
	add(Case{
		Name:      "rmsnorm",
		Inputs:    []Input{in("x", 3, 8), inRange("w", 0.5, 1.5, 8)},
		Forward:   func(g *graph.Tape, v []*graph.Value) *graph.Value { return g.RMSNorm(v[0], v[1], 1e-5) },
		Reference: func(x [][]float64) []float64 { return refops.RMSNorm(x[0], x[1], 1e-5) },
	})
	add(Case{
		Name:      "layernorm",
		Inputs:    []Input{in("x", 2, 2, 6), inRange("gamma", 0.5, 1.5, 6), in("beta", 6)},
		Forward:   func(g *graph.Tape, v []*graph.Value) *graph.Value { return g.LayerNorm(v[0], v[1], v[2], 1e-5) },
		Reference: func(x [][]float64) []float64 { return refops.LayerNorm(x[0], x[1], x[2], 1e-5) },
	})
	add(Case{
		Name:      "layernorm/no_beta",
		Inputs:    []Input{in("x", 3, 5), inRange("gamma", 0.5, 1.5, 5)},
		Forward:   func(g *graph.Tape, v []*graph.Value) *graph.Value { return g.LayerNorm(v[0], v[1], nil, 1e-5) },
		Reference: func(x [][]float64) []float64 { return refops.LayerNorm(x[0], x[1], nil, 1e-5) },
	})
	for _, layout := range []backend.RoPELayout{backend.Interleaved, backend.HalfSplit} {
		for _, off := range []int{0, 3} {
			p := backend.RoPEParams{Layout: layout, Theta: 100, Offset: off}
			add(unaryCase(fmt.Sprintf("rope/%s/offset%d", layout, off), in("x", 2, 3, 2, 6),
				func(g *graph.Tape, x *graph.Value) *graph.Value { return g.RoPE(x, p) },
				func(x []float64) []float64 { return refops.RoPE(x, 2, 3, 2, 6, p) }))
		}
	}
	ids := []int32{4, 0, 4, 2}
	add(unaryCase("gather", in("table", 5, 3),
		func(g *graph.Tape, t *graph.Value) *graph.Value { return g.Gather(t, ids) },
		func(t []float64) []float64 {
			var out []float64
			for _, id := range ids {
				out = append(out, t[int(id)*3:int(id)*3+3]...)
			}
			return out
		}))
	add(unaryCase("dropout", in("x", 4, 6),
		func(g *graph.Tape, x *graph.Value) *graph.Value {
			return g.Dropout(x, 0.3, rand.New(rand.NewPCG(7, 8)))
		},
		func(x []float64) []float64 {
			// The same seed Dropout draws from the same generator.
			mask := make([]float32, len(x))
			graph.DropoutMask(mask, 0.3, rand.New(rand.NewPCG(7, 8)).Uint64())
			out := make([]float64, len(x))
			for i, v := range x {
				if mask[i] != 0 {
					out[i] = v / 0.7
				}
			}
			return out
		}))

	// Losses.
	targets := []int32{1, graph.IgnoreIndex, 5, 0}
	ce := []struct {
		name string
		opts graph.CrossEntropyOptions
		div  float64
	}{
		{"cross_entropy/mean", graph.CrossEntropyOptions{}, 3},
		{"cross_entropy/smoothing", graph.CrossEntropyOptions{Smoothing: 0.1}, 3},
		{"cross_entropy/divisor", graph.CrossEntropyOptions{Divisor: 10}, 10},
	}
	for _, c := range ce {
		add(unaryCase(c.name, inRange("logits", -3, 3, 4, 6),
			func(g *graph.Tape, x *graph.Value) *graph.Value { return g.CrossEntropy(x, targets, c.opts) },
			func(x []float64) []float64 {
				return []float64{sum(refops.CrossEntropy(x, 6, targets, graph.IgnoreIndex, float64(c.opts.Smoothing))) / c.div}
			}))
	}
	add(unaryCase("cross_entropy/scaled", inRange("logits", -3, 3, 2, 2, 6),
		func(g *graph.Tape, x *graph.Value) *graph.Value {
			// Not the loss itself: the upstream gradient is a device value.
			return g.Scale(g.CrossEntropy(x, targets, graph.CrossEntropyOptions{}), 2.5)
		},
		func(x []float64) []float64 {
			return []float64{2.5 * sum(refops.CrossEntropy(x, 6, targets, graph.IgnoreIndex, 0)) / 3}
		}))
	add(unaryCase("cross_entropy_rows", inRange("logits", -3, 3, 2, 2, 6),
		func(g *graph.Tape, x *graph.Value) *graph.Value { return g.CrossEntropyRows(x, targets) },
		func(x []float64) []float64 { return refops.CrossEntropy(x, 6, targets, graph.IgnoreIndex, 0) }))
	add(Case{
		Name:    "mse",
		Inputs:  []Input{in("pred", 3, 4), in("target", 3, 4)},
		Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value { return g.MSE(v[0], v[1]) },
		Reference: func(x [][]float64) []float64 {
			d := refBinary(backend.Sub, x[0], 4, x[1], "same")
			return []float64{sumsq(d) / 12}
		},
	})

	// SORA's rotation scale s_p = min(1, 1/(‖C‖ + ‖D‖ + 1e-6)), unclamped
	// and clamped.
	for _, c := range []struct {
		name string
		r    float64
	}{{"sora_scale/unclamped", 1}, {"sora_scale/clamped", 0.05}} {
		add(Case{
			Name:    c.name,
			Inputs:  []Input{inRange("C", -c.r, c.r, 6, 2), inRange("D", -c.r, c.r, 6, 2)},
			Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value { return soraScale(g, v[0], v[1]) },
			Reference: func(x [][]float64) []float64 {
				return []float64{math.Min(1, 1/(math.Sqrt(sumsq(x[0]))+math.Sqrt(sumsq(x[1]))+1e-6))}
			},
		})
	}
	return cs
}

// focus maps the first part of an op case's name to the backend op whose
// failure it most likely points at.
var focus = map[string]backend.Op{
	"add": backend.OpBinary, "sub": backend.OpBinary, "mul": backend.OpBinary, "div": backend.OpBinary,
	"scale_rows": backend.OpBinary, "scale_columns": backend.OpBinary, "add_scalar": backend.OpBinary,
	"reciprocal": backend.OpBinary, "dropout": backend.OpBinary,
	"scale":      backend.OpScale,
	"min_scalar": backend.OpUnaryGrad, "max_scalar": backend.OpUnaryGrad, "reshape": backend.OpUnaryGrad,
	"sora_scale": backend.OpUnaryGrad,
	"sum_rows":   backend.OpReduceRows, "mean_rows": backend.OpReduceRows, "sumsq_rows": backend.OpReduceRows,
	"sum": backend.OpReduceRows, "mean": backend.OpReduceRows, "sumsq": backend.OpReduceRows,
	"norm": backend.OpReduceRows, "mse": backend.OpReduceRows,
	"sum_columns": backend.OpSumColumns,
	"matmul":      backend.OpMatMul, "matmul_nt": backend.OpMatMul, "matmul_tn": backend.OpMatMul, "linear": backend.OpMatMul,
	"permute": backend.OpCopy, "transpose": backend.OpCopy, "slice": backend.OpCopy, "concat": backend.OpCopy,
	"repeat_interleave": backend.OpCopy,
	"softmax":           backend.OpSoftmaxGrad,
	"rmsnorm":           backend.OpRMSNormGrad,
	"layernorm":         backend.OpLayerNormGrad,
	"rope":              backend.OpRoPE,
	"gather":            backend.OpScatterAdd,
	"cross_entropy":     backend.OpCrossEntropyGrad, "cross_entropy_rows": backend.OpCrossEntropyGrad,
}

func init() {
	for _, op := range backend.UnaryOps {
		focus[op.String()] = backend.OpUnaryGrad
	}
}

// soraScale returns s_p = min(1, 1/(‖C‖_F + ‖D‖_F + 1e-6)), differentiated
// through, as SORA's rotation uses it.
func soraScale(g *graph.Tape, c, d *graph.Value) *graph.Value {
	return g.MinScalar(g.Reciprocal(g.AddScalar(g.Add(g.Norm(c), g.Norm(d)), 1e-6)), 1)
}

// batchOf splits a shape into its number of matrices and matrix extents.
func batchOf(s []int) (n, r, c int) {
	return backend.Shape(s[:len(s)-2]).NumElements(), s[len(s)-2], s[len(s)-1]
}
