package ascend

import (
	"math/rand"
	"strings"
	"testing"
	"unsafe"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/ascend/acltest"
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
	if base.PeakInUse != base.InUse || base.PeakReserved != base.Reserved || base.DeviceTotal != acltest.DefaultHBMBytes {
		t.Fatalf("after ResetPeakMemory: %+v; want the peaks at the figures and the double's %d bytes of HBM as the device total",
			base, int64(acltest.DefaultHBMBytes))
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
	if u := checkDevice("freeing the rest"); u.DeviceTotal != base.DeviceTotal {
		t.Errorf("DeviceTotal went from %d to %d; it is the device's size, asked once in Open", base.DeviceTotal, u.DeviceTotal)
	}
}

// useMemInfo makes the double's aclrtGetMemInfo report the given free and
// total bytes for each attribute until the end of the test (which must not
// run in parallel with others); the other attributes keep the defaults.
func useMemInfo(t *testing.T, mem map[acltest.MemAttr][2]int64) {
	t.Helper()
	if skipAll != "" {
		t.Skip(skipAll)
	}
	if double == nil {
		t.Skip("no ACL test double attached (child process)")
	}
	t.Cleanup(double.ResetMemInfo)
	for attr, v := range mem {
		if err := double.SetMemInfo(attr, v[0], v[1]); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeviceTotal opens the backend on the double posing as parts whose
// memory CANN reports differently, and with aclrtGetMemInfo failing.
// DeviceTotal must be ACL_HBM_MEM's total where it reports one (training
// parts, and the 310P, where CANN turns an HBM query into a DDR one),
// ACL_DDR_MEM's where the HBM query gives 0 or fails (310-class DDR
// parts), and 0, with Open succeeding and the backend unchanged
// otherwise, where neither says.
func TestDeviceTotal(t *testing.T) {
	const gib = int64(1) << 30
	odd := 31*gib + 12345 // passed through exactly
	type mem = map[acltest.MemAttr][2]int64
	for _, tc := range []struct {
		name string
		mem  mem
		// fail injects failures of aclrtGetMemInfo: the first fail
		// calls (-1: every call).
		fail  int
		want  int64
		calls int // of aclrtGetMemInfo during Open
		fired int // of them failed
	}{
		{name: "HBM part", mem: mem{acltest.MemHBM: {odd - 1000, odd}}, want: odd, calls: 1},
		{name: "HBM part, DDR reported too", mem: mem{acltest.MemHBM: {gib, 64 * gib}, acltest.MemDDR: {gib, 16 * gib}}, want: 64 * gib, calls: 1},
		{name: "310P, HBM query answered from DDR", mem: mem{acltest.MemHBM: {gib, 44 * gib}, acltest.MemDDR: {gib, 44 * gib}}, want: 44 * gib, calls: 1},
		{name: "310, HBM reports 0", mem: mem{acltest.MemHBM: {0, 0}, acltest.MemDDR: {gib, 8 * gib}}, want: 8 * gib, calls: 2},
		{name: "HBM query fails", mem: mem{acltest.MemDDR: {gib, 8 * gib}}, fail: 1, want: 8 * gib, calls: 2, fired: 1},
		{name: "both report 0", mem: mem{acltest.MemHBM: {0, 0}}, want: 0, calls: 2},
		{name: "both fail", mem: mem{acltest.MemDDR: {gib, 8 * gib}}, fail: -1, want: 0, calls: 2, fired: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			useMemInfo(t, tc.mem)
			b, d := openDoubleAfter(t, Options{}, func(d *acltest.Double) {
				if tc.fail == 0 {
					return
				}
				if err := d.Inject("aclrtGetMemInfo", 0, max(tc.fail, 0), 507899, "injected: no memory information"); err != nil {
					t.Fatal(err)
				}
			})
			if got := b.MemoryUsage().DeviceTotal; got != tc.want {
				t.Errorf("DeviceTotal = %d, want %d", got, tc.want)
			}
			if got := d.Calls("aclrtGetMemInfo"); got != tc.calls {
				t.Errorf("Open called aclrtGetMemInfo %d times, want %d", got, tc.calls)
			}
			if got := d.Fired("aclrtGetMemInfo"); got != tc.fired {
				t.Errorf("%d injected failures fired, want %d", got, tc.fired)
			}
			// Whatever aclrtGetMemInfo did, the backend is the same:
			// described alike and working.
			if dev := b.Device(); !strings.HasPrefix(dev, acltest.DefaultSocName+" device 0, matmul float32") || strings.Contains(dev, "aclrtGetMemInfo") {
				t.Errorf("Device() = %q", dev)
			}
			x := upload(t, b, []float32{1, 2, 3}, 3)
			b.Unary(backend.Neg, x, x)
			if got := download(t, b, x); got[0] != -1 || got[1] != -2 || got[2] != -3 {
				t.Errorf("Neg after Open: %v", got)
			}
			b.Free(x)
			// The size is asked once: no more calls.
			b.MemoryUsage()
			if got := d.Calls("aclrtGetMemInfo"); got != tc.calls {
				t.Errorf("aclrtGetMemInfo called %d times after Open, want the %d of Open", got, tc.calls)
			}
		})
	}
}

// TestDeviceMemoryReadsFailures checks that a failed query leaves no
// message behind on the thread for the next failing call to pick up, and
// that a runtime without aclrtGetMemInfo gives 0.
func TestDeviceMemoryReadsFailures(t *testing.T) {
	b, d := openDouble(t, Options{})
	if err := b.enter(); err != nil {
		b.leave()
		t.Fatal(err)
	}
	defer b.leave()
	if err := d.Inject("aclrtGetMemInfo", 0, 0, 507899, "injected: no memory information"); err != nil {
		t.Fatal(err)
	}
	if got := b.lib.deviceMemory(); got != 0 {
		t.Errorf("deviceMemory with every query failing = %d, want 0", got)
	}
	if d.Fired("aclrtGetMemInfo") != 2 {
		t.Errorf("%d queries failed, want 2 (HBM, then DDR)", d.Fired("aclrtGetMemInfo"))
	}
	if msg := b.lib.recentMessage(); msg != "" {
		t.Errorf("left on the thread: %q", msg)
	}
	if got := (&lib{}).deviceMemory(); got != 0 {
		t.Errorf("deviceMemory without aclrtGetMemInfo = %d, want 0", got)
	}
}

// TestDoubleGetMemInfo checks the double's aclrtGetMemInfo against CANN's
// documentation: figures per attribute, ACL_ERROR_INVALID_PARAM for a NULL
// out-parameter, an error for a value outside aclrtMemAttr, and
// ACL_ERROR_RT_CONTEXT_NULL on a thread with no device set.
func TestDoubleGetMemInfo(t *testing.T) {
	useMemInfo(t, map[acltest.MemAttr][2]int64{7: {5, 9}}) // ACL_DDR_MEM_P2P_NORMAL
	b, d := openDouble(t, Options{})
	if err := d.SetMemInfo(18, 1, 1); err == nil {
		t.Error("SetMemInfo(18) succeeded; the double knows 0 to 17")
	}
	if err := d.SetMemInfo(acltest.MemHBM, -1, 1); err == nil {
		t.Error("SetMemInfo with a negative size succeeded")
	}
	if err := b.enter(); err != nil {
		b.leave()
		t.Fatal(err)
	}
	defer b.leave()
	var free, total uintptr
	query := func(attr int, freeP, totalP *uintptr) error {
		var fp, tp unsafe.Pointer // NULL unless given
		if freeP != nil {
			fp = unsafe.Pointer(freeP)
		}
		if totalP != nil {
			tp = unsafe.Pointer(totalP)
		}
		r := ccall(b.lib.getMemInfo, uintptr(attr), uintptr(fp), uintptr(tp))
		return b.lib.status("aclrtGetMemInfo", r)
	}
	for _, tc := range []struct {
		attr        int
		free, total uintptr
	}{
		{1, acltest.DefaultHBMBytes, acltest.DefaultHBMBytes},
		{0, 0, 0},
		{7, 5, 9},
		{17, 0, 0},
	} {
		free, total = 1, 1
		if err := query(tc.attr, &free, &total); err != nil || free != tc.free || total != tc.total {
			t.Errorf("attribute %d: free %d, total %d, %v; want %d, %d", tc.attr, free, total, err, tc.free, tc.total)
		}
	}
	for _, tc := range []struct {
		name        string
		attr        int
		free, total *uintptr
		want        string
	}{
		{"NULL free", 1, nil, &total, "ACL_ERROR_INVALID_PARAM"},
		{"NULL total", 1, &free, nil, "ACL_ERROR_INVALID_PARAM"},
		{"attribute -1", -1, &free, &total, "ACL_ERROR_RT_INVALID_MEMORY_TYPE"},
		{"attribute 18", 18, &free, &total, "ACL_ERROR_RT_INVALID_MEMORY_TYPE"},
	} {
		if err := query(tc.attr, tc.free, tc.total); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
	d.ClearThreadContext() // this thread is locked by enter
	if err := query(1, &free, &total); err == nil || !strings.Contains(err.Error(), "ACL_ERROR_RT_CONTEXT_NULL") {
		t.Errorf("with no current context: %v, want ACL_ERROR_RT_CONTEXT_NULL", err)
	}
}
