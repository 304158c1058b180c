package graph

import (
	"github.com/sora-go/sora/backend"
)

// bcast says how the second operand of a binary op is applied to the first.
type bcast uint8

const (
	bcSame   bcast = iota // same shape
	bcScalar              // one element, applied to every element
	bcRow                 // one row, applied to every row
	bcCol                 // one element per row
)

// broadcastOf classifies b against a (see [Tape.Add]).
func broadcastOf(a, b backend.Shape) (bcast, bool) {
	if a.Equal(b) {
		return bcSame, true
	}
	n := b.NumElements()
	if n == 1 {
		return bcScalar, true
	}
	rows, cols := a.Rows()
	if len(b) >= 1 && b[len(b)-1] == cols && n == cols {
		return bcRow, true
	}
	if len(a) >= 1 && n == rows && len(b) >= 1 && b[len(b)-1] == 1 {
		// [rows, 1] or a's shape with the last axis 1 (keepdim reductions)
		if (len(b) == 2 && b[0] == rows) || b[:len(b)-1].Equal(a[:len(a)-1]) {
			return bcCol, true
		}
	}
	return 0, false
}

// aView returns the view of a's data (or of a tensor of a's shape) that
// backend.Binary expects for broadcast bc.
func aView(t backend.Tensor, bc bcast) backend.Tensor {
	rows, cols := t.Rows()
	switch bc {
	case bcScalar:
		return t.MustReshape(t.Len(), 1)
	case bcRow, bcCol:
		return t.MustReshape(rows, cols)
	}
	return t
}

// bView returns the view of b's data that backend.Binary expects for a
// broadcast bc against a tensor of shape a.
func bView(t backend.Tensor, bc bcast, a backend.Shape) backend.Tensor {
	rows, cols := a.Rows()
	switch bc {
	case bcScalar:
		return t.MustReshape(1)
	case bcRow:
		return t.MustReshape(cols)
	case bcCol:
		return t.MustReshape(rows, 1)
	}
	return t
}

// reduceGrad adds alpha·(src summed down to v's broadcast shape) to v's
// gradient; src has the shape of the broadcast's first operand. When owned,
// src is a buffer from alloc that reduceGrad consumes.
func (g *Tape) reduceGrad(v *Value, bc bcast, src backend.Tensor, alpha float32, owned bool) {
	switch {
	case !v.needsGrad:
	case bc == bcSame && owned && alpha == 1:
		g.give(v, src)
		return
	case bc == bcSame:
		g.addGrad(v, src, alpha)
	default:
		dst, finish := g.gradWrite(v)
		rows, cols := src.Rows()
		switch bc {
		case bcScalar:
			g.b.ReduceRows(backend.Sum, dst.MustReshape(1), src.MustReshape(1, src.Len()))
		case bcRow:
			g.b.SumColumns(dst.MustReshape(cols), src.MustReshape(rows, cols))
		case bcCol:
			g.b.ReduceRows(backend.Sum, dst.MustReshape(rows), src.MustReshape(rows, cols))
		}
		if alpha != 1 {
			g.b.Scale(dst, dst, alpha)
		}
		finish()
	}
	if owned {
		g.release(src)
	}
}

// Add returns a + b. b has a's shape or broadcasts against it: one element
// (a scalar, whose gradient is the sum of the upstream gradient), a row
// vector of a's row length (shape [cols] or [1, …, cols], like a bias), or
// one element per row of a (shape [rows, 1] or a's shape with the last axis
// 1, as the keepdim reductions return).
func (g *Tape) Add(a, b *Value) *Value { return g.binary("Add", backend.Add, a, b) }

// Sub returns a − b, broadcasting b as [Tape.Add] does.
func (g *Tape) Sub(a, b *Value) *Value { return g.binary("Sub", backend.Sub, a, b) }

// Mul returns a ⊙ b, broadcasting b as [Tape.Add] does. With a one-element
// b it multiplies a by a scalar value that receives a gradient.
func (g *Tape) Mul(a, b *Value) *Value { return g.binary("Mul", backend.Mul, a, b) }

// Div returns a ⊘ b, broadcasting b as [Tape.Add] does.
func (g *Tape) Div(a, b *Value) *Value { return g.binary("Div", backend.Div, a, b) }

func (g *Tape) binary(name string, op backend.BinaryOp, a, b *Value) *Value {
	if !g.check(name, a, b) {
		return g.placeholder(shapeOf(a))
	}
	bc, ok := broadcastOf(a.shape, b.shape)
	if !ok {
		rows, cols := a.shape.Rows()
		g.failf("%s: cannot apply %v to %v: want the same shape, one element, a row of %d or a column of %d", name, b.shape, a.shape, cols, rows)
		return g.placeholder(a.shape)
	}
	out := g.output(a.shape, a, b)
	if g.err != nil {
		return out
	}
	g.b.Binary(op, aView(out.data, bc), aView(a.data, bc), bView(b.data, bc, a.shape))
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			// b first: it reads dy, which a's contribution overwrites.
			if b.needsGrad {
				switch op {
				case backend.Add:
					g.reduceGrad(b, bc, dy, 1, false)
				case backend.Sub:
					g.reduceGrad(b, bc, dy, -1, false)
				case backend.Mul: // db = Σ dy ⊙ a
					t := g.alloc(a.shape)
					g.b.Binary(backend.Mul, t, dy, a.data)
					g.reduceGrad(b, bc, t, 1, true)
				case backend.Div: // db = −Σ dy ⊙ a / b² = −Σ dy ⊙ out / b
					t := g.alloc(a.shape)
					g.b.Binary(backend.Mul, t, dy, out.data)
					g.b.Binary(backend.Div, aView(t, bc), aView(t, bc), bView(b.data, bc, a.shape))
					g.reduceGrad(b, bc, t, -1, true)
				}
			}
			if !a.needsGrad {
				g.release(dy)
				return
			}
			switch op {
			case backend.Mul, backend.Div: // da = dy ⊙ b, dy ⊘ b
				g.b.Binary(op, aView(dy, bc), aView(dy, bc), bView(b.data, bc, a.shape))
			}
			g.give(a, dy)
		})
	}
	return out
}

// Scale returns alpha·x.
func (g *Tape) Scale(x *Value, alpha float32) *Value {
	if !g.check("Scale", x) {
		return g.placeholder(shapeOf(x))
	}
	out := g.output(x.shape, x)
	if g.err != nil {
		return out
	}
	g.b.Scale(out.data, x.data, alpha)
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			g.b.Scale(dy, dy, alpha)
			g.give(x, dy)
		})
	}
	return out
}

// AddScalar returns x + c element-wise.
func (g *Tape) AddScalar(x *Value, c float32) *Value {
	if !g.check("AddScalar", x) {
		return g.placeholder(shapeOf(x))
	}
	cv := g.Full(c, 1)
	out := g.output(x.shape, x)
	if g.err != nil {
		return out
	}
	g.b.Binary(backend.Add, aView(out.data, bcScalar), aView(x.data, bcScalar), cv.data)
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) { g.give(x, dy) })
	}
	return out
}

// Reciprocal returns 1 ⊘ x.
func (g *Tape) Reciprocal(x *Value) *Value {
	if !g.check("Reciprocal", x) {
		return g.placeholder(shapeOf(x))
	}
	// A fused reciprocal would save filling and reading a tensor of ones.
	return g.Div(g.Full(1, x.shape...), x)
}

// MinScalar returns min(x, c) element-wise. The gradient passes where
// x ≤ c and is 0 where x > c. Where x < c the result is x exactly.
func (g *Tape) MinScalar(x *Value, c float32) *Value {
	if !g.check("MinScalar", x) {
		return g.placeholder(shapeOf(x))
	}
	// min(x, c) = x − relu(x − c); a fused clamp would save three passes.
	return g.Sub(x, g.ReLU(g.AddScalar(x, -c)))
}

// MaxScalar returns max(x, c) element-wise. The gradient passes where
// x ≥ c and is 0 where x < c. Where x > c the result is x exactly.
func (g *Tape) MaxScalar(x *Value, c float32) *Value {
	if !g.check("MaxScalar", x) {
		return g.placeholder(shapeOf(x))
	}
	// max(x, c) = x + relu(c − x)
	return g.Add(x, g.ReLU(g.AddScalar(g.Neg(x), c)))
}

// ScaleRows returns diag(d)·x: row i of x (all axes but the last flattened)
// multiplied by d[i]. d has one element per row, in any shape.
func (g *Tape) ScaleRows(x, d *Value) *Value {
	if !g.check("ScaleRows", x, d) {
		return g.placeholder(shapeOf(x))
	}
	rows, _ := x.shape.Rows()
	if d.Len() != rows {
		g.failf("ScaleRows: %v has %d rows but the scale %v has %d elements", x.shape, rows, d.shape, d.Len())
		return g.placeholder(x.shape)
	}
	return g.Mul(x, g.Reshape(d, rows, 1))
}

// ScaleColumns returns x·diag(d): column j of x multiplied by d[j]. d has
// x's row length, in any shape.
func (g *Tape) ScaleColumns(x, d *Value) *Value {
	if !g.check("ScaleColumns", x, d) {
		return g.placeholder(shapeOf(x))
	}
	_, cols := x.shape.Rows()
	if d.Len() != cols {
		g.failf("ScaleColumns: %v has rows of %d but the scale %v has %d elements", x.shape, cols, d.shape, d.Len())
		return g.placeholder(x.shape)
	}
	return g.Mul(x, g.Reshape(d, cols))
}

// Unary returns f(x) element-wise for one of the backend's unary ops.
func (g *Tape) Unary(op backend.UnaryOp, x *Value) *Value {
	if !g.check(op.String(), x) {
		return g.placeholder(shapeOf(x))
	}
	out := g.output(x.shape, x)
	if g.err != nil {
		return out
	}
	g.b.Unary(op, out.data, x.data)
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			g.b.UnaryGrad(op, dy, x.data, dy)
			g.give(x, dy)
		})
	}
	return out
}

// Exp returns eˣ element-wise.
func (g *Tape) Exp(x *Value) *Value { return g.Unary(backend.Exp, x) }

// Log returns the natural logarithm element-wise.
func (g *Tape) Log(x *Value) *Value { return g.Unary(backend.Log, x) }

// Sqrt returns √x element-wise.
func (g *Tape) Sqrt(x *Value) *Value { return g.Unary(backend.Sqrt, x) }

// Rsqrt returns 1/√x element-wise.
func (g *Tape) Rsqrt(x *Value) *Value { return g.Unary(backend.Rsqrt, x) }

// Tanh returns tanh x element-wise.
func (g *Tape) Tanh(x *Value) *Value { return g.Unary(backend.Tanh, x) }

// SiLU returns x·σ(x) element-wise (LLaMA's gate activation).
func (g *Tape) SiLU(x *Value) *Value { return g.Unary(backend.SiLU, x) }

// GELU returns the exact GELU x·Φ(x) element-wise.
func (g *Tape) GELU(x *Value) *Value { return g.Unary(backend.GELU, x) }

// GELUTanh returns GELU's tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x +
// 0.044715·x³))) element-wise (PyTorch's gelu(approximate="tanh"),
// transformers' "gelu_pytorch_tanh", Gemma's activation), one fused op
// forward and backward.
func (g *Tape) GELUTanh(x *Value) *Value { return g.Unary(backend.GELUTanh, x) }

// ReLU returns max(x, 0) element-wise.
func (g *Tape) ReLU(x *Value) *Value { return g.Unary(backend.ReLU, x) }

// Sigmoid returns 1/(1+e⁻ˣ) element-wise.
func (g *Tape) Sigmoid(x *Value) *Value { return g.Unary(backend.Sigmoid, x) }

// Neg returns −x.
func (g *Tape) Neg(x *Value) *Value { return g.Unary(backend.Neg, x) }

// Square returns x² element-wise.
func (g *Tape) Square(x *Value) *Value { return g.Unary(backend.Square, x) }
