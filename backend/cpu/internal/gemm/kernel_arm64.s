//go:build !noasm

#include "textflag.h"

// FMLAE(d, n, m, i) is FMLA Vd.4S, Vn.4S, Vm.S[i]: Vd += Vn · (lane i of
// Vm, broadcast), the by-element form of the multiply-add, which Go's
// assembler does not accept (its VFMLA is the vector form only). It is
// written as WORD with its encoding, from the Arm Architecture Reference
// Manual's "FMLA (by element)", single-precision vector variant:
//
//	bit  31 30 29 28..24 23 22 21 20 19..16 15..12 11 10 9..5 4..0
//	      0  Q  0  01111  1 sz  L  M   Rm    0001   H  0  Rn   Rd
//
// with Q = 1 (four lanes), sz = 0 (single precision), the lane index
// i = H:L and the register Vm = M:Rm, so all of V0-V31 can be Vm. That is
// the constant 0x4F801000 with m in bits 20..16, n in bits 9..5, d in
// bits 4..0, i's low bit in bit 21 and its high bit in bit 11. For
// example FMLAE(0, 26, 24, 3) is 0x4FB81B40, which GNU as assembles from
// "fmla v0.4s, v26.4s, v24.s[3]" and Go's disassembler (go tool objdump)
// prints as "FMLA V24.S[3], V26.S4, V0.S4". TestNEONEncoding, on any
// architecture, evaluates this macro's expression against such pairs
// from GNU as; the kernel tests, run on arm64 or under qemu, check what
// the instructions compute.
#define FMLAE(d, n, m, i) WORD $(0x4F801000 | ((m)<<16) | (((i)&1)<<21) | (((i)>>1)<<11) | ((n)<<5) | (d))

// KSTEP is one k step of the 8×12 tile: it loads the step's 8 A values
// (V24: rows 0-3, V25: rows 4-7) and 12 B values (V26-V28: columns 0-3,
// 4-7, 8-11), advancing R1 by 32 bytes and R2 by ldb (R3, bytes), and
// adds A[r]·B[0:12] to row r's accumulators V(3r), V(3r+1), V(3r+2).
//
// Per step: 2 load instructions (5 vector registers, 80 bytes) and 24
// FMLAs, 96 multiply-adds; no other instruction. Row r takes its A value
// as lane r%4 of V24 or V25 straight from the register, so A costs one
// load per four rows rather than a broadcast (LD1R or DUP) per row.
#define KSTEP \
	VLD1.P 32(R1), [V24.S4, V25.S4]; \
	VLD1.P (R2)(R3), [V26.S4, V27.S4, V28.S4]; \
	FMLAE(0, 26, 24, 0); FMLAE(1, 27, 24, 0); FMLAE(2, 28, 24, 0); \
	FMLAE(3, 26, 24, 1); FMLAE(4, 27, 24, 1); FMLAE(5, 28, 24, 1); \
	FMLAE(6, 26, 24, 2); FMLAE(7, 27, 24, 2); FMLAE(8, 28, 24, 2); \
	FMLAE(9, 26, 24, 3); FMLAE(10, 27, 24, 3); FMLAE(11, 28, 24, 3); \
	FMLAE(12, 26, 25, 0); FMLAE(13, 27, 25, 0); FMLAE(14, 28, 25, 0); \
	FMLAE(15, 26, 25, 1); FMLAE(16, 27, 25, 1); FMLAE(17, 28, 25, 1); \
	FMLAE(18, 26, 25, 2); FMLAE(19, 27, 25, 2); FMLAE(20, 28, 25, 2); \
	FMLAE(21, 26, 25, 3); FMLAE(22, 27, 25, 3); FMLAE(23, 28, 25, 3)

// STORE_ROW stores one row of the tile (three accumulators) at R4 and
// moves R4 to the next row (R5 bytes on).
#define STORE_ROW(x, y, z) \
	VST1.P [x.S4, y.S4, z.S4], (R4)(R5)

// UPDATE_ROW sets one row of C to its accumulators plus beta (V31, in
// every lane) times the row's old values, and moves R4 to the next row.
#define UPDATE_ROW(x, y, z) \
	VLD1 (R4), [V24.S4, V25.S4, V26.S4]; \
	VFMLA V31.S4, V24.S4, x.S4; \
	VFMLA V31.S4, V25.S4, y.S4; \
	VFMLA V31.S4, V26.S4, z.S4; \
	VST1.P [x.S4, y.S4, z.S4], (R4)(R5)

// func sgemm8x12(kc int, a, b *float32, ldb int, c *float32, ldc int, beta float32)
//
// The NEON micro-kernel: C[0:8, 0:12] = Σ_p a[p*8+i]·b[p*ldb+j] + beta·C,
// with C read only when beta != 0. a is a packed 8-row A panel, kc ≥ 1
// steps long; b holds kc rows of 12 values, ldb apart (12 for a packed
// panel, B's row stride when B is read in place); ldc is C's row stride.
// Strides are in elements.
//
// Registers: V0-V23 accumulate the tile, three per row; V24, V25 hold the
// step's A values and V26-V28 its B row (KSTEP); V31 holds beta at the
// end. Why 8×12: an mr×nr tile (multiples of 4) needs mr·nr/4
// accumulators plus nr/4 registers for a B row and mr/4 for an A column,
// at most 32 in all, and does mr·nr/4 FMLAs per (mr+nr)/4 vectors loaded.
// 8×12 (24+3+2 = 29 registers) and 12×8 give the most FMLAs per load
// among the tiles that fit, 24 per 5; 16×4 gives 16 per 5, 4×24 24 per
// 7, and 8×16 or 12×12 would need 38 or 42 registers. Of the two, 8×12
// keeps the A column to one two-register load.
//
// The main loop runs four k steps per iteration: 8 loads and 96 FMLAs,
// then one SUBS and one BNE, so 106 instructions for 384 multiply-adds.
// The steps reuse the same A and B registers; out-of-order cores (Apple
// M-series, Neoverse) rename registers, so a step's loads need not wait
// for the previous step's FMLAs to finish reading them. An in-order core
// (Cortex-A53/A55) would stall on each step's first FMLA, which waits for
// its loads; software pipelining (loading the next step's A into the
// spare V29, V30) would help there, and has not been done.
TEXT ·sgemm8x12(SB), NOSPLIT, $0-52
	MOVD kc+0(FP), R0
	MOVD a+8(FP), R1
	MOVD b+16(FP), R2
	MOVD ldb+24(FP), R3
	LSL  $2, R3                // B row stride in bytes
	MOVD c+32(FP), R4
	MOVD ldc+40(FP), R5
	LSL  $2, R5                // C row stride in bytes

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
	VEOR V16.B16, V16.B16, V16.B16
	VEOR V17.B16, V17.B16, V17.B16
	VEOR V18.B16, V18.B16, V18.B16
	VEOR V19.B16, V19.B16, V19.B16
	VEOR V20.B16, V20.B16, V20.B16
	VEOR V21.B16, V21.B16, V21.B16
	VEOR V22.B16, V22.B16, V22.B16
	VEOR V23.B16, V23.B16, V23.B16

	// Four k steps per iteration; the remainder goes one by one.
	LSR  $2, R0, R6
	AND  $3, R0, R0
	CBZ  R6, tail

loop4:
	KSTEP
	KSTEP
	KSTEP
	KSTEP
	SUBS $1, R6, R6
	BNE  loop4

tail:
	CBZ R0, store

loop1:
	KSTEP
	SUBS $1, R0, R0
	BNE  loop1

store:
	// beta == 0 stores without reading C; a NaN beta compares unordered,
	// not equal, and is applied like any other.
	FMOVS beta+48(FP), F31
	FCMPS $(0.0), F31
	BNE   update

	STORE_ROW(V0, V1, V2)
	STORE_ROW(V3, V4, V5)
	STORE_ROW(V6, V7, V8)
	STORE_ROW(V9, V10, V11)
	STORE_ROW(V12, V13, V14)
	STORE_ROW(V15, V16, V17)
	STORE_ROW(V18, V19, V20)
	STORE_ROW(V21, V22, V23)
	RET

update:
	VDUP V31.S[0], V31.S4
	UPDATE_ROW(V0, V1, V2)
	UPDATE_ROW(V3, V4, V5)
	UPDATE_ROW(V6, V7, V8)
	UPDATE_ROW(V9, V10, V11)
	UPDATE_ROW(V12, V13, V14)
	UPDATE_ROW(V15, V16, V17)
	UPDATE_ROW(V18, V19, V20)
	UPDATE_ROW(V21, V22, V23)
	RET
