//go:build goexperiment.simd && amd64

package gemm

import (
	"math"
	"simd/archsimd"
)

// The go-simd kernels are micro-kernels written in Go with the
// experimental package simd/archsimd (Go 1.26, in a build with
// GOEXPERIMENT=simd), whose vector types and methods the compiler turns
// into AVX instructions: SIMD without assembly. With packing in Go too
// (asmPack is off), the whole product is Go source that the compiler
// checks, bounds included, and that runs at several times the speed of
// the scalar pure-Go kernel. They are never the default where the
// assembly kernels run (the SSE kernel, which every amd64 CPU runs, stays
// ahead of them); Config.Kernel or $SORA_CPU_GEMM_KERNEL picks them. The
// package is experimental and may change in later Go releases, which is
// why they are only built when asked for.
//
// Their tile is 4 rows by two vectors (4×32 with AVX-512, 4×16 with AVX2)
// because of how the compiler, as of Go 1.26, allocates vector registers:
//
//   - It gives vectors 15 registers, X0–X14 (X15 is its zero register),
//     even for AVX-512, whose Z16–Z31 it leaves unused.
//   - MulAdd becomes VFMADD213PS, which overwrites its receiver (x·y+z
//     into x): when the receiver, the broadcast A value, has a second use,
//     the compiler first copies it to a spare register.
//   - Its scheduler puts a block's loads and broadcasts, whose results are
//     used in the block, ahead of multiply-adds whose results are only
//     used by the next iteration: in the last k step of the loop body all
//     four A values are broadcast before any multiply-add.
//
// So the last k step holds 8 sums, 2 B vectors, 4 broadcast values and a
// copy: 15 registers, none spilled. A 6-row tile (12 sums) would need 16
// even if the broadcasts were interleaved with the multiply-adds, and a
// 5-row one 18 as scheduled: both spill to the stack in every iteration.
// In a micro-benchmark of the kernel alone (on the AMD EPYC, Zen 5, where
// these were measured) 5×32 ran at 0.6× and 3×48 at 0.9× the speed of
// 4×32. The loop body does four k steps, with one bounds check per panel
// for all four (the panels are taken as arrays of four steps): 1.3× as
// fast as one step per iteration. Each A value is loaded and broadcast by
// SetElem and Broadcast1To16 (or Broadcast1To8) written out here, not by
// archsimd.BroadcastFloat32x16: an inlined function's instructions carry
// its own file's positions, which the scheduler uses to order otherwise
// equal instructions, and with them it loaded all the A values and B
// vectors of the body at its top and spilled most of them, at 0.6× the
// speed.

// goSIMDNames is the go-simd kernels' short names, for KernelNames.
var goSIMDNames = []string{"gosimd512", "gosimd"}

// goSIMDKernels lists the go-simd kernels this CPU runs, fastest first.
// archsimd.X86 checks what the archsimd methods used need, and that the
// OS saves the vector registers.
func goSIMDKernels() []*kernel {
	return goSIMDKernelsFor(archsimd.X86.AVX512(), archsimd.X86.AVX2() && archsimd.X86.FMA())
}

// goSIMDKernelsFor lists the go-simd kernels for a CPU with the given
// features: archsimd's AVX512 (F, CD, BW, DQ and VL, which it requires
// together) for Float32x16, AVX2 and FMA for Float32x8 (Broadcast1To8 and
// ExtendToUint32 are AVX2, MulAdd FMA), which both kernels' rowDot and
// dot use.
func goSIMDKernelsFor(avx512, avx2fma bool) []*kernel {
	var ks []*kernel
	if avx512 && avx2fma {
		ks = append(ks, goSIMD512Kernel)
	}
	if avx2fma {
		ks = append(ks, goSIMD256Kernel)
	}
	return ks
}

// goSIMD512Kernel and goSIMD256Kernel pack in Go (asmPack is off), and
// their rowDot and dot are go-simd too (rowdot_gosimd_amd64.go):
// everything they run is Go source.
var goSIMD512Kernel = &kernel{
	id: "gosimd512", name: "go-simd avx512 4x32", mr: 4, nr: 32,
	kc: 256, mc: 240, nc: 4096,
	full: goSIMD4x32,
	dot:  dotGoSIMD, dotRows: 2, dotK: 8,
	rowDot: rowDotGoSIMD, rowDot16: rowDotGoSIMDBF16,
}

var goSIMD256Kernel = &kernel{
	id: "gosimd", name: "go-simd avx2 4x16", mr: 4, nr: 16,
	kc: 256, mc: 144, nc: 4096,
	full: goSIMD4x16,
	dot:  dotGoSIMD, dotRows: 2, dotK: 8,
	rowDot: rowDotGoSIMD, rowDot16: rowDotGoSIMDBF16,
}

// goSIMD4x32 is the AVX-512 go-simd micro-kernel: it sets the 4×32 tile
// at c (row stride ldc) to the product of a packed 4-row A panel and kc
// rows of 32 B values ldb apart, plus beta·C (C unread when beta is 0).
// Each row of the tile is two Float32x16 sums; see above for the shape.
func goSIMD4x32(kc int, a, b []float32, ldb int, c []float32, ldc int, beta float32) {
	goSIMD4x32Bits(kc, a, b, ldb, c, ldc, math.Float32bits(beta))
}

// goSIMD4x32Bits is goSIMD4x32 with beta given by its bits. A float32
// argument arrives in a vector register, X0, and the compiler kept it
// there through the loop, which then lacked the 15th register and spilled
// a broadcast A value in every iteration; an integer waits in a
// general-purpose register instead. It is not inlined, where the compiler
// would see through the conversion.
//
//go:noinline
func goSIMD4x32Bits(kc int, a, b []float32, ldb int, c []float32, ldc int, betaBits uint32) {
	var c00, c01, c10, c11, c20, c21, c30, c31 archsimd.Float32x16
	var z archsimd.Float32x4
	a = a[:4*kc]
	if ldb == 32 {
		// The packed panel: 4 k steps at a time.
		b = b[:32*kc]
		for len(a) >= 16 && len(b) >= 128 {
			ap, bp := (*[16]float32)(a), (*[128]float32)(b)
			b0 := archsimd.LoadFloat32x16((*[16]float32)(bp[0:16]))
			b1 := archsimd.LoadFloat32x16((*[16]float32)(bp[16:32]))
			x := z.SetElem(0, ap[0]).Broadcast1To16()
			c00 = x.MulAdd(b0, c00)
			c01 = x.MulAdd(b1, c01)
			x = z.SetElem(0, ap[1]).Broadcast1To16()
			c10 = x.MulAdd(b0, c10)
			c11 = x.MulAdd(b1, c11)
			x = z.SetElem(0, ap[2]).Broadcast1To16()
			c20 = x.MulAdd(b0, c20)
			c21 = x.MulAdd(b1, c21)
			x = z.SetElem(0, ap[3]).Broadcast1To16()
			c30 = x.MulAdd(b0, c30)
			c31 = x.MulAdd(b1, c31)

			b0 = archsimd.LoadFloat32x16((*[16]float32)(bp[32:48]))
			b1 = archsimd.LoadFloat32x16((*[16]float32)(bp[48:64]))
			x = z.SetElem(0, ap[4]).Broadcast1To16()
			c00 = x.MulAdd(b0, c00)
			c01 = x.MulAdd(b1, c01)
			x = z.SetElem(0, ap[5]).Broadcast1To16()
			c10 = x.MulAdd(b0, c10)
			c11 = x.MulAdd(b1, c11)
			x = z.SetElem(0, ap[6]).Broadcast1To16()
			c20 = x.MulAdd(b0, c20)
			c21 = x.MulAdd(b1, c21)
			x = z.SetElem(0, ap[7]).Broadcast1To16()
			c30 = x.MulAdd(b0, c30)
			c31 = x.MulAdd(b1, c31)

			b0 = archsimd.LoadFloat32x16((*[16]float32)(bp[64:80]))
			b1 = archsimd.LoadFloat32x16((*[16]float32)(bp[80:96]))
			x = z.SetElem(0, ap[8]).Broadcast1To16()
			c00 = x.MulAdd(b0, c00)
			c01 = x.MulAdd(b1, c01)
			x = z.SetElem(0, ap[9]).Broadcast1To16()
			c10 = x.MulAdd(b0, c10)
			c11 = x.MulAdd(b1, c11)
			x = z.SetElem(0, ap[10]).Broadcast1To16()
			c20 = x.MulAdd(b0, c20)
			c21 = x.MulAdd(b1, c21)
			x = z.SetElem(0, ap[11]).Broadcast1To16()
			c30 = x.MulAdd(b0, c30)
			c31 = x.MulAdd(b1, c31)

			b0 = archsimd.LoadFloat32x16((*[16]float32)(bp[96:112]))
			b1 = archsimd.LoadFloat32x16((*[16]float32)(bp[112:128]))
			x = z.SetElem(0, ap[12]).Broadcast1To16()
			c00 = x.MulAdd(b0, c00)
			c01 = x.MulAdd(b1, c01)
			x = z.SetElem(0, ap[13]).Broadcast1To16()
			c10 = x.MulAdd(b0, c10)
			c11 = x.MulAdd(b1, c11)
			x = z.SetElem(0, ap[14]).Broadcast1To16()
			c20 = x.MulAdd(b0, c20)
			c21 = x.MulAdd(b1, c21)
			x = z.SetElem(0, ap[15]).Broadcast1To16()
			c30 = x.MulAdd(b0, c30)
			c31 = x.MulAdd(b1, c31)
			a, b = a[16:], b[128:]
		}
	}
	// The last k steps, and B read with a row stride: one k step at a time.
	for p := 0; len(a) >= 4; p++ {
		ap, bp := (*[4]float32)(a), (*[32]float32)(b[p*ldb:])
		b0 := archsimd.LoadFloat32x16((*[16]float32)(bp[0:16]))
		b1 := archsimd.LoadFloat32x16((*[16]float32)(bp[16:32]))
		x := z.SetElem(0, ap[0]).Broadcast1To16()
		c00 = x.MulAdd(b0, c00)
		c01 = x.MulAdd(b1, c01)
		x = z.SetElem(0, ap[1]).Broadcast1To16()
		c10 = x.MulAdd(b0, c10)
		c11 = x.MulAdd(b1, c11)
		x = z.SetElem(0, ap[2]).Broadcast1To16()
		c20 = x.MulAdd(b0, c20)
		c21 = x.MulAdd(b1, c21)
		x = z.SetElem(0, ap[3]).Broadcast1To16()
		c30 = x.MulAdd(b0, c30)
		c31 = x.MulAdd(b1, c31)
		a = a[4:]
	}
	if betaBits&^(1<<31) == 0 { // beta is ±0
		c00.Store((*[16]float32)(c[0*ldc+0:]))
		c01.Store((*[16]float32)(c[0*ldc+16:]))
		c10.Store((*[16]float32)(c[1*ldc+0:]))
		c11.Store((*[16]float32)(c[1*ldc+16:]))
		c20.Store((*[16]float32)(c[2*ldc+0:]))
		c21.Store((*[16]float32)(c[2*ldc+16:]))
		c30.Store((*[16]float32)(c[3*ldc+0:]))
		c31.Store((*[16]float32)(c[3*ldc+16:]))
	} else {
		bv := archsimd.BroadcastFloat32x16(math.Float32frombits(betaBits))
		r00 := (*[16]float32)(c[0*ldc+0:])
		bv.MulAdd(archsimd.LoadFloat32x16(r00), c00).Store(r00)
		r01 := (*[16]float32)(c[0*ldc+16:])
		bv.MulAdd(archsimd.LoadFloat32x16(r01), c01).Store(r01)
		r10 := (*[16]float32)(c[1*ldc+0:])
		bv.MulAdd(archsimd.LoadFloat32x16(r10), c10).Store(r10)
		r11 := (*[16]float32)(c[1*ldc+16:])
		bv.MulAdd(archsimd.LoadFloat32x16(r11), c11).Store(r11)
		r20 := (*[16]float32)(c[2*ldc+0:])
		bv.MulAdd(archsimd.LoadFloat32x16(r20), c20).Store(r20)
		r21 := (*[16]float32)(c[2*ldc+16:])
		bv.MulAdd(archsimd.LoadFloat32x16(r21), c21).Store(r21)
		r30 := (*[16]float32)(c[3*ldc+0:])
		bv.MulAdd(archsimd.LoadFloat32x16(r30), c30).Store(r30)
		r31 := (*[16]float32)(c[3*ldc+16:])
		bv.MulAdd(archsimd.LoadFloat32x16(r31), c31).Store(r31)
	}
	archsimd.ClearAVXUpperBits()
}

// goSIMD4x16 is goSIMD4x32 with AVX2 and FMA, on a 4×16 tile of Float32x8
// sums.
func goSIMD4x16(kc int, a, b []float32, ldb int, c []float32, ldc int, beta float32) {
	goSIMD4x16Bits(kc, a, b, ldb, c, ldc, math.Float32bits(beta))
}

// goSIMD4x16Bits is goSIMD4x32Bits for goSIMD4x16.
//
//go:noinline
func goSIMD4x16Bits(kc int, a, b []float32, ldb int, c []float32, ldc int, betaBits uint32) {
	var c00, c01, c10, c11, c20, c21, c30, c31 archsimd.Float32x8
	var z archsimd.Float32x4
	a = a[:4*kc]
	if ldb == 16 {
		// The packed panel: 4 k steps at a time.
		b = b[:16*kc]
		for len(a) >= 16 && len(b) >= 64 {
			ap, bp := (*[16]float32)(a), (*[64]float32)(b)
			b0 := archsimd.LoadFloat32x8((*[8]float32)(bp[0:8]))
			b1 := archsimd.LoadFloat32x8((*[8]float32)(bp[8:16]))
			x := z.SetElem(0, ap[0]).Broadcast1To8()
			c00 = x.MulAdd(b0, c00)
			c01 = x.MulAdd(b1, c01)
			x = z.SetElem(0, ap[1]).Broadcast1To8()
			c10 = x.MulAdd(b0, c10)
			c11 = x.MulAdd(b1, c11)
			x = z.SetElem(0, ap[2]).Broadcast1To8()
			c20 = x.MulAdd(b0, c20)
			c21 = x.MulAdd(b1, c21)
			x = z.SetElem(0, ap[3]).Broadcast1To8()
			c30 = x.MulAdd(b0, c30)
			c31 = x.MulAdd(b1, c31)

			b0 = archsimd.LoadFloat32x8((*[8]float32)(bp[16:24]))
			b1 = archsimd.LoadFloat32x8((*[8]float32)(bp[24:32]))
			x = z.SetElem(0, ap[4]).Broadcast1To8()
			c00 = x.MulAdd(b0, c00)
			c01 = x.MulAdd(b1, c01)
			x = z.SetElem(0, ap[5]).Broadcast1To8()
			c10 = x.MulAdd(b0, c10)
			c11 = x.MulAdd(b1, c11)
			x = z.SetElem(0, ap[6]).Broadcast1To8()
			c20 = x.MulAdd(b0, c20)
			c21 = x.MulAdd(b1, c21)
			x = z.SetElem(0, ap[7]).Broadcast1To8()
			c30 = x.MulAdd(b0, c30)
			c31 = x.MulAdd(b1, c31)

			b0 = archsimd.LoadFloat32x8((*[8]float32)(bp[32:40]))
			b1 = archsimd.LoadFloat32x8((*[8]float32)(bp[40:48]))
			x = z.SetElem(0, ap[8]).Broadcast1To8()
			c00 = x.MulAdd(b0, c00)
			c01 = x.MulAdd(b1, c01)
			x = z.SetElem(0, ap[9]).Broadcast1To8()
			c10 = x.MulAdd(b0, c10)
			c11 = x.MulAdd(b1, c11)
			x = z.SetElem(0, ap[10]).Broadcast1To8()
			c20 = x.MulAdd(b0, c20)
			c21 = x.MulAdd(b1, c21)
			x = z.SetElem(0, ap[11]).Broadcast1To8()
			c30 = x.MulAdd(b0, c30)
			c31 = x.MulAdd(b1, c31)

			b0 = archsimd.LoadFloat32x8((*[8]float32)(bp[48:56]))
			b1 = archsimd.LoadFloat32x8((*[8]float32)(bp[56:64]))
			x = z.SetElem(0, ap[12]).Broadcast1To8()
			c00 = x.MulAdd(b0, c00)
			c01 = x.MulAdd(b1, c01)
			x = z.SetElem(0, ap[13]).Broadcast1To8()
			c10 = x.MulAdd(b0, c10)
			c11 = x.MulAdd(b1, c11)
			x = z.SetElem(0, ap[14]).Broadcast1To8()
			c20 = x.MulAdd(b0, c20)
			c21 = x.MulAdd(b1, c21)
			x = z.SetElem(0, ap[15]).Broadcast1To8()
			c30 = x.MulAdd(b0, c30)
			c31 = x.MulAdd(b1, c31)
			a, b = a[16:], b[64:]
		}
	}
	// The last k steps, and B read with a row stride: one k step at a time.
	for p := 0; len(a) >= 4; p++ {
		ap, bp := (*[4]float32)(a), (*[16]float32)(b[p*ldb:])
		b0 := archsimd.LoadFloat32x8((*[8]float32)(bp[0:8]))
		b1 := archsimd.LoadFloat32x8((*[8]float32)(bp[8:16]))
		x := z.SetElem(0, ap[0]).Broadcast1To8()
		c00 = x.MulAdd(b0, c00)
		c01 = x.MulAdd(b1, c01)
		x = z.SetElem(0, ap[1]).Broadcast1To8()
		c10 = x.MulAdd(b0, c10)
		c11 = x.MulAdd(b1, c11)
		x = z.SetElem(0, ap[2]).Broadcast1To8()
		c20 = x.MulAdd(b0, c20)
		c21 = x.MulAdd(b1, c21)
		x = z.SetElem(0, ap[3]).Broadcast1To8()
		c30 = x.MulAdd(b0, c30)
		c31 = x.MulAdd(b1, c31)
		a = a[4:]
	}
	if betaBits&^(1<<31) == 0 { // beta is ±0
		c00.Store((*[8]float32)(c[0*ldc+0:]))
		c01.Store((*[8]float32)(c[0*ldc+8:]))
		c10.Store((*[8]float32)(c[1*ldc+0:]))
		c11.Store((*[8]float32)(c[1*ldc+8:]))
		c20.Store((*[8]float32)(c[2*ldc+0:]))
		c21.Store((*[8]float32)(c[2*ldc+8:]))
		c30.Store((*[8]float32)(c[3*ldc+0:]))
		c31.Store((*[8]float32)(c[3*ldc+8:]))
	} else {
		bv := archsimd.BroadcastFloat32x8(math.Float32frombits(betaBits))
		r00 := (*[8]float32)(c[0*ldc+0:])
		bv.MulAdd(archsimd.LoadFloat32x8(r00), c00).Store(r00)
		r01 := (*[8]float32)(c[0*ldc+8:])
		bv.MulAdd(archsimd.LoadFloat32x8(r01), c01).Store(r01)
		r10 := (*[8]float32)(c[1*ldc+0:])
		bv.MulAdd(archsimd.LoadFloat32x8(r10), c10).Store(r10)
		r11 := (*[8]float32)(c[1*ldc+8:])
		bv.MulAdd(archsimd.LoadFloat32x8(r11), c11).Store(r11)
		r20 := (*[8]float32)(c[2*ldc+0:])
		bv.MulAdd(archsimd.LoadFloat32x8(r20), c20).Store(r20)
		r21 := (*[8]float32)(c[2*ldc+8:])
		bv.MulAdd(archsimd.LoadFloat32x8(r21), c21).Store(r21)
		r30 := (*[8]float32)(c[3*ldc+0:])
		bv.MulAdd(archsimd.LoadFloat32x8(r30), c30).Store(r30)
		r31 := (*[8]float32)(c[3*ldc+8:])
		bv.MulAdd(archsimd.LoadFloat32x8(r31), c31).Store(r31)
	}
	archsimd.ClearAVXUpperBits()
}
