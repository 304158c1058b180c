package gemm

import "github.com/sora-go/sora/backend/internal/bf16"

// A B operand in bfloat16 (the frozen weights of a fine-tune, stored at
// half the memory) goes through the same paths as a float32 one, widened
// to float32 where it is read: packing B widens it into the packed panel,
// so the micro-kernels never see it; the row-dot path (one token times
// Wᵀ) has kernels that widen as they load, since its point is to stream
// W once; the skinny path widens while it copies op(B)ᵀ. Widening is
// exact, so the product is the float32 product of the widened values.
// Only reading B in place (Engine.run's direct path) and computing Cᵀ
// instead of C (which makes B the packed A operand) are skipped.

// SgemmBF16 is Sgemm with B given as bfloat16 values, each the top 16
// bits of a float32 (backend.BFloat16): C = alpha·op(A)·op(B) + beta·C
// with B's values widened exactly. A warmed-up Engine allocates nothing
// here either.
func (e *Engine) SgemmBF16(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []uint16, ldb int, beta float32, c []float32, ldc int) {
	e.sgemm(transA, transB, m, n, k, alpha, a, lda, nil, b, ldb, beta, c, ldc)
}

// widen sets dst[i] to the float32 value of src[i], for i < len(dst). It
// is package bf16's portable loop, so that Config.Portable leaves no
// assembly in use.
var widen = bf16.Go.ToFloat32

// packB packs the kc×nc block of the call's op(B) at row p0 and column j0
// into dst, as the package function packB does for a float32 B,
// widening a bfloat16 one.
func (cl *call) packB(p0, j0, kc, nc, nr int, dst []float32, fast bool) {
	if cl.b16 == nil {
		packB(cl.transB, cl.b, cl.ldb, p0, j0, kc, nc, nr, dst, fast)
		return
	}
	b, ldb := cl.b16, cl.ldb
	for s0 := 0; s0 < nc; s0 += nr {
		cols := min(nr, nc-s0)
		d := dst[s0*kc : s0*kc+nr*kc]
		if cl.transB {
			// Column j of op(B) is row j of b, contiguous in k.
			interleaveBF16(d, nr, b, (j0+s0)*ldb+p0, ldb, cols, kc, fast)
			continue
		}
		if cols == nr && fast && widenRowsFast(d, nr, b, p0*ldb+j0+s0, ldb, kc) {
			continue
		}
		for p := 0; p < kc; p++ {
			dd := d[p*nr : p*nr+nr]
			widen(dd[:cols], b[(p0+p)*ldb+j0+s0:])
			clear(dd[cols:])
		}
	}
}

// interleaveBF16 is interleave (with alpha 1) for a bfloat16 source:
// d[p*w+r] = src[off+r*ld+p] widened, for r < rows and p < kc, and zero
// for rows ≤ r < w.
func interleaveBF16(d []float32, w int, src []uint16, off, ld, rows, kc int, fast bool) {
	r, kd := 0, 0
	if fast {
		r, kd = interleaveFastBF16(d, w, src, off, ld, rows, kc)
	}
	interleaveGoBF16(d, w, src, off, ld, 0, r, kd, kc)
	interleaveGoBF16(d, w, src, off, ld, r, rows, 0, kc)
	if rows < w {
		for p := 0; p < kc; p++ {
			clear(d[p*w+rows : p*w+w])
		}
	}
}

// interleaveGoBF16 is interleaveGo (alpha 1) for a bfloat16 source: rows
// [r0, r1) and k steps [p0, p1), four rows at a time.
func interleaveGoBF16(d []float32, w int, src []uint16, off, ld, r0, r1, p0, p1 int) {
	if p0 >= p1 {
		return
	}
	kc := p1 - p0
	r := r0
	for ; r+4 <= r1; r += 4 {
		o := off + r*ld + p0
		s0 := src[o : o+kc]
		s1 := src[o+ld : o+ld+kc]
		s2 := src[o+2*ld : o+2*ld+kc]
		s3 := src[o+3*ld : o+3*ld+kc]
		dd := d[p0*w+r:]
		for p := range s0 {
			q := dd[p*w : p*w+4]
			q[0], q[1], q[2], q[3] = bf16.Widen(s0[p]), bf16.Widen(s1[p]), bf16.Widen(s2[p]), bf16.Widen(s3[p])
		}
	}
	for ; r < r1; r++ {
		o := off + r*ld + p0
		dd := d[p0*w+r:]
		for p, v := range src[o : o+kc] {
			dd[p*w] = bf16.Widen(v)
		}
	}
}

// rowDotGoBF16 is rowDotGo for a bfloat16 B.
func rowDotGoBF16(k int, a []float32, bt []uint16, ldbt int, out []float32) {
	a = a[:k]
	out = out[:rowDotN]
	for j := 0; j < rowDotN; j += 4 {
		b0 := bt[j*ldbt : j*ldbt+k]
		b1 := bt[(j+1)*ldbt : (j+1)*ldbt+k]
		b2 := bt[(j+2)*ldbt : (j+2)*ldbt+k]
		b3 := bt[(j+3)*ldbt : (j+3)*ldbt+k]
		var s0, s1, s2, s3 float32
		for p, x := range a {
			s0 += x * bf16.Widen(b0[p])
			s1 += x * bf16.Widen(b1[p])
			s2 += x * bf16.Widen(b2[p])
			s3 += x * bf16.Widen(b3[p])
		}
		out[j], out[j+1], out[j+2], out[j+3] = s0, s1, s2, s3
	}
}

// rowDotTailBF16 adds to out[j] the products of a[p] with row j of bt for
// p from p0 to len(a), j < rowDotN: the k tail an assembly rowDot leaves.
func rowDotTailBF16(p0 int, a []float32, bt []uint16, ldbt int, out []float32) {
	if p0 >= len(a) {
		return
	}
	k := len(a)
	for j := range out[:rowDotN] {
		s := out[j]
		for p, h := range bt[j*ldbt+p0 : j*ldbt+k] {
			s += a[p0+p] * bf16.Widen(h)
		}
		out[j] = s
	}
}
