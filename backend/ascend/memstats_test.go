package ascend

import (
	"math/rand"
	"testing"

	"github.com/sora-go/sora/backend"
)

// TestMemoryUsage checks the backend's memory figures against the ACL
// test double's own count of device memory (every aclrtMalloc not yet
// freed, and its peak since acltest_reset): Reserved and PeakReserved must
// be those, through allocations, ops that take temporaries and workspaces
// from the pool (Softmax, MatMul, Gather's ids), frees and a reset. InUse
// and PeakInUse are checked exactly where the size classes decide them:
// tensors of known shapes, and no op running.
func TestMemoryUsage(t *testing.T) {
	b, d := openDouble(t, Options{})
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	// Aligned: both peaks start from the present figures.
	d.Reset()
	b.ResetPeakMemory()
	base := b.MemoryUsage()
	// Device memory of earlier tests that is not this backend's.
	other := d.Live("device_bytes") - base.Reserved
	if base.PeakInUse != base.InUse || base.PeakReserved != base.Reserved || base.DeviceTotal != 0 {
		t.Fatalf("after ResetPeakMemory: %+v; want the peaks at the figures and no device total", base)
	}
	checkDevice := func(what string) backend.MemoryUsage {
		t.Helper()
		if err := b.Sync(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		u := b.MemoryUsage()
		if dev, peak := d.Live("device_bytes")-other, d.Live("device_peak_bytes")-other; u.Reserved != dev || u.PeakReserved != peak {
			t.Fatalf("after %s: reserved %d, peak %d; the double holds %d for the backend, at most %d", what, u.Reserved, u.PeakReserved, dev, peak)
		}
		if u.Reserved != b.BytesInUse() || u.InUse > u.Reserved || u.PeakInUse > u.PeakReserved || u.PeakInUse < u.InUse {
			t.Fatalf("after %s: %+v, BytesInUse %d", what, u, b.BytesInUse())
		}
		return u
	}
	// [16, 16] float32 is 1 KiB; [300, 16] 18.75 KiB, rounded up to 32 KiB.
	x := upload(t, b, randn(rand.New(rand.NewSource(1)), 256, -1, 1), 16, 16)
	y, _ := b.Alloc(backend.Float32, 16, 16)
	big, _ := b.Alloc(backend.Float32, 300, 16)
	u := checkDevice("three allocations")
	if want := base.InUse + 2<<10 + 32<<10; u.InUse != want || u.PeakInUse != want {
		t.Fatalf("after three allocations: %+v; want %d in use, and as the peak", u, want)
	}
	b.Softmax(y, x, backend.SoftmaxParams{Scale: 0.5, Causal: true})
	b.MatMul(y, x, x, backend.MatMulParams{Alpha: 2, Beta: 1})
	ids := make([]int32, 300)
	for i := range ids {
		ids[i] = int32(i % 16)
	}
	b.Gather(big, x, ids)
	u = checkDevice("the ops")
	// The ops keep device constants (Softmax's causal mask) in
	// b.tables, which stay in use.
	var tables int64
	for _, tb := range b.tables {
		tables += tb.Class
	}
	if want := base.InUse + 2<<10 + 32<<10 + tables; u.InUse != want || u.PeakInUse <= want {
		t.Fatalf("after the ops: %+v; want %d in use (%d of them cached tables), and a higher peak from their temporaries", u, want, tables)
	}
	b.Free(big)
	u = checkDevice("a free")
	if u.InUse != base.InUse+2<<10+tables {
		t.Fatalf("after a free: %+v", u)
	}
	d.Reset()
	b.ResetPeakMemory()
	u = checkDevice("a reset")
	if u.PeakInUse != u.InUse || u.PeakReserved != u.Reserved {
		t.Fatalf("after a reset: %+v", u)
	}
	b.Free(x)
	b.Free(y)
	checkDevice("freeing the rest")
}
