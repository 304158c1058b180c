package cuda

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/internal/bf16"
	"github.com/sora-go/sora/backend/internal/devpool"
)

// buffer is a block of device memory holding float32 elements (see
// devpool.Buffer); bf16Buffer wraps it for bfloat16 ones.
type buffer = devpool.Buffer[Backend]

// newPool returns the backend's caching pool (see package devpool): blocks
// come from cuMemAlloc, go back with cuMemFree, and on an out-of-memory
// error the pool waits for the stream before returning its cache.
func (b *Backend) newPool() *devpool.Pool {
	return devpool.New(devpool.Device{
		Alloc: func(bytes int64) (uintptr, error) {
			var ptr uintptr
			if err := b.api.cu("cuMemAlloc_v2", call(b.api.cuMemAlloc, uintptr(unsafe.Pointer(&ptr)), uintptr(bytes))); err != nil {
				return 0, fmt.Errorf("%w (%d bytes requested; pool holds %d bytes in use)", err, bytes, b.pool.Stats().InUse)
			}
			return ptr, nil
		},
		Free: func(ptr uintptr) error {
			return b.api.cu("cuMemFree_v2", call(b.api.cuMemFree, ptr))
		},
		OutOfMemory: IsOutOfMemory,
		Sync: func() error {
			return b.api.cu("cuStreamSynchronize", call(b.api.cuStreamSynchronize, b.stream))
		},
	})
}

// reclaimAndRetry handles err, a failure for lack of device memory of a
// call that allocates outside the pool (a kernel launch, cuBLAS): when the
// pool caches blocks, it waits for the stream, returns them to the device
// and runs retry once. It returns nil when the retry succeeds, and
// otherwise err (wrapped, so errors.As and IsOutOfMemory still see it)
// with what the reclaim or the retry met.
func (b *Backend) reclaimAndRetry(err error, retry func() error) error {
	freed, rerr := b.pool.Reclaim()
	switch {
	case rerr != nil:
		return fmt.Errorf("%w (returning the pool's cached blocks to the device then failed: %v)", err, rerr)
	case freed == 0:
		return err
	}
	if rerr := retry(); rerr != nil {
		return fmt.Errorf("%w (retried after returning %d cached bytes to the device: %v)", err, freed, rerr)
	}
	return nil
}

// alloc returns a device block of at least bytes bytes and its class. The
// caller has entered the context.
func (b *Backend) alloc(bytes int64) (uintptr, int64, error) { return b.pool.Get(bytes) }

// Alloc returns a new contiguous tensor of float32 (4 bytes an element)
// or bfloat16 (2 bytes an element); its contents are unspecified. The
// block comes from the pool when one of its size class is free.
func (b *Backend) Alloc(dt backend.DType, shape ...int) (backend.Tensor, error) {
	if b.closed {
		return backend.Tensor{}, fmt.Errorf("cuda: Alloc %v: %w", backend.Shape(shape), errClosed)
	}
	n, err := backend.CheckAllocDType(dt, true, shape...)
	if err != nil {
		return backend.Tensor{}, fmt.Errorf("cuda: %w", err)
	}
	size := int64(dt.Size())
	if err := b.enter(); err != nil {
		b.leave()
		return backend.Tensor{}, fmt.Errorf("cuda: Alloc %v: %w", backend.Shape(shape), err)
	}
	ptr, class, err := b.alloc(int64(max(n, 1)) * size)
	b.leave()
	if err != nil {
		return backend.Tensor{}, fmt.Errorf("cuda: Alloc %v (%d bytes): %w", backend.Shape(shape), int64(n)*size, err)
	}
	buf := &buffer{Owner: b, Ptr: ptr, N: n, Class: class}
	var tb backend.Buffer = buf
	if dt == backend.BFloat16 {
		hb := &bf16Buffer{buffer{Owner: b, Ptr: ptr, N: n, Class: class}}
		buf, tb = &hb.buffer, hb
	}
	b.live[buf] = struct{}{}
	return backend.NewTensor(tb, 0, shape...)
}

// Free returns t's buffer to the pool. Freeing the zero Tensor does
// nothing; a foreign or already freed buffer is recorded as an error.
func (b *Backend) Free(t backend.Tensor) {
	if t.IsZero() {
		return
	}
	buf, _ := blockOf(t)
	switch {
	case buf == nil || buf.Owner != b:
		b.Record(&backend.OpError{Op: "free", Shapes: []backend.Shape{t.Shape()}, Err: errForeign})
		return
	case buf.Freed:
		if !b.closed {
			b.Record(&backend.OpError{Op: "free", Shapes: []backend.Shape{t.Shape()}, Err: errFreed})
		}
		return
	}
	buf.Freed = true
	delete(b.live, buf)
	b.pool.Put(buf.Ptr, buf.Class)
}

// BytesInUse returns the bytes of the pool's blocks: those of live
// tensors (rounded up to their size class) and the freed blocks it keeps
// cached.
func (b *Backend) BytesInUse() int64 {
	s := b.pool.Stats()
	return s.InUse + s.Cached
}

// MemoryUsage returns the pool's figures (see backend.MemoryUsage): the
// blocks handed out, for live tensors and an op's scratch memory, as
// InUse, and those with the freed blocks the pool keeps cached as
// Reserved, each with its peak since the backend opened or since
// ResetPeakMemory. What the driver and libraries allocate on their own
// (the context, the kernels' modules, cuBLAS's workspace) is not counted;
// nvidia-smi shows it too. DeviceTotal is the device's memory as
// cuDeviceTotalMem reported it when the backend opened.
func (b *Backend) MemoryUsage() backend.MemoryUsage {
	s := b.pool.Stats()
	return backend.MemoryUsage{InUse: s.InUse, PeakInUse: s.PeakInUse, Reserved: s.InUse + s.Cached, PeakReserved: s.PeakReserved,
		DeviceTotal: int64(min(b.info.totalMem, math.MaxInt64))}
}

// ResetPeakMemory sets the peaks to the present figures.
func (b *Backend) ResetPeakMemory() { b.pool.ResetPeak() }

var _ backend.MemoryTracker = (*Backend)(nil)

var (
	errForeign = fmt.Errorf("tensor belongs to another backend")
	errFreed   = fmt.Errorf("tensor's buffer was freed")
)

// blockOf returns the pool block behind t's buffer and its element size
// (4 for float32, 2 for bfloat16), or nil when the buffer is not of this
// package.
func blockOf(t backend.Tensor) (*buffer, int) {
	switch x := t.Buffer().(type) {
	case *buffer:
		return x, 4
	case *bf16Buffer:
		return &x.buffer, 2
	}
	return nil, 0
}

// dptr returns the device address of t's first element, checking that t
// is backed by a live buffer of this backend. The zero Tensor gives 0 (an
// absent optional argument).
func (b *Backend) dptr(t backend.Tensor) (uintptr, error) {
	if t.IsZero() {
		return 0, nil
	}
	buf, size := blockOf(t)
	if buf == nil || buf.Owner != b {
		return 0, errForeign
	}
	if buf.Freed {
		return 0, errFreed
	}
	return buf.Ptr + uintptr(t.Offset())*uintptr(size), nil
}

// dptrs resolves several tensors; the error names the argument. The
// result lives in b.ptrs, so that an op allocates nothing for it: it is
// valid until the next call of dptrs, which is enough because each op
// calls it once, uses the addresses while it enqueues its work, and a
// Backend serves one caller at a time. More tensors than b.ptrs holds get
// a new slice.
func (b *Backend) dptrs(ts ...backend.Tensor) ([]uintptr, error) {
	out := b.ptrs[:0]
	for i, t := range ts {
		p, err := b.dptr(t)
		if err != nil {
			return nil, fmt.Errorf("tensor argument %d: %w", i, err)
		}
		out = append(out, p)
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
// it (stream order protects it, see package devpool).
func (b *Backend) tempAlloc(bytes int64) (temp, error) {
	ptr, c, err := b.alloc(max(bytes, 1))
	return temp{ptr, c}, err
}

func (b *Backend) tempFree(t temp) {
	if t.ptr != 0 {
		b.pool.Put(t.ptr, t.class)
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

// Upload copies src into the contiguous tensor dst. Into a bfloat16
// tensor it rounds on the host, to nearest even (NaN stays NaN), and
// copies the two-byte values.
func (b *Backend) Upload(dst backend.Tensor, src []float32) {
	const op = "upload"
	if b.skip(op) {
		return
	}
	if err := backend.CheckTransferDType(op, dst, len(src), true); err != nil {
		b.Record(err)
		return
	}
	all := []backend.Tensor{dst}
	b.run(op, all, func() error {
		d, err := b.dptr(dst)
		if err != nil || len(src) == 0 {
			return err
		}
		if dst.DType() == backend.BFloat16 {
			// The driver stages pageable memory before the call
			// returns, so h may go as soon as upload does.
			h := make([]uint16, len(src))
			bf16.Best().FromFloat32(h, src)
			return b.upload(d, unsafe.Pointer(&h[0]), len(h)*2)
		}
		return b.upload(d, unsafe.Pointer(&src[0]), len(src)*4)
	})
}

// Download waits for pending work, copies the contiguous tensor src into
// dst and returns, clearing it, the first error recorded so far. A
// bfloat16 src comes over as two-byte values, widened exactly on the
// host.
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
		if src.DType() == backend.BFloat16 {
			return b.downloadBF16(dst, s)
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

// downloadBF16 copies len(dst) bfloat16 values from device address s to
// the host and widens them into dst.
func (b *Backend) downloadBF16(dst []float32, s uintptr) error {
	if len(dst) == 0 {
		return b.api.cu("cuStreamSynchronize", call(b.api.cuStreamSynchronize, b.stream))
	}
	h := make([]uint16, len(dst))
	var pin runtime.Pinner
	pin.Pin(&h[0])
	defer pin.Unpin()
	if err := b.api.cu("cuMemcpyDtoHAsync_v2", call(b.api.cuMemcpyDtoHAsync, uintptr(unsafe.Pointer(&h[0])), s, uintptr(len(h)*2), b.stream)); err != nil {
		return err
	}
	// h must not be read (nor unpinned) before the copy is done.
	if err := b.api.cu("cuStreamSynchronize", call(b.api.cuStreamSynchronize, b.stream)); err != nil {
		return err
	}
	bf16.Best().ToFloat32(dst, h)
	return nil
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

// uploadScratch copies host values (int32 ids, float64 frequencies) into
// a scratch block on the stream. The caller frees the block with tempFree
// after enqueuing its use.
func uploadScratch[T int32 | float64](b *Backend, v []T) (temp, error) {
	size := int(unsafe.Sizeof(T(0)))
	t, err := b.tempAlloc(int64(len(v)) * int64(size))
	if err != nil {
		return temp{}, err
	}
	if len(v) > 0 {
		if err := b.upload(t.ptr, unsafe.Pointer(&v[0]), len(v)*size); err != nil {
			b.tempFree(t)
			return temp{}, err
		}
	}
	return t, nil
}
