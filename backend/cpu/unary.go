package cpu

import (
	"math"

	"github.com/sora-go/sora/backend"
)

// Unary computes dst = f(src) element-wise. Transcendental functions are
// evaluated in float64 and rounded once, so results are correctly rounded
// or within an ulp of it.
func (b *Backend) Unary(op backend.UnaryOp, dst, src backend.Tensor) {
	if b.skip(backend.OpUnary) {
		return
	}
	if _, err := backend.CheckElementwise(backend.OpUnary, dst, src); err != nil {
		b.Record(err)
		return
	}
	f := unaryKernel(op)
	if f == nil {
		b.Record(backend.Errorf(backend.OpUnary, []backend.Tensor{dst, src}, "unknown unary op %v", op))
		return
	}
	v, ok := b.views(backend.OpUnary, dst, src)
	if !ok {
		return
	}
	d, s := v[0], v[1]
	b.parallelFor(len(d), unaryCost(op), func(lo, hi int) { f(d[lo:hi], s[lo:hi]) })
}

// UnaryGrad computes dx = dy ⊙ f'(x); dx may alias dy.
func (b *Backend) UnaryGrad(op backend.UnaryOp, dx, x, dy backend.Tensor) {
	if b.skip(backend.OpUnaryGrad) {
		return
	}
	if _, err := backend.CheckElementwise(backend.OpUnaryGrad, dx, x, dy); err != nil {
		b.Record(err)
		return
	}
	df := derivative(op)
	if df == nil {
		b.Record(backend.Errorf(backend.OpUnaryGrad, []backend.Tensor{dx, x, dy}, "unknown unary op %v", op))
		return
	}
	v, ok := b.views(backend.OpUnaryGrad, dx, x, dy)
	if !ok {
		return
	}
	d, xs, g := v[0], v[1], v[2]
	b.parallelFor(len(d), unaryCost(op), func(lo, hi int) {
		dr, xr, gr := d[lo:hi], xs[lo:hi], g[lo:hi]
		for i, xv := range xr {
			dr[i] = float32(float64(gr[i]) * df(float64(xv)))
		}
	})
}

// unaryCost estimates an op's work per element in simple float
// operations, for deciding when to go parallel.
func unaryCost(op backend.UnaryOp) int {
	switch op {
	case backend.ReLU, backend.Neg, backend.Square:
		return 1
	case backend.Sqrt, backend.Rsqrt:
		return 4
	}
	return 20 // exp, log, tanh, erf and friends
}

// unaryKernel returns the row kernel of op, or nil for an unknown op.
func unaryKernel(op backend.UnaryOp) func(dst, src []float32) {
	switch op {
	case backend.ReLU:
		return func(dst, src []float32) {
			src = src[:len(dst)]
			for i, x := range src {
				if x <= 0 { // NaN is not <= 0 and passes through, as in PyTorch
					x = 0
				}
				dst[i] = x
			}
		}
	case backend.Neg:
		return func(dst, src []float32) {
			src = src[:len(dst)]
			for i, x := range src {
				dst[i] = -x
			}
		}
	case backend.Square:
		return func(dst, src []float32) {
			src = src[:len(dst)]
			for i, x := range src {
				dst[i] = x * x
			}
		}
	}
	f := function(op)
	if f == nil {
		return nil
	}
	return func(dst, src []float32) {
		src = src[:len(dst)]
		for i, x := range src {
			dst[i] = float32(f(float64(x)))
		}
	}
}

// function returns f of a transcendental unary op in float64.
func function(op backend.UnaryOp) func(float64) float64 {
	switch op {
	case backend.Exp:
		return math.Exp
	case backend.Log:
		return math.Log
	case backend.Sqrt:
		return math.Sqrt
	case backend.Rsqrt:
		return func(x float64) float64 { return 1 / math.Sqrt(x) }
	case backend.Tanh:
		return math.Tanh
	case backend.SiLU:
		return func(x float64) float64 { return x * sigmoid(x) }
	case backend.GELU:
		return func(x float64) float64 { return x * gaussCDF(x) }
	case backend.Sigmoid:
		return sigmoid
	}
	return nil // ReLU, Neg and Square have float32 kernels of their own
}

// derivative returns f' of a unary op in float64.
func derivative(op backend.UnaryOp) func(float64) float64 {
	switch op {
	case backend.Exp:
		return math.Exp
	case backend.Log:
		return func(x float64) float64 { return 1 / x }
	case backend.Sqrt:
		return func(x float64) float64 { return 0.5 / math.Sqrt(x) }
	case backend.Rsqrt:
		return func(x float64) float64 { return -0.5 / (x * math.Sqrt(x)) }
	case backend.Tanh:
		return func(x float64) float64 {
			t := math.Tanh(x)
			return 1 - t*t
		}
	case backend.SiLU:
		return func(x float64) float64 {
			s := sigmoid(x)
			return s * (1 + x*(1-s))
		}
	case backend.GELU:
		return func(x float64) float64 { return gaussCDF(x) + x*gaussPDF(x) }
	case backend.ReLU:
		return func(x float64) float64 {
			if x > 0 {
				return 1
			}
			return 0
		}
	case backend.Neg:
		return func(float64) float64 { return -1 }
	case backend.Square:
		return func(x float64) float64 { return 2 * x }
	case backend.Sigmoid:
		return func(x float64) float64 {
			s := sigmoid(x)
			return s * (1 - s)
		}
	}
	return nil
}

// sigmoid is 1/(1+e^−x), evaluated so that neither branch overflows: for
// large negative x, e^−x would be +Inf.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// gaussCDF is Φ(x), via erfc so that the left tail keeps its relative
// precision instead of cancelling in 1 + erf(x/√2).
func gaussCDF(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

// gaussPDF is the standard normal density φ(x).
func gaussPDF(x float64) float64 { return math.Exp(-0.5*x*x) / math.Sqrt(2*math.Pi) }
