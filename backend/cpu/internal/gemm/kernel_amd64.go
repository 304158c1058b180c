package gemm

// sgemm6x16 is the AVX2/FMA micro-kernel in kernel_amd64.s: it sets the
// 6×16 tile at c (row stride ldc) to the product of a packed 6-row A panel
// and a packed 16-column B panel, kc steps long, plus beta·C (C unread
// when beta is 0). The CPU must have AVX2 and FMA.
//
//go:noescape
func sgemm6x16(kc int, a, b, c *float32, ldc int, beta float32)

var avx2Kernel = &kernel{
	name: "avx2-fma 6x16", mr: 6, nr: 16,
	kc: 256, mc: 144, nc: 4096,
	full: avx2Full,
}

// avx2Full bounds-checks the panels and the tile before handing raw
// pointers to the assembly, which would otherwise write out of bounds
// silently on a caller's mistake.
func avx2Full(kc int, a, b, c []float32, ldc int, beta float32) {
	_ = a[6*kc-1]
	_ = b[16*kc-1]
	_ = c[5*ldc+15]
	sgemm6x16(kc, &a[0], &b[0], &c[0], ldc, beta)
}
