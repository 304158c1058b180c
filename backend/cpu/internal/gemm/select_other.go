//go:build !(amd64 || arm64) || noasm

package gemm

// availableKernels lists the micro-kernels this CPU can run, best first:
// only the pure-Go one off amd64 and arm64, and in a build with the noasm
// tag, which (as in gonum) leaves out all assembly.
func availableKernels() []*kernel { return []*kernel{goKernel} }
