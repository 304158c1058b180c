package vec

import (
	"math"
	"testing"
)

// TestGELUSpecialValues checks the GELU family of every set, plain and
// streaming, where the result is exact whatever the approximation: NaN
// (any payload) gives NaN; far beyond the tails (|x| ≥ 14, infinities
// included) GELU and GELUTanh give x or 0 and the derivatives dy·1 or
// dy·0 (NaN for an infinite dy); ±0 gives 0 and dy/2; a subnormal x
// gives x/2 to the subnormal spacing, and derivative dy/2. The sets
// evaluate their tails differently (the accuracy tests measure them), and
// vec_test.go compares them with Go elsewhere, within tolerances that
// are absolute where the results are small.
func TestGELUSpecialValues(t *testing.T) {
	bits := func(b uint32) float32 { return math.Float32frombits(b) }
	nans := []float32{bits(0x7fc00000), bits(0xffc00000), bits(0x7f800001), bits(0xff800001),
		bits(0x7fbfffff), bits(0xffffffff), bits(0x7fc0000f), bits(0x7f80000a)}
	inf := float32(math.Inf(1))
	far := []float32{14, 20, 1000, 1e30, math.MaxFloat32, inf}
	subs := []float32{bits(1), bits(0x000003ff), bits(0x007fffff), 0x1p-126}
	dys := []float32{1, -2, 0.375, inf, -inf, float32(math.NaN())}
	type fn struct {
		name string
		fwd  func(k *Kernels) func(dst, x []float32)
		grad func(k *Kernels) func(dst, x, dy []float32)
	}
	fns := []fn{
		{name: "GELU", fwd: func(k *Kernels) func(dst, x []float32) { return k.GELU }},
		{name: "GELUTanh", fwd: func(k *Kernels) func(dst, x []float32) { return k.GELUTanh }},
		{name: "GELUGrad", grad: func(k *Kernels) func(dst, x, dy []float32) { return k.GELUGrad }},
		{name: "GELUTanhGrad", grad: func(k *Kernels) func(dst, x, dy []float32) { return k.GELUTanhGrad }},
	}
	// cases pairs each x with what the result must be for dy (want's
	// second argument; the forward ignores it).
	type tcase struct {
		x    float32
		want func(dy float32) (lo, hi float32) // inclusive; NaN: want NaN
	}
	nan := float32(math.NaN())
	exactly := func(v float32) func(float32) (float32, float32) {
		return func(float32) (float32, float32) { return v, v }
	}
	var fwdCases, gradCases []tcase
	for _, x := range nans {
		fwdCases = append(fwdCases, tcase{x, exactly(nan)})
		gradCases = append(gradCases, tcase{x, exactly(nan)})
	}
	for _, x := range far {
		fwdCases = append(fwdCases, tcase{x, exactly(x)}, tcase{-x, exactly(0)})
		gradCases = append(gradCases,
			tcase{x, func(dy float32) (float32, float32) { return dy, dy }},
			tcase{-x, func(dy float32) (float32, float32) { v := dy * 0; return v, v }})
	}
	for _, x := range append(subs, 0) {
		for _, s := range []float32{x, -x} {
			h := float64(s) / 2
			lo, hi := float32(h-0x1p-149), float32(h+0x1p-149)
			fwdCases = append(fwdCases, tcase{s, func(float32) (float32, float32) { return min(lo, hi), max(lo, hi) }})
			gradCases = append(gradCases, tcase{s, func(dy float32) (float32, float32) { return dy / 2, dy / 2 }})
		}
	}
	sets := withTwins(All())
	check := func(t *testing.T, k *Kernels, name string, x, dy, got float32, want func(float32) (float32, float32)) {
		t.Helper()
		lo, hi := want(dy)
		if lo != lo {
			if got == got {
				t.Errorf("%s (%s) at x = %g (%#08x), dy = %g: %g, want NaN", name, setName(k), x, math.Float32bits(x), dy, got)
			}
			return
		}
		if !(got >= lo && got <= hi) {
			t.Errorf("%s (%s) at x = %g (%#08x), dy = %g: %g, want %g to %g", name, setName(k), x, math.Float32bits(x), dy, got, lo, hi)
		}
	}
	for _, f := range fns {
		cases := fwdCases
		if f.grad != nil {
			cases = gradCases
		}
		// Each input at every position of a row of 37 (vector bodies and
		// tails), the rest of the row ordinary values.
		const n = 37
		for _, k := range sets {
			for _, c := range cases {
				for _, dy := range dys {
					if f.fwd != nil && dy != 1 {
						continue
					}
					for pos := 0; pos < n; pos += 5 {
						x := make([]float32, n)
						dyRow := make([]float32, n)
						for i := range x {
							x[i] = float32(i%11)/2 - 2.5
							dyRow[i] = 1
						}
						x[pos], dyRow[pos] = c.x, dy
						got := make([]float32, n)
						if f.fwd != nil {
							f.fwd(k)(got, x)
						} else {
							f.grad(k)(got, x, dyRow)
						}
						check(t, k, f.name, c.x, dy, got[pos], c.want)
					}
				}
			}
		}
	}
}
