//go:build !noasm

package gemm

// The row-dot kernels in rowdot_amd64.s; see there for what they compute.
// Only the checked wrappers below call them.
//
//go:noescape
func sdot1x8z(k int, a *float32, bt *float32, ldbt int, out *float32)

//go:noescape
func sdot1x8y(k int, a *float32, bt *float32, ldbt int, out *float32)

// rowDot8z and rowDot8y check the operands before handing raw pointers to
// the assembly.
func rowDot8z(k int, a, bt []float32, ldbt int, out []float32) {
	_ = a[k-1]
	_ = bt[7*ldbt+k-1]
	_ = out[7]
	sdot1x8z(k, &a[0], &bt[0], ldbt, &out[0])
}

func rowDot8y(k int, a, bt []float32, ldbt int, out []float32) {
	_ = a[k-1]
	_ = bt[7*ldbt+k-1]
	_ = out[7]
	sdot1x8y(k, &a[0], &bt[0], ldbt, &out[0])
}

// The bfloat16 row-dot kernels in rowdot_amd64.s: the leading multiple of
// 8 (16) of k in assembly, the rest added by rowDotTailBF16.
//
//go:noescape
func sdot1x8y16(k8 int, a *float32, bt *uint16, ldbt int, out *float32)

//go:noescape
func sdot1x8z16(k16 int, a *float32, bt *uint16, ldbt int, out *float32)

func rowDot8y16(k int, a []float32, bt []uint16, ldbt int, out []float32) {
	a, out = a[:k], out[:rowDotN]
	kv := k &^ 7
	if kv > 0 {
		_ = bt[7*ldbt+kv-1]
		sdot1x8y16(kv, &a[0], &bt[0], ldbt, &out[0])
	} else {
		clear(out)
	}
	rowDotTailBF16(kv, a, bt, ldbt, out)
}

func rowDot8z16(k int, a []float32, bt []uint16, ldbt int, out []float32) {
	a, out = a[:k], out[:rowDotN]
	kv := k &^ 15
	if kv > 0 {
		_ = bt[7*ldbt+kv-1]
		sdot1x8z16(kv, &a[0], &bt[0], ldbt, &out[0])
	} else {
		clear(out)
	}
	rowDotTailBF16(kv, a, bt, ldbt, out)
}
