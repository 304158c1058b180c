package cuda

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/sora-go/sora/backend"
)

// buffer is a block of device memory holding float32 elements.
type buffer struct {
	b     *Backend
	ptr   uintptr // device address
	n     int     // elements
	class int64   // bytes of the pool block
	freed bool
}

// Len returns the number of elements.
func (x *buffer) Len() int { return x.n }

// DType returns backend.Float32.
func (x *buffer) DType() backend.DType { return backend.Float32 }

// Pool block sizes.
const (
	minClass  = 512     // smallest block; also keeps every block 256-byte aligned in practice
	pow2Limit = 1 << 20 // powers of two up to 1 MiB
	bigStep   = 1 << 20 // then whole MiB
)

// sizeClass rounds a request up to the pool's block size: powers of two
// from 512 bytes to 1 MiB, then whole MiB. Rounding wastes at most half a
// small block and less than 1 MiB of a big one, and gives a training loop,
// which frees and reallocates the same shapes every step, exact reuse.
func sizeClass(bytes int64) int64 {
	if bytes <= minClass {
		return minClass
	}
	if bytes <= pow2Limit {
		c := int64(minClass)
		for c < bytes {
			c <<= 1
		}
		return c
	}
	return (bytes + bigStep - 1) / bigStep * bigStep
}

// pool caches freed device blocks by size class, so that a steady-state
// loop calls no cuMemAlloc. A block put back may be handed out again at
// once, before the stream has run the work that used it: every use of
// device memory is ordered on the backend's one stream, so the new owner's
// work runs after the old owner's. Blocks go back to the device
// (cuMemFree, which waits for the device) only after the stream is
// synchronised: on Close, or when an allocation fails for lack of memory.
type pool struct {
	free          map[int64][]uintptr
	cached        int64 // bytes in free
	inUse         int64 // bytes handed out
	allocs, frees int   // cuMemAlloc and cuMemFree calls
}

func newPool() pool { return pool{free: map[int64][]uintptr{}} }

// take returns a cached block of class c, if any.
func (p *pool) take(c int64) (uintptr, bool) {
	l := p.free[c]
	if len(l) == 0 {
		return 0, false
	}
	ptr := l[len(l)-1]
	p.free[c] = l[:len(l)-1]
	p.cached -= c
	p.inUse += c
	return ptr, true
}

// put returns a block to the cache.
func (p *pool) put(ptr uintptr, c int64) {
	p.free[c] = append(p.free[c], ptr)
	p.cached += c
	p.inUse -= c
}

// release frees every cached block. The stream must be synchronised.
func (p *pool) release(a *api) error {
	var first error
	for c, list := range p.free {
		for _, ptr := range list {
			p.frees++
			if err := a.cu("cuMemFree_v2", call(a.cuMemFree, ptr)); err != nil && first == nil {
				first = err
			}
		}
		delete(p.free, c)
	}
	p.cached = 0
	return first
}

// alloc returns a device block of at least bytes bytes and its class. When
// the device is out of memory it synchronises, returns the cache to the
// device and tries once more. The caller has entered the context.
func (b *Backend) alloc(bytes int64) (uintptr, int64, error) {
	c := sizeClass(bytes)
	if ptr, ok := b.pool.take(c); ok {
		return ptr, c, nil
	}
	ptr, err := b.deviceAlloc(c)
	if err != nil && IsOutOfMemory(err) && b.pool.cached > 0 {
		if serr := b.api.cu("cuStreamSynchronize", call(b.api.cuStreamSynchronize, b.stream)); serr != nil {
			return 0, 0, serr
		}
		if rerr := b.pool.release(b.api); rerr != nil {
			return 0, 0, rerr
		}
		ptr, err = b.deviceAlloc(c)
	}
	if err != nil {
		return 0, 0, err
	}
	b.pool.inUse += c
	return ptr, c, nil
}

func (b *Backend) deviceAlloc(bytes int64) (uintptr, error) {
	var ptr uintptr
	b.pool.allocs++
	if err := b.api.cu("cuMemAlloc_v2", call(b.api.cuMemAlloc, uintptr(unsafe.Pointer(&ptr)), uintptr(bytes))); err != nil {
		return 0, fmt.Errorf("%w (%d bytes requested; pool holds %d bytes in use)", err, bytes, b.pool.inUse)
	}
	return ptr, nil
}

// maxElements bounds one allocation so that its byte size fits in an
// int64 with room to spare.
const maxElements = math.MaxInt64 / 16

// Alloc returns a new contiguous float32 tensor; its contents are
// unspecified. The block comes from the pool when one of its size class
// is free.
func (b *Backend) Alloc(dt backend.DType, shape ...int) (backend.Tensor, error) {
	if b.closed {
		return backend.Tensor{}, fmt.Errorf("cuda: Alloc %v: %w", backend.Shape(shape), errClosed)
	}
	if dt != backend.Float32 {
		return backend.Tensor{}, fmt.Errorf("cuda: Alloc %v: dtype %s not supported, want float32", backend.Shape(shape), dt)
	}
	n := 1
	for _, d := range shape {
		if d < 0 {
			return backend.Tensor{}, fmt.Errorf("cuda: Alloc %v: negative extent", backend.Shape(shape))
		}
		if d != 0 && n > maxElements/d {
			return backend.Tensor{}, fmt.Errorf("cuda: Alloc %v: size overflows", backend.Shape(shape))
		}
		n *= d
	}
	if err := b.enter(); err != nil {
		b.leave()
		return backend.Tensor{}, fmt.Errorf("cuda: Alloc %v: %w", backend.Shape(shape), err)
	}
	ptr, class, err := b.alloc(int64(max(n, 1)) * 4)
	b.leave()
	if err != nil {
		return backend.Tensor{}, fmt.Errorf("cuda: Alloc %v (%d bytes): %w", backend.Shape(shape), int64(n)*4, err)
	}
	buf := &buffer{b: b, ptr: ptr, n: n, class: class}
	b.live[buf] = struct{}{}
	return backend.NewTensor(buf, 0, shape...)
}

// Free returns t's buffer to the pool. Freeing the zero Tensor does
// nothing; a foreign or already freed buffer is recorded as an error.
func (b *Backend) Free(t backend.Tensor) {
	if t.IsZero() {
		return
	}
	buf, ok := t.Buffer().(*buffer)
	switch {
	case !ok || buf.b != b:
		b.Record(&backend.OpError{Op: "free", Shapes: []backend.Shape{t.Shape()}, Err: errForeign})
		return
	case buf.freed:
		if !b.closed {
			b.Record(&backend.OpError{Op: "free", Shapes: []backend.Shape{t.Shape()}, Err: errFreed})
		}
		return
	}
	buf.freed = true
	delete(b.live, buf)
	b.pool.put(buf.ptr, buf.class)
}

// BytesInUse returns the bytes of the pool's blocks: those of live
// tensors (rounded up to their size class) and the freed blocks it keeps
// cached.
func (b *Backend) BytesInUse() int64 { return b.pool.inUse + b.pool.cached }

var (
	errForeign = fmt.Errorf("tensor belongs to another backend")
	errFreed   = fmt.Errorf("tensor's buffer was freed")
)

// dptr returns the device address of t's first element, checking that t
// is backed by a live buffer of this backend. The zero Tensor gives 0 (an
// absent optional argument).
func (b *Backend) dptr(t backend.Tensor) (uintptr, error) {
	if t.IsZero() {
		return 0, nil
	}
	buf, ok := t.Buffer().(*buffer)
	if !ok || buf.b != b {
		return 0, errForeign
	}
	if buf.freed {
		return 0, errFreed
	}
	return buf.ptr + uintptr(t.Offset())*4, nil
}

// dptrs resolves several tensors; the error names the argument.
func (b *Backend) dptrs(ts ...backend.Tensor) ([]uintptr, error) {
	out := make([]uintptr, len(ts))
	for i, t := range ts {
		p, err := b.dptr(t)
		if err != nil {
			return nil, fmt.Errorf("tensor argument %d: %w", i, err)
		}
		out[i] = p
	}
	return out, nil
}

// temp is a device scratch block for the duration of one op.
type temp struct {
	ptr   uintptr
	class int64
}

// tempAlloc takes a scratch block of at least bytes bytes from the pool;
// tempFree gives it back as soon as the op has enqueued the work that uses
// it (stream order protects it, see pool).
func (b *Backend) tempAlloc(bytes int64) (temp, error) {
	ptr, c, err := b.alloc(max(bytes, 1))
	return temp{ptr, c}, err
}

func (b *Backend) tempFree(t temp) {
	if t.ptr != 0 {
		b.pool.put(t.ptr, t.class)
	}
}

// upload copies n bytes from host memory at src to device address dst on
// the stream. The driver stages pageable memory before the call returns
// (or completes the copy), so src may be reused afterwards; it is pinned
// for the call itself.
func (b *Backend) upload(dst uintptr, src unsafe.Pointer, n int) error {
	if n == 0 {
		return nil
	}
	var pin runtime.Pinner
	pin.Pin(src)
	defer pin.Unpin()
	return b.api.cu("cuMemcpyHtoDAsync_v2", call(b.api.cuMemcpyHtoDAsync, dst, uintptr(src), uintptr(n), b.stream))
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
	all := []backend.Tensor{dst}
	b.run(op, all, func() error {
		d, err := b.dptr(dst)
		if err != nil || len(src) == 0 {
			return err
		}
		return b.upload(d, unsafe.Pointer(&src[0]), len(src)*4)
	})
}

// Download waits for pending work, copies the contiguous tensor src into
// dst and returns, clearing it, the first error recorded so far.
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
	if b.Failed() {
		// Earlier work failed: its results, and so src, are not to be
		// trusted. Wait for the stream anyway, so the error is complete.
		b.syncStream()
		return b.Take()
	}
	b.run(op, []backend.Tensor{src}, func() error {
		s, err := b.dptr(src)
		if err != nil {
			return err
		}
		if len(dst) > 0 {
			var pin runtime.Pinner
			pin.Pin(&dst[0])
			defer pin.Unpin()
			if err := b.api.cu("cuMemcpyDtoHAsync_v2", call(b.api.cuMemcpyDtoHAsync, uintptr(unsafe.Pointer(&dst[0])), s, uintptr(len(dst)*4), b.stream)); err != nil {
				return err
			}
		}
		// dst must not be read (nor unpinned) before the copy is done.
		return b.api.cu("cuStreamSynchronize", call(b.api.cuStreamSynchronize, b.stream))
	})
	return b.Take()
}

// Fill sets every element of the contiguous tensor dst to v, with
// cuMemsetD32Async on the bits of v.
func (b *Backend) Fill(dst backend.Tensor, v float32) {
	if b.skip(backend.OpFill) {
		return
	}
	if err := backend.CheckFill(dst); err != nil {
		b.Record(err)
		return
	}
	b.run(backend.OpFill, []backend.Tensor{dst}, func() error {
		d, err := b.dptr(dst)
		if err != nil || dst.Len() == 0 {
			return err
		}
		return b.api.cu("cuMemsetD32Async", call(b.api.cuMemsetD32Async, d, uintptr(math.Float32bits(v)), uintptr(dst.Len()), b.stream))
	})
}

// uploadInts copies host int32 values into a scratch block. The caller
// frees the block after enqueuing its use.
func (b *Backend) uploadInts(v []int32) (temp, error) {
	t, err := b.tempAlloc(int64(len(v)) * 4)
	if err != nil {
		return temp{}, err
	}
	if len(v) > 0 {
		if err := b.upload(t.ptr, unsafe.Pointer(&v[0]), len(v)*4); err != nil {
			b.tempFree(t)
			return temp{}, err
		}
	}
	return t, nil
}
