package bf16

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// roundRef rounds f to bfloat16 with math/big (8 significant bits, ties to
// even), independently of the bit trick of Round; NaN is handled by the
// caller.
func roundRef(f float32) float32 {
	if math.IsInf(float64(f), 0) || f == 0 {
		return f
	}
	if math.Abs(float64(f)) < 0x1p-126 {
		// Subnormal: a fixed quantum of 2^-133 (float32's 2^-149 times
		// the 2^16 of the dropped half) rather than 8 significant bits.
		return float32(math.RoundToEven(float64(f)*0x1p133) * 0x1p-133)
	}
	x := new(big.Float).SetPrec(8).SetMode(big.ToNearestEven).SetFloat64(float64(f))
	r, _ := x.Float64()
	// Values beyond the largest bfloat16 (0x7f7f, 3.3895e38) round to
	// infinity when at or past halfway to 2^128, which big.Float, having
	// no exponent limit, gives as 2^128 itself.
	return float32(r)
}

func TestRoundCases(t *testing.T) {
	maxBF := math.Float32frombits(0x7f7f0000)
	tests := []struct {
		name string
		in   uint32 // float32 bits
		want uint16
	}{
		{"one", 0x3f800000, 0x3f80},
		{"exact", 0x40490000, 0x4049},
		{"below half rounds down", 0x3f807fff, 0x3f80},
		{"half, even stays", 0x3f808000, 0x3f80},
		{"half, odd rounds up", 0x3f818000, 0x3f82},
		{"above half rounds up", 0x3f808001, 0x3f81},
		{"negative half, odd", 0xbf818000, 0xbf82},
		{"negative zero", 0x80000000, 0x8000},
		{"smallest subnormal flushes to zero", 0x00000001, 0x0000},
		{"subnormal half rounds to even", 0x00018000, 0x0002},
		{"largest bfloat16", math.Float32bits(maxBF), 0x7f7f},
		{"just under halfway to infinity", 0x7f7f7fff, 0x7f7f},
		{"halfway to infinity", 0x7f7f8000, 0x7f80},
		{"largest float32 rounds to infinity", 0x7f7fffff, 0x7f80},
		{"negative overflow", 0xff7fffff, 0xff80},
		{"infinity", 0x7f800000, 0x7f80},
		{"minus infinity", 0xff800000, 0xff80},
	}
	for _, tt := range tests {
		if got := Round(math.Float32frombits(tt.in)); got != tt.want {
			t.Errorf("%s: Round(%#08x) = %#04x, want %#04x", tt.name, tt.in, got, tt.want)
		}
	}
	// NaNs stay NaN with their sign, payloads in the low half included.
	for _, in := range []uint32{0x7fc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0x7f80ffff, 0xffc00001} {
		got := Round(math.Float32frombits(in))
		if w := Widen(got); !math.IsNaN(float64(w)) || got>>15 != uint16(in>>31) {
			t.Errorf("Round(NaN %#08x) = %#04x (%g), want a NaN of the same sign", in, got, w)
		}
	}
}

// TestRoundAgainstBig compares Round with math/big over random bit
// patterns and over every rounding boundary near random values.
func TestRoundAgainstBig(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(u uint32) {
		f := math.Float32frombits(u)
		if math.IsNaN(float64(f)) {
			return
		}
		got, want := Widen(Round(f)), roundRef(f)
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("Round(%#08x = %g) widens to %g (%#08x), math/big says %g", u, f, got, math.Float32bits(got), want)
		}
	}
	for range 200000 {
		u := rng.Uint32()
		check(u)
		// The boundaries of u's bfloat16 neighbourhood.
		for _, low := range []uint32{0x7fff, 0x8000, 0x8001, 0xffff, 0} {
			check(u&0xffff0000 | low)
		}
	}
}

func TestWidenExact(t *testing.T) {
	for h := range 1 << 16 {
		f := Widen(uint16(h))
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Fatalf("Widen(%#04x) = %#08x", h, math.Float32bits(f))
		}
		if !math.IsNaN(float64(f)) && Round(f) != uint16(h) {
			t.Fatalf("Round(Widen(%#04x)) = %#04x, want it back", h, Round(f))
		}
	}
}

// TestSlices checks every implementation's slice conversions, on lengths
// around their block sizes, against Round and Widen element by element,
// on random bit patterns (NaNs included) and random ties.
func TestSlices(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, fn := range All() {
		for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000} {
			src := make([]float32, n)
			for i := range src {
				u := rng.Uint32()
				if i%3 == 0 {
					u = u&0xffff0000 | 0x8000
				}
				src[i] = math.Float32frombits(u)
			}
			h := make([]uint16, n+1)
			h[n] = 0xbeef // past the end: must stay
			fn.FromFloat32(h[:n], src)
			back := make([]float32, n)
			fn.ToFloat32(back, h[:n])
			acc := make([]float32, n)
			for i := range acc {
				acc[i] = float32(i)
			}
			fn.AddTo(acc, h[:n])
			for i := range src {
				w := Widen(Round(src[i]))
				if h[i] != Round(src[i]) || math.Float32bits(back[i]) != math.Float32bits(w) {
					t.Fatalf("%s, n=%d, element %d: %#08x rounds to %#04x and widens to %#08x; want %#04x, %#08x",
						fn.Name, n, i, math.Float32bits(src[i]), h[i], math.Float32bits(back[i]), Round(src[i]), math.Float32bits(w))
				}
				if want := float32(i) + w; math.Float32bits(acc[i]) != math.Float32bits(want) && !(math.IsNaN(float64(want)) && math.IsNaN(float64(acc[i]))) {
					t.Fatalf("%s, n=%d, element %d: AddTo gave %g, want %g", fn.Name, n, i, acc[i], want)
				}
			}
			if h[n] != 0xbeef {
				t.Fatalf("%s, n=%d: FromFloat32 wrote past its destination", fn.Name, n)
			}
		}
	}
}
