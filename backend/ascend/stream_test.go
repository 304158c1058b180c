package ascend

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/sora-go/sora/backend"
)

func devPtr(t backend.Tensor) uintptr {
	return t.Buffer().(*buffer).Ptr + uintptr(t.Offset())*4
}

// TestStreamOrdering shows the double's stream semantics and that the
// backend honours them: queued work (copies and operators) has not
// happened until the stream is synchronised, so reading device memory
// without synchronising sees stale data, while Download and Sync see the
// results.
func TestStreamOrdering(t *testing.T) {
	b, d := openDouble(t, Options{})
	x, _ := b.Alloc(backend.Float32, 4)
	y, _ := b.Alloc(backend.Float32, 4)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	src := []float32{1, 2, 3, 4}
	b.Upload(x, src)
	src[0] = 100 // Upload staged the data: this must not reach the device
	b.Unary(backend.Neg, y, x)
	if n := d.Live("pending_tasks"); n != 2 {
		t.Errorf("%d tasks queued, want 2 (the copy and aclnnNeg)", n)
	}
	// Nothing has run: fresh device memory still holds NaN patterns.
	peek := make([]float32, 4)
	if err := d.Peek(devPtr(y), peek); err != nil {
		t.Fatal(err)
	}
	for _, v := range peek {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("before Sync y holds %v, want the untouched NaN pattern", peek)
		}
	}
	// A program that skips synchronisation and copies back directly reads
	// the same stale values.
	lockThread()
	ccall(b.lib.setCurrentContext, b.ctx)
	stale := make([]float32, 4)
	r := ccall(b.lib.memcpy, uintptr(unsafe.Pointer(&stale[0])), 16, devPtr(y), 16, memcpyDeviceToHost)
	unlockThread()
	if int32(r) != 0 || !math.IsNaN(float64(stale[0])) {
		t.Fatalf("unsynchronised aclrtMemcpy: status %d, %v; want NaN (stale)", int32(r), stale)
	}
	got := download(t, b, y) // Download synchronises
	for i, w := range []float32{-1, -2, -3, -4} {
		if got[i] != w {
			t.Fatalf("after Download y = %v", got)
		}
	}
	if n := d.Live("pending_tasks"); n != 0 {
		t.Errorf("%d tasks queued after Download", n)
	}
	if err := d.Peek(devPtr(y), peek); err != nil || peek[0] != -1 {
		t.Errorf("after Sync the device holds %v (%v)", peek, err)
	}
}

// TestStagingAfterFailedSync: a synchronisation that fails may leave
// copies queued (the double's injected aclrtSynchronizeStream failure
// returns with the queue intact), so their staging blocks must not be
// reused for later uploads until a synchronisation succeeds; then they
// must all be free again.
func TestStagingAfterFailedSync(t *testing.T) {
	for _, status := range []int32{507046, 507015} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			b, d := openDouble(t, Options{})
			x, _ := b.Alloc(backend.Float32, 4)
			y, _ := b.Alloc(backend.Float32, 4)
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			b.Upload(x, []float32{1, 2, 3, 4})
			if err := d.Inject("aclrtSynchronizeStream", 0, 1, status, "injected: the wait failed"); err != nil {
				t.Fatal(err)
			}
			if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "injected: the wait failed") {
				t.Fatalf("Sync with an injected failure: %v", err)
			}
			if d.Live("pending_tasks") == 0 {
				t.Fatal("the failed synchronisation ran the queue; the test needs it left queued")
			}
			b.Upload(y, []float32{5, 6, 7, 8}) // must not take x's staging block
			if got := download(t, b, x); fmt.Sprint(got) != "[1 2 3 4]" {
				t.Errorf("x = %v, want [1 2 3 4]: its queued copy read a reused staging block", got)
			}
			if got := download(t, b, y); fmt.Sprint(got) != "[5 6 7 8]" {
				t.Errorf("y = %v, want [5 6 7 8]", got)
			}
			// The successful synchronisation freed both blocks for reuse.
			if n := len(b.host.pending); n != 0 {
				t.Errorf("%d staging blocks still pending after a successful Sync", n)
			}
			mallocs := d.Calls("aclrtMallocHost")
			b.Upload(x, []float32{9, 9, 9, 9})
			b.Upload(y, []float32{9, 9, 9, 9})
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			if n := d.Calls("aclrtMallocHost") - mallocs; n != 0 {
				t.Errorf("two more uploads allocated %d new staging blocks; the old ones were not recycled", n)
			}
		})
	}
}

// TestPoolReuse checks that temporaries and workspaces come back from the
// pool: repeating an op allocates nothing new on the device.
func TestPoolReuse(t *testing.T) {
	b, d := openDouble(t, Options{})
	x := upload(t, b, make([]float32, 64), 8, 8)
	y, _ := b.Alloc(backend.Float32, 8, 8)
	b.Softmax(y, x, backend.SoftmaxParams{Scale: 0.5, Causal: true})
	b.MatMul(y, x, x, backend.MatMulParams{Alpha: 2, Beta: 1})
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	mallocs := d.Calls("aclrtMalloc")
	for i := 0; i < 3; i++ {
		b.Softmax(y, x, backend.SoftmaxParams{Scale: 0.5, Causal: true})
		b.MatMul(y, x, x, backend.MatMulParams{Alpha: 2, Beta: 1})
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := d.Calls("aclrtMalloc") - mallocs; n != 0 {
		t.Errorf("repeating the ops made %d more device allocations", n)
	}
	if d.Calls("aclrtFree") != 0 {
		t.Errorf("the pool freed device memory while the backend was open")
	}
}

// TestDoubleEnforcesContracts checks that the double refuses what a real
// ACL would refuse, so that passing tests mean the backend does not rely
// on leniency: calls from a thread without a current context, an operator
// launched without its workspace, an asynchronous copy from unpinned host
// memory, and device memory freed while queued work still uses it.
func TestDoubleEnforcesContracts(t *testing.T) {
	b, d := openDouble(t, Options{})
	l := b.lib

	t.Run("context per thread", func(t *testing.T) {
		done := make(chan error)
		go func() {
			// A thread without a current context (the Go runtime may
			// hand this goroutine a thread that had one).
			runtime.LockOSThread()
			d.ClearThreadContext()
			var p uintptr
			err := l.status("aclrtMalloc", ccall(l.malloc, uintptr(unsafe.Pointer(&p)), 512, mallocHugeFirst))
			done <- err
			// Leave the thread locked: it exits with the goroutine.
		}()
		err := <-done
		if err == nil || !strings.Contains(err.Error(), "ACL_ERROR_RT_CONTEXT_NULL") {
			t.Fatalf("aclrtMalloc without a context: %v", err)
		}
		// The backend's calls work from any goroutine.
		x := upload(t, b, []float32{1, 2}, 2)
		go func() {
			runtime.LockOSThread()
			b.Unary(backend.Exp, x, x)
			done <- b.Sync()
		}()
		if err := <-done; err != nil {
			t.Fatalf("op from another thread: %v", err)
		}
	})

	t.Run("workspace", func(t *testing.T) {
		x := upload(t, b, make([]float32, 6), 2, 3)
		y, _ := b.Alloc(backend.Float32, 2, 2)
		if err := b.enter(); err != nil {
			t.Fatal(err)
		}
		defer b.leave()
		c := &call{b: b, op: backend.OpMatMul}
		X := c.tensorOf(x)
		xT := c.tensor(X)
		xTT := c.tensor(X.sub(0, []int{3, 2}, []int{1, 3}))
		f := l.ops["Mm"]
		var ws uint64
		var ex uintptr
		if st := wsCall(f.getWS, uintptr(unsafe.Pointer(&ws)), uintptr(unsafe.Pointer(&ex)),
			[]uintptr{xT, xTT, c.tensor(c.tensorOf(y)), 0}); st != 0 {
			t.Fatalf("aclnnMmGetWorkspaceSize: %v", l.status("aclnnMmGetWorkspaceSize", uintptr(uint32(st))))
		}
		if ws == 0 {
			t.Fatal("aclnnMm asks for no workspace; the test needs one that does")
		}
		err := l.status("aclnnMm", ccall(f.run, 0, 0, ex, b.stream))
		c.finish()
		if err == nil || !strings.Contains(err.Error(), "required") {
			t.Fatalf("aclnnMm without its workspace: %v", err)
		}
	})

	t.Run("pinned staging", func(t *testing.T) {
		x, _ := b.Alloc(backend.Float32, 4)
		if err := b.enter(); err != nil {
			t.Fatal(err)
		}
		defer b.leave()
		host := make([]float32, 4)
		err := l.status("aclrtMemcpyAsync", ccall(l.memcpyAsync, devPtr(x), 16, uintptr(unsafe.Pointer(&host[0])), 16,
			memcpyHostToDevice, b.stream))
		if err == nil || !strings.Contains(err.Error(), "aclrtMallocHost") {
			t.Fatalf("asynchronous copy from Go memory: %v", err)
		}
	})

	t.Run("use after free", func(t *testing.T) {
		x := upload(t, b, []float32{1, 2, 3}, 3)
		y, _ := b.Alloc(backend.Float32, 3)
		if err := b.Sync(); err != nil {
			t.Fatal(err)
		}
		b.Unary(backend.Neg, y, x)
		if err := b.enter(); err != nil {
			t.Fatal(err)
		}
		// Free x's memory behind the backend's back while aclnnNeg waits.
		buf := x.Buffer().(*buffer)
		err := l.status("aclrtFree", ccall(l.free, buf.Ptr))
		b.leave()
		if err != nil {
			t.Fatal(err)
		}
		delete(b.live, buf)
		buf.Freed = true
		err = b.Sync()
		if err == nil || !strings.Contains(err.Error(), "freed device memory") {
			t.Fatalf("Sync after freeing a queued operand: %v", err)
		}
	})
}
