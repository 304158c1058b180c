package cpu

import (
	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// Binary computes dst = a op b element-wise, with b of a's shape, a row
// broadcast to every row, or a column broadcast to every column.
func (b *Backend) Binary(op backend.BinaryOp, dst, a, bt backend.Tensor) {
	if b.skip(backend.OpBinary) {
		return
	}
	rows, cols, bc, err := backend.CheckBinary(op, dst, a, bt)
	if err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(backend.OpBinary, dst, a, bt)
	if !ok {
		return
	}
	d, x, y := v[0], v[1], v[2]
	k := b.kernels(4 * (len(d) + len(x) + len(y)))
	f := binaryKernel(k, op)
	if bc == backend.NoBroadcast {
		// Rows are irrelevant: split the flat range.
		b.streamFor(k, len(d), 1, func(lo, hi int) { f(d[lo:hi], x[lo:hi], y[lo:hi]) })
		return
	}
	fs := binaryScalarKernel(k, op)
	if bc == backend.RowBroadcast && cols == 1 {
		// One element applied to every element (a [n, 1] view against a
		// [1] operand, as graph broadcasts scalars): one scalar kernel over
		// the flat range, not a call per element.
		s := y[0]
		b.streamFor(k, len(d), 1, func(lo, hi int) { fs(d[lo:hi], x[lo:hi], s) })
		return
	}
	b.streamFor(k, rows, cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := r * cols
			if bc == backend.RowBroadcast {
				f(d[row:row+cols], x[row:row+cols], y)
			} else {
				fs(d[row:row+cols], x[row:row+cols], y[r])
			}
		}
	})
}

// binaryKernel returns k's kernel dst[i] = a[i] op b[i], or nil for an
// unknown op.
func binaryKernel(k *vec.Kernels, op backend.BinaryOp) func(dst, a, b []float32) {
	switch op {
	case backend.Add:
		return k.Add
	case backend.Sub:
		return k.Sub
	case backend.Mul:
		return k.Mul
	case backend.Div:
		return k.Div
	}
	return nil
}

// binaryScalarKernel returns k's kernel dst[i] = a[i] op s, for column
// broadcasts; Div divides rather than multiplying by 1/s, to round as a/s
// does. Callers have checked op with binaryKernel.
func binaryScalarKernel(k *vec.Kernels, op backend.BinaryOp) func(dst, a []float32, s float32) {
	switch op {
	case backend.Add:
		return k.AddScalar
	case backend.Sub:
		return k.SubScalar
	case backend.Mul:
		return k.MulScalar
	}
	return k.DivScalar
}

// Scale computes dst = alpha·src; dst may alias src.
func (b *Backend) Scale(dst, src backend.Tensor, alpha float32) {
	if b.skip(backend.OpScale) {
		return
	}
	if _, err := backend.CheckElementwise(backend.OpScale, dst, src); err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(backend.OpScale, dst, src)
	if !ok {
		return
	}
	d, s := v[0], v[1]
	k := b.kernels(8 * len(d))
	b.streamFor(k, len(d), 1, func(lo, hi int) { k.MulScalar(d[lo:hi], s[lo:hi], alpha) })
}

// Axpy computes y += alpha·x, with the product rounded before the sum.
func (b *Backend) Axpy(y backend.Tensor, alpha float32, x backend.Tensor) {
	if b.skip(backend.OpAxpy) {
		return
	}
	if _, err := backend.CheckElementwise(backend.OpAxpy, y, x); err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(backend.OpAxpy, y, x)
	if !ok {
		return
	}
	ys, xs := v[0], v[1]
	b.parallelFor(len(ys), 2, func(lo, hi int) { b.kern.Axpy(ys[lo:hi], alpha, xs[lo:hi]) })
}
