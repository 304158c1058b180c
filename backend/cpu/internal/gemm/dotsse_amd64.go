//go:build !noasm

package gemm

// The SSE dot-product kernels in dotsse_amd64.s; see there for what they
// compute. Only the checked wrappers below call them.
//
//go:noescape
func sdot1x8s(k int, a *float32, bt *float32, ldbt int, out *float32)

//go:noescape
func sdot2x4s(k int, a *float32, lda int, bt *float32, ldbt int, out *float32)

// rowDot8s and dot2x4s check the operands before handing raw pointers to
// the assembly.
func rowDot8s(k int, a, bt []float32, ldbt int, out []float32) {
	_ = a[k-1]
	_ = bt[7*ldbt+k-1]
	_ = out[7]
	sdot1x8s(k, &a[0], &bt[0], ldbt, &out[0])
}

func dot2x4s(k int, a []float32, lda int, bt []float32, ldbt int, out []float32) {
	_ = a[lda+k-1]
	_ = bt[3*ldbt+k-1]
	_ = out[7]
	sdot2x4s(k, &a[0], lda, &bt[0], ldbt, &out[0])
}

//go:noescape
func sdot1x8s16(k8 int, a *float32, bt *uint16, ldbt int, out *float32)

// rowDot8s16 is rowDot8s for a bfloat16 Bᵀ: the leading multiple of 8 of
// k in assembly, the rest in Go.
func rowDot8s16(k int, a []float32, bt []uint16, ldbt int, out []float32) {
	a, out = a[:k], out[:rowDotN]
	kv := k &^ 7
	if kv > 0 {
		_ = bt[7*ldbt+kv-1]
		sdot1x8s16(kv, &a[0], &bt[0], ldbt, &out[0])
	} else {
		clear(out)
	}
	rowDotTailBF16(kv, a, bt, ldbt, out)
}
