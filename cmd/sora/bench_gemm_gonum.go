//go:build !noasm

package main

// gonumBaseline names gonum's Sgemm as the "bench gemm" baseline. In a
// normal build gonum runs its SSE assembly for the inner loops on amd64;
// bench_gemm_noasm.go names the pure-Go build.
const gonumBaseline = "gonum"
