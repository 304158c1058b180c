package cuda

import (
	"testing"

	"github.com/sora-go/sora/backend"
)

// TestMemoryUsageEmulated follows the backend's memory figures on the
// emulated device through allocations, an op's scratch block (Gather's
// ids), a free, a reuse of the cached block and a reset, against figures
// worked out from the pool's size classes; DeviceTotal is what the fake
// driver's cuDeviceTotalMem reports (1 GiB).
func TestMemoryUsageEmulated(t *testing.T) {
	b := openFake(t, Options{})
	b.ResetPeakMemory()
	base := b.MemoryUsage()
	if base.PeakInUse != base.InUse || base.PeakReserved != base.Reserved {
		t.Fatalf("after ResetPeakMemory: %+v; want the peaks at the figures", base)
	}
	if base.DeviceTotal != 1<<30 {
		t.Errorf("DeviceTotal %d; want the fake driver's 1 GiB", base.DeviceTotal)
	}
	check := func(what string, inUse, peakInUse, reserved, peakReserved int64) {
		t.Helper()
		if err := b.Sync(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := b.MemoryUsage()
		want := backend.MemoryUsage{InUse: base.InUse + inUse, PeakInUse: base.InUse + peakInUse,
			Reserved: base.Reserved + reserved, PeakReserved: base.Reserved + peakReserved, DeviceTotal: base.DeviceTotal}
		if got != want {
			t.Fatalf("after %s: %+v; want %+v (relative to %+v)", what, got, want, base)
		}
		if b.BytesInUse() != got.Reserved {
			t.Fatalf("after %s: BytesInUse %d, Reserved %d", what, b.BytesInUse(), got.Reserved)
		}
	}
	// Size classes: [4, 64] float32 is 1 KiB; [600, 64] 150 KiB, which
	// rounds up to 256 KiB; Gather's 600 int32 ids 2400 bytes, which
	// round up to 4 KiB.
	const table, rows, ids = 1 << 10, 256 << 10, 4 << 10
	tab := mustAlloc(t, b, 4, 64)
	dst := mustAlloc(t, b, 600, 64)
	check("two allocations", table+rows, table+rows, table+rows, table+rows)
	b.Fill(tab, 0.5)
	idx := make([]int32, 600)
	for i := range idx {
		idx[i] = int32(i % 4)
	}
	b.Gather(dst, tab, idx)
	// The ids' block was in use while the op was enqueued, and is
	// cached after it.
	check("Gather", table+rows, table+rows+ids, table+rows+ids, table+rows+ids)
	b.Free(dst)
	check("freeing the rows", table, table+rows+ids, table+rows+ids, table+rows+ids)
	again := mustAlloc(t, b, 256<<10/4) // exactly the cached block's class
	check("reusing the cached block", table+rows, table+rows+ids, table+rows+ids, table+rows+ids)
	b.ResetPeakMemory()
	check("a reset", table+rows, table+rows, table+rows+ids, table+rows+ids)
	b.Free(again)
	b.Free(tab)
	check("freeing the rest", 0, table+rows, table+rows+ids, table+rows+ids)
}
