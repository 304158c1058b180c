package conformance

import (
	"fmt"
	"math"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/refops"
)

func binaryRef(op backend.BinaryOp, a, b float64) float64 {
	switch op {
	case backend.Add:
		return a + b
	case backend.Sub:
		return a - b
	case backend.Mul:
		return a * b
	case backend.Div:
		return a / b
	}
	panic("conformance: no reference for binary op " + op.String())
}

func init() {
	// Binary: same shape, row broadcast ([cols]), column broadcast
	// ([rows, 1]), one element for all ([n, 1] by [1]), and in place (dst
	// aliases a).
	type bin struct {
		kind    string
		a, b    []int
		inPlace bool
	}
	shapes := []bin{
		{"same", []int{1}, []int{1}, false},
		{"same", []int{127}, []int{127}, false},
		{"same", []int{7, 13}, []int{7, 13}, false},
		{"row", []int{7, 13}, []int{13}, false},
		{"row", []int{3, 4, 127}, []int{127}, false},
		{"row", []int{5, 1}, []int{1}, false},
		{"column", []int{7, 13}, []int{7, 1}, false},
		{"column", []int{3, 4, 127}, []int{12, 1}, false},
		{"row", []int{300, 301}, []int{301}, false},
		{"column", []int{300, 301}, []int{300, 1}, false},
		{"inplace", []int{13, 7}, []int{13, 7}, true},
		{"inplace_row", []int{3, 127}, []int{127}, true},
		// One element for all, as package graph broadcasts a scalar: a
		// [n, 1] view against [1], long enough to be split over threads.
		{"scalar", []int{70001, 1}, []int{1}, false},
		{"inplace_scalar", []int{70001, 1}, []int{1}, true},
	}
	for _, op := range backend.BinaryOps {
		for _, s := range shapes {
			op, s := op, s
			Register(Case{
				Name: fmt.Sprintf("binary/%s/%s/%s_by_%s", op, s.kind, dims(s.a...), dims(s.b...)),
				Op:   backend.OpBinary,
				Run: func(e *Env) {
					na, nb := backend.Shape(s.a).NumElements(), backend.Shape(s.b).NumElements()
					av := e.Uniform(na, -1, 1)
					bv := e.Uniform(nb, -1, 1)
					if op == backend.Div {
						bv = e.AwayFromZero(nb, 0.25, 2)
					}
					b := e.Input(bv, s.b...)
					a, o := e.inOut(av, s.inPlace, s.a...)
					e.B.Binary(op, o.T, a, b)
					cols := s.a[len(s.a)-1]
					ref := make([]float64, na)
					for i := range ref {
						var bi int
						switch {
						case na == nb:
							bi = i
						case len(s.b) == 1:
							bi = i % cols
						default:
							bi = i / cols
						}
						ref[i] = binaryRef(op, float64(av[i]), float64(bv[bi]))
					}
					e.Check(o, ref)
				},
			})
		}
	}

	// Both operands the same tensor: x⊙x, x−x.
	for _, op := range []backend.BinaryOp{backend.Mul, backend.Sub} {
		op := op
		Register(Case{
			Name: fmt.Sprintf("binary/%s/same_operand/13x7", op),
			Op:   backend.OpBinary,
			Run: func(e *Env) {
				xv := e.Uniform(13*7, -1, 1)
				x := e.Input(xv, 13, 7)
				o := e.Output(13, 7)
				e.B.Binary(op, o.T, x, x)
				ref := make([]float64, len(xv))
				for i, v := range xv {
					ref[i] = binaryRef(op, float64(v), float64(v))
				}
				e.Check(o, ref)
			},
		})
	}

	// Scale.
	for _, sc := range []struct {
		shape   []int
		alpha   float32
		inPlace bool
	}{
		{[]int{1}, 0.37, false}, {[]int{127}, -3, false}, {[]int{13, 7}, 0.37, false},
		{[]int{3, 5, 64}, 1.5, false}, {[]int{7, 13}, 0, false}, {[]int{7, 13}, -0.75, true},
		{[]int{300, 301}, 0.5, false},
	} {
		sc := sc
		name := fmt.Sprintf("scale/%s/alpha=%g", dims(sc.shape...), sc.alpha)
		if sc.inPlace {
			name += "/inplace"
		}
		Register(Case{
			Name: name,
			Op:   backend.OpScale,
			Run: func(e *Env) {
				n := backend.Shape(sc.shape).NumElements()
				x := e.Uniform(n, -1, 1)
				src, o := e.inOut(x, sc.inPlace, sc.shape...)
				e.B.Scale(o.T, src, sc.alpha)
				ref := make([]float64, n)
				for i, v := range x {
					ref[i] = float64(sc.alpha) * float64(v)
				}
				e.Check(o, ref)
			},
		})
	}

	// Axpy accumulates into y; x may have another shape of the same length.
	for _, ax := range []struct {
		y, x  []int
		alpha float32
	}{
		{[]int{1}, []int{1}, 0.5}, {[]int{127}, []int{127}, -1.25}, {[]int{13, 7}, []int{13, 7}, 0.5},
		{[]int{4096}, []int{4096}, 2}, {[]int{7, 13}, []int{91}, -0.3}, {[]int{7, 13}, []int{7, 13}, 0},
		{[]int{300, 301}, []int{300, 301}, -0.7},
	} {
		ax := ax
		Register(Case{
			Name: fmt.Sprintf("axpy/%s_plus_%s/alpha=%g", dims(ax.y...), dims(ax.x...), ax.alpha),
			Op:   backend.OpAxpy,
			Run: func(e *Env) {
				n := backend.Shape(ax.y).NumElements()
				xv := e.Uniform(n, -1, 1)
				y0 := e.Uniform(n, -1, 1)
				x := e.Input(xv, ax.x...)
				o := e.OutputInit(y0, ax.y...)
				e.B.Axpy(o.T, ax.alpha, x)
				ref := make([]float64, n)
				for i := range ref {
					ref[i] = float64(y0[i]) + float64(ax.alpha)*float64(xv[i])
				}
				e.Check(o, ref)
			},
		})
	}

	registerUnaryCases()
}

// unaryDomain draws n inputs for op: [-1, 1] unless the op needs positive
// inputs; wide draws cover the tails (log-uniform over [1e-6, 1e6] for the
// positive ops, [-10, 10] or [-20, 20] for the rest).
func unaryDomain(e *Env, op backend.UnaryOp, n int, wide bool) []float32 {
	switch op {
	case backend.Log, backend.Sqrt, backend.Rsqrt:
		if wide {
			x := e.Uniform(n, math.Log(1e-6), math.Log(1e6))
			for i := range x {
				x[i] = float32(math.Exp(float64(x[i])))
			}
			return x
		}
		return e.Uniform(n, 0.05, 2)
	case backend.Exp:
		if wide {
			return e.Uniform(n, -20, 20)
		}
	default:
		if wide {
			return e.Uniform(n, -10, 10)
		}
	}
	return e.Uniform(n, -1, 1)
}

func registerUnaryCases() {
	type un struct {
		shape         []int
		inPlace, wide bool
	}
	variants := []un{
		{[]int{1}, false, false},
		{[]int{7, 13}, false, false},
		{[]int{3, 5, 127}, false, false},
		{[]int{300, 301}, false, false},
		{[]int{13, 7}, true, false},
		{[]int{1000}, false, true},
	}
	suffix := func(v un) string {
		s := dims(v.shape...)
		if v.inPlace {
			s += "/inplace"
		}
		if v.wide {
			s += "/wide"
		}
		return s
	}
	for _, op := range backend.UnaryOps {
		for _, v := range variants {
			op, v := op, v
			if v.wide && (op == backend.ReLU || op == backend.Neg) {
				continue // nothing to learn from their tails
			}
			Register(Case{
				Name: fmt.Sprintf("unary/%s/%s", op, suffix(v)),
				Op:   backend.OpUnary,
				Run: func(e *Env) {
					n := backend.Shape(v.shape).NumElements()
					x := unaryDomain(e, op, n, v.wide)
					src, o := e.inOut(x, v.inPlace, v.shape...)
					e.B.Unary(op, o.T, src)
					ref := make([]float64, n)
					for i, xv := range x {
						ref[i] = refops.Unary(op, float64(xv))
					}
					e.Check(o, ref)
				},
			})
		}
	}
	// UnaryGrad: dx = dy ⊙ f'(x); in place means dx aliases dy.
	for _, op := range backend.UnaryOps {
		for _, v := range variants {
			op, v := op, v
			if v.wide && (op == backend.ReLU || op == backend.Neg || op == backend.Square) {
				continue
			}
			Register(Case{
				Name: fmt.Sprintf("unary_grad/%s/%s", op, suffix(v)),
				Op:   backend.OpUnaryGrad,
				Run: func(e *Env) {
					n := backend.Shape(v.shape).NumElements()
					x := unaryDomain(e, op, n, v.wide)
					dyv := e.Uniform(n, -1, 1)
					xt := e.Input(x, v.shape...)
					dy, o := e.inOut(dyv, v.inPlace, v.shape...)
					e.B.UnaryGrad(op, o.T, xt, dy)
					ref := make([]float64, n)
					for i, xv := range x {
						ref[i] = float64(dyv[i]) * refops.UnaryDeriv(op, float64(xv))
					}
					e.Check(o, ref)
				},
			})
		}
	}
}
