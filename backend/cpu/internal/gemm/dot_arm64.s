//go:build !noasm

#include "textflag.h"

// Go's assembler has no vector FADD or FADDP, so they are written as WORD
// with their encodings, from the Arm Architecture Reference Manual's
// "FADD (vector)" and "FADDP (vector)", single-precision, four lanes:
//
//	bit  31 30 29 28..24 23 22 21 20..16 15..10 9..5 4..0
//	      0  Q  U  01110  0 sz  1   Rm   110101  Rn   Rd
//
// with Q = 1, sz = 0, and U = 0 for FADD, 1 for FADDP: the constants
// 0x4E20D400 and 0x6E20D400 with m in bits 20..16, n in 9..5, d in 4..0.
// FADDV(d, n, m) is FADD Vd.4S, Vn.4S, Vm.4S (Vd = Vn + Vm, lane by lane);
// FADDPV(d, n, m) is FADDP Vd.4S, Vn.4S, Vm.4S, the sums of adjacent pairs
// of Vn then of Vm: Vd = [n0+n1, n2+n3, m0+m1, m2+m3]. For example
// FADDPV(8, 8, 12) is 0x6E2CD508, which GNU as assembles from "faddp
// v8.4s, v8.4s, v12.4s". TestNEONEncoding checks both against GNU as.
#define FADDV(d, n, m) WORD $(0x4E20D400 | ((m)<<16) | ((n)<<5) | (d))
#define FADDPV(d, n, m) WORD $(0x6E20D400 | ((m)<<16) | ((n)<<5) | (d))

// ROWSTEP loads 8 values of one row of Bᵀ from ptr (advancing it) into
// x, y and adds their products with A's 8 values (V16, V17) to the row's
// two accumulators.
#define ROWSTEP(ptr, x, y, acc0, acc1) \
	VLD1.P 32(ptr), [x.S4, y.S4]; \
	VFMLA  V16.S4, x.S4, acc0.S4; \
	VFMLA  V17.S4, y.S4, acc1.S4

// func sdot1x8n(k8 int, a, bt *float32, ldbt int, out *float32)
//
// out[j] = Σ_{p<k8} a[p]·bt[j*ldbt+p] for j < 8, where k8 is a positive
// multiple of 8: the NEON part of rowDotNEON, which adds the last k%8
// products in Go. Strides are in elements.
//
// Each row j of Bᵀ has two accumulators, V(2j) and V(2j+1) (lanes p%8 <
// 4 and ≥ 4), so sixteen independent multiply-add chains hide the FMLA
// latency. Per 8 k steps: 9 load instructions (A and eight rows of Bᵀ,
// 32 bytes each) and 16 FMLAs. Each value of Bᵀ is used once, so this
// streams Bᵀ (a weight matrix, for one token's x·Wᵀ) at the speed of the
// loads. Rows 0-6 load into V18-V31; row 7 reuses row 0's V18, V19, whose
// FMLAs have issued by then (registers are renamed).
TEXT ·sdot1x8n(SB), NOSPLIT, $0-40
	MOVD k8+0(FP), R0
	MOVD a+8(FP), R1
	MOVD bt+16(FP), R2
	MOVD ldbt+24(FP), R3
	LSL  $2, R3               // row stride in bytes
	MOVD out+32(FP), R12
	ADD  R3, R2, R5           // rows 1-7 of Bᵀ
	ADD  R3, R5, R6
	ADD  R3, R6, R7
	ADD  R3, R7, R8
	ADD  R3, R8, R9
	ADD  R3, R9, R10
	ADD  R3, R10, R11
	LSR  $3, R0, R0           // iterations of 8 k steps

	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	VEOR V2.B16, V2.B16, V2.B16
	VEOR V3.B16, V3.B16, V3.B16
	VEOR V4.B16, V4.B16, V4.B16
	VEOR V5.B16, V5.B16, V5.B16
	VEOR V6.B16, V6.B16, V6.B16
	VEOR V7.B16, V7.B16, V7.B16
	VEOR V8.B16, V8.B16, V8.B16
	VEOR V9.B16, V9.B16, V9.B16
	VEOR V10.B16, V10.B16, V10.B16
	VEOR V11.B16, V11.B16, V11.B16
	VEOR V12.B16, V12.B16, V12.B16
	VEOR V13.B16, V13.B16, V13.B16
	VEOR V14.B16, V14.B16, V14.B16
	VEOR V15.B16, V15.B16, V15.B16

rowloop:
	VLD1.P 32(R1), [V16.S4, V17.S4]
	ROWSTEP(R2, V18, V19, V0, V1)
	ROWSTEP(R5, V20, V21, V2, V3)
	ROWSTEP(R6, V22, V23, V4, V5)
	ROWSTEP(R7, V24, V25, V6, V7)
	ROWSTEP(R8, V26, V27, V8, V9)
	ROWSTEP(R9, V28, V29, V10, V11)
	ROWSTEP(R10, V30, V31, V12, V13)
	ROWSTEP(R11, V18, V19, V14, V15)
	SUBS $1, R0, R0
	BNE  rowloop

	// Row j's sum is the sum of the eight lanes of V(2j) and V(2j+1).
	FADDV(0, 0, 1)
	FADDV(2, 2, 3)
	FADDV(4, 4, 5)
	FADDV(6, 6, 7)
	FADDV(8, 8, 9)
	FADDV(10, 10, 11)
	FADDV(12, 12, 13)
	FADDV(14, 14, 15)
	FADDPV(0, 0, 2)           // [row 0's pair sums, row 1's]
	FADDPV(4, 4, 6)           // rows 2, 3
	FADDPV(8, 8, 10)          // rows 4, 5
	FADDPV(12, 12, 14)        // rows 6, 7
	FADDPV(0, 0, 4)           // [sum 0, sum 1, sum 2, sum 3]
	FADDPV(8, 8, 12)          // [sum 4, ..., sum 7]
	VST1.P [V0.S4], 16(R12)
	VST1   [V8.S4], (R12)
	RET

// func sdot4x4n(k4 int, a *float32, lda int, bt *float32, ldbt int, out *float32)
//
// out[r*4+j] = Σ_{p<k4} a[r*lda+p]·bt[j*ldbt+p] for r, j < 4, where k4 is
// a positive multiple of 4: the kernel of Engine.skinny on arm64 (dot4x4n). Strides
// are in elements.
//
// V(4r+j) accumulates the pair (r, j) four k steps at a time. Per 4 k
// steps: 8 loads (four rows of A into V16-V19, four of Bᵀ into V20-V23)
// and 16 FMLAs, on sixteen independent chains.
TEXT ·sdot4x4n(SB), NOSPLIT, $0-48
	MOVD k4+0(FP), R0
	MOVD a+8(FP), R1
	MOVD lda+16(FP), R2
	LSL  $2, R2
	MOVD bt+24(FP), R3
	MOVD ldbt+32(FP), R4
	LSL  $2, R4
	MOVD out+40(FP), R12
	ADD  R2, R1, R5           // rows 1-3 of A
	ADD  R2, R5, R6
	ADD  R2, R6, R7
	ADD  R4, R3, R8           // rows 1-3 of Bᵀ
	ADD  R4, R8, R9
	ADD  R4, R9, R10
	LSR  $2, R0, R0           // iterations of 4 k steps

	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	VEOR V2.B16, V2.B16, V2.B16
	VEOR V3.B16, V3.B16, V3.B16
	VEOR V4.B16, V4.B16, V4.B16
	VEOR V5.B16, V5.B16, V5.B16
	VEOR V6.B16, V6.B16, V6.B16
	VEOR V7.B16, V7.B16, V7.B16
	VEOR V8.B16, V8.B16, V8.B16
	VEOR V9.B16, V9.B16, V9.B16
	VEOR V10.B16, V10.B16, V10.B16
	VEOR V11.B16, V11.B16, V11.B16
	VEOR V12.B16, V12.B16, V12.B16
	VEOR V13.B16, V13.B16, V13.B16
	VEOR V14.B16, V14.B16, V14.B16
	VEOR V15.B16, V15.B16, V15.B16

dotloop:
	VLD1.P 16(R1), [V16.S4]
	VLD1.P 16(R5), [V17.S4]
	VLD1.P 16(R6), [V18.S4]
	VLD1.P 16(R7), [V19.S4]
	VLD1.P 16(R3), [V20.S4]
	VLD1.P 16(R8), [V21.S4]
	VLD1.P 16(R9), [V22.S4]
	VLD1.P 16(R10), [V23.S4]
	VFMLA  V16.S4, V20.S4, V0.S4
	VFMLA  V16.S4, V21.S4, V1.S4
	VFMLA  V16.S4, V22.S4, V2.S4
	VFMLA  V16.S4, V23.S4, V3.S4
	VFMLA  V17.S4, V20.S4, V4.S4
	VFMLA  V17.S4, V21.S4, V5.S4
	VFMLA  V17.S4, V22.S4, V6.S4
	VFMLA  V17.S4, V23.S4, V7.S4
	VFMLA  V18.S4, V20.S4, V8.S4
	VFMLA  V18.S4, V21.S4, V9.S4
	VFMLA  V18.S4, V22.S4, V10.S4
	VFMLA  V18.S4, V23.S4, V11.S4
	VFMLA  V19.S4, V20.S4, V12.S4
	VFMLA  V19.S4, V21.S4, V13.S4
	VFMLA  V19.S4, V22.S4, V14.S4
	VFMLA  V19.S4, V23.S4, V15.S4
	SUBS $1, R0, R0
	BNE  dotloop

	// Row r's four sums: pair sums of (r, 0) and (r, 1), of (r, 2) and
	// (r, 3), then pair sums of those.
	FADDPV(0, 0, 1)
	FADDPV(2, 2, 3)
	FADDPV(0, 0, 2)
	FADDPV(4, 4, 5)
	FADDPV(6, 6, 7)
	FADDPV(4, 4, 6)
	FADDPV(8, 8, 9)
	FADDPV(10, 10, 11)
	FADDPV(8, 8, 10)
	FADDPV(12, 12, 13)
	FADDPV(14, 14, 15)
	FADDPV(12, 12, 14)
	VST1.P [V0.S4], 16(R12)
	VST1.P [V4.S4], 16(R12)
	VST1.P [V8.S4], 16(R12)
	VST1   [V12.S4], (R12)
	RET

// ROWSTEP16 is ROWSTEP for a bfloat16 row of Bᵀ: it loads 8 values (16
// bytes) into x and widens them into w0 (the first four) and w1 (the last
// four) by interleaving them with V30's zeros, which puts each in the top
// half of a 32-bit lane: exactly the float32 it is the top half of.
#define ROWSTEP16(ptr, x, w0, w1, acc0, acc1) \
	VLD1.P 16(ptr), [x.H8]; \
	VZIP1  x.H8, V30.H8, w0.H8; \
	VZIP2  x.H8, V30.H8, w1.H8; \
	VFMLA  V16.S4, w0.S4, acc0.S4; \
	VFMLA  V17.S4, w1.S4, acc1.S4

// func sdot1x8n16(k8 int, a *float32, bt *uint16, ldbt int, out *float32)
//
// sdot1x8n for a bfloat16 Bᵀ (ldbt in elements): out[j] = Σ_{p<k8}
// a[p]·widen(bt[j*ldbt+p]) for j < 8, k8 a positive multiple of 8. Rows
// take their registers from V18-V29 in turn, three each.
TEXT ·sdot1x8n16(SB), NOSPLIT, $0-40
	MOVD k8+0(FP), R0
	MOVD a+8(FP), R1
	MOVD bt+16(FP), R2
	MOVD ldbt+24(FP), R3
	LSL  $1, R3               // row stride in bytes
	MOVD out+32(FP), R12
	ADD  R3, R2, R5           // rows 1-7 of Bᵀ
	ADD  R3, R5, R6
	ADD  R3, R6, R7
	ADD  R3, R7, R8
	ADD  R3, R8, R9
	ADD  R3, R9, R10
	ADD  R3, R10, R11
	LSR  $3, R0, R0           // iterations of 8 k steps

	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	VEOR V2.B16, V2.B16, V2.B16
	VEOR V3.B16, V3.B16, V3.B16
	VEOR V4.B16, V4.B16, V4.B16
	VEOR V5.B16, V5.B16, V5.B16
	VEOR V6.B16, V6.B16, V6.B16
	VEOR V7.B16, V7.B16, V7.B16
	VEOR V8.B16, V8.B16, V8.B16
	VEOR V9.B16, V9.B16, V9.B16
	VEOR V10.B16, V10.B16, V10.B16
	VEOR V11.B16, V11.B16, V11.B16
	VEOR V12.B16, V12.B16, V12.B16
	VEOR V13.B16, V13.B16, V13.B16
	VEOR V14.B16, V14.B16, V14.B16
	VEOR V15.B16, V15.B16, V15.B16
	VEOR V30.B16, V30.B16, V30.B16

rowloop16:
	VLD1.P 32(R1), [V16.S4, V17.S4]
	ROWSTEP16(R2, V18, V19, V20, V0, V1)
	ROWSTEP16(R5, V21, V22, V23, V2, V3)
	ROWSTEP16(R6, V24, V25, V26, V4, V5)
	ROWSTEP16(R7, V27, V28, V29, V6, V7)
	ROWSTEP16(R8, V18, V19, V20, V8, V9)
	ROWSTEP16(R9, V21, V22, V23, V10, V11)
	ROWSTEP16(R10, V24, V25, V26, V12, V13)
	ROWSTEP16(R11, V27, V28, V29, V14, V15)
	SUBS $1, R0, R0
	BNE  rowloop16

	FADDV(0, 0, 1)
	FADDV(2, 2, 3)
	FADDV(4, 4, 5)
	FADDV(6, 6, 7)
	FADDV(8, 8, 9)
	FADDV(10, 10, 11)
	FADDV(12, 12, 13)
	FADDV(14, 14, 15)
	FADDPV(0, 0, 2)
	FADDPV(4, 4, 6)
	FADDPV(8, 8, 10)
	FADDPV(12, 12, 14)
	FADDPV(0, 0, 4)
	FADDPV(8, 8, 12)
	VST1.P [V0.S4], 16(R12)
	VST1   [V8.S4], (R12)
	RET
