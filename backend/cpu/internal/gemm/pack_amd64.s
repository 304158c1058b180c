//go:build !noasm

#include "textflag.h"

// Packing helpers for the assembly kernels (AVX2). Strides are in
// elements; all pointers are to float32.

// func transpose8(dst, src *float32, ld, w, n int)
//
// For q < n (n a positive multiple of 8) and r < 8:
// dst[q*w + r] = src[r*ld + q]. That is, 8 rows of src become columns
// of a panel of width w, 8×8 blocks at a time, transposed in registers.
TEXT ·transpose8(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	SHLQ $2, R8               // row stride of src in bytes
	MOVQ w+24(FP), R11
	SHLQ $2, R11              // row stride of dst in bytes
	MOVQ n+32(FP), CX
	SHRQ $3, CX               // 8×8 blocks
	LEAQ (R8)(R8*2), R9       // 3 rows of src
	LEAQ (SI)(R8*4), R10      // src row 4
	LEAQ (R11)(R11*2), R12    // 3 rows of dst
	LEAQ (R11)(R11*4), R13    // 5 rows of dst
	LEAQ (R12)(R11*4), R14    // 7 rows of dst
	MOVQ R11, R15
	SHLQ $3, R15              // 8 rows of dst

loop:
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(R8*1), Y1
	VMOVUPS (SI)(R8*2), Y2
	VMOVUPS (SI)(R9*1), Y3
	VMOVUPS (R10), Y4
	VMOVUPS (R10)(R8*1), Y5
	VMOVUPS (R10)(R8*2), Y6
	VMOVUPS (R10)(R9*1), Y7

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7

	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15

	VMOVUPS Y8, (DI)
	VMOVUPS Y9, (DI)(R11*1)
	VMOVUPS Y10, (DI)(R11*2)
	VMOVUPS Y11, (DI)(R12*1)
	VMOVUPS Y12, (DI)(R11*4)
	VMOVUPS Y13, (DI)(R13*1)
	VMOVUPS Y14, (DI)(R12*2)
	VMOVUPS Y15, (DI)(R14*1)

	ADDQ $32, SI
	ADDQ $32, R10
	ADDQ R15, DI
	DECQ CX
	JNZ  loop
	VZEROUPPER
	RET

// func transpose4(dst, src *float32, ld, w, n int)
//
// As transpose8 for 4 rows: dst[q*w + r] = src[r*ld + q] for r < 4 and
// q < n, n a positive multiple of 8.
TEXT ·transpose4(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	SHLQ $2, R8
	MOVQ w+24(FP), R11
	SHLQ $2, R11
	MOVQ n+32(FP), CX
	SHRQ $3, CX
	LEAQ (R8)(R8*2), R9
	LEAQ (R11)(R11*2), R12
	LEAQ (R11)(R11*4), R13
	LEAQ (R12)(R11*4), R14
	MOVQ R11, R15
	SHLQ $3, R15

loop4:
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(R8*1), Y1
	VMOVUPS (SI)(R8*2), Y2
	VMOVUPS (SI)(R9*1), Y3

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11

	// Lane 0 of Y4..Y7 holds columns 0..3, lane 1 columns 4..7.
	VSHUFPS $0x44, Y10, Y8, Y4
	VSHUFPS $0xEE, Y10, Y8, Y5
	VSHUFPS $0x44, Y11, Y9, Y6
	VSHUFPS $0xEE, Y11, Y9, Y7

	VMOVUPS      X4, (DI)
	VMOVUPS      X5, (DI)(R11*1)
	VMOVUPS      X6, (DI)(R11*2)
	VMOVUPS      X7, (DI)(R12*1)
	VEXTRACTF128 $1, Y4, (DI)(R11*4)
	VEXTRACTF128 $1, Y5, (DI)(R13*1)
	VEXTRACTF128 $1, Y6, (DI)(R12*2)
	VEXTRACTF128 $1, Y7, (DI)(R14*1)

	ADDQ $32, SI
	ADDQ R15, DI
	DECQ CX
	JNZ  loop4
	VZEROUPPER
	RET

// func copyRows(dst, src *float32, ld, w, n int)
//
// dst[q*w + j] = src[q*ld + j] for q < n and j < w, w a positive
// multiple of 4: n rows of w values from a strided matrix into a panel.
TEXT ·copyRows(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	SHLQ $2, R8
	MOVQ w+24(FP), R11
	MOVQ R11, R12
	SHRQ $3, R11              // whole 8-float vectors per row
	ANDQ $4, R12              // and a 4-float rest, or not
	MOVQ n+32(FP), CX
	TESTQ CX, CX
	JZ   done

row:
	XORQ  AX, AX
	MOVQ  R11, BX
	TESTQ BX, BX
	JZ    rest

vec:
	VMOVUPS (SI)(AX*1), Y0
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ    $32, AX
	DECQ    BX
	JNZ     vec

rest:
	TESTQ   R12, R12
	JZ      next
	VMOVUPS (SI)(AX*1), X0
	VMOVUPS X0, (DI)(AX*1)
	ADDQ    $16, AX

next:
	ADDQ AX, DI
	ADDQ R8, SI
	DECQ CX
	JNZ  row

done:
	VZEROUPPER
	RET

// The bfloat16 twins of the routines above: the source holds bfloat16
// values (uint16, the top half of a float32), widened exactly as they are
// loaded (zero-extended to 32 bits, shifted to the top half); what is
// stored is float32, as for a float32 source.

// LOADH widens the eight bfloat16 values at mem into Y.
#define LOADH(mem, Y) \
	VPMOVZXWD mem, Y \
	VPSLLD    $16, Y, Y

// func transpose8h(dst *float32, src *uint16, ld, w, n int)
//
// transpose8 for a bfloat16 source: dst[q*w + r] = widen(src[r*ld + q])
// for q < n (a positive multiple of 8) and r < 8.
TEXT ·transpose8h(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	SHLQ $1, R8               // row stride of src in bytes
	MOVQ w+24(FP), R11
	SHLQ $2, R11              // row stride of dst in bytes
	MOVQ n+32(FP), CX
	SHRQ $3, CX               // 8×8 blocks
	LEAQ (R8)(R8*2), R9       // 3 rows of src
	LEAQ (SI)(R8*4), R10      // src row 4
	LEAQ (R11)(R11*2), R12    // 3 rows of dst
	LEAQ (R11)(R11*4), R13    // 5 rows of dst
	LEAQ (R12)(R11*4), R14    // 7 rows of dst
	MOVQ R11, R15
	SHLQ $3, R15              // 8 rows of dst

loop8h:
	LOADH((SI), Y0)
	LOADH((SI)(R8*1), Y1)
	LOADH((SI)(R8*2), Y2)
	LOADH((SI)(R9*1), Y3)
	LOADH((R10), Y4)
	LOADH((R10)(R8*1), Y5)
	LOADH((R10)(R8*2), Y6)
	LOADH((R10)(R9*1), Y7)

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7

	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15

	VMOVUPS Y8, (DI)
	VMOVUPS Y9, (DI)(R11*1)
	VMOVUPS Y10, (DI)(R11*2)
	VMOVUPS Y11, (DI)(R12*1)
	VMOVUPS Y12, (DI)(R11*4)
	VMOVUPS Y13, (DI)(R13*1)
	VMOVUPS Y14, (DI)(R12*2)
	VMOVUPS Y15, (DI)(R14*1)

	ADDQ $16, SI
	ADDQ $16, R10
	ADDQ R15, DI
	DECQ CX
	JNZ  loop8h
	VZEROUPPER
	RET

// func transpose4h(dst *float32, src *uint16, ld, w, n int)
//
// transpose4 for a bfloat16 source.
TEXT ·transpose4h(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	SHLQ $1, R8
	MOVQ w+24(FP), R11
	SHLQ $2, R11
	MOVQ n+32(FP), CX
	SHRQ $3, CX
	LEAQ (R8)(R8*2), R9
	LEAQ (R11)(R11*2), R12
	LEAQ (R11)(R11*4), R13
	LEAQ (R12)(R11*4), R14
	MOVQ R11, R15
	SHLQ $3, R15

loop4h:
	LOADH((SI), Y0)
	LOADH((SI)(R8*1), Y1)
	LOADH((SI)(R8*2), Y2)
	LOADH((SI)(R9*1), Y3)

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11

	VSHUFPS $0x44, Y10, Y8, Y4
	VSHUFPS $0xEE, Y10, Y8, Y5
	VSHUFPS $0x44, Y11, Y9, Y6
	VSHUFPS $0xEE, Y11, Y9, Y7

	VMOVUPS      X4, (DI)
	VMOVUPS      X5, (DI)(R11*1)
	VMOVUPS      X6, (DI)(R11*2)
	VMOVUPS      X7, (DI)(R12*1)
	VEXTRACTF128 $1, Y4, (DI)(R11*4)
	VEXTRACTF128 $1, Y5, (DI)(R13*1)
	VEXTRACTF128 $1, Y6, (DI)(R12*2)
	VEXTRACTF128 $1, Y7, (DI)(R14*1)

	ADDQ $16, SI
	ADDQ R15, DI
	DECQ CX
	JNZ  loop4h
	VZEROUPPER
	RET

// func copyRowsh(dst *float32, src *uint16, ld, w, n int)
//
// copyRows for a bfloat16 source: dst[q*w + j] = widen(src[q*ld + j]) for
// q < n and j < w, w a positive multiple of 4.
TEXT ·copyRowsh(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	SHLQ $1, R8
	MOVQ w+24(FP), R11
	MOVQ R11, R12
	SHRQ $3, R11              // whole 8-value vectors per row
	ANDQ $4, R12              // and a 4-value rest, or not
	MOVQ n+32(FP), CX
	TESTQ CX, CX
	JZ   doneh

rowh:
	XORQ  AX, AX              // dst offset in bytes
	XORQ  DX, DX              // src offset in bytes
	MOVQ  R11, BX
	TESTQ BX, BX
	JZ    resth

vech:
	LOADH((SI)(DX*1), Y0)
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ    $32, AX
	ADDQ    $16, DX
	DECQ    BX
	JNZ     vech

resth:
	TESTQ     R12, R12
	JZ        nexth
	VPMOVZXWD (SI)(DX*1), X0
	VPSLLD    $16, X0, X0
	VMOVUPS   X0, (DI)(AX*1)
	ADDQ      $16, AX

nexth:
	ADDQ AX, DI
	ADDQ R8, SI
	DECQ CX
	JNZ  rowh

doneh:
	VZEROUPPER
	RET
