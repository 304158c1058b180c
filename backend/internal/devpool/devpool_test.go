package devpool

import (
	"errors"
	"math/bits"
	"math/rand/v2"
	"testing"
)

func TestSizeClass(t *testing.T) {
	for _, tc := range []struct{ in, want int64 }{
		{0, 512}, {1, 512}, {512, 512}, {513, 1024}, {4096, 4096}, {4097, 8192},
		{1 << 20, 1 << 20}, {1<<20 + 1, 2 << 20}, {5<<20 + 3, 6 << 20}, {100 << 20, 100 << 20},
	} {
		if got := SizeClass(tc.in); got != tc.want {
			t.Errorf("SizeClass(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
	// Every class holds its request, wastes less than half a small block or
	// BigStep of a big one, and is a fixed point (so a freed block serves
	// exactly the requests that made it).
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		n := rng.Int64N(64<<20) + 1
		c := SizeClass(n)
		if c < n || SizeClass(c) != c {
			t.Fatalf("SizeClass(%d) = %d", n, c)
		}
		if (c <= Pow2Limit && c > MinClass && c >= 2*n) || (c > Pow2Limit && c-n >= BigStep) {
			t.Fatalf("SizeClass(%d) = %d wastes too much", n, c)
		}
	}
}

// fakeDevice hands out addresses from a counter, up to a byte limit, and
// records what it was asked.
//
// The addresses are addrStep apart: far apart, and on 64-bit machines
// above 4 GiB, so that a pool that cut addresses to 32 bits would hand
// out wrong ones. The step is half the word size because 1<<32 itself is
// 0 in a 32-bit uintptr, which gave every block the same address.
type fakeDevice struct {
	next, used, limit int64
	live              map[uintptr]int64
	syncs             int
	syncErr           error
}

const addrStep = 1 << (bits.UintSize / 2)

var errOOM = errors.New("out of memory")

func (d *fakeDevice) device() Device {
	return Device{
		Alloc: func(bytes int64) (uintptr, error) {
			if d.used+bytes > d.limit {
				return 0, errOOM
			}
			d.next += addrStep
			d.used += bytes
			d.live[uintptr(d.next)] = bytes
			return uintptr(d.next), nil
		},
		Free: func(ptr uintptr) error {
			bytes, ok := d.live[ptr]
			if !ok {
				return errors.New("free of an unknown block")
			}
			delete(d.live, ptr)
			d.used -= bytes
			return nil
		},
		OutOfMemory: func(err error) bool { return errors.Is(err, errOOM) },
		Sync:        func() error { d.syncs++; return d.syncErr },
	}
}

func newFake(limit int64) *fakeDevice {
	return &fakeDevice{limit: limit, live: map[uintptr]int64{}}
}

func TestPoolReuse(t *testing.T) {
	d := newFake(1 << 30)
	p := New(d.device())
	var ptrs []uintptr
	for range 3 {
		ptr, c, err := p.Get(4000)
		if err != nil || c != 4096 {
			t.Fatalf("Get(4000) = %v, class %d; want class 4096", err, c)
		}
		ptrs = append(ptrs, ptr)
	}
	p.Put(ptrs[0], 4096)
	p.Put(ptrs[1], 4096)
	if s := p.Stats(); s != (Stats{InUse: 4096, Cached: 8192, Allocs: 3}) {
		t.Fatalf("after two puts: %+v", s)
	}
	if _, c, _ := p.Get(8000); c != 8192 || p.Stats().Allocs != 4 {
		t.Fatalf("Get of an empty class: class %d, %d device allocations; want 8192 and a new one", c, p.Stats().Allocs)
	}
	got, c, err := p.Get(4096)
	if err != nil || got != ptrs[1] || c != 4096 {
		t.Fatalf("Get = %#x, class %d, %v; want the last block put, %#x", got, c, err, ptrs[1])
	}
	if s := p.Stats(); s != (Stats{InUse: 8192 + 8192, Cached: 4096, Allocs: 4}) {
		t.Fatalf("after reuse: %+v", s)
	}
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Cached != 0 || s.Frees != 1 || len(d.live) != 3 {
		t.Fatalf("after Release: %+v, %d blocks live on the device; want the one cached block freed", s, len(d.live))
	}
}

// TestPoolOutOfMemory: an allocation that fits only once the cache goes
// back to the device succeeds after one Sync and Release; one that does not
// fit at all fails with the device's error; a failed Sync is returned and
// keeps the cache.
func TestPoolOutOfMemory(t *testing.T) {
	const mib = 1 << 20
	d := newFake(4 * mib)
	p := New(d.device())
	big, c, err := p.Get(2 * mib)
	if err != nil {
		t.Fatal(err)
	}
	p.Put(big, c)
	if _, _, err := p.Get(3 * mib); err != nil { // fits only without the cached 2 MiB
		t.Fatalf("Get that fits after releasing the cache: %v", err)
	}
	if s := p.Stats(); d.syncs != 1 || s.Frees != 1 || s.Cached != 0 || s.InUse != 3*mib {
		t.Fatalf("after the retry: %d syncs, %+v", d.syncs, s)
	}
	if _, _, err := p.Get(2 * mib); !errors.Is(err, errOOM) {
		t.Fatalf("Get past the limit: %v, want the device's error", err)
	}
	if d.syncs != 1 {
		t.Errorf("Get synchronised with nothing cached to release")
	}

	d = newFake(4 * mib)
	d.syncErr = errors.New("stream failed")
	p = New(d.device())
	big, c, _ = p.Get(2 * mib)
	p.Put(big, c)
	if _, _, err := p.Get(3 * mib); err != d.syncErr {
		t.Fatalf("Get with a failing Sync: %v, want the Sync error", err)
	}
	if p.Stats().Cached != 2*mib {
		t.Errorf("the cache was released although Sync failed")
	}
}

// TestPoolReclaim: Reclaim returns the cache to the device after one
// Sync and reports its bytes; with nothing cached it neither synchronises
// nor frees; a failed Sync is returned and keeps the cache.
func TestPoolReclaim(t *testing.T) {
	const mib = 1 << 20
	d := newFake(8 * mib)
	p := New(d.device())
	if freed, err := p.Reclaim(); freed != 0 || err != nil || d.syncs != 0 {
		t.Fatalf("Reclaim of an empty pool = %d, %v after %d syncs; want 0, nil, none", freed, err, d.syncs)
	}
	a, ca, _ := p.Get(2 * mib)
	b, cb, _ := p.Get(3000)
	kept, _, _ := p.Get(mib)
	p.Put(a, ca)
	p.Put(b, cb)
	freed, err := p.Reclaim()
	if err != nil || freed != ca+cb {
		t.Fatalf("Reclaim = %d, %v; want %d, nil", freed, err, ca+cb)
	}
	if s := p.Stats(); d.syncs != 1 || s.Cached != 0 || s.Frees != 2 || s.InUse != mib || len(d.live) != 1 || d.live[kept] != mib {
		t.Fatalf("after Reclaim: %d syncs, %+v, device holds %v; want one sync and only the block in use left", d.syncs, s, d.live)
	}

	d.syncErr = errors.New("stream failed")
	p.Put(kept, mib)
	if freed, err := p.Reclaim(); err != d.syncErr || freed != 0 || p.Stats().Cached != mib {
		t.Errorf("Reclaim with a failing Sync = %d, %v, cache %d; want the Sync error and the cache kept", freed, err, p.Stats().Cached)
	}
}
