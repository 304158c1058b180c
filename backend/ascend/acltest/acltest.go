// Package acltest builds and drives the ACL test double: a small C
// implementation of the parts of Huawei CANN that package ascend calls
// (libascendcl.so, libnnopbase.so and the aclnn operator libraries), built
// with the system C compiler, running on host memory.
//
// The double follows CANN's documented behaviour where the backend could
// tell the difference: tensor views with element strides and offsets into
// a storage, the two-phase operator protocol (an operator refuses a missing
// or short workspace), copy kinds (and, for asynchronous copies,
// page-locked host memory and 64-byte aligned addresses on both sides),
// per-thread contexts and error messages, and stream ordering: work queued
// on a stream runs only when the stream is synchronised, so a program that
// skips synchronisation reads stale data.
// It records every call, counts live allocations and objects, can make
// any call fail (see [Double.Inject]) and reports the device memory a test
// sets (see [Double.SetMemInfo]). Its fused attention operators
// (FlashAttentionScore, FlashAttentionVarLenScore and their gradients)
// compute what CANN's documentation says they compute, refuse what it says
// they refuse, and fail when they run on inputs whose result CANN leaves
// undefined; testdata/ops_attention.c lists what they implement and what
// not. [BuildOptions.NoFlashAttention] builds the double without them, as
// an older CANN.
//
// Typical use in a test:
//
//	dir, err := acltest.UseDouble(t.TempDir()) // sets SORA_ASCEND_PATH
//	if errors.Is(err, acltest.ErrNoCompiler) { t.Skip(err) }
//	b, err := backend.Open("ascend")
package acltest

import (
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

//go:embed testdata/*.c testdata/*.h
var sources embed.FS

// Layout selects which operator libraries Build produces.
type Layout int

const (
	// Monolithic builds libopapi.so.
	Monolithic Layout = iota
	// Split builds libopapi_math.so, libopapi_nn.so and
	// libopapi_transformer.so, as newer CANN releases ship them.
	Split
	// Both builds the two layouts side by side, to check that a program
	// loads only one of them.
	Both
	// Partial builds libopapi_math.so and libopapi_nn.so only: an
	// incomplete split layout.
	Partial
)

// ErrNoCompiler is returned (wrapped) when no C compiler is found, when
// the one found builds for another architecture than the running
// program's, which could not load the double (a GOARCH=386 test on an amd64
// host), or on a system where the Ascend backend loads no libraries
// (Windows, FreeBSD, ...). In every case tests that need the double skip.
var ErrNoCompiler = errors.New("acltest: no C compiler (set CC, or install cc, gcc or clang)")

// unsupportedError says why the double cannot be used on this system; it
// counts as ErrNoCompiler, so that tests skip, without claiming that a
// compiler is what is missing.
type unsupportedError struct{}

func (unsupportedError) Error() string { return "acltest: " + unsupportedOS }

func (unsupportedError) Is(target error) bool { return target == ErrNoCompiler }

// Compiler returns the C compiler: $CC if set, else the first of cc, gcc
// and clang found in PATH. It must build for the running program's
// architecture (GOARCH).
func Compiler() (string, error) {
	if unsupportedOS != "" {
		return "", unsupportedError{}
	}
	cc, err := findCompiler()
	if err != nil {
		return "", err
	}
	if why := wrongTarget(cc); why != "" {
		return "", fmt.Errorf("%w: %s", ErrNoCompiler, why)
	}
	return cc, nil
}

func findCompiler() (string, error) {
	if cc := strings.TrimSpace(os.Getenv("CC")); cc != "" {
		if p, err := exec.LookPath(strings.Fields(cc)[0]); err == nil {
			return p, nil
		}
		return "", fmt.Errorf("%w: CC=%q is not in PATH", ErrNoCompiler, cc)
	}
	for _, n := range []string{"cc", "gcc", "clang"} {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", ErrNoCompiler
}

// wrongTarget says why the libraries that compiler builds could not be
// loaded by this program: it targets another architecture than GOARCH
// (dlopen refuses them as the wrong ELF class). It returns "" when they
// match, or when it cannot tell, so that the build and load go ahead and
// report any problem themselves.
func wrongTarget(compiler string) string {
	out, err := exec.Command(compiler, "-dumpmachine").Output()
	if err != nil {
		return ""
	}
	triple := strings.TrimSpace(string(out))
	goarch := tripleGOARCH(triple)
	if goarch == "" || goarch == runtime.GOARCH {
		return ""
	}
	return fmt.Sprintf("%s builds for %s (GOARCH %s, says -dumpmachine), and this program, built for GOARCH %s, cannot load such libraries",
		compiler, triple, goarch, runtime.GOARCH)
}

// tripleGOARCH returns the GOARCH of a compiler's target triple such as
// x86_64-linux-gnu, or "" for an architecture it does not know.
func tripleGOARCH(triple string) string {
	arch, _, _ := strings.Cut(triple, "-")
	switch arch {
	case "x86_64", "amd64":
		return "amd64"
	case "i386", "i486", "i586", "i686":
		return "386"
	case "aarch64", "arm64":
		return "arm64"
	case "riscv64", "s390x":
		return arch
	case "powerpc64le", "ppc64le":
		return "ppc64le"
	case "loongarch64":
		return "loong64"
	}
	return ""
}

// Build compiles the double with libopapi.so into dir and returns dir,
// ready to be named by SORA_ASCEND_PATH.
func Build(dir string) (string, error) { return BuildLayout(dir, Monolithic) }

// BuildLayout compiles the double with the given operator layout into dir
// (created if needed) and returns dir. The sources are written to
// dir/src.
func BuildLayout(dir string, layout Layout) (string, error) {
	return BuildWith(dir, BuildOptions{Layout: layout})
}

// BuildOptions select what BuildWith compiles.
type BuildOptions struct {
	Layout Layout
	// NoFlashAttention leaves out the fused attention operators
	// (aclnnFlashAttentionScore, aclnnFlashAttentionVarLenScore and their
	// gradients), as in a CANN release that lacks them.
	NoFlashAttention bool
}

// BuildWith compiles the double as o says into dir (created if needed)
// and returns dir. The sources are written to dir/src.
func BuildWith(dir string, o BuildOptions) (string, error) {
	layout := o.Layout
	cc, err := Compiler()
	if err != nil {
		return "", err
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", fmt.Errorf("acltest: %w", err)
	}
	entries, err := sources.ReadDir("testdata")
	if err != nil {
		return "", fmt.Errorf("acltest: %w", err)
	}
	for _, e := range entries {
		data, err := sources.ReadFile("testdata/" + e.Name())
		if err != nil {
			return "", fmt.Errorf("acltest: %w", err)
		}
		if err := os.WriteFile(filepath.Join(src, e.Name()), data, 0o644); err != nil {
			return "", fmt.Errorf("acltest: %w", err)
		}
	}
	flags := []string{"-std=gnu11", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall"}
	rpath := "-Wl,-rpath,$ORIGIN"
	build := func(out string, extra []string, files ...string) error {
		args := append([]string(nil), flags...)
		args = append(args, "-o", filepath.Join(dir, out), "-Wl,-soname,"+out)
		args = append(args, extra...)
		for _, f := range files {
			args = append(args, filepath.Join(src, f))
		}
		if out != "libascendcl.so" {
			if out != "libnnopbase.so" {
				args = append(args, "-L"+dir, "-lnnopbase")
			}
			args = append(args, "-L"+dir, "-lascendcl", rpath)
		}
		args = append(args, "-lm", "-lpthread")
		cmd := exec.Command(cc, args...)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("acltest: %s %s: %v\n%s", cc, strings.Join(args, " "), err, msg)
		}
		return nil
	}
	// The fused attention operators (ops_attention.c) go with the
	// transformer operators, where CANN's split layout ships them.
	var attention []string
	if !o.NoFlashAttention {
		attention = []string{"ops_attention.c"}
	}
	if err := build("libascendcl.so", nil, "ascendcl.c"); err != nil {
		return "", err
	}
	if err := build("libnnopbase.so", nil, "nnopbase.c"); err != nil {
		return "", err
	}
	if layout == Monolithic || layout == Both {
		if err := build("libopapi.so", []string{`-DOPAPI_LIBNAME="libopapi.so"`},
			append([]string{"opapi_common.c", "ops_math.c", "ops_nn.c", "ops_transformer.c"}, attention...)...); err != nil {
			return "", err
		}
	}
	if layout != Monolithic {
		parts := []struct {
			lib   string
			files []string
		}{
			{"libopapi_math.so", []string{"ops_math.c"}}, {"libopapi_nn.so", []string{"ops_nn.c"}},
			{"libopapi_transformer.so", append([]string{"ops_transformer.c"}, attention...)},
		}
		if layout == Partial {
			parts = parts[:2]
		}
		for _, p := range parts {
			if err := build(p.lib, []string{`-DOPAPI_LIBNAME="` + p.lib + `"`}, append([]string{"opapi_common.c"}, p.files...)...); err != nil {
				return "", err
			}
		}
	}
	return dir, nil
}

// UseDouble makes the Ascend backend find the double: when SORA_ASCEND_PATH
// is already set it returns that folder unchanged; otherwise it builds the
// double into dir, sets SORA_ASCEND_PATH to it and returns dir. The
// libraries are loaded once per process, so call it before the first
// backend.Open("ascend") or backend.List.
func UseDouble(dir string) (string, error) {
	if p := os.Getenv("SORA_ASCEND_PATH"); p != "" {
		return p, nil
	}
	libDir, err := Build(dir)
	if err != nil {
		return "", err
	}
	if err := os.Setenv("SORA_ASCEND_PATH", libDir); err != nil {
		return "", err
	}
	return libDir, nil
}

// Double is the control API of a loaded double (the acltest_* functions
// of its libascendcl.so).
type Double struct {
	reset          func()
	inject         func(name string, skip, times int64, status int32, msg string) int32
	fired          func(name string) int64
	setMemLimit    func(bytes int64)
	setDeviceCount func(n int32)
	setSocName     func(name string)
	setMemInfo     func(attr int32, free, total int64) int32
	resetMemInfo   func()
	callCount      func(name string) int64
	callLog        func(buf unsafe.Pointer, capacity int64) int64
	live           func(what string) int64
	loadedLibs     func() string
	peek           func(p uintptr, n int64, out unsafe.Pointer) int32
	clearContext   func()
}

var (
	attachMu sync.Mutex
	attached = map[string]*Double{}
)

// Attach binds the control API of the double in libDir. It loads (or, when
// the backend has loaded it already, finds) libDir/libascendcl.so; for the
// double to be the one the backend uses, libDir must be the folder the
// backend loaded.
func Attach(libDir string) (*Double, error) {
	attachMu.Lock()
	defer attachMu.Unlock()
	path := filepath.Join(libDir, "libascendcl.so")
	if d := attached[path]; d != nil {
		return d, nil
	}
	h, err := dlOpenGlobal(path)
	if err != nil {
		return nil, fmt.Errorf("acltest: dlopen %s: %v", path, err)
	}
	if _, err := dlSym(h, "acltest_reset"); err != nil {
		return nil, fmt.Errorf("acltest: %s is not the ACL test double: %v", path, err)
	}
	d := &Double{}
	registerLibFunc(&d.reset, h, "acltest_reset")
	registerLibFunc(&d.inject, h, "acltest_inject")
	registerLibFunc(&d.fired, h, "acltest_fired")
	registerLibFunc(&d.setMemLimit, h, "acltest_set_mem_limit")
	registerLibFunc(&d.setDeviceCount, h, "acltest_set_device_count")
	registerLibFunc(&d.setSocName, h, "acltest_set_soc_name")
	registerLibFunc(&d.setMemInfo, h, "acltest_set_mem_info")
	registerLibFunc(&d.resetMemInfo, h, "acltest_reset_mem_info")
	registerLibFunc(&d.callCount, h, "acltest_call_count")
	registerLibFunc(&d.callLog, h, "acltest_call_log")
	registerLibFunc(&d.live, h, "acltest_live")
	registerLibFunc(&d.loadedLibs, h, "acltest_loaded_libs")
	registerLibFunc(&d.peek, h, "acltest_peek")
	registerLibFunc(&d.clearContext, h, "acltest_clear_thread_context")
	attached[path] = d
	return d, nil
}

// Reset clears the call log, the call counts, every injection and the
// memory limit. Allocations and objects are left alone.
func (d *Double) Reset() { d.reset() }

// Inject makes the call named name fail with status, aclGetRecentErrMsg
// then returning msg: after skip more calls of it have succeeded, for
// times calls (0: all later calls). name is an exported function
// ("aclrtMalloc", "aclnnMulGetWorkspaceSize", "aclnnMul", ...) or
// "exec:<call>" to fail the queued work of <call> (an operator's second
// phase, or aclrtMemcpyAsync) when its stream is synchronised. Calls that
// return pointers (aclCreateTensor, ...) return NULL instead of a status.
func (d *Double) Inject(name string, skip, times int, status int32, msg string) error {
	if d.inject(name, int64(skip), int64(times), status, msg) != 0 {
		return fmt.Errorf("acltest: injection table full")
	}
	return nil
}

// Fired returns how many times injections on name have fired.
func (d *Double) Fired(name string) int { return int(d.fired(name)) }

// SetMemLimit makes aclrtMalloc fail with ACL_ERROR_RT_MEMORY_ALLOCATION
// once the live device bytes would exceed bytes (0: no limit).
func (d *Double) SetMemLimit(bytes int64) { d.setMemLimit(bytes) }

// SetDeviceCount sets what aclrtGetDeviceCount reports (1 by default).
func (d *Double) SetDeviceCount(n int) { d.setDeviceCount(int32(n)) }

// DefaultSocName is the chip the double reports until SetSocName changes
// it: an Atlas A2 part.
const DefaultSocName = "Ascend910B3"

// SetSocName sets what aclrtGetSocName returns; "" makes it return NULL,
// as it does on failure. The operators follow the chip where CANN
// documents a difference: on the Atlas training series ("Ascend910A",
// "Ascend910ProA", "Ascend910ProB", "Ascend910PremiumA", "Ascend910B") and
// inference series ("Ascend310P1", ...), the matrix products refuse
// cubeMathType 0 and 3 for float32 inputs and compute mode 1 in FLOAT16.
// Reset leaves the name alone; set DefaultSocName to restore it.
func (d *Double) SetSocName(name string) { d.setSocName(name) }

// MemAttr is an aclrtMemAttr value (acl/acl_rt.h): which memory of the
// device aclrtGetMemInfo reports on. The double knows the values 0 to 17
// (ACL_DDR_MEM to ACL_MEM_P2P_HUGE1G); MemDDR and MemHBM are the two the
// Ascend backend asks for.
type MemAttr int32

const (
	// MemDDR is ACL_DDR_MEM: all of the device's DDR memory.
	MemDDR MemAttr = 0
	// MemHBM is ACL_HBM_MEM: all of the device's HBM memory.
	MemHBM MemAttr = 1
)

// DefaultHBMBytes is the memory the double reports for MemHBM until
// SetMemInfo changes it: 64 GiB, as an Ascend910B3 (DefaultSocName) has.
// Every other attribute reports 0 free and 0 total by default, as CANN
// does for memory the part does not have.
const DefaultHBMBytes = 64 << 30

// SetMemInfo sets the free and total bytes aclrtGetMemInfo reports for
// attr; they stay as set whatever the double allocates. Reset leaves them
// alone; ResetMemInfo restores the defaults.
func (d *Double) SetMemInfo(attr MemAttr, free, total int64) error {
	if d.setMemInfo(int32(attr), free, total) != 0 {
		return fmt.Errorf("acltest: cannot report %d free, %d total bytes for memory attribute %d (the double knows 0 to 17; sizes must not be negative)", free, total, attr)
	}
	return nil
}

// ResetMemInfo makes aclrtGetMemInfo report the defaults again (see
// DefaultHBMBytes).
func (d *Double) ResetMemInfo() { d.resetMemInfo() }

// Calls returns how many times the named call was made since the last
// Reset; "exec:<call>" counts queued work of <call> that ran.
func (d *Double) Calls(name string) int { return int(d.callCount(name)) }

// Log returns the names of the calls made since the last Reset, in order.
func (d *Double) Log() []string {
	n := d.callLog(nil, 0)
	if n == 0 {
		return nil
	}
	buf := make([]byte, n+1)
	d.callLog(unsafe.Pointer(&buf[0]), n+1)
	return strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n")
}

// Live returns a counter of the double: "device_allocs", "device_bytes",
// "device_peak_bytes", "host_allocs", "tensors", "scalars", "int_arrays",
// "bool_arrays", "executors", "streams", "contexts", "pending_tasks" or
// "inited". It panics on an unknown name, a mistake in the test.
func (d *Double) Live(what string) int64 {
	v := d.live(what)
	if v < 0 {
		panic("acltest: unknown counter " + what)
	}
	return v
}

// LoadedLibs returns the operator libraries loaded so far, in load order.
func (d *Double) LoadedLibs() []string {
	s := d.loadedLibs()
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// Peek copies len(out) floats of device memory at address p without
// synchronising anything: what the device holds right now.
func (d *Double) Peek(p uintptr, out []float32) error {
	if len(out) == 0 {
		return nil
	}
	if d.peek(p, int64(len(out))*4, unsafe.Pointer(&out[0])) != 0 {
		return fmt.Errorf("acltest: %#x..+%d is not live device memory", p, len(out)*4)
	}
	return nil
}

// ClearThreadContext leaves the calling OS thread without a current
// context, like a thread that never set one. Lock the goroutine to its
// thread (runtime.LockOSThread) around it and the calls it is meant for.
func (d *Double) ClearThreadContext() { d.clearContext() }
