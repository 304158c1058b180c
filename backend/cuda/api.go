package cuda

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/sora-go/sora/backend"
)

// Error is a failed call into one of the NVIDIA libraries: the function,
// the status it returned, and the library's name and description of it.
type Error struct {
	// Call is the function, e.g. "cuMemAlloc_v2".
	Call string
	// Code is the status (CUresult, cublasStatus_t or nvrtcResult).
	Code int
	// Name is the status's symbolic name, e.g. "CUDA_ERROR_OUT_OF_MEMORY".
	Name string
	// Text is the library's description, e.g. "out of memory"; may be "".
	Text string

	driver bool // a CUresult, as opposed to a cuBLAS or NVRTC status
}

// Error returns "call: NAME (text)".
func (e *Error) Error() string {
	s := e.Call + ": " + e.Name
	if e.Text != "" && e.Text != e.Name {
		s += " (" + e.Text + ")"
	}
	return s
}

// Is reports whether target is backend.ErrOutOfMemory and e a failure
// for lack of memory: the driver's CUDA_ERROR_OUT_OF_MEMORY (cuMemAlloc,
// or memory a launch or a module load needed), cuBLAS's
// CUBLAS_STATUS_ALLOC_FAILED (its workspace) or NVRTC's
// NVRTC_ERROR_OUT_OF_MEMORY (host memory for a compilation).
func (e *Error) Is(target error) bool {
	if target != backend.ErrOutOfMemory {
		return false
	}
	if e.driver {
		return e.Code == cuErrorOutOfMemory
	}
	// cuBLAS and NVRTC number their statuses alike (3 is an allocation
	// failure to one, invalid input to the other): each table gives the
	// name, which is the library's.
	return e.Name == cublasStatusNames[cublasStatusAllocFailed] || e.Name == nvrtcResultNames[nvrtcErrorOutOfMemory]
}

// IsOutOfMemory reports whether err is the driver's refusal of a device
// allocation (CUDA_ERROR_OUT_OF_MEMORY), which returning the pool's
// cached blocks to the device may cure. errors.Is(err,
// backend.ErrOutOfMemory) is the wider test, of every library's
// allocation failures.
func IsOutOfMemory(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.driver && e.Code == cuErrorOutOfMemory
}

// Status codes the backend tells apart.
const (
	cuSuccess          = 0
	cuErrorOutOfMemory = 2
	cuErrorInvalidImg  = 200 // CUDA_ERROR_INVALID_IMAGE: a cached cubin the driver rejects
	nvrtcSuccess       = 0
	cublasSuccess      = 0

	cublasStatusAllocFailed = 3 // CUBLAS_STATUS_ALLOC_FAILED
	nvrtcErrorOutOfMemory   = 1 // NVRTC_ERROR_OUT_OF_MEMORY
)

// Enumerations passed to the libraries.
const (
	cuStreamNonBlocking       = 1  // CU_STREAM_NON_BLOCKING
	attrMultiprocessorCount   = 16 // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
	cublasOpN                 = 0  // CUBLAS_OP_N
	cublasOpT                 = 1  // CUBLAS_OP_T
	cublasDefaultMath         = 0  // CUBLAS_DEFAULT_MATH: full FP32
	cublasTF32TensorOpMath    = 3  // CUBLAS_TF32_TENSOR_OP_MATH
	cublasPointerModeHost     = 0  // CUBLAS_POINTER_MODE_HOST: alpha and beta on the host
	cublasMathDisallowReduced = 16 // CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION
)

// cublasStatusNames are the names of cublasStatus_t values (cublas_api.h).
var cublasStatusNames = map[int]string{
	0:  "CUBLAS_STATUS_SUCCESS",
	1:  "CUBLAS_STATUS_NOT_INITIALIZED",
	3:  "CUBLAS_STATUS_ALLOC_FAILED",
	7:  "CUBLAS_STATUS_INVALID_VALUE",
	8:  "CUBLAS_STATUS_ARCH_MISMATCH",
	11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR",
	15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// nvrtcResultNames are the names of nvrtcResult values (nvrtc.h).
var nvrtcResultNames = map[int]string{
	0:  "NVRTC_SUCCESS",
	1:  "NVRTC_ERROR_OUT_OF_MEMORY",
	2:  "NVRTC_ERROR_PROGRAM_CREATION_FAILURE",
	3:  "NVRTC_ERROR_INVALID_INPUT",
	4:  "NVRTC_ERROR_INVALID_PROGRAM",
	5:  "NVRTC_ERROR_INVALID_OPTION",
	6:  "NVRTC_ERROR_COMPILATION",
	7:  "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE",
	8:  "NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION",
	9:  "NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION",
	10: "NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID",
	11: "NVRTC_ERROR_INTERNAL_ERROR",
}

// api holds the addresses of every library function the backend calls.
// All are called through purego.SyscallN with integer and pointer
// arguments only (kernel arguments and GEMM scalars travel by pointer), so
// no floating-point register passing is involved.
type api struct {
	drv, blas, rtc *library

	// driver
	cuGetErrorName, cuGetErrorString                     uintptr
	cuDeviceGet, cuDeviceGetAttribute                    uintptr
	cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease  uintptr
	cuCtxSetCurrent, cuCtxSynchronize                    uintptr
	cuMemAlloc, cuMemFree, cuMemGetInfo                  uintptr
	cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemcpyDtoDAs uintptr
	cuMemsetD32Async                                     uintptr
	cuStreamCreate, cuStreamDestroy, cuStreamSynchronize uintptr
	cuModuleLoadData, cuModuleUnload, cuModuleGetFunc    uintptr
	cuFuncGetAttribute, cuLaunchKernel                   uintptr
	cuOccupancyMaxActiveBlocksPerMultiprocessor          uintptr

	// cuBLAS
	cublasCreate, cublasDestroy, cublasSetStream       uintptr
	cublasSetMathMode, cublasSetPointerMode            uintptr
	cublasSgemm, cublasSgemmStridedBatched, cublasText uintptr

	// NVRTC
	nvrtcVersion, nvrtcGetErrorString          uintptr
	nvrtcCreateProgram, nvrtcDestroyProgram    uintptr
	nvrtcCompileProgram                        uintptr
	nvrtcGetPTXSize, nvrtcGetPTX               uintptr
	nvrtcGetCUBINSize, nvrtcGetCUBIN           uintptr
	nvrtcGetProgramLogSize, nvrtcGetProgramLog uintptr
	nvrtcGetNumSupportedArchs                  uintptr
	nvrtcGetSupportedArchs                     uintptr
}

// newAPI binds the functions of the three loaded libraries. Every symbol
// was resolved at load time (see the lists in load.go).
func newAPI(drv, blas, rtc *library) *api {
	return &api{
		drv: drv, blas: blas, rtc: rtc,

		cuGetErrorName:            drv.sym("cuGetErrorName"),
		cuGetErrorString:          drv.sym("cuGetErrorString"),
		cuDeviceGet:               drv.sym("cuDeviceGet"),
		cuDeviceGetAttribute:      drv.sym("cuDeviceGetAttribute"),
		cuDevicePrimaryCtxRetain:  drv.sym("cuDevicePrimaryCtxRetain"),
		cuDevicePrimaryCtxRelease: drv.sym("cuDevicePrimaryCtxRelease_v2"),
		cuCtxSetCurrent:           drv.sym("cuCtxSetCurrent"),
		cuCtxSynchronize:          drv.sym("cuCtxSynchronize"),
		cuMemAlloc:                drv.sym("cuMemAlloc_v2"),
		cuMemFree:                 drv.sym("cuMemFree_v2"),
		cuMemGetInfo:              drv.sym("cuMemGetInfo_v2"),
		cuMemcpyHtoDAsync:         drv.sym("cuMemcpyHtoDAsync_v2"),
		cuMemcpyDtoHAsync:         drv.sym("cuMemcpyDtoHAsync_v2"),
		cuMemcpyDtoDAs:            drv.sym("cuMemcpyDtoDAsync_v2"),
		cuMemsetD32Async:          drv.sym("cuMemsetD32Async"),
		cuStreamCreate:            drv.sym("cuStreamCreate"),
		cuStreamDestroy:           drv.sym("cuStreamDestroy_v2"),
		cuStreamSynchronize:       drv.sym("cuStreamSynchronize"),
		cuModuleLoadData:          drv.sym("cuModuleLoadData"),
		cuModuleUnload:            drv.sym("cuModuleUnload"),
		cuModuleGetFunc:           drv.sym("cuModuleGetFunction"),
		cuFuncGetAttribute:        drv.sym("cuFuncGetAttribute"),
		cuLaunchKernel:            drv.sym("cuLaunchKernel"),
		cuOccupancyMaxActiveBlocksPerMultiprocessor: drv.sym("cuOccupancyMaxActiveBlocksPerMultiprocessor"),

		cublasCreate:              blas.sym("cublasCreate_v2"),
		cublasDestroy:             blas.sym("cublasDestroy_v2"),
		cublasSetStream:           blas.sym("cublasSetStream_v2"),
		cublasSetMathMode:         blas.sym("cublasSetMathMode"),
		cublasSetPointerMode:      blas.sym("cublasSetPointerMode_v2"),
		cublasSgemm:               blas.sym("cublasSgemm_v2"),
		cublasSgemmStridedBatched: blas.sym("cublasSgemmStridedBatched"),
		cublasText:                blas.sym("cublasGetStatusString"),

		nvrtcVersion:           rtc.sym("nvrtcVersion"),
		nvrtcGetErrorString:    rtc.sym("nvrtcGetErrorString"),
		nvrtcCreateProgram:     rtc.sym("nvrtcCreateProgram"),
		nvrtcDestroyProgram:    rtc.sym("nvrtcDestroyProgram"),
		nvrtcCompileProgram:    rtc.sym("nvrtcCompileProgram"),
		nvrtcGetPTXSize:        rtc.sym("nvrtcGetPTXSize"),
		nvrtcGetPTX:            rtc.sym("nvrtcGetPTX"),
		nvrtcGetCUBINSize:      rtc.sym("nvrtcGetCUBINSize"),
		nvrtcGetCUBIN:          rtc.sym("nvrtcGetCUBIN"),
		nvrtcGetProgramLogSize: rtc.sym("nvrtcGetProgramLogSize"),
		nvrtcGetProgramLog:     rtc.sym("nvrtcGetProgramLog"),

		nvrtcGetNumSupportedArchs: rtc.sym("nvrtcGetNumSupportedArchs"),
		nvrtcGetSupportedArchs:    rtc.sym("nvrtcGetSupportedArchs"),
	}
}

// call invokes a C function with integer and pointer arguments and returns
// its (32-bit) status. Like purego.SyscallN it is marked uintptrescapes:
// a pointer converted to uintptr in the argument list of a call to it is
// kept alive, on the heap, until the call returns. Callers therefore write
// uintptr(unsafe.Pointer(&x)) in the argument list itself.
//
//go:uintptrescapes
func call(fn uintptr, args ...uintptr) int {
	r := syscallN(fn, args...)
	return int(int32(uint32(r)))
}

// cu checks a driver status and names the call on failure.
func (a *api) cu(name string, res int) error {
	if res == cuSuccess {
		return nil
	}
	e := &Error{Call: name, Code: res, Name: fmt.Sprintf("CUresult %d", res), driver: true}
	var s uintptr
	if call(a.cuGetErrorName, uintptr(res), uintptr(unsafe.Pointer(&s))) == cuSuccess && s != 0 {
		e.Name = goString(s)
	}
	s = 0
	if call(a.cuGetErrorString, uintptr(res), uintptr(unsafe.Pointer(&s))) == cuSuccess && s != 0 {
		e.Text = goString(s)
	}
	return e
}

// blasErr checks a cuBLAS status and names the call on failure.
func (a *api) blasErr(name string, status int) error {
	if status == cublasSuccess {
		return nil
	}
	e := &Error{Call: name, Code: status, Name: cublasStatusNames[status]}
	if e.Name == "" {
		e.Name = fmt.Sprintf("cublasStatus_t %d", status)
	}
	if r := syscallN(a.cublasText, uintptr(status)); r != 0 {
		e.Text = goString(r)
	}
	return e
}

// rtcErr checks an NVRTC status and names the call on failure.
func (a *api) rtcErr(name string, status int) error {
	if status == nvrtcSuccess {
		return nil
	}
	e := &Error{Call: name, Code: status, Name: nvrtcResultNames[status]}
	if e.Name == "" {
		e.Name = fmt.Sprintf("nvrtcResult %d", status)
	}
	if r := syscallN(a.nvrtcGetErrorString, uintptr(status)); r != 0 {
		e.Text = goString(r)
	}
	return e
}

// goString copies the NUL-terminated C string at address p.
func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	return cString(*(**byte)(unsafe.Pointer(&p)))
}
