package cpu

import (
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/sora-go/sora/backend"
)

// buffer is a block of host memory owned by one Backend.
type buffer struct {
	data  []float32 // nil once freed
	n     int       // the length at allocation, kept after Free
	owner *Backend
}

// Len returns the number of float32 elements allocated.
func (f *buffer) Len() int { return f.n }

// DType returns backend.Float32.
func (f *buffer) DType() backend.DType { return backend.Float32 }

// bytesCounter counts live bytes. It is atomic so that BytesInUse may be
// read from a goroutine other than the one issuing ops (a progress
// reporter, a test).
type bytesCounter struct{ n atomic.Int64 }

// Alloc returns a new zeroed contiguous float32 tensor of the given shape.
// It fails for other dtypes, negative extents and sizes that overflow.
func (b *Backend) Alloc(dt backend.DType, shape ...int) (backend.Tensor, error) {
	if b.closed {
		return backend.Tensor{}, fmt.Errorf("cpu: Alloc %v: %w", backend.Shape(shape), errClosed)
	}
	n, err := backend.CheckAlloc(dt, shape...)
	if err != nil {
		return backend.Tensor{}, fmt.Errorf("cpu: %w", err)
	}
	data, err := makeFloats(n)
	if err != nil {
		return backend.Tensor{}, fmt.Errorf("cpu: Alloc %v: %w", backend.Shape(shape), err)
	}
	buf := &buffer{data: data, n: n, owner: b}
	b.inUse.n.Add(int64(n) * 4)
	return backend.NewTensor(buf, 0, shape...)
}

// makeFloats allocates n zeroed floats, turning the runtime's refusal of a
// length beyond what the platform can address into an error. (Running out
// of memory for a length it accepts stays fatal: Go cannot recover that.)
func makeFloats(n int) (data []float32, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot allocate %d elements: %v", n, r)
		}
	}()
	return make([]float32, n), nil
}

// Free releases t's buffer. Freeing the zero Tensor does nothing; freeing a
// buffer twice or one of another backend records an error.
func (b *Backend) Free(t backend.Tensor) {
	if t.IsZero() {
		return
	}
	buf, ok := t.Buffer().(*buffer)
	if !ok || buf.owner != b {
		b.Record(&backend.OpError{Op: "free", Shapes: []backend.Shape{t.Shape()}, Err: errForeign})
		return
	}
	if buf.data == nil && buf.n > 0 {
		b.Record(&backend.OpError{Op: "free", Shapes: []backend.Shape{t.Shape()}, Err: errFreed})
		return
	}
	if buf.data == nil { // empty buffer: nothing held, nothing to count
		return
	}
	buf.data = nil
	b.inUse.n.Add(-int64(buf.n) * 4)
}

// BytesInUse returns the bytes held by live allocations: 4 per element of
// every buffer allocated and not yet freed.
func (b *Backend) BytesInUse() int64 { return b.inUse.n.Load() }

var (
	errForeign = fmt.Errorf("tensor belongs to another backend")
	errFreed   = fmt.Errorf("tensor's buffer was freed")
)

// view returns the elements of the contiguous tensor t, or an error when t
// is not backed by a live buffer of this backend. Callers have validated t.
func (b *Backend) view(t backend.Tensor) ([]float32, error) {
	buf, ok := t.Buffer().(*buffer)
	if !ok || buf.owner != b {
		return nil, errForeign
	}
	if buf.data == nil && buf.n > 0 {
		return nil, errFreed
	}
	off := t.Offset()
	return buf.data[off : off+t.Len() : off+t.Len()], nil
}

// maxViews is the most tensors one op resolves (LayerNormGrad's six).
const maxViews = 6

// views resolves up to maxViews contiguous tensors for op, in order. A zero
// Tensor (an absent optional argument) resolves to nil. On failure it
// records an *OpError naming op and all of ts, and returns ok = false. It
// returns an array, and copies ts only for the error, so that resolving
// allocates nothing.
func (b *Backend) views(op backend.Op, ts ...backend.Tensor) (out [maxViews][]float32, ok bool) {
	if len(ts) > maxViews {
		panic("cpu: views of more than maxViews tensors")
	}
	for i, t := range ts {
		if t.IsZero() {
			continue
		}
		v, err := b.view(t)
		if err != nil {
			b.Record(backend.Errorf(op, slices.Clone(ts), "tensor argument %d: %w", i, err))
			return out, false
		}
		out[i] = v
	}
	return out, true
}

// Upload copies src into the contiguous tensor dst.
func (b *Backend) Upload(dst backend.Tensor, src []float32) {
	const op = "upload"
	if b.skip(op) {
		return
	}
	if err := backend.CheckTransfer(op, dst, len(src)); err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(op, dst)
	if !ok {
		return
	}
	copy(v[0], src)
}

// Download copies the contiguous tensor src into dst and returns, clearing
// it, the first error recorded so far, which may be this call's own.
func (b *Backend) Download(dst []float32, src backend.Tensor) error {
	const op = "download"
	if b.closed {
		b.Record(&backend.OpError{Op: op, Err: errClosed})
		return b.Take()
	}
	if err := backend.CheckTransfer(op, src, len(dst)); err != nil {
		b.Record(err)
		return b.Take()
	}
	if v, ok := b.views(op, src); ok {
		copy(dst, v[0])
	}
	return b.Take()
}

// Fill sets every element of the contiguous tensor dst to v.
func (b *Backend) Fill(dst backend.Tensor, v float32) {
	if b.skip(backend.OpFill) {
		return
	}
	if err := backend.CheckFill(dst); err != nil {
		b.Record(err)
		return
	}
	d, ok := b.views(backend.OpFill, dst)
	if !ok {
		return
	}
	s := d[0]
	k := b.kernels(4 * len(s))
	b.streamFor(k, len(s), 1, func(lo, hi int) { k.Fill(s[lo:hi], v) })
}
