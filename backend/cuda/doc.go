// Package cuda is the NVIDIA GPU backend of SORA for Go. It registers
// itself with the backend registry as "cuda".
//
// The package uses no cgo: it finds the NVIDIA libraries at run time and
// loads them with github.com/ebitengine/purego, so a binary built with
// CGO_ENABLED=0 runs both on machines without a GPU (where the backend
// reports itself unavailable) and on GPU servers. It needs
//
//   - libcuda.so.1, the driver API, installed with the NVIDIA driver;
//   - libcublas.so.13 or libcublas.so.12, with the libcublasLt of the same
//     major version, for matrix products;
//   - libnvrtc.so.13 or libnvrtc.so.12, with its libnvrtc-builtins, to
//     compile the kernels at run time.
//
// A CUDA 13 library is used only when the driver supports CUDA 13 and the
// GPU is one CUDA 13 supports (compute capability 7.5 or later: CUDA 13
// dropped Maxwell, Pascal and Volta), so that such a GPU takes the CUDA 12
// libraries where both are installed; a GPU older than CUDA 12 supports
// (below 5.0) is refused with that reason.
//
// On Windows the same libraries are nvcuda.dll (installed with the driver
// in System32), cublas64_13.dll or cublas64_12.dll with cublasLt64_13.dll
// or cublasLt64_12.dll, and nvrtc64_130_0.dll or nvrtc64_120_0.dll with
// nvrtc-builtins64_*.dll; they are loaded with LoadLibraryExW and
// GetProcAddress and called through purego as on Linux. NVIDIA ships CUDA
// for Linux and Windows only: on macOS and other systems the backend
// reports itself unavailable for that reason without searching, and on
// systems other than Linux, macOS and Windows the package does not use
// purego at all, so that it builds with CGO_ENABLED=0 everywhere (purego
// would need cgo, or on FreeBSD a special -gcflags, there).
//
// # Where the libraries are looked for
//
// On Linux, in this order, the first folder holding a library that loads
// wins:
//
//  1. $SORA_CUDA_PATH, a list of folders separated by ':' (each folder and
//     its lib64 and lib subfolders);
//  2. $CUDA_HOME and $CUDA_PATH (their lib64 and lib subfolders);
//  3. the folders of $LD_LIBRARY_PATH;
//  4. /usr/local/cuda/lib64;
//  5. the system library folders (/usr/lib/<triplet>, /lib/<triplet>,
//     /usr/lib64, /lib64, /usr/lib, /usr/lib/wsl/lib, /usr/local/nvidia/lib64,
//     /usr/local/nvidia/lib);
//  6. the nvidia/*/lib folders that pip-installed CUDA wheels create in
//     Python environments, found without running Python: $VIRTUAL_ENV,
//     $CONDA_PREFIX, ~/.local/lib/python3*/site-packages,
//     /usr/local/lib/python3*/{dist,site}-packages,
//     /usr/lib/python3*/{dist,site}-packages and ~/.pyenv/versions/*, newest
//     Python first; then $CONDA_PREFIX/lib, where conda's CUDA packages go;
//  7. the dynamic linker's own search (ld.so.cache) by library name.
//
// On Windows, in this order:
//
//  1. %SORA_CUDA_PATH%, a list of folders separated by ';' (each folder and
//     its bin\x64 and bin subfolders; bin\arm64 on ARM);
//  2. %CUDA_HOME% and %CUDA_PATH% (their bin\x64, where CUDA 13 puts its
//     DLLs, and bin, where CUDA 12 does);
//  3. the folders of %PATH% that hold one of the DLLs above;
//  4. the toolkits under %ProgramFiles%\NVIDIA GPU Computing Toolkit\CUDA,
//     newest first (bin\x64 and bin of each);
//  5. %SystemRoot%\System32;
//  6. the nvidia\*\bin folders (and their x86_64 or arm64 subfolders) of
//     pip-installed CUDA wheels in %VIRTUAL_ENV%, %CONDA_PREFIX%, the
//     per-user (%APPDATA%\Python) and installed (%LOCALAPPDATA%\Programs\Python,
//     %ProgramFiles%\Python3*) Pythons; then %CONDA_PREFIX%\Library\bin;
//  7. LoadLibrary's own search by DLL name.
//
// A DLL loaded from a folder has that folder searched first for the DLLs it
// imports (LOAD_WITH_ALTERED_SEARCH_PATH), and cublasLt and the NVRTC
// builtins are loaded first by full path, as on Linux.
//
// When something is missing, [backend.Open] and "sora backends" answer a
// *[backend.UnavailableError] that names what is missing (a library, a
// symbol in it, a device) and lists the folders searched.
//
// # Execution
//
// A [Backend] works on device 0 through its primary context (retained
// with cuDevicePrimaryCtxRetain, the context the CUDA runtime and so
// cuBLAS use too), with one non-blocking stream of its own and one cuBLAS
// handle bound to that stream. Ops validate their arguments with package
// backend's Check functions, enqueue kernels or cuBLAS calls on the stream
// and return; Sync (cuStreamSynchronize) and Download wait. Every driver,
// NVRTC and cuBLAS status is checked; a failure becomes an *[Error] that
// names the call and carries the library's name and text for the status
// (cuGetErrorName/cuGetErrorString, nvrtcGetErrorString, the cuBLAS status
// names and cublasGetStatusString), recorded under the op as an
// *backend.OpError (the sticky-error convention of package backend).
//
// Threads: the driver's current context is a property of the OS thread,
// and goroutines move between threads. Each entry point therefore locks
// its goroutine to its thread (runtime.LockOSThread), makes the primary
// context current (cuCtxSetCurrent, a cheap thread-local store in the
// driver) and unlocks when it returns. The alternative, one locked
// goroutine that makes every driver call on behalf of the others, would
// add a channel round trip and a goroutine switch to every op, and ops are
// issued by a single caller anyway (a Backend is not safe for concurrent
// use), so there is no contention for such a thread to serialise.
//
// Memory: device buffers come from a caching pool with size classes
// (powers of two from 512 bytes to 1 MiB, then whole MiB). Free returns a
// block to the pool at once; it is safe to hand it out again before the
// stream has finished with it because every use of device memory is
// ordered on the one stream. Blocks go back to the device (cuMemFree) only
// on Close, or when a call fails for lack of memory: cuMemAlloc, a kernel
// launch (CUDA_ERROR_OUT_OF_MEMORY: lazily loaded code, local memory) or
// cuBLAS (CUBLAS_STATUS_ALLOC_FAILED: its workspace, kernels it loads for
// a new shape). The backend then synchronises, releases the cache and
// tries the call once more, so a steady-state training loop calls no
// cuMemAlloc ([Backend.MemoryStats] counts the calls) and still leaves
// the libraries room when memory runs short. A failure that remains is an
// [*Error] naming the library's status, and it matches
// [backend.ErrOutOfMemory] (errors.Is), as NVRTC_ERROR_OUT_OF_MEMORY does.
// Scratch memory of ops (index uploads, partial sums) comes from the same
// pool. Upload and Download copy from and to pageable
// Go memory with cuMemcpyHtoDAsync/cuMemcpyDtoHAsync on the stream,
// pinning the Go memory (runtime.Pinner) for the call; the driver stages a
// pageable upload before the call returns, so the caller's slice may be
// reused at once, and Download waits for its copy.
//
// # Kernels
//
// Every op other than MatMul runs a kernel of kernels.cu, CUDA C embedded
// in the package (go:embed). It is compiled once per process by NVRTC to
// a cubin for exactly the device's compute capability
// (--gpu-architecture=sm_XY, no fast-math flags) and cached on disk under
// os.UserCacheDir()/sora/cuda (SORA_CUDA_CACHE names another folder, or
// "off"), in a file named by the SHA-256 of the source, the architecture,
// the options, the driver version and the NVRTC version, written through a
// temporary file and a rename. Where NVRTC does not compile for the
// device (an NVRTC older than the GPU: nvrtcGetSupportedArchs lacks it),
// the kernels are compiled to PTX for the newest architecture it does
// compile for at or below the device's (--gpu-architecture=compute_XY),
// which the driver compiles for the device as it loads the module, and
// cached as kernels-compute_XY-….ptx; a GPU older than every architecture
// NVRTC knows (CUDA 13's NVRTC dropped those below 7.5) is an error naming
// them. SORA_CUDA_PTX=1 ([Options.PTX]) takes the PTX path on any GPU, so
// that it can be tested. The driver compiles PTX only from an NVRTC no
// newer than itself (CUDA_ERROR_UNSUPPORTED_PTX_VERSION, which the error
// then explains), whereas it loads a newer NVRTC's cubin of the same CUDA
// major version. A cached file that the driver rejects is
// compiled afresh and replaced. [Backend.Kernels] says where an open
// backend's kernels came from; [Backend.Device] leaves that out, since
// every origin holds the same code. Kernels are launched with cuLaunchKernel;
// their arguments are packed into a block owned by the backend (pinned for
// the call), checked against each kernel's declared parameter list (see
// launch.go).
//
// Numerics: row kernels sum a thread's few terms in float and everything
// beyond in double (kernels.cu says where and why), row reductions use warp
// shuffles and a fixed combination order, column sums (bias, norm-weight
// gradients) go through partial rows and a second pass instead of atomics,
// and ScatterAdd groups equal ids on the host and adds each table row's
// contributions in order, so every op is deterministic run to run on a
// device. The norm-weight gradients of rows of up to 4096 are partitioned
// by the device's multiprocessor count and the kernel's resident blocks
// (which depend on the compiler's register count), so their last bits can
// differ between GPUs and between CUDA versions. Element-wise functions use the single-precision
// device math library (GELU is the exact erf form; GELUTanh, its tanh
// approximation, is x/(1 + e^{−y}) with y formed in float as a sum of two
// floats, its roundings compensated with fused multiply-adds, and expf
// corrected for the second, so that the left tail keeps its relative
// precision); AdamW and RoPE's angles are computed in double.
//
// # Matrix products
//
// MatMul calls cublasSgemm_v2, or cublasSgemmStridedBatched for batches
// (a shared operand gets stride 0), with alpha and beta passed by host
// pointer (CUBLAS_POINTER_MODE_HOST). Row-major C = op(A)·op(B) is issued
// as the column-major product Cᵀ = op(B)ᵀ·op(A)ᵀ, which reads the row-major
// buffers as they are. The math mode is CUBLAS_DEFAULT_MATH, full float32,
// so the conformance thresholds hold; SORA_CUDA_TF32=1 (or [Options].TF32)
// selects CUBLAS_TF32_TENSOR_OP_MATH, whose error bound is
// [TF32MatMulNMSE]. [Backend.VendorMatMul] and [Backend.DeviceCopy] expose
// the bare cuBLAS call and the driver's device-to-device copy as baselines
// for benchmarks.
//
// # bfloat16
//
// The backend supports the optional op [backend.OpMatMulBF16]: Alloc of
// [backend.BFloat16] takes 2 bytes an element from the pool (frozen
// weights at half the memory). Upload rounds float32 to bfloat16 on the
// host (nearest, ties to even; NaN stays NaN; overflow to infinity, as the
// CPU backend rounds) and copies the 2-byte values; Download copies them
// back and widens them exactly on the host; Copy from a bfloat16 tensor
// into a float32 one (or adding to it) is one launch of the widen_bf16
// kernel (a 16-bit shift). Gather from a bfloat16 table (a frozen
// embedding) is one launch of gather_bf16, which reads the rows it copies
// as they are stored and widens each element; no float32 copy of the
// table is made. MatMul with a bfloat16 B widens B into a
// float32 scratch block of the pool (4 bytes an element of B, for the
// duration of the call; the pool keeps the block cached for the next
// product of that size) and then runs the float32 cuBLAS path above, so
// its results equal those of a float32 B holding the widened values. A
// B matrix of more than 16 Mi elements (64 MiB in float32; a tied head
// that is a large vocabulary's embedding) is widened a slab of rows at a
// time into a scratch of that size, one GEMM per slab: transposed (the
// forward x·Wᵀ), each slab writes its own columns of C, as one GEMM
// would; not transposed (the backward dy·W), the slabs split the inner
// dimension and their products are added, a rounding per slab more;
// [Backend.VendorMatMul] stays float32 only. This path passes the
// conformance suite's matmul_bf16 cases and the package's own tests on the
// emulated device and on an H200 (TestGPUBF16ScratchReuse included);
// nothing is claimed about its speed (the widening costs an extra pass
// over B per product).
//
// # Fused attention
//
// The backend supports the optional ops [backend.OpAttention] and
// [backend.OpAttentionGrad] with float32 kernels in the manner of
// FlashAttention-2 on the CUDA cores (attention.go, kernels.cu). The
// forward, attn_fwd, gives each block 32 queries of one head and walks the
// keys in tiles of 64 through shared memory with a running maximum and sum
// per query, skipping the tiles a causal mask or sliding window hides
// entirely, and writes out and the log-sum-exp; the [queries, keys]
// scores are never stored. The backward recomputes the probabilities from
// the log-sum-exp: attn_delta forms δ = Σ dout⊙out per query (in a scratch
// block of the pool), attn_dkdv gives each block 32 keys of one key/value
// head and accumulates dk and dv in registers over the group's query heads
// and the query tiles that see them, attn_dq gives each block 32 queries
// and accumulates dq; no atomics, so results repeat bit for bit. Heads of
// any size work: each kernel has variants that hold 64, 128 or 256
// columns of the head per pass, and a wider head takes several passes,
// each recomputing the scores.
//
// Packed sequences ([backend.AttentionParams].Segments) are honoured: the
// host turns the document numbers into each key's document bounds with
// [backend.SegmentBounds] (2·batch·keys int32, staged in a host buffer the
// backend reuses) and copies them on the stream into a scratch block of
// the pool, with no synchronisation; the kernels take them as one more
// pointer, null without packing. Each block puts the interval of keys
// each of its queries sees (in attn_dkdv, of queries that see each of its
// keys) in shared memory, masks with it, and visits only the tiles some
// row reaches, so the tiles of other documents are skipped, not just
// masked. Without segments the kernels visit the same tiles in the same
// order as before and give the same bits (checked on the emulated
// device).
//
// The kernels pass on the emulated device (against a float64 reference in
// this package and the conformance suite's attention cases, packed
// sequences included in both; and, bit for bit, with grids of one and
// three blocks striding over every tile, as only grids beyond the
// hardware's limit otherwise make them) and on an H200, where
// TestGPUAttention also timed them against the MatMul and Softmax
// composition at batch 4, 16 heads, 2048 causal positions, head size 64:
// the forward at 1.05× the composition's time and the backward at 2.6×,
// holding 0.5 MiB of tensors where the composition holds 2.3 GiB; packed
// attention over documents of 256 took 0.2× the time of attention over the
// whole sequences. So the fused kernels save memory, not time, at that
// size: the backward's dq and dk/dv passes are the place to make them
// faster. The test also reports each attention kernel's registers and
// local memory as the driver gives them, and fails where ptxas spilled
// the accumulators, which the PTX check below cannot see.
//
// # Status and verification
//
// The backend has run on an NVIDIA H200 (CUDA 13.0; docs/cuda-h200.md in
// the repository): the conformance suite and the GPU tests pass there,
// MatMul runs at cuBLAS's rate, and a fine-tune follows the CPU backend's
// losses. scripts/gpu-check.sh repeats those checks on any GPU. Without a
// GPU, which is how CI runs, what is verified is:
//
//   - the library search and the error messages for missing libraries and
//     symbols, against test doubles built with the C compiler;
//   - the kernel source (widen_bf16 and the attention kernels included)
//     compiles to PTX for sm_80 and sm_90 with clang (when installed),
//     every kernel's parameters in the PTX match the types and sizes the
//     Go side packs, every kernel's static shared memory fits 48 KiB, and
//     the attention kernels keep their accumulators in registers (no
//     local memory);
//   - the whole conformance suite passes on an emulated device: a test
//     double of libcuda that runs kernels.cu itself, compiled for the host
//     against an emulation of CUDA threads as fibers (barriers and warp
//     shuffles included, warps run in varying order between barriers, a
//     barrier or shuffle that threads reach from different places in
//     divergent code refused), with
//     a per-thread current context that refuses calls made without it, and
//     doubles of cuBLAS (column-major SGEMM on the host) and NVRTC;
//   - host logic: argument packing, the pool's size classes and steady
//     state, the row-major to column-major GEMM mapping (against a
//     simulation of cuBLAS's semantics), launch geometry, the cache key and
//     files, the TF32 bound (on simulated TF32 rounding).
//
// Not verified without a GPU: NVRTC's acceptance of the source (clang is
// close but not the same compiler), real cuBLAS, kernel speed, and races
// that only real concurrency exposes; the H200 run covers those for
// compute capability 9.0 and CUDA 13.
package cuda
