//go:build !noasm

package gemm

// The NEON dot-product kernels in dot_arm64.s; see there for what they
// compute. Only the checked wrappers below call them.
//
//go:noescape
func sdot1x8n(k8 int, a, bt *float32, ldbt int, out *float32)

//go:noescape
func sdot4x4n(k4 int, a *float32, lda int, bt *float32, ldbt int, out *float32)

// rowDot8n is the NEON kernel's rowDot: the assembly takes the leading
// multiple of 8 of k, and the last k%8 products of each sum are added
// here, so that nothing past a row's k values is read.
func rowDot8n(k int, a, bt []float32, ldbt int, out []float32) {
	a = a[:k]
	out = out[:rowDotN]
	k8 := k &^ 7
	if k8 > 0 {
		_ = bt[7*ldbt+k8-1]
		sdot1x8n(k8, &a[0], &bt[0], ldbt, &out[0])
	} else {
		clear(out)
	}
	if k8 == k {
		return
	}
	for j := range out {
		s := out[j]
		for p, b := range bt[j*ldbt+k8 : j*ldbt+k] {
			s += a[k8+p] * b
		}
		out[j] = s
	}
}

// dot4x4n checks the operands before handing raw pointers to the
// assembly; k must be a positive multiple of 4.
func dot4x4n(k int, a []float32, lda int, bt []float32, ldbt int, out []float32) {
	_ = a[3*lda+k-1]
	_ = bt[3*ldbt+k-1]
	_ = out[15]
	sdot4x4n(k, &a[0], lda, &bt[0], ldbt, &out[0])
}

//go:noescape
func sdot1x8n16(k8 int, a *float32, bt *uint16, ldbt int, out *float32)

// rowDot8n16 is rowDot8n for a bfloat16 Bᵀ.
func rowDot8n16(k int, a []float32, bt []uint16, ldbt int, out []float32) {
	a, out = a[:k], out[:rowDotN]
	k8 := k &^ 7
	if k8 > 0 {
		_ = bt[7*ldbt+k8-1]
		sdot1x8n16(k8, &a[0], &bt[0], ldbt, &out[0])
	} else {
		clear(out)
	}
	rowDotTailBF16(k8, a, bt, ldbt, out)
}
