package ascend

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/internal/devpool"
)

// buffer is a block of device memory holding float32 elements (see
// devpool.Buffer).
type buffer = devpool.Buffer[Backend]

// newDevicePool returns the backend's caching pool of device memory (see
// package devpool), so that the temporaries and workspaces of every op do
// not each cost an aclrtMalloc. On an out-of-memory error the pool waits
// for the stream (a failure is recorded) before returning its cache.
func (b *Backend) newDevicePool() *devpool.Pool {
	return devpool.New(devpool.Device{
		Alloc: func(bytes int64) (uintptr, error) {
			var ptr uintptr
			r := ccall(b.lib.malloc, uintptr(unsafe.Pointer(&ptr)), uintptr(bytes), mallocHugeFirst)
			if err := b.lib.status("aclrtMalloc", r); err != nil {
				return 0, err
			}
			return ptr, nil
		},
		Free:        func(ptr uintptr) error { return b.lib.status("aclrtFree", ccall(b.lib.free, ptr)) },
		OutOfMemory: IsOutOfMemory,
		Sync:        func() error { b.syncStream(); return nil },
	})
}

// alloc returns a device block of at least bytes bytes and its class.
func (b *Backend) alloc(bytes int64) (uintptr, int64, error) { return b.pool.Get(bytes) }

// put returns a block to the pool.
func (b *Backend) put(ptr uintptr, class int64) { b.pool.Put(ptr, class) }

// hostPool holds page-locked host memory (aclrtMallocHost) for staging
// uploads: aclrtMemcpyAsync reads its source when the copy runs, after
// Upload has returned, so the data cannot stay in the caller's slice.
// Blocks used by queued copies become free again after a successful
// stream synchronisation.
type hostPool struct {
	blocks  *devpool.Pool
	pending []hostBlock
	bytes   int64 // bytes in pending
}

type hostBlock struct {
	ptr   uintptr
	class int64
}

// stagingLimit bounds the staging memory held by unsynchronised uploads;
// past it Upload synchronises first.
const stagingLimit = 256 << 20

// newHostPool returns an empty staging pool whose blocks come from
// aclrtMallocHost.
func (b *Backend) newHostPool() hostPool {
	return hostPool{blocks: devpool.New(devpool.Device{
		Alloc: func(bytes int64) (uintptr, error) {
			var ptr uintptr
			r := ccall(b.lib.mallocHost, uintptr(unsafe.Pointer(&ptr)), uintptr(bytes))
			if err := b.lib.status("aclrtMallocHost", r); err != nil {
				return 0, err
			}
			return ptr, nil
		},
		Free: func(ptr uintptr) error { return b.lib.status("aclrtFreeHost", ccall(b.lib.freeHost, ptr)) },
	})}
}

// recycle makes the blocks of the copies queued so far free again; the
// stream must have been synchronised.
func (h *hostPool) recycle() {
	for _, blk := range h.pending {
		h.blocks.Put(blk.ptr, blk.class)
	}
	h.pending = h.pending[:0]
	h.bytes = 0
}

// release returns every staging block to the system; the stream must have
// been synchronised.
func (h *hostPool) release() error {
	h.recycle()
	return h.blocks.Release()
}

// asyncCopyAlign is the alignment CANN's aclrtMemcpyAsync documentation
// requires of both the source and the destination address ("must be
// 64-byte aligned"; synchronous aclrtMemcpy has no such rule). Staging
// blocks (whole aclrtMallocHost allocations) and pool blocks (whole
// aclrtMalloc allocations) start aligned; a view at an element offset into
// a buffer usually does not.
const asyncCopyAlign = 64

// stage copies data into a staging block and queues its copy to device
// address dst (with room for destMax bytes), which must be aligned to
// asyncCopyAlign. The block stays pending until the next successful
// synchronisation.
func (b *Backend) stage(dst uintptr, destMax int64, data unsafe.Pointer, bytes int64) error {
	if bytes == 0 {
		return nil
	}
	if dst%asyncCopyAlign != 0 {
		// What a device does with a misaligned asynchronous copy is not
		// documented; refuse it here rather than find out.
		return fmt.Errorf("ascend: internal error: asynchronous copy to device address %#x, which is not %d-byte aligned",
			dst, asyncCopyAlign)
	}
	if b.host.bytes+bytes > stagingLimit && len(b.host.pending) > 0 {
		if !b.syncStream() {
			return fmt.Errorf("ascend: synchronising before staging more uploads failed")
		}
	}
	ptr, class, err := b.host.blocks.Get(bytes)
	if err != nil {
		return err
	}
	if ptr%asyncCopyAlign != 0 {
		b.host.blocks.Put(ptr, class)
		return fmt.Errorf("ascend: aclrtMallocHost returned %#x, which is not %d-byte aligned as aclrtMemcpyAsync needs",
			ptr, asyncCopyAlign)
	}
	host := *(*unsafe.Pointer)(unsafe.Pointer(&ptr))
	copy(unsafe.Slice((*byte)(host), bytes), unsafe.Slice((*byte)(data), bytes))
	r := ccall(b.lib.memcpyAsync, dst, uintptr(destMax), ptr, uintptr(bytes), memcpyHostToDevice, b.stream)
	if err := b.lib.status("aclrtMemcpyAsync", r); err != nil {
		// Nothing was queued: the block is free again at once.
		b.host.blocks.Put(ptr, class)
		return err
	}
	b.host.pending = append(b.host.pending, hostBlock{ptr, class})
	b.host.bytes += class
	return nil
}

// Alloc returns a new contiguous tensor; its contents are unspecified.
func (b *Backend) Alloc(dt backend.DType, shape ...int) (backend.Tensor, error) {
	n, err := backend.CheckAlloc(dt, shape...)
	if err != nil {
		return backend.Tensor{}, fmt.Errorf("ascend: %w", err)
	}
	err = b.enter()
	defer b.leave()
	if err != nil {
		return backend.Tensor{}, err
	}
	buf, err := b.newBuffer(n)
	if err != nil {
		return backend.Tensor{}, fmt.Errorf("ascend: alloc %v (%d bytes): %w", backend.Shape(shape), int64(n)*4, err)
	}
	b.live[buf] = struct{}{}
	return backend.NewTensor(buf, 0, shape...)
}

// newBuffer allocates a buffer of n elements from the pool (not tracked
// as live).
func (b *Backend) newBuffer(n int) (*buffer, error) {
	ptr, class, err := b.alloc(int64(max(n, 1)) * 4)
	if err != nil {
		return nil, err
	}
	return &buffer{Owner: b, Ptr: ptr, N: n, Class: class}, nil
}

// Free returns t's buffer to the pool. A foreign or already freed buffer
// is recorded as an error.
func (b *Backend) Free(t backend.Tensor) {
	if t.IsZero() {
		return
	}
	buf, ok := t.Buffer().(*buffer)
	if !ok || buf.Owner != b {
		b.Record(fmt.Errorf("ascend: free of a tensor from another backend"))
		return
	}
	if b.closed {
		return // Close released everything
	}
	if buf.Freed {
		b.Record(fmt.Errorf("ascend: tensor freed twice"))
		return
	}
	buf.Freed = true
	delete(b.live, buf)
	b.put(buf.Ptr, buf.Class)
}

// BytesInUse returns the bytes of live buffers, cached tables and pool
// blocks not yet returned to the device.
func (b *Backend) BytesInUse() int64 {
	s := b.pool.Stats()
	return s.InUse + s.Cached
}

// MemoryUsage returns the device pool's figures (see
// backend.MemoryUsage): the blocks handed out, for live tensors, cached
// tables and the temporaries and workspaces of an op while it is
// enqueued, as InUse, and those with the freed blocks the pool keeps
// cached as Reserved, each with its peak since the backend opened or since
// ResetPeakMemory. The page-locked host memory that stages uploads is not
// counted, nor what ACL and the operator libraries allocate on their own.
// DeviceTotal is the device's memory as aclrtGetMemInfo reported it when
// the backend opened (HBM, or DDR on parts without HBM; without the memory
// CANN reserves for the system), or 0 where it did not say.
func (b *Backend) MemoryUsage() backend.MemoryUsage {
	s := b.pool.Stats()
	return backend.MemoryUsage{InUse: s.InUse, PeakInUse: s.PeakInUse, Reserved: s.InUse + s.Cached, PeakReserved: s.PeakReserved,
		DeviceTotal: b.deviceTotal}
}

// deviceMemory returns the bytes of memory the current device offers
// applications, as aclrtGetMemInfo reports it, or 0 where it does not say.
// It needs the device set on this thread (Open calls it right after
// creating the context). A failure is read (so that its message does not
// end up in a later error) and dropped: the figure only informs
// MemoryUsage.DeviceTotal, so Open never fails for it.
//
// Which attribute to ask follows CANN's aclrtGetMemInfo reference
// (hiascend.com, CANNCommunityEdition/80RC3alpha003 and canncommercial/850
// API aclcppdevg_03_0107; the CANN 9.0 page says the same). It reports
// the free and total size of the memory of one aclrtMemAttr, "excluding
// the memory reserved for the system", and:
//   - on the Atlas training series, Atlas A2 and A3 parts (HBM) and the
//     Atlas 200/300/500 inference products, an attribute the hardware does
//     not have gives 0 free and 0 total;
//   - on the Atlas 200I/500 A2 inference product and the Atlas inference
//     series (the 310P, whose memory is DDR), which have no HBM, ACL turns
//     a query of ACL_HBM_MEM into one of ACL_DDR_MEM.
//
// So ACL_HBM_MEM comes first: it is the device's memory on every training
// part, and on the 310P and 200I/500 A2 it gives the DDR. Where it reports
// 0 (the older 310-class inference products, DDR with no conversion) or
// fails, ACL_DDR_MEM is asked. The ACL_MEM_NORMAL family, which newer
// releases add and resolve to the device's memory themselves, is not used:
// the releases this package targets (CANN 8.1) do not have it.
func (l *lib) deviceMemory() int64 {
	if l.getMemInfo == 0 {
		return 0
	}
	for _, attr := range []uintptr{memAttrHBM, memAttrDDR} {
		var free, total uintptr
		r := ccall(l.getMemInfo, attr, uintptr(unsafe.Pointer(&free)), uintptr(unsafe.Pointer(&total)))
		if l.status("aclrtGetMemInfo", r) == nil && total > 0 {
			return int64(min(uint64(total), math.MaxInt64))
		}
	}
	return 0
}

// ResetPeakMemory sets the peaks to the present figures.
func (b *Backend) ResetPeakMemory() { b.pool.ResetPeak() }

var _ backend.MemoryTracker = (*Backend)(nil)

// bufferOf returns t's buffer if this backend owns it and it is live.
func (b *Backend) bufferOf(op backend.Op, all []backend.Tensor, t backend.Tensor) (*buffer, error) {
	buf, ok := t.Buffer().(*buffer)
	if !ok || buf.Owner != b {
		return nil, backend.Errorf(op, all, "tensor belongs to another backend")
	}
	if buf.Freed {
		return nil, backend.Errorf(op, all, "tensor's buffer was freed")
	}
	return buf, nil
}

// Upload copies src into dst. The data is staged in page-locked memory and
// the copy queued on the stream, so src may be reused at once.
//
// aclrtMemcpyAsync needs 64-byte aligned addresses, so a view whose first
// element is not aligned (a row of a matrix, one element of a parameter)
// cannot be the destination of one copy. The elements before its first
// aligned address (at most 15) go to an aligned temporary that
// aclnnInplaceCopy copies into the view; the rest is copied directly.
// Everything is queued on the stream, so the upload neither waits nor
// moves relative to queued ops. The alternative, synchronising and then
// calling the synchronous aclrtMemcpy (which has no alignment rule), would
// stall the host on every such upload, and gradient checks make thousands.
func (b *Backend) Upload(dst backend.Tensor, src []float32) {
	if b.Failed() {
		return
	}
	if err := backend.CheckTransfer("upload", dst, len(src)); err != nil {
		b.Record(err)
		return
	}
	buf, err := b.bufferOf("upload", []backend.Tensor{dst}, dst)
	if err != nil {
		b.Record(err)
		return
	}
	if len(src) == 0 {
		return
	}
	off := int64(dst.Offset()) * 4
	if mis := (buf.Ptr + uintptr(off)) % asyncCopyAlign; mis != 0 {
		head := min(len(src), int(asyncCopyAlign-mis)/4)
		b.do("upload", []backend.Tensor{dst}, func(c *call) {
			tmp := c.uploadF32(src[:head], head)
			v := c.tensorOf(dst).reshape(len(src)).sub(0, []int{head}, []int{1})
			c.launch("InplaceCopy", c.tensor(v), c.tensor(tmp))
		})
		src, off = src[head:], off+int64(head)*4
		if len(src) == 0 || b.Failed() {
			return
		}
	}
	err = b.enter()
	defer b.leave()
	if err == nil {
		err = b.stage(buf.Ptr+uintptr(off), int64(buf.N)*4-off, unsafe.Pointer(&src[0]), int64(len(src))*4)
	}
	if err != nil {
		b.Record(&backend.OpError{Op: "upload", Shapes: []backend.Shape{dst.Shape()}, Err: err})
	}
}

// Download waits for the stream and, if nothing has failed, copies src to
// dst. It returns (and clears) the first recorded error.
func (b *Backend) Download(dst []float32, src backend.Tensor) error {
	if err := backend.CheckTransfer("download", src, len(dst)); err != nil {
		b.Record(err)
		return b.Take()
	}
	buf, err := b.bufferOf("download", []backend.Tensor{src}, src)
	if err != nil {
		b.Record(err)
		return b.Take()
	}
	err = b.enter()
	defer b.leave()
	if err != nil {
		b.Record(err)
		return b.Take()
	}
	if !b.syncStream() || b.Failed() || len(dst) == 0 {
		return b.Take()
	}
	// The synchronous aclrtMemcpy has no alignment rule, so a view at any
	// offset is read in place; the stream is idle, so nothing reorders.
	bytes := uintptr(len(dst)) * 4
	r := ccall(b.lib.memcpy, uintptr(unsafe.Pointer(&dst[0])), bytes, buf.Ptr+uintptr(src.Offset())*4, bytes, memcpyDeviceToHost)
	if err := b.lib.status("aclrtMemcpy", r); err != nil {
		b.Record(&backend.OpError{Op: "download", Shapes: []backend.Shape{src.Shape()}, Err: err})
	}
	return b.Take()
}
