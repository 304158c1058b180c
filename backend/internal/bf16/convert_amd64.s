//go:build !noasm

#include "textflag.h"

// ROUND16 rounds the eight float32 values of Y (as integers) to bfloat16,
// nearest even, leaving each in the low half of its lane: u + 0x7fff +
// (u>>16 & 1), shifted down 16 bits; NaNs (|u| > 0x7f800000) become
// u>>16 | 0x40 instead, which keeps them NaN. Y12..Y15 hold the constants
// (1, 0x7fff, 0x7fffffff, 0x7f800000); T1..T3 are scratch.
#define ROUND16(Y, T1, T2, T3) \
	VPSRLD       $16, Y, T1 \
	VPAND        Y12, T1, T2 \
	VPADDD       Y13, T2, T2 \
	VPADDD       T2, Y, T2 \
	VPSRLD       $16, T2, T2 \
	VPAND        Y14, Y, T3 \
	VPCMPGTD     Y15, T3, T3 \
	VPOR         Y11, T1, T1 \
	VPBLENDVB    T3, T1, T2, Y

// func roundAVX2(dst *uint16, src *float32, n int)
//
// dst[i] = Round(src[i]) for i < n, n a positive multiple of 16.
TEXT ·roundAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	VPBROADCASTD one<>(SB), Y12
	VPBROADCASTD half<>(SB), Y13
	VPBROADCASTD abs<>(SB), Y14
	VPBROADCASTD inf<>(SB), Y15
	VPBROADCASTD quiet<>(SB), Y11

round:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	ROUND16(Y0, Y2, Y3, Y4)
	ROUND16(Y1, Y5, Y6, Y7)
	// Pack the 32-bit lanes to 16 bits (every value fits unsigned), which
	// interleaves the halves of Y0 and Y1; VPERMQ puts them in order.
	VPACKUSDW Y1, Y0, Y0
	VPERMQ    $0xD8, Y0, Y0
	VMOVDQU   Y0, (DI)
	ADDQ      $64, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       round
	VZEROUPPER
	RET

// func widenAVX2(dst *float32, src *uint16, n int)
//
// dst[i] = Widen(src[i]) for i < n, n a positive multiple of 8.
TEXT ·widenAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX

widen:
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VMOVDQU   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       widen
	VZEROUPPER
	RET

// func addWidenAVX2(dst *float32, src *uint16, n int)
//
// dst[i] += Widen(src[i]) for i < n, n a positive multiple of 8.
TEXT ·addWidenAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX

addwiden:
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VADDPS    (DI), Y0, Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       addwiden
	VZEROUPPER
	RET

DATA one<>+0(SB)/4, $1
GLOBL one<>(SB), RODATA|NOPTR, $4
DATA half<>+0(SB)/4, $0x7fff
GLOBL half<>(SB), RODATA|NOPTR, $4
DATA abs<>+0(SB)/4, $0x7fffffff
GLOBL abs<>(SB), RODATA|NOPTR, $4
DATA inf<>+0(SB)/4, $0x7f800000
GLOBL inf<>(SB), RODATA|NOPTR, $4
DATA quiet<>+0(SB)/4, $0x40
GLOBL quiet<>(SB), RODATA|NOPTR, $4
