//go:build !noasm

package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestARM64Sets checks that an arm64 build runs the NEON set by default
// (NEON is baseline on arm64, so no CPU feature decides), next to the Go
// one, and that the set has no streaming twin but itself.
func TestARM64Sets(t *testing.T) {
	all := All()
	if len(all) != 2 || all[0] != Go || all[1].Name != "neon" {
		var names []string
		for _, k := range all {
			names = append(names, k.Name)
		}
		t.Fatalf("All() = %v, want [go neon]", names)
	}
	if Best() != all[1] {
		t.Errorf("Best() = %s, want neon", Best().Name)
	}
	if k := Best(); k.Streaming() != k {
		t.Error("NEON's Streaming() is another set; NEON has no streaming stores")
	}
}

// neonFn is a transcendental kernel of the NEON set checked against Go's:
// f adapts it to dst = f(x) (derivatives take dy, drawn by the test).
type neonFn struct {
	name   string
	lo, hi float32 // the dense sweep
	f      func(k *Kernels, dst, x, dy []float32)
	// rounded: the Go function rounds a float64 sum to float32 where the
	// assembly rounds once (gelu32's difference, the fma32 of geluTanhExp
	// and siluGrad32): the two differ where that float64 sum is a float32
	// midpoint, by one ulp.
	rounded bool
	// ties returns the x where the range reduction rounds a value that
	// is a half-integer in exact arithmetic (see roundingTies).
	ties func() []float32
}

// roundingTies returns, for each half-integer h = k + ½ between t(lo)
// and t(hi), the float32 numbers within four ulps of the x in [lo, hi]
// where t(x) = h (t monotonic; found by bisection in float64), with their
// negatives: the inputs where a reduction rounds t(x) to an integer and
// a product rounded first (or not) may round the other way, which a
// dense sweep seldom meets.
func roundingTies(t func(x float64) float64, lo, hi float64) []float32 {
	var xs []float32
	a, b := t(lo), t(hi)
	if a > b {
		a, b = b, a
	}
	for h := math.Floor(a) + 0.5; h < b; h++ {
		l, r := lo, hi
		for range 100 {
			m := (l + r) / 2
			if (t(m) < h) == (t(lo) < h) {
				l = m
			} else {
				r = m
			}
		}
		x := float32(l)
		for range 4 {
			x = math.Nextafter32(x, 0)
		}
		for range 9 {
			xs = append(xs, x, -x)
			x = math.Nextafter32(x, float32(math.Inf(1)))
		}
	}
	return xs
}

// The reductions that round to an integer: exp32's x·log2e (and Tanh's
// e^{2|x|}), phiTail's a²·(−½log2e), geluTanhExp's 16·x·Q(x).
var (
	expTies  = func() []float32 { return roundingTies(func(x float64) float64 { return x * math.Log2E }, 0, 110) }
	tanhTies = func() []float32 { return roundingTies(func(a float64) float64 { return 2 * a * math.Log2E }, 0, 12) }
	phiTies  = func() []float32 {
		return roundingTies(func(a float64) float64 { return -a * a / 2 * math.Log2E }, 0, 13.2)
	}
	geluTanhTies = func() []float32 {
		return roundingTies(func(x float64) float64 { return 16 * x * (gtA1 + gtA3*x*x) }, 0, gtXMax)
	}
)

var neonFns = []neonFn{
	{"Exp", -120, 100, func(k *Kernels, d, x, _ []float32) { k.Exp(d, x) }, false, expTies},
	{"ExpGrad", -120, 100, func(k *Kernels, d, x, dy []float32) { k.ExpGrad(d, x, dy) }, false, expTies},
	{"ExpShift", -120, 100, func(k *Kernels, d, x, _ []float32) { k.ExpShift(d, x, 1, 0) }, false, expTies},
	{"ExpShiftScaled", -120, 100, func(k *Kernels, d, x, _ []float32) { k.ExpShift(d, x, 0.7, -3.1) }, false, nil},
	{"ExpShiftNextMax", -120, 100, func(k *Kernels, d, x, _ []float32) { k.ExpShiftNextMax(d, x, x, 0.5) }, false, nil},
	{"Sigmoid", -100, 100, func(k *Kernels, d, x, _ []float32) { k.Sigmoid(d, x) }, false, expTies},
	{"SiLU", -100, 100, func(k *Kernels, d, x, _ []float32) { k.SiLU(d, x) }, false, expTies},
	{"SigmoidGrad", -100, 100, func(k *Kernels, d, x, dy []float32) { k.SigmoidGrad(d, x, dy) }, false, expTies},
	{"SiLUGrad", -100, 100, func(k *Kernels, d, x, dy []float32) { k.SiLUGrad(d, x, dy) }, true, expTies},
	{"Log", 0, 1e6, func(k *Kernels, d, x, _ []float32) { k.Log(d, x) }, false, nil},
	{"Tanh", -12, 12, func(k *Kernels, d, x, _ []float32) { k.Tanh(d, x) }, false, tanhTies},
	{"TanhGrad", -12, 12, func(k *Kernels, d, x, dy []float32) { k.TanhGrad(d, x, dy) }, false, tanhTies},
	{"GELU", -14, 14, func(k *Kernels, d, x, _ []float32) { k.GELU(d, x) }, true, phiTies},
	{"GELUGrad", -14, 14, func(k *Kernels, d, x, dy []float32) { k.GELUGrad(d, x, dy) }, false, phiTies},
	{"GELUTanh", -12, 12, func(k *Kernels, d, x, _ []float32) { k.GELUTanh(d, x) }, true, geluTanhTies},
	{"GELUTanhGrad", -12, 12, func(k *Kernels, d, x, dy []float32) { k.GELUTanhGrad(d, x, dy) }, true, geluTanhTies},
}

// neonSpecials are the inputs at the edges of the functions' branches
// and of float32, each with its neighbours: signed zeros, subnormals,
// 2⁻¹²⁶, tanh's switch at 0.625, GELU's flush beyond 13.2, GELUTanh's
// clamp at 10.75 and its exponential's over- and underflow near −10.06
// and 9.95, the largest floats, infinities and NaNs with payloads
// (quiet and signalling, either sign).
func neonSpecials() []float32 {
	var xs []float32
	for _, v := range []float32{0, 1e-45, 3e-42, 0x1p-127, 0x1p-126, 1e-30, 0.5, 1, 2, tanhSmall, 9.95, 10.06, 10.6, gtXMax,
		geluMaxA, 13.3, 20, 88.7, 1e4, 1e30, math.MaxFloat32} {
		for _, s := range []float32{1, -1} {
			v := s * v
			xs = append(xs, v, math.Nextafter32(v, float32(math.Inf(1))), math.Nextafter32(v, float32(math.Inf(-1))))
		}
	}
	inf := float32(math.Inf(1))
	xs = append(xs, inf, -inf)
	for _, b := range []uint32{0x7fc00000, 0x7fc00001, 0x7fc001ff, 0x7f800001, 0xffc00000, 0xffffffff, 0xff800001} {
		xs = append(xs, math.Float32frombits(b))
	}
	return xs
}

// TestNEONFunctionsAsGo checks NEON's Exp, ExpShift, Sigmoid, SiLU,
// Log, Tanh, GELU, GELUTanh and their derivatives against the Go set's,
// which they follow step for step: the same bits wherever the result is
// a number (a NaN for a NaN), over dense sweeps of each function's range
// and of every float32 magnitude, the rounding ties of each reduction,
// the special values at every position of rows of every length 0..67
// (the vector loops and the one-element tail) and at several offsets,
// and dy with special values of its own; and the terms of the
// exponential sums one by one. Where Go rounds a float64 sum to
// float32 and NEON rounds once (rounded), a result may differ by one
// ulp, rarely (a float64 sum on a float32 midpoint): the test allows one
// in 2¹⁶ and logs how many.
func TestNEONFunctionsAsGo(t *testing.T) {
	neon := Best()
	n := 1 << 18
	if testing.Short() {
		n = 1 << 14
	}
	rng := rand.New(rand.NewPCG(12, 12))
	for _, c := range neonFns {
		xs := append(sweep(c.lo, c.hi, n), sweep(-math.MaxFloat32, math.MaxFloat32, n/4)...)
		if c.ties != nil {
			xs = append(xs, c.ties()...)
		}
		dy := make([]float32, len(xs))
		for i := range dy {
			dy[i] = float32(rng.NormFloat64())
		}
		got, want := make([]float32, len(xs)), make([]float32, len(xs))
		c.f(neon, got, xs, dy)
		c.f(Go, want, xs, dy)
		var off int
		for i := range xs {
			switch d := ulps(got[i], want[i]); {
			case d == 0 && (got[i] != got[i] || math.Float32bits(got[i]) == math.Float32bits(want[i])):
			case d == 1 && c.rounded:
				off++
			default:
				t.Fatalf("%s(%g) (dy %g): NEON %g (%#08x), Go %g (%#08x)", c.name, xs[i], dy[i],
					got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			}
		}
		t.Logf("%-12s %d points: %d one ulp from Go", c.name, len(xs), off)
		if off > len(xs)>>16 {
			t.Errorf("%s: %d of %d results one ulp from Go's, more than one in 2¹⁶", c.name, off, len(xs))
		}

		sp := neonSpecials()
		dys := []float32{1, -0.75, 0, float32(math.Inf(1)), float32(math.NaN()), 3e-39}
		for n := 0; n <= 67; n++ {
			for _, o := range []int{0, 1, 3} {
				x, dy := make([]float32, n+o), make([]float32, n+o)
				for i := range x {
					x[i], dy[i] = sp[(i*7+n)%len(sp)], dys[(i+n)%len(dys)]
				}
				x, dy = x[o:], dy[o:]
				got, want := make([]float32, n), make([]float32, n)
				c.f(neon, got, x, dy)
				c.f(Go, want, x, dy)
				for i := range got {
					if got[i] == got[i] && math.Float32bits(got[i]) != math.Float32bits(want[i]) || got[i] != got[i] && want[i] == want[i] {
						t.Fatalf("%s(%g) (dy %g), %d elements at offset %d, element %d: NEON %g (%#08x), Go %g (%#08x)",
							c.name, x[i], dy[i], n, o, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
					}
				}
			}
		}
	}
	// The exponential sums' terms, expSum32's steps, one at a time (the
	// sums of rows add in another order): Go rounds x·log2e − c in a
	// float64 fused multiply-add and then to float32, NEON rounds once,
	// which differ only where the float64 result is a float32 midpoint.
	for _, shift := range []float32{0, 0.3, -41.7} {
		var off int
		xs := append(sweep(shift-87, shift, n/4), neonSpecials()...)
		for _, x := range xs {
			got, want := neon.ExpShiftSum([]float32{x}, shift), Go.ExpShiftSum([]float32{x}, shift)
			if got != want && !(got != got && want != want) {
				if math.Abs(got-want) > 0x1p-23*want { // a float32 ulp, relative
					t.Fatalf("ExpShiftSum({%g}, %g): NEON %v, Go %v", x, shift, got, want)
				}
				off++
			}
		}
		t.Logf("ExpShiftSum terms below %g, %d points: %d not Go's", shift, len(xs), off)
		if off > len(xs)>>16 {
			t.Errorf("ExpShiftSum terms below %g: %d of %d not Go's, more than one in 2¹⁶", shift, off, len(xs))
		}
	}
}
