package vec

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// log64Sweep returns the arguments TestLog64Accuracy checks: densely near
// 1, where the logarithm is tiny and must keep its relative precision (a
// confident, right prediction's loss is all the log of its row's sum),
// the sums a row can have (from just below 1 to 2⁴⁰, far past any
// vocabulary), through every table interval. The arguments log64 leaves
// to math.Log are log64Specials.
func log64Sweep() (near, wide []float64) {
	for i := range 1 << 16 {
		d := math.Ldexp(1+float64(i%1000)/1000, -8-i%50) // 2⁻⁵⁸ to 2⁻⁷
		near = append(near, 1+d, 1-d)
	}
	for i := range 1 << 20 {
		s := math.Exp2(40 * float64(i) / (1 << 20)) // log-spaced to 2⁴⁰
		wide = append(wide, s, s*(1+0x1p-7*float64(i%128)/128), 0.5+0.5*float64(i)/(1<<20))
	}
	wide = append(wide, 0x1p-1022, math.MaxFloat64, 1, 2, 1024)
	return near, wide
}

// log64Specials are arguments log64 leaves to math.Log.
var log64Specials = []float64{0, math.Copysign(0, -1), -1, 1e-310, math.Inf(1), math.Inf(-1), math.NaN()}

// TestLog64Accuracy checks log64 against math.Log over log64Sweep: within
// 4e−16 absolutely (float64's rounding of ln s near 1, and of the table's
// terms) plus 1e−14 relatively (e·ln 2 rounded, for large s), and near 1
// within 1e−15 of log1p(s − 1) relatively; where log64 calls math.Log it
// must return its value. A float32 loss of any size rounds errors that
// small away. TestLog64Sets checks that every set's Log64 is log64.
func TestLog64Accuracy(t *testing.T) {
	near, wide := log64Sweep()
	check := func(s float64) {
		t.Helper()
		want, got := math.Log(s), log64(s)
		if !(got == want || math.Abs(got-want) <= 4e-16+1e-14*math.Abs(want)) {
			t.Errorf("log64(%v) = %v, math.Log's %v (off by %.3g)", s, got, want, got-want)
		}
	}
	for _, s := range near {
		check(s)
		// s − 1 is exact: ln s = log1p(s − 1), to its last bits.
		if e := math.Abs(log64(s)/math.Log1p(s-1) - 1); s != 1 && !(e <= 1e-15) {
			t.Fatalf("log64(%v) is off by %.3g relatively", s, e)
		}
	}
	for _, s := range wide {
		check(s)
	}
	for _, s := range log64Specials {
		if got, want := log64(s), math.Log(s); math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("log64(%v) = %v, want math.Log's %v", s, got, want)
		}
	}
}

// TestLog64Sets checks every set's Log64 against log64, bit for bit, over
// log64Sweep's arguments and over runs of every length from 0 to 40, at
// offsets 0 to 7 into their arrays, with values log64 leaves to math.Log
// (which the AVX-512 kernel stops at) at random places, apart and in
// place (dst = x).
func TestLog64Sets(t *testing.T) {
	near, wide := log64Sweep()
	rng := rand.New(rand.NewPCG(64, 64))
	var runs [][]float64
	for n := range 41 {
		for off := range 8 {
			x := make([]float64, off+n)
			for i := range x {
				x[i] = math.Exp2(60*rng.Float64() - 10)
				if rng.IntN(16) == 0 {
					x[i] = log64Specials[rng.IntN(len(log64Specials))]
				}
			}
			runs = append(runs, x[off:])
		}
	}
	runs = append(runs, near, append(wide, log64Specials...))
	for _, k := range All() {
		for _, x := range runs {
			dst := make([]float64, len(x)+1)
			dst[len(x)] = 42 // past the end: must stay
			k.Log64(dst[:len(x)], x)
			for i, s := range x {
				if want := log64(s); math.Float64bits(dst[i]) != math.Float64bits(want) {
					t.Fatalf("%s: Log64 of %v (element %d of %d) = %v, log64's %v", k.Name, s, i, len(x), dst[i], want)
				}
			}
			if dst[len(x)] != 42 {
				t.Fatalf("%s: Log64 over %d elements wrote past them", k.Name, len(x))
			}
			// In place, as CrossEntropy calls it.
			in := append([]float64(nil), x...)
			k.Log64(in, in)
			for i := range in {
				if math.Float64bits(in[i]) != math.Float64bits(dst[i]) {
					t.Fatalf("%s: Log64 in place gives %v for %v (element %d of %d), %v apart", k.Name, in[i], x[i], i, len(x), dst[i])
				}
			}
		}
	}
}

// BenchmarkLog64 times each set's Log64 and a loop of math.Log over runs
// of 32 sums, as CrossEntropy takes them (a block of rows), and reports
// each set's time as a fraction of math.Log's in the same run.
func BenchmarkLog64(b *testing.B) {
	var s, dst [32]float64
	for i := range s {
		s[i] = 1.5 + float64(i)*123.4
	}
	run := func(f func(dst, x []float64)) time.Duration {
		best := time.Duration(math.MaxInt64)
		for range 5 {
			t0 := time.Now()
			for range 10000 {
				f(dst[:], s[:])
			}
			best = min(best, time.Since(t0))
		}
		return best
	}
	base := run(func(dst, x []float64) {
		for i, v := range x {
			dst[i] = math.Log(v)
		}
	})
	for _, k := range All() {
		b.Run(k.Name, func(b *testing.B) {
			ratio := float64(run(k.Log64)) / float64(base)
			for b.Loop() {
				k.Log64(dst[:], s[:])
			}
			b.ReportMetric(ratio, "of_math.Log")
		})
	}
}
