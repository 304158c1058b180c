package graph

import (
	"github.com/sora-go/sora/backend"
)

// Softmax returns softmax(p.Scale·x) over each row of x (its last axis).
// With p.Causal the last two axes are [queries, keys] and key j is masked
// for query i when j > i + p.QueryOffset (masked entries are exactly 0);
// leading axes, such as [batch, heads], are a batch.
func (g *Tape) Softmax(x *Value, p backend.SoftmaxParams) *Value {
	if !g.check("Softmax", x) {
		return g.placeholder(shapeOf(x))
	}
	out := g.output(x.shape, x)
	if g.err != nil {
		return out
	}
	g.b.Softmax(out.data, x.data, p)
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			g.b.SoftmaxGrad(dy, out.data, dy, p)
			g.give(x, dy)
		})
	}
	return out
}

// RMSNorm returns x / √(mean(x²) + eps) ⊙ w over each row of x; w has x's
// row length.
func (g *Tape) RMSNorm(x, w *Value, eps float32) *Value {
	if !g.check("RMSNorm", x, w) {
		return g.placeholder(shapeOf(x))
	}
	if _, cols := x.shape.Rows(); w.Len() != cols {
		g.failf("RMSNorm: weight %v for rows of %d", w.shape, cols)
		return g.placeholder(x.shape)
	}
	out := g.output(x.shape, x, w)
	if g.err != nil {
		return out
	}
	wt := w.data.MustReshape(w.Len())
	g.b.RMSNorm(out.data, x.data, wt, eps)
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			var dw backend.Tensor
			if w.needsGrad {
				dw = g.gradZeroed(w).MustReshape(w.Len())
			}
			dx, finish := g.gradWrite(x)
			g.b.RMSNormGrad(dx, dw, x.data, wt, dy, eps)
			finish()
			g.release(dy)
		})
	}
	return out
}

// LayerNorm returns (x − mean) / √(var + eps) ⊙ gamma + beta over each row
// of x (biased variance); gamma and beta have x's row length and beta may be
// nil.
func (g *Tape) LayerNorm(x, gamma, beta *Value, eps float32) *Value {
	ins := []*Value{x, gamma}
	if beta != nil {
		ins = append(ins, beta)
	}
	if !g.check("LayerNorm", ins...) {
		return g.placeholder(shapeOf(x))
	}
	_, cols := x.shape.Rows()
	if gamma.Len() != cols || (beta != nil && beta.Len() != cols) {
		g.failf("LayerNorm: parameters %v, %v for rows of %d", gamma.shape, shapeOf(beta), cols)
		return g.placeholder(x.shape)
	}
	out := g.output(x.shape, ins...)
	if g.err != nil {
		return out
	}
	gt := gamma.data.MustReshape(cols)
	var bt backend.Tensor
	if beta != nil {
		bt = beta.data.MustReshape(cols)
	}
	g.b.LayerNorm(out.data, x.data, gt, bt, eps)
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			var dg, db backend.Tensor
			if gamma.needsGrad {
				dg = g.gradZeroed(gamma).MustReshape(cols)
			}
			if beta != nil && beta.needsGrad {
				db = g.gradZeroed(beta).MustReshape(cols)
			}
			dx, finish := g.gradWrite(x)
			g.b.LayerNormGrad(dx, dg, db, x.data, gt, dy, eps)
			finish()
			g.release(dy)
		})
	}
	return out
}

// RoPE applies rotary position embedding to x of shape [batch, seq, heads,
// headDim]: the token at sequence index t has position p.Offset + t (see
// backend.RoPEParams for the layouts).
func (g *Tape) RoPE(x *Value, p backend.RoPEParams) *Value {
	if !g.check("RoPE", x) {
		return g.placeholder(shapeOf(x))
	}
	out := g.output(x.shape, x)
	if g.err != nil {
		return out
	}
	g.b.RoPE(out.data, x.data, p)
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			q := p
			q.Inverse = !p.Inverse
			g.b.RoPE(dy, dy, q)
			g.give(x, dy)
		})
	}
	return out
}

// Gather returns the rows ids of table [n, dim] as a value of shape
// [len(ids), dim]: an embedding lookup, or the selection of some rows of a
// batch (the last token of each sequence). ids are copied. table may be
// a parameter stored in bfloat16 (a frozen embedding at half the memory,
// on a backend with [backend.OpMatMulBF16]), whose rows come out widened
// exactly to float32; such a table is frozen, so no gradient goes to it.
func (g *Tape) Gather(table *Value, ids []int32) *Value {
	if !g.checkStored("Gather", table) {
		return g.placeholder(nil)
	}
	if table.Rank() != 2 {
		g.failf("Gather: table %v, want [n, dim]", table.shape)
		return g.placeholder(nil)
	}
	out := g.output(backend.Shape{len(ids), table.Dim(1)}, table)
	if g.err != nil {
		return out
	}
	g.b.Gather(out.data, table.data, ids)
	if g.recording(out) {
		ids := append([]int32(nil), ids...) // the caller may reuse its slice
		g.record(out, func(dy backend.Tensor) {
			g.b.ScatterAdd(g.gradZeroed(table), dy, ids)
			g.release(dy)
		})
	}
	return out
}
