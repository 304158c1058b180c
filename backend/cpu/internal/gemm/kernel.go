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
	// kernels (the scalar one and the go-simd ones) so that their paths
	// stay pure Go, and for the SSE one, whose CPUs lack AVX2.
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
	// rowDot16 is rowDot for a bfloat16 Bᵀ, widening as it loads.
	rowDot16 func(k int, a []float32, bt []uint16, ldbt int, out []float32)
}

// readsBInPlace reports whether a product of rows rows of C reads B's
// rows where they are instead of packing them (see run): with one or two
// row panels each value of B is used once or twice, and only when op(B)
// is B are its rows contiguous.
func (k *kernel) readsBInPlace(rows int, transB bool) bool { return !transB && rows <= 2*k.mr }

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
	id: "go", name: "go 1x7", mr: 1, nr: 7,
	kc: 512, mc: 128, nc: 1024,
	full: kernelGo1x7, rowDot: rowDotGo, rowDot16: rowDotGoBF16,
}

// rowDotGo is the portable rowDot: two passes of four rows, each with
// four scalar accumulators.
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

// kernelGo1x7 is the portable micro-kernel: one row of C, seven columns.
// Its shape comes from how the Go compiler (as of 1.26) schedules a loop
// body: among the values ready to issue it prefers those used later in
// the same block, so the multiplies of a k step all issue before its
// adds, and a step with n accumulators needs n registers for products
// as well. With amd64's 15 usable X registers (X15 is reserved as zero)
// n = 7 is the most that does not spill (7 sums, 7 products, the A
// value); 8 sums (a 4×2 or 8×1 tile) spill values to the stack in every
// step, sometimes a sum, which puts a store and a reload on its add
// chain. The four unrolled k steps escape the problem but for the last:
// an earlier step's sums are used by the next step in the same block, so
// the scheduler interleaves its multiplies and adds in source order, and
// only the last step needs the 15 registers. Seven independent sums also
// hide the add latency (at two adds per cycle). Loads of B are from the
// packed panel, in L1; one A value serves seven products. On amd64 this
// runs near the scalar limit of two multiplies and two adds per cycle
// (about 1.4× the 4×2 kernel it replaced); only SIMD does better.
func kernelGo1x7(kc int, a, b []float32, ldb int, c []float32, ldc int, beta float32) {
	var c0, c1, c2, c3, c4, c5, c6 float32
	a = a[:kc]
	p := 0
	if ldb == 7 {
		// The packed panel: four k steps at a time.
		b = b[:7*kc]
		for ; p+4 <= len(a); p += 4 {
			bp := (*[28]float32)(b[7*p:])
			ap := (*[4]float32)(a[p:])
			a0, a1, a2, a3 := ap[0], ap[1], ap[2], ap[3]
			c0 += bp[0] * a0
			c1 += bp[1] * a0
			c2 += bp[2] * a0
			c3 += bp[3] * a0
			c4 += bp[4] * a0
			c5 += bp[5] * a0
			c6 += bp[6] * a0

			c0 += bp[7] * a1
			c1 += bp[8] * a1
			c2 += bp[9] * a1
			c3 += bp[10] * a1
			c4 += bp[11] * a1
			c5 += bp[12] * a1
			c6 += bp[13] * a1

			c0 += bp[14] * a2
			c1 += bp[15] * a2
			c2 += bp[16] * a2
			c3 += bp[17] * a2
			c4 += bp[18] * a2
			c5 += bp[19] * a2
			c6 += bp[20] * a2

			c0 += bp[21] * a3
			c1 += bp[22] * a3
			c2 += bp[23] * a3
			c3 += bp[24] * a3
			c4 += bp[25] * a3
			c5 += bp[26] * a3
			c6 += bp[27] * a3
		}
	}
	// The last k steps, and B read with a row stride (only the tests call
	// it so): one k step at a time.
	for ; p < len(a); p++ {
		bp := (*[7]float32)(b[p*ldb:])
		a0 := a[p]
		c0 += bp[0] * a0
		c1 += bp[1] * a0
		c2 += bp[2] * a0
		c3 += bp[3] * a0
		c4 += bp[4] * a0
		c5 += bp[5] * a0
		c6 += bp[6] * a0
	}
	r := (*[7]float32)(c[:7])
	if beta == 0 {
		r[0], r[1], r[2], r[3], r[4], r[5], r[6] = c0, c1, c2, c3, c4, c5, c6
		return
	}
	r[0] = c0 + beta*r[0]
	r[1] = c1 + beta*r[1]
	r[2] = c2 + beta*r[2]
	r[3] = c3 + beta*r[3]
	r[4] = c4 + beta*r[4]
	r[5] = c5 + beta*r[5]
	r[6] = c6 + beta*r[6]
}
