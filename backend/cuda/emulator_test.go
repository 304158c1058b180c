package cuda

// The emulated device: test doubles of libcuda, libcublas and libnvrtc
// (testdata/fake) built with the system's C and C++ compilers. The fake
// driver runs kernels.cu itself, compiled for the host against a fiber
// emulation of CUDA's threads, blocks, barriers and warp shuffles; the fake
// cuBLAS computes column-major SGEMM on the host. With them the whole
// backend — library calls, argument packing, context and thread
// discipline, pool, cache, cuBLAS parameter mapping and the kernels'
// arithmetic — runs without a GPU. What they cannot show: the kernels'
// speed, real concurrency between threads, and anything about NVIDIA's
// own compilers and libraries.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

var (
	fakeOnce sync.Once
	fakeDir  string
	fakeErr  error
	fakeSkip string
)

// needCXX returns the C++ compiler, or "" when there is none.
func findCXX() string {
	for _, cxx := range []string{os.Getenv("CXX"), "g++", "c++", "clang++"} {
		if cxx == "" {
			continue
		}
		if p, err := exec.LookPath(cxx); err == nil {
			return p
		}
	}
	return ""
}

func findCC() string {
	for _, cc := range []string{os.Getenv("CC"), "gcc", "cc"} {
		if cc == "" {
			continue
		}
		if p, err := exec.LookPath(cc); err == nil {
			return p
		}
	}
	return ""
}

// buildFakes builds the emulated device's libraries once per test process
// into a temporary folder (removed by TestMain).
func buildFakes() {
	if runtime.GOOS == "windows" {
		fakeSkip = windowsNoDoubles
		return
	}
	cxx, cc := findCXX(), findCC()
	if cxx == "" || cc == "" {
		fakeSkip = "no C and C++ compilers (gcc and g++): the emulated CUDA libraries cannot be built"
		return
	}
	for _, c := range []string{cxx, cc} {
		if why := wrongTarget(c); why != "" {
			fakeSkip = fmt.Sprintf("the emulated CUDA libraries cannot be built: %s (set CC and CXX to compilers for %s to run these tests)", why, runtime.GOARCH)
			return
		}
	}
	dir, err := os.MkdirTemp("", "sora-cuda-fake-")
	if err != nil {
		fakeErr = err
		return
	}
	fakeDir = dir
	src, err := filepath.Abs(filepath.Join("testdata", "fake"))
	if err != nil {
		fakeErr = err
		return
	}
	kernels, err := filepath.Abs("kernels.cu")
	if err != nil {
		fakeErr = err
		return
	}
	var table strings.Builder
	for _, k := range kernelSpecs {
		fmt.Fprintf(&table, "K(%s)\n", k.name)
	}
	tablePath := filepath.Join(dir, "kernel_table.inc")
	if err := os.WriteFile(tablePath, []byte(table.String()), 0o644); err != nil {
		fakeErr = err
		return
	}
	steps := [][]string{
		{cxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-I", src,
			fmt.Sprintf("-DKERNELS=%q", kernels), fmt.Sprintf("-DKERNEL_TABLE=%q", tablePath),
			"-o", filepath.Join(dir, "libcuda.so.1"), filepath.Join(src, "fake_cuda.cpp"), filepath.Join(src, "emu.cpp")},
		{cc, "-O1", "-shared", "-fPIC", "-o", filepath.Join(dir, "libcublas.so.12"), filepath.Join(src, "fake_cublas.c")},
		{cc, "-O1", "-shared", "-fPIC", "-o", filepath.Join(dir, "libnvrtc.so.12"), filepath.Join(src, "fake_nvrtc.c")},
	}
	empty := filepath.Join(dir, "empty.c")
	if err := os.WriteFile(empty, []byte("int sora_fake_empty;\n"), 0o644); err != nil {
		fakeErr = err
		return
	}
	for _, name := range []string{"libcublasLt.so.12", "libnvrtc-builtins.so.12.8"} {
		steps = append(steps, []string{cc, "-shared", "-fPIC", "-o", filepath.Join(dir, name), empty})
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			fakeErr = fmt.Errorf("building the emulated device (%s): %v\n%s", strings.Join(s, " "), err, out)
			return
		}
	}
}

// fakeLibs returns the folder of the emulated device's libraries, or skips.
func fakeLibs(t testing.TB) string {
	t.Helper()
	fakeOnce.Do(buildFakes)
	if fakeSkip != "" {
		t.Skip(fakeSkip)
	}
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	return fakeDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fakeDir != "" {
		os.RemoveAll(fakeDir)
	}
	os.Exit(code)
}

// fakeProbe probes the emulated device's libraries.
func fakeProbe(t testing.TB) *probeResult {
	t.Helper()
	dir := fakeLibs(t)
	r := probe(testEnv(t.TempDir(), map[string]string{"SORA_CUDA_PATH": dir}))
	if err := r.err(); err != nil {
		t.Fatalf("probe of the emulated device: %v", err)
	}
	return r
}

// openFake opens a backend on the emulated device, with a kernel cache in
// a fresh temporary folder unless opts names one, and closes it at the
// end of the test.
func openFake(t testing.TB, opts Options) *Backend {
	t.Helper()
	r := fakeProbe(t)
	if opts.CacheDir == "" && !opts.NoCache {
		opts.CacheDir = t.TempDir()
	}
	b, err := openBackend(r, opts)
	if err != nil {
		t.Fatalf("open on the emulated device: %v", err)
	}
	t.Cleanup(func() {
		if !b.closed {
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})
	return b
}

// fakeCounters reads a counter array exported by one of the fakes.
func fakeCounters(t testing.TB, lib *library, symbol string) *[16]int64 {
	t.Helper()
	p, err := dlSym(lib.handle, symbol)
	if err != nil || p == 0 {
		t.Fatalf("%s has no %s: %v", lib.where(), symbol, err)
	}
	return (*[16]int64)(*(*unsafe.Pointer)(unsafe.Pointer(&p)))
}

// TestEmulatorDivergentBarriers builds testdata/fake/emu_selftest.cpp
// against the emulator and runs it: a kernel whose threads meet at the
// same barriers runs, and kernels whose threads reach a __syncthreads or
// a warp shuffle from different places (in divergent code, the same number
// of times) are refused with the emulator's error. Every kernel of
// kernels.cu runs under that check in the other tests.
func TestEmulatorDivergentBarriers(t *testing.T) {
	fakeLibs(t) // skips where the emulator cannot be built
	src, err := filepath.Abs(filepath.Join("testdata", "fake"))
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "emu_selftest")
	build := exec.Command(findCXX(), "-std=c++17", "-O1", "-I", src, "-o", exe,
		filepath.Join(src, "emu_selftest.cpp"), filepath.Join(src, "emu.cpp"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the emulator's self-test: %v\n%s", err, out)
	}
	out, err := exec.Command(exe).CombinedOutput()
	if err != nil {
		t.Fatalf("running the emulator's self-test: %v\n%s", err, out)
	}
	got := map[string]string{}
	for line := range strings.Lines(string(out)) {
		name, result, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if ok {
			got[name] = result
		}
	}
	for name, want := range map[string]string{
		"uniform":        "ok",
		"divergent_sync": "emulator: divergent __syncthreads",
		"divergent_shfl": "emulator: divergent warp shuffle",
	} {
		if r, ok := got[name]; !ok || !strings.HasPrefix(r, want) {
			t.Errorf("kernel %s: %q, want %q...", name, r, want)
		}
	}
}
