// Package bf16 converts between float32 and bfloat16, the storage type of
// the CPU backend's frozen weights (backend.BFloat16). A bfloat16 is held
// as a uint16: the top half of a float32's bits, sign, exponent and seven
// fraction bits. Widening to float32 is exact (the low half is zero);
// narrowing rounds to nearest, ties to even, keeps NaNs NaN (quieted, sign
// kept) and infinities infinite, and sends values past the largest
// bfloat16 (about 3.39e38), halfway included, to infinity, as PyTorch's
// conversion does.
//
// The slice functions are loops that the Go compiler turns into straight
// scalar code; callers split big slices over goroutines themselves.
package bf16

import "math"

// Round returns the bfloat16 nearest to f, ties to even; see the package
// documentation for NaN and overflow.
func Round(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		// NaN: truncating could clear every fraction bit left and give
		// an infinity, so set the quiet bit.
		return uint16(u>>16) | 0x0040
	}
	// Adding 0x7fff rounds up exactly the values above halfway; the low
	// bit of the kept half adds one more at halfway when it is odd. A
	// carry out of the fraction bumps the exponent, which is right (and
	// turns the largest finite values into infinity).
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// Widen returns the float32 whose value h holds, exactly.
func Widen(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// FromFloat32 sets dst[i] = Round(src[i]) for i < len(dst); src must be
// at least as long.
func FromFloat32(dst []uint16, src []float32) {
	src = src[:len(dst)]
	for i, f := range src {
		dst[i] = Round(f)
	}
}

// ToFloat32 sets dst[i] = Widen(src[i]) for i < len(dst); src must be at
// least as long.
func ToFloat32(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = Widen(h)
	}
}

// AddTo sets dst[i] += Widen(src[i]) for i < len(dst); src must be at
// least as long.
func AddTo(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] += Widen(h)
	}
}
