//go:build !noasm

package gemm

// sgemm6x16 is the AVX2/FMA micro-kernel in kernel_amd64.s: it sets the
// 6×16 tile at c (row stride ldc) to the product of a packed 6-row A panel
// and kc rows of 16 B values ldb apart, plus beta·C (C unread when beta
// is 0). The CPU must have AVX2 and FMA.
//
//go:noescape
func sgemm6x16(kc int, a, b *float32, ldb int, c *float32, ldc int, beta float32)

var avx2Kernel = &kernel{
	id: "avx2", name: "avx2-fma 6x16", mr: 6, nr: 16,
	kc: 256, mc: 144, nc: 4096,
	full: avx2Full, asmPack: true,
	dot: dot2x4y, dotRows: 2, dotK: 8,
	rowDot: rowDot8y, rowDot16: rowDot8y16,
}

// avx2Full bounds-checks the panels and the tile before handing raw
// pointers to the assembly, which would otherwise write out of bounds
// silently on a caller's mistake.
func avx2Full(kc int, a, b []float32, ldb int, c []float32, ldc int, beta float32) {
	_ = a[6*kc-1]
	_ = b[(kc-1)*ldb+15]
	_ = c[5*ldc+15]
	sgemm6x16(kc, &a[0], &b[0], ldb, &c[0], ldc, beta)
}

// sgemm12x32 is the AVX-512 micro-kernel in kernel512_amd64.s, the same
// contract as sgemm6x16 on a 12×32 tile. The CPU must have AVX-512F.
//
//go:noescape
func sgemm12x32(kc int, a, b *float32, ldb int, c *float32, ldc int, beta float32)

var avx512Kernel = &kernel{
	id: "avx512", name: "avx512 12x32", mr: 12, nr: 32,
	kc: 256, mc: 240, nc: 4096,
	full: avx512Full, asmPack: true,
	dot: dot4x4z, dotRows: 4, dotK: 16,
	rowDot: rowDot8z, rowDot16: rowDot8z16,
}

func avx512Full(kc int, a, b []float32, ldb int, c []float32, ldc int, beta float32) {
	_ = a[12*kc-1]
	_ = b[(kc-1)*ldb+31]
	_ = c[11*ldc+31]
	sgemm12x32(kc, &a[0], &b[0], ldb, &c[0], ldc, beta)
}

// sgemm6x8s is the SSE micro-kernel in kernelsse_amd64.s, the same
// contract as sgemm6x16 on a 6×8 tile, except that a holds each A value
// four times (kernel.bcastA). It needs only SSE2, which every amd64 CPU
// has.
//
//go:noescape
func sgemm6x8s(kc int, a, b *float32, ldb int, c *float32, ldc int, beta float32)

// sseKernel is for amd64 CPUs without AVX2 and FMA. Its A blocks are four
// times the usual size (each value broadcast), so mc is smaller than the
// AVX2 kernel's to keep one in L2.
var sseKernel = &kernel{
	id: "sse", name: "sse 6x8", mr: 6, nr: 8,
	kc: 256, mc: 96, nc: 4096,
	full: sseFull, bcastA: true,
	dot: dot2x4s, dotRows: 2, dotK: 4,
	rowDot: rowDot8s, rowDot16: rowDot8s16,
}

func sseFull(kc int, a, b []float32, ldb int, c []float32, ldc int, beta float32) {
	_ = a[4*6*kc-1]
	_ = b[(kc-1)*ldb+7]
	_ = c[5*ldc+7]
	sgemm6x8s(kc, &a[0], &b[0], ldb, &c[0], ldc, beta)
}
