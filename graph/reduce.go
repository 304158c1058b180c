package graph

import (
	"github.com/sora-go/sora/backend"
)

// keepdim returns shape with its last axis set to 1 ([1] for a scalar).
func keepdim(s backend.Shape) backend.Shape {
	if len(s) == 0 {
		return backend.Shape{1}
	}
	r := append(backend.Shape(nil), s...)
	r[len(r)-1] = 1
	return r
}

// broadcastRows returns dy (one element per row) as a strided view of shape
// [rows, cols] that repeats each element along its row.
func broadcastRows(dy backend.Tensor, rows, cols int) backend.Tensor {
	v, err := dy.Strided(0, backend.Shape{rows, cols}, []int{1, 0})
	if err != nil {
		panic(err) // the view reads dy's rows elements, which dy holds
	}
	return v
}

// SumRows returns the sum of each row of x (its last axis), with x's shape
// and the last axis 1, ready to broadcast back against x.
func (g *Tape) SumRows(x *Value) *Value {
	if !g.check("SumRows", x) {
		return g.placeholder(keepdim(shapeOf(x)))
	}
	rows, cols := x.shape.Rows()
	out := g.output(keepdim(x.shape), x)
	if g.err != nil {
		return out
	}
	g.b.ReduceRows(backend.Sum, out.data.MustReshape(rows), x.data.MustReshape(rows, cols))
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			if dst, acc := g.gradDst(x); !dst.IsZero() {
				g.b.Copy(dst.MustReshape(rows, cols), broadcastRows(dy, rows, cols), acc)
			}
			g.release(dy)
		})
	}
	return out
}

// MeanRows returns the mean of each row of x, shaped as [Tape.SumRows].
func (g *Tape) MeanRows(x *Value) *Value {
	if !g.check("MeanRows", x) {
		return g.placeholder(keepdim(shapeOf(x)))
	}
	_, cols := x.shape.Rows()
	return g.Scale(g.SumRows(x), 1/float32(cols))
}

// SumSqRows returns the sum of squares of each row of x (squared row
// norms), shaped as [Tape.SumRows].
func (g *Tape) SumSqRows(x *Value) *Value {
	if !g.check("SumSqRows", x) {
		return g.placeholder(keepdim(shapeOf(x)))
	}
	rows, cols := x.shape.Rows()
	out := g.output(keepdim(x.shape), x)
	if g.err != nil {
		return out
	}
	g.b.ReduceRows(backend.SumSquares, out.data.MustReshape(rows), x.data.MustReshape(rows, cols))
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			// dx = 2·x ⊙ dy (dy broadcast along each row)
			t := g.alloc(x.shape)
			g.b.Binary(backend.Mul, t.MustReshape(rows, cols), x.data.MustReshape(rows, cols), dy.MustReshape(rows, 1))
			g.b.Scale(t, t, 2)
			g.give(x, t)
			g.release(dy)
		})
	}
	return out
}

// SumColumns returns the sum of x over its rows: a vector of x's row
// length (the gradient of a bias, or Σ_rows of a batch).
func (g *Tape) SumColumns(x *Value) *Value {
	if !g.check("SumColumns", x) {
		return g.placeholder(nil)
	}
	rows, cols := x.shape.Rows()
	out := g.output(backend.Shape{cols}, x)
	if g.err != nil {
		return out
	}
	g.b.SumColumns(out.data, x.data.MustReshape(rows, cols))
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			if dst, acc := g.gradDst(x); !dst.IsZero() {
				src, err := dy.Strided(0, backend.Shape{rows, cols}, []int{0, 1})
				g.fail(err)
				g.b.Copy(dst.MustReshape(rows, cols), src, acc)
			}
			g.release(dy)
		})
	}
	return out
}

// Sum returns the sum of all elements of x as a one-element value of shape
// [1].
func (g *Tape) Sum(x *Value) *Value {
	if !g.check("Sum", x) {
		return g.placeholder(backend.Shape{1})
	}
	return g.Reshape(g.SumRows(g.Reshape(x, 1, x.Len())), 1)
}

// Mean returns the mean of all elements of x, shape [1].
func (g *Tape) Mean(x *Value) *Value {
	if !g.check("Mean", x) {
		return g.placeholder(backend.Shape{1})
	}
	return g.Scale(g.Sum(x), 1/float32(x.Len()))
}

// SumSq returns the sum of squares of all elements of x, shape [1].
func (g *Tape) SumSq(x *Value) *Value {
	if !g.check("SumSq", x) {
		return g.placeholder(backend.Shape{1})
	}
	return g.Reshape(g.SumSqRows(g.Reshape(x, 1, x.Len())), 1)
}

// Norm returns the Frobenius norm √(Σ x²) of x, shape [1]. Its gradient
// x/‖x‖ is undefined at x = 0.
func (g *Tape) Norm(x *Value) *Value {
	return g.Sqrt(g.SumSq(x))
}
