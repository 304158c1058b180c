package cuda

// Tests of the kernels' 32-bit index limits: grid-stride counters near
// 2^31 and the extents the host lets through as C ints.

import (
	"math"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
)

// TestCopy32NearLimit runs the last block of copy_strided32's grid-stride
// loop over element counts just below 2^31, on grids the size of a large
// GPU's (step = blocks·256), where an int counter overflowed once it
// passed the last element (compiled for the emulator, that loop never
// ended: a regression shows as this test timing out). Every stride is 0, so each iteration adds
// src[0] = 1 into dst[0], which then counts the iterations; a correct
// loop's count is worked out here.
func TestCopy32NearLimit(t *testing.T) {
	b := openFake(t, Options{})
	ctl := fakeCounters(t, b.api.drv, "sora_fake_ctl")
	t.Cleanup(func() { ctl[1] = 0 })
	cnt, one := mustAlloc(t, b, 1), mustAlloc(t, b, 1)
	b.Fill(one, 1)
	for _, tc := range []struct {
		name   string
		n      int64
		shape  []int64
		blocks int
	}{
		{"46340² on an H100 grid", 46340 * 46340, []int64{46340, 46340}, 132 * 32},
		{"2^31-1 on an H100 grid", math.MaxInt32, []int64{math.MaxInt32}, 132 * 32},
		{"2^31-1 on 65535 blocks", math.MaxInt32, []int64{math.MaxInt32}, 65535},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cp copyParams
			cp.n, cp.rank, cp.accumulate = tc.n, int32(len(tc.shape)), 1
			copy(cp.shape[:], tc.shape)
			b.Fill(cnt, 0)
			ctl[1] = int64(tc.blocks - 1) // run the last block only
			b.run(backend.OpCopy, nil, func() error {
				p, err := b.dptrs(cnt, one)
				if err != nil {
					return err
				}
				args := b.kernel(kCopyStrided32)
				args.copyParams(&cp)
				args.ptr(p[0])
				args.ptr(p[1])
				return b.launch(kCopyStrided32, dim3{tc.blocks, 1, 1}, dim3{elemBlock, 1, 1})
			})
			ctl[1] = 0
			got := make([]float32, 1)
			if err := b.Download(got, cnt); err != nil {
				t.Fatal(err)
			}
			step := int64(tc.blocks) * elemBlock
			var want int64
			for th := range int64(elemBlock) {
				if i0 := int64(tc.blocks-1)*elemBlock + th; i0 < tc.n {
					want += (tc.n - i0 + step - 1) / step
				}
			}
			if int64(got[0]) != want {
				t.Errorf("the last block ran %g iterations, want %d", got[0], want)
			}
		})
	}
}

// TestKernelIntLimit: extents passed to kernels as C ints leave room for
// a block's width below 2^31, and an op given a longer row refuses it
// before launching anything.
func TestKernelIntLimit(t *testing.T) {
	for _, tc := range []struct {
		v  int
		ok bool
	}{
		{1 << 30, true},
		{math.MaxInt32 - maxBlock, true},
		{math.MaxInt32 - maxBlock + 1, false},
		{math.MaxInt32 - 100, false},
		{math.MaxInt32, false},
	} {
		if err := check32("row length", tc.v); (err == nil) != tc.ok {
			t.Errorf("check32(%d) = %v, want ok = %v", tc.v, err, tc.ok)
		}
		if err := rowArgs(1, tc.v); (err == nil) != tc.ok {
			t.Errorf("rowArgs(1, %d) = %v, want ok = %v", tc.v, err, tc.ok)
		}
	}

	// A row of 2^31 − 100 elements, through ReduceRows. The buffer claims
	// the length without holding it: the op must stop at the limit, before
	// any kernel could read it.
	b := openFake(t, Options{})
	stats := fakeCounters(t, b.api.drv, "sora_fake_stats")
	small := mustAlloc(t, b, 16)
	const cols = math.MaxInt32 - 100
	big, err := backend.NewTensor(&buffer{Owner: b, Ptr: small.Buffer().(*buffer).Ptr, N: cols}, 0, 1, cols)
	if err != nil {
		t.Fatal(err)
	}
	dst := mustAlloc(t, b, 1)
	launches := stats[2]
	b.ReduceRows(backend.Sum, dst, big)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "row length 2147483547 exceeds the kernels' 32-bit limit") {
		t.Errorf("ReduceRows over a row of %d elements: %v, want the limit's error", cols, err)
	}
	if stats[2] != launches {
		t.Errorf("%d kernels launched for the refused row", stats[2]-launches)
	}
}
