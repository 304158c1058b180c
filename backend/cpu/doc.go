// Package cpu is the CPU backend of SORA for Go: every op of
// [backend.Backend] in Go, run on the calling goroutine and spread over
// worker goroutines when an op is big enough to pay for them. The matrix
// multiply (package internal/gemm) is blocked and packed, with assembly
// micro-kernels on amd64 for AVX-512, AVX2 with FMA, and SSE2 (every amd64
// CPU), chosen at run time, and a pure-Go kernel elsewhere; the element-wise and
// row kernels (package internal/vec: binary ops, unary functions and their
// derivatives, reductions, softmax, the norms, AdamW) have AVX2/FMA and
// AVX-512 assembly, chosen at run time, and pure-Go versions for other
// CPUs.
//
// The optional fused attention ops ([backend.OpAttention],
// [backend.OpAttentionGrad]) are built on those two: blocks of up to 64
// score rows (consecutive query positions times the query heads of one
// key/value group) whose scores, over only the keys some row of the block
// sees, live in per-worker scratch, never the whole [queries, keys]
// matrix; an exact softmax per row (float32, exponentials summed in
// float64) and FlashAttention's backward from the saved log-sum-exp. A
// causal mask, a sliding window and packed sequences
// ([backend.AttentionParams] Segments: each query sees only its own
// document's keys) narrow every row to an interval of keys, so a causal
// attention does about half the work of the unfused one, and a packed
// block multiplies only its own document's keys. Once warm, a
// single-threaded call allocates nothing.
//
// Programs select it by name after a blank import:
//
//	import _ "github.com/sora-go/sora/backend/cpu"
//	be, err := backend.Open("cpu")
//
// or, as a library, construct one directly with [New].
//
// # Environment
//
// [backend.Open] reads six variables; [New] takes all but
// SORA_CPU_GEMM_KERNEL as [Options]:
//
//   - SORA_CPU_PORTABLE=1 forces the portable pure-Go kernels even on CPUs
//     that have the SIMD features the fast kernels use. CI runs the
//     conformance suite once with it set so that both paths stay correct.
//   - SORA_CPU_THREADS=N caps the goroutines one op uses at N (default
//     GOMAXPROCS). It changes how fast ops run, never what they compute
//     (see Execution).
//   - SORA_CPU_GEMM_KERNEL=avx512|avx2|sse|neon|go picks the
//     matrix-multiply micro-kernel (neon on arm64, the others but go on
//     amd64), to compare them in benchmarks; one the CPU cannot run is
//     passed over for the fastest it can. A build made with
//     GOEXPERIMENT=simd on amd64 adds gosimd512 and gosimd, kernels
//     written in Go with simd/archsimd rather than assembly. CI runs the
//     conformance suite with sse and gosimd too, and on arm64 under qemu.
//   - SORA_CPU_ROW_KERNELS=avx512|avx2|neon|go picks the row and
//     element-wise kernels' set in the same way ([Options.RowKernels]),
//     so that an AVX-512 machine can time and test the AVX2 set that CPUs
//     without AVX-512 run; CI runs the conformance suite with avx2 too.
//   - SORA_CPU_BLAS=off|accelerate|openblas|blis|mkl|FILE hands MatMul
//     to a system BLAS (see below); off, the default, keeps this
//     package's kernels.
//   - SORA_CPU_MEMORY_LIMIT=SIZE|off caps the bytes the backend's tensors
//     and scratch may hold (SIZE as GOMEMLIMIT takes it: 12GiB, 512MiB):
//     an allocation past it fails as out of memory, which the program
//     can report (sora finetune then says which settings lower the
//     peak), where running the host out of memory gets the process
//     killed without a word. Unset, the limit is the memory and swap the
//     host has free when the backend opens ([HostMemoryLimit]); off
//     removes it.
//
// A build with -tags noasm leaves all assembly out, as on architectures
// without it.
//
// An unparsable value makes Open fail with an error naming the variable.
//
// # System BLAS
//
// With SORA_CPU_BLAS (or [Options.BLAS], from [LoadBLAS]) MatMul calls
// the cblas_sgemm of a BLAS loaded at run time with purego, without cgo,
// once per matrix of a batch: "accelerate" is Apple's Accelerate
// framework on macOS (whose sgemm runs on the M-series matrix units),
// "openblas", "blis" and "mkl" are searched for under their usual file
// names, and anything else that looks like a file (a path, or a name with
// .so or .dylib in it) is loaded as given. A library that does not load,
// lacks cblas_sgemm or fails a check on a few small exact products makes
// Open fail with an error naming the variable, the value and each file
// tried. The device line names the library, e.g. "matmul blas
// libopenblas.so.0 (OpenBLAS 0.3.21 ... Haswell MAX_THREADS=64, 2
// threads)", so "sora backends" and every benchmark show it.
//
// It is off by default on every system. On Linux this package's kernels
// were faster than OpenBLAS on the machines measured (BenchmarkMatMulBLAS
// compares the two in one run). On macOS Accelerate should be the better
// choice, but it has not been run: no Mac was available, and only
// OpenBLAS and BLIS (linux/amd64, and OpenBLAS on linux/arm64 under qemu)
// have gone through the same calls and the conformance suite. Mac users
// who set SORA_CPU_BLAS=accelerate are the first to run it.
//
// The library runs its own threads, which SORA_CPU_THREADS does not
// reach: set OPENBLAS_NUM_THREADS, BLIS_NUM_THREADS (BLIS defaults to one
// thread), MKL_NUM_THREADS or VECLIB_MAXIMUM_THREADS (Accelerate) before
// the program starts. Each call costs about a microsecond and a few small
// allocations in purego on top of the library's own work, which matters
// only for tiny products. Loading needs purego's dlopen without cgo, so
// it works on Linux and macOS for amd64 and arm64; elsewhere a value
// other than off is an error. Importing this package links purego, which
// makes Linux binaries dynamically linked against the C library; a build
// with -tags noblas leaves it out (and the BLAS with it).
//
// # Execution
//
// Ops run synchronously: when an op returns its result is in place, and
// [Backend.Sync] only reports the first error recorded since the previous
// Sync. Arguments are validated with the shared Check functions of package
// backend, so this backend accepts and rejects exactly the calls the others
// do. Sums, reductions, normalisation statistics and the sums over rows of
// parameter gradients accumulate in float64; the norm and softmax steps
// that combine a row with its statistics compute in float32 (with a
// subtracted statistic split into two float32s, so that x − mean keeps its
// digits), and AdamW in float64, rounding once. Exp, Log, Tanh, Sigmoid,
// SiLU, GELU (exact, erf-based) and GELUTanh (GELU's tanh approximation,
// one fused pass, its exponent's cubic argument reduced in float32 with
// its roundings compensated) and their derivatives are float32 approximations good to a few ulps (at most 6;
// package vec's accuracy tests state each bound and check it against
// float64 over dense sweeps), the same algorithm on both paths.
//
// Results do not depend on the number of threads. Ops that sum over rows
// or blocks (SumColumns, the norms' parameter gradients, attention's key
// and value gradients) cut their sums into pieces by the shapes alone and
// add the pieces' partial sums in a fixed order, whichever goroutine
// computed them; every other op computes each output element on one
// goroutine, in an order the shapes fix, the matrix multiply included
// (package gemm shares the rows and columns of C among threads, never k).
// A run thus gives the same bits with SORA_CPU_THREADS=1 as on all the
// cores of a server with the same processor, and can be resumed on
// either, which is why [Backend.Device] leaves the thread cap out
// ([Backend.Threads] reports it). TestThreadIndependence checks every op
// at 1, 2, 3, 5 and 8 threads, bit for bit.
//
// # Bfloat16 weights
//
// The backend supports the optional op [backend.OpMatMulBF16]: Alloc
// takes [backend.BFloat16] (2 bytes an element, as BytesInUse counts
// them), Upload rounds float32 into it to nearest even (NaN stays NaN,
// values past the largest bfloat16 become infinite), Download and Copy
// into float32 widen it exactly, and MatMul takes it as B. The matrix
// multiply widens B where it reads it, into its packed panels (AVX2
// packing routines on amd64) or, for one token times Wᵀ, in row-dot
// kernels that load bfloat16 directly (AVX-512, AVX2, SSE2 and NEON), so
// no float32 copy of a weight is ever made and a warmed-up MatMul
// allocates nothing. A product of a few rows (at most two of the
// micro-kernel's row panels) by a B not transposed is the one case
// slower than with a float32 B: a float32 B is read in place there,
// while a bfloat16 one is widened into packed panels first.
// BenchmarkMatMulBF16 times it against the same product with a float32
// B. Every other op refuses a bfloat16 tensor, as the shared checks say.
//
// Element-wise ops whose operands and output together exceed the
// last-level cache write their output with non-temporal stores, which
// skip reading the destination first and leave the cache to the inputs.
package cpu
