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
// Programs select it by name after a blank import:
//
//	import _ "github.com/sora-go/sora/backend/cpu"
//	be, err := backend.Open("cpu")
//
// or, as a library, construct one directly with [New].
//
// # Environment
//
// [backend.Open] reads three variables; [New] takes the first two as
// [Options]:
//
//   - SORA_CPU_PORTABLE=1 forces the portable pure-Go kernels even on CPUs
//     that have the SIMD features the fast kernels use. CI runs the
//     conformance suite once with it set so that both paths stay correct.
//   - SORA_CPU_THREADS=N caps the goroutines one op uses at N (default
//     GOMAXPROCS).
//   - SORA_CPU_GEMM_KERNEL=avx512|avx2|sse|neon|go picks the
//     matrix-multiply micro-kernel (neon on arm64, the others but go on
//     amd64), to compare them in benchmarks; one the CPU cannot run is
//     passed over for the fastest it can. CI runs the conformance suite
//     with sse too, and on arm64 under qemu.
//
// A build with -tags noasm leaves all assembly out, as on architectures
// without it.
//
// An unparsable value makes Open fail with an error naming the variable.
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
// Element-wise ops whose operands and output together exceed the
// last-level cache write their output with non-temporal stores, which
// skip reading the destination first and leave the cache to the inputs.
package cpu
