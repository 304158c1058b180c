package cuda

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
)

// probeErr runs the probe and returns its *backend.UnavailableError.
func probeErr(t *testing.T, env searchEnv) (*probeResult, *backend.UnavailableError) {
	t.Helper()
	r := probe(env)
	err := r.err()
	var u *backend.UnavailableError
	if !errors.As(err, &u) {
		t.Fatalf("probe error %v (%T) is not a *backend.UnavailableError", err, err)
	}
	return r, u
}

// probeOK runs the probe and fails the test unless it found everything.
func probeOK(t *testing.T, env searchEnv) *probeResult {
	t.Helper()
	r := probe(env)
	if err := r.err(); err != nil || len(r.problems) != 0 {
		t.Fatalf("probe: %v (problems %q)", err, r.problems)
	}
	return r
}

func TestProbeNothingFound(t *testing.T) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	mkdirs(t, filepath.Join(root, "usr/lib/x86_64-linux-gnu"), filepath.Join(root, "usr/local/cuda/lib64"))
	typo := filepath.Join(tmp, "opt/cudaa")
	_, u := probeErr(t, testEnv(root, map[string]string{"SORA_CUDA_PATH": typo}))
	wantReason := "libcuda.so.1 (the NVIDIA driver API) not found; " +
		"libcublas.so.13 or libcublas.so.12 (cuBLAS) not found; " +
		"libnvrtc.so.13 or libnvrtc.so.12 (NVRTC) not found; " +
		"set SORA_CUDA_PATH to the folder that holds the missing libraries"
	if u.Reason != wantReason {
		t.Errorf("reason:\n got %q\nwant %q", u.Reason, wantReason)
	}
	wantTried := []string{
		typo + " ($SORA_CUDA_PATH) (no such folder)",
		filepath.Join(root, "usr/local/cuda/lib64"),
		filepath.Join(root, "usr/lib/x86_64-linux-gnu"),
		filepath.Join(root, "usr/lib"),
		"Python environments (no nvidia/*/lib folder found)",
	}
	if !slices.Equal(u.Tried, wantTried) {
		t.Errorf("tried:\n got %q\nwant %q", u.Tried, wantTried)
	}
	if u.Backend != "cuda" {
		t.Errorf("backend %q, want cuda", u.Backend)
	}
}

// TestLoadOrder plants an unloadable file under every candidate name in
// several folders and checks, through the problems reported, that the
// files were tried in search order and, within a folder, newest CUDA first.
func TestLoadOrder(t *testing.T) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	sys := filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	var planted []string
	for _, d := range []string{a, b, sys} {
		for _, n := range []string{"libcublas.so.12", "libcublas.so.13", "libcublasLt.so.12", "libcublasLt.so.13"} {
			touch(t, filepath.Join(d, n))
		}
		planted = append(planted, filepath.Join(d, "libcublasLt.so.13"), filepath.Join(d, "libcublasLt.so.12"))
	}
	env := testEnv(root, map[string]string{"SORA_CUDA_PATH": b, "LD_LIBRARY_PATH": a})
	out := load(cublasSpec, env.searchDirs(), env, majorCap{})
	if out.lib != nil || !out.found {
		t.Fatalf("load of empty files: lib %v, found %v", out.lib, out.found)
	}
	// Each candidate fails on its (empty) companion, loaded first.
	if len(out.problems) != len(planted) {
		t.Fatalf("got %d problems, want %d:\n%s", len(out.problems), len(planted), strings.Join(out.problems, "\n"))
	}
	order := []string{
		filepath.Join(b, "libcublasLt.so.13"), filepath.Join(b, "libcublasLt.so.12"),
		filepath.Join(a, "libcublasLt.so.13"), filepath.Join(a, "libcublasLt.so.12"),
		filepath.Join(sys, "libcublasLt.so.13"), filepath.Join(sys, "libcublasLt.so.12"),
	}
	for i, p := range out.problems {
		lib := strings.Replace(filepath.Base(order[i]), "Lt", "", 1)
		prefix := order[i] + " (needed by " + filepath.Join(filepath.Dir(order[i]), lib) + "): "
		if !strings.HasPrefix(p, prefix) {
			t.Errorf("problem %d = %q, want prefix %q", i, p, prefix)
		}
		// The rest is the dynamic linker's own message about the file.
		if len(p) == len(prefix) {
			t.Errorf("problem %d has no dlopen message: %q", i, p)
		}
	}
}

func TestLoadSkipsVersionsNewerThanDriver(t *testing.T) {
	dir := t.TempDir()
	touch(t, filepath.Join(dir, "libnvrtc.so.13"), filepath.Join(dir, "libnvrtc-builtins.so.13.0"))
	env := testEnv(t.TempDir(), map[string]string{"SORA_CUDA_PATH": dir})
	out := load(nvrtcSpec, env.searchDirs(), env, libraryCap(12000, 0, 0))
	want := []string{filepath.Join(dir, "libnvrtc.so.13") + " skipped: the driver supports CUDA up to 12 (install the CUDA 12 libraries, or a newer driver)"}
	if out.lib != nil || !out.found || !slices.Equal(out.problems, want) {
		t.Errorf("got lib %v found %v problems %q; want problems %q", out.lib, out.found, out.problems, want)
	}
}

func TestLoadMissingCompanion(t *testing.T) {
	dir := t.TempDir()
	touch(t, filepath.Join(dir, "libnvrtc.so.12"))
	env := testEnv(t.TempDir(), map[string]string{"SORA_CUDA_PATH": dir})
	r, u := probeErr(t, env)
	want := "no usable libnvrtc.so.13 or libnvrtc.so.12 (NVRTC): " +
		filepath.Join(dir, "libnvrtc.so.12") + " needs libnvrtc-builtins.so.12.*, which is in none of the folders searched"
	if !slices.Contains(r.problems, want) {
		t.Errorf("problems %q lack %q", r.problems, want)
	}
	if !strings.Contains(u.Error(), want) {
		t.Errorf("error %q lacks %q", u.Error(), want)
	}
}

func TestLoadUnloadableFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "libcuda.so.1")
	touch(t, path)
	env := testEnv(t.TempDir(), map[string]string{"SORA_CUDA_PATH": dir})
	r, _ := probeErr(t, env)
	prefix := "no usable libcuda.so.1 (the NVIDIA driver API): " + path + ": "
	if len(r.problems) == 0 || !strings.HasPrefix(r.problems[0], prefix) || len(r.problems[0]) == len(prefix) {
		t.Errorf("first problem %q, want %q followed by the dlopen message", r.problems, prefix)
	}
	if r.notFound != true {
		// cuBLAS and NVRTC are still not found anywhere.
		t.Errorf("notFound = false with cuBLAS and NVRTC absent")
	}
}

func TestProbeMissingSymbols(t *testing.T) {
	dir := t.TempDir()
	f := workingDriver()
	f.omit = []string{"cuModuleLoadData", "cuLaunchKernel"}
	path := buildDriver(t, dir, f)
	buildCUBLAS(t, dir, 12)
	buildStubLib(t, dir, "libnvrtc-builtins.so.12.8", nil, nil)
	buildStubLib(t, dir, "libnvrtc.so.12", nvrtcSymbols, []string{"nvrtcGetPTX"})
	env := testEnv(t.TempDir(), map[string]string{"SORA_CUDA_PATH": dir})
	r, u := probeErr(t, env)
	want := []string{
		"no usable libcuda.so.1 (the NVIDIA driver API): " + path + " lacks symbols cuModuleLoadData, cuLaunchKernel",
		"no usable libnvrtc.so.13 or libnvrtc.so.12 (NVRTC): " + filepath.Join(dir, "libnvrtc.so.12") + " lacks symbol nvrtcGetPTX",
	}
	if !slices.Equal(r.problems, want) {
		t.Errorf("problems:\n got %q\nwant %q", r.problems, want)
	}
	if r.cublas == nil || r.cublas.path != filepath.Join(dir, "libcublas.so.12") {
		t.Errorf("cuBLAS not loaded from %s: %+v", dir, r.cublas)
	}
	if strings.Contains(u.Reason, "SORA_CUDA_PATH") {
		t.Errorf("reason suggests SORA_CUDA_PATH although every library was found: %q", u.Reason)
	}
}

func TestProbeDriverErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    fakeDriver
		want string
	}{
		{
			name: "no device",
			f:    fakeDriver{initResult: 100, driverVersion: 12080},
			want: "no CUDA device: cuInit returned CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)",
		},
		{
			name: "init error",
			f:    fakeDriver{initResult: 3, driverVersion: 12080},
			want: "cuInit failed (%s loaded): CUDA_ERROR_NOT_INITIALIZED (initialization error)",
		},
		{
			name: "unnamed error",
			f:    fakeDriver{initResult: 999, driverVersion: 12080},
			want: "cuInit failed (%s loaded): CUresult 999",
		},
		{
			name: "zero devices",
			f:    fakeDriver{driverVersion: 12080},
			want: "no CUDA device: the driver initialised but cuDeviceGetCount found 0 devices",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := buildDriver(t, dir, tc.f)
			buildCUBLAS(t, dir, 12)
			buildNVRTC(t, dir, 12, 8)
			r, u := probeErr(t, testEnv(t.TempDir(), map[string]string{"SORA_CUDA_PATH": dir}))
			want := tc.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, path)
			}
			if !slices.Equal(r.problems, []string{want}) {
				t.Errorf("problems %q, want [%q]", r.problems, want)
			}
			if r.device != nil || r.description() != "" {
				t.Errorf("device %v reported without a working driver", r.device)
			}
			if !strings.HasPrefix(u.Error(), "cuda unavailable: "+want) {
				t.Errorf("error %q", u.Error())
			}
		})
	}
}

// TestProbeDeviceFound loads a complete set of doubles: the probe must
// find nothing missing and describe the device and where each library
// came from.
func TestProbeDeviceFound(t *testing.T) {
	dir := t.TempDir()
	driverPath := buildDriver(t, dir, workingDriver())
	buildCUBLAS(t, dir, 12)
	buildNVRTC(t, dir, 12, 8)
	r := probeOK(t, testEnv(t.TempDir(), map[string]string{"SORA_CUDA_PATH": dir}))
	if got, want := r.description(), "Fake GPU 9000, compute capability 9.0, 80.0 GiB"; got != want {
		t.Errorf("description %q, want %q", got, want)
	}
	want := "Fake GPU 9000, compute capability 9.0, 80.0 GiB (driver CUDA 12.8, " +
		driverPath + "; " + filepath.Join(dir, "libcublas.so.12") + "; " + filepath.Join(dir, "libnvrtc.so.12") + ")"
	if got := r.summary(); got != want {
		t.Errorf("summary:\n got %q\nwant %q", got, want)
	}
	if r.cublas.companionPath != filepath.Join(dir, "libcublasLt.so.12") || r.nvrtc.companionPath != filepath.Join(dir, "libnvrtc-builtins.so.12.8") {
		t.Errorf("companions %q, %q", r.cublas.companionPath, r.nvrtc.companionPath)
	}
	// The resolved addresses are what the implementation will call.
	for _, l := range []*library{r.driver, r.cublas, r.nvrtc} {
		for n, p := range l.syms {
			if p == 0 {
				t.Errorf("%s: %s resolved to 0", l.name, n)
			}
		}
	}
	if len(r.driver.syms) != len(driverSymbols) || len(r.cublas.syms) != len(cublasSymbols) || len(r.nvrtc.syms) != len(nvrtcSymbols) {
		t.Errorf("resolved %d/%d/%d symbols, want %d/%d/%d", len(r.driver.syms), len(r.cublas.syms), len(r.nvrtc.syms),
			len(driverSymbols), len(cublasSymbols), len(nvrtcSymbols))
	}
}

func TestProbeMultipleDevices(t *testing.T) {
	dir := t.TempDir()
	f := workingDriver()
	f.deviceCount, f.totalMem = 8, 0
	buildDriver(t, dir, f)
	buildCUBLAS(t, dir, 12)
	buildNVRTC(t, dir, 12, 8)
	r := probeOK(t, testEnv(t.TempDir(), map[string]string{"SORA_CUDA_PATH": dir}))
	if got, want := r.description(), "Fake GPU 9000, compute capability 9.0, device 0 of 8"; got != want {
		t.Errorf("description %q, want %q", got, want)
	}
}

// TestProbePicksVersionForDriver puts CUDA 12 and 13 libraries side by side:
// a CUDA 12 driver must get the 12 ones, a CUDA 13 driver the 13 ones but
// for a GPU that CUDA 13 no longer supports (compute capability 7.0).
func TestProbePicksVersionForDriver(t *testing.T) {
	for _, tc := range []struct {
		driverVersion, ccMajor, ccMinor, wantMajor int
	}{
		{12080, 9, 0, 12},
		{13000, 9, 0, 13},
		{13000, 7, 5, 13},
		{13000, 7, 0, 12},
	} {
		t.Run(fmt.Sprintf("%d/%d.%d", tc.driverVersion, tc.ccMajor, tc.ccMinor), func(t *testing.T) {
			dir := t.TempDir()
			f := workingDriver()
			f.driverVersion, f.ccMajor, f.ccMinor = tc.driverVersion, tc.ccMajor, tc.ccMinor
			buildDriver(t, dir, f)
			for _, major := range []int{12, 13} {
				buildCUBLAS(t, dir, major)
				buildNVRTC(t, dir, major, 0)
			}
			r := probeOK(t, testEnv(t.TempDir(), map[string]string{"SORA_CUDA_PATH": dir}))
			if r.cublas.major != tc.wantMajor || r.nvrtc.major != tc.wantMajor {
				t.Errorf("loaded %s and %s, want CUDA %d", r.cublas.name, r.nvrtc.name, tc.wantMajor)
			}
		})
	}
}

// TestProbeOldGPUOnlyNewLibraries: with only CUDA 13's libraries for a
// GPU CUDA 13 no longer supports, the probe says why it skipped them.
func TestProbeOldGPUOnlyNewLibraries(t *testing.T) {
	dir := t.TempDir()
	f := workingDriver()
	f.driverVersion, f.ccMajor, f.ccMinor = 13000, 7, 0
	buildDriver(t, dir, f)
	buildCUBLAS(t, dir, 13)
	buildNVRTC(t, dir, 13, 0)
	r := probe(testEnv(t.TempDir(), map[string]string{"SORA_CUDA_PATH": dir}))
	err := r.err()
	want := filepath.Join(dir, "libnvrtc.so.13") + " skipped: CUDA 13 no longer supports this GPU's compute capability 7.0 (install the CUDA 12 libraries)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("probe error %v, want one containing %q", err, want)
	}
}

// TestLibraryCap: the newest CUDA libraries allowed, by the driver and by
// the GPU, and the reason that binds.
func TestLibraryCap(t *testing.T) {
	for _, tc := range []struct {
		driverVersion, ccMajor, ccMinor int
		want                            int
		why                             string
	}{
		{0, 0, 0, 0, ""},
		{13000, 0, 0, 13, "the driver supports CUDA up to 13"},
		{13000, 12, 0, 13, "the driver supports CUDA up to 13"},
		{13000, 7, 5, 13, "the driver supports CUDA up to 13"},
		{13000, 7, 0, 12, "CUDA 13 no longer supports this GPU's compute capability 7.0 (install the CUDA 12 libraries)"},
		{13000, 7, 2, 12, "CUDA 13 no longer supports this GPU's compute capability 7.2"}, // Jetson Xavier
		{13000, 8, 7, 13, "the driver supports CUDA up to 13"},                            // Jetson Orin
		{13000, 5, 0, 12, "CUDA 13 no longer supports this GPU's compute capability 5.0"},
		// Where driver and GPU both stop at 12, a newer driver would not help.
		{12080, 6, 1, 12, "CUDA 13 no longer supports this GPU's compute capability 6.1 (install the CUDA 12 libraries)"},
		{12080, 8, 0, 12, "the driver supports CUDA up to 12 (install the CUDA 12 libraries, or a newer driver)"},
		{0, 6, 1, 12, "CUDA 13 no longer supports this GPU's compute capability 6.1"},
		// A driver older than CUDA 12 needs replacing: no CUDA 11 library loads.
		{11080, 8, 0, 11, "the driver supports CUDA up to 11, and the backend needs CUDA 12 or later (install a newer driver)"},
		{11080, 6, 1, 11, "the driver supports CUDA up to 11, and the backend needs CUDA 12 or later"},
		// Below 5.0 nothing helps (Kepler's last drivers, R470, stop at
		// CUDA 11.4): the GPU's reason wins over the driver's.
		{11040, 3, 7, 11, "compute capability 3.7 is older than CUDA 12 supports (5.0 and later)"},
		{12080, 3, 5, 11, "compute capability 3.5 is older than CUDA 12 supports"},
		{0, 3, 0, 11, "compute capability 3.0 is older than CUDA 12 supports"},
	} {
		got := libraryCap(tc.driverVersion, tc.ccMajor, tc.ccMinor)
		if got.major != tc.want || !strings.Contains(got.why, tc.why) || (tc.why == "") != (got.why == "") {
			t.Errorf("libraryCap(%d, %d.%d) = %+v, want %d for a reason with %q", tc.driverVersion, tc.ccMajor, tc.ccMinor, got, tc.want, tc.why)
		}
	}
}

// TestLinkerSkipSaysWhy: a name the version cap keeps from the dynamic
// linker's search is not opened, and when nothing else was found the
// report says so and why instead of a bare "not found". libm.so.6 plays a
// CUDA 13 library the linker knows by name.
func TestLinkerSkipSaysWhy(t *testing.T) {
	env := testEnv(t.TempDir(), nil)
	env.linker = true
	spec := libSpec{role: "a library", candidates: []candidate{
		{name: "libm.so.6", major: 13},
		{name: "libsora-no-such-library.so.12", major: 12},
	}, symbols: []string{"cos"}}
	out := load(spec, nil, env, majorCap{})
	if out.lib == nil {
		t.Skipf("libm.so.6 cannot be opened by name here (%q): not a glibc system?", out.problems)
	}
	dlClose(out.lib.handle)
	limit := libraryCap(13000, 6, 1)
	out = load(spec, nil, env, limit)
	want := []string{"libm.so.6 not looked for by name: " + limit.why}
	if out.lib != nil || out.found || !slices.Equal(out.problems, want) {
		t.Fatalf("got lib %v found %v problems %q; want problems %q", out.lib, out.found, out.problems, want)
	}
	var r probeResult
	r.report(spec, out)
	if len(r.problems) != 1 || !r.notFound || !strings.HasSuffix(r.problems[0], " not found: "+want[0]) {
		t.Errorf("report %q (notFound %v), want one ending %q", r.problems, r.notFound, " not found: "+want[0])
	}
}

// TestCompanionElsewhere: the companion may sit in another searched folder
// (e.g. two entries of SORA_CUDA_PATH); in its own folder, the newest wins.
func TestCompanionElsewhere(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	buildStubLib(t, a, "libcublas.so.12", cublasSymbols, nil)
	buildStubLib(t, b, "libcublasLt.so.12", nil, nil)
	buildStubLib(t, a, "libnvrtc.so.12", nvrtcSymbols, nil)
	buildStubLib(t, a, "libnvrtc-builtins.so.12.4", nil, nil)
	buildStubLib(t, a, "libnvrtc-builtins.so.12.10", nil, nil)
	env := testEnv(t.TempDir(), map[string]string{"SORA_CUDA_PATH": a + string(filepath.ListSeparator) + b})
	dirs := env.searchDirs()
	cb := load(cublasSpec, dirs, env, libraryCap(12000, 0, 0))
	if cb.lib == nil {
		t.Fatalf("cuBLAS not loaded: %q", cb.problems)
	}
	if got, want := cb.lib.companionPath, filepath.Join(b, "libcublasLt.so.12"); got != want {
		t.Errorf("libcublasLt from %s, want %s", got, want)
	}
	nv := load(nvrtcSpec, dirs, env, libraryCap(12000, 0, 0))
	if nv.lib == nil {
		t.Fatalf("NVRTC not loaded: %q", nv.problems)
	}
	if got, want := nv.lib.companionPath, filepath.Join(a, "libnvrtc-builtins.so.12.10"); got != want {
		t.Errorf("builtins from %s, want %s", got, want)
	}
}

// TestLaterFolderAfterBrokenOne: a broken library early in the search does
// not hide a good one later, and then nothing is reported.
func TestLaterFolderAfterBrokenOne(t *testing.T) {
	bad, good := t.TempDir(), t.TempDir()
	touch(t, filepath.Join(bad, "libcuda.so.1"))
	goodPath := buildDriver(t, good, workingDriver())
	env := testEnv(t.TempDir(), map[string]string{"SORA_CUDA_PATH": bad, "LD_LIBRARY_PATH": good})
	out := load(driverSpec, env.searchDirs(), env, majorCap{})
	if out.lib == nil || out.lib.path != goodPath {
		t.Fatalf("loaded %+v, want %s (problems %q)", out.lib, goodPath, out.problems)
	}
}

func TestRegisteredDriver(t *testing.T) {
	if !slices.Contains(backend.Names(), "cuda") {
		t.Fatalf("cuda not registered: %v", backend.Names())
	}
	// No op is implemented yet, so on every machine Open refuses, saying why.
	b, err := backend.Open("cuda")
	if b != nil || err == nil {
		t.Fatalf("Open(cuda) = %v, %v; want an error until the ops exist", b, err)
	}
	if !backend.IsUnavailable(err) {
		t.Errorf("Open(cuda) error %v is not an UnavailableError", err)
	}
	desc, perr := (&driver{}).Probe()
	if perr == nil || perr.Error() != err.Error() {
		t.Errorf("Probe error %v differs from Open error %v", perr, err)
	}
	t.Logf("on this machine: %v (device %q)", err, desc)
}

// TestLinkerFallback exercises the last step of the search, dlopen by bare
// name, on the C library's libm, which every glibc system has.
func TestLinkerFallback(t *testing.T) {
	env := testEnv(t.TempDir(), nil)
	env.linker = true
	spec := libSpec{role: "the math library", candidates: []candidate{{name: "libm.so.6"}}, symbols: []string{"cos", "sqrt"}}
	out := load(spec, nil, env, majorCap{})
	if out.lib == nil {
		t.Skipf("libm.so.6 cannot be opened by name here (%q): not a glibc system?", out.problems)
	}
	if !strings.HasPrefix(filepath.Base(out.lib.path), "libm") {
		t.Errorf("loaded from %q, want the path of libm from /proc/self/maps", out.lib.path)
	}
	spec.symbols = []string{"cos", "sora_no_such_symbol", "sqrt", "sora_nor_this"}
	out = load(spec, nil, env, majorCap{})
	if out.lib != nil || len(out.problems) != 1 || !strings.HasSuffix(out.problems[0], " lacks symbols sora_no_such_symbol, sora_nor_this") {
		t.Errorf("with missing symbols: lib %v, problems %q", out.lib, out.problems)
	}
	// A name no linker knows is simply not found, with nothing to report.
	spec.candidates = []candidate{{name: "libsora-no-such-library.so.1"}}
	if out = load(spec, nil, env, majorCap{}); out.lib != nil || out.found || len(out.problems) != 0 {
		t.Errorf("absent library: lib %v, found %v, problems %q", out.lib, out.found, out.problems)
	}
}

func TestLoadedPath(t *testing.T) {
	dir := t.TempDir()
	// The file carries a longer version than the name asked for, as
	// libcuda.so.1 -> libcuda.so.550.54.14 does.
	path := buildStubLib(t, dir, "libsoratest.so.550.54.14", []string{"sora_test_fn"}, nil)
	h, err := dlOpen(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := loadedPath(h, "libsoratest.so.1"); got != path {
		t.Errorf("loadedPath = %q, want %q", got, path)
	}
	if got := loadedPath(0, "libsoratest-absent.so.1"); got != "" {
		t.Errorf("loadedPath of an unloaded library = %q", got)
	}
}
