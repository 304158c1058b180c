package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Symbols resolved at load time. A library lacking one of them is rejected
// with the missing names, rather than failing later in the middle of a
// training step. The lists hold what the implementation calls.
var (
	driverSymbols = []string{
		"cuInit", "cuDriverGetVersion", "cuGetErrorName", "cuGetErrorString",
		"cuDeviceGet", "cuDeviceGetCount", "cuDeviceGetName", "cuDeviceGetAttribute", "cuDeviceTotalMem_v2",
		"cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease_v2", "cuCtxSetCurrent", "cuCtxSynchronize",
		"cuMemAlloc_v2", "cuMemFree_v2", "cuMemGetInfo_v2",
		"cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2", "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2", "cuMemcpyDtoDAsync_v2",
		"cuMemsetD32Async",
		"cuStreamCreate", "cuStreamDestroy_v2", "cuStreamSynchronize",
		"cuModuleLoadData", "cuModuleUnload", "cuModuleGetFunction", "cuFuncGetAttribute", "cuLaunchKernel",
		"cuOccupancyMaxActiveBlocksPerMultiprocessor",
	}
	cublasSymbols = []string{
		"cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasSetMathMode", "cublasSetPointerMode_v2",
		"cublasSgemm_v2", "cublasSgemmStridedBatched", "cublasGetStatusString",
	}
	nvrtcSymbols = []string{
		"nvrtcVersion", "nvrtcGetErrorString",
		"nvrtcCreateProgram", "nvrtcDestroyProgram", "nvrtcCompileProgram",
		"nvrtcGetPTXSize", "nvrtcGetPTX", "nvrtcGetCUBINSize", "nvrtcGetCUBIN",
		"nvrtcGetProgramLogSize", "nvrtcGetProgramLog",
		"nvrtcGetNumSupportedArchs", "nvrtcGetSupportedArchs",
	}
)

// libSpec says how to find one library.
type libSpec struct {
	// role names the library in messages, e.g. "the NVIDIA driver API".
	role string
	// candidates are file names in order of preference.
	candidates []candidate
	symbols    []string
}

type candidate struct {
	name string
	// major is the CUDA major version the library belongs to, 0 for the
	// driver library, which serves every version.
	major int
	// companion is a glob (within a folder) for a library this one needs
	// beside it: libcublasLt for libcublas, libnvrtc-builtins for libnvrtc.
	// It is loaded first, by full path, so that the dynamic linker finds it
	// by its soname even in folders outside its own search.
	companion string
}

var (
	driverSpec = libSpec{
		role:       "the NVIDIA driver API",
		candidates: []candidate{{name: "libcuda.so.1"}},
		symbols:    driverSymbols,
	}
	cublasSpec = libSpec{
		role: "cuBLAS",
		candidates: []candidate{
			{name: "libcublas.so.13", major: 13, companion: "libcublasLt.so.13"},
			{name: "libcublas.so.12", major: 12, companion: "libcublasLt.so.12"},
		},
		symbols: cublasSymbols,
	}
	nvrtcSpec = libSpec{
		role: "NVRTC",
		candidates: []candidate{
			{name: "libnvrtc.so.13", major: 13, companion: "libnvrtc-builtins.so.13.*"},
			{name: "libnvrtc.so.12", major: 12, companion: "libnvrtc-builtins.so.12.*"},
		},
		symbols: nvrtcSymbols,
	}
)

// The same libraries as Windows names them. The NVRTC DLL carries the
// major version and a minor version of 0 for every release of that major
// version ("120_0" for all of CUDA 12); its builtins carry the release
// (nvrtc-builtins64_128.dll for CUDA 12.8). NVRTC loads its builtins by
// name when it compiles, and cuBLAS imports cublasLt, so both companions
// are loaded first, by full path: Windows then uses the loaded module for
// a DLL of that name, wherever it came from.
var (
	driverSpecWindows = libSpec{
		role:       driverSpec.role,
		candidates: []candidate{{name: "nvcuda.dll"}},
		symbols:    driverSymbols,
	}
	cublasSpecWindows = libSpec{
		role: cublasSpec.role,
		candidates: []candidate{
			{name: "cublas64_13.dll", major: 13, companion: "cublasLt64_13.dll"},
			{name: "cublas64_12.dll", major: 12, companion: "cublasLt64_12.dll"},
		},
		symbols: cublasSymbols,
	}
	nvrtcSpecWindows = libSpec{
		role: nvrtcSpec.role,
		candidates: []candidate{
			{name: "nvrtc64_130_0.dll", major: 13, companion: "nvrtc-builtins64_13*.dll"},
			{name: "nvrtc64_120_0.dll", major: 12, companion: "nvrtc-builtins64_12*.dll"},
		},
		symbols: nvrtcSymbols,
	}
)

// specs returns the driver, cuBLAS and NVRTC libraries as env's operating
// system names them.
func (e searchEnv) specs() (drv, blas, rtc libSpec) {
	if e.goos == "windows" {
		return driverSpecWindows, cublasSpecWindows, nvrtcSpecWindows
	}
	return driverSpec, cublasSpec, nvrtcSpec
}

// names is "a or b" for messages.
func (s libSpec) names() string {
	var n []string
	for _, c := range s.candidates {
		n = append(n, c.name)
	}
	return strings.Join(n, " or ")
}

// library is a loaded shared library with its resolved symbols.
type library struct {
	name  string // file name, e.g. "libcublas.so.12"
	path  string // where it was loaded from; "" when unknown
	major int
	// companionPath is the companion library loaded before it, if any.
	companionPath string
	handle        uintptr
	syms          map[string]uintptr
}

// sym returns the address of a resolved symbol. Asking for a name that was
// not in the library's symbol list is a programming error.
func (l *library) sym(name string) uintptr {
	p, ok := l.syms[name]
	if !ok {
		panic("cuda: symbol " + name + " was not resolved at load time")
	}
	return p
}

// where is the library's path, or its name when the dynamic linker found it
// somewhere unknown.
func (l *library) where() string {
	if l.path != "" {
		return l.path
	}
	return l.name + " (found by the dynamic linker)"
}

// loadOutcome is the result of searching for one library.
type loadOutcome struct {
	lib *library
	// problems say why each file that was found could not be used, or,
	// when none was found, which names the version cap kept from the
	// dynamic linker's search; they are reported only when no file could
	// be used.
	problems []string
	// found is whether any candidate file existed at all.
	found bool
}

// majorCap is the newest CUDA major version whose libraries may load (0:
// any) and why, for the message about a library it skips.
type majorCap struct {
	major int
	why   string
}

// excludes reports whether the cap keeps libraries of CUDA major version
// major from loading.
func (c majorCap) excludes(major int) bool { return c.major != 0 && major > c.major }

// libraryCap is the cap on the CUDA libraries' major version: the newest
// the driver supports (driverVersion, e.g. 13000; 0 when unknown) and,
// for a GPU of compute capability ccMajor.ccMinor (0.0 when unknown), the
// last CUDA version that supports it (CUDA 13 dropped compute capabilities
// below 7.5, CUDA 12 those below 5.0), whichever is older. The backend
// loads only CUDA 12 and 13 libraries, so a cap below 12 skips them all,
// and its reason says what would help: for a GPU below 5.0, nothing (its
// last drivers, R470, support CUDA 11 at most), so that reason wins over
// the driver's; for an older driver, a newer one. Where the driver and a
// GPU below 7.5 both stop at CUDA 12, the GPU's reason is given, since a
// newer driver would not help.
func libraryCap(driverVersion, ccMajor, ccMinor int) majorCap {
	cc := 10*ccMajor + ccMinor
	if cc != 0 && cc < 50 {
		return majorCap{11, fmt.Sprintf("this GPU's compute capability %d.%d is older than CUDA 12 supports (5.0 and later), and the backend loads no older CUDA libraries",
			ccMajor, ccMinor)}
	}
	var c majorCap
	switch m := driverVersion / 1000; {
	case m <= 0:
	case m < 12:
		c = majorCap{m, fmt.Sprintf("the driver supports CUDA up to %d, and the backend needs CUDA 12 or later (install a newer driver)", m)}
	default:
		c = majorCap{m, fmt.Sprintf("the driver supports CUDA up to %d (install the CUDA %d libraries, or a newer driver)", m, m)}
	}
	if cc != 0 && cc < 75 && (c.major == 0 || c.major >= 12) {
		c = majorCap{12, fmt.Sprintf("CUDA 13 no longer supports this GPU's compute capability %d.%d (install the CUDA 12 libraries)", ccMajor, ccMinor)}
	}
	return c
}

// load searches dirs (and then, when env.linker, the dynamic linker's own
// search) for the first candidate of spec that loads with all its symbols.
// limit skips libraries of a newer CUDA version than the driver or the GPU
// allows (see libraryCap).
func load(spec libSpec, dirs []searchDir, env searchEnv, limit majorCap) loadOutcome {
	var out loadOutcome
	tried := map[string]bool{} // files already tried, by resolved path
	for _, d := range dirs {
		if d.missing {
			continue
		}
		for _, c := range spec.candidates {
			path := filepath.Join(d.path, c.name)
			if !isFile(path) {
				continue
			}
			out.found = true
			tried[resolved(path)] = true
			if limit.excludes(c.major) {
				out.problems = append(out.problems, path+" skipped: "+limit.why)
				continue
			}
			lib, err := open(c, path, dirs, d.path)
			if err != nil {
				out.problems = append(out.problems, err.Error())
				continue
			}
			if err := resolve(lib, spec.symbols); err != nil {
				out.problems = append(out.problems, err.Error())
				dlClose(lib.handle)
				continue
			}
			out.lib = lib
			return out
		}
	}
	if !env.linker {
		return out
	}
	// The dynamic linker's cache (on Windows, the system's DLL search) may
	// know folders none of the above names.
	var capped []string // names limit keeps from that search
	for _, c := range spec.candidates {
		if limit.excludes(c.major) {
			capped = append(capped, c.name)
			continue
		}
		h, err := dlOpen(c.name)
		if err != nil {
			// An error that says only that no such library is known is
			// not a problem to report; anything else means a file was
			// found that does not load.
			if !notFoundByName(c.name, err) {
				out.found = true
				out.problems = append(out.problems, fmt.Sprintf("%s (%s): %s", c.name, env.linkerName(), err))
			}
			continue
		}
		out.found = true
		lib := &library{name: c.name, path: loadedPath(h, c.name), major: c.major, handle: h}
		if lib.path != "" && tried[resolved(lib.path)] {
			// The linker found a file the folder search already tried and
			// reported; saying so again would only repeat it.
			dlClose(h)
			continue
		}
		if err := resolve(lib, spec.symbols); err != nil {
			out.problems = append(out.problems, err.Error())
			dlClose(h)
			continue
		}
		out.lib = lib
		return out
	}
	if !out.found && len(capped) > 0 {
		// Nothing was found, but what was not looked for may be known
		// by name; without this, the report would say only "not found".
		out.problems = append(out.problems, strings.Join(capped, ", ")+" not looked for by name: "+limit.why)
	}
	return out
}

// open loads the candidate c found at path, after its companion, which is
// looked for first in the same folder and then in the other folders.
func open(c candidate, path string, dirs []searchDir, dir string) (*library, error) {
	lib := &library{name: c.name, path: path, major: c.major}
	if c.companion != "" {
		comp := findCompanion(c.companion, dir, dirs)
		if comp == "" {
			return nil, fmt.Errorf("%s needs %s, which is in none of the folders searched", path, c.companion)
		}
		if _, err := dlOpen(comp); err != nil {
			return nil, fmt.Errorf("%s (needed by %s): %s", comp, path, dlReason(comp, err))
		}
		lib.companionPath = comp
	}
	h, err := dlOpen(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", path, dlReason(path, err))
	}
	lib.handle = h
	return lib, nil
}

// dlReason is a loader's error about path without the path, which the
// dynamic linker puts in front of most of its messages and the caller
// names already.
func dlReason(path string, err error) string {
	return strings.TrimPrefix(err.Error(), path+": ")
}

// findCompanion returns the newest file matching pattern in dir, else in
// the first other folder that has one; "" when none has.
func findCompanion(pattern, dir string, dirs []searchDir) string {
	try := func(d string) string {
		matches, _ := filepath.Glob(filepath.Join(d, pattern))
		var files []string
		for _, m := range matches {
			if isFile(m) {
				files = append(files, m)
			}
		}
		if len(files) == 0 {
			return ""
		}
		sort.Slice(files, func(i, j int) bool { return versionLess(files[j], files[i]) })
		return files[0]
	}
	if f := try(dir); f != "" {
		return f
	}
	for _, d := range dirs {
		if d.path == dir || d.missing {
			continue
		}
		if f := try(d.path); f != "" {
			return f
		}
	}
	return ""
}

// resolve looks up every symbol of names in lib and reports the missing
// ones by name.
func resolve(lib *library, names []string) error {
	lib.syms = make(map[string]uintptr, len(names))
	var missing []string
	for _, n := range names {
		p, err := dlSym(lib.handle, n)
		if err != nil || p == 0 {
			missing = append(missing, n)
			continue
		}
		lib.syms[n] = p
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s lacks %s %s", lib.where(), plural(len(missing), "symbol", "symbols"), strings.Join(missing, ", "))
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// resolved is path with symbolic links resolved, or path itself when that
// fails, to tell whether two names lead to the same file.
func resolved(path string) string {
	if r, err := filepath.EvalSymlinks(path); err == nil {
		return r
	}
	return path
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
