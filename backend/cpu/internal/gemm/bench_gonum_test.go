//go:build !noasm

package gemm

// gonumName names the baseline in benchmark metrics: gonum's Sgemm as
// normally built, with its SSE assembly on amd64.
const gonumName = "gonum"
