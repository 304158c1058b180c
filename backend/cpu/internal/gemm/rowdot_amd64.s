//go:build !noasm

#include "textflag.h"

// Row-dot kernels for products with a short C (one or a few rows) and a
// transposed B, x·Wᵀ for one token: eight entries of one row of C at a
// time, each the dot product of A's row with a row of W, both read where
// they are. Nothing is packed, so the cost is one pass over W.

// REDUCE8 sums the eight lanes of each of Y0..Y7 and stores the eight
// sums at (DX), in register order. Two rounds of horizontal adds leave, in
// each 128-bit half, partial sums of four accumulators; adding the two
// halves finishes them.
#define REDUCE8 \
	VHADDPS    Y1, Y0, Y0 \
	VHADDPS    Y3, Y2, Y2 \
	VHADDPS    Y5, Y4, Y4 \
	VHADDPS    Y7, Y6, Y6 \
	VHADDPS    Y2, Y0, Y0 \
	VHADDPS    Y6, Y4, Y4 \
	VPERM2F128 $0x20, Y4, Y0, Y1 \
	VPERM2F128 $0x31, Y4, Y0, Y2 \
	VADDPS     Y2, Y1, Y0 \
	VMOVUPS    Y0, (DX) \
	VZEROUPPER

// func sdot1x8z(k int, a *float32, bt *float32, ldbt int, out *float32)
//
// AVX-512: out[j] = Σ_{p<k} a[p]·bt[j*ldbt+p] for j < 8, any k ≥ 0. Z0..Z7
// accumulate one row each, 16 lanes wide; the last k mod 16 values are
// loaded under a mask, so nothing past a row's k values is read into a
// sum (a stride's padding may hold anything, NaN included).
TEXT ·sdot1x8z(SB), NOSPLIT, $0-40
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ bt+16(FP), DI
	MOVQ ldbt+24(FP), R10
	SHLQ $2, R10
	LEAQ (R10)(R10*2), R11 // 3 rows
	LEAQ (DI)(R10*4), R12  // row 4
	MOVQ out+32(FP), DX

	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7

	MOVQ CX, BX
	SHRQ $4, BX
	JZ   tail16

loop16:
	VMOVUPS     (SI), Z8
	VFMADD231PS (DI), Z8, Z0
	VFMADD231PS (DI)(R10*1), Z8, Z1
	VFMADD231PS (DI)(R10*2), Z8, Z2
	VFMADD231PS (DI)(R11*1), Z8, Z3
	VFMADD231PS (R12), Z8, Z4
	VFMADD231PS (R12)(R10*1), Z8, Z5
	VFMADD231PS (R12)(R10*2), Z8, Z6
	VFMADD231PS (R12)(R11*1), Z8, Z7
	ADDQ        $64, SI
	ADDQ        $64, DI
	ADDQ        $64, R12
	DECQ        BX
	JNZ         loop16

tail16:
	ANDQ $15, CX
	JZ   reduce16
	// K1 = the low k mod 16 lanes. Masked-off lanes are neither read
	// (no fault, no NaN) nor updated.
	MOVL        $1, AX
	SHLL        CX, AX
	DECL        AX
	KMOVW       AX, K1
	VMOVUPS.Z   (SI), K1, Z8
	VFMADD231PS (DI), Z8, K1, Z0
	VFMADD231PS (DI)(R10*1), Z8, K1, Z1
	VFMADD231PS (DI)(R10*2), Z8, K1, Z2
	VFMADD231PS (DI)(R11*1), Z8, K1, Z3
	VFMADD231PS (R12), Z8, K1, Z4
	VFMADD231PS (R12)(R10*1), Z8, K1, Z5
	VFMADD231PS (R12)(R10*2), Z8, K1, Z6
	VFMADD231PS (R12)(R11*1), Z8, K1, Z7

reduce16:
	// 512 → 256 bits per accumulator, then as for AVX2.
	VEXTRACTF64X4 $1, Z0, Y8
	VADDPS        Y8, Y0, Y0
	VEXTRACTF64X4 $1, Z1, Y8
	VADDPS        Y8, Y1, Y1
	VEXTRACTF64X4 $1, Z2, Y8
	VADDPS        Y8, Y2, Y2
	VEXTRACTF64X4 $1, Z3, Y8
	VADDPS        Y8, Y3, Y3
	VEXTRACTF64X4 $1, Z4, Y8
	VADDPS        Y8, Y4, Y4
	VEXTRACTF64X4 $1, Z5, Y8
	VADDPS        Y8, Y5, Y5
	VEXTRACTF64X4 $1, Z6, Y8
	VADDPS        Y8, Y6, Y6
	VEXTRACTF64X4 $1, Z7, Y8
	VADDPS        Y8, Y7, Y7
	REDUCE8
	RET

// func sdot1x8y(k int, a *float32, bt *float32, ldbt int, out *float32)
//
// AVX2 with FMA: sdot1x8z's contract, 8 lanes wide; the last k mod 8
// values are loaded with VMASKMOVPS, which reads nothing where the mask
// is clear.
TEXT ·sdot1x8y(SB), NOSPLIT, $0-40
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ bt+16(FP), DI
	MOVQ ldbt+24(FP), R10
	SHLQ $2, R10
	LEAQ (R10)(R10*2), R11
	LEAQ (DI)(R10*4), R12
	MOVQ out+32(FP), DX

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

	MOVQ CX, BX
	SHRQ $3, BX
	JZ   tail8

loop8:
	VMOVUPS     (SI), Y8
	VFMADD231PS (DI), Y8, Y0
	VFMADD231PS (DI)(R10*1), Y8, Y1
	VFMADD231PS (DI)(R10*2), Y8, Y2
	VFMADD231PS (DI)(R11*1), Y8, Y3
	VFMADD231PS (R12), Y8, Y4
	VFMADD231PS (R12)(R10*1), Y8, Y5
	VFMADD231PS (R12)(R10*2), Y8, Y6
	VFMADD231PS (R12)(R11*1), Y8, Y7
	ADDQ        $32, SI
	ADDQ        $32, DI
	ADDQ        $32, R12
	DECQ        BX
	JNZ         loop8

tail8:
	ANDQ $7, CX
	JZ   done8
	// Y15 = the mask of the low k mod 8 lanes: the 8 dwords of tailMask
	// starting (8 − k mod 8) dwords in.
	MOVQ       $8, AX
	SUBQ       CX, AX
	LEAQ       tailMask<>(SB), BX
	VMOVDQU    (BX)(AX*4), Y15
	VMASKMOVPS (SI), Y15, Y8
	VMASKMOVPS (DI), Y15, Y9
	VFMADD231PS Y9, Y8, Y0
	VMASKMOVPS (DI)(R10*1), Y15, Y9
	VFMADD231PS Y9, Y8, Y1
	VMASKMOVPS (DI)(R10*2), Y15, Y9
	VFMADD231PS Y9, Y8, Y2
	VMASKMOVPS (DI)(R11*1), Y15, Y9
	VFMADD231PS Y9, Y8, Y3
	VMASKMOVPS (R12), Y15, Y9
	VFMADD231PS Y9, Y8, Y4
	VMASKMOVPS (R12)(R10*1), Y15, Y9
	VFMADD231PS Y9, Y8, Y5
	VMASKMOVPS (R12)(R10*2), Y15, Y9
	VFMADD231PS Y9, Y8, Y6
	VMASKMOVPS (R12)(R11*1), Y15, Y9
	VFMADD231PS Y9, Y8, Y7

done8:
	REDUCE8
	RET

// tailMask is eight all-ones dwords followed by eight zero dwords.
DATA tailMask<>+0(SB)/8, $-1
DATA tailMask<>+8(SB)/8, $-1
DATA tailMask<>+16(SB)/8, $-1
DATA tailMask<>+24(SB)/8, $-1
DATA tailMask<>+32(SB)/8, $0
DATA tailMask<>+40(SB)/8, $0
DATA tailMask<>+48(SB)/8, $0
DATA tailMask<>+56(SB)/8, $0
GLOBL tailMask<>(SB), RODATA|NOPTR, $64

// WIDEN loads eight bfloat16 values at mem into the eight float32 lanes
// of Y: zero-extended to 32 bits and shifted to the top half, which is
// exactly the float32 that a bfloat16 is the top half of.
#define WIDEN(mem, Y) \
	VPMOVZXWD mem, Y \
	VPSLLD    $16, Y, Y

// func sdot1x8y16(k8 int, a *float32, bt *uint16, ldbt int, out *float32)
//
// AVX2 with FMA: out[j] = Σ_{p<k8} a[p]·widen(bt[j*ldbt+p]) for j < 8, k8
// a positive multiple of 8: sdot1x8y for a bfloat16 Bᵀ, widened as it is
// loaded. The caller adds the last k mod 8 products.
TEXT ·sdot1x8y16(SB), NOSPLIT, $0-40
	MOVQ k8+0(FP), BX
	MOVQ a+8(FP), SI
	MOVQ bt+16(FP), DI
	MOVQ ldbt+24(FP), R10
	SHLQ $1, R10           // row stride in bytes
	LEAQ (R10)(R10*2), R11 // 3 rows
	LEAQ (DI)(R10*4), R12  // row 4
	MOVQ out+32(FP), DX

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	SHRQ   $3, BX

loop8h:
	VMOVUPS     (SI), Y8
	WIDEN((DI), Y9)
	VFMADD231PS Y9, Y8, Y0
	WIDEN((DI)(R10*1), Y10)
	VFMADD231PS Y10, Y8, Y1
	WIDEN((DI)(R10*2), Y11)
	VFMADD231PS Y11, Y8, Y2
	WIDEN((DI)(R11*1), Y12)
	VFMADD231PS Y12, Y8, Y3
	WIDEN((R12), Y9)
	VFMADD231PS Y9, Y8, Y4
	WIDEN((R12)(R10*1), Y10)
	VFMADD231PS Y10, Y8, Y5
	WIDEN((R12)(R10*2), Y11)
	VFMADD231PS Y11, Y8, Y6
	WIDEN((R12)(R11*1), Y12)
	VFMADD231PS Y12, Y8, Y7
	ADDQ        $32, SI
	ADDQ        $16, DI
	ADDQ        $16, R12
	DECQ        BX
	JNZ         loop8h

	REDUCE8
	RET

// WIDEN16 is WIDEN for sixteen values into a ZMM register.
#define WIDEN16(mem, Z) \
	VPMOVZXWD mem, Z \
	VPSLLD    $16, Z, Z

// func sdot1x8z16(k16 int, a *float32, bt *uint16, ldbt int, out *float32)
//
// AVX-512: sdot1x8y16 sixteen lanes wide, for k16 a positive multiple of
// 16.
TEXT ·sdot1x8z16(SB), NOSPLIT, $0-40
	MOVQ k16+0(FP), BX
	MOVQ a+8(FP), SI
	MOVQ bt+16(FP), DI
	MOVQ ldbt+24(FP), R10
	SHLQ $1, R10
	LEAQ (R10)(R10*2), R11
	LEAQ (DI)(R10*4), R12
	MOVQ out+32(FP), DX

	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	SHRQ   $4, BX

loop16h:
	VMOVUPS     (SI), Z8
	WIDEN16((DI), Z9)
	VFMADD231PS Z9, Z8, Z0
	WIDEN16((DI)(R10*1), Z10)
	VFMADD231PS Z10, Z8, Z1
	WIDEN16((DI)(R10*2), Z11)
	VFMADD231PS Z11, Z8, Z2
	WIDEN16((DI)(R11*1), Z12)
	VFMADD231PS Z12, Z8, Z3
	WIDEN16((R12), Z13)
	VFMADD231PS Z13, Z8, Z4
	WIDEN16((R12)(R10*1), Z14)
	VFMADD231PS Z14, Z8, Z5
	WIDEN16((R12)(R10*2), Z15)
	VFMADD231PS Z15, Z8, Z6
	WIDEN16((R12)(R11*1), Z16)
	VFMADD231PS Z16, Z8, Z7
	ADDQ        $64, SI
	ADDQ        $32, DI
	ADDQ        $32, R12
	DECQ        BX
	JNZ         loop16h

	VEXTRACTF64X4 $1, Z0, Y8
	VADDPS        Y8, Y0, Y0
	VEXTRACTF64X4 $1, Z1, Y8
	VADDPS        Y8, Y1, Y1
	VEXTRACTF64X4 $1, Z2, Y8
	VADDPS        Y8, Y2, Y2
	VEXTRACTF64X4 $1, Z3, Y8
	VADDPS        Y8, Y3, Y3
	VEXTRACTF64X4 $1, Z4, Y8
	VADDPS        Y8, Y4, Y4
	VEXTRACTF64X4 $1, Z5, Y8
	VADDPS        Y8, Y5, Y5
	VEXTRACTF64X4 $1, Z6, Y8
	VADDPS        Y8, Y6, Y6
	VEXTRACTF64X4 $1, Z7, Y8
	VADDPS        Y8, Y7, Y7
	REDUCE8
	RET
