package ascend

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"unsafe"

	"github.com/sora-go/sora/backend"
)

// TestUploadMisaligned uploads into views at every kind of offset: a view
// whose first element is not 64-byte aligned cannot be the destination of
// aclrtMemcpyAsync (the double refuses it, as CANN's documentation
// forbids it). Each upload must land exactly in its view, leave the
// neighbours alone, use aclnnInplaceCopy only for the elements before the
// first aligned address, and wait for nothing.
func TestUploadMisaligned(t *testing.T) {
	b, d := openDouble(t, Options{})
	const total = 80
	x, err := b.Alloc(backend.Float32, total)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{0, 1, 5, 15, 16, 17, 31} {
		for _, n := range []int{1, 3, 15, 16, 17, 40} {
			t.Run(fmt.Sprintf("off%d/len%d", off, n), func(t *testing.T) {
				before := make([]float32, total)
				for i := range before {
					before[i] = float32(-1 - i)
				}
				b.Upload(x, before) // offset 0: aligned
				if err := b.Sync(); err != nil {
					t.Fatal(err)
				}
				src := make([]float32, n)
				for i := range src {
					src[i] = float32(1000*off + i)
				}
				view, err := backend.NewTensor(x.Buffer(), off, n)
				if err != nil {
					t.Fatal(err)
				}
				d.Reset()
				b.Upload(view, src)
				log := d.Log()
				for _, c := range log {
					if c == "aclrtSynchronizeStream" {
						t.Errorf("the upload synchronised the stream: %v", log)
					}
				}
				// x's buffer starts 64-byte aligned (a pool block).
				wantCopy := 0
				if off%16 != 0 {
					wantCopy = 1
				}
				if got := d.Calls("aclnnInplaceCopy"); got != wantCopy {
					t.Errorf("%d aclnnInplaceCopy launches, want %d: %v", got, wantCopy, log)
				}
				got := download(t, b, x)
				for i := range got {
					want := before[i]
					if i >= off && i < off+n {
						want = src[i-off]
					}
					if math.Float32bits(got[i]) != math.Float32bits(want) {
						t.Fatalf("element %d = %g, want %g", i, got[i], want)
					}
				}
			})
		}
	}
}

// TestUploadMisalignedStreamOrder checks that an upload into a misaligned
// view stays in stream order: an op queued before it reads the old
// values, one queued after it the new ones.
func TestUploadMisalignedStreamOrder(t *testing.T) {
	b, _ := openDouble(t, Options{})
	x := upload(t, b, []float32{1, 2, 3, 4, 5, 6, 7, 8}, 8)
	before, _ := b.Alloc(backend.Float32, 5)
	after, _ := b.Alloc(backend.Float32, 5)
	view := x.MustSlice(3, 8)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	b.Copy(before, view, false)
	b.Upload(view, []float32{40, 50, 60, 70, 80})
	b.Copy(after, view, false)
	for _, tc := range []struct {
		name string
		t    backend.Tensor
		want []float32
	}{
		{"copied before the upload", before, []float32{4, 5, 6, 7, 8}},
		{"copied after the upload", after, []float32{40, 50, 60, 70, 80}},
		{"x", x, []float32{1, 2, 3, 40, 50, 60, 70, 80}},
	} {
		got := download(t, b, tc.t)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestDoubleRefusesMisalignedAsyncCopy checks the double's model of the
// rule itself: aclrtMemcpyAsync refuses a source or destination that is
// not 64-byte aligned, and synchronous aclrtMemcpy accepts both.
func TestDoubleRefusesMisalignedAsyncCopy(t *testing.T) {
	b, _ := openDouble(t, Options{})
	x, _ := b.Alloc(backend.Float32, 32)
	if err := b.enter(); err != nil {
		t.Fatal(err)
	}
	defer b.leave()
	l := b.lib
	var host uintptr
	if err := l.status("aclrtMallocHost", ccall(l.mallocHost, uintptr(unsafe.Pointer(&host)), 128)); err != nil {
		t.Fatal(err)
	}
	defer ccall(l.freeHost, host)
	dev := devPtr(x)
	for _, tc := range []struct {
		name     string
		dst, src uintptr
		ok       bool
	}{
		{"aligned", dev, host, true},
		{"destination off by 4", dev + 4, host, false},
		{"source off by 4", dev, host + 4, false},
		{"destination off by 32", dev + 32, host, false},
	} {
		err := l.status("aclrtMemcpyAsync", ccall(l.memcpyAsync, tc.dst, 64, tc.src, 64, memcpyHostToDevice, b.stream))
		if tc.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "64-byte aligned")) {
			t.Errorf("%s: aclrtMemcpyAsync: %v", tc.name, err)
		}
	}
	if err := l.status("aclrtSynchronizeStream", ccall(l.synchronizeStream, b.stream)); err != nil {
		t.Fatal(err)
	}
	if err := l.status("aclrtMemcpy", ccall(l.memcpy, dev+4, 64, host+4, 64, memcpyHostToDevice)); err != nil {
		t.Errorf("synchronous aclrtMemcpy between misaligned addresses: %v", err)
	}
}
