//go:build !noasm

package gemm

// sgemm8x12 is the NEON micro-kernel in kernel_arm64.s: it sets the 8×12
// tile at c (row stride ldc) to the product of a packed 8-row A panel and
// kc ≥ 1 rows of 12 B values ldb apart, plus beta·C (C unread when beta
// is 0). Advanced SIMD is part of every ARMv8-A CPU, so nothing is checked
// before calling it.
//
//go:noescape
func sgemm8x12(kc int, a, b *float32, ldb int, c *float32, ldc int, beta float32)

// neonKernel is the arm64 kernel. Its cache blocks follow the AVX2
// kernel's reasoning for the caches of current arm64 cores (64 KiB or
// more of L1 data and 1 MiB or more of L2 per core): a 256×12 B panel is
// 12 KiB, a 128×256 A block 128 KiB. They have not been tuned on arm64
// hardware. Packing is the generic Go code (the AVX2 packing routines
// are amd64's). The dot-product paths (Engine.skinny, Engine.rowDots) have
// NEON kernels too, in dot_arm64.s.
var neonKernel = &kernel{
	id: "neon", name: "neon 8x12", mr: 8, nr: 12,
	kc: 256, mc: 128, nc: 4096,
	full: neonFull,
	dot:  dot4x4n, dotRows: 4, dotK: 4,
	rowDot: rowDot8n, rowDot16: rowDot8n16,
}

// neonFull bounds-checks the panels and the tile before handing raw
// pointers to the assembly, which would otherwise write out of bounds
// silently on a caller's mistake.
func neonFull(kc int, a, b []float32, ldb int, c []float32, ldc int, beta float32) {
	_ = a[8*kc-1]
	_ = b[(kc-1)*ldb+11]
	_ = c[7*ldc+11]
	sgemm8x12(kc, &a[0], &b[0], ldb, &c[0], ldc, beta)
}
