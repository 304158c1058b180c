package gguf

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

// q8Reference applies the Q8_0 block rule in float64, independently of
// QuantizeQ8_0: d = max|x|/127 and q = x/d rounded half away from zero. It
// returns the exact q/d before rounding too, so the caller can tell where
// float32 arithmetic may round the other way.
func q8Reference(x []float64) (d float64, q []int, exact []float64) {
	var amax float64
	for _, v := range x {
		amax = math.Max(amax, math.Abs(v))
	}
	d = amax / 127
	q = make([]int, len(x))
	exact = make([]float64, len(x))
	for i, v := range x {
		if d != 0 {
			exact[i] = v / d
		}
		q[i] = int(math.Round(exact[i]))
	}
	return d, q, exact
}

func TestQuantizeQ8_0AgainstFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const blocks = 4000
	x := make([]float32, blocks*QK8_0)
	for b := range blocks {
		scale := math.Pow(2, float64(r.IntN(30)-20))
		for j := range QK8_0 {
			v := r.NormFloat64() * scale
			switch r.IntN(50) {
			case 0:
				v = 0
			case 1: // a value on a rounding midpoint of q, given the block's largest
				v = (float64(r.IntN(254)-127) + 0.5) * scale / 127
			}
			x[b*QK8_0+j] = float32(v)
		}
		if b == 7 {
			clear(x[b*QK8_0 : (b+1)*QK8_0]) // an all-zero block: d = 0, q = 0
		}
	}
	out := make([]byte, blocks*q8Block)
	if err := QuantizeQ8_0(out, x); err != nil {
		t.Fatal(err)
	}
	var near, checked int
	for b := range blocks {
		xs := make([]float64, QK8_0)
		for j := range xs {
			xs[j] = float64(x[b*QK8_0+j])
		}
		d, q, exact := q8Reference(xs)
		blk := out[b*q8Block : (b+1)*q8Block]
		gotD := uint16(blk[0]) | uint16(blk[1])<<8
		// The stored scale is d rounded to half precision: d itself is
		// computed in float32 first, which can move it across a half
		// midpoint only if d64 is within one float32 ulp of one.
		if want := HalfBits(float32(d)); gotD != want {
			t.Fatalf("block %d: scale %#04x (%v), want %#04x (%v) = half(%v)", b, gotD, HalfToFloat32(gotD), want, HalfToFloat32(want), d)
		}
		for j := range QK8_0 {
			got := int(int8(blk[2+j]))
			// float32's x·(1/d) differs from x/d by a few ulps; only
			// within that distance of a midpoint may q differ.
			frac := math.Abs(exact[j]) - math.Floor(math.Abs(exact[j]))
			if math.Abs(frac-0.5) < 1e-5 {
				near++
				if got-q[j] > 1 || q[j]-got > 1 {
					t.Fatalf("block %d value %d (%v): q %d, want %d or a neighbour (exact %v)", b, j, x[b*QK8_0+j], got, q[j], exact[j])
				}
				continue
			}
			checked++
			if got != q[j] {
				t.Fatalf("block %d value %d (%v): q %d, want %d (x/d = %v)", b, j, x[b*QK8_0+j], got, q[j], exact[j])
			}
		}
	}
	if checked < blocks*QK8_0*9/10 {
		t.Fatalf("only %d of %d values checked exactly", checked, blocks*QK8_0)
	}
	t.Logf("%d values equal the float64 rule; %d within 1e-5 of a midpoint (allowed either neighbour)", checked, near)

	// Dequantized, each value is within half a step (d/2) of the input,
	// plus what rounding the scale to half precision moved q·d (at most
	// 127 times the scale's error: tiny blocks have subnormal scales).
	back := make([]float32, len(x))
	if err := DequantizeQ8_0(back, out); err != nil {
		t.Fatal(err)
	}
	for b := range blocks {
		d16 := float64(HalfToFloat32(uint16(out[b*q8Block]) | uint16(out[b*q8Block+1])<<8))
		var amax float64
		for j := range QK8_0 {
			amax = math.Max(amax, math.Abs(float64(x[b*QK8_0+j])))
		}
		d := amax / 127
		bound := d/2*(1+1e-6) + 127*math.Abs(d16-d)
		for j := range QK8_0 {
			i := b*QK8_0 + j
			if err := math.Abs(float64(back[i]) - float64(x[i])); err > bound {
				t.Fatalf("value %d: %v dequantized to %v, error %v > %v (d %v, stored %v)", i, x[i], back[i], err, bound, d, d16)
			}
		}
	}
}

func TestQuantizeQ8_0Errors(t *testing.T) {
	if err := QuantizeQ8_0(make([]byte, 34), make([]float32, 31)); err == nil {
		t.Error("31 values quantized without an error")
	}
	if err := QuantizeQ8_0(make([]byte, 33), make([]float32, 32)); err == nil {
		t.Error("a 33-byte destination for one block accepted")
	}
	if err := DequantizeQ8_0(make([]float32, 32), make([]byte, 35)); err == nil {
		t.Error("35 bytes dequantized without an error")
	}
}

func TestParseType(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Type
	}{{"f32", F32}, {"F16", F16}, {"bf16", BF16}, {"Q8_0", Q8_0}} {
		got, err := ParseType(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseType(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
		if back, _ := ParseType(got.String()); back != got {
			t.Errorf("%v.String() = %q does not parse back", got, got.String())
		}
	}
	if _, err := ParseType("q4_0"); err == nil {
		t.Error("ParseType(q4_0) accepted")
	}
}
