//go:build !noasm

package gemm

import "github.com/klauspost/cpuid/v2"

// The AVX2 packing routines in pack_amd64.s; see there for what each
// computes. They trust their arguments, so only the checked wrappers
// below call them.
//
//go:noescape
func transpose8(dst, src *float32, ld, w, n int)

//go:noescape
func transpose4(dst, src *float32, ld, w, n int)

//go:noescape
func copyRows(dst, src *float32, ld, w, n int)

// packAsm is whether the AVX2 packing routines can run here.
var packAsm = cpuid.CPU.Supports(cpuid.AVX2)

// interleaveFast transposes the leading rows of the source, 8 or 4 at a
// time, over the leading multiple of 8 of kc, with the AVX2 routines. It
// returns how many rows (r) and k steps (kd) it did, leaving the rest to
// the caller; alpha is not applied.
func interleaveFast(d []float32, w int, src []float32, off, ld, rows, kc int) (r, kd int) {
	kd = kc &^ 7
	if !packAsm || kd == 0 {
		return 0, 0
	}
	for ; r+8 <= rows; r += 8 {
		_ = src[off+(r+7)*ld+kd-1]
		_ = d[(kd-1)*w+r+7]
		transpose8(&d[r], &src[off+r*ld], ld, w, kd)
	}
	for ; r+4 <= rows; r += 4 {
		_ = src[off+(r+3)*ld+kd-1]
		_ = d[(kd-1)*w+r+3]
		transpose4(&d[r], &src[off+r*ld], ld, w, kd)
	}
	return r, kd
}

// copyRowsFast copies n rows of w values (w a multiple of 4) from src at
// off with stride ld into the panel d, and reports whether it could.
func copyRowsFast(d []float32, w int, src []float32, off, ld, n int) bool {
	if !packAsm || w%4 != 0 || w == 0 || n == 0 {
		return false
	}
	_ = src[off+(n-1)*ld+w-1]
	_ = d[n*w-1]
	copyRows(&d[0], &src[off], ld, w, n)
	return true
}

// The bfloat16 twins of the routines above, in pack_amd64.s.
//
//go:noescape
func transpose8h(dst *float32, src *uint16, ld, w, n int)

//go:noescape
func transpose4h(dst *float32, src *uint16, ld, w, n int)

//go:noescape
func copyRowsh(dst *float32, src *uint16, ld, w, n int)

// interleaveFastBF16 is interleaveFast for a bfloat16 source, widening.
func interleaveFastBF16(d []float32, w int, src []uint16, off, ld, rows, kc int) (r, kd int) {
	kd = kc &^ 7
	if !packAsm || kd == 0 {
		return 0, 0
	}
	for ; r+8 <= rows; r += 8 {
		_ = src[off+(r+7)*ld+kd-1]
		_ = d[(kd-1)*w+r+7]
		transpose8h(&d[r], &src[off+r*ld], ld, w, kd)
	}
	for ; r+4 <= rows; r += 4 {
		_ = src[off+(r+3)*ld+kd-1]
		_ = d[(kd-1)*w+r+3]
		transpose4h(&d[r], &src[off+r*ld], ld, w, kd)
	}
	return r, kd
}

// widenRowsFast is copyRowsFast for a bfloat16 source, widening.
func widenRowsFast(d []float32, w int, src []uint16, off, ld, n int) bool {
	if !packAsm || w%4 != 0 || w == 0 || n == 0 {
		return false
	}
	_ = src[off+(n-1)*ld+w-1]
	_ = d[n*w-1]
	copyRowsh(&d[0], &src[off], ld, w, n)
	return true
}
