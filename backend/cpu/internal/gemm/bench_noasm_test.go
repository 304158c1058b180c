//go:build noasm

package gemm

// gonumName names the baseline in benchmark metrics: in a build with the
// noasm tag gonum's Sgemm is its pure Go, the like-for-like baseline for
// this package's pure-Go kernel (the only one such a build has).
const gonumName = "gonum-noasm"
