package cpu

import (
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/hostmem"
)

// buffer is a block of host memory owned by one Backend: float32 elements
// in data or, for a BFloat16 buffer, bfloat16 ones in half.
type buffer struct {
	data  []float32 // float32 elements; nil once freed, and for bfloat16
	half  []uint16  // bfloat16 elements (a float32's top 16 bits); nil once freed, and for float32
	n     int       // the length at allocation, kept after Free
	dt    backend.DType
	owner *Backend
}

// Len returns the number of elements allocated.
func (f *buffer) Len() int { return f.n }

// DType returns backend.Float32 or backend.BFloat16.
func (f *buffer) DType() backend.DType { return f.dt }

// freed reports whether the buffer held elements and Free released them.
func (f *buffer) freed() bool { return f.n > 0 && f.data == nil && f.half == nil }

// bytesCounter counts live bytes and their high-water mark. It is atomic
// so that BytesInUse and MemoryUsage may be read from a goroutine other
// than the one issuing ops (a progress reporter, a test); only that one
// changes it.
type bytesCounter struct{ n, peak atomic.Int64 }

// add adds d (negative for a free) to the live bytes and raises the peak
// to the new count.
func (c *bytesCounter) add(d int64) {
	n := c.n.Add(d)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// Alloc returns a new zeroed contiguous tensor of the given shape, float32
// or bfloat16 (2 bytes an element). It fails for other dtypes, negative
// extents and sizes that overflow.
func (b *Backend) Alloc(dt backend.DType, shape ...int) (backend.Tensor, error) {
	if b.closed {
		return backend.Tensor{}, fmt.Errorf("cpu: Alloc %v: %w", backend.Shape(shape), errClosed)
	}
	n, err := backend.CheckAllocDType(dt, true, shape...)
	if err != nil {
		return backend.Tensor{}, fmt.Errorf("cpu: %w", err)
	}
	bytes := int64(n) * int64(dt.Size())
	if lim, held := b.opts.MemoryLimit, b.reserved.n.Load(); lim > 0 && bytes > lim-held {
		return backend.Tensor{}, fmt.Errorf("cpu: Alloc %v: %w", backend.Shape(shape), &limitError{want: bytes, held: held, limit: lim})
	}
	buf := &buffer{n: n, dt: dt, owner: b}
	if dt == backend.BFloat16 {
		buf.half, err = makeSlice[uint16](n)
	} else {
		buf.data, err = makeSlice[float32](n)
	}
	if err != nil {
		return backend.Tensor{}, fmt.Errorf("cpu: Alloc %v: %w", backend.Shape(shape), err)
	}
	b.inUse.add(bytes)
	b.reserved.add(bytes)
	return backend.NewTensor(buf, 0, shape...)
}

// makeSlice allocates n zeroed elements, turning the runtime's refusal of
// a length beyond what the platform can address into an *allocError.
// (Running out of memory for a length it accepts stays fatal: Go cannot
// recover that.)
func makeSlice[T float32 | uint16](n int) (data []T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &allocError{n: n, why: r}
		}
	}()
	return make([]T, n), nil
}

// allocError is the runtime's refusal to make a buffer of n elements
// (why is what it panicked with): more memory than the host can hold, so
// it matches backend.ErrOutOfMemory.
type allocError struct {
	n   int
	why any
}

func (e *allocError) Error() string {
	return fmt.Sprintf("cannot allocate %d elements: %v", e.n, e.why)
}

// Is reports whether target is backend.ErrOutOfMemory.
func (e *allocError) Is(target error) bool { return target == backend.ErrOutOfMemory }

// limitError is an Alloc refused by Options.MemoryLimit: want more bytes
// beside the held ones would pass the limit. It matches
// backend.ErrOutOfMemory.
type limitError struct{ want, held, limit int64 }

func (e *limitError) Error() string {
	return fmt.Sprintf("%s beside the %s the backend holds would pass its memory limit of %s (%s; by default the memory and swap the host had free when the backend opened)",
		hostmem.FormatSize(e.want), hostmem.FormatSize(e.held), hostmem.FormatSize(e.limit), EnvMemoryLimit)
}

// Is reports whether target is backend.ErrOutOfMemory.
func (e *limitError) Is(target error) bool { return target == backend.ErrOutOfMemory }

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
	if buf.freed() {
		b.Record(&backend.OpError{Op: "free", Shapes: []backend.Shape{t.Shape()}, Err: errFreed})
		return
	}
	if buf.data == nil && buf.half == nil { // empty buffer: nothing held, nothing to count
		return
	}
	buf.data, buf.half = nil, nil
	bytes := int64(buf.n) * int64(buf.dt.Size())
	b.inUse.add(-bytes)
	b.reserved.add(-bytes)
}

// BytesInUse returns the bytes held by live allocations: 4 per element of
// every float32 buffer and 2 per element of every bfloat16 one allocated
// and not yet freed.
func (b *Backend) BytesInUse() int64 { return b.inUse.n.Load() }

// MemoryUsage returns the bytes of live tensors' buffers as InUse, as
// BytesInUse counts them, and as Reserved those plus the scratch the
// backend keeps between ops to reuse, with each one's peak since New or
// the last ResetPeakMemory. The CPU keeps no cache of freed buffers; the
// scratch is what Reserved adds:
//
//   - the row ops' temporary rows and partial sums, one set per parallel
//     chunk (Softmax's rows when it streams its output, the column-sum
//     reductions' partials);
//   - the attention ops' per-worker blocks (scores, probabilities and
//     their gradients, for a block of query rows against all keys) and
//     AttentionGrad's private copies of dk and dv for the splits of its
//     backward (2·(splits−1)·len(dk) floats: 120 MiB at batch 1, one
//     key/value head, 8192 keys of 128 dimensions), and the integers of
//     packed documents' block plans;
//   - the matrix-multiply engines' packing workspaces (per thread, plus a
//     shared packed B and the buffers of products computed transposed).
//
// That scratch grows to the largest shapes the ops have seen and stays
// until Close drops it, so Reserved can stay well above InUse after the
// tensors of a big step are freed; it counts each buffer's capacity
// exactly as the backend (re)allocates it. It still leaves out the Go
// runtime's own overhead (the heap's slack and size-class rounding, the
// collector's metadata, memory freed but not yet collected or returned to
// the system, the few slice headers that index the scratch), goroutine
// stacks, the row kernels' small stack buffers, the fixed partial-tile
// scratch each matrix-multiply thread is made with (1.5 KiB a thread),
// what an op allocates and drops within the call (RoPE's sine and cosine
// tables, a strided Copy's indices), a BLAS library's own buffers
// (Options.BLAS) and what the rest of the program holds (a model's file
// while it loads, a tokenizer). DeviceTotal is 0. It may be called from
// any goroutine; one running beside an op may see the growth of the
// engines' workspaces only once the op returns.
func (b *Backend) MemoryUsage() backend.MemoryUsage {
	n := b.inUse.n.Load()
	// An Alloc on another goroutine may have raised n and not yet the
	// peak, or raised n after r was read: tensors count in both, so
	// Reserved and its peak are never less than InUse and its peak.
	p := max(b.inUse.peak.Load(), n)
	r := max(b.reserved.n.Load(), n)
	rp := max(b.reserved.peak.Load(), r, p)
	return backend.MemoryUsage{InUse: n, PeakInUse: p, Reserved: r, PeakReserved: rp}
}

// ResetPeakMemory sets PeakInUse to the tensors' bytes live now and
// PeakReserved to those plus the scratch held now.
func (b *Backend) ResetPeakMemory() {
	b.inUse.peak.Store(b.inUse.n.Load())
	b.reserved.peak.Store(b.reserved.n.Load())
}

// scratchBytes returns the bytes of scratch counted in Reserved: what
// Reserved holds beyond the tensors.
func (b *Backend) scratchBytes() int64 { return b.reserved.n.Load() - b.inUse.n.Load() }

var _ backend.MemoryTracker = (*Backend)(nil)

var (
	errForeign = fmt.Errorf("tensor belongs to another backend")
	errFreed   = fmt.Errorf("tensor's buffer was freed")
	errDType   = fmt.Errorf("tensor's buffer has another dtype than its checks allowed")
)

// live returns t's buffer when it is a live one of this backend with
// dtype dt. Callers have validated t, so a dtype mismatch is a bug in
// this package; it is reported rather than read as the wrong type.
func (b *Backend) live(t backend.Tensor, dt backend.DType) (*buffer, error) {
	buf, ok := t.Buffer().(*buffer)
	switch {
	case !ok || buf.owner != b:
		return nil, errForeign
	case buf.freed():
		return nil, errFreed
	case buf.dt != dt:
		return nil, errDType
	}
	return buf, nil
}

// view returns the elements of the contiguous float32 tensor t, or an
// error when t is not backed by a live float32 buffer of this backend.
// Callers have validated t.
func (b *Backend) view(t backend.Tensor) ([]float32, error) {
	buf, err := b.live(t, backend.Float32)
	if err != nil {
		return nil, err
	}
	off := t.Offset()
	return buf.data[off : off+t.Len() : off+t.Len()], nil
}

// viewBF16 is view for a contiguous bfloat16 tensor.
func (b *Backend) viewBF16(t backend.Tensor) ([]uint16, error) {
	buf, err := b.live(t, backend.BFloat16)
	if err != nil {
		return nil, err
	}
	off := t.Offset()
	return buf.half[off : off+t.Len() : off+t.Len()], nil
}

// maxViews is the most tensors one op resolves (AttentionGrad's nine).
const maxViews = 9

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

// Upload copies src into the contiguous tensor dst, rounding each value
// to nearest even when dst is bfloat16.
func (b *Backend) Upload(dst backend.Tensor, src []float32) {
	const op = "upload"
	if b.skip(op) {
		return
	}
	if err := backend.CheckTransferDType(op, dst, len(src), true); err != nil {
		b.Record(err)
		return
	}
	if dst.DType() == backend.BFloat16 {
		h, err := b.viewBF16(dst)
		if err != nil {
			b.Record(backend.Errorf(op, []backend.Tensor{dst}, "tensor argument 0: %w", err))
			return
		}
		b.parallelFor(len(h), 1, func(lo, hi int) { b.conv.FromFloat32(h[lo:hi], src[lo:hi]) })
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
	if err := backend.CheckTransferDType(op, src, len(dst), true); err != nil {
		b.Record(err)
		return b.Take()
	}
	if src.DType() == backend.BFloat16 {
		if h, err := b.viewBF16(src); err != nil {
			b.Record(backend.Errorf(op, []backend.Tensor{src}, "tensor argument 0: %w", err))
		} else {
			b.parallelFor(len(h), 1, func(lo, hi int) { b.conv.ToFloat32(dst[lo:hi], h[lo:hi]) })
		}
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
	k := b.kern
	if 4*len(s) >= b.fillStream {
		k = b.kern.Streaming()
	}
	b.streamFor(k, len(s), 1, func(lo, hi int) { k.Fill(s[lo:hi], v) })
}

// fillStreamBytes is the least size from which Fill streams its stores,
// where the other ops stream from the last-level cache's size (see
// Backend.kernels): Fill takes the larger of the two. Fill reads nothing,
// so streaming's gain, the cache left to an op's inputs, is not there to
// have, while its cost is: on the project's Zen 5 (whose L3 cpuid does
// not report, so that the other ops stream from 8 MiB), one thread,
// best of eleven calls, non-temporal stores filled at about 45 GB/s up to
// 16 MB and 35–43 GB/s beyond, ordinary ones at 85–100 GB/s up to 16 MB,
// about 50 at 32 MB, even with streaming at 64 MB, and behind only from
// 128 MB (34 against 35–38 GB/s). The ops that read as well as write ran
// faster streaming at every size from 4 MB (exp 0.79–0.82 → 0.91–0.92 of
// the copy at 16 MB, add 0.72–0.76 → 0.91–1.00), so the rule is Fill's
// alone.
const fillStreamBytes = 64 << 20
