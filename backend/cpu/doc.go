// Package cpu is the CPU backend of SORA for Go: every op of
// [backend.Backend] in Go, run on the calling goroutine and spread over
// worker goroutines when an op is big enough to pay for them. The matrix
// multiply (package internal/gemm) is blocked and packed, with an assembly
// micro-kernel on amd64 CPUs that have AVX2 and FMA; every other kernel is
// plain Go for now.
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
// [backend.Open] reads two variables; [New] takes the same settings as
// [Options]:
//
//   - SORA_CPU_PORTABLE=1 forces the portable pure-Go kernels even on CPUs
//     that have the SIMD features the fast kernels use (so far those of the
//     matrix multiply). CI runs the conformance suite once with it set so
//     that both paths stay correct.
//   - SORA_CPU_THREADS=N caps the goroutines one op uses at N (default
//     GOMAXPROCS).
//
// An unparsable value makes Open fail with an error naming the variable.
//
// # Execution
//
// Ops run synchronously: when an op returns its result is in place, and
// [Backend.Sync] only reports the first error recorded since the previous
// Sync. Arguments are validated with the shared Check functions of package
// backend, so this backend accepts and rejects exactly the calls the others
// do. Sums, reductions and normalisation statistics accumulate in float64,
// and transcendental functions are evaluated in float64 and rounded once.
package cpu
