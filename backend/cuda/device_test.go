package cuda

// Tests of the backend's host code on the emulated device (see
// emulator_test.go): pool, threads and contexts, errors, kernel cache,
// cuBLAS modes.

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/sora-go/sora/backend"
)

func mustAlloc(t testing.TB, b *Backend, shape ...int) backend.Tensor {
	t.Helper()
	x, err := b.Alloc(backend.Float32, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// trainingStep allocates, computes and frees what one step of a small
// model would, using the ops that take scratch memory.
func trainingStep(t testing.TB, b *Backend, step int) float32 {
	t.Helper()
	const rows, cols, vocab = 6, 40, 11
	ids := []int32{1, 4, 1, 7, 0, 4}
	table := mustAlloc(t, b, vocab, cols)
	x := mustAlloc(t, b, rows, cols)
	w := mustAlloc(t, b, cols, vocab)
	logits := mustAlloc(t, b, rows, vocab)
	dlogits := mustAlloc(t, b, rows, vocab)
	loss := mustAlloc(t, b, rows)
	dw := mustAlloc(t, b, cols)
	bias := mustAlloc(t, b, vocab)
	gain := mustAlloc(t, b, cols)
	host := make([]float32, vocab*cols)
	for i := range host {
		host[i] = float32(math.Sin(float64(i*(step+1)) * 0.1))
	}
	b.Upload(table, host)
	b.Upload(w, host[:cols*vocab])
	b.Fill(gain, 1)
	b.Fill(dw, 0)
	b.Gather(x, table, ids)
	b.RMSNorm(x, x, gain, 1e-5)
	b.MatMul(logits, x, w, backend.MatMulParams{Alpha: 1})
	b.CrossEntropy(loss, logits, ids, backend.CrossEntropyParams{IgnoreIndex: -100})
	b.CrossEntropyGrad(dlogits, logits, ids, backend.CrossEntropyParams{IgnoreIndex: -100, Scale: 1.0 / rows})
	b.SumColumns(bias, dlogits)
	b.RMSNormGrad(x, dw, x, gain, x, 1e-5)
	b.ScatterAdd(table, x, ids)
	out := make([]float32, rows)
	if err := b.Download(out, loss); err != nil {
		t.Fatalf("step %d: %v", step, err)
	}
	for _, tn := range []backend.Tensor{table, x, w, logits, dlogits, loss, dw, bias, gain} {
		b.Free(tn)
	}
	return out[0]
}

// TestPoolSteadyState: after the first step, a loop that frees and
// reallocates the same shapes (temporaries included) calls no cuMemAlloc.
func TestPoolSteadyState(t *testing.T) {
	b := openFake(t, Options{})
	driverStats := fakeCounters(t, b.api.drv, "sora_fake_stats")
	trainingStep(t, b, 0)
	before, stats := driverStats[0], b.MemoryStats()
	if stats.DeviceAllocs == 0 || stats.Cached == 0 {
		t.Fatalf("after one step: %+v", stats)
	}
	var losses []float32
	for step := 1; step <= 5; step++ {
		losses = append(losses, trainingStep(t, b, step))
	}
	if got := b.MemoryStats().DeviceAllocs; got != stats.DeviceAllocs {
		t.Errorf("steady state: %d device allocations after warm-up, want none", got-stats.DeviceAllocs)
	}
	if driverStats[0] != before {
		t.Errorf("the driver saw %d cuMemAlloc calls after warm-up", driverStats[0]-before)
	}
	if losses[0] == losses[4] || losses[0] != losses[0] {
		t.Errorf("losses %v: the steps did not compute", losses)
	}
	if b.BytesInUse() != b.MemoryStats().Cached || b.MemoryStats().InUse != 0 {
		t.Errorf("with every tensor freed: BytesInUse %d, stats %+v", b.BytesInUse(), b.MemoryStats())
	}
}

// TestDptrs checks that dptrs gives each argument's address in order (0
// for an absent one) and names a bad argument, and that resolving up to
// AttentionGrad's nine arguments, which every op does, allocates nothing;
// more arguments take a new slice and give the same addresses.
func TestDptrs(t *testing.T) {
	b := openFake(t, Options{})
	x := mustAlloc(t, b, 64)
	base, err := b.dptr(x)
	if err != nil || base == 0 {
		t.Fatalf("dptr: %#x, %v", base, err)
	}
	ts := []backend.Tensor{{}}
	want := []uintptr{0}
	for i := range len(b.ptrs) + 1 {
		ts = append(ts, x.MustSlice(i, i+1))
		want = append(want, base+uintptr(4*i))
	}
	for n := 1; n <= len(ts); n++ {
		got, err := b.dptrs(ts[:n]...)
		if err != nil {
			t.Fatalf("%d arguments: %v", n, err)
		}
		if !slices.Equal(got, want[:n]) {
			t.Errorf("%d arguments: %#x, want %#x", n, got, want[:n])
		}
		if n > len(b.ptrs) {
			continue
		}
		if a := testing.AllocsPerRun(10, func() { b.dptrs(ts[:n]...) }); a != 0 {
			t.Errorf("%d arguments: %v allocations per call, want 0", n, a)
		}
	}
	y := mustAlloc(t, b, 4)
	b.Free(y)
	if _, err := b.dptrs(x, y); err == nil || !strings.Contains(err.Error(), "tensor argument 1") {
		t.Errorf("a freed argument: %v, want an error naming argument 1", err)
	}
}

// TestThreadDiscipline issues ops from fresh goroutines, which the Go
// scheduler places on any OS thread; the fake driver refuses every call
// made on a thread where the context is not current. A direct call from a
// new thread shows that it does refuse.
func TestThreadDiscipline(t *testing.T) {
	b := openFake(t, Options{})
	driverStats := fakeCounters(t, b.api.drv, "sora_fake_stats")
	refused := driverStats[4]
	x := mustAlloc(t, b, 257)
	var mu sync.Mutex // the backend orders one caller's ops: take turns
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.Gosched()
			mu.Lock()
			defer mu.Unlock()
			b.Fill(x, float32(g))
			b.Unary(backend.Square, x, x)
			got := make([]float32, 257)
			if err := b.Download(got, x); err != nil {
				t.Errorf("goroutine %d: %v", g, err)
				return
			}
			if got[256] != float32(g*g) {
				t.Errorf("goroutine %d: %g, want %d", g, got[256], g*g)
			}
		}()
	}
	wg.Wait()
	if driverStats[4] != refused {
		t.Errorf("the driver refused %d calls for want of a current context", driverStats[4]-refused)
	}
	done := make(chan int)
	go func() {
		runtime.LockOSThread() // a new thread: never made the context current
		defer runtime.UnlockOSThread()
		var p uintptr
		call(b.api.cuCtxSetCurrent, 0)
		done <- call(b.api.cuMemAlloc, uintptr(unsafe.Pointer(&p)), 1024)
	}()
	if res := <-done; res != 201 {
		t.Errorf("cuMemAlloc without a current context returned %d, want CUDA_ERROR_INVALID_CONTEXT (201): the fake does not check", res)
	}
}

func TestOutOfMemory(t *testing.T) {
	b := openFake(t, Options{})
	// 3 MiB beyond what the process holds on the fake device already
	// (TestDroppedBackend leaves its blocks there on purpose, which
	// matters when tests run more than once).
	inUse := fakeCounters(t, b.api.drv, "sora_fake_stats")[3]
	t.Setenv("SORA_FAKE_MEM_LIMIT", strconv.FormatInt(inUse+3<<20, 10))
	_, err := b.Alloc(backend.Float32, 1<<20) // 4 MiB
	if err == nil {
		t.Fatal("Alloc beyond the limit succeeded")
	}
	for _, want := range []string{"cuda: Alloc [1048576] (4194304 bytes)", "cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY (out of memory)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if !IsOutOfMemory(err) || !errors.Is(err, backend.ErrOutOfMemory) {
		t.Errorf("IsOutOfMemory(%v) = %v, errors.Is(err, backend.ErrOutOfMemory) = %v; want both true", err, IsOutOfMemory(err), errors.Is(err, backend.ErrOutOfMemory))
	}
	// A cached block that the new request cannot use goes back to the
	// device so that the request fits.
	x := mustAlloc(t, b, 512<<10) // 2 MiB
	b.Free(x)
	frees := b.MemoryStats().DeviceFrees
	y, err := b.Alloc(backend.Float32, 700<<10) // 2.8 MiB: another class
	if err != nil {
		t.Fatalf("Alloc after freeing: %v (the pool should have released its cache)", err)
	}
	if b.MemoryStats().DeviceFrees != frees+1 || b.MemoryStats().Cached != 0 {
		t.Errorf("stats %+v: want the cached block returned", b.MemoryStats())
	}
	b.Free(y)
	if err := b.Sync(); err != nil {
		t.Errorf("Sync: %v", err)
	}
}

// TestOutOfMemoryRetry: a kernel launch refused with
// CUDA_ERROR_OUT_OF_MEMORY and a cuBLAS call refused with
// CUBLAS_STATUS_ALLOC_FAILED (memory they allocate outside the pool) are
// tried once more after the pool's cache goes back to the device; with
// nothing cached there is no retry, and a retry that fails too is reported
// with the original error.
func TestOutOfMemoryRetry(t *testing.T) {
	b := openFake(t, Options{})
	ctl := fakeCounters(t, b.api.drv, "sora_fake_ctl")
	blas := fakeCounters(t, b.api.blas, "sora_fake_blas")
	t.Cleanup(func() { ctl[0], blas[10] = 0, 0 })
	x, w := mustAlloc(t, b, 2, 3), mustAlloc(t, b, 3, 2)
	b.Upload(x, []float32{1, 2, 3, 4, 5, 6})
	b.Upload(w, []float32{1, 0, 0, 1, 1, 1})
	y, c := mustAlloc(t, b, 2, 3), mustAlloc(t, b, 2, 2)
	for _, tc := range []struct {
		name   string
		inject *int64 // calls to refuse
		calls  *int64 // attempts the fake counts (nil: none counted)
		run    func()
		out    backend.Tensor
		want   []float32
		errMsg string
	}{
		{"launch", &ctl[0], nil, func() { b.Scale(y, x, 2) }, y, []float32{2, 4, 6, 8, 10, 12},
			"cuLaunchKernel(scale): CUDA_ERROR_OUT_OF_MEMORY (out of memory)"},
		{"cublas", &blas[10], &blas[2], func() { b.MatMul(c, x, w, backend.MatMulParams{Alpha: 1}) }, c, []float32{4, 5, 10, 11},
			"cublasSgemm_v2: CUBLAS_STATUS_ALLOC_FAILED (the resource allocation failed)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make([]float32, len(tc.want))
			attempts := func() int64 {
				if tc.calls == nil {
					return -1
				}
				return *tc.calls
			}
			// A 2 MiB block in the cache, and one failure: the retry succeeds.
			b.Free(mustAlloc(t, b, 512<<10))
			before := b.MemoryStats()
			if before.Cached != 2<<20 {
				t.Fatalf("cache %d bytes, want the 2 MiB block alone", before.Cached)
			}
			b.Fill(tc.out, -1)
			*tc.inject = 1
			tc.run()
			if err := b.Download(got, tc.out); err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("after one refused call and a retry: %v, %v; want %v, nil", got, err, tc.want)
			}
			if s := b.MemoryStats(); s.Cached != 0 || s.DeviceFrees != before.DeviceFrees+1 || *tc.inject != 0 {
				t.Errorf("after the retry: %+v, %d refusals left; want the cached block freed, none left", s, *tc.inject)
			}

			// Nothing cached: the failure is the op's error, with no retry.
			b.Fill(tc.out, -1)
			*tc.inject = 1
			n0 := attempts()
			tc.run()
			err := b.Sync()
			if err == nil || !strings.HasSuffix(err.Error(), ": "+tc.errMsg) {
				t.Errorf("with nothing cached: %v, want an error ending %q", err, tc.errMsg)
			}
			if tc.calls != nil && attempts() != n0+1 {
				t.Errorf("with nothing cached: %d attempts, want 1", attempts()-n0)
			}
			if tc.name == "launch" && !IsOutOfMemory(err) {
				t.Errorf("IsOutOfMemory(%v) = false", err)
			}
			if !errors.Is(err, backend.ErrOutOfMemory) {
				t.Errorf("errors.Is(%v, backend.ErrOutOfMemory) = false", err)
			}

			// The retry fails too: both errors are reported.
			b.Free(mustAlloc(t, b, 512<<10))
			*tc.inject = 2
			tc.run()
			err = b.Sync()
			want := tc.errMsg + " (retried after returning 2097152 cached bytes to the device: " + tc.errMsg + ")"
			if err == nil || !strings.HasSuffix(err.Error(), want) {
				t.Errorf("a failed retry: %v, want an error ending %q", err, want)
			}
			if !errors.Is(err, backend.ErrOutOfMemory) {
				t.Errorf("a failed retry: errors.Is(%v, backend.ErrOutOfMemory) = false", err)
			}
			if *tc.inject != 0 {
				t.Errorf("%d refusals left after a failed retry, want 0", *tc.inject)
			}
		})
	}
}

func TestKernelCache(t *testing.T) {
	r := fakeProbe(t)
	nvrtc := fakeCounters(t, r.nvrtc, "sora_fake_nvrtc")
	dir := t.TempDir()
	open := func() *Backend {
		t.Helper()
		compiled.Clear() // as a new process would start
		b, err := openBackend(r, Options{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	n0 := nvrtc[0]
	b := open()
	devices := []string{b.Device()}
	if nvrtc[0] != n0+1 || !strings.HasPrefix(b.Kernels(), "compiled by NVRTC, cached in "+dir) {
		t.Fatalf("first open: %d compilations, kernels %q", nvrtc[0]-n0, b.Kernels())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "kernels-sm_80-*.cubin"))
	if len(files) != 1 {
		t.Fatalf("cache folder holds %q, want one cubin", files)
	}
	b = open()
	devices = append(devices, b.Device())
	if nvrtc[0] != n0+1 || b.Kernels() != "cached in "+files[0] {
		t.Errorf("second open: %d compilations in all, kernels %q; want the cached file used", nvrtc[0]-n0, b.Kernels())
	}
	// A damaged file is compiled afresh and replaced.
	if err := os.WriteFile(files[0], []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	b = open()
	if nvrtc[0] != n0+2 {
		t.Errorf("open over a damaged cache file: %d compilations in all, want 2", nvrtc[0]-n0)
	}
	if data, _ := os.ReadFile(files[0]); !strings.HasPrefix(string(data), "SORA-FAKE-CUBIN") {
		t.Errorf("the damaged cache file was not replaced: %q", data)
	}
	// Within a process, a second backend reuses the compilation.
	b2, err := openBackend(r, Options{NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if nvrtc[0] != n0+2 || b2.Kernels() != "compiled earlier in this process" {
		t.Errorf("second backend: %d compilations, kernels %q", nvrtc[0]-n0, b2.Kernels())
	}
	devices = append(devices, b2.Device())
	// Device leaves the kernels' origin out, so that every open on one
	// device says the same. Checkpoints and run.json made before it did
	// recorded it with the origin's clause taken out, as train did
	// then: "…; kernels compiled by NVRTC, cached in /tmp/…/kernels-
	// sm_80-….cubin; matmul fp32" (what Device said on the emulated
	// device at 44e7151) was recorded as this, which a resume now finds
	// equal.
	const recorded = "Emulated GPU, compute capability 8.0, 1.0 GiB, 2 SMs; driver CUDA 12.8, cuBLAS 12, NVRTC 12.8; matmul fp32"
	for i, d := range devices {
		if d != recorded {
			t.Errorf("open %d: Device() = %q, want %q as recorded before", i+1, d, recorded)
		}
	}
}

func TestCompileFailure(t *testing.T) {
	r := fakeProbe(t)
	compiled.Clear()
	t.Cleanup(compiled.Clear)
	t.Setenv("SORA_FAKE_NVRTC_FAIL", "1")
	b, err := openBackend(r, Options{NoCache: true})
	if err == nil {
		b.Close()
		t.Fatal("open succeeded with a failing compiler")
	}
	for _, want := range []string{
		"nvrtcCompileProgram: NVRTC_ERROR_COMPILATION",
		"--gpu-architecture=sm_80",
		"sora_kernels.cu(1): error: injected failure for the test",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestCompileOutOfMemory: NVRTC running out of memory compiling the
// kernels fails the open with its status, which matches
// backend.ErrOutOfMemory through the errors that wrap it; a compilation
// that fails otherwise does not.
func TestCompileOutOfMemory(t *testing.T) {
	r := fakeProbe(t)
	compiled.Clear()
	t.Cleanup(compiled.Clear)
	for _, c := range []struct {
		fail, want string
		oom        bool
	}{
		{"oom", "nvrtcCompileProgram: NVRTC_ERROR_OUT_OF_MEMORY", true},
		{"1", "nvrtcCompileProgram: NVRTC_ERROR_COMPILATION", false},
	} {
		t.Setenv("SORA_FAKE_NVRTC_FAIL", c.fail)
		b, err := openBackend(r, Options{NoCache: true})
		if err == nil {
			b.Close()
			t.Fatalf("SORA_FAKE_NVRTC_FAIL=%s: open succeeded", c.fail)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("SORA_FAKE_NVRTC_FAIL=%s: error %q lacks %q", c.fail, err, c.want)
		}
		if got := errors.Is(err, backend.ErrOutOfMemory); got != c.oom {
			t.Errorf("SORA_FAKE_NVRTC_FAIL=%s: errors.Is(%v, backend.ErrOutOfMemory) = %v, want %v", c.fail, err, got, c.oom)
		}
	}
}

func TestMathModes(t *testing.T) {
	for _, tf32 := range []bool{false, true} {
		b := openFake(t, Options{TF32: tf32})
		blas := fakeCounters(t, b.api.blas, "sora_fake_blas")
		want := int64(cublasDefaultMath)
		if tf32 {
			want = cublasTF32TensorOpMath
		}
		if blas[0] != want || blas[1] != cublasPointerModeHost {
			t.Errorf("TF32=%v: math mode %d, pointer mode %d; want %d, host", tf32, blas[0], blas[1], want)
		}
		if got := strings.HasSuffix(b.Device(), "matmul tf32"); got != tf32 {
			t.Errorf("TF32=%v: device %q", tf32, b.Device())
		}
	}
}

func TestBatchedMatMulCall(t *testing.T) {
	b := openFake(t, Options{})
	blas := fakeCounters(t, b.api.blas, "sora_fake_blas")
	a, w, c := mustAlloc(t, b, 3, 4, 5), mustAlloc(t, b, 5, 6), mustAlloc(t, b, 3, 4, 6)
	b.Fill(a, 1)
	b.Fill(w, 2)
	batched := blas[3]
	b.MatMul(c, a, w, backend.MatMulParams{Alpha: 1})
	got := make([]float32, 72)
	if err := b.Download(got, c); err != nil {
		t.Fatal(err)
	}
	if got[71] != 10 || blas[3] != batched+1 || blas[9] != 3 {
		t.Errorf("C[last] = %g, strided-batched calls %d, batch %d; want 10, one call, 3", got[71], blas[3]-batched, blas[9])
	}
	// The vendor call gives the same product.
	b.Fill(c, -1)
	b.VendorMatMul(c, a, w, backend.MatMulParams{Alpha: 1})
	if err := b.Download(got, c); err != nil || got[0] != 10 {
		t.Errorf("VendorMatMul: %g, %v", got[0], err)
	}
	// k = 0: C = beta·C without cuBLAS.
	e0, e1, c2 := mustAlloc(t, b, 2, 0), mustAlloc(t, b, 0, 3), mustAlloc(t, b, 2, 3)
	b.Fill(c2, 4)
	calls := blas[2]
	b.MatMul(c2, e0, e1, backend.MatMulParams{Alpha: 1, Beta: 0.5})
	out := make([]float32, 6)
	if err := b.Download(out, c2); err != nil || out[5] != 2 || blas[2] != calls {
		t.Errorf("k=0: C = %v, %v, %d cuBLAS calls", out, err, blas[2]-calls)
	}
}

func TestDeviceCopy(t *testing.T) {
	b := openFake(t, Options{})
	x, y := mustAlloc(t, b, 100), mustAlloc(t, b, 100)
	b.Fill(x, 3)
	b.DeviceCopy(y, x)
	got := make([]float32, 100)
	if err := b.Download(got, y); err != nil || got[99] != 3 {
		t.Errorf("DeviceCopy: %g, %v", got[99], err)
	}
	b.DeviceCopy(y, mustAlloc(t, b, 7))
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "element counts differ") {
		t.Errorf("DeviceCopy of different lengths: %v", err)
	}

	// Sticky errors: while an error is held DeviceCopy does nothing, and
	// Sync reports the first error, not a later one.
	b.Fill(x, 5)
	b.Scale(x, mustAlloc(t, b, 3), 2) // a bad call: recorded
	b.DeviceCopy(y, x)                // skipped: y keeps 3
	err := b.Sync()
	if err == nil || !strings.HasPrefix(err.Error(), "scale ") {
		t.Errorf("Sync after a failed Scale and a DeviceCopy: %v, want the Scale error", err)
	}
	if err := b.Download(got, y); err != nil || got[99] != 3 {
		t.Errorf("DeviceCopy ran while an error was held: y = %g, %v; want 3", got[99], err)
	}
	// After Close it records that the backend is closed.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b.DeviceCopy(y, x)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "copy: backend is closed") {
		t.Errorf("DeviceCopy after Close: %v, want a closed-backend error", err)
	}
}

func TestErrorsAndClose(t *testing.T) {
	b := openFake(t, Options{})
	other := openFake(t, Options{})
	driverStats := fakeCounters(t, b.api.drv, "sora_fake_stats")
	x := mustAlloc(t, b, 4)
	foreign := mustAlloc(t, other, 4)
	b.Scale(x, foreign, 2)
	b.Fill(x, 1) // skipped: an error is recorded
	err := b.Sync()
	if err == nil || !strings.Contains(err.Error(), "scale [4],[4]: tensor argument 1: tensor belongs to another backend") {
		t.Errorf("foreign tensor: %v", err)
	}
	if err := b.Sync(); err != nil {
		t.Errorf("second Sync: %v, want the error cleared", err)
	}
	b.Free(x)
	b.Fill(x, 1)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "freed") {
		t.Errorf("use after free: %v", err)
	}
	b.Free(x)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "free [4]: tensor's buffer was freed") {
		t.Errorf("double free: %v", err)
	}
	live := mustAlloc(t, b, 1000)
	_ = live
	bytesBefore := driverStats[3]
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if freed := bytesBefore - driverStats[3]; freed < 4000 {
		t.Errorf("Close returned %d bytes to the device, want at least the live tensor's 4000", freed)
	}
	b.Fill(live, 1)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("op after Close: %v", err)
	}
	if _, err := b.Alloc(backend.Float32, 1); err == nil {
		t.Error("Alloc after Close succeeded")
	}
}

// TestDroppedBackend: a backend that is never closed must not leave
// pinned Go memory behind, which the runtime treats as a fatal leak when
// it collects the pinner.
func TestDroppedBackend(t *testing.T) {
	r := fakeProbe(t)
	func() {
		b, err := openBackend(r, Options{NoCache: true})
		if err != nil {
			t.Fatal(err)
		}
		x := mustAlloc(t, b, 64)
		y := mustAlloc(t, b, 8, 8)
		b.Fill(x, 1)
		b.MatMul(y, x.MustReshape(8, 8), x.MustReshape(8, 8), backend.MatMulParams{Alpha: 1})
		if err := b.Sync(); err != nil {
			t.Fatal(err)
		}
	}()
	for range 3 {
		runtime.GC()
	}
}
