// Package float16 converts between float32 and the two 16-bit
// floating-point formats that model files store, each held as a uint16:
// IEEE 754 half precision (binary16: a sign, 5 exponent bits biased by 15
// and 10 fraction bits; the F16 of safetensors and GGUF) and bfloat16 (the
// upper half of a float32's bits; their BF16). It is the one copy of these
// conversions that package safetensors (reading) and package gguf (reading
// and writing) both need.
//
// Widening to float32 is exact in both formats. Narrowing rounds to
// nearest, ties to even, as ggml, the x86 F16C instructions and PyTorch
// round, and keeps NaNs NaN (quiet).
package float16

import "math"

// HalfBits returns the IEEE 754 half-precision encoding of f rounded to
// nearest, ties to even: values beyond the largest half (65504) by half a
// unit or more become infinities, values below the smallest subnormal
// (2^-24) by half of it or less become zeros, NaNs stay NaNs (quiet).
// It is the conversion ggml and the x86 F16C instructions make.
func HalfBits(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	switch {
	case exp == 0xff: // infinity or NaN
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	case exp > 127+15: // at least 2^16: beyond every half
		return sign | 0x7c00
	}
	// The value is (2^23 + mant)·2^(exp−150) for a normal float32 (a
	// subnormal float32 is far below every half and rounds to zero).
	if exp == 0 {
		return sign
	}
	m := mant | 0x800000
	e := exp - 127 + 15 // the half's biased exponent
	if e >= 1 {
		// A normal half keeps 10 of the 23 fraction bits: drop 13,
		// rounding to nearest even. A carry out of the fraction moves
		// the exponent up by one (to infinity past 65504), which adding
		// the rounded bits to the biased exponent does by itself.
		h := uint32(e)<<10 | (m>>13)&0x3ff
		rest := m & 0x1fff
		if rest > 0x1000 || (rest == 0x1000 && h&1 == 1) {
			h++
		}
		if h >= 0x7c00 {
			return sign | 0x7c00
		}
		return sign | uint16(h)
	}
	// A subnormal half holds value/2^-24 as an integer: m·2^(exp−150+24).
	shift := uint32(14 - e) // 13 + (1 − e)
	if shift > 24 {
		return sign // below half the smallest subnormal
	}
	h := m >> shift
	rest := m & (1<<shift - 1)
	halfway := uint32(1) << (shift - 1)
	if rest > halfway || (rest == halfway && h&1 == 1) {
		h++ // may carry into the smallest normal, which is the right value
	}
	return sign | uint16(h)
}

// HalfToFloat32 returns the value of the IEEE 754 half-precision encoding
// h, exactly: every half, subnormals, infinities and NaNs included, is a
// float32.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // infinity or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// A subnormal half is mant·2^-24, exact in float32.
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// BF16Bits returns the bfloat16 encoding of f as ggml computes it: the
// upper 16 bits of the float32, rounded to nearest, ties to even (values
// past the largest bfloat16 by half a unit or more become infinities),
// and a NaN kept a (quiet) NaN.
func BF16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		// Truncating a NaN could clear every fraction bit left and give
		// an infinity: set the quiet bit.
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// BF16ToFloat32 returns the value of the bfloat16 encoding h, exactly.
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }
