package cpu

import (
	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// Unary computes dst = f(src) element-wise. Exp, Log, Tanh, Sigmoid, SiLU,
// GELU and GELUTanh use package vec's float32 approximations, accurate to
// a few ulps (at most 6 for GELU; 3 for GELUTanh, whose exponent's
// argument is reduced with compensated float32 arithmetic; see vec's
// accuracy tests); the others round once.
func (b *Backend) Unary(op backend.UnaryOp, dst, src backend.Tensor) {
	if b.skip(backend.OpUnary) {
		return
	}
	if _, err := backend.CheckUnary(backend.OpUnary, op, dst, src); err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(backend.OpUnary, dst, src)
	if !ok {
		return
	}
	d, s := v[0], v[1]
	k := b.kernels(8 * len(d))
	f := unaryKernel(k, op)
	b.streamFor(k, len(d), unaryCost(op), func(lo, hi int) { f(d[lo:hi], s[lo:hi]) })
}

// UnaryGrad computes dx = dy ⊙ f'(x); dx may alias dy.
func (b *Backend) UnaryGrad(op backend.UnaryOp, dx, x, dy backend.Tensor) {
	if b.skip(backend.OpUnaryGrad) {
		return
	}
	if _, err := backend.CheckUnary(backend.OpUnaryGrad, op, dx, x, dy); err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(backend.OpUnaryGrad, dx, x, dy)
	if !ok {
		return
	}
	d, xs, g := v[0], v[1], v[2]
	k := b.kernels(12 * len(d))
	f := gradKernel(k, op)
	b.streamFor(k, len(d), unaryCost(op), func(lo, hi int) { f(d[lo:hi], xs[lo:hi], g[lo:hi]) })
}

// unaryCost estimates an op's work per element in simple float
// operations, for deciding when to go parallel: the transcendental ones
// take a few dozen vector instructions per vector of 8 or 16 elements.
func unaryCost(op backend.UnaryOp) int {
	switch op {
	case backend.ReLU, backend.Neg, backend.Square, backend.Sqrt, backend.Rsqrt:
		return 1
	}
	return 4 // exp, log, tanh, erf and friends
}

// unaryKernel returns k's kernel of op, or nil for an unknown op.
func unaryKernel(k *vec.Kernels, op backend.UnaryOp) func(dst, src []float32) {
	switch op {
	case backend.Exp:
		return k.Exp
	case backend.Log:
		return k.Log
	case backend.Sqrt:
		return k.Sqrt
	case backend.Rsqrt:
		return k.Rsqrt
	case backend.Tanh:
		return k.Tanh
	case backend.Sigmoid:
		return k.Sigmoid
	case backend.SiLU:
		return k.SiLU
	case backend.GELU:
		return k.GELU
	case backend.GELUTanh:
		return k.GELUTanh
	case backend.ReLU:
		return k.ReLU
	case backend.Neg:
		return k.Neg
	case backend.Square:
		return k.Square
	}
	return nil
}

// gradKernel returns k's kernel dx = dy·f′(x) of op, or nil for an unknown
// op.
func gradKernel(k *vec.Kernels, op backend.UnaryOp) func(dx, x, dy []float32) {
	switch op {
	case backend.Exp:
		return k.ExpGrad
	case backend.Log:
		return k.LogGrad
	case backend.Sqrt:
		return k.SqrtGrad
	case backend.Rsqrt:
		return k.RsqrtGrad
	case backend.Tanh:
		return k.TanhGrad
	case backend.Sigmoid:
		return k.SigmoidGrad
	case backend.SiLU:
		return k.SiLUGrad
	case backend.GELU:
		return k.GELUGrad
	case backend.GELUTanh:
		return k.GELUTanhGrad
	case backend.ReLU:
		return k.ReLUGrad
	case backend.Neg:
		return k.NegGrad
	case backend.Square:
		return k.SquareGrad
	}
	return nil
}
