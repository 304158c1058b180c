package float16

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// halfValue decodes a half-precision encoding in float64 from the
// definition (sign, 5-bit exponent biased by 15, 10-bit fraction), apart
// from HalfToFloat32's bit manipulation.
func halfValue(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e := int(h>>10) & 31
	m := float64(h & 1023)
	switch e {
	case 31:
		if m != 0 {
			return math.NaN()
		}
		return sign * math.Inf(1)
	case 0:
		return sign * m / 1024 * math.Pow(2, -14)
	}
	return sign * (1 + m/1024) * math.Pow(2, float64(e-15))
}

// nearestHalf returns the encoding IEEE rounding to nearest, ties to even,
// gives x (finite), found among the positive finite halves (sorted by
// value) by comparing distances in float64, where they are exact.
func nearestHalf(x float64, pos []uint16) uint16 {
	var sign uint16
	if math.Signbit(x) {
		sign, x = 0x8000, -x
	}
	// Beyond the largest finite half (65504) by half its unit (32/2) or
	// more, the result is infinity.
	if x >= 65504+16 {
		return sign | 0x7c00
	}
	i := sort.Search(len(pos), func(i int) bool { return halfValue(pos[i]) >= x })
	if i == len(pos) {
		return sign | pos[len(pos)-1]
	}
	hi := pos[i]
	if i == 0 || halfValue(hi) == x {
		return sign | hi
	}
	lo := pos[i-1]
	dl, dh := x-halfValue(lo), halfValue(hi)-x
	switch {
	case dl < dh:
		return sign | lo
	case dh < dl:
		return sign | hi
	case lo&1 == 0:
		return sign | lo
	}
	return sign | hi
}

func positiveHalves() []uint16 {
	var pos []uint16
	for h := 0; h < 0x7c00; h++ {
		pos = append(pos, uint16(h))
	}
	return pos // already in increasing order of value
}

// TestHalfToFloat32AllEncodings checks every encoding against the
// textbook formula evaluated in float64, signed zeros included.
func TestHalfToFloat32AllEncodings(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		got, want := float64(HalfToFloat32(uint16(h))), halfValue(uint16(h))
		if math.IsNaN(want) {
			if !math.IsNaN(got) {
				t.Fatalf("HalfToFloat32(%#04x) = %v, want NaN", h, got)
			}
			continue
		}
		if got != want || math.Signbit(got) != math.Signbit(want) {
			t.Fatalf("HalfToFloat32(%#04x) = %v, want %v", h, got, want)
		}
	}
}

func TestHalfBitsRoundsToNearestEven(t *testing.T) {
	pos := positiveHalves()
	check := func(f float32) {
		t.Helper()
		want := nearestHalf(float64(f), pos)
		if got := HalfBits(f); got != want {
			t.Fatalf("HalfBits(%v [%#08x]) = %#04x (%v), want %#04x (%v)", f, math.Float32bits(f), got, halfValue(got), want, halfValue(want))
		}
	}
	// Every half exactly, and the midpoints between neighbours (ties),
	// and the float32s just either side of them.
	for i, h := range pos {
		v := float32(halfValue(h))
		check(v)
		check(-v)
		if i+1 < len(pos) {
			mid := float32((halfValue(h) + halfValue(pos[i+1])) / 2) // exact in float32
			for _, f := range []float32{mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1e9)} {
				check(f)
				check(-f)
			}
		}
	}
	// Around overflow and underflow, and random values at every scale.
	for _, f := range []float32{65504, 65519.99, 65520, 65536, 1e10, math.MaxFloat32, 0x1p-24, 0x1p-25, 0x1.000002p-25, 0x1p-26, 1e-30, math.SmallestNonzeroFloat32, 0} {
		check(f)
		check(-f)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		f := math.Float32frombits(r.Uint32())
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		check(f)
	}
	for range 200000 {
		check(float32(r.NormFloat64() * math.Pow(2, float64(r.IntN(40)-25))))
	}
	if got := HalfBits(float32(math.Inf(-1))); got != 0xfc00 {
		t.Errorf("HalfBits(-Inf) = %#04x, want 0xfc00", got)
	}
	if got := HalfBits(float32(math.NaN())); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("HalfBits(NaN) = %#04x, not a NaN", got)
	}
}

// nearestBF16 rounds x to bfloat16 (8 fraction bits below the float32's
// exponent) to nearest, ties to even, computed on the value in float64.
func nearestBF16(f float32) uint16 {
	x := float64(f)
	if x == 0 {
		return uint16(math.Float32bits(f) >> 16)
	}
	lo := math.Float32frombits(math.Float32bits(f) &^ 0xffff) // truncated toward zero
	// The next bfloat16 away from zero; past the largest finite one it
	// is infinity, which the rounding treats as 2^128.
	next := float64(math.Float32frombits(math.Float32bits(lo) + 0x10000))
	if math.IsInf(next, 0) {
		next = math.Copysign(0x1p128, x)
	}
	dl, dh := math.Abs(x-float64(lo)), math.Abs(next-x)
	bits := math.Float32bits(lo) >> 16
	if dh < dl || (dh == dl && bits&1 == 1) {
		bits++
	}
	return uint16(bits)
}

func TestBF16Bits(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 300000 {
		f := math.Float32frombits(r.Uint32())
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		want := nearestBF16(f)
		if got := BF16Bits(f); got != want {
			t.Fatalf("BF16Bits(%v [%#08x]) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
		if back := BF16ToFloat32(want); math.Float32bits(back) != uint32(want)<<16 {
			t.Fatalf("BF16ToFloat32(%#04x) = %v", want, back)
		}
	}
	if got := BF16Bits(float32(math.NaN())); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("BF16Bits(NaN) = %#04x, not a NaN", got)
	}
	if got := BF16Bits(math.MaxFloat32); got != 0x7f80 {
		t.Errorf("BF16Bits(MaxFloat32) = %#04x, want infinity 0x7f80 (rounds up)", got)
	}
}
