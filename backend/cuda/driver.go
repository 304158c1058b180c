package cuda

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/sora-go/sora/backend"
)

// theDriver is the registry entry; New uses its probe too, so the search
// runs once per process.
var theDriver = &driver{}

func init() {
	backend.Register("cuda", theDriver)
}

// driver is the registry entry for "cuda". The search and the driver's
// initialisation happen once per process, on the first Probe or Open: the
// libraries stay loaded, and cuInit is not meant to be called per request.
type driver struct {
	once   sync.Once
	result *probeResult
}

func (d *driver) probe() *probeResult {
	d.once.Do(func() {
		if why := unsupportedOS(runtime.GOOS); why != "" {
			d.result = &probeResult{problems: []string{why}}
			return
		}
		d.result = probe(systemEnv())
	})
	return d.result
}

// unsupportedOS says why there is no CUDA to look for on goos, or "" where
// NVIDIA ships it (Linux, including WSL, and Windows). Searching anyway
// would only end in "libcuda.so.1 not found; set SORA_CUDA_PATH", which
// suggests a fix that does not exist.
func unsupportedOS(goos string) string {
	switch goos {
	case "linux", "windows":
		return ""
	case "darwin", "ios":
		return "not available on " + goos + ": NVIDIA's CUDA runs on Linux and Windows only (the last macOS release was CUDA 10.2)"
	}
	return "not available on " + goos + ": NVIDIA's CUDA runs on Linux and Windows only"
}

// Probe reports the device and the libraries when everything loads, and
// otherwise what is missing. It does not create a context or compile the
// kernels; Open does.
func (d *driver) Probe() (string, error) {
	r := d.probe()
	if err := r.err(); err != nil {
		return "", err
	}
	if _, err := OptionsFromEnv(); err != nil {
		return "", err
	}
	return r.summary(), nil
}

// Open returns a backend on device 0 configured from the environment
// (SORA_CUDA_TF32, SORA_CUDA_CACHE), or an error saying what is missing or
// what failed.
func (d *driver) Open() (backend.Backend, error) {
	o, err := OptionsFromEnv()
	if err != nil {
		return nil, err
	}
	b, err := openBackend(d.probe(), o)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Compute-capability attributes of cuDeviceGetAttribute
// (CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR).
const (
	attrComputeCapabilityMajor = 75
	attrComputeCapabilityMinor = 76
)

// cuResult values the probe tells apart.
const (
	cudaSuccess       = 0
	cudaErrorNoDevice = 100
)

// deviceInfo describes device 0.
type deviceInfo struct {
	name         string
	major, minor int // compute capability
	totalMem     uint64
	count        int // devices visible
}

// probeResult is what a search and driver initialisation found.
type probeResult struct {
	driver, cublas, nvrtc *library
	driverVersion         int // e.g. 12080 for CUDA 12.8; 0 when unknown
	device                *deviceInfo
	// problems say what is missing or broken, in the order found.
	problems []string
	// notFound is set when some library was found nowhere, so the report
	// suggests SORA_CUDA_PATH.
	notFound bool
	tried    []string
}

// probe searches for the libraries, loads them, initialises the driver
// and looks at device 0.
func probe(env searchEnv) *probeResult {
	r := &probeResult{}
	dirs := env.searchDirs()
	r.tried = triedList(dirs, env)

	drvSpec, blasSpec, rtcSpec := env.specs()
	drv := load(drvSpec, dirs, env, majorCap{})
	r.driver = drv.lib
	r.report(drvSpec, drv)
	if r.driver != nil {
		api := newDriverAPI(r.driver)
		var v int32
		if res := api.cuDriverGetVersion(&v); res == cudaSuccess {
			r.driverVersion = int(v)
		}
		r.device = api.findDevice(r)
	}
	var ccMajor, ccMinor int
	if r.device != nil {
		ccMajor, ccMinor = r.device.major, r.device.minor
	}
	limit := libraryCap(r.driverVersion, ccMajor, ccMinor)
	cb := load(blasSpec, dirs, env, limit)
	r.cublas = cb.lib
	r.report(blasSpec, cb)
	nv := load(rtcSpec, dirs, env, limit)
	r.nvrtc = nv.lib
	r.report(rtcSpec, nv)
	return r
}

// report adds to r.problems what kept spec from loading.
func (r *probeResult) report(spec libSpec, o loadOutcome) {
	switch {
	case o.lib != nil:
	case !o.found:
		r.notFound = true
		msg := fmt.Sprintf("%s (%s) not found", spec.names(), spec.role)
		if len(o.problems) > 0 { // only what the version cap kept from the search by name
			msg += ": " + strings.Join(o.problems, "; ")
		}
		r.problems = append(r.problems, msg)
	default:
		r.problems = append(r.problems, fmt.Sprintf("no usable %s (%s): %s", spec.names(), spec.role, strings.Join(o.problems, "; ")))
	}
}

// triedList is the readable list of what was searched: folders, not files.
func triedList(dirs []searchDir, env searchEnv) []string {
	var tried []string
	python := false
	for _, d := range dirs {
		tried = append(tried, d.label())
		python = python || d.python
	}
	if !python {
		if env.goos == "windows" {
			tried = append(tried, `Python environments (no nvidia\*\bin folder found)`)
		} else {
			tried = append(tried, "Python environments (no nvidia/*/lib folder found)")
		}
	}
	if env.linker {
		if env.goos == "windows" {
			tried = append(tried, "the system's DLL search by name (LoadLibrary)")
		} else {
			tried = append(tried, "the dynamic linker's search by name (ld.so.cache)")
		}
	}
	return tried
}

// description is the device as Probe describes it, "" when there is none.
func (r *probeResult) description() string {
	if r.device == nil {
		return ""
	}
	return r.device.String()
}

func (d *deviceInfo) String() string {
	s := fmt.Sprintf("%s, compute capability %d.%d", d.name, d.major, d.minor)
	if d.totalMem > 0 {
		s += fmt.Sprintf(", %.1f GiB", float64(d.totalMem)/(1<<30))
	}
	if d.count > 1 {
		s += fmt.Sprintf(", device 0 of %d", d.count)
	}
	return s
}

// err is the error Probe and Open answer when something is missing; nil
// when the libraries load and a device answers.
func (r *probeResult) err() error {
	if len(r.problems) > 0 {
		reason := strings.Join(r.problems, "; ")
		if r.notFound {
			reason += "; set SORA_CUDA_PATH to the folder that holds the missing libraries"
		}
		return &backend.UnavailableError{Backend: "cuda", Reason: reason, Tried: r.tried}
	}
	if r.device == nil || r.driver == nil || r.cublas == nil || r.nvrtc == nil {
		return &backend.UnavailableError{Backend: "cuda", Reason: "no device found", Tried: r.tried}
	}
	return nil
}

// summary describes the device and where each library was loaded from.
func (r *probeResult) summary() string {
	return fmt.Sprintf("%s (driver CUDA %s, %s; %s; %s)", r.device, versionString(r.driverVersion),
		r.driver.where(), r.cublas.where(), r.nvrtc.where())
}

// versionString formats a CUDA version number such as 12080 as "12.8".
func versionString(v int) string {
	if v == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10)
}

// driverAPI holds the driver functions the probe calls, bound to the
// loaded library's symbols.
type driverAPI struct {
	cuInit               func(flags uint32) int32
	cuDriverGetVersion   func(v *int32) int32
	cuDeviceGetCount     func(n *int32) int32
	cuDeviceGet          func(dev *int32, ordinal int32) int32
	cuDeviceGetName      func(name *byte, n int32, dev int32) int32
	cuDeviceGetAttribute func(v *int32, attr int32, dev int32) int32
	cuDeviceTotalMem     func(bytes *uint64, dev int32) int32
	cuGetErrorName       func(res int32, s **byte) int32
	cuGetErrorString     func(res int32, s **byte) int32
}

func newDriverAPI(lib *library) *driverAPI {
	a := &driverAPI{}
	registerFunc(&a.cuInit, lib.sym("cuInit"))
	registerFunc(&a.cuDriverGetVersion, lib.sym("cuDriverGetVersion"))
	registerFunc(&a.cuDeviceGetCount, lib.sym("cuDeviceGetCount"))
	registerFunc(&a.cuDeviceGet, lib.sym("cuDeviceGet"))
	registerFunc(&a.cuDeviceGetName, lib.sym("cuDeviceGetName"))
	registerFunc(&a.cuDeviceGetAttribute, lib.sym("cuDeviceGetAttribute"))
	registerFunc(&a.cuDeviceTotalMem, lib.sym("cuDeviceTotalMem_v2"))
	registerFunc(&a.cuGetErrorName, lib.sym("cuGetErrorName"))
	registerFunc(&a.cuGetErrorString, lib.sym("cuGetErrorString"))
	return a
}

// errorText names a CUresult, e.g. "CUDA_ERROR_NO_DEVICE (no CUDA-capable
// device is detected)".
func (a *driverAPI) errorText(res int32) string {
	var name, text *byte
	if a.cuGetErrorName(res, &name) != cudaSuccess || name == nil {
		return fmt.Sprintf("CUresult %d", res)
	}
	s := cString(name)
	if a.cuGetErrorString(res, &text) == cudaSuccess && text != nil {
		s += " (" + cString(text) + ")"
	}
	return s
}

// findDevice initialises the driver and describes device 0, recording in
// r what went wrong when there is no usable device.
func (a *driverAPI) findDevice(r *probeResult) *deviceInfo {
	if res := a.cuInit(0); res != cudaSuccess {
		if res == cudaErrorNoDevice {
			r.problems = append(r.problems, "no CUDA device: cuInit returned "+a.errorText(res))
		} else {
			r.problems = append(r.problems, fmt.Sprintf("cuInit failed (%s loaded): %s", r.driver.where(), a.errorText(res)))
		}
		return nil
	}
	var n int32
	if res := a.cuDeviceGetCount(&n); res != cudaSuccess {
		r.problems = append(r.problems, "cuDeviceGetCount failed: "+a.errorText(res))
		return nil
	}
	if n <= 0 {
		r.problems = append(r.problems, "no CUDA device: the driver initialised but cuDeviceGetCount found 0 devices")
		return nil
	}
	info := &deviceInfo{count: int(n)}
	var dev int32
	if res := a.cuDeviceGet(&dev, 0); res != cudaSuccess {
		r.problems = append(r.problems, "cuDeviceGet(0) failed: "+a.errorText(res))
		return nil
	}
	var name [256]byte
	if res := a.cuDeviceGetName(&name[0], int32(len(name)), dev); res != cudaSuccess {
		r.problems = append(r.problems, "cuDeviceGetName failed: "+a.errorText(res))
		return nil
	}
	info.name = cString(&name[0])
	var major, minor int32
	if res := a.cuDeviceGetAttribute(&major, attrComputeCapabilityMajor, dev); res != cudaSuccess {
		r.problems = append(r.problems, "cuDeviceGetAttribute(compute capability) failed: "+a.errorText(res))
		return nil
	}
	if res := a.cuDeviceGetAttribute(&minor, attrComputeCapabilityMinor, dev); res != cudaSuccess {
		r.problems = append(r.problems, "cuDeviceGetAttribute(compute capability) failed: "+a.errorText(res))
		return nil
	}
	info.major, info.minor = int(major), int(minor)
	var mem uint64
	if a.cuDeviceTotalMem(&mem, dev) == cudaSuccess {
		info.totalMem = mem
	}
	return info
}

// cString copies the NUL-terminated C string at p.
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	var b []byte
	for q := unsafe.Pointer(p); *(*byte)(q) != 0; q = unsafe.Add(q, 1) {
		b = append(b, *(*byte)(q))
		if len(b) > 4096 { // a driver string is never this long; stop on garbage
			break
		}
	}
	return string(b)
}
