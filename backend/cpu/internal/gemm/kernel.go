package gemm

// kernel describes one micro-kernel and the block sizes tuned for it.
type kernel struct {
	name   string
	mr, nr int // register tile
	// kc, mc and nc are the nominal cache blocks: a kc×nr B panel should
	// sit in L1, an mc×kc A block in L2, a kc×nc B block in L3.
	kc, mc, nc int
	// full computes the mr×nr tile C = Ap·Bp + beta·C from an A panel
	// (kc columns of mr values) and a B panel (kc rows of nr values),
	// never reading C when beta is 0.
	full func(kc int, a, b, c []float32, ldc int, beta float32)
}

// maxTile bounds mr·nr over all kernels, for the edge-tile scratch buffer.
const maxTile = 128

var goKernel = &kernel{
	name: "go 4x4", mr: 4, nr: 4,
	kc: 256, mc: 128, nc: 1024,
	full: kernelGo4x4,
}

// kernelGo4x4 is the portable micro-kernel. Sixteen scalar accumulators
// plus the operands just fit the amd64 register file, so the inner loop
// does eight loads for sixteen multiply-adds.
func kernelGo4x4(kc int, a, b, c []float32, ldc int, beta float32) {
	var c00, c01, c02, c03 float32
	var c10, c11, c12, c13 float32
	var c20, c21, c22, c23 float32
	var c30, c31, c32, c33 float32
	a = a[:4*kc]
	b = b[:4*kc]
	for len(a) >= 4 && len(b) >= 4 {
		a0, a1, a2, a3 := a[0], a[1], a[2], a[3]
		b0, b1, b2, b3 := b[0], b[1], b[2], b[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
		a = a[4:]
		b = b[4:]
	}
	storeRow4(c[0*ldc:], c00, c01, c02, c03, beta)
	storeRow4(c[1*ldc:], c10, c11, c12, c13, beta)
	storeRow4(c[2*ldc:], c20, c21, c22, c23, beta)
	storeRow4(c[3*ldc:], c30, c31, c32, c33, beta)
}

func storeRow4(c []float32, v0, v1, v2, v3, beta float32) {
	c = c[:4]
	if beta == 0 {
		c[0], c[1], c[2], c[3] = v0, v1, v2, v3
		return
	}
	c[0] = v0 + beta*c[0]
	c[1] = v1 + beta*c[1]
	c[2] = v2 + beta*c[2]
	c[3] = v3 + beta*c[3]
}
