//go:build !noasm

package gemm

import "github.com/klauspost/cpuid/v2"

// availableKernels lists the micro-kernels this CPU can run, best first.
// cpuid also checks that the OS saves the YMM (and ZMM) registers.
func availableKernels() []*kernel {
	return kernelsFor(cpuid.CPU.Supports(cpuid.AVX512F), cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3), goSIMDKernels())
}

// kernelsFor lists the micro-kernels for a CPU with the given features,
// best first. Every amd64 CPU has SSE2, so the SSE kernel is always there:
// a CPU without AVX2 and FMA runs it rather than the pure-Go one. The
// go-simd kernels this CPU runs (goSIMD; only in a build with
// GOEXPERIMENT=simd) come after it, so that they are never the default
// over assembly, and before the scalar pure-Go one.
func kernelsFor(avx512, avx2fma bool, goSIMD []*kernel) []*kernel {
	var ks []*kernel
	if avx512 {
		ks = append(ks, avx512Kernel)
	}
	if avx2fma {
		ks = append(ks, avx2Kernel)
	}
	ks = append(ks, sseKernel)
	ks = append(ks, goSIMD...)
	return append(ks, goKernel)
}
