// Package devpool is the caching allocator of the device backends (cuda,
// ascend). Device allocation and release are slow and, on most drivers,
// synchronise the device, while a training loop frees and reallocates the
// same shapes every step; so freed blocks are kept by size class and handed
// out again, and go back to the device only when the backend closes or a
// device call fails for lack of memory: an allocation of the pool's own
// (Get), or another call the backend reports through Reclaim (a library's
// own allocation, a kernel launch).
//
// Handing a block out again at once is safe only because each backend runs
// all its device work on one stream, in order: the new owner's work runs
// after the old owner's. The pool itself knows nothing of streams; the
// backend supplies Sync for the one moment the pool must wait.
//
// A Pool is not safe for concurrent use; the backends are not either.
//
// Buffer, the backend.Buffer both backends hand out, is a block of a Pool
// and lives here so that the two share one definition.
package devpool

import "fmt"

// Size classes: powers of two from MinClass to Pow2Limit, then whole
// multiples of BigStep.
const (
	// MinClass is the smallest block. It keeps blocks 256-byte aligned in
	// practice and leaves the slack after device data that ACL asks for.
	MinClass = 512
	// Pow2Limit is the largest power-of-two class.
	Pow2Limit = 1 << 20
	// BigStep is the granularity of the classes above Pow2Limit.
	BigStep = 1 << 20
)

// SizeClass rounds a request of bytes bytes up to the pool's block size.
// Rounding wastes at most half a small block and less than BigStep of a big
// one, and every class is its own class, so a freed block serves exactly
// the requests that made it.
func SizeClass(bytes int64) int64 {
	if bytes <= MinClass {
		return MinClass
	}
	if bytes <= Pow2Limit {
		c := int64(MinClass)
		for c < bytes {
			c <<= 1
		}
		return c
	}
	return (bytes + BigStep - 1) / BigStep * BigStep
}

// Device is what a Pool needs from the backend.
type Device struct {
	// Alloc allocates a block of exactly bytes bytes (a size class).
	Alloc func(bytes int64) (uintptr, error)
	// Free returns a block to the device.
	Free func(ptr uintptr) error
	// OutOfMemory reports whether an error of Alloc means the device is
	// out of memory, so that returning the cached blocks may help. Nil
	// means never.
	OutOfMemory func(error) bool
	// Sync waits until the device has finished all work queued so far, so
	// that no cached block is still read or written. It is called only
	// before cached blocks are returned on an out-of-memory error (by Get
	// or Reclaim); nil means nothing needs waiting for.
	Sync func() error
}

// Pool caches freed blocks of one device by size class.
type Pool struct {
	dev           Device
	free          map[int64][]uintptr
	cached        int64 // bytes in free
	inUse         int64 // bytes handed out
	allocs, frees int   // calls of dev.Alloc and dev.Free
	// peakInUse and peakReserved are the most inUse and inUse + cached
	// have been since New or ResetPeak.
	peakInUse, peakReserved int64
}

// New returns an empty pool over dev; dev.Alloc and dev.Free must be set.
func New(dev Device) *Pool {
	return &Pool{dev: dev, free: map[int64][]uintptr{}}
}

// Stats are a pool's counters.
type Stats struct {
	// InUse is the bytes of blocks handed out; Cached the bytes of freed
	// blocks kept for reuse.
	InUse, Cached int64
	// Allocs and Frees count the device allocations and releases made
	// (attempted) since the pool was created.
	Allocs, Frees int
	// PeakInUse is the most InUse has been, and PeakReserved the most
	// InUse + Cached (the bytes the pool held from the device) has been,
	// since the pool was created or since the last ResetPeak.
	PeakInUse, PeakReserved int64
}

// Stats returns the pool's counters.
func (p *Pool) Stats() Stats {
	return Stats{InUse: p.inUse, Cached: p.cached, Allocs: p.allocs, Frees: p.frees,
		PeakInUse: p.peakInUse, PeakReserved: p.peakReserved}
}

// ResetPeak sets the peaks to the present InUse and InUse + Cached, so
// that they measure what follows.
func (p *Pool) ResetPeak() {
	p.peakInUse, p.peakReserved = p.inUse, p.inUse+p.cached
}

// raisePeaks takes the present figures into the peaks. Only Get can raise
// them: Put moves bytes from in use to cached, which leaves the reserved
// bytes as they were, and Release and Reclaim only lower them.
func (p *Pool) raisePeaks() {
	p.peakInUse = max(p.peakInUse, p.inUse)
	p.peakReserved = max(p.peakReserved, p.inUse+p.cached)
}

// Get returns a block of at least bytes bytes and its size class, which
// must be passed back to Put. A cached block of the class is reused when
// there is one. When the device is out of memory and blocks are cached,
// Get waits for the device (Sync), returns the cache to it and tries once
// more; when that wait fails, the error wraps both the allocation's and
// the wait's.
func (p *Pool) Get(bytes int64) (ptr uintptr, class int64, err error) {
	c := SizeClass(bytes)
	if ptr, ok := p.take(c); ok {
		p.raisePeaks()
		return ptr, c, nil
	}
	ptr, err = p.alloc(c)
	if err != nil && p.dev.OutOfMemory != nil && p.dev.OutOfMemory(err) {
		freed, rerr := p.Reclaim()
		if rerr != nil {
			// Both stay in the chain: the allocation ran out of memory
			// (what a caller's advice turns on) and the device then
			// failed (what may explain it).
			return 0, 0, fmt.Errorf("%w (returning the cached blocks to the device then failed: %w)", err, rerr)
		}
		if freed > 0 {
			ptr, err = p.alloc(c)
		}
	}
	if err != nil {
		return 0, 0, err
	}
	p.inUse += c
	p.raisePeaks()
	return ptr, c, nil
}

func (p *Pool) alloc(c int64) (uintptr, error) {
	p.allocs++
	return p.dev.Alloc(c)
}

// take returns a cached block of class c, if any.
func (p *Pool) take(c int64) (uintptr, bool) {
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

// Put returns a block that Get handed out, with the class Get gave, to the
// cache. The block may be handed out again by the next Get (see the
// package documentation for why that is safe).
func (p *Pool) Put(ptr uintptr, class int64) {
	p.free[class] = append(p.free[class], ptr)
	p.cached += class
	p.inUse -= class
}

// Reclaim waits for the device (Sync) and returns every cached block to
// it, for a device call that failed for lack of memory and is worth one
// more try with the memory back: Get does this for its own allocations,
// and a backend calls it when a call that allocates outside the pool (a
// library's workspace, a kernel launch) fails that way. It returns the
// bytes returned; with nothing cached it does nothing (no Sync) and
// returns 0, as a retry could not go better. A failed Sync is returned
// and keeps the cache.
func (p *Pool) Reclaim() (freed int64, err error) {
	if p.cached == 0 {
		return 0, nil
	}
	if p.dev.Sync != nil {
		if err := p.dev.Sync(); err != nil {
			return 0, err
		}
	}
	freed = p.cached
	return freed, p.Release()
}

// Release returns every cached block to the device and returns the first
// failure; the cache is empty afterwards even when some release failed.
// The device must no longer use the blocks (the caller has synchronised).
func (p *Pool) Release() error {
	var first error
	for c, list := range p.free {
		for _, ptr := range list {
			p.frees++
			if err := p.dev.Free(ptr); err != nil && first == nil {
				first = err
			}
		}
		delete(p.free, c)
	}
	p.cached = 0
	return first
}
