//go:build !noasm

package gemm

// The dot-product kernels in dot_amd64.s; see there for what they compute.
// Only the checked wrapper dotTile calls them.
//
//go:noescape
func sdot4x4z(k int, a *float32, lda int, bt *float32, ldbt int, out *float32)

//go:noescape
func sdot2x4y(k int, a *float32, lda int, bt *float32, ldbt int, out *float32)

// dot4x4z and dot2x4y check the operands before handing raw pointers to
// the assembly.
func dot4x4z(k int, a []float32, lda int, bt []float32, ldbt int, out []float32) {
	_ = a[3*lda+k-1]
	_ = bt[3*ldbt+k-1]
	_ = out[15]
	sdot4x4z(k, &a[0], lda, &bt[0], ldbt, &out[0])
}

func dot2x4y(k int, a []float32, lda int, bt []float32, ldbt int, out []float32) {
	_ = a[lda+k-1]
	_ = bt[3*ldbt+k-1]
	_ = out[7]
	sdot2x4y(k, &a[0], lda, &bt[0], ldbt, &out[0])
}
