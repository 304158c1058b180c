package graph

import (
	"github.com/sora-go/sora/backend"
)

// Custom records an op that the caller implements with backend calls: a
// fused kernel (a DoRA or SORA epilogue, say) with a backward of its own.
// It allocates the result, of the given shape and owned by the tape, and
// runs forward(out) right away; forward reads the inputs through
// ins[i].Tensor() and must write every element of out. When the result
// requires a gradient, backward runs during Backward with the result's
// gradient dy and must hand each input that needs one its gradient through
// grads. dy belongs to the tape; backward may overwrite it. Temporaries are
// the caller's to allocate and free on the backend.
//
// An input may be a weight stored in bfloat16 ([Value.DType]), which the
// op must hand to the backend only as MatMul's B operand.
//
// Check a custom op with package graph/gradcheck against a float64
// reference of its forward.
func (g *Tape) Custom(name string, shape backend.Shape, ins []*Value, forward func(out backend.Tensor), backward func(dy backend.Tensor, grads *Grads)) *Value {
	if !g.checkStored(name, ins...) {
		return g.placeholder(shape)
	}
	out := g.output(shape, ins...)
	if g.err != nil {
		return out
	}
	forward(out.data)
	if g.recording(out) {
		ins := append([]*Value(nil), ins...)
		g.record(out, func(dy backend.Tensor) {
			backward(dy, &Grads{g: g, ins: ins})
			g.release(dy)
		})
	}
	return out
}

// Grads is how a custom op's backward hands gradients to its inputs.
type Grads struct {
	g   *Tape
	ins []*Value
}

// Needs reports whether input i requires a gradient; backward may skip the
// work for inputs that do not.
func (s *Grads) Needs(i int) bool { return s.ins[i].needsGrad }

// Target returns input i's gradient buffer (of the input's shape) and
// whether it already holds a gradient that the contribution must be added
// to. Kernels that can accumulate (MatMul with beta 1, Copy with
// accumulate) write into it directly; others, when accumulate is true,
// compute into a temporary and use Add. Call it only for inputs that Need
// a gradient, right before writing.
func (s *Grads) Target(i int) (dst backend.Tensor, accumulate bool) {
	return s.g.gradDst(s.ins[i])
}

// Add adds t, a tensor with as many elements as input i, to input i's
// gradient. t is not consumed. Inputs that need no gradient ignore it.
func (s *Grads) Add(i int, t backend.Tensor) { s.g.addGrad(s.ins[i], t, 1) }
