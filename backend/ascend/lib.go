package ascend

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/sora-go/sora/backend"
)

// Enum values from CANN's public headers (acl/acl_base.h, acl/acl_rt.h).
const (
	aclFloat    = 0  // ACL_FLOAT
	aclInt64    = 9  // ACL_INT64
	aclBool     = 12 // ACL_BOOL
	aclFormatND = 2  // ACL_FORMAT_ND

	memcpyHostToDevice = 1 // ACL_MEMCPY_HOST_TO_DEVICE
	memcpyDeviceToHost = 2 // ACL_MEMCPY_DEVICE_TO_HOST

	mallocHugeFirst = 0 // ACL_MEM_MALLOC_HUGE_FIRST

	// aclrtMemAttr, which memory aclrtGetMemInfo reports on. ACL_DDR_MEM
	// and ACL_HBM_MEM (all huge-page and normal memory of that kind) are
	// the enum's first two values in acl/acl_rt.h (hicann/runtime,
	// include/external/acl/acl_rt.h) and in CANN's aclrtGetMemInfo
	// reference (hiascend.com: canncommercial/601 aclcppdevg_03_0083,
	// which lists the enum), followed by their huge, normal and P2P parts;
	// newer releases only append values. deviceMemory says which is asked.
	memAttrDDR = 0 // ACL_DDR_MEM
	memAttrHBM = 1 // ACL_HBM_MEM

	// cubeMathType of the matrix products (aclnnMm and friends).
	cubeKeepDtype          = 0 // KEEP_DTYPE: compute in float32
	cubeAllowDownPrecision = 1 // ALLOW_FP32_DOWN_PRECISION: HF32 on Atlas A2, FP16 on older parts

	statusRepeatInitialize = 100002 // ACL_ERROR_REPEAT_INITIALIZE
	statusMemoryAllocation = 207001 // ACL_ERROR_RT_MEMORY_ALLOCATION
	statusBadAlloc         = 200000 // ACL_ERROR_BAD_ALLOC
)

// statusNames names the status codes a user is likely to see.
var statusNames = map[int32]string{
	100000: "ACL_ERROR_INVALID_PARAM",
	100001: "ACL_ERROR_UNINITIALIZE",
	100002: "ACL_ERROR_REPEAT_INITIALIZE",
	100037: "ACL_ERROR_REPEAT_FINALIZE",
	107000: "ACL_ERROR_RT_PARAM_INVALID",
	107002: "ACL_ERROR_RT_CONTEXT_NULL",
	107003: "ACL_ERROR_RT_STREAM_CONTEXT",
	107016: "ACL_ERROR_RT_INVALID_MEMORY_TYPE",
	107017: "ACL_ERROR_RT_INVALID_HANDLE",
	200000: "ACL_ERROR_BAD_ALLOC",
	207001: "ACL_ERROR_RT_MEMORY_ALLOCATION",
	207002: "ACL_ERROR_RT_MEMORY_FREE",
	500000: "ACL_ERROR_INTERNAL_ERROR",
	507015: "ACL_ERROR_RT_AICORE_EXCEPTION",
	507046: "ACL_ERROR_RT_STREAM_SYNC_TIMEOUT",
	161001: "ACLNN_ERR_PARAM_NULLPTR",
	161002: "ACLNN_ERR_PARAM_INVALID",
	361001: "ACLNN_ERR_RUNTIME_ERROR",
	561000: "ACLNN_ERR_INNER",
}

// ACLError is a failed ACL or aclnn call: the function, the status it
// returned (0 for a constructor that returned NULL) and the message
// aclGetRecentErrMsg gave right after it.
type ACLError struct {
	Call    string
	Status  int32
	Message string
}

// Error names the call, the status and ACL's message.
func (e *ACLError) Error() string {
	name := statusNames[e.Status]
	if name != "" {
		name = " (" + name + ")"
	}
	msg := e.Message
	if msg == "" {
		msg = "aclGetRecentErrMsg gave no message"
	}
	if e.Status == 0 {
		// A constructor (aclCreateTensor, ...) that returned NULL.
		return fmt.Sprintf("%s returned NULL: %s", e.Call, msg)
	}
	return fmt.Sprintf("%s returned %d%s: %s", e.Call, e.Status, name, msg)
}

// Is reports whether target is backend.ErrOutOfMemory and e an
// allocation that failed for lack of memory (ACL_ERROR_RT_MEMORY_ALLOCATION
// or ACL_ERROR_BAD_ALLOC).
func (e *ACLError) Is(target error) bool {
	return target == backend.ErrOutOfMemory && (e.Status == statusMemoryAllocation || e.Status == statusBadAlloc)
}

// IsOutOfMemory reports whether err is an ACL allocation that failed for
// lack of memory, as the pool's retry needs to know. It is
// errors.Is(err, backend.ErrOutOfMemory) restricted to ACL's own errors.
func IsOutOfMemory(err error) bool {
	var a *ACLError
	return errors.As(err, &a) && a.Is(backend.ErrOutOfMemory)
}

// opNames lists the aclnn operators the backend calls; each is looked up
// as aclnnXGetWorkspaceSize and aclnnX.
var opNames = []string{
	"Mm", "BatchMatMul", "Matmul",
	"Add", "Sub", "Mul", "Div", "Adds", "Muls",
	"InplaceAdd", "InplaceAdds", "InplaceMul", "InplaceMuls", "InplaceCopy", "InplaceFillScalar", "InplaceMaskedFillScalar", "Flip",
	"Exp", "Log", "Sqrt", "Rsqrt", "Tanh", "Neg", "Sigmoid", "Silu", "Relu", "GeluV2",
	"SiluBackward", "GeluBackwardV2", "TanhBackward", "SigmoidBackward", "ThresholdBackward",
	"ReduceSum", "Amax",
	"Softmax", "LogSoftmax", "SoftmaxBackward",
	"LayerNorm", "LayerNormBackward", "RmsNorm", "RmsNormGrad",
	"Embedding", "IndexAdd", "Gather", "ScatterAdd",
	// The fused attention operators (optional: see attention.go).
	"FlashAttentionScore", "FlashAttentionVarLenScore", "FlashAttentionScoreGrad", "FlashAttentionUnpaddingScoreGrad",
}

// opFn are the two phases of one aclnn operator.
type opFn struct{ getWS, run uintptr }

// lib is the loaded set of libraries: symbol addresses for integer-only
// calls (made with syscallN) and typed functions for the two
// operators that take a double.
type lib struct {
	loc location

	aclInit, aclFinalize, aclGetRecentErrMsg                 uintptr
	setDevice, resetDevice, getDeviceCount, getSocName       uintptr
	createContext, destroyContext, setCurrentContext         uintptr
	createStream, destroyStream, synchronizeStream           uintptr
	malloc, free, mallocHost, freeHost, memcpy, memcpyAsync  uintptr
	createTensor, destroyTensor, createScalar, destroyScalar uintptr
	createIntArray, destroyIntArray                          uintptr
	createBoolArray, destroyBoolArray                        uintptr

	// getMemInfo is aclrtGetMemInfo, or 0 where the runtime lacks it: it
	// only tells MemoryUsage the device's size, which is no reason to
	// refuse the backend (see deviceMemory).
	getMemInfo uintptr

	ops map[string]opFn
	// missingOps lists operators not found in the operator libraries.
	missingOps []string

	// rmsNormWS and layerNormWS take a double (epsilon), which SyscallN
	// cannot pass.
	rmsNormWS   func(x, gamma uintptr, eps float64, y, rstd uintptr, ws *uint64, ex *uintptr) int32
	layerNormWS func(input, normShape, weight, bias uintptr, eps float64, out, mean, rstd uintptr, ws *uint64, ex *uintptr) int32

	// Phase one of the fused attention operators, which take doubles
	// (scaleValue, keepProb); see attention.go for the arguments.
	faScoreWS     faScoreFunc
	faVarLenWS    faVarLenFunc
	faGradWS      faGradFunc
	faUnpadGradWS faUnpadGradFunc
}

var (
	libMu     sync.Mutex
	loadedLib *lib
	initDone  bool
)

// loadLibrary loads the libraries once per process. A failure is not
// remembered, so a later call can succeed once the environment is fixed.
func loadLibrary() (*lib, error) {
	libMu.Lock()
	defer libMu.Unlock()
	if loadedLib != nil {
		return loadedLib, nil
	}
	if why := unsupportedOS(runtime.GOOS); why != "" {
		return nil, unavailable(why, nil)
	}
	loc, tried, err := systemSearchEnv().locate()
	if err != nil {
		return nil, unavailable(err.Error(), tried)
	}
	l, err := openLibrary(loc)
	if err != nil {
		return nil, unavailable(err.Error(), tried)
	}
	loadedLib = l
	return l, nil
}

// unsupportedOS says why the backend cannot run on goos, or "" where it
// looks for CANN. CANN is released for Linux only. macOS is searched like
// Linux (the search then reports what it lacks), as the ACL test double
// could in principle load there; other systems are refused by name, since
// this package does not even load libraries there (see noffi.go).
func unsupportedOS(goos string) string {
	switch goos {
	case "linux", "darwin":
		return ""
	case "windows":
		return "not available on windows: Huawei's CANN, whose ACL runtime and aclnn operators this backend calls, has no Windows release (it runs on Linux)"
	}
	return "not available on " + goos + ": Huawei's CANN, whose ACL runtime and aclnn operators this backend calls, runs on Linux only"
}

// openLibrary dlopens the located libraries and resolves their symbols.
func openLibrary(loc location) (*lib, error) {
	l := &lib{loc: loc, ops: map[string]opFn{}}
	rt, err := dlOpen(loc.runtime)
	if err != nil {
		return nil, fmt.Errorf("dlopen %s: %v", loc.runtime, err)
	}
	nn, err := dlOpen(loc.nnopbase)
	if err != nil {
		return nil, fmt.Errorf("dlopen %s: %v", loc.nnopbase, err)
	}
	var opHandles []uintptr
	for _, p := range loc.opapi {
		h, err := dlOpen(p)
		if err != nil {
			return nil, fmt.Errorf("dlopen %s: %v", p, err)
		}
		opHandles = append(opHandles, h)
	}
	var missing []string
	sym := func(h uintptr, file, name string) uintptr {
		p, err := dlSym(h, name)
		if err != nil || p == 0 {
			missing = append(missing, name+" in "+file)
			return 0
		}
		return p
	}
	rtName, nnName := filepath.Base(loc.runtime), filepath.Base(loc.nnopbase)
	for _, s := range []struct {
		dst  *uintptr
		name string
	}{
		{&l.aclInit, "aclInit"}, {&l.aclFinalize, "aclFinalize"}, {&l.aclGetRecentErrMsg, "aclGetRecentErrMsg"},
		{&l.setDevice, "aclrtSetDevice"}, {&l.resetDevice, "aclrtResetDevice"},
		{&l.getDeviceCount, "aclrtGetDeviceCount"}, {&l.getSocName, "aclrtGetSocName"},
		{&l.createContext, "aclrtCreateContext"}, {&l.destroyContext, "aclrtDestroyContext"},
		{&l.setCurrentContext, "aclrtSetCurrentContext"},
		{&l.createStream, "aclrtCreateStream"}, {&l.destroyStream, "aclrtDestroyStream"},
		{&l.synchronizeStream, "aclrtSynchronizeStream"},
		{&l.malloc, "aclrtMalloc"}, {&l.free, "aclrtFree"},
		{&l.mallocHost, "aclrtMallocHost"}, {&l.freeHost, "aclrtFreeHost"},
		{&l.memcpy, "aclrtMemcpy"}, {&l.memcpyAsync, "aclrtMemcpyAsync"},
	} {
		*s.dst = sym(rt, rtName, s.name)
	}
	for _, s := range []struct {
		dst  *uintptr
		name string
	}{
		{&l.createTensor, "aclCreateTensor"}, {&l.destroyTensor, "aclDestroyTensor"},
		{&l.createScalar, "aclCreateScalar"}, {&l.destroyScalar, "aclDestroyScalar"},
		{&l.createIntArray, "aclCreateIntArray"}, {&l.destroyIntArray, "aclDestroyIntArray"},
		{&l.createBoolArray, "aclCreateBoolArray"}, {&l.destroyBoolArray, "aclDestroyBoolArray"},
	} {
		*s.dst = sym(nn, nnName, s.name)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing symbols: %s", strings.Join(missing, ", "))
	}
	// Optional: not in the required list above (see lib.getMemInfo).
	if p, err := dlSym(rt, "aclrtGetMemInfo"); err == nil {
		l.getMemInfo = p
	}
	// Operators are looked up in every operator library of the layout:
	// which split library holds which operator is CANN's business.
	find := func(name string) uintptr {
		for _, h := range opHandles {
			if p, err := dlSym(h, name); err == nil && p != 0 {
				return p
			}
		}
		return 0
	}
	for _, op := range opNames {
		f := opFn{getWS: find("aclnn" + op + "GetWorkspaceSize"), run: find("aclnn" + op)}
		if f.getWS == 0 || f.run == 0 {
			l.missingOps = append(l.missingOps, "aclnn"+op)
			continue
		}
		l.ops[op] = f
	}
	sort.Strings(l.missingOps)
	if f, ok := l.ops["RmsNorm"]; ok {
		registerFunc(&l.rmsNormWS, f.getWS)
	}
	if f, ok := l.ops["LayerNorm"]; ok {
		registerFunc(&l.layerNormWS, f.getWS)
	}
	l.registerAttention()
	return l, nil
}

// ccall calls a C function whose arguments are all integers or pointers
// and returns its integer result. Pointers to Go memory must be passed as
// uintptr(unsafe.Pointer(p)) right in the call, so that they stay alive and
// in place for its duration.
//
//go:uintptrescapes
func ccall(fn uintptr, args ...uintptr) uintptr {
	return syscallN(fn, args...)
}

// wsCall is phase one of an aclnn operator: the operator's own arguments,
// then the two out-parameters workspaceSize and executor.
//
//go:uintptrescapes
func wsCall(fn uintptr, wsSize, executor uintptr, args []uintptr) int32 {
	var a [32]uintptr
	n := copy(a[:], args)
	a[n], a[n+1] = wsSize, executor
	return int32(syscallN(fn, a[:n+2]...))
}

// cString copies a NUL-terminated C string (at most 4 KiB of it).
func cString(p uintptr) string {
	if p == 0 {
		return ""
	}
	base := *(*unsafe.Pointer)(unsafe.Pointer(&p))
	var b []byte
	for i := 0; i < 4096; i++ {
		c := *(*byte)(unsafe.Add(base, i))
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

// status turns the result of call into an error carrying the runtime's
// most recent message; nil for success. It must run on the thread that
// made the call, which every entry point of the backend ensures.
func (l *lib) status(call string, r uintptr) error {
	st := int32(r)
	if st == 0 {
		return nil
	}
	return &ACLError{Call: call, Status: st, Message: l.recentMessage()}
}

// recentMessage returns (and, as CANN does, clears) this thread's most
// recent error message.
func (l *lib) recentMessage() string {
	return strings.TrimSpace(cString(ccall(l.aclGetRecentErrMsg)))
}

// ensureInit calls aclInit once per process. ACL allows one aclInit per
// process, so the backend never calls aclFinalize on its own (see
// Finalize).
func (l *lib) ensureInit() error {
	libMu.Lock()
	defer libMu.Unlock()
	if initDone {
		return nil
	}
	r := ccall(l.aclInit, 0)
	if int32(r) == statusRepeatInitialize {
		// Someone else in this process initialised ACL: fine.
		l.recentMessage()
		initDone = true
		return nil
	}
	if err := l.status("aclInit", r); err != nil {
		return err
	}
	initDone = true
	return nil
}

// Finalize calls aclFinalize. A program may call it once, at exit, after
// closing every Ascend backend; no backend can be opened afterwards in the
// same process. Without libraries loaded or ACL initialised it does
// nothing.
func Finalize() error {
	libMu.Lock()
	defer libMu.Unlock()
	if loadedLib == nil || !initDone {
		return nil
	}
	lockThread()
	defer unlockThread()
	if err := loadedLib.status("aclFinalize", ccall(loadedLib.aclFinalize)); err != nil {
		return err
	}
	initDone = false
	return nil
}
