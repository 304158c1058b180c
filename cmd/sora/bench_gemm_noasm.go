//go:build noasm

package main

// gonumBaseline names gonum's Sgemm as the "bench gemm" baseline. The
// noasm tag builds gonum without its assembly (and the CPU backend's
// matrix multiply without its own), so the baseline is gonum's pure Go:
// the fair comparison for the CPU backend's portable path, e.g.
//
//	SORA_CPU_PORTABLE=1 go run -tags noasm ./cmd/sora bench gemm --json
const gonumBaseline = "gonum-noasm"
