//go:build goexperiment.simd && amd64

package gemm

import (
	"simd/archsimd"

	"github.com/sora-go/sora/backend/internal/bf16"
)

// The go-simd kernels' rowDot, rowDot16 and dot, in Go with
// simd/archsimd (see kernel_gosimd_amd64.go), on Float32x8 vectors with
// AVX2 and FMA. Each sum is a vector of eight partial sums over k, added
// up at the end; the last k mod 8 values are summed in scalar code, so
// that nothing past a row's k values is read.

// rowDotGoSIMD is the go-simd rowDot: two passes of four rows of Bᵀ, each
// with four vector sums and the row of A loaded once per eight k values.
// Four sums use 9 of the 15 vector registers with room to spare; eight
// would not fit, as the compiler loads all eight rows' vectors before the
// first multiply-add (see kernel_gosimd_amd64.go).
func rowDotGoSIMD(k int, a, bt []float32, ldbt int, out []float32) {
	a, out = a[:k], out[:rowDotN]
	k8 := k &^ 7
	for j := 0; j < rowDotN; j += 4 {
		var s0, s1, s2, s3 archsimd.Float32x8
		b := bt[j*ldbt : (j+3)*ldbt+k]
		p := 0
		for ; p+32 <= k; p += 32 {
			x := (*[32]float32)(a[p:])
			y0 := (*[32]float32)(b[p:])
			y1 := (*[32]float32)(b[ldbt+p:])
			y2 := (*[32]float32)(b[2*ldbt+p:])
			y3 := (*[32]float32)(b[3*ldbt+p:])
			for q := 0; q < 32; q += 8 {
				xv := archsimd.LoadFloat32x8((*[8]float32)(x[q:]))
				s0 = archsimd.LoadFloat32x8((*[8]float32)(y0[q:])).MulAdd(xv, s0)
				s1 = archsimd.LoadFloat32x8((*[8]float32)(y1[q:])).MulAdd(xv, s1)
				s2 = archsimd.LoadFloat32x8((*[8]float32)(y2[q:])).MulAdd(xv, s2)
				s3 = archsimd.LoadFloat32x8((*[8]float32)(y3[q:])).MulAdd(xv, s3)
			}
		}
		for ; p < k8; p += 8 {
			xv := archsimd.LoadFloat32x8((*[8]float32)(a[p:]))
			s0 = archsimd.LoadFloat32x8((*[8]float32)(b[p:])).MulAdd(xv, s0)
			s1 = archsimd.LoadFloat32x8((*[8]float32)(b[ldbt+p:])).MulAdd(xv, s1)
			s2 = archsimd.LoadFloat32x8((*[8]float32)(b[2*ldbt+p:])).MulAdd(xv, s2)
			s3 = archsimd.LoadFloat32x8((*[8]float32)(b[3*ldbt+p:])).MulAdd(xv, s3)
		}
		r0, r1, r2, r3 := sum8(s0), sum8(s1), sum8(s2), sum8(s3)
		for ; p < k; p++ {
			x := a[p]
			r0 += x * b[p]
			r1 += x * b[ldbt+p]
			r2 += x * b[2*ldbt+p]
			r3 += x * b[3*ldbt+p]
		}
		out[j], out[j+1], out[j+2], out[j+3] = r0, r1, r2, r3
	}
	archsimd.ClearAVXUpperBits()
}

// rowDotGoSIMDBF16 is rowDotGoSIMD for a bfloat16 Bᵀ, widening eight
// values at a time: zero-extended to 32 bits and shifted into the high
// half, which is exactly the float32 they stand for.
func rowDotGoSIMDBF16(k int, a []float32, bt []uint16, ldbt int, out []float32) {
	a, out = a[:k], out[:rowDotN]
	k8 := k &^ 7
	for j := 0; j < rowDotN; j += 4 {
		var s0, s1, s2, s3 archsimd.Float32x8
		b := bt[j*ldbt : (j+3)*ldbt+k]
		p := 0
		for ; p+32 <= k; p += 32 {
			x := (*[32]float32)(a[p:])
			y0 := (*[32]uint16)(b[p:])
			y1 := (*[32]uint16)(b[ldbt+p:])
			y2 := (*[32]uint16)(b[2*ldbt+p:])
			y3 := (*[32]uint16)(b[3*ldbt+p:])
			for q := 0; q < 32; q += 8 {
				xv := archsimd.LoadFloat32x8((*[8]float32)(x[q:]))
				s0 = widen8((*[8]uint16)(y0[q:])).MulAdd(xv, s0)
				s1 = widen8((*[8]uint16)(y1[q:])).MulAdd(xv, s1)
				s2 = widen8((*[8]uint16)(y2[q:])).MulAdd(xv, s2)
				s3 = widen8((*[8]uint16)(y3[q:])).MulAdd(xv, s3)
			}
		}
		for ; p < k8; p += 8 {
			xv := archsimd.LoadFloat32x8((*[8]float32)(a[p:]))
			s0 = widen8((*[8]uint16)(b[p:])).MulAdd(xv, s0)
			s1 = widen8((*[8]uint16)(b[ldbt+p:])).MulAdd(xv, s1)
			s2 = widen8((*[8]uint16)(b[2*ldbt+p:])).MulAdd(xv, s2)
			s3 = widen8((*[8]uint16)(b[3*ldbt+p:])).MulAdd(xv, s3)
		}
		r0, r1, r2, r3 := sum8(s0), sum8(s1), sum8(s2), sum8(s3)
		for ; p < k; p++ {
			x := a[p]
			r0 += x * bf16.Widen(b[p])
			r1 += x * bf16.Widen(b[ldbt+p])
			r2 += x * bf16.Widen(b[2*ldbt+p])
			r3 += x * bf16.Widen(b[3*ldbt+p])
		}
		out[j], out[j+1], out[j+2], out[j+3] = r0, r1, r2, r3
	}
	archsimd.ClearAVXUpperBits()
}

// dotGoSIMD is the go-simd dot: a 2×4 block of dot products of two rows
// of A (lda apart) with four rows of Bᵀ (ldbt apart) over k values, a
// multiple of 8, into out, row-major. Its eight vector sums, the two A
// and four Bᵀ vectors of a k step and the copy of a Bᵀ vector that its
// second use needs take all 15 vector registers (see
// kernel_gosimd_amd64.go).
func dotGoSIMD(k int, a []float32, lda int, bt []float32, ldbt int, out []float32) {
	a = a[:lda+k]
	bt = bt[:3*ldbt+k]
	out = out[:8]
	var s00, s01, s02, s03, s10, s11, s12, s13 archsimd.Float32x8
	for p := 0; p+8 <= k; p += 8 {
		x0 := archsimd.LoadFloat32x8((*[8]float32)(a[p:]))
		x1 := archsimd.LoadFloat32x8((*[8]float32)(a[lda+p:]))
		y := archsimd.LoadFloat32x8((*[8]float32)(bt[p:]))
		s00 = y.MulAdd(x0, s00)
		s10 = y.MulAdd(x1, s10)
		y = archsimd.LoadFloat32x8((*[8]float32)(bt[ldbt+p:]))
		s01 = y.MulAdd(x0, s01)
		s11 = y.MulAdd(x1, s11)
		y = archsimd.LoadFloat32x8((*[8]float32)(bt[2*ldbt+p:]))
		s02 = y.MulAdd(x0, s02)
		s12 = y.MulAdd(x1, s12)
		y = archsimd.LoadFloat32x8((*[8]float32)(bt[3*ldbt+p:]))
		s03 = y.MulAdd(x0, s03)
		s13 = y.MulAdd(x1, s13)
	}
	out[0], out[1], out[2], out[3] = sum8(s00), sum8(s01), sum8(s02), sum8(s03)
	out[4], out[5], out[6], out[7] = sum8(s10), sum8(s11), sum8(s12), sum8(s13)
	archsimd.ClearAVXUpperBits()
}

// widen8 loads eight bfloat16 values as float32.
func widen8(h *[8]uint16) archsimd.Float32x8 {
	return archsimd.LoadUint16x8(h).ExtendToUint32().ShiftAllLeft(16).AsFloat32x8()
}

// sum8 adds up the eight elements of v.
func sum8(v archsimd.Float32x8) float32 {
	var t [8]float32
	v.Store(&t)
	return (t[0] + t[1]) + (t[2] + t[3]) + ((t[4] + t[5]) + (t[6] + t[7]))
}
