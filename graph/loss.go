package graph

import (
	"math"

	"github.com/sora-go/sora/backend"
)

// IgnoreIndex is the target that marks a row without a label (padding, or
// the prompt tokens of an answer-only causal-LM loss): such rows add
// nothing to a cross-entropy loss and are not counted in its mean. It is
// PyTorch's default ignore_index.
const IgnoreIndex int32 = -100

// CrossEntropyOptions configures [Tape.CrossEntropy]. The zero value is a
// mean over the counted rows without label smoothing.
type CrossEntropyOptions struct {
	// Smoothing is the label-smoothing weight ε in [0, 1]: the target
	// distribution is (1−ε)·one-hot + ε/vocab. 0 (the default) disables it.
	Smoothing float32
	// Divisor, when positive, replaces the number of counted rows as the
	// divisor of the summed loss (NaN or ±Inf is an error). Gradient
	// accumulation sets it to the number of counted rows over all
	// micro-batches of a step, so the accumulated gradient equals that of
	// one large batch.
	Divisor float32
}

// CrossEntropy returns the cross-entropy of logits [..., vocab] against
// targets (one per row; [IgnoreIndex] rows skipped), summed over rows and
// divided by the number of rows counted (or opts.Divisor), as a value of
// shape [1]. When every row is ignored the loss and its gradient are 0.
// targets are copied.
func (g *Tape) CrossEntropy(logits *Value, targets []int32, opts CrossEntropyOptions) *Value {
	if !g.check("CrossEntropy", logits) {
		return g.placeholder(backend.Shape{1})
	}
	rows, vocab := logits.shape.Rows()
	if len(targets) != rows {
		g.failf("CrossEntropy: %d targets for %d rows of logits %v", len(targets), rows, logits.shape)
		return g.placeholder(backend.Shape{1})
	}
	div := opts.Divisor
	if math.IsNaN(float64(div)) || math.IsInf(float64(div), 0) {
		// NaN and +Inf would make the scale 0, a zero loss and gradient
		// that look like a step with nothing to train.
		g.failf("CrossEntropy: divisor %g; want a finite number (0 or less: the counted rows)", div)
		return g.placeholder(backend.Shape{1})
	}
	if div <= 0 {
		for _, t := range targets {
			if t != IgnoreIndex {
				div++
			}
		}
	}
	scale := float32(0)
	if div > 0 {
		scale = 1 / div
	}
	p := backend.CrossEntropyParams{IgnoreIndex: IgnoreIndex, Smoothing: opts.Smoothing}
	targets = append([]int32(nil), targets...)
	out := g.output(backend.Shape{1}, logits)
	perRow := g.alloc(backend.Shape{rows})
	if g.err != nil {
		return out
	}
	l2 := logits.data.MustReshape(rows, vocab)
	g.b.CrossEntropy(perRow, l2, targets, p)
	g.b.ReduceRows(backend.Sum, out.data, perRow.MustReshape(1, rows))
	g.b.Scale(out.data, out.data, scale)
	g.release(perRow)
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			dst, finish := g.gradWrite(logits)
			q := p
			q.Scale = scale
			g.b.CrossEntropyGrad(dst.MustReshape(rows, vocab), l2, targets, q)
			if !out.seed { // the upstream gradient is a device scalar, not 1
				g.b.Binary(backend.Mul, aView(dst, bcScalar), aView(dst, bcScalar), dy)
			}
			finish()
			g.release(dy)
		})
	}
	return out
}

// CrossEntropyRows returns the cross-entropy of each row of logits
// [..., vocab] against its target, shaped as logits without the last axis;
// [IgnoreIndex] rows get 0. Use it for per-example scores (the
// log-likelihood of each answer choice) or custom reductions. targets are
// copied.
func (g *Tape) CrossEntropyRows(logits *Value, targets []int32) *Value {
	if !g.check("CrossEntropyRows", logits) {
		return g.placeholder(nil)
	}
	rows, vocab := logits.shape.Rows()
	shape := append(backend.Shape(nil), logits.shape[:logits.Rank()-1]...)
	if len(targets) != rows {
		g.failf("CrossEntropyRows: %d targets for %d rows of logits %v", len(targets), rows, logits.shape)
		return g.placeholder(shape)
	}
	p := backend.CrossEntropyParams{IgnoreIndex: IgnoreIndex}
	targets = append([]int32(nil), targets...)
	out := g.output(shape, logits)
	if g.err != nil {
		return out
	}
	l2 := logits.data.MustReshape(rows, vocab)
	g.b.CrossEntropy(out.data.MustReshape(rows), l2, targets, p)
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			dst, finish := g.gradWrite(logits)
			q := p
			q.Scale = 1
			d2 := dst.MustReshape(rows, vocab)
			g.b.CrossEntropyGrad(d2, l2, targets, q)
			g.b.Binary(backend.Mul, d2, d2, dy.MustReshape(rows, 1))
			finish()
			g.release(dy)
		})
	}
	return out
}

// MSE returns the mean squared error mean((pred − target)²) over all
// elements, shape [1]. target has pred's shape (or broadcasts as in
// [Tape.Sub]) and usually requires no gradient.
func (g *Tape) MSE(pred, target *Value) *Value {
	if !g.check("MSE", pred, target) {
		return g.placeholder(backend.Shape{1})
	}
	d := g.Sub(pred, target)
	return g.Scale(g.SumSq(d), 1/float32(pred.Len()))
}
