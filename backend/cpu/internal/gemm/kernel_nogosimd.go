//go:build !(goexperiment.simd && amd64)

package gemm

// goSIMDKernels lists the go-simd kernels (see kernel_gosimd_amd64.go):
// none in a build without GOEXPERIMENT=simd or off amd64.
func goSIMDKernels() []*kernel { return nil }

// goSIMDNames is the go-simd kernels' short names: none in such a build.
var goSIMDNames []string
