package gemm

// packA copies the mc×kc block of alpha·op(A) starting at row i0 and
// column p0 into dst as consecutive panels of mr rows. Within a panel the
// mr values of one column are adjacent, which is the order the
// micro-kernel consumes them in; with dup = 4 each value is stored four
// times in a row, for a kernel that loads A values already broadcast
// (see kernel.bcastA), so a panel takes dup·mr·kc floats. Rows past mc
// are zero, so the kernel can always compute whole tiles. Folding alpha
// in here costs one multiply per element of A instead of one per element
// of C per k block. With fast, the AVX2 routines do what they can.
func packA(transA bool, a []float32, lda, i0, p0, mc, kc, mr, dup int, alpha float32, dst []float32, fast bool) {
	for r0 := 0; r0 < mc; r0 += mr {
		d := dst[r0*kc*dup : (r0+mr)*kc*dup]
		packAPanel(transA, a, lda, i0+r0, p0, min(mr, mc-r0), kc, mr, alpha, d[:mr*kc], fast)
		if dup == 4 {
			spread4(d)
		}
	}
}

// packAPanel packs one panel of packA, rows [i0, i0+rows) of op(A), into
// d (mr·kc floats), zero past rows.
func packAPanel(transA bool, a []float32, lda, i0, p0, rows, kc, mr int, alpha float32, d []float32, fast bool) {
	if !transA {
		// Row i of op(A) is contiguous in a: interleave the panel's rows.
		interleave(d, mr, a, i0*lda+p0, lda, rows, kc, alpha, fast)
		return
	}
	// Column i of op(A) is row i of a: the panel's mr values for one k
	// step are adjacent in a already.
	if mr == 1 {
		// A one-row panel (the pure-Go kernel's) is a column of a: gather
		// it, rather than call copy for every single value.
		for p := range d {
			d[p] = alpha * a[(p0+p)*lda+i0]
		}
		return
	}
	if rows == mr && fast && copyRowsFast(d, mr, a, p0*lda+i0, lda, kc) {
		if alpha != 1 {
			for i := range d {
				d[i] *= alpha
			}
		}
		return
	}
	for p := 0; p < kc; p++ {
		src := a[(p0+p)*lda+i0:]
		src = src[:rows]
		dd := d[p*mr : p*mr+mr]
		if alpha == 1 {
			copy(dd, src)
		} else {
			for ii, v := range src {
				dd[ii] = alpha * v
			}
		}
		clear(dd[rows:])
	}
}

// spread4 replaces the values in the first quarter of d by four copies of
// each: d[4i+q] = d[i]. Going backwards it never overwrites a value before
// reading it, since 4i ≥ i.
func spread4(d []float32) {
	n := len(d) / 4
	for i := n - 1; i >= 0; i-- {
		v := d[i]
		q := d[4*i : 4*i+4]
		q[0], q[1], q[2], q[3] = v, v, v, v
	}
}

// packB copies the kc×nc block of op(B) starting at row p0 and column j0
// into dst as consecutive panels of nr columns, each panel row-major
// (nr adjacent values per k step). Columns past nc are zero. With fast,
// the AVX2 routines do what they can.
func packB(transB bool, b []float32, ldb, p0, j0, kc, nc, nr int, dst []float32, fast bool) {
	for s0 := 0; s0 < nc; s0 += nr {
		cols := min(nr, nc-s0)
		d := dst[s0*kc : s0*kc+nr*kc]
		if !transB {
			if cols == nr && fast && copyRowsFast(d, nr, b, p0*ldb+j0+s0, ldb, kc) {
				continue
			}
			for p := 0; p < kc; p++ {
				src := b[(p0+p)*ldb+j0+s0:]
				dd := d[p*nr : p*nr+nr]
				if nr < 16 {
					// A narrow panel's rows are too short to be worth a
					// call of copy (memmove) each.
					for j, v := range src[:cols] {
						dd[j] = v
					}
				} else {
					copy(dd, src[:cols])
				}
				clear(dd[cols:])
			}
			continue
		}
		// Column j of op(B) is row j of b, contiguous in k.
		interleave(d, nr, b, (j0+s0)*ldb+p0, ldb, cols, kc, 1, fast)
	}
}

// interleave writes d[p*w+r] = alpha·src[off+r*ld+p] for r < rows and
// p < kc, and zero for rows ≤ r < w: it transposes `rows` source rows of
// length kc into a panel of width w. With fast, the AVX2 routines take
// the leading rows and k steps.
func interleave(d []float32, w int, src []float32, off, ld, rows, kc int, alpha float32, fast bool) {
	r, kd := 0, 0
	if fast {
		r, kd = interleaveFast(d, w, src, off, ld, rows, kc)
		if alpha != 1 {
			for p := 0; p < kd; p++ {
				q := d[p*w : p*w+r]
				for i := range q {
					q[i] *= alpha
				}
			}
		}
	}
	interleaveGo(d, w, src, off, ld, 0, r, kd, kc, alpha)
	interleaveGo(d, w, src, off, ld, r, rows, 0, kc, alpha)
	if rows < w {
		for p := 0; p < kc; p++ {
			clear(d[p*w+rows : p*w+w])
		}
	}
}

// interleaveGo is interleave for rows [r0, r1) and k steps [p0, p1), in
// Go. Four rows go at a time so that each store of a k step fills
// adjacent slots, while the reads stay sequential in four streams.
func interleaveGo(d []float32, w int, src []float32, off, ld, r0, r1, p0, p1 int, alpha float32) {
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
			q[0], q[1], q[2], q[3] = alpha*s0[p], alpha*s1[p], alpha*s2[p], alpha*s3[p]
		}
	}
	for ; r+2 <= r1; r += 2 {
		o := off + r*ld + p0
		s0 := src[o : o+kc]
		s1 := src[o+ld : o+ld+kc]
		dd := d[p0*w+r:]
		for p := range s0 {
			q := dd[p*w : p*w+2]
			q[0], q[1] = alpha*s0[p], alpha*s1[p]
		}
	}
	if r < r1 {
		o := off + r*ld + p0
		s0 := src[o : o+kc]
		dd := d[p0*w+r:]
		for p, v := range s0 {
			dd[p*w] = alpha * v
		}
	}
}
