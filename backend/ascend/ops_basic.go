package ascend

import (
	"unsafe"

	"github.com/sora-go/sora/backend"
)

// i64 passes a signed integer argument (e.g. dim -1) through SyscallN.
func i64(x int64) uintptr { return uintptr(x) }

func flag(v bool) uintptr {
	if v {
		return 1
	}
	return 0
}

// cNone and cTanh are GELU's "none" and "tanh" approximations as C
// strings for aclnnGeluBackwardV2. Package variables never move.
var (
	cNone = []byte("none\x00")
	cTanh = []byte("tanh\x00")
)

// GELU's approximate argument of aclnnGeluV2: 0 for none (the exact
// x·Φ(x)), 1 for tanh.
const (
	geluExact = 0
	geluTanh  = 1
)

// overlap reports whether two tensors share elements of one buffer.
func overlap(a, b backend.Tensor) bool {
	if a.IsZero() || b.IsZero() || a.Buffer() != b.Buffer() {
		return false
	}
	lo := func(t backend.Tensor) (int, int) {
		mn, mx := t.Offset(), t.Offset()
		for i, d := range t.Shape() {
			if d == 0 {
				return 0, -1
			}
			s := (d - 1) * t.Strides()[i]
			if s < 0 {
				mn += s
			} else {
				mx += s
			}
		}
		return mn, mx
	}
	al, ah := lo(a)
	bl, bh := lo(b)
	return al <= bh && bl <= ah && al <= ah && bl <= bh
}

// Fill sets every element of dst to v (aclnnInplaceFillScalar).
func (b *Backend) Fill(dst backend.Tensor, v float32) {
	if b.Failed() {
		return
	}
	if err := backend.CheckFill(dst); err != nil {
		b.Record(err)
		return
	}
	if dst.Len() == 0 {
		return
	}
	b.do(backend.OpFill, []backend.Tensor{dst}, func(c *call) {
		c.launch("InplaceFillScalar", c.tensor(c.tensorOf(dst)), c.scalar(v))
	})
}

// Copy copies (or with accumulate adds) src into dst; both may be strided.
// Axes along which src repeats (stride 0) become extent-1 axes that
// aclnnInplaceCopy / aclnnInplaceAdd broadcast; negative strides are
// turned positive, flipping src with aclnnFlip where only src runs
// backwards.
func (b *Backend) Copy(dst, src backend.Tensor, accumulate bool) {
	if b.Failed() {
		return
	}
	if err := backend.CheckCopy(dst, src); err != nil {
		b.Record(err)
		return
	}
	if dst.Len() == 0 {
		return
	}
	b.do(backend.OpCopy, []backend.Tensor{dst, src}, func(c *call) {
		d, s := c.tensorOf(dst), c.tensorOf(src)
		if c.err != nil {
			return
		}
		for i := range d.shape {
			if d.shape[i] > 1 && d.strides[i] < 0 {
				// Walk this axis forwards in both: same pairs of elements.
				d.off += (d.shape[i] - 1) * d.strides[i]
				d.strides[i] = -d.strides[i]
				s.off += (s.shape[i] - 1) * s.strides[i]
				s.strides[i] = -s.strides[i]
			}
		}
		var flips []int64
		for i := range s.shape {
			switch {
			case s.shape[i] > 1 && s.strides[i] == 0:
				s.shape[i] = 1
			case s.shape[i] > 1 && s.strides[i] < 0:
				s.off += (s.shape[i] - 1) * s.strides[i]
				s.strides[i] = -s.strides[i]
				flips = append(flips, int64(i))
			}
		}
		if len(flips) > 0 {
			t := c.temp(s.shape...)
			c.launch("Flip", c.tensor(s), c.intArray(flips...), c.tensor(t))
			s = t
		}
		if accumulate {
			c.launch("InplaceAdd", c.tensor(d), c.tensor(s), c.scalar(1))
		} else {
			c.launch("InplaceCopy", c.tensor(d), c.tensor(s))
		}
	})
}

// Binary computes dst = a op b with b of a's shape, a row [cols] or a
// column [rows, 1]; the operands are presented to aclnn as [rows, cols]
// and its broadcasting does the rest.
func (b *Backend) Binary(op backend.BinaryOp, dst, a, bt backend.Tensor) {
	if b.Failed() {
		return
	}
	rows, cols, bc, err := backend.CheckBinary(op, dst, a, bt)
	all := []backend.Tensor{dst, a, bt}
	if err != nil {
		b.Record(err)
		return
	}
	if rows*cols == 0 {
		return
	}
	b.do(backend.OpBinary, all, func(c *call) {
		av := c.tensorOf(a).reshape(rows, cols)
		dv := c.tensorOf(dst).reshape(rows, cols)
		bv := c.tensorOf(bt)
		switch bc {
		case backend.NoBroadcast:
			bv = bv.reshape(rows, cols)
		case backend.RowBroadcast:
			bv = bv.reshape(cols)
		case backend.ColumnBroadcast:
			bv = bv.reshape(rows, 1)
		}
		ta, tb, td := c.tensor(av), c.tensor(bv), c.tensor(dv)
		switch op {
		case backend.Add:
			c.launch("Add", ta, tb, c.scalar(1), td)
		case backend.Sub:
			c.launch("Sub", ta, tb, c.scalar(1), td)
		case backend.Mul:
			c.launch("Mul", ta, tb, td)
		case backend.Div:
			c.launch("Div", ta, tb, td)
		}
	})
}

// Scale computes dst = alpha·src (aclnnMuls).
func (b *Backend) Scale(dst, src backend.Tensor, alpha float32) {
	if b.Failed() {
		return
	}
	n, err := backend.CheckElementwise(backend.OpScale, dst, src)
	if err != nil {
		b.Record(err)
		return
	}
	if n == 0 {
		return
	}
	b.do(backend.OpScale, []backend.Tensor{dst, src}, func(c *call) {
		c.launch("Muls", c.tensor(c.tensorOf(src).reshape(n)), c.scalar(alpha), c.tensor(c.tensorOf(dst).reshape(n)))
	})
}

// Axpy computes y += alpha·x (aclnnInplaceAdd).
func (b *Backend) Axpy(y backend.Tensor, alpha float32, x backend.Tensor) {
	if b.Failed() {
		return
	}
	n, err := backend.CheckElementwise(backend.OpAxpy, y, x)
	if err != nil {
		b.Record(err)
		return
	}
	if n == 0 {
		return
	}
	b.do(backend.OpAxpy, []backend.Tensor{y, x}, func(c *call) {
		c.launch("InplaceAdd", c.tensor(c.tensorOf(y).reshape(n)), c.tensor(c.tensorOf(x).reshape(n)), c.scalar(alpha))
	})
}

// unaryOps maps the unary ops with a single aclnn operator (self, out).
var unaryOps = map[backend.UnaryOp]string{
	backend.Exp: "Exp", backend.Log: "Log", backend.Sqrt: "Sqrt", backend.Rsqrt: "Rsqrt", backend.Tanh: "Tanh",
	backend.SiLU: "Silu", backend.ReLU: "Relu", backend.Neg: "Neg", backend.Sigmoid: "Sigmoid",
}

// Unary computes dst = f(src). GELU is aclnnGeluV2 with approximate 0, the
// exact x·Φ(x), and GELUTanh the same operator with approximate 1, its
// tanh form; Square is aclnnMul of src with itself.
func (b *Backend) Unary(op backend.UnaryOp, dst, src backend.Tensor) {
	if b.Failed() {
		return
	}
	n, err := backend.CheckUnary(backend.OpUnary, op, dst, src)
	if err != nil {
		b.Record(err)
		return
	}
	if n == 0 {
		return
	}
	b.do(backend.OpUnary, []backend.Tensor{dst, src}, func(c *call) {
		s, d := c.tensor(c.tensorOf(src).reshape(n)), c.tensor(c.tensorOf(dst).reshape(n))
		switch op {
		case backend.GELU:
			c.launch("GeluV2", s, geluExact, d)
		case backend.GELUTanh:
			c.launch("GeluV2", s, geluTanh, d)
		case backend.Square:
			c.launch("Mul", s, s, d)
		default:
			c.launch(unaryOps[op], s, d)
		}
	})
}

// UnaryGrad computes dx = dy ⊙ f'(x), with the aclnn backward operator
// where there is one (tanh, sigmoid, SiLU, GELU and GELUTanh through
// aclnnGeluBackwardV2 with approximate "none" and "tanh", ReLU via
// ThresholdBackward) and from forward operators otherwise.
func (b *Backend) UnaryGrad(op backend.UnaryOp, dx, x, dy backend.Tensor) {
	if b.Failed() {
		return
	}
	all := []backend.Tensor{dx, x, dy}
	n, err := backend.CheckUnary(backend.OpUnaryGrad, op, dx, x, dy)
	if err != nil {
		b.Record(err)
		return
	}
	if n == 0 {
		return
	}
	b.do(backend.OpUnaryGrad, all, func(c *call) {
		X, DY, DX := c.tensor(c.tensorOf(x).reshape(n)), c.tensor(c.tensorOf(dy).reshape(n)), c.tensor(c.tensorOf(dx).reshape(n))
		tmp := func() uintptr { return c.tensor(c.temp(n)) }
		switch op {
		case backend.Exp: // dy·exp(x)
			t := tmp()
			c.launch("Exp", X, t)
			c.launch("Mul", DY, t, DX)
		case backend.Log: // dy/x
			c.launch("Div", DY, X, DX)
		case backend.Sqrt: // dy/(2·sqrt(x))
			t := tmp()
			c.launch("Sqrt", X, t)
			c.launch("InplaceMuls", t, c.scalar(2))
			c.launch("Div", DY, t, DX)
		case backend.Rsqrt: // dy·(−½)·rsqrt(x)/x
			t, u := tmp(), tmp()
			c.launch("Rsqrt", X, t)
			c.launch("Div", t, X, u)
			c.launch("InplaceMuls", u, c.scalar(-0.5))
			c.launch("Mul", DY, u, DX)
		case backend.Tanh: // dy·(1−tanh²)
			t := tmp()
			c.launch("Tanh", X, t)
			c.launch("TanhBackward", DY, t, DX)
		case backend.Sigmoid: // dy·σ(1−σ)
			t := tmp()
			c.launch("Sigmoid", X, t)
			c.launch("SigmoidBackward", DY, t, DX)
		case backend.SiLU:
			c.launch("SiluBackward", DY, X, DX)
		case backend.GELU:
			c.launch("GeluBackwardV2", DY, X, uintptr(unsafe.Pointer(&cNone[0])), DX)
		case backend.GELUTanh:
			c.launch("GeluBackwardV2", DY, X, uintptr(unsafe.Pointer(&cTanh[0])), DX)
		case backend.ReLU: // dy where x > 0
			c.launch("ThresholdBackward", DY, X, c.scalar(0), DX)
		case backend.Neg:
			c.launch("Neg", DY, DX)
		case backend.Square: // 2·x·dy
			c.launch("Mul", DY, X, DX)
			c.launch("InplaceMuls", DX, c.scalar(2))
		}
	})
}

// ReduceRows reduces each row: aclnnReduceSum or aclnnAmax over the last
// axis of src viewed as [rows, cols]; SumSquares squares into a temporary
// first.
func (b *Backend) ReduceRows(op backend.ReduceOp, dst, src backend.Tensor) {
	if b.Failed() {
		return
	}
	rows, cols, err := backend.CheckReduceRows(op, dst, src)
	all := []backend.Tensor{dst, src}
	if err != nil {
		b.Record(err)
		return
	}
	if rows == 0 {
		return
	}
	b.do(backend.OpReduceRows, all, func(c *call) {
		s := c.tensor(c.tensorOf(src).reshape(rows, cols))
		d := c.tensor(c.tensorOf(dst).reshape(rows))
		switch op {
		case backend.Sum:
			c.launch("ReduceSum", s, c.intArray(1), flag(false), aclFloat, d)
		case backend.SumSquares:
			t := c.tensor(c.temp(rows, cols))
			c.launch("Mul", s, s, t)
			c.launch("ReduceSum", t, c.intArray(1), flag(false), aclFloat, d)
		case backend.Max:
			c.launch("Amax", s, c.intArray(1), flag(false), d)
		}
	})
}

// SumColumns sums src [rows, cols] over its rows (aclnnReduceSum over
// axis 0).
func (b *Backend) SumColumns(dst, src backend.Tensor) {
	if b.Failed() {
		return
	}
	rows, cols, err := backend.CheckSumColumns(dst, src)
	if err != nil {
		b.Record(err)
		return
	}
	if cols == 0 {
		return
	}
	b.do(backend.OpSumColumns, []backend.Tensor{dst, src}, func(c *call) {
		d := c.tensor(c.tensorOf(dst).reshape(cols))
		if rows == 0 {
			c.launch("InplaceFillScalar", d, c.scalar(0))
			return
		}
		s := c.tensor(c.tensorOf(src).reshape(rows, cols))
		c.launch("ReduceSum", s, c.intArray(0), flag(false), aclFloat, d)
	})
}
