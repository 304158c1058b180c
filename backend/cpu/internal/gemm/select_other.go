//go:build !(amd64 || arm64) || noasm

package gemm

// availableKernels lists the micro-kernels this CPU can run, best first:
// only the pure-Go ones off amd64 and arm64, and in a build with the noasm
// tag, which (as in gonum) leaves out all assembly. Those are the scalar
// kernel and, on amd64 in a build with GOEXPERIMENT=simd, the go-simd
// kernels the CPU runs, which are Go source too and come first.
func availableKernels() []*kernel { return append(goSIMDKernels(), goKernel) }
