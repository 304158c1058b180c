package cpu

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
)

// TestAllocRejectsBadRequests: invalid requests and one too large for
// the platform fail with errors saying so; only the too large one is out
// of memory (backend.ErrOutOfMemory).
func TestAllocRejectsBadRequests(t *testing.T) {
	be := New(Options{})
	tests := []struct {
		name   string
		dt     backend.DType
		shape  []int
		want   string
		only64 bool // the request is addressable on 32-bit platforms
		oom    bool
	}{
		{"negative", backend.Float32, []int{3, -1}, "negative extent", false, false},
		{"overflow", backend.Float32, []int{math.MaxInt / 2, 4}, "overflows", false, false},
		{"overflow product", backend.Float32, []int{math.MaxInt>>16 + 1, 1 << 10, 1 << 10}, "overflows", false, false},
		// 2⁵⁹ elements: no overflow, but more than Go can address.
		{"beyond the address space", backend.Float32, []int{math.MaxInt / 16}, "cpu: Alloc [576460752303423487]: cannot allocate 576460752303423487 elements: ", true, true},
		{"bfloat16 beyond the address space", backend.BFloat16, []int{1 << 30, 1 << 28}, "cannot allocate 288230376151711744 elements", true, true},
		{"dtype", backend.DType(0), []int{2}, "dtype", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.only64 && strconv.IntSize < 64 {
				t.Skip("needs a 64-bit int")
			}
			_, err := be.Alloc(tt.dt, tt.shape...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Alloc(%v, %v) error = %v, want one containing %q", tt.dt, tt.shape, err, tt.want)
			}
			if got := errors.Is(err, backend.ErrOutOfMemory); got != tt.oom {
				t.Errorf("errors.Is(%v, backend.ErrOutOfMemory) = %v, want %v", err, got, tt.oom)
			}
			if n := be.BytesInUse(); n != 0 {
				t.Errorf("failed Alloc left BytesInUse = %d", n)
			}
		})
	}
}

// TestMemoryLimit: an Alloc that would take the backend's memory (its
// tensors and scratch, MemoryUsage's Reserved) past Options.MemoryLimit
// fails as out of memory, saying by how much and which variable sets the
// limit, and holds nothing; up to the limit, and again after a Free,
// allocations succeed.
func TestMemoryLimit(t *testing.T) {
	// The matrix-multiply engines' workspaces count from the start.
	base := New(Options{}).MemoryUsage().Reserved
	be := New(Options{MemoryLimit: base + 1<<20})
	if r := be.MemoryUsage().Reserved; r != base {
		t.Fatalf("a new backend reserves %d bytes, another %d", r, base)
	}
	a, err := be.Alloc(backend.Float32, 3<<16) // 768 KiB
	if err != nil {
		t.Fatal(err)
	}
	_, err = be.Alloc(backend.BFloat16, 1<<17+1) // 256 KiB and 2 bytes: 2 bytes too many
	want := "cpu: Alloc [131073]: 256.0 KiB beside the "
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), EnvMemoryLimit) {
		t.Fatalf("Alloc past the limit: %v, want an error starting %q and naming %s", err, want, EnvMemoryLimit)
	}
	if !errors.Is(err, backend.ErrOutOfMemory) {
		t.Errorf("errors.Is(%v, backend.ErrOutOfMemory) = false", err)
	}
	if got := be.BytesInUse(); got != 3<<18 {
		t.Errorf("after the refused Alloc: BytesInUse = %d, want %d", got, 3<<18)
	}
	b, err := be.Alloc(backend.BFloat16, 1<<17) // exactly up to the limit
	if err != nil {
		t.Fatalf("Alloc up to the limit: %v", err)
	}
	be.Free(a)
	if _, err := be.Alloc(backend.Float32, 3<<16); err != nil {
		t.Errorf("Alloc after a Free made room: %v", err)
	}
	be.Free(b)
	if err := be.Sync(); err != nil {
		t.Error(err)
	}
}

func TestBytesInUse(t *testing.T) {
	be := New(Options{})
	a, err := be.Alloc(backend.Float32, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := be.Alloc(backend.Float32, 7)
	s, _ := be.Alloc(backend.Float32) // a scalar: one element
	e, _ := be.Alloc(backend.Float32, 4, 0)
	steps := []struct {
		free backend.Tensor
		want int64
	}{
		{backend.Tensor{}, 4 * (15 + 7 + 1)}, // freeing the zero Tensor does nothing
		{a.MustSlice(1, 2), 4 * (7 + 1)},     // a view frees its whole buffer
		{e, 4 * (7 + 1)},
		{s, 4 * 7},
		{b, 0},
	}
	if got, want := be.BytesInUse(), int64(4*(15+7+1)); got != want {
		t.Fatalf("after Alloc: BytesInUse = %d, want %d", got, want)
	}
	for i, st := range steps {
		be.Free(st.free)
		if got := be.BytesInUse(); got != st.want {
			t.Errorf("step %d: BytesInUse = %d, want %d", i, got, st.want)
		}
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
	be.Free(b) // double free: recorded, count unchanged
	if got := be.BytesInUse(); got != 0 {
		t.Errorf("after double free: BytesInUse = %d", got)
	}
	if err := be.Sync(); !errors.Is(err, errFreed) {
		t.Errorf("double free: Sync = %v, want the freed-buffer error", err)
	}
}

// TestMemoryUsagePeak follows the peak through a pattern of allocations
// and frees of both dtypes, a failed allocation, a double free and
// resets, against peaks worked out from the element sizes (4 bytes for
// float32, 2 for bfloat16). No op runs, so no scratch is taken and
// Reserved follows InUse.
func TestMemoryUsagePeak(t *testing.T) {
	be := New(Options{})
	var live []backend.Tensor
	alloc := func(dt backend.DType, shape ...int) func() {
		return func() {
			x, err := be.Alloc(dt, shape...)
			if err != nil {
				t.Fatal(err)
			}
			live = append(live, x)
		}
	}
	free := func(i int) func() { return func() { be.Free(live[i]) } }
	steps := []struct {
		what             string
		do               func()
		inUse, peakInUse int64
	}{
		{"nothing yet", func() {}, 0, 0},
		{"float32 [10, 10]", alloc(backend.Float32, 10, 10), 400, 400},
		{"bfloat16 [50]", alloc(backend.BFloat16, 50), 500, 500},
		{"free the float32", free(0), 100, 500},
		{"float32 [64]", alloc(backend.Float32, 64), 356, 500},
		{"float32 [100]: past the peak", alloc(backend.Float32, 100), 756, 756},
		{"an empty tensor", alloc(backend.Float32, 3, 0), 756, 756},
		{"a refused allocation", func() {
			if _, err := be.Alloc(backend.Float32, 2, -1); err == nil {
				t.Fatal("Alloc of a negative extent succeeded")
			}
		}, 756, 756},
		{"free the float32 [100] through a view", func() { be.Free(live[3].MustSlice(0, 10)) }, 356, 756},
		{"free it again (recorded, not counted)", free(3), 356, 756},
		{"reset", be.ResetPeakMemory, 356, 356},
		{"bfloat16 [2, 8]", alloc(backend.BFloat16, 2, 8), 388, 388},
		{"free the bfloat16 [50]", free(1), 288, 388},
		{"free the float32 [64]", free(2), 32, 388},
		{"free the empty one", free(4), 32, 388},
		{"free the last", free(5), 0, 388},
		{"reset with nothing live", be.ResetPeakMemory, 0, 0},
	}
	for _, st := range steps {
		st.do()
		u := be.MemoryUsage()
		want := backend.MemoryUsage{InUse: st.inUse, PeakInUse: st.peakInUse, Reserved: st.inUse, PeakReserved: st.peakInUse}
		if u != want {
			t.Fatalf("after %s: %+v; want %+v", st.what, u, want)
		}
		if be.BytesInUse() != u.InUse {
			t.Fatalf("after %s: BytesInUse %d, MemoryUsage.InUse %d", st.what, be.BytesInUse(), u.InUse)
		}
	}
	if err := be.Sync(); !errors.Is(err, errFreed) {
		t.Errorf("the double free: Sync = %v, want the freed-buffer error", err)
	}
}

// TestMemoryUsageConcurrent allocates and frees on several goroutines
// at once (which a Backend's ops do not, but its counters allow, for a
// reporter reading them): with everything freed, the peak is at least
// what the largest goroutine held alone and at most what all held
// together. Run with -race it also checks the counters' atomicity.
func TestMemoryUsageConcurrent(t *testing.T) {
	be := New(Options{})
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 200 {
				x, err := be.Alloc(backend.Float32, 16*(g+1))
				if err != nil {
					t.Error(err)
					return
				}
				_ = be.MemoryUsage() // a reader racing the writers
				be.Free(x)
			}
		}()
	}
	for range 4 {
		<-done
	}
	if u := be.MemoryUsage(); u.InUse != 0 || u.PeakInUse < 4*16*4 || u.PeakInUse > 4*(16+32+48+64) {
		t.Errorf("after the goroutines: %+v; want nothing in use and a peak between %d and %d", u, 4*16*4, 4*(16+32+48+64))
	}
}

func TestUploadDownloadFill(t *testing.T) {
	eachConfig(t, func(t *testing.T, be *Backend) {
		data := []float32{1, -2, 3.5, 0, 1e-30, -7}
		x := upload(t, be, data, 2, 3)
		got := download(t, be, x)
		for i := range data {
			if got[i] != data[i] {
				t.Fatalf("round trip [%d] = %g, want %g", i, got[i], data[i])
			}
		}
		data[0] = 99 // Upload copied: the tensor must not change
		if got := download(t, be, x); got[0] != 1 {
			t.Errorf("tensor follows the host slice after Upload: %g", got[0])
		}
		// Fill a row view only.
		be.Fill(x.MustSlice(1, 2), 2.5)
		assertClose(t, "fill", download(t, be, x), []float64{1, -2, 3.5, 2.5, 2.5, 2.5}, 0, 0)

		big := poisoned(t, be, 1000, 3)
		be.Fill(big, -1)
		for i, v := range download(t, be, big) {
			if v != -1 {
				t.Fatalf("big fill [%d] = %g", i, v)
			}
		}
	})
}

func TestTransferLengthMismatch(t *testing.T) {
	be := New(Options{})
	x, _ := be.Alloc(backend.Float32, 4)
	be.Upload(x, make([]float32, 3))
	err := be.Sync()
	var oe *backend.OpError
	if !errors.As(err, &oe) || oe.Op != "upload" {
		t.Fatalf("Upload of 3 into 4: Sync = %v, want an upload *OpError", err)
	}
	err = be.Download(make([]float32, 5), x)
	if !errors.As(err, &oe) || oe.Op != "download" {
		t.Fatalf("Download of 4 into 5: %v, want a download *OpError", err)
	}
	if err := be.Sync(); err != nil {
		t.Errorf("Download did not clear its error: %v", err)
	}
}

// fakeBuffer is a Buffer no CPU backend allocated.
type fakeBuffer struct{ n int }

func (f fakeBuffer) Len() int             { return f.n }
func (f fakeBuffer) DType() backend.DType { return backend.Float32 }

func TestForeignBuffer(t *testing.T) {
	be := New(Options{})
	other := New(Options{})
	mine, _ := be.Alloc(backend.Float32, 2, 3)
	c22, _ := be.Alloc(backend.Float32, 2, 2)
	theirs, _ := other.Alloc(backend.Float32, 2, 3)
	fake, err := backend.NewTensor(fakeBuffer{6}, 0, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, foreign := range []backend.Tensor{theirs, fake} {
		calls := []struct {
			op   string
			call func()
		}{
			{"upload", func() { be.Upload(foreign, make([]float32, 6)) }},
			{"fill", func() { be.Fill(foreign, 1) }},
			{"copy", func() { be.Copy(mine, foreign, false) }},
			{"copy", func() { be.Copy(foreign, mine, false) }},
			{"binary", func() { be.Binary(backend.Add, mine, mine, foreign) }},
			{"unary", func() { be.Unary(backend.Exp, foreign, mine) }},
			{"matmul", func() { be.MatMul(c22, foreign, mine.MustReshape(3, 2), backend.MatMulParams{Alpha: 1}) }},
			{"free", func() { be.Free(foreign) }},
		}
		for _, c := range calls {
			c.call()
			err := be.Sync()
			var oe *backend.OpError
			if !errors.As(err, &oe) || oe.Op != c.op || !errors.Is(err, errForeign) {
				t.Errorf("%s with %v: Sync = %v, want a %s *OpError about a foreign tensor", c.op, foreign, err, c.op)
			}
		}
		if err := be.Download(make([]float32, 6), foreign); !errors.Is(err, errForeign) {
			t.Errorf("Download of %v: %v, want the foreign-tensor error", foreign, err)
		}
	}
	if n := other.BytesInUse(); n != 24 {
		t.Errorf("the other backend's buffer was touched: BytesInUse = %d", n)
	}
}

func TestUseAfterFree(t *testing.T) {
	be := New(Options{})
	x, _ := be.Alloc(backend.Float32, 4)
	be.Free(x)
	be.Fill(x, 1)
	if err := be.Sync(); !errors.Is(err, errFreed) {
		t.Errorf("Fill of a freed tensor: Sync = %v, want the freed-buffer error", err)
	}
}

func TestClosedBackend(t *testing.T) {
	be := New(Options{})
	x, _ := be.Alloc(backend.Float32, 4)
	be.Fill(x, float32(math.NaN()))
	be.Fill(backend.Tensor{}, 0) // records an error that Close must return
	if err := be.Close(); err == nil {
		t.Error("Close dropped the recorded error")
	}
	be.Fill(x, 1)
	if err := be.Sync(); !errors.Is(err, errClosed) {
		t.Errorf("op after Close: Sync = %v, want the closed error", err)
	}
	if _, err := be.Alloc(backend.Float32, 1); !errors.Is(err, errClosed) {
		t.Errorf("Alloc after Close: %v, want the closed error", err)
	}
}
