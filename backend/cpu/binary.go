package cpu

import "github.com/sora-go/sora/backend"

// Binary computes dst = a op b element-wise, with b of a's shape, a row
// broadcast to every row, or a column broadcast to every column.
func (b *Backend) Binary(op backend.BinaryOp, dst, a, bt backend.Tensor) {
	if b.skip(backend.OpBinary) {
		return
	}
	rows, cols, bc, err := backend.CheckBinary(dst, a, bt)
	if err != nil {
		b.Record(err)
		return
	}
	f := binaryKernel(op)
	if f == nil {
		b.Record(backend.Errorf(backend.OpBinary, []backend.Tensor{dst, a, bt}, "unknown binary op %v", op))
		return
	}
	v, ok := b.views(backend.OpBinary, dst, a, bt)
	if !ok {
		return
	}
	d, x, y := v[0], v[1], v[2]
	if bc == backend.NoBroadcast {
		// Rows are irrelevant: split the flat range.
		b.parallelFor(len(d), 1, func(lo, hi int) { f(d[lo:hi], x[lo:hi], y[lo:hi]) })
		return
	}
	fs := binaryScalarKernel(op)
	b.parallelFor(rows, cols, func(lo, hi int) {
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

// binaryKernel returns the row kernel dst[i] = a[i] op b[i].
func binaryKernel(op backend.BinaryOp) func(dst, a, b []float32) {
	switch op {
	case backend.Add:
		return func(dst, a, b []float32) {
			a, b = a[:len(dst)], b[:len(dst)]
			for i := range dst {
				dst[i] = a[i] + b[i]
			}
		}
	case backend.Sub:
		return func(dst, a, b []float32) {
			a, b = a[:len(dst)], b[:len(dst)]
			for i := range dst {
				dst[i] = a[i] - b[i]
			}
		}
	case backend.Mul:
		return func(dst, a, b []float32) {
			a, b = a[:len(dst)], b[:len(dst)]
			for i := range dst {
				dst[i] = a[i] * b[i]
			}
		}
	case backend.Div:
		return func(dst, a, b []float32) {
			a, b = a[:len(dst)], b[:len(dst)]
			for i := range dst {
				dst[i] = a[i] / b[i]
			}
		}
	}
	return nil
}

// binaryScalarKernel returns the row kernel dst[i] = a[i] op s, for column
// broadcasts. Callers have checked op with binaryKernel.
func binaryScalarKernel(op backend.BinaryOp) func(dst, a []float32, s float32) {
	switch op {
	case backend.Add:
		return func(dst, a []float32, s float32) {
			a = a[:len(dst)]
			for i := range dst {
				dst[i] = a[i] + s
			}
		}
	case backend.Sub:
		return func(dst, a []float32, s float32) {
			a = a[:len(dst)]
			for i := range dst {
				dst[i] = a[i] - s
			}
		}
	case backend.Mul:
		return func(dst, a []float32, s float32) {
			a = a[:len(dst)]
			for i := range dst {
				dst[i] = a[i] * s
			}
		}
	default: // Div: divide rather than multiply by 1/s, to round as a/s does
		return func(dst, a []float32, s float32) {
			a = a[:len(dst)]
			for i := range dst {
				dst[i] = a[i] / s
			}
		}
	}
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
	b.parallelFor(len(d), 1, func(lo, hi int) {
		dr, sr := d[lo:hi], s[lo:hi]
		for i, x := range sr {
			dr[i] = alpha * x
		}
	})
}

// Axpy computes y += alpha·x.
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
	b.parallelFor(len(ys), 2, func(lo, hi int) {
		yr, xr := ys[lo:hi], xs[lo:hi]
		for i, xv := range xr {
			yr[i] += alpha * xv
		}
	})
}
