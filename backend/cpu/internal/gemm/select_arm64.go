//go:build !noasm

package gemm

// availableKernels lists the micro-kernels this CPU can run, best first.
// Advanced SIMD (NEON) is mandatory in ARMv8-A, so every arm64 CPU gets
// the NEON kernel without a feature check.
func availableKernels() []*kernel { return []*kernel{neonKernel, goKernel} }
