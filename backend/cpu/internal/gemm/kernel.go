package gemm

// kernel describes one micro-kernel and the block sizes tuned for it.
type kernel struct {
	id     string // short name for Config.Kernel
	name   string // with the tile shape, for reports
	mr, nr int    // register tile
	// kc, mc and nc are the nominal cache blocks: a kc×nr B panel should
	// sit in L1, an mc×kc A block in L2, a kc×nc B block in L3.
	kc, mc, nc int
	// full computes the mr×nr tile C = Ap·Bp + beta·C from an A panel
	// (kc columns of mr values, each stored aDup times) and a B panel (kc rows of nr values, ldb
	// apart), never reading C when beta is 0.
	full func(kc int, a, b []float32, ldb int, c []float32, ldc int, beta float32)
	// asmPack lets packing use the AVX2 routines; off for the pure-Go
	// kernel so that the portable path stays pure Go, and for the SSE
	// one, whose CPUs lack AVX2.
	asmPack bool
	// bcastA is set for a kernel that wants each value of a packed A
	// panel stored four times in a row (4·mr floats per k step), so that
	// one vector load gives it a broadcast value: SSE2 has no broadcast
	// instruction, and a shuffle per value in the loop would take the
	// execution ports that the multiplies and adds need.
	bcastA bool

	// dot, when set, computes a dotRows×4 block of dot products of rows
	// of A with rows of Bᵀ over k values (a multiple of dotK) into out,
	// row-major: the kernel of the path for narrow C (see Engine.skinny).
	dot     func(k int, a []float32, lda int, bt []float32, ldbt int, out []float32)
	dotRows int
	dotK    int

	// rowDot computes the dot products of one row a of A with rowDotN
	// consecutive rows of Bᵀ, ldbt apart, over any k ≥ 1 into out[:8]:
	// the kernel of the path for short C times a transposed B (see
	// Engine.rowDots). It reads nothing of a row past its k values.
	rowDot func(k int, a, bt []float32, ldbt int, out []float32)
}

// aDup is how many times a packed A panel stores each value.
func (k *kernel) aDup() int {
	if k.bcastA {
		return 4
	}
	return 1
}

// rowDotN is how many entries of C one rowDot call computes.
const rowDotN = 8

// selectKernel returns the kernel called id when this CPU runs it, else
// the fastest it runs; the pure-Go one when portable is set.
func selectKernel(portable bool, id string) *kernel {
	if portable {
		return goKernel
	}
	ks := availableKernels()
	for _, k := range ks {
		if k.id == id {
			return k
		}
	}
	return ks[0]
}

// maxTile bounds mr·nr over all kernels, for the edge-tile scratch buffer.
const maxTile = 384

var goKernel = &kernel{
	id: "go", name: "go 4x2", mr: 4, nr: 2,
	kc: 256, mc: 128, nc: 1024,
	full: kernelGo4x2, rowDot: rowDotGo,
}

// rowDotGo is the portable rowDot: two passes of four rows, each with
// four scalar accumulators (more would spill, as in kernelGo4x2).
func rowDotGo(k int, a, bt []float32, ldbt int, out []float32) {
	a = a[:k]
	out = out[:rowDotN]
	for j := 0; j < rowDotN; j += 4 {
		b0 := bt[j*ldbt : j*ldbt+k]
		b1 := bt[(j+1)*ldbt : (j+1)*ldbt+k]
		b2 := bt[(j+2)*ldbt : (j+2)*ldbt+k]
		b3 := bt[(j+3)*ldbt : (j+3)*ldbt+k]
		var s0, s1, s2, s3 float32
		for p, x := range a {
			s0 += x * b0[p]
			s1 += x * b1[p]
			s2 += x * b2[p]
			s3 += x * b3[p]
		}
		out[j], out[j+1], out[j+2], out[j+3] = s0, s1, s2, s3
	}
}

// kernelGo4x2 is the portable micro-kernel. Its shape is what measured
// fastest among pure-Go tiles on amd64: the compiler schedules all the
// multiplies of an iteration before the adds, so tiles with more than
// eight scalar accumulators (4×4, 2×6, 3×4) spill to the stack, and
// unrolling two k steps halves the bounds-check and pointer-advance work
// per multiply-add.
func kernelGo4x2(kc int, a, b []float32, ldb int, c []float32, ldc int, beta float32) {
	var c00, c01, c10, c11, c20, c21, c30, c31 float32
	a = a[:4*kc]
	if ldb != 2 {
		// B read in place: one k step at a time.
		for p := 0; p < kc; p++ {
			bp := b[p*ldb : p*ldb+2]
			b0, b1 := bp[0], bp[1]
			a0, a1, a2, a3 := a[4*p], a[4*p+1], a[4*p+2], a[4*p+3]
			c00 += a0 * b0
			c01 += a0 * b1
			c10 += a1 * b0
			c11 += a1 * b1
			c20 += a2 * b0
			c21 += a2 * b1
			c30 += a3 * b0
			c31 += a3 * b1
		}
	} else {
		b = b[:2*kc]
		for len(a) >= 8 && len(b) >= 4 {
			b0, b1 := b[0], b[1]
			a0, a1, a2, a3 := a[0], a[1], a[2], a[3]
			c00 += a0 * b0
			c01 += a0 * b1
			c10 += a1 * b0
			c11 += a1 * b1
			c20 += a2 * b0
			c21 += a2 * b1
			c30 += a3 * b0
			c31 += a3 * b1
			b0, b1 = b[2], b[3]
			a0, a1, a2, a3 = a[4], a[5], a[6], a[7]
			c00 += a0 * b0
			c01 += a0 * b1
			c10 += a1 * b0
			c11 += a1 * b1
			c20 += a2 * b0
			c21 += a2 * b1
			c30 += a3 * b0
			c31 += a3 * b1
			a = a[8:]
			b = b[4:]
		}
		if len(a) >= 4 && len(b) >= 2 { // odd kc
			b0, b1 := b[0], b[1]
			a0, a1, a2, a3 := a[0], a[1], a[2], a[3]
			c00 += a0 * b0
			c01 += a0 * b1
			c10 += a1 * b0
			c11 += a1 * b1
			c20 += a2 * b0
			c21 += a2 * b1
			c30 += a3 * b0
			c31 += a3 * b1
		}
	}
	storeRow2(c[0*ldc:], c00, c01, beta)
	storeRow2(c[1*ldc:], c10, c11, beta)
	storeRow2(c[2*ldc:], c20, c21, beta)
	storeRow2(c[3*ldc:], c30, c31, beta)
}

func storeRow2(c []float32, v0, v1, beta float32) {
	c = c[:2]
	if beta == 0 {
		c[0], c[1] = v0, v1
		return
	}
	c[0] = v0 + beta*c[0]
	c[1] = v1 + beta*c[1]
}
