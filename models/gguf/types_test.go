package gguf

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/internal/float16"
)

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
		if want := float16.HalfBits(float32(d)); gotD != want {
			t.Fatalf("block %d: scale %#04x (%v), want %#04x (%v) = half(%v)", b, gotD, float16.HalfToFloat32(gotD), want, float16.HalfToFloat32(want), d)
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
		d16 := float64(float16.HalfToFloat32(uint16(out[b*q8Block]) | uint16(out[b*q8Block+1])<<8))
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

// TestQuantizeQ8_0RoundsAsGGML pins two blocks to the bytes that ggml's
// quantize_row_q8_0_ref writes, where its C arithmetic differs from other
// reasonable rules (TestQuantizeQ8_0AgainstFloat64 allows either neighbour
// next to a midpoint, so it cannot tell them apart):
//   - roundf rounds halves away from zero: with d = 127/127 = 1, ±2.5 and
//     ±0.5 become ±3 and ±1 (round-half-to-even would give ±2 and 0);
//   - q is roundf(x·id) with id = 1/d in float32: for amax 125, d =
//     0.98425198, id = 1.0160000, and x = 51.673225 (0x424eb162) gives
//     x·id = 52.5 exactly in float32, so 53, where x/d (52.499996) and
//     the exact quotient (52.4999966) give 52.
//
// The expected values were worked out by hand and checked with Python's
// float32 rounding (struct), not with this package.
func TestQuantizeQ8_0RoundsAsGGML(t *testing.T) {
	x := make([]float32, 2*QK8_0)
	copy(x, []float32{127, 2.5, -2.5, 0.5, -0.5, 1.5, -126.5, 0})
	copy(x[QK8_0:], []float32{-125, math.Float32frombits(0x424eb162), 62.5})
	out := make([]byte, 2*q8Block)
	if err := QuantizeQ8_0(out, x); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		block int
		scale uint16 // float16 bits of d
		q     []int8 // the block's first values; the rest are 0
	}{
		{0, 0x3c00, []int8{127, 3, -3, 1, -1, 2, -127}},
		// 62.5·1.016 = 63.5 (float32 63.500004): 64 either way.
		{1, 0x3be0, []int8{-127, 53, 64}},
	} {
		blk := out[c.block*q8Block : (c.block+1)*q8Block]
		if got := uint16(blk[0]) | uint16(blk[1])<<8; got != c.scale {
			t.Errorf("block %d: scale %#04x, want %#04x", c.block, got, c.scale)
		}
		for j := range QK8_0 {
			var want int8
			if j < len(c.q) {
				want = c.q[j]
			}
			if got := int8(blk[2+j]); got != want {
				t.Errorf("block %d value %d (%v): q %d, want %d", c.block, j, x[c.block*QK8_0+j], got, want)
			}
		}
	}
}
