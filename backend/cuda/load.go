package cuda

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ebitengine/purego"
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
		"cuModuleLoadData", "cuModuleUnload", "cuModuleGetFunction", "cuLaunchKernel",
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
	// problems say why each file that was found could not be used; they are
	// reported only when no file could.
	problems []string
	// found is whether any candidate file existed at all.
	found bool
}

// dlopen flags: resolve everything now, so that a broken library fails
// here with the linker's message rather than at the first call.
const dlopenMode = purego.RTLD_NOW | purego.RTLD_LOCAL

// load searches dirs (and then, when env.linker, the dynamic linker's own
// search) for the first candidate of spec that loads with all its symbols.
// maxMajor, when non-zero, skips libraries of a newer CUDA version than the
// driver supports.
func load(spec libSpec, dirs []searchDir, env searchEnv, maxMajor int) loadOutcome {
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
			if maxMajor != 0 && c.major > maxMajor {
				out.problems = append(out.problems, fmt.Sprintf("%s skipped: the driver supports CUDA up to %d", path, maxMajor))
				continue
			}
			lib, err := open(c, path, dirs, d.path)
			if err != nil {
				out.problems = append(out.problems, err.Error())
				continue
			}
			if err := resolve(lib, spec.symbols); err != nil {
				out.problems = append(out.problems, err.Error())
				_ = purego.Dlclose(lib.handle)
				continue
			}
			out.lib = lib
			return out
		}
	}
	if !env.linker {
		return out
	}
	// The dynamic linker's cache may know folders none of the above names.
	for _, c := range spec.candidates {
		if maxMajor != 0 && c.major > maxMajor {
			continue
		}
		h, err := purego.Dlopen(c.name, dlopenMode)
		if err != nil {
			// "NAME: cannot open shared object file" says only that the
			// linker knows no such library; anything else (a library it
			// needs is missing, a wrong architecture) means it found a
			// file that does not load.
			if msg := err.Error(); !strings.HasPrefix(msg, c.name+": cannot open shared object file") {
				out.found = true
				out.problems = append(out.problems, fmt.Sprintf("%s (dynamic linker): %s", c.name, msg))
			}
			continue
		}
		out.found = true
		lib := &library{name: c.name, path: loadedPath(c.name), major: c.major, handle: h}
		if lib.path != "" && tried[resolved(lib.path)] {
			// The linker found a file the folder search already tried and
			// reported; saying so again would only repeat it.
			_ = purego.Dlclose(h)
			continue
		}
		if err := resolve(lib, spec.symbols); err != nil {
			out.problems = append(out.problems, err.Error())
			_ = purego.Dlclose(h)
			continue
		}
		out.lib = lib
		return out
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
		if _, err := purego.Dlopen(comp, dlopenMode); err != nil {
			return nil, fmt.Errorf("%s (needed by %s): %v", comp, path, err)
		}
		lib.companionPath = comp
	}
	h, err := purego.Dlopen(path, dlopenMode)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	lib.handle = h
	return lib, nil
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
		p, err := purego.Dlsym(lib.handle, n)
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

// loadedPath finds where the dynamic linker loaded the library called name
// from, by reading the process's memory map; "" when it cannot tell. The
// file mapped may carry a longer version than the name asked for
// (libcuda.so.1 is usually a link to libcuda.so.<driver version>), so any
// file of the same stem counts.
func loadedPath(name string) string {
	stem := name
	if i := strings.Index(name, ".so"); i >= 0 {
		stem = name[:i+len(".so")]
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		p := fields[len(fields)-1]
		base := filepath.Base(p)
		if base == stem || strings.HasPrefix(base, stem+".") {
			return p
		}
	}
	return ""
}
