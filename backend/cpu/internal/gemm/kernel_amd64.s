#include "textflag.h"

// func sgemm6x16(kc int, a, b, c *float32, ldc int, beta float32)
//
// C[0:6, 0:16] = Σ_p a[p*6+i]·b[p*16+j] + beta·C, with C read only when
// beta != 0. a is a packed 6-row A panel, b a packed 16-column B panel,
// both kc steps long; ldc is C's row stride in elements.
//
// Registers: Y4..Y15 accumulate the tile, two per row (columns 0-7 and
// 8-15); Y0, Y1 hold the current B row; Y2, Y3 alternate as the
// broadcast A value so consecutive rows do not wait on one register.
TEXT ·sgemm6x16(SB), NOSPLIT, $0-44
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

	// Unrolled four k steps at a time; the remainder goes one by one.
	MOVQ CX, BX
	SHRQ $2, BX
	ANDQ $3, CX
	TESTQ BX, BX
	JZ   tail

#define STEP(aoff, boff) \
	VMOVUPS      boff(DI), Y0            \
	VMOVUPS      (boff+32)(DI), Y1       \
	VBROADCASTSS (aoff)(SI), Y2          \
	VFMADD231PS  Y0, Y2, Y4              \
	VFMADD231PS  Y1, Y2, Y5              \
	VBROADCASTSS (aoff+4)(SI), Y3        \
	VFMADD231PS  Y0, Y3, Y6              \
	VFMADD231PS  Y1, Y3, Y7              \
	VBROADCASTSS (aoff+8)(SI), Y2        \
	VFMADD231PS  Y0, Y2, Y8              \
	VFMADD231PS  Y1, Y2, Y9              \
	VBROADCASTSS (aoff+12)(SI), Y3       \
	VFMADD231PS  Y0, Y3, Y10             \
	VFMADD231PS  Y1, Y3, Y11             \
	VBROADCASTSS (aoff+16)(SI), Y2       \
	VFMADD231PS  Y0, Y2, Y12             \
	VFMADD231PS  Y1, Y2, Y13             \
	VBROADCASTSS (aoff+20)(SI), Y3       \
	VFMADD231PS  Y0, Y3, Y14             \
	VFMADD231PS  Y1, Y3, Y15

loop4:
	PREFETCHT0 384(DI)
	STEP(0, 0)
	STEP(24, 64)
	PREFETCHT0 448(DI)
	STEP(48, 128)
	STEP(72, 192)
	ADDQ $96, SI
	ADDQ $256, DI
	DECQ BX
	JNZ  loop4

tail:
	TESTQ CX, CX
	JZ    store

loop1:
	STEP(0, 0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop1

store:
	// beta == 0 (and not NaN) stores without reading C.
	VBROADCASTSS beta+40(FP), Y0
	VXORPS       X1, X1, X1
	VUCOMISS     X1, X0
	JNE          accumulate
	JPS          accumulate

	VMOVUPS Y4, (DX)
	VMOVUPS Y5, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y6, (DX)
	VMOVUPS Y7, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y8, (DX)
	VMOVUPS Y9, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y10, (DX)
	VMOVUPS Y11, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y12, (DX)
	VMOVUPS Y13, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y14, (DX)
	VMOVUPS Y15, 32(DX)
	VZEROUPPER
	RET

accumulate:
#define ROW(lo, hi) \
	VFMADD231PS (DX), Y0, lo    \
	VFMADD231PS 32(DX), Y0, hi  \
	VMOVUPS     lo, (DX)        \
	VMOVUPS     hi, 32(DX)

	ROW(Y4, Y5)
	ADDQ R8, DX
	ROW(Y6, Y7)
	ADDQ R8, DX
	ROW(Y8, Y9)
	ADDQ R8, DX
	ROW(Y10, Y11)
	ADDQ R8, DX
	ROW(Y12, Y13)
	ADDQ R8, DX
	ROW(Y14, Y15)
	VZEROUPPER
	RET
