package devpool

import (
	"errors"
	"math/bits"
	"math/rand/v2"
	"slices"
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
	if s := p.Stats(); s != (Stats{InUse: 4096, Cached: 8192, Allocs: 3, PeakInUse: 3 * 4096, PeakReserved: 3 * 4096}) {
		t.Fatalf("after two puts: %+v", s)
	}
	if _, c, _ := p.Get(8000); c != 8192 || p.Stats().Allocs != 4 {
		t.Fatalf("Get of an empty class: class %d, %d device allocations; want 8192 and a new one", c, p.Stats().Allocs)
	}
	got, c, err := p.Get(4096)
	if err != nil || got != ptrs[1] || c != 4096 {
		t.Fatalf("Get = %#x, class %d, %v; want the last block put, %#x", got, c, err, ptrs[1])
	}
	// The new 8192-byte block raised the reserved peak; the reuse, which
	// takes a cached block, only the in-use one.
	if s := p.Stats(); s != (Stats{InUse: 8192 + 8192, Cached: 4096, Allocs: 4, PeakInUse: 8192 + 8192, PeakReserved: 3*4096 + 8192}) {
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
	if _, _, err := p.Get(3 * mib); !errors.Is(err, d.syncErr) || !errors.Is(err, errOOM) {
		t.Fatalf("Get with a failing Sync: %v, want the allocation's and the Sync's errors", err)
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

// TestPoolPeaks follows the pool's peaks through sequences of Get, Put,
// Release, Reclaim, an out-of-memory retry and ResetPeak, against peaks
// worked out by hand from the size classes (every request here is its
// own class: 4096, 8192, 2 MiB, 3 MiB).
func TestPoolPeaks(t *testing.T) {
	const mib = 1 << 20
	type op struct {
		do   string // get, put (the newest block not yet put), release, reclaim, reset
		size int64  // for get
		// want after the op: in use, cached, and the two peaks.
		inUse, cached, peakInUse, peakReserved int64
	}
	tests := []struct {
		name  string
		limit int64
		ops   []op
	}{
		{"get and put", 1 << 30, []op{
			{"get", 4096, 4096, 0, 4096, 4096},
			{"get", 8192, 12288, 0, 12288, 12288},
			{"put", 0, 4096, 8192, 12288, 12288},    // the 8192 block goes to the cache
			{"get", 4096, 8192, 8192, 12288, 16384}, // a new block: reserved grows past the peak
			{"get", 8192, 16384, 0, 16384, 16384},   // the cached block: in use grows, reserved does not
			{"put", 0, 8192, 8192, 16384, 16384},
			{"put", 0, 4096, 12288, 16384, 16384},
			{"put", 0, 0, 16384, 16384, 16384},
		}},
		{"release and reset", 1 << 30, []op{
			{"get", 8192, 8192, 0, 8192, 8192},
			{"get", 4096, 12288, 0, 12288, 12288},
			{"put", 0, 8192, 4096, 12288, 12288},
			{"release", 0, 8192, 0, 12288, 12288}, // lowering the figures keeps the peaks
			{"reset", 0, 8192, 0, 8192, 8192},
			{"get", 4096, 12288, 0, 12288, 12288}, // a new block after the release
			{"put", 0, 8192, 4096, 12288, 12288},
			{"reset", 0, 8192, 4096, 8192, 12288}, // a reset keeps the cache in the reserved peak
			{"get", 4096, 12288, 0, 12288, 12288},
		}},
		{"reclaim", 1 << 30, []op{
			{"get", 2 * mib, 2 * mib, 0, 2 * mib, 2 * mib},
			{"put", 0, 0, 2 * mib, 2 * mib, 2 * mib},
			{"reclaim", 0, 0, 0, 2 * mib, 2 * mib},
			{"reset", 0, 0, 0, 0, 0},
			{"get", 4096, 4096, 0, 4096, 4096},
		}},
		// 4 MiB of device: the 3 MiB request fits only after the cached
		// 2 MiB goes back, so reserved never exceeds 3 MiB after it.
		{"out-of-memory retry", 4 * mib, []op{
			{"get", 2 * mib, 2 * mib, 0, 2 * mib, 2 * mib},
			{"put", 0, 0, 2 * mib, 2 * mib, 2 * mib},
			{"reset", 0, 0, 2 * mib, 0, 2 * mib},
			{"get", 3 * mib, 3 * mib, 0, 3 * mib, 3 * mib},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newFake(tc.limit)
			p := New(d.device())
			type block struct {
				ptr   uintptr
				class int64
			}
			var held []block
			for i, o := range tc.ops {
				switch o.do {
				case "get":
					ptr, c, err := p.Get(o.size)
					if err != nil {
						t.Fatalf("op %d: Get(%d): %v", i, o.size, err)
					}
					held = append(held, block{ptr, c})
				case "put":
					b := held[len(held)-1]
					held = held[:len(held)-1]
					p.Put(b.ptr, b.class)
				case "release":
					if err := p.Release(); err != nil {
						t.Fatalf("op %d: Release: %v", i, err)
					}
				case "reclaim":
					if _, err := p.Reclaim(); err != nil {
						t.Fatalf("op %d: Reclaim: %v", i, err)
					}
				case "reset":
					p.ResetPeak()
				default:
					t.Fatalf("op %d: unknown %q", i, o.do)
				}
				s := p.Stats()
				got := [4]int64{s.InUse, s.Cached, s.PeakInUse, s.PeakReserved}
				if want := [4]int64{o.inUse, o.cached, o.peakInUse, o.peakReserved}; got != want {
					t.Fatalf("after op %d (%s %d): in use, cached, peak in use, peak reserved = %v; want %v", i, o.do, o.size, got, want)
				}
				// What the device holds is what the pool says it reserved.
				if s.InUse+s.Cached != d.used {
					t.Fatalf("after op %d: the pool reserves %d bytes, the device has %d allocated", i, s.InUse+s.Cached, d.used)
				}
			}
		})
	}
}

// TestPoolPeaksRandom checks the peaks against the running maxima of the
// figures over a long random sequence of gets and puts with resets in
// between.
func TestPoolPeaksRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	p := New(newFake(1 << 40).device())
	type block struct {
		ptr   uintptr
		class int64
	}
	var held []block
	var peakIn, peakRes int64
	for i := range 5000 {
		switch r := rng.IntN(100); {
		case r < 2:
			p.ResetPeak()
			s := p.Stats()
			peakIn, peakRes = s.InUse, s.InUse+s.Cached
		case r < 4:
			if err := p.Release(); err != nil {
				t.Fatal(err)
			}
		case r < 50 && len(held) > 0:
			k := rng.IntN(len(held))
			p.Put(held[k].ptr, held[k].class)
			held = slices.Delete(held, k, k+1)
		default:
			ptr, c, err := p.Get(rng.Int64N(3 << 20))
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, block{ptr, c})
		}
		s := p.Stats()
		peakIn, peakRes = max(peakIn, s.InUse), max(peakRes, s.InUse+s.Cached)
		if s.PeakInUse != peakIn || s.PeakReserved != peakRes {
			t.Fatalf("op %d: peaks %d in use, %d reserved; the running maxima are %d and %d", i, s.PeakInUse, s.PeakReserved, peakIn, peakRes)
		}
	}
}
