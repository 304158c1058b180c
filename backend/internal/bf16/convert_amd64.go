//go:build !noasm

package bf16

import "github.com/klauspost/cpuid/v2"

// The AVX2 loops in convert_amd64.s take whole blocks of 16 (round) or 8
// (widen) values; the wrappers below check the lengths and finish the
// rest in Go.
//
//go:noescape
func roundAVX2(dst *uint16, src *float32, n int)

//go:noescape
func widenAVX2(dst *float32, src *uint16, n int)

//go:noescape
func addWidenAVX2(dst *float32, src *uint16, n int)

// simd is the AVX2 implementation where the CPU (and OS) run AVX2.
var simd = func() *Funcs {
	if !cpuid.CPU.Supports(cpuid.AVX2) {
		return nil
	}
	return &Funcs{Name: "avx2", FromFloat32: fromFloat32AVX2, ToFloat32: toFloat32AVX2, AddTo: addToAVX2}
}()

func fromFloat32AVX2(dst []uint16, src []float32) {
	src = src[:len(dst)]
	n := len(dst) &^ 15
	if n > 0 {
		roundAVX2(&dst[0], &src[0], n)
	}
	fromFloat32Go(dst[n:], src[n:])
}

func toFloat32AVX2(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := len(dst) &^ 7
	if n > 0 {
		widenAVX2(&dst[0], &src[0], n)
	}
	toFloat32Go(dst[n:], src[n:])
}

func addToAVX2(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := len(dst) &^ 7
	if n > 0 {
		addWidenAVX2(&dst[0], &src[0], n)
	}
	addToGo(dst[n:], src[n:])
}
