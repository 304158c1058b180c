package gemm

import "github.com/klauspost/cpuid/v2"

// hasAVX2FMA reports whether the assembly kernel can run here; cpuid also
// checks that the OS saves the YMM registers.
var hasAVX2FMA = cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3)

func selectKernel(portable bool) *kernel {
	if !portable && hasAVX2FMA {
		return avx2Kernel
	}
	return goKernel
}
