package cuda

// Test doubles of the NVIDIA libraries, compiled with the system C compiler
// into temporary folders, so that loading, symbol resolution and the
// driver's initialisation can be tested on machines without a GPU. They
// implement only what the probe calls; every other symbol is a stub that
// returns 0 and is never called by these tests.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// fakeDriver configures the double of libcuda.so.1.
type fakeDriver struct {
	initResult    int // what cuInit returns
	driverVersion int // what cuDriverGetVersion reports, e.g. 12080
	deviceCount   int
	name          string // device 0's name
	ccMajor       int
	ccMinor       int
	totalMem      uint64
	omit          []string // symbols left out of the library
}

// driverBodies implements the functions the probe calls.
const driverBodies = `
#include <stdint.h>
#include <string.h>
int cuInit(unsigned flags) { return FAKE_INIT_RESULT; }
int cuDriverGetVersion(int *v) { *v = FAKE_DRIVER_VERSION; return 0; }
int cuDeviceGetCount(int *n) { *n = FAKE_DEVICE_COUNT; return 0; }
int cuDeviceGet(int *d, int ordinal) { if (ordinal >= FAKE_DEVICE_COUNT) return 101; *d = ordinal; return 0; }
int cuDeviceGetName(char *name, int len, int dev) { strncpy(name, FAKE_NAME, len); name[len-1] = 0; return 0; }
int cuDeviceGetAttribute(int *v, int attr, int dev) {
	if (attr == 75) { *v = FAKE_CC_MAJOR; return 0; }
	if (attr == 76) { *v = FAKE_CC_MINOR; return 0; }
	return 1;
}
int cuDeviceTotalMem_v2(uint64_t *b, int dev) { *b = FAKE_TOTAL_MEM; return 0; }
int cuGetErrorName(int r, const char **s) {
	switch (r) {
	case 100: *s = "CUDA_ERROR_NO_DEVICE"; return 0;
	case 3: *s = "CUDA_ERROR_NOT_INITIALIZED"; return 0;
	}
	*s = 0;
	return 1;
}
int cuGetErrorString(int r, const char **s) {
	switch (r) {
	case 100: *s = "no CUDA-capable device is detected"; return 0;
	case 3: *s = "initialization error"; return 0;
	}
	*s = 0;
	return 1;
}
`

var driverImplemented = []string{
	"cuInit", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetName",
	"cuDeviceGetAttribute", "cuDeviceTotalMem_v2", "cuGetErrorName", "cuGetErrorString",
}

// workingDriver is a driver double with one device.
func workingDriver() fakeDriver {
	return fakeDriver{driverVersion: 12080, deviceCount: 1, name: "Fake GPU 9000", ccMajor: 9, ccMinor: 0, totalMem: 80 << 30}
}

// windowsNoDoubles is why the tests that build doubles of the CUDA
// libraries skip on Windows: the doubles carry Linux names and are built
// as ELF shared libraries (load_windows_test.go tests the Windows loader).
const windowsNoDoubles = "the test doubles of the CUDA libraries are built as Linux shared libraries (libcuda.so.1, ...), which windows cannot load"

// needCC returns the C compiler or skips the test.
func needCC(t *testing.T) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip(windowsNoDoubles)
	}
	for _, cc := range []string{os.Getenv("CC"), "gcc", "cc"} {
		if cc == "" {
			continue
		}
		if p, err := exec.LookPath(cc); err == nil {
			if why := wrongTarget(p); why != "" {
				t.Skipf("the test doubles of the CUDA libraries cannot be built: %s (set CC to a compiler for %s to run this test)", why, runtime.GOARCH)
			}
			return p
		}
	}
	t.Skip("no C compiler (gcc or cc) found: the test doubles of the CUDA libraries cannot be built")
	return ""
}

// wrongTarget says why the libraries that compiler builds could not be
// loaded by this test binary: it targets another architecture than the
// binary's GOARCH (GOARCH=386 tests on an amd64 host, whose gcc makes
// 64-bit libraries, which dlopen refuses as the wrong ELF class). It
// returns "" when they match, or when it cannot tell, so that the build
// and load go ahead and report any problem themselves.
func wrongTarget(compiler string) string {
	out, err := exec.Command(compiler, "-dumpmachine").Output()
	if err != nil {
		return ""
	}
	triple := strings.TrimSpace(string(out))
	arch, _, _ := strings.Cut(triple, "-")
	var goarch string
	switch arch {
	case "x86_64", "amd64":
		goarch = "amd64"
	case "i386", "i486", "i586", "i686":
		goarch = "386"
	case "aarch64", "arm64":
		goarch = "arm64"
	case "riscv64", "s390x":
		goarch = arch
	case "powerpc64le", "ppc64le":
		goarch = "ppc64le"
	case "loongarch64":
		goarch = "loong64"
	default:
		return ""
	}
	if goarch == runtime.GOARCH {
		return ""
	}
	return fmt.Sprintf("%s builds for %s (GOARCH %s, says -dumpmachine), and this test binary, built for GOARCH %s, cannot load such libraries",
		compiler, triple, goarch, runtime.GOARCH)
}

// buildLib compiles source into dir/name as a shared library.
func buildLib(t *testing.T, dir, name, source string, defines ...string) string {
	t.Helper()
	cc := needCC(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), strings.ReplaceAll(name, ".", "_")+".c")
	if err := os.WriteFile(src, []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	args := append([]string{"-shared", "-fPIC", "-o", out, src}, defines...)
	if msg, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("building test double %s: %v\n%s", name, err, msg)
	}
	return out
}

// stubs defines every name in names except those in skip as a function
// returning 0.
func stubs(names, skip []string) string {
	var b strings.Builder
	for _, n := range names {
		if !slices.Contains(skip, n) {
			fmt.Fprintf(&b, "int %s(void) { return 0; }\n", n)
		}
	}
	return b.String()
}

// buildDriver writes a libcuda.so.1 double into dir.
func buildDriver(t *testing.T, dir string, f fakeDriver) string {
	t.Helper()
	src := driverBodies + stubs(driverSymbols, append(slices.Clone(driverImplemented), f.omit...))
	for _, n := range f.omit {
		if slices.Contains(driverImplemented, n) {
			t.Fatalf("buildDriver: cannot omit %s, which the probe calls", n)
		}
	}
	return buildLib(t, dir, "libcuda.so.1", src,
		fmt.Sprintf("-DFAKE_INIT_RESULT=%d", f.initResult),
		fmt.Sprintf("-DFAKE_DRIVER_VERSION=%d", f.driverVersion),
		fmt.Sprintf("-DFAKE_DEVICE_COUNT=%d", f.deviceCount),
		fmt.Sprintf("-DFAKE_NAME=%q", f.name),
		fmt.Sprintf("-DFAKE_CC_MAJOR=%d", f.ccMajor),
		fmt.Sprintf("-DFAKE_CC_MINOR=%d", f.ccMinor),
		fmt.Sprintf("-DFAKE_TOTAL_MEM=%dULL", f.totalMem))
}

// buildStubLib writes a library named name into dir that defines symbols
// (all stubs) except omit.
func buildStubLib(t *testing.T, dir, name string, symbols, omit []string) string {
	t.Helper()
	src := stubs(symbols, omit)
	if src == "" {
		src = "int sora_test_empty;\n"
	}
	return buildLib(t, dir, name, src)
}

// buildCUBLAS writes libcublas.so.<major> and its libcublasLt into dir.
func buildCUBLAS(t *testing.T, dir string, major int) {
	t.Helper()
	buildStubLib(t, dir, fmt.Sprintf("libcublasLt.so.%d", major), nil, nil)
	buildStubLib(t, dir, fmt.Sprintf("libcublas.so.%d", major), cublasSymbols, nil)
}

// buildNVRTC writes libnvrtc.so.<major> and libnvrtc-builtins.so.<major>.<minor> into dir.
func buildNVRTC(t *testing.T, dir string, major, minor int) {
	t.Helper()
	buildStubLib(t, dir, fmt.Sprintf("libnvrtc-builtins.so.%d.%d", major, minor), nil, nil)
	buildStubLib(t, dir, fmt.Sprintf("libnvrtc.so.%d", major), nvrtcSymbols, nil)
}
