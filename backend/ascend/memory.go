package ascend

import (
	"fmt"
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

// blockClass rounds a request up to the pool's block sizes: powers of two
// up to 1 MiB, then multiples of 1 MiB. At least 512 bytes, which also
// covers ACL's advice to leave 32 bytes of slack after device data.
func blockClass(bytes int64) int64 {
	const mib = 1 << 20
	if bytes <= 512 {
		return 512
	}
	if bytes <= mib {
		c := int64(512)
		for c < bytes {
			c <<= 1
		}
		return c
	}
	return (bytes + mib - 1) / mib * mib
}

// devicePool caches freed device blocks by size class, so that the
// temporaries and workspaces of every op do not each cost an aclrtMalloc.
// Reusing a block is safe without waiting because all work runs on one
// stream, in order; blocks go back to the device only after the stream
// has been synchronised.
type devicePool struct {
	free   map[int64][]uintptr
	cached int64 // bytes held in free
	inUse  int64 // bytes handed out
}

// alloc returns a device block of at least bytes bytes. When the device is
// out of memory it synchronises, returns the cache to the device and tries
// once more.
func (b *Backend) alloc(bytes int64) (uintptr, int64, error) {
	c := blockClass(bytes)
	p := &b.pool
	if l := p.free[c]; len(l) > 0 {
		ptr := l[len(l)-1]
		p.free[c] = l[:len(l)-1]
		p.cached -= c
		p.inUse += c
		return ptr, c, nil
	}
	ptr, err := b.deviceMalloc(c)
	if err != nil && IsOutOfMemory(err) && p.cached > 0 {
		b.syncStream()
		if rerr := p.release(b.lib); rerr != nil {
			return 0, 0, rerr
		}
		ptr, err = b.deviceMalloc(c)
	}
	if err != nil {
		return 0, 0, err
	}
	p.inUse += c
	return ptr, c, nil
}

func (b *Backend) deviceMalloc(bytes int64) (uintptr, error) {
	var ptr uintptr
	r := ccall(b.lib.malloc, uintptr(unsafe.Pointer(&ptr)), uintptr(bytes), mallocHugeFirst)
	if err := b.lib.status("aclrtMalloc", r); err != nil {
		return 0, err
	}
	return ptr, nil
}

// put returns a block to the pool.
func (b *Backend) put(ptr uintptr, class int64) {
	b.pool.free[class] = append(b.pool.free[class], ptr)
	b.pool.cached += class
	b.pool.inUse -= class
}

// release frees every cached block. The caller must have synchronised the
// stream.
func (p *devicePool) release(l *lib) error {
	var first error
	for c, list := range p.free {
		for _, ptr := range list {
			if err := l.status("aclrtFree", ccall(l.free, ptr)); err != nil && first == nil {
				first = err
			}
		}
		delete(p.free, c)
	}
	p.cached = 0
	return first
}

// hostPool holds page-locked host memory (aclrtMallocHost) for staging
// uploads: aclrtMemcpyAsync reads its source when the copy runs, after
// Upload has returned, so the data cannot stay in the caller's slice.
// Blocks used by queued copies become free again after a successful
// stream synchronisation.
type hostPool struct {
	free    map[int64][]uintptr
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

func (b *Backend) hostAlloc(bytes int64) (uintptr, int64, error) {
	c := blockClass(bytes)
	if l := b.host.free[c]; len(l) > 0 {
		ptr := l[len(l)-1]
		b.host.free[c] = l[:len(l)-1]
		return ptr, c, nil
	}
	var ptr uintptr
	r := ccall(b.lib.mallocHost, uintptr(unsafe.Pointer(&ptr)), uintptr(c))
	if err := b.lib.status("aclrtMallocHost", r); err != nil {
		return 0, 0, err
	}
	return ptr, c, nil
}

func (h *hostPool) recycle() {
	for _, blk := range h.pending {
		h.free[blk.class] = append(h.free[blk.class], blk.ptr)
	}
	h.pending = h.pending[:0]
	h.bytes = 0
}

func (h *hostPool) release(l *lib) error {
	var first error
	h.recycle()
	for c, list := range h.free {
		for _, ptr := range list {
			if err := l.status("aclrtFreeHost", ccall(l.freeHost, ptr)); err != nil && first == nil {
				first = err
			}
		}
		delete(h.free, c)
	}
	return first
}

// stage copies data into a staging block and queues its copy to device
// address dst (with room for destMax bytes). The block stays pending until
// the next successful synchronisation.
func (b *Backend) stage(dst uintptr, destMax int64, data unsafe.Pointer, bytes int64) error {
	if bytes == 0 {
		return nil
	}
	if b.host.bytes+bytes > stagingLimit && len(b.host.pending) > 0 {
		if !b.syncStream() {
			return fmt.Errorf("ascend: synchronising before staging more uploads failed")
		}
	}
	ptr, class, err := b.hostAlloc(bytes)
	if err != nil {
		return err
	}
	host := *(*unsafe.Pointer)(unsafe.Pointer(&ptr))
	copy(unsafe.Slice((*byte)(host), bytes), unsafe.Slice((*byte)(data), bytes))
	r := ccall(b.lib.memcpyAsync, dst, uintptr(destMax), ptr, uintptr(bytes), memcpyHostToDevice, b.stream)
	if err := b.lib.status("aclrtMemcpyAsync", r); err != nil {
		// Nothing was queued: the block is free again at once.
		b.host.free[class] = append(b.host.free[class], ptr)
		return err
	}
	b.host.pending = append(b.host.pending, hostBlock{ptr, class})
	b.host.bytes += class
	return nil
}

// Alloc returns a new contiguous tensor; its contents are unspecified.
func (b *Backend) Alloc(dt backend.DType, shape ...int) (backend.Tensor, error) {
	if dt != backend.Float32 {
		return backend.Tensor{}, fmt.Errorf("ascend: alloc of dtype %s: only float32 is supported", dt)
	}
	n := 1
	for _, d := range shape {
		if d < 0 {
			return backend.Tensor{}, fmt.Errorf("ascend: alloc with negative extent in %v", shape)
		}
		n *= d
	}
	err := b.enter()
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
	return &buffer{b: b, ptr: ptr, n: n, class: class}, nil
}

// Free returns t's buffer to the pool. A foreign or already freed buffer
// is recorded as an error.
func (b *Backend) Free(t backend.Tensor) {
	if t.IsZero() {
		return
	}
	buf, ok := t.Buffer().(*buffer)
	if !ok || buf.b != b {
		b.Record(fmt.Errorf("ascend: free of a tensor from another backend"))
		return
	}
	if b.closed {
		return // Close released everything
	}
	if buf.freed {
		b.Record(fmt.Errorf("ascend: tensor freed twice"))
		return
	}
	buf.freed = true
	delete(b.live, buf)
	b.put(buf.ptr, buf.class)
}

// BytesInUse returns the bytes of live buffers, cached tables and pool
// blocks not yet returned to the device.
func (b *Backend) BytesInUse() int64 { return b.pool.inUse + b.pool.cached }

// bufferOf returns t's buffer if this backend owns it and it is live.
func (b *Backend) bufferOf(op backend.Op, all []backend.Tensor, t backend.Tensor) (*buffer, error) {
	buf, ok := t.Buffer().(*buffer)
	if !ok || buf.b != b {
		return nil, backend.Errorf(op, all, "tensor belongs to another backend")
	}
	if buf.freed {
		return nil, backend.Errorf(op, all, "tensor's buffer was freed")
	}
	return buf, nil
}

// Upload copies src into dst. The data is staged in page-locked memory and
// the copy queued on the stream, so src may be reused at once.
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
	err = b.enter()
	defer b.leave()
	if err == nil {
		off := int64(dst.Offset()) * 4
		err = b.stage(buf.ptr+uintptr(off), int64(buf.n)*4-off, unsafe.Pointer(&src[0]), int64(len(src))*4)
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
	bytes := uintptr(len(dst)) * 4
	r := ccall(b.lib.memcpy, uintptr(unsafe.Pointer(&dst[0])), bytes, buf.ptr+uintptr(src.Offset())*4, bytes, memcpyDeviceToHost)
	if err := b.lib.status("aclrtMemcpy", r); err != nil {
		b.Record(&backend.OpError{Op: "download", Shapes: []backend.Shape{src.Shape()}, Err: err})
	}
	return b.Take()
}
