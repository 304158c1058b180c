package gemm

// packA copies the mc×kc block of alpha·op(A) starting at row i0 and
// column p0 into dst as consecutive panels of mr rows. Within a panel the
// mr values of one column are adjacent, which is the order the
// micro-kernel consumes them in. Rows past mc are zero, so the kernel can
// always compute whole tiles. Folding alpha in here costs one multiply
// per element of A instead of one per element of C per k block.
func packA(transA bool, a []float32, lda, i0, p0, mc, kc, mr int, alpha float32, dst []float32) {
	for r0 := 0; r0 < mc; r0 += mr {
		rows := min(mr, mc-r0)
		d := dst[r0*kc : r0*kc+mr*kc]
		if !transA {
			// Row i of op(A) is contiguous in a; scatter it with stride mr.
			for ii := 0; ii < rows; ii++ {
				src := a[(i0+r0+ii)*lda+p0:]
				src = src[:kc]
				dd := d[ii:]
				for p, v := range src {
					dd[p*mr] = alpha * v
				}
			}
			if rows < mr {
				for p := 0; p < kc; p++ {
					clear(d[p*mr+rows : p*mr+mr])
				}
			}
			continue
		}
		// Column p of op(A)ᵀ storage: the panel's mr values are adjacent.
		for p := 0; p < kc; p++ {
			src := a[(p0+p)*lda+i0+r0:]
			src = src[:rows]
			dd := d[p*mr : p*mr+mr]
			for ii, v := range src {
				dd[ii] = alpha * v
			}
			clear(dd[rows:])
		}
	}
}

// packB copies the kc×nc block of op(B) starting at row p0 and column j0
// into dst as consecutive panels of nr columns, each panel row-major
// (nr adjacent values per k step). Columns past nc are zero.
func packB(transB bool, b []float32, ldb, p0, j0, kc, nc, nr int, dst []float32) {
	for s0 := 0; s0 < nc; s0 += nr {
		cols := min(nr, nc-s0)
		d := dst[s0*kc : s0*kc+nr*kc]
		if !transB {
			for p := 0; p < kc; p++ {
				src := b[(p0+p)*ldb+j0+s0:]
				dd := d[p*nr : p*nr+nr]
				copy(dd, src[:cols])
				clear(dd[cols:])
			}
			continue
		}
		// Column j of op(B) is row j of b, contiguous in k.
		for jj := 0; jj < cols; jj++ {
			src := b[(j0+s0+jj)*ldb+p0:]
			src = src[:kc]
			dd := d[jj:]
			for p, v := range src {
				dd[p*nr] = v
			}
		}
		if cols < nr {
			for p := 0; p < kc; p++ {
				clear(d[p*nr+cols : p*nr+nr])
			}
		}
	}
}
