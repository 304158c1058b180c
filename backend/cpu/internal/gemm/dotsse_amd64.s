//go:build !noasm

#include "textflag.h"

// Dot-product kernels for the SSE tier (SSE and SSE2 only, for amd64 CPUs
// without AVX2): the SSE counterparts of sdot1x8y (rowdot_amd64.s) and
// sdot2x4y (dot_amd64.s), four lanes wide.

// REDUCE4 sets r2 to the lane sums of r0, r1, r2 and r3 (in that order),
// using t0 and t1 as scratch; r0, r1 and r3 are clobbered. SSE only.
#define REDUCE4(r0, r1, r2, r3, t0, t1) \
	MOVAPS   r0, t0 \
	UNPCKLPS r1, t0 \
	UNPCKHPS r1, r0 \
	ADDPS    t0, r0 \
	MOVAPS   r2, t1 \
	UNPCKLPS r3, t1 \
	UNPCKHPS r3, r2 \
	ADDPS    t1, r2 \
	MOVAPS   r0, t0 \
	MOVLHPS  r2, t0 \
	MOVHLPS  r0, r2 \
	ADDPS    t0, r2

// func sdot1x8s(k int, a *float32, bt *float32, ldbt int, out *float32)
//
// SSE (SSE and SSE2 only, for CPUs without AVX2): sdot1x8z's contract,
// four lanes wide. X0..X7 accumulate one row each; the last k mod 4
// values go one at a time into lane 0, so nothing past a row's k values
// is read.
TEXT ·sdot1x8s(SB), NOSPLIT, $0-40
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ bt+16(FP), DI
	MOVQ ldbt+24(FP), R10
	SHLQ $2, R10
	LEAQ (R10)(R10*2), R11
	LEAQ (DI)(R10*4), R12
	MOVQ out+32(FP), DX

	XORPS X0, X0
	XORPS X1, X1
	XORPS X2, X2
	XORPS X3, X3
	XORPS X4, X4
	XORPS X5, X5
	XORPS X6, X6
	XORPS X7, X7

	MOVQ CX, BX
	SHRQ $2, BX
	JZ   tail4

loop4:
	MOVUPS (SI), X8
	MOVUPS (DI), X9
	MULPS  X8, X9
	ADDPS  X9, X0
	MOVUPS (DI)(R10*1), X10
	MULPS  X8, X10
	ADDPS  X10, X1
	MOVUPS (DI)(R10*2), X11
	MULPS  X8, X11
	ADDPS  X11, X2
	MOVUPS (DI)(R11*1), X12
	MULPS  X8, X12
	ADDPS  X12, X3
	MOVUPS (R12), X13
	MULPS  X8, X13
	ADDPS  X13, X4
	MOVUPS (R12)(R10*1), X14
	MULPS  X8, X14
	ADDPS  X14, X5
	MOVUPS (R12)(R10*2), X9
	MULPS  X8, X9
	ADDPS  X9, X6
	MOVUPS (R12)(R11*1), X10
	MULPS  X8, X10
	ADDPS  X10, X7
	ADDQ   $16, SI
	ADDQ   $16, DI
	ADDQ   $16, R12
	DECQ   BX
	JNZ    loop4

tail4:
	ANDQ $3, CX
	JZ   done4

loop1:
	MOVSS (SI), X8
	MOVSS  (DI), X9
	MULSS  X8, X9
	ADDSS  X9, X0
	MOVSS  (DI)(R10*1), X10
	MULSS  X8, X10
	ADDSS  X10, X1
	MOVSS  (DI)(R10*2), X11
	MULSS  X8, X11
	ADDSS  X11, X2
	MOVSS  (DI)(R11*1), X12
	MULSS  X8, X12
	ADDSS  X12, X3
	MOVSS  (R12), X13
	MULSS  X8, X13
	ADDSS  X13, X4
	MOVSS  (R12)(R10*1), X14
	MULSS  X8, X14
	ADDSS  X14, X5
	MOVSS  (R12)(R10*2), X9
	MULSS  X8, X9
	ADDSS  X9, X6
	MOVSS  (R12)(R11*1), X10
	MULSS  X8, X10
	ADDSS  X10, X7
	ADDQ   $4, SI
	ADDQ   $4, DI
	ADDQ   $4, R12
	DECQ   CX
	JNZ    loop1

done4:
	// Sum the four lanes of each accumulator: interleave pairs of them
	// and add, twice, which leaves the sums of four accumulators in
	// register order in one register.
	REDUCE4(X0, X1, X2, X3, X8, X9)
	MOVUPS X2, (DX)
	REDUCE4(X4, X5, X6, X7, X8, X9)
	MOVUPS X6, 16(DX)
	RET

// func sdot2x4s(k int, a *float32, lda int, bt *float32, ldbt int, out *float32)
//
// SSE: out[i*4+j] = Σ_{p<k} a[i*lda+p]·bt[j*ldbt+p] for i < 2, j < 4; k
// is a positive multiple of 4. X0..X3 accumulate row 0 of A against the
// four Bᵀ rows, X4..X7 row 1; X8, X9 hold the A rows of one step of four
// k values and X10..X13 a Bᵀ row and its products.
TEXT ·sdot2x4s(SB), NOSPLIT, $0-48
	MOVQ k+0(FP), BX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R8
	SHLQ $2, R8
	MOVQ bt+24(FP), DI
	MOVQ ldbt+32(FP), R9
	SHLQ $2, R9
	LEAQ (R9)(R9*2), R10
	MOVQ out+40(FP), DX

	XORPS X0, X0
	XORPS X1, X1
	XORPS X2, X2
	XORPS X3, X3
	XORPS X4, X4
	XORPS X5, X5
	XORPS X6, X6
	XORPS X7, X7

	SHRQ $2, BX

loop:
	MOVUPS (SI), X8
	MOVUPS (SI)(R8*1), X9
	MOVUPS (DI), X10
	MOVAPS X10, X11
	MULPS  X8, X10
	MULPS  X9, X11
	ADDPS  X10, X0
	ADDPS  X11, X4
	MOVUPS (DI)(R9*1), X12
	MOVAPS X12, X13
	MULPS  X8, X12
	MULPS  X9, X13
	ADDPS  X12, X1
	ADDPS  X13, X5
	MOVUPS (DI)(R9*2), X10
	MOVAPS X10, X11
	MULPS  X8, X10
	MULPS  X9, X11
	ADDPS  X10, X2
	ADDPS  X11, X6
	MOVUPS (DI)(R10*1), X12
	MOVAPS X12, X13
	MULPS  X8, X12
	MULPS  X9, X13
	ADDPS  X12, X3
	ADDPS  X13, X7
	ADDQ   $16, SI
	ADDQ   $16, DI
	DECQ   BX
	JNZ    loop

	REDUCE4(X0, X1, X2, X3, X8, X9)
	MOVUPS X2, (DX)
	REDUCE4(X4, X5, X6, X7, X8, X9)
	MOVUPS X6, 16(DX)
	RET

// ROWSTEPS16 widens the eight bfloat16 values of one row of Bᵀ at mem by
// interleaving them with zero words (which puts each in the top half of
// a 32-bit lane: the float32 it is the top half of), into lo and hi, and
// adds their products with A's eight values (X8, X9) to acc. SSE2 only;
// PUNPCKLWL and PUNPCKHWL are Go's names for PUNPCKLWD and PUNPCKHWD.
#define ROWSTEPS16(mem, x, lo, hi, acc) \
	MOVOU     mem, x \
	PXOR      lo, lo \
	PXOR      hi, hi \
	PUNPCKLWL x, lo \
	PUNPCKHWL x, hi \
	MULPS     X8, lo \
	MULPS     X9, hi \
	ADDPS     lo, acc \
	ADDPS     hi, acc

// func sdot1x8s16(k8 int, a *float32, bt *uint16, ldbt int, out *float32)
//
// sdot1x8s for a bfloat16 Bᵀ: out[j] = Σ_{p<k8} a[p]·widen(bt[j*ldbt+p])
// for j < 8, k8 a positive multiple of 8 (the caller adds the rest).
TEXT ·sdot1x8s16(SB), NOSPLIT, $0-40
	MOVQ k8+0(FP), BX
	MOVQ a+8(FP), SI
	MOVQ bt+16(FP), DI
	MOVQ ldbt+24(FP), R10
	SHLQ $1, R10
	LEAQ (R10)(R10*2), R11
	LEAQ (DI)(R10*4), R12
	MOVQ out+32(FP), DX

	XORPS X0, X0
	XORPS X1, X1
	XORPS X2, X2
	XORPS X3, X3
	XORPS X4, X4
	XORPS X5, X5
	XORPS X6, X6
	XORPS X7, X7
	SHRQ  $3, BX

loop8s16:
	MOVUPS (SI), X8
	MOVUPS 16(SI), X9
	ROWSTEPS16((DI), X10, X11, X12, X0)
	ROWSTEPS16((DI)(R10*1), X13, X14, X15, X1)
	ROWSTEPS16((DI)(R10*2), X10, X11, X12, X2)
	ROWSTEPS16((DI)(R11*1), X13, X14, X15, X3)
	ROWSTEPS16((R12), X10, X11, X12, X4)
	ROWSTEPS16((R12)(R10*1), X13, X14, X15, X5)
	ROWSTEPS16((R12)(R10*2), X10, X11, X12, X6)
	ROWSTEPS16((R12)(R11*1), X13, X14, X15, X7)
	ADDQ $32, SI
	ADDQ $16, DI
	ADDQ $16, R12
	DECQ BX
	JNZ  loop8s16

	REDUCE4(X0, X1, X2, X3, X8, X9)
	MOVUPS X2, (DX)
	REDUCE4(X4, X5, X6, X7, X8, X9)
	MOVUPS X6, 16(DX)
	RET
