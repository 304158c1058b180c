package cuda

import (
	"fmt"
	"math"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/internal/strided"
)

// fits32 reports whether the copy's element count and every element
// offset it reaches fit in a C int, so that copy_strided32 may run it
// (its element counter is unsigned and does not wrap for such counts).
func fits32(axes []strided.Axis) bool {
	n, dspan, sspan := 1, 0, 0
	for _, a := range axes {
		n *= a.N
		dspan += (a.N - 1) * abs(a.DS)
		sspan += (a.N - 1) * abs(a.SS)
	}
	return n <= math.MaxInt32 && dspan <= math.MaxInt32 && sspan <= math.MaxInt32
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// offsetPtr is a device address moved by off elements (off may be
// negative, for views with negative strides).
func offsetPtr(p uintptr, off int) uintptr { return uintptr(int64(p) + int64(off)*4) }

// Copy copies (or, with accumulate, adds) src into dst element by element;
// both may be strided views and src may broadcast. Axes are merged first:
// a copy between contiguous views becomes one device-to-device memcpy (or,
// accumulating, one axpy), anything else one launch of the strided kernel
// over at most 8 merged axes (more are split on the host). A bfloat16 src
// (both then contiguous) is widened into dst by one widen_bf16 launch.
func (b *Backend) Copy(dst, src backend.Tensor, accumulate bool) {
	if b.skip(backend.OpCopy) {
		return
	}
	if err := backend.CheckCopyDType(dst, src, true); err != nil {
		b.Record(err)
		return
	}
	all := []backend.Tensor{dst, src}
	b.run(backend.OpCopy, all, func() error {
		p, err := b.dptrs(dst, src)
		if err != nil {
			return err
		}
		if src.DType() == backend.BFloat16 {
			return b.widen(p[0], p[1], int64(dst.Len()), accumulate)
		}
		axes, ok := strided.Merge(dst.Shape(), dst.Strides(), src.Strides())
		if !ok {
			return nil
		}
		return b.copyAxes(p[0], p[1], axes, accumulate)
	})
}

// copyAxes copies over merged axes from device address s to d.
func (b *Backend) copyAxes(d, s uintptr, axes []strided.Axis, acc bool) error {
	if len(axes) == 1 && axes[0].DS == 1 && axes[0].SS == 1 {
		n := axes[0].N
		if !acc {
			return b.api.cu("cuMemcpyDtoDAsync_v2", call(b.api.cuMemcpyDtoDAs, d, s, uintptr(n*4), b.stream))
		}
		return b.axpy(d, s, int64(n), 1)
	}
	if len(axes) > copyMaxRank {
		// Peel the outermost axis on the host.
		a := axes[0]
		for i := 0; i < a.N; i++ {
			if err := b.copyAxes(offsetPtr(d, i*a.DS), offsetPtr(s, i*a.SS), axes[1:], acc); err != nil {
				return err
			}
		}
		return nil
	}
	var cp copyParams
	cp.rank = int32(len(axes))
	if acc {
		cp.accumulate = 1
	}
	n := 1
	for i, a := range axes {
		cp.shape[i], cp.dstStride[i], cp.srcStride[i] = int64(a.N), int64(a.DS), int64(a.SS)
		n *= a.N
	}
	cp.n = int64(n)
	k := kCopyStrided
	if fits32(axes) {
		k = kCopyStrided32
	}
	args := b.kernel(k)
	args.copyParams(&cp)
	args.ptr(d)
	args.ptr(s)
	grid, block := elementwiseGrid(int64(n), b.sms)
	return b.launch(k, grid, block)
}

// axpy enqueues y += alpha·x over n elements at device addresses.
func (b *Backend) axpy(y, x uintptr, n int64, alpha float32) error {
	if n == 0 {
		return nil
	}
	args := b.kernel(kAxpy)
	args.i64(n)
	args.f32(alpha)
	args.ptr(y)
	args.ptr(x)
	grid, block := elementwiseGrid(n, b.sms)
	return b.launch(kAxpy, grid, block)
}

// widen enqueues dst = widen(src) (or dst += widen(src) with acc) over n
// elements: float32 at device address dst, bfloat16 at src.
func (b *Backend) widen(dst, src uintptr, n int64, acc bool) error {
	if n == 0 {
		return nil
	}
	args := b.kernel(kWidenBF16)
	args.i64(n)
	args.bool32(acc)
	args.ptr(dst)
	args.ptr(src)
	grid, block := elementwiseGrid(n, b.sms)
	return b.launch(kWidenBF16, grid, block)
}

// Binary computes dst = a op b element-wise, with b of a's shape, a row
// broadcast to every row, or a column broadcast to every column.
func (b *Backend) Binary(op backend.BinaryOp, dst, a, bt backend.Tensor) {
	if b.skip(backend.OpBinary) {
		return
	}
	rows, cols, bc, err := backend.CheckBinary(op, dst, a, bt)
	all := []backend.Tensor{dst, a, bt}
	if err != nil {
		b.Record(err)
		return
	}
	n := int64(rows) * int64(cols)
	if n == 0 {
		return
	}
	b.run(backend.OpBinary, all, func() error {
		p, err := b.dptrs(dst, a, bt)
		if err != nil {
			return err
		}
		mode := 0 // BC_NONE
		switch bc {
		case backend.RowBroadcast:
			mode = 1
		case backend.ColumnBroadcast:
			mode = 2
		}
		args := b.kernel(kBinary)
		args.i32(int(op))
		args.i32(mode)
		args.i64(n)
		args.i64(int64(cols))
		args.ptr(p[0])
		args.ptr(p[1])
		args.ptr(p[2])
		grid, block := elementwiseGrid(n, b.sms)
		return b.launch(kBinary, grid, block)
	})
}

// Scale computes dst = alpha·src; dst may alias src.
func (b *Backend) Scale(dst, src backend.Tensor, alpha float32) {
	if b.skip(backend.OpScale) {
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
	b.run(backend.OpScale, []backend.Tensor{dst, src}, func() error {
		p, err := b.dptrs(dst, src)
		if err != nil {
			return err
		}
		return b.scale(p[0], p[1], int64(n), alpha)
	})
}

func (b *Backend) scale(d, s uintptr, n int64, alpha float32) error {
	args := b.kernel(kScale)
	args.i64(n)
	args.f32(alpha)
	args.ptr(d)
	args.ptr(s)
	grid, block := elementwiseGrid(n, b.sms)
	return b.launch(kScale, grid, block)
}

// Axpy computes y += alpha·x.
func (b *Backend) Axpy(y backend.Tensor, alpha float32, x backend.Tensor) {
	if b.skip(backend.OpAxpy) {
		return
	}
	n, err := backend.CheckElementwise(backend.OpAxpy, y, x)
	if err != nil {
		b.Record(err)
		return
	}
	b.run(backend.OpAxpy, []backend.Tensor{y, x}, func() error {
		p, err := b.dptrs(y, x)
		if err != nil {
			return err
		}
		return b.axpy(p[0], p[1], int64(n), alpha)
	})
}

// Unary computes dst = f(src) element-wise in single precision with the
// device's math library (a few ulps); dst may alias src.
func (b *Backend) Unary(op backend.UnaryOp, dst, src backend.Tensor) {
	if b.skip(backend.OpUnary) {
		return
	}
	n, err := backend.CheckUnary(backend.OpUnary, op, dst, src)
	all := []backend.Tensor{dst, src}
	if err != nil {
		b.Record(err)
		return
	}
	if n == 0 {
		return
	}
	b.run(backend.OpUnary, all, func() error {
		p, err := b.dptrs(dst, src)
		if err != nil {
			return err
		}
		args := b.kernel(kUnary)
		args.i32(int(op))
		args.i64(int64(n))
		args.ptr(p[0])
		args.ptr(p[1])
		grid, block := elementwiseGrid(int64(n), b.sms)
		return b.launch(kUnary, grid, block)
	})
}

// UnaryGrad computes dx = dy ⊙ f'(x); dx may alias dy.
func (b *Backend) UnaryGrad(op backend.UnaryOp, dx, x, dy backend.Tensor) {
	if b.skip(backend.OpUnaryGrad) {
		return
	}
	n, err := backend.CheckUnary(backend.OpUnaryGrad, op, dx, x, dy)
	all := []backend.Tensor{dx, x, dy}
	if err != nil {
		b.Record(err)
		return
	}
	if n == 0 {
		return
	}
	b.run(backend.OpUnaryGrad, all, func() error {
		p, err := b.dptrs(dx, x, dy)
		if err != nil {
			return err
		}
		args := b.kernel(kUnaryGrad)
		args.i32(int(op))
		args.i64(int64(n))
		args.ptr(p[0])
		args.ptr(p[1])
		args.ptr(p[2])
		grid, block := elementwiseGrid(int64(n), b.sms)
		return b.launch(kUnaryGrad, grid, block)
	})
}

// AdamW performs one torch.optim.AdamW step in place on param, m and v,
// in double precision from the stored float32 values, as the CPU backend
// does. The bias corrections are computed once on the host.
func (b *Backend) AdamW(param, grad, m, v backend.Tensor, p backend.AdamWParams) {
	const op = backend.OpAdamW
	if b.skip(op) {
		return
	}
	n, err := backend.CheckAdamW(param, grad, m, v, p)
	if err != nil {
		b.Record(err)
		return
	}
	if n == 0 {
		return
	}
	b1, b2, lr := p.Beta1, p.Beta2, p.LR
	stepSize := lr / (1 - math.Pow(b1, float64(p.Step)))
	sqrtBC2 := math.Sqrt(1 - math.Pow(b2, float64(p.Step)))
	decay := 1 - lr*p.WeightDecay
	b.run(op, []backend.Tensor{param, grad, m, v}, func() error {
		ptrs, err := b.dptrs(param, grad, m, v)
		if err != nil {
			return err
		}
		args := b.kernel(kAdamW)
		args.i64(int64(n))
		args.f64(b1)
		args.f64(b2)
		args.f64(p.Eps)
		args.f64(stepSize)
		args.f64(sqrtBC2)
		args.f64(decay)
		for _, q := range ptrs {
			args.ptr(q)
		}
		grid, block := elementwiseGrid(int64(n), b.sms)
		return b.launch(kAdamW, grid, block)
	})
}

// kernelIntLimit is the largest extent passed to a kernel as a C int. The
// kernels step int counters past an extent by up to a block's width
// (j += blockDim.x over a row, col up to the next tile of 32), and must
// stay below 2^31 while doing so.
const kernelIntLimit = math.MaxInt32 - maxBlock

// check32 returns an error when an extent passed to a kernel as a C int
// exceeds kernelIntLimit.
func check32(what string, v int) error {
	if v > kernelIntLimit {
		return fmt.Errorf("%s %d exceeds the kernels' 32-bit limit (%d)", what, v, kernelIntLimit)
	}
	return nil
}
