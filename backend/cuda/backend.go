package cuda

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/internal/devpool"
)

// Environment variables read by [backend.Open]("cuda").
const (
	// EnvTF32 set to 1 (or true) lets cuBLAS compute matrix products on
	// TF32 tensor cores (see [Options.TF32]).
	EnvTF32 = "SORA_CUDA_TF32"
	// EnvCache names the folder of the compiled-kernel cache; "off"
	// disables the cache.
	EnvCache = "SORA_CUDA_CACHE"
	// EnvPTX set to 1 (or true) has the kernels compiled to PTX, which
	// the driver compiles for the GPU as it loads them (see
	// [Options.PTX]).
	EnvPTX = "SORA_CUDA_PTX"
)

// TF32MatMulNMSE is the normalised mean squared error Σ(out−ref)²/Σref²
// that matrix products in TF32 mode are documented to stay under, against
// a float64 reference, for inputs of one sign-symmetric scale (as in the
// conformance suite). TF32 keeps 10 explicit mantissa bits of each
// operand and accumulates in float32. Simulated on the host
// (TestTF32Tolerance), that gives an NMSE of about 7e-8 when operands are
// rounded to nearest and 5e-7 when their low bits are truncated, whatever
// the inner dimension; the limit leaves a factor of four over the worse.
// In TF32 mode the conformance suite's float32 limits for matmul (1e-9)
// do not hold: conformance is meant to be run in the default mode.
const TF32MatMulNMSE = 2e-6

// Options configures a CUDA backend.
type Options struct {
	// TF32 lets cuBLAS round matrix-product inputs to TF32 on tensor cores
	// (CUBLAS_TF32_TENSOR_OP_MATH): several times faster on Ampere and
	// later, with the error bound of [TF32MatMulNMSE] instead of float32's.
	// The default is full float32 (CUBLAS_DEFAULT_MATH).
	TF32 bool
	// CacheDir is the folder of the compiled-kernel cache. "" means
	// os.UserCacheDir()/sora/cuda; NoCache disables the cache.
	CacheDir string
	NoCache  bool
	// PTX has NVRTC compile the kernels to PTX for the GPU's compute
	// capability, which the driver compiles to the GPU's code as it loads
	// it, instead of to that code (SASS) itself. The backend takes this
	// path anyway where NVRTC is older than the GPU and cannot compile
	// for it: PTX for the newest architecture NVRTC knows that the GPU
	// runs. The option lets a GPU that NVRTC knows test that path.
	PTX bool
}

// OptionsFromEnv returns the Options that [backend.Open]("cuda") uses,
// read from SORA_CUDA_TF32, SORA_CUDA_CACHE and SORA_CUDA_PTX, or an
// error naming the variable whose value cannot be used.
func OptionsFromEnv() (Options, error) {
	return optionsFrom(os.Getenv)
}

func optionsFrom(getenv func(string) string) (Options, error) {
	var o Options
	for _, f := range []struct {
		name string
		v    *bool
	}{{EnvTF32, &o.TF32}, {EnvPTX, &o.PTX}} {
		if s := strings.TrimSpace(getenv(f.name)); s != "" {
			v, err := strconv.ParseBool(s)
			if err != nil {
				return Options{}, fmt.Errorf("cuda: %s=%q: want 1 or 0 (or true/false)", f.name, s)
			}
			*f.v = v
		}
	}
	switch s := strings.TrimSpace(getenv(EnvCache)); {
	case s == "":
	case strings.EqualFold(s, "off"):
		o.NoCache = true
	default:
		o.CacheDir = s
	}
	return o, nil
}

// Backend is the CUDA implementation of [backend.Backend]: one device (the
// first), its primary context, one stream, one cuBLAS handle and the
// kernels of kernels.cu. Like every backend it is not safe for concurrent
// use. Create one with [New] or [backend.Open]("cuda").
type Backend struct {
	backend.Recorder

	api          *api
	opts         Options
	info         deviceInfo
	probe        *probeResult
	dev          int32
	ctx          uintptr // the primary context, retained
	stream       uintptr
	blas         uintptr
	module       uintptr
	fns          map[*kernelSpec]uintptr
	resident     map[*kernelSpec]int // blocks of rowBlock threads per multiprocessor
	sms          int
	nvrtc        [2]int // NVRTC version
	kernelOrigin string

	pool *devpool.Pool
	live map[*buffer]struct{}
	args *argPack
	ids  []int32 // host staging of ScatterAdd's grouped indices
	segs []int32 // host staging of Attention's document bounds
	// ptrs holds the device addresses dptrs returns: one op's tensor
	// arguments (AttentionGrad's nine at most).
	ptrs [9]uintptr

	// scalars holds cuBLAS's alpha and beta, which it reads through host
	// pointers (CUBLAS_POINTER_MODE_HOST) during the call.
	scalars *[2]float32
	// pinner pins args or scalars for the duration of the one call that
	// reads them. (Pinning them for the backend's life would make a
	// Backend dropped without Close a pinned-memory leak, which the Go
	// runtime reports as a fatal error when it collects the Pinner.)
	pinner runtime.Pinner

	closed bool
}

var _ backend.Backend = (*Backend)(nil)

// New opens the first CUDA device with opts. It returns a
// *backend.UnavailableError when a library or the device is missing, and
// another error when the device is there but the backend cannot start on
// it (the context, stream, cuBLAS handle or kernel compilation fails).
func New(opts Options) (*Backend, error) {
	return openBackend(theDriver.probe(), opts)
}

// openBackend starts a backend on what a probe found.
func openBackend(r *probeResult, opts Options) (_ *Backend, err error) {
	if len(r.problems) > 0 || r.device == nil {
		return nil, r.err()
	}
	b := &Backend{
		api:   newAPI(r.driver, r.cublas, r.nvrtc),
		opts:  opts,
		info:  *r.device,
		probe: r,
		fns:   map[*kernelSpec]uintptr{},
		live:  map[*buffer]struct{}{},
		args:  new(argPack),

		scalars: new([2]float32),
	}
	b.pool = b.newPool()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer func() {
		if err != nil {
			b.teardown() // what was acquired so far
		}
	}()
	a := b.api
	if err := a.cu("cuDeviceGet", call(a.cuDeviceGet, uintptr(unsafe.Pointer(&b.dev)), 0)); err != nil {
		return nil, err
	}
	var ctx uintptr
	if err := a.cu("cuDevicePrimaryCtxRetain", call(a.cuDevicePrimaryCtxRetain, uintptr(unsafe.Pointer(&ctx)), uintptr(b.dev))); err != nil {
		return nil, err
	}
	b.ctx = ctx
	if err := a.cu("cuCtxSetCurrent", call(a.cuCtxSetCurrent, b.ctx)); err != nil {
		return nil, err
	}
	var sms int32
	if err := a.cu("cuDeviceGetAttribute(MULTIPROCESSOR_COUNT)", call(a.cuDeviceGetAttribute, uintptr(unsafe.Pointer(&sms)), attrMultiprocessorCount, uintptr(b.dev))); err != nil {
		return nil, err
	}
	b.sms = int(max(sms, 1))
	var stream uintptr
	if err := a.cu("cuStreamCreate", call(a.cuStreamCreate, uintptr(unsafe.Pointer(&stream)), cuStreamNonBlocking)); err != nil {
		return nil, err
	}
	b.stream = stream
	var h uintptr
	if err := a.blasErr("cublasCreate_v2", call(a.cublasCreate, uintptr(unsafe.Pointer(&h)))); err != nil {
		return nil, err
	}
	b.blas = h
	if err := a.blasErr("cublasSetStream_v2", call(a.cublasSetStream, b.blas, b.stream)); err != nil {
		return nil, err
	}
	if err := a.blasErr("cublasSetPointerMode_v2", call(a.cublasSetPointerMode, b.blas, cublasPointerModeHost)); err != nil {
		return nil, err
	}
	mode := uintptr(cublasDefaultMath)
	if opts.TF32 {
		mode = cublasTF32TensorOpMath
	}
	if err := a.blasErr("cublasSetMathMode", call(a.cublasSetMathMode, b.blas, mode)); err != nil {
		return nil, err
	}
	if err := b.loadKernels(); err != nil {
		return nil, err
	}
	return b, nil
}

// teardown releases whatever open or Close acquired, in reverse order,
// and returns the first failure. The calling goroutine is locked to its
// thread.
func (b *Backend) teardown() error {
	a := b.api
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if b.ctx != 0 {
		keep(a.cu("cuCtxSetCurrent", call(a.cuCtxSetCurrent, b.ctx)))
	}
	if b.stream != 0 {
		keep(a.cu("cuStreamSynchronize", call(a.cuStreamSynchronize, b.stream)))
	}
	for buf := range b.live {
		b.pool.Put(buf.Ptr, buf.Class)
		buf.Freed = true
	}
	clear(b.live)
	keep(b.pool.Release())
	if b.blas != 0 {
		keep(a.blasErr("cublasDestroy_v2", call(a.cublasDestroy, b.blas)))
		b.blas = 0
	}
	if b.module != 0 {
		keep(a.cu("cuModuleUnload", call(a.cuModuleUnload, b.module)))
		b.module = 0
	}
	if b.stream != 0 {
		keep(a.cu("cuStreamDestroy_v2", call(a.cuStreamDestroy, b.stream)))
		b.stream = 0
	}
	if b.ctx != 0 {
		keep(a.cu("cuDevicePrimaryCtxRelease_v2", call(a.cuDevicePrimaryCtxRelease, uintptr(b.dev))))
		b.ctx = 0
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// Name returns "cuda".
func (b *Backend) Name() string { return "cuda" }

// Device describes the GPU and what decides its numbers: the libraries'
// versions and the matrix-product mode, e.g. "NVIDIA H100 80GB HBM3,
// compute capability 9.0, 79.1 GiB, 132 SMs; driver CUDA 12.8, cuBLAS 12,
// NVRTC 12.8; matmul fp32". It is the same for every backend opened on
// one device with one configuration, so a resume compares it with the
// checkpoint's; where the kernels came from, which differs between the
// first open and later ones, is [Backend.Kernels].
func (b *Backend) Device() string {
	mode := "fp32"
	if b.opts.TF32 {
		mode = "tf32"
	}
	return fmt.Sprintf("%s, %d SMs; driver CUDA %s, cuBLAS %d, NVRTC %d.%d; matmul %s",
		b.info.String(), b.sms, versionString(b.probe.driverVersion), b.probe.cublas.major,
		b.nvrtc[0], b.nvrtc[1], mode)
}

// Kernels says where the backend's kernels came from: "compiled by NVRTC,
// cached in PATH" (or "compiled by NVRTC (not cached: why)"), "cached in
// PATH" or "compiled earlier in this process", after "PTX for
// compute_XY, compiled by the driver at load (why): " where they are PTX
// (see [Options.PTX]). Every origin holds the same code, compiled from
// the same source for the same target by the same NVRTC (the cache
// file's name is a hash of all of them).
func (b *Backend) Kernels() string { return b.kernelOrigin }

// TF32 reports whether matrix products run in TF32 mode.
func (b *Backend) TF32() bool { return b.opts.TF32 }

// Supports reports true for every op of [backend.AllOps] and for the
// optional [backend.OpMatMulBF16] (the backend stores bfloat16 tensors),
// [backend.OpAttention] and [backend.OpAttentionGrad] (fused attention,
// attention.go).
func (b *Backend) Supports(op backend.Op) bool {
	switch op {
	case backend.OpMatMulBF16, backend.OpAttention, backend.OpAttentionGrad:
		return true
	}
	return slices.Contains(backend.AllOps, op)
}

// enter locks the goroutine to its OS thread and makes the backend's
// context current there; leave undoes the lock. Every entry point that
// calls the libraries runs between the two. See the package documentation
// for why this, rather than a dedicated thread.
func (b *Backend) enter() error {
	runtime.LockOSThread()
	return b.api.cu("cuCtxSetCurrent", call(b.api.cuCtxSetCurrent, b.ctx))
}

func (b *Backend) leave() { runtime.UnlockOSThread() }

var errClosed = fmt.Errorf("backend is closed")

// skip reports whether an op must do nothing: an error is already
// recorded, or the backend is closed (which records one).
func (b *Backend) skip(op backend.Op) bool {
	if b.closed {
		b.Record(&backend.OpError{Op: string(op), Err: errClosed})
		return true
	}
	return b.Failed()
}

// run executes f between enter and leave and records its error as an
// *backend.OpError naming op and the shapes of all.
func (b *Backend) run(op backend.Op, all []backend.Tensor, f func() error) {
	err := b.enter()
	if err == nil {
		err = f()
	}
	b.leave()
	if err != nil {
		b.Record(opError(op, all, err))
	}
}

func opError(op backend.Op, all []backend.Tensor, err error) error {
	shapes := make([]backend.Shape, len(all))
	for i, t := range all {
		shapes[i] = t.Shape()
	}
	return &backend.OpError{Op: string(op), Shapes: shapes, Err: err}
}

// Sync waits for the stream and returns, then clears, the first error
// recorded since the previous Sync (a failure of the wait included).
func (b *Backend) Sync() error {
	if b.closed {
		b.Record(&backend.OpError{Op: "sync", Err: errClosed})
		return b.Take()
	}
	b.syncStream()
	return b.Take()
}

// syncStream waits for the stream, recording a failure.
func (b *Backend) syncStream() {
	err := b.enter()
	if err == nil {
		err = b.api.cu("cuStreamSynchronize", call(b.api.cuStreamSynchronize, b.stream))
	}
	b.leave()
	if err != nil {
		b.Record(&backend.OpError{Op: "sync", Err: err})
	}
}

// Close waits for pending work, frees every buffer (tensors of the backend
// must not be used afterwards), destroys the cuBLAS handle, the module and
// the stream and releases the primary context. It returns the first error
// still recorded or met while closing.
func (b *Backend) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	runtime.LockOSThread()
	err := b.teardown()
	runtime.UnlockOSThread()
	if rec := b.Take(); rec != nil {
		return rec
	}
	return err
}

// MemoryStats describes the device-memory pool.
type MemoryStats struct {
	// InUse is the bytes of blocks handed out (live tensors and
	// temporaries); Cached the bytes of freed blocks kept for reuse.
	InUse, Cached int64
	// DeviceAllocs and DeviceFrees count cuMemAlloc and cuMemFree calls
	// since the backend opened: in a steady-state training loop
	// DeviceAllocs stops growing.
	DeviceAllocs, DeviceFrees int
}

// MemoryStats returns the pool's counters.
func (b *Backend) MemoryStats() MemoryStats {
	s := b.pool.Stats()
	return MemoryStats{InUse: s.InUse, Cached: s.Cached, DeviceAllocs: s.Allocs, DeviceFrees: s.Frees}
}
