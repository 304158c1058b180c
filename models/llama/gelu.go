package llama

import (
	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// The constants of the tanh approximation of GELU, as PyTorch's
// gelu(approximate="tanh") takes them: β = √(2/π) and κ = 0.044715.
const (
	geluBeta  = 0.7978845608028654 // √(2/π)
	geluKappa = 0.044715
)

// geluTanh returns GELU's tanh approximation of x element-wise,
//
//	y = 0.5·x·(1 + tanh(z)),  z = β·(x + κ·x³),
//
// Gemma's hidden_activation "gelu_pytorch_tanh" (the backend's GELU op is
// the exact erf form, a different function). It is one op on the tape made
// of backend element-wise kernels, rather than the eight tape values the
// formula would take op by op, each holding an [N, hidden] activation
// until the backward. Its derivative is
//
//	dy/dx = 0.5·(1 + tanh z) + (0.5β·x + 1.5βκ·x³)·(1 − tanh² z),
//
// which the backward computes without allocating: it recomputes z from x
// and works in the incoming gradient (which a backward may overwrite) and
// in the op's own output. Every op that reads the output is recorded after
// this one, so its backward has run by then; the output's values are
// not to be read after Backward.
func geluTanh(g *graph.Tape, x *graph.Value) *graph.Value {
	b := g.Backend()
	n := x.Len()
	flat := func(t backend.Tensor) backend.Tensor { return t.MustReshape(n) }
	// inner sets z = β·(x + κ·x³), in PyTorch's order of operations.
	inner := func(z, xt backend.Tensor) {
		b.Binary(backend.Mul, z, xt, xt)
		b.Binary(backend.Mul, z, z, xt)
		b.Scale(z, z, geluKappa)
		b.Axpy(z, 1, xt)
		b.Scale(z, z, geluBeta)
	}
	var out backend.Tensor
	return g.Custom("GELUTanh", x.Shape(), []*graph.Value{x},
		func(o backend.Tensor) {
			out = flat(o)
			xt := flat(x.Tensor())
			// out = tanh(z), then 0.5·(x·tanh z + x).
			inner(out, xt)
			b.Unary(backend.Tanh, out, out)
			b.Binary(backend.Mul, out, out, xt)
			b.Axpy(out, 1, xt)
			b.Scale(out, out, 0.5)
		},
		func(dy backend.Tensor, grads *graph.Grads) {
			if !grads.Needs(0) {
				return
			}
			xt, d := flat(x.Tensor()), flat(dy)
			dst, acc := grads.Target(0)
			if dst.IsZero() {
				return // the tape failed to allocate it and says so
			}
			dst = flat(dst)
			// out = 0.5·dy·(1 + tanh z), the first term.
			inner(out, xt)
			b.Unary(backend.Tanh, out, out)
			b.Binary(backend.Mul, out, out, d)
			b.Axpy(out, 1, d)
			b.Scale(out, out, 0.5)
			if acc {
				b.Axpy(dst, 1, out)
			} else {
				b.Copy(dst, out, false)
			}
			// dy·(1 − tanh² z)·(0.5β·x + 1.5βκ·x³), the second.
			inner(out, xt)
			b.UnaryGrad(backend.Tanh, d, out, d)
			b.Binary(backend.Mul, out, xt, xt)
			b.Binary(backend.Mul, out, out, xt)
			b.Scale(out, out, 1.5*geluBeta*geluKappa)
			b.Axpy(out, 0.5*geluBeta, xt)
			b.Binary(backend.Mul, d, d, out)
			b.Axpy(dst, 1, d)
		})
}
