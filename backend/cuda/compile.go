package cuda

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// kernelSource is the CUDA C source of every kernel.
//
//go:embed kernels.cu
var kernelSource string

// compileKey identifies one compilation: the source, the target, the
// compiler and the driver that loads the result. A change of any of them
// gives another cache file.
type compileKey struct {
	source string
	// major.minor is the target's compute capability: the device's own
	// for SASS, that of the PTX's virtual architecture with ptx.
	major, minor  int
	ptx           bool
	driverVersion int // cuDriverGetVersion
	nvrtcMajor    int
	nvrtcMinor    int
}

// arch is the target as NVRTC names it: sm_XY for the device's SASS,
// compute_XY for PTX.
func (k compileKey) arch() string {
	if k.ptx {
		return fmt.Sprintf("compute_%d%d", k.major, k.minor)
	}
	return fmt.Sprintf("sm_%d%d", k.major, k.minor)
}

// options are the NVRTC options: SASS (a cubin) for exactly the device's
// architecture, so the driver loads it without a JIT step and the result
// does not depend on the driver's PTX compiler, or PTX (see
// kernelTarget). No fast-math flags: the kernels rely on IEEE division,
// square roots and denormals. The language dialect is NVRTC's default
// (C++17 since CUDA 12); the source needs nothing newer than C++11.
func (k compileKey) options() []string {
	return []string{"--gpu-architecture=" + k.arch()}
}

// hash is the hex SHA-256 of everything that determines the image.
func (k compileKey) hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "sora-cuda-kernels v1\n%s\ndriver %d\nnvrtc %d.%d\n%s\n",
		k.arch(), k.driverVersion, k.nvrtcMajor, k.nvrtcMinor, strings.Join(k.options(), " "))
	h.Write([]byte(k.source))
	return hex.EncodeToString(h.Sum(nil))
}

// cacheFile is the image's path in dir: the target in the name for
// people looking at the folder, the hash for uniqueness.
func (k compileKey) cacheFile(dir string) string {
	ext := "cubin"
	if k.ptx {
		ext = "ptx"
	}
	return filepath.Join(dir, fmt.Sprintf("kernels-%s-%s.%s", k.arch(), k.hash()[:32], ext))
}

// kernelTarget picks what to compile the kernels for on a device of
// compute capability major.minor, from archs, the architectures NVRTC
// compiles for (compute capability·10, as nvrtcGetSupportedArchs lists
// them): SASS for the device where NVRTC knows its architecture and
// forcePTX is false; otherwise PTX for the newest architecture NVRTC
// knows that is not newer than the device's, which the driver compiles
// for the device as it loads it (PTX runs on its own architecture and
// every later one). An empty archs (NVRTC did not say) means SASS for the
// device, as NVRTC will refuse it if it must. why says, for a PTX
// target, why it was chosen. A GPU older than every architecture NVRTC
// knows (CUDA 13 dropped compute capabilities below 7.5) is an error: an
// older toolkit's NVRTC is needed.
func kernelTarget(major, minor int, archs []int, forcePTX bool) (k compileKey, why string, err error) {
	dev := 10*major + minor
	if len(archs) == 0 || !forcePTX && slices.Contains(archs, dev) {
		return compileKey{major: major, minor: minor}, "", nil
	}
	best := -1
	for _, a := range archs {
		if a <= dev && a > best {
			best = a
		}
	}
	if best < 0 {
		return compileKey{}, "", fmt.Errorf("NVRTC compiles for compute capabilities %s, none of them this GPU's %d.%d or older: the GPU is older than this NVRTC supports, and needs the NVRTC of an older CUDA toolkit that still compiles for sm_%d%d",
			archList(archs), major, minor, major, minor)
	}
	why = fmt.Sprintf("NVRTC does not compile for sm_%d%d", major, minor)
	if best == dev {
		why = "asked for by Options.PTX, $" + EnvPTX
	}
	return compileKey{major: best / 10, minor: best % 10, ptx: true}, why, nil
}

// archList formats archs (compute capability·10) as "5.0, 5.2, …, 9.0".
func archList(archs []int) string {
	s := make([]string, len(archs))
	for i, a := range archs {
		s[i] = fmt.Sprintf("%d.%d", a/10, a%10)
	}
	return strings.Join(s, ", ")
}

// defaultCacheDir is os.UserCacheDir()/sora/cuda.
func defaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "sora", "cuda"), nil
}

// writeAtomic writes data to path through a temporary file in the same
// folder and a rename, so that a reader never sees half a file.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), path)
	}
	if werr != nil {
		os.Remove(f.Name())
	}
	return werr
}

// compiled caches, per process, the cubin of each key: NVRTC runs at most
// once per process and architecture even when several backends open.
var compiled sync.Map // hash → []byte

// pinAll pins the first byte of each slice (so the whole of each).
func pinAll(bs [][]byte) *runtime.Pinner {
	p := new(runtime.Pinner)
	for _, b := range bs {
		p.Pin(&b[0])
	}
	return p
}

// version asks NVRTC for its version.
func (a *api) version() (major, minor int, err error) {
	var ma, mi int32
	if err := a.rtcErr("nvrtcVersion", call(a.nvrtcVersion, uintptr(unsafe.Pointer(&ma)), uintptr(unsafe.Pointer(&mi)))); err != nil {
		return 0, 0, err
	}
	return int(ma), int(mi), nil
}

// supportedArchs asks NVRTC which architectures it compiles for, as
// compute capability·10 (e.g. 89, 120).
func (a *api) supportedArchs() ([]int, error) {
	var n int32
	if err := a.rtcErr("nvrtcGetNumSupportedArchs", call(a.nvrtcGetNumSupportedArchs, uintptr(unsafe.Pointer(&n)))); err != nil {
		return nil, err
	}
	if n <= 0 || n > 1024 {
		return nil, nil
	}
	raw := make([]int32, n)
	if err := a.rtcErr("nvrtcGetSupportedArchs", call(a.nvrtcGetSupportedArchs, uintptr(unsafe.Pointer(&raw[0])))); err != nil {
		return nil, err
	}
	archs := make([]int, n)
	for i, v := range raw {
		archs[i] = int(v)
	}
	return archs, nil
}

// compile runs NVRTC on the key's source and returns the image (a cubin,
// or NUL-terminated PTX), or an error carrying NVRTC's log.
func (a *api) compile(k compileKey) ([]byte, error) {
	src := append([]byte(k.source), 0)
	name := []byte("sora_kernels.cu\x00")
	var prog uintptr
	if err := a.rtcErr("nvrtcCreateProgram", call(a.nvrtcCreateProgram, uintptr(unsafe.Pointer(&prog)),
		uintptr(unsafe.Pointer(&src[0])), uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)); err != nil {
		return nil, err
	}
	defer call(a.nvrtcDestroyProgram, uintptr(unsafe.Pointer(&prog)))

	opts := k.options()
	cstrs := make([][]byte, len(opts))
	ptrs := make([]uintptr, len(opts))
	for i, o := range opts {
		cstrs[i] = append([]byte(o), 0)
		ptrs[i] = uintptr(unsafe.Pointer(&cstrs[i][0]))
	}
	// ptrs holds addresses of Go memory as integers: keep cstrs alive (and
	// pinned, though Go's heap does not move) across the call.
	pinned := pinAll(cstrs)
	res := call(a.nvrtcCompileProgram, prog, uintptr(len(ptrs)), uintptr(unsafe.Pointer(&ptrs[0])))
	pinned.Unpin()
	runtime.KeepAlive(cstrs)
	if err := a.rtcErr("nvrtcCompileProgram", res); err != nil {
		if log := a.programLog(prog); log != "" {
			return nil, fmt.Errorf("%w; options %s; log:\n%s", err, strings.Join(opts, " "), log)
		}
		return nil, fmt.Errorf("%w; options %s", err, strings.Join(opts, " "))
	}
	getSize, get, what := a.nvrtcGetCUBINSize, a.nvrtcGetCUBIN, "CUBIN"
	if k.ptx {
		getSize, get, what = a.nvrtcGetPTXSize, a.nvrtcGetPTX, "PTX"
	}
	var size uintptr
	if err := a.rtcErr("nvrtcGet"+what+"Size", call(getSize, prog, uintptr(unsafe.Pointer(&size)))); err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, fmt.Errorf("nvrtcGet%sSize: NVRTC produced an empty image for %s", what, strings.Join(opts, " "))
	}
	image := make([]byte, size)
	if err := a.rtcErr("nvrtcGet"+what, call(get, prog, uintptr(unsafe.Pointer(&image[0])))); err != nil {
		return nil, err
	}
	return image, nil
}

// programLog returns NVRTC's compilation log, "" when there is none.
func (a *api) programLog(prog uintptr) string {
	var size uintptr
	if call(a.nvrtcGetProgramLogSize, prog, uintptr(unsafe.Pointer(&size))) != nvrtcSuccess || size <= 1 {
		return ""
	}
	buf := make([]byte, size)
	if call(a.nvrtcGetProgramLog, prog, uintptr(unsafe.Pointer(&buf[0]))) != nvrtcSuccess {
		return ""
	}
	return strings.TrimRight(string(buf), "\x00\n")
}

// loadKernels obtains the cubin (process cache, disk cache, or NVRTC),
// loads it as the backend's module and looks up every kernel. A cached
// file the driver rejects is compiled afresh and replaced. The caller has
// made the context current.
func (b *Backend) loadKernels() (err error) {
	a := b.api
	ma, mi, err := a.version()
	if err != nil {
		return err
	}
	b.nvrtc = [2]int{ma, mi}
	archs, err := a.supportedArchs()
	if err != nil {
		return err
	}
	key, why, err := kernelTarget(b.info.major, b.info.minor, archs, b.opts.PTX)
	if err != nil {
		return fmt.Errorf("NVRTC %d.%d: %w", ma, mi, err)
	}
	key.source, key.driverVersion, key.nvrtcMajor, key.nvrtcMinor = kernelSource, b.probe.driverVersion, ma, mi
	hash := key.hash()
	// Where the kernels are PTX, where they came from is said after what
	// they are.
	if key.ptx {
		defer func() {
			if err == nil {
				b.kernelOrigin = fmt.Sprintf("PTX for %s, compiled by the driver at load (%s): %s", key.arch(), why, b.kernelOrigin)
			}
		}()
	}

	dir := ""
	if !b.opts.NoCache {
		dir = b.opts.CacheDir
		if dir == "" {
			dir, _ = defaultCacheDir() // no cache folder: compile every process
		}
	}
	path := ""
	if dir != "" {
		path = key.cacheFile(dir)
	}

	if v, ok := compiled.Load(hash); ok {
		b.kernelOrigin = "compiled earlier in this process"
		return b.loadModule(v.([]byte))
	}
	if path != "" {
		if data, err := os.ReadFile(path); err == nil && len(data) > 0 {
			if err := b.loadModule(data); err == nil {
				compiled.Store(hash, data)
				b.kernelOrigin = "cached in " + path
				return nil
			}
			// A damaged or foreign file: fall through and compile.
		}
	}
	cubin, err := a.compile(key)
	if err != nil {
		return err
	}
	if err := b.loadModule(cubin); err != nil {
		if key.ptx {
			return b.ptxLoadError(key, why, err)
		}
		return err
	}
	compiled.Store(hash, cubin)
	b.kernelOrigin = "compiled by NVRTC"
	if path != "" {
		if err := writeAtomic(path, cubin); err == nil {
			b.kernelOrigin += ", cached in " + path
		} else {
			b.kernelOrigin += " (not cached: " + err.Error() + ")"
		}
	}
	return nil
}

// ptxLoadError explains the driver's refusal of freshly compiled PTX:
// the driver compiles PTX only from an NVRTC no newer than itself
// (CUDA_ERROR_UNSUPPORTED_PTX_VERSION otherwise, although its minor
// version compatibility loads that NVRTC's cubins), so that is named
// where the versions say so.
func (b *Backend) ptxLoadError(key compileKey, why string, err error) error {
	err = fmt.Errorf("loading PTX for %s (%s), which the driver compiles: %w", key.arch(), why, err)
	drv, rtc := b.probe.driverVersion, 1000*key.nvrtcMajor+10*key.nvrtcMinor
	if drv == 0 || drv >= rtc {
		return err
	}
	msg := fmt.Sprintf("PTX from NVRTC %d.%d needs a driver for CUDA %s or newer, and this one is for CUDA %s",
		key.nvrtcMajor, key.nvrtcMinor, versionString(rtc), versionString(drv))
	if 10*key.major+key.minor == 10*b.info.major+b.info.minor {
		msg += " (without Options.PTX, $" + EnvPTX + ", NVRTC's cubin for the GPU loads on it)"
	}
	return fmt.Errorf("%w: %s", err, msg)
}

// loadModule loads a cubin and looks up every kernel of kernelSpecs.
func (b *Backend) loadModule(cubin []byte) error {
	a := b.api
	if b.module != 0 {
		call(a.cuModuleUnload, b.module)
		b.module = 0
	}
	var mod uintptr
	if err := a.cu("cuModuleLoadData", call(a.cuModuleLoadData, uintptr(unsafe.Pointer(&mod)), uintptr(unsafe.Pointer(&cubin[0])))); err != nil {
		return err
	}
	fns := make(map[*kernelSpec]uintptr, len(kernelSpecs))
	for _, k := range kernelSpecs {
		name := append([]byte(k.name), 0)
		var fn uintptr
		if err := a.cu("cuModuleGetFunction("+k.name+")", call(a.cuModuleGetFunc, uintptr(unsafe.Pointer(&fn)), mod, uintptr(unsafe.Pointer(&name[0])))); err != nil {
			call(a.cuModuleUnload, mod)
			return err
		}
		fns[k] = fn
	}
	b.module, b.fns = mod, fns
	return nil
}

// kernelResources is what the driver reports of a loaded kernel's code:
// registers and local memory per thread (local memory holds spilled
// registers and arrays the compiler could not keep in registers), static
// shared memory per block, and the most threads a block of it can have.
type kernelResources struct {
	registers, localBytes, sharedBytes, maxThreads int
}

// The CUfunction_attribute values kernelResources reads.
const (
	cuFuncMaxThreadsPerBlock = 0 // CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK
	cuFuncSharedSizeBytes    = 1 // CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES
	cuFuncLocalSizeBytes     = 3 // CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES
	cuFuncNumRegs            = 4 // CU_FUNC_ATTRIBUTE_NUM_REGS
)

// resources asks the driver (cuFuncGetAttribute) about kernel k of the
// loaded module. Tests on a GPU use it to see what the compiler made of
// the kernels, which the PTX checks on a machine without one cannot.
func (b *Backend) resources(k *kernelSpec) (kernelResources, error) {
	var r kernelResources
	err := b.enter()
	for _, a := range []struct {
		attr int
		v    *int
	}{
		{cuFuncMaxThreadsPerBlock, &r.maxThreads}, {cuFuncSharedSizeBytes, &r.sharedBytes},
		{cuFuncLocalSizeBytes, &r.localBytes}, {cuFuncNumRegs, &r.registers},
	} {
		if err != nil {
			break
		}
		var v int32
		err = b.api.cu(fmt.Sprintf("cuFuncGetAttribute(%s, %d)", k.name, a.attr),
			call(b.api.cuFuncGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(a.attr), b.fns[k]))
		*a.v = int(v)
	}
	b.leave()
	return r, err
}

// launch enqueues k, whose arguments b.args holds, on the stream.
func (b *Backend) launch(k *kernelSpec, grid, block dim3) error {
	params, err := b.args.finish()
	if err != nil {
		return err
	}
	if b.args.spec != k {
		return fmt.Errorf("kernel %s launched with the arguments of %s", k.name, b.args.spec.name)
	}
	if !grid.validGrid() || !block.validBlock() {
		return fmt.Errorf("kernel %s: launch geometry grid %v block %v outside the device limits", k.name, grid, block)
	}
	res := b.launchCall(k, grid, block, params)
	if res == cuSuccess {
		return nil
	}
	// The error (and its name) is built only on failure: launches are hot.
	failed := func(res int) error { return b.api.cu("cuLaunchKernel("+k.name+")", res) }
	if res != cuErrorOutOfMemory {
		return failed(res)
	}
	// The driver needed device memory for the launch (the kernel's code,
	// loaded lazily, or its local memory), which the pool may be caching.
	return b.reclaimAndRetry(failed(res), func() error {
		if res := b.launchCall(k, grid, block, params); res != cuSuccess {
			return failed(res)
		}
		return nil
	})
}

// launchCall calls cuLaunchKernel once with params, the argument array of
// b.args.
func (b *Backend) launchCall(k *kernelSpec, grid, block dim3, params unsafe.Pointer) int {
	// params points into b.args, Go memory holding Go pointers (to the
	// argument values in the same object): pinned while the driver reads it.
	b.pinner.Pin(b.args)
	res := call(b.api.cuLaunchKernel, b.fns[k],
		uintptr(grid.x), uintptr(grid.y), uintptr(grid.z),
		uintptr(block.x), uintptr(block.y), uintptr(block.z),
		0, b.stream, uintptr(params), 0)
	b.pinner.Unpin()
	return res
}

// kernel starts the arguments of a launch of k.
func (b *Backend) kernel(k *kernelSpec) *argPack {
	b.args.start(k)
	return b.args
}
