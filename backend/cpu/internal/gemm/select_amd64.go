//go:build !noasm

package gemm

import "github.com/klauspost/cpuid/v2"

// availableKernels lists the micro-kernels this CPU can run, best first.
// cpuid also checks that the OS saves the YMM (and ZMM) registers.
func availableKernels() []*kernel {
	var ks []*kernel
	if cpuid.CPU.Supports(cpuid.AVX512F) {
		ks = append(ks, avx512Kernel)
	}
	if cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3) {
		ks = append(ks, avx2Kernel)
	}
	// Every amd64 CPU has SSE2.
	return append(ks, sseKernel, goKernel)
}
