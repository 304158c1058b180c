package vec

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The accuracy of the float32 transcendental kernels, measured against
// float64 math over dense sweeps of float32 inputs, for the Go kernels and
// every assembly kernel set.
//
// The error measure is ulps of the float32 result: |got − ref| divided by
// the spacing of float32 numbers at ref (2⁻¹⁴⁹ for subnormal refs), where
// ref is the float64 value of the function at the float32 input. A
// correctly rounded result has at most 0.5. Derivatives, whose formulas
// subtract (1 − tanh², σ + x·σ(1−σ), Φ + x·φ), are measured against the
// spacing at the magnitude of their largest term, which is what float32
// arithmetic can resolve.

// ulpOf returns the spacing of float32 numbers at |v|.
func ulpOf(v float64) float64 {
	v = math.Abs(v)
	if v < 0x1p-126 {
		return 0x1p-149
	}
	_, e := math.Frexp(v) // v = f·2^e, f in [0.5, 1)
	return math.Ldexp(1, e-24)
}

// sweep returns float32 values covering [lo, hi] densely: n steps evenly
// spaced in the ordering of float32 bit patterns, so that every binade
// gets its share however small the values.
func sweep(lo, hi float32, n int) []float32 {
	ord := func(x float32) int64 {
		i := int64(int32(math.Float32bits(x)))
		if i < 0 {
			i = math.MinInt32 - i
		}
		return i
	}
	unord := func(i int64) float32 {
		if i < 0 {
			i = math.MinInt32 - i
		}
		return math.Float32frombits(uint32(int32(i)))
	}
	a, b := ord(lo), ord(hi)
	out := make([]float32, 0, n+1)
	for k := 0; k <= n; k++ {
		out = append(out, unord(a+(b-a)*int64(k)/int64(n)))
	}
	return out
}

// accuracyCase is one function's accuracy claim.
type accuracyCase struct {
	name   string
	lo, hi float32
	ref    func(x float64) float64
	// scale returns the magnitude errors are measured against (|ref| for
	// functions, the largest term for derivatives).
	scale func(x, ref float64) float64
	kern  func(k *Kernels) func(dst, x []float32)
	bound float64 // ulps
	// sets, if not nil, names the kernel sets the claim is made for.
	sets []string
}

func absRef(_, ref float64) float64 { return ref }

func sigmoid64(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

func phi64(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

func pdf64(x float64) float64 { return math.Exp(-0.5*x*x) / math.Sqrt(2*math.Pi) }

// geluTanhY64 is the argument y = 2·√(2/π)·(x + 0.044715·x³) of GELU's
// tanh approximation x·σ(y), and y′.
func geluTanhY64(x float64) (y, dy float64) {
	b := 2 * math.Sqrt(2/math.Pi)
	return b * (x + 0.044715*x*x*x), b * (1 + 3*0.044715*x*x)
}

// withOnes adapts a derivative kernel dx = dy·f′(x) to f′ by passing
// dy = 1.
func withOnes(f func(k *Kernels) func(dx, x, dy []float32)) func(k *Kernels) func(dst, x []float32) {
	return func(k *Kernels) func(dst, x []float32) {
		return func(dst, x []float32) {
			ones := make([]float32, len(x))
			for i := range ones {
				ones[i] = 1
			}
			f(k)(dst, x, ones)
		}
	}
}

var accuracyCases = []accuracyCase{
	// exp over its whole range: results from subnormal to the largest
	// float.
	{name: "Exp", lo: -103, hi: 88.7, ref: math.Exp, scale: absRef, kern: func(k *Kernels) func(d, x []float32) { return k.Exp }, bound: 2},
	// The exponentials of softmax and cross-entropy's gradient (AVX-512
	// computes them with a table of 2^(j/16), see expTab in
	// gen_amd64.go), with the shift 0, which leaves the argument exact;
	// ExpShiftNextMax through its own kernel (next given).
	{name: "ExpShift", lo: -103, hi: 88.7, ref: math.Exp, scale: absRef, kern: func(k *Kernels) func(d, x []float32) {
		return func(d, x []float32) { k.ExpShift(d, x, 1, 0) }
	}, bound: 2},
	{name: "ExpShiftNext", lo: -103, hi: 88.7, ref: math.Exp, scale: absRef, kern: func(k *Kernels) func(d, x []float32) {
		return func(d, x []float32) { k.ExpShiftNextMax(d, x, x, 0) }
	}, bound: 2},
	{name: "Log", lo: 1e-45, hi: math.MaxFloat32, ref: math.Log, scale: absRef, kern: func(k *Kernels) func(d, x []float32) { return k.Log }, bound: 2},
	{name: "Tanh", lo: -10, hi: 10, ref: math.Tanh, scale: absRef, kern: func(k *Kernels) func(d, x []float32) { return k.Tanh }, bound: 3},
	// Sigmoid, SiLU and their derivatives down to x = −87, where
	// σ(x) ≈ e^x is still a normal float32: below, σ is subnormal (and
	// the derivatives multiply its few significant bits), and from
	// x = −88.7, where exp(−x) overflows, σ and SiLU are 0.
	{name: "Sigmoid", lo: -87, hi: 30, ref: sigmoid64, scale: absRef, kern: func(k *Kernels) func(d, x []float32) { return k.Sigmoid }, bound: 3},
	{name: "SiLU", lo: -87, hi: 100, ref: func(x float64) float64 { return x * sigmoid64(x) }, scale: absRef,
		kern: func(k *Kernels) func(d, x []float32) { return k.SiLU }, bound: 3},
	{name: "ExpGrad", lo: -103, hi: 88.7, ref: math.Exp, scale: absRef,
		kern: withOnes(func(k *Kernels) func(dx, x, dy []float32) { return k.ExpGrad }), bound: 2},
	{name: "TanhGrad", lo: -10, hi: 10, ref: func(x float64) float64 { t := math.Tanh(x); return 1 - t*t },
		scale: func(x, ref float64) float64 { return math.Max(math.Abs(ref), 1e-7) },
		kern:  withOnes(func(k *Kernels) func(dx, x, dy []float32) { return k.TanhGrad }), bound: 4},
	// σ(1−σ) = σ(x)·σ(−x), which float64 evaluates without cancelling.
	{name: "SigmoidGrad", lo: -87, hi: 87, ref: func(x float64) float64 { return sigmoid64(x) * sigmoid64(-x) }, scale: absRef,
		kern: withOnes(func(k *Kernels) func(dx, x, dy []float32) { return k.SigmoidGrad }), bound: 5},
	{name: "SiLUGrad", lo: -87, hi: 100, ref: func(x float64) float64 { return sigmoid64(x) * (1 + x*sigmoid64(-x)) },
		scale: func(x, ref float64) float64 { s := sigmoid64(x); return math.Max(s, math.Abs(x*s*sigmoid64(-x))) },
		kern:  withOnes(func(k *Kernels) func(dx, x, dy []float32) { return k.SiLUGrad }), bound: 5},
	// The GELU family's contract (see the package doc): Φ, σ(y) and the
	// derivatives accurate to a few units of 2⁻²⁴ absolutely, as ½·(1 +
	// erf) in float32 is; its ulps are those of the larger of the result
	// and |x|/2 (GELU) or ½ (the derivatives). Beyond 13, Φ(−|x|) is
	// below 2⁻⁸⁵ and the kernels' results are x or 0.
	{name: "GELU", lo: -20, hi: 20, ref: geluRef, scale: halfX, kern: func(k *Kernels) func(d, x []float32) { return k.GELU }, bound: 3},
	{name: "GELUTanh", lo: -20, hi: 20, ref: geluTanhRef, scale: halfX, kern: func(k *Kernels) func(d, x []float32) { return k.GELUTanh }, bound: 3},
	{name: "GELUGrad", lo: -20, hi: 20, ref: geluGradRef, scale: half(geluGradTerms), bound: 4,
		kern: withOnes(func(k *Kernels) func(dx, x, dy []float32) { return k.GELUGrad })},
	{name: "GELUTanhGrad", lo: -20, hi: 20, ref: geluTanhGradRef, scale: half(geluTanhGradTerms), bound: 4,
		kern: withOnes(func(k *Kernels) func(dx, x, dy []float32) { return k.GELUTanhGrad })},
	// The sets that take Φ's tail from e^{−x²/2} (relSets: Go, NEON) are
	// accurate relative to the result as well, down to where it leaves
	// the normal float32 range (x = −13 for GELU, where x·Φ(x) ≈ −4e−38,
	// −10 for GELUTanh); derivatives against their largest term.
	{name: "GELU/relative", lo: -13, hi: 13, ref: geluRef, scale: absRef, sets: relSets, bound: 6,
		kern: func(k *Kernels) func(d, x []float32) { return k.GELU }},
	{name: "GELUTanh/relative", lo: -10, hi: 20, ref: geluTanhRef, scale: absRef, sets: relSets, bound: 3,
		kern: func(k *Kernels) func(d, x []float32) { return k.GELUTanh }},
	{name: "GELUGrad/relative", lo: -13, hi: 13, ref: geluGradRef, scale: geluGradTerms, sets: relSets, bound: 6,
		kern: withOnes(func(k *Kernels) func(dx, x, dy []float32) { return k.GELUGrad })},
	{name: "GELUTanhGrad/relative", lo: -10, hi: 20, ref: geluTanhGradRef, scale: geluTanhGradTerms, sets: relSets, bound: 6,
		kern: withOnes(func(k *Kernels) func(dx, x, dy []float32) { return k.GELUTanhGrad })},
}

// relSets are the kernel sets whose GELU family is accurate relative to
// its results (the contract asks less; see the package doc).
var relSets = []string{"go", "neon"}

func geluRef(x float64) float64 { return x * phi64(x) }

func geluTanhRef(x float64) float64 { y, _ := geluTanhY64(x); return x * sigmoid64(y) }

func geluGradRef(x float64) float64 { return phi64(x) + x*pdf64(x) }

func geluTanhGradRef(x float64) float64 {
	y, dy := geluTanhY64(x)
	return sigmoid64(y) + x*sigmoid64(y)*sigmoid64(-y)*dy
}

// geluGradTerms and geluTanhGradTerms are the larger of the derivatives'
// two terms.
func geluGradTerms(x, _ float64) float64 { return math.Max(phi64(x), math.Abs(x*pdf64(x))) }

func geluTanhGradTerms(x, _ float64) float64 {
	y, dy := geluTanhY64(x)
	return math.Max(sigmoid64(y), math.Abs(x*sigmoid64(y)*sigmoid64(-y)*dy))
}

// halfX is GELU's contract scale, the larger of |ref| and |x|/2.
func halfX(x, ref float64) float64 { return math.Max(math.Abs(ref), math.Abs(x)/2) }

// half returns the larger of scale and ½.
func half(scale func(x, ref float64) float64) func(x, ref float64) float64 {
	return func(x, ref float64) float64 { return math.Max(scale(x, ref), 0.5) }
}

// TestAccuracy sweeps each function over its range with 2²⁰ points (2¹⁶
// with -short) and checks the largest error of every kernel set against
// the stated bound; -v prints the errors measured.
func TestAccuracy(t *testing.T) {
	n := 1 << 20
	if testing.Short() {
		n = 1 << 16
	}
	for _, c := range accuracyCases {
		xs := sweep(c.lo, c.hi, n)
		// Finer near zero, where the small-argument branches live.
		xs = append(xs, sweep(-1, 1, n/4)...)
		checkAccuracy(t, c, xs)
	}
}

// checkAccuracy runs case c's kernel of every set over xs and checks its
// largest error against the bound; -v prints it.
func checkAccuracy(t *testing.T, c accuracyCase, xs []float32) {
	t.Helper()
	// The references and the scales errors are measured against,
	// computed once for every set.
	refs, scales := make([]float64, len(xs)), make([]float64, len(xs))
	for i, x := range xs {
		refs[i] = c.ref(float64(x))
		scales[i] = ulpOf(c.scale(float64(x), refs[i]))
	}
	for _, k := range All() {
		if c.sets != nil && !slices.Contains(c.sets, k.Name) {
			continue
		}
		got := make([]float32, len(xs))
		c.kern(k)(got, xs)
		var worst, worstX float64
		for i, x := range xs {
			ref := refs[i]
			if math.IsInf(ref, 0) || math.Abs(ref) > math.MaxFloat32 {
				if !math.IsInf(float64(got[i]), int(math.Copysign(1, ref))) {
					t.Errorf("%s (%s) at %v = %v, want %v", c.name, k.Name, x, got[i], ref)
				}
				continue
			}
			e := math.Abs(float64(got[i])-ref) / scales[i]
			if !(e <= worst) { // NaN counts as worst
				worst, worstX = e, float64(x)
			}
		}
		t.Logf("%-11s %-6s max error %.2f ulps (at %.7g), bound %g", c.name, k.Name, worst, worstX, c.bound)
		if !(worst <= c.bound) {
			t.Errorf("%s (%s): max error %.3g ulps at x = %.9g, above the bound of %g", c.name, k.Name, worst, worstX, c.bound)
		}
	}
}

// TestAccuracyEveryFloat checks the bounds over every float32 of the
// intervals where the largest errors sit, which TestAccuracy's sweep
// samples one point in dozens to thousands of: there Sigmoid and SiLU with
// AVX-512's table exponential, before its entries' rounding errors were
// added back (expTab in gen_amd64.go), exceeded their 3 ulps (3.07 and
// 3.14 near x = −16.7), and the Go set's SiLUGrad, before its last
// step was fused (siluGrad32), at 5.06 of its 5 (x near −13.8);
// SigmoidGrad comes within 0.02 ulps of its bound (x near 3.416).
func TestAccuracyEveryFloat(t *testing.T) {
	if testing.Short() {
		t.Skip("every float32 of five intervals: slow with -short")
	}
	for _, r := range []struct {
		name   string
		lo, hi float32
	}{
		{"Exp", 0.37, 0.42},
		{"Sigmoid", -18, -15},
		{"SiLU", -18, -15},
		{"SigmoidGrad", 3, 4},
		{"SiLUGrad", -14, -12},
	} {
		i := slices.IndexFunc(accuracyCases, func(c accuracyCase) bool { return c.name == r.name })
		if i < 0 {
			t.Fatalf("no accuracy case %s", r.name)
		}
		var xs []float32
		for x := r.lo; x <= r.hi; x = math.Nextafter32(x, r.hi+1) {
			xs = append(xs, x)
		}
		checkAccuracy(t, accuracyCases[i], xs)
	}
}

// TestRowStepAccuracy checks the float32 row steps against float64 on the
// inputs that would expose a float32 statistic: a row whose mean (1000) is
// far larger than its spread (1), so that x − mean cancels to a few
// digits, and a softmax gradient whose dy is close to the dot product. The
// hi + lo split keeps every result within a few ulps of its own size.
func TestRowStepAccuracy(t *testing.T) {
	const n = 4099
	g := gen{rand.New(rand.NewPCG(6, 6))}
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(1000 + g.rng.NormFloat64())
	}
	gamma, beta := g.uniform(n, 0.5, 1.5), g.uniform(n, -0.1, 0.1)
	var mean, ss float64
	for _, v := range x {
		mean += float64(v)
	}
	mean /= n
	for _, v := range x {
		ss += (float64(v) - mean) * (float64(v) - mean)
	}
	rstd := 1 / math.Sqrt(ss/n+1e-5)
	dot := 0.3 + 1e-5/3 // not a float32
	dy := make([]float32, n)
	for i := range dy {
		dy[i] = float32(dot + 1e-4*g.rng.NormFloat64())
	}
	y := g.uniform(n, 0, 1)
	// scale is the magnitude errors are measured against: the result,
	// or for Normalize the larger of its two terms, whose sum may cancel
	// (that cancellation is the output's, not the statistics').
	type step struct {
		name       string
		run        func(k *Kernels, out []float32)
		ref, scale func(i int) float64
	}
	xhg := func(i int) float64 { return (float64(x[i]) - mean) * rstd * float64(gamma[i]) }
	steps := []step{
		{"Normalize", func(k *Kernels, out []float32) { k.Normalize(out, x, gamma, beta, mean, rstd) },
			func(i int) float64 { return xhg(i) + float64(beta[i]) },
			func(i int) float64 { return math.Max(math.Abs(xhg(i)), math.Abs(float64(beta[i]))) }},
		{"SoftmaxGrad", func(k *Kernels, out []float32) { k.SoftmaxGrad(out, y, dy, 0.125, dot) },
			func(i int) float64 { return 0.125 * float64(y[i]) * (float64(dy[i]) - dot) },
			func(i int) float64 { return 0.125 * float64(y[i]) * (float64(dy[i]) - dot) }},
	}
	for _, s := range steps {
		for _, k := range All() {
			out := make([]float32, n)
			s.run(k, out)
			var worst float64
			for i, v := range out {
				ref := s.ref(i)
				worst = max(worst, math.Abs(float64(v)-ref)/ulpOf(s.scale(i)))
			}
			t.Logf("%-11s %-6s max error %.2f ulps", s.name, k.Name, worst)
			if !(worst <= 4) {
				t.Errorf("%s (%s): max error %.3g ulps, want at most 4", s.name, k.Name, worst)
			}
		}
	}
}

// TestExpShiftSumAccuracy checks the sums of exponentials against
// float64: each term alone over a dense sweep of arguments down to 2⁻¹²⁵
// and below, and rows of a thousand terms below their maximum (as softmax
// and cross-entropy shift them), with −Inf and NaN. The terms are
// 2^(x·log2e − c) (sumShift), whose error grows with |x| by the float32
// log2e (1.4e−8 relative per unit of x) and the rounding of the exponent
// (0.35 of its float32 ulp), on top of a constant part: 1.8e−7 for Go's
// and AVX2's expSum32 and for AVX-512's table (see exp2Sum in
// gen_amd64.go), 2.2e−7 in AVX-512's runs of sixteen vectors
// (exp2Factors). The sums,
// dominated by their terms near 1, stay within a float32 ulp (relative
// 1.2e−7), the float32 grouping of terms (up to sixteen with AVX-512)
// included.
func TestExpShiftSumAccuracy(t *testing.T) {
	const stop = -86.6 // x·log2e ≥ −125 above it
	xs := sweep(stop, 0, 1<<20)
	refs := make([]float64, len(xs))
	for i, x := range xs {
		refs[i] = math.Exp(float64(x))
	}
	floor := math.Ldexp(1, -125)
	for _, k := range All() {
		// 1.08e−7 for expSum32's polynomial and 6e−8 or so for its
		// roundings; 5.6e−8 for AVX-512's table, 6.6e−8 for its
		// polynomial and 6e−8 for its roundings.
		base := 1.8e-7
		boundOf := func(base float64) func(x float32) float64 {
			return func(x float32) float64 {
				u := x * log2e
				ulp := float64(math.Nextafter32(abs32(u), float32(math.Inf(1))) - abs32(u))
				return base + 1.4e-8*math.Abs(float64(x)) + 0.35*ulp
			}
		}
		// check compares term(x) with every step-th point of the sweep.
		check := func(what string, term func(x float32) float64, bound func(x float32) float64, step int) {
			var worst, worstX float64
			for i := 0; i < len(xs); i += step {
				e := math.Abs(term(xs[i])-refs[i]) / refs[i] / bound(xs[i])
				if !(e <= worst) {
					worst, worstX = e, float64(xs[i])
				}
			}
			t.Logf("ExpShiftSum %-6s %s: max error %.2f of the bound (at %.7g)", k.Name, what, worst, worstX)
			if !(worst <= 1) {
				t.Errorf("ExpShiftSum (%s): %s: the error is %.3g times the bound at x = %.9g", k.Name, what, worst, worstX)
			}
		}
		bound := boundOf(base)
		check("terms", func(x float32) float64 { return k.ExpShiftSum([]float32{x}, 0) }, bound, 1)
		// AVX-512's runs of sixteen vectors take their terms as two
		// factors (see exp2Factors in gen_amd64.go), within 2.2e−7 and
		// the rest of the bound (0.97 of it over every point, 0.99 with
		// 2e−7): the same terms alone in a row long enough for them,
		// the others −Inf, whose terms are 0 there (every eighth point).
		row := make([]float32, 300)
		inRow := func(x float32) float64 {
			for i := range row {
				row[i] = float32(math.Inf(-1))
			}
			row[37] = x
			return k.ExpShiftSum(row, 0)
		}
		runBound := boundOf(2.2e-7)
		if k.Name == "avx512" {
			check("terms in a run", inRow, runBound, 8)
		}
		// Below 2⁻¹²⁵, expSum32 (Go, AVX2) stops at 2⁻¹²⁵ (its scaling
		// needs a normal result); AVX-512 scales with VSCALEFPS and
		// computes the term, subnormal (rounded once: half of 2⁻¹⁴⁹) or 0.
		for _, x := range []float32{-86.7, -87, -95, -103, -103.9, -104, -1e6, float32(math.Inf(-1))} {
			got := k.ExpShiftSum([]float32{x}, 0)
			if k.Name != "avx512" {
				if got != floor {
					t.Errorf("ExpShiftSum (%s) of {%g} = %g, want the floor 2⁻¹²⁵", k.Name, x, got)
				}
				continue
			}
			ref := math.Exp(float64(x))
			if !(got == ref || math.Abs(got-ref) <= bound(x)*ref+0x1p-150) { // −Inf: 0
				t.Errorf("ExpShiftSum (%s) of {%g} = %g, want %g to within the bound and half a subnormal ulp", k.Name, x, got, ref)
			}
			got = inRow(x)
			if !(got == ref || math.Abs(got-ref) <= runBound(x)*ref+0x1p-150) {
				t.Errorf("ExpShiftSum (%s) of %g in a run = %g, want %g to within the bound and half a subnormal ulp", k.Name, x, got, ref)
			}
		}
	}
	// Rows below their maximum, which is the shift: 0, or one that the
	// sums' base-2 shift c rounds (sumShift's fix then matters), up to
	// and past the largest the kernels take (about 45426) and far beyond,
	// where the slow path sums.
	rng := rand.New(rand.NewPCG(8, 8))
	for _, shift := range []float32{0, 37.3, -1234.567, 1e4, -45000, 45500, 1e6, -1e9} {
		for _, spread := range []float64{0.01, 1, 5, 30, 200} {
			for _, k := range All() {
				var worst float64
				for range 100 {
					x := make([]float32, 1000+rng.IntN(64))
					for i := range x {
						x[i] = shift - float32(spread*rng.Float64())
					}
					x[rng.IntN(len(x))] = shift // the maximum
					x[rng.IntN(len(x))] = float32(math.Inf(-1))
					var ref float64
					for _, v := range x {
						ref += math.Exp(float64(v) - float64(shift))
					}
					worst = max(worst, math.Abs(k.ExpShiftSum(x, shift)-ref)/ref)
				}
				t.Logf("ExpShiftSum %-6s rows below %g, spread %g: max relative error %.3g", k.Name, shift, spread, worst)
				if !(worst <= 1.2e-7) { // 7.5e−8 measured at most
					t.Errorf("ExpShiftSum (%s), rows below %g, spread %g: relative error %.3g, above 1.2e-7", k.Name, shift, spread, worst)
				}
			}
		}
	}
	// Shifts the base-2 kernels cannot take are summed with exp32.
	for _, k := range All() {
		for _, c := range []struct {
			x     []float32
			shift float32
			want  float64
		}{
			{[]float32{3e38, 2.9e38}, 3e38, 1},
			{[]float32{-3e38, -3e38}, -3e38, 2},
			{[]float32{1, 2}, float32(math.Inf(1)), 0},
		} {
			if got := k.ExpShiftSum(c.x, c.shift); !(math.Abs(got-c.want) <= 1e-7*c.want) {
				t.Errorf("ExpShiftSum (%s) of %v below %g = %v, want %v", k.Name, c.x, c.shift, got, c.want)
			}
			if got, _ := k.ExpSumNextMax(c.x, nil, c.shift); !(math.Abs(got-c.want) <= 1e-7*c.want) {
				t.Errorf("ExpSumNextMax (%s) of %v below %g = %v, want %v", k.Name, c.x, c.shift, got, c.want)
			}
		}
		if s := k.ExpShiftSum([]float32{1, 2}, float32(math.NaN())); !math.IsNaN(s) {
			t.Errorf("ExpShiftSum (%s) below NaN = %v, want NaN", k.Name, s)
		}
	}
	for _, k := range All() {
		// NaNs with payloads, quiet and signalling, of either sign: the
		// kernels must not turn their bits into a number.
		for _, bits := range []uint32{0x7fc00000, 0x7fc00001, 0x7fc001ff, 0x7f800001, 0xffc00000, 0xffffffff} {
			nan := math.Float32frombits(bits)
			if s := k.ExpShiftSum([]float32{0, -1, nan, -3}, 0); !math.IsNaN(s) {
				t.Errorf("ExpShiftSum (%s) with the NaN %#08x = %v, want NaN", k.Name, bits, s)
			}
			// Through the unrolled loops and the tail: AVX-512's runs of
			// sixteen vectors, which add their terms by multiply-adds,
			// take the 300.
			for _, n := range []int{67, 300} {
				x := make([]float32, n)
				x[40] = nan
				if s, _ := k.ExpSumNextMax(x, x, 0); !math.IsNaN(s) {
					t.Errorf("ExpSumNextMax (%s) of %d with the NaN %#08x = %v, want NaN", k.Name, n, bits, s)
				}
			}
		}
		if s := k.ExpShiftSum([]float32{float32(math.Inf(-1)), 0}, 0); s != 1 {
			t.Errorf("ExpShiftSum (%s) of {−Inf, 0} = %v, want 1", k.Name, s)
		}
		x := make([]float32, 300)
		for i := 0; i < len(x); i += 3 {
			x[i] = float32(math.Inf(-1))
		}
		if s := k.ExpShiftSum(x, 0); s != 200 {
			t.Errorf("ExpShiftSum (%s) of 100 −Infs among 200 zeros = %v, want 200", k.Name, s)
		}
	}
}

// TestExpSumNextMax checks that ExpSumNextMax's sum is ExpShiftSum's
// with scale 1, and ExpShiftNextMax's exponentials and sum ExpShift's, bit
// for bit (the same exponentials grouped the same way, so the accuracy
// tests of ExpShiftSum and ExpShift cover them), and their maximum next's,
// for every length of a few groups of vectors and their tails (lanes past
// the end must not count, though they are loaded as 0 above a row all
// below it).
func TestExpSumNextMax(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, k := range All() {
		for n := range 300 {
			x, next := make([]float32, n), make([]float32, n)
			want := float32(math.Inf(-1))
			for i := range x {
				x[i] = -float32(rng.Float64() * 20)
				next[i] = -1 - float32(rng.Float64()*50)
				want = max(want, next[i])
			}
			sum, m := k.ExpSumNextMax(x, next, 0.5)
			if ref := k.ExpShiftSum(x, 0.5); sum != ref {
				t.Errorf("ExpSumNextMax (%s), %d elements: sum %v, ExpShiftSum's %v", k.Name, n, sum, ref)
			}
			if m != want {
				t.Errorf("ExpSumNextMax (%s), %d elements: max %v, want %v", k.Name, n, m, want)
			}
			e, ref := make([]float32, n), make([]float32, n)
			sum, m = k.ExpShiftNextMax(e, x, next, 0.5)
			if rs := k.ExpShift(ref, x, 1, 0.5); sum != rs || m != want {
				t.Errorf("ExpShiftNextMax (%s), %d elements: sum %v, max %v; want ExpShift's %v and %v", k.Name, n, sum, m, rs, want)
			}
			for i := range e {
				if math.Float32bits(e[i]) != math.Float32bits(ref[i]) {
					t.Fatalf("ExpShiftNextMax (%s), %d elements: [%d] = %v, ExpShift's %v", k.Name, n, i, e[i], ref[i])
				}
			}
			if n > 0 {
				// The maximum anywhere, the first and last lanes included.
				for _, at := range []int{0, n / 2, n - 1} {
					old := next[at]
					next[at] = 7
					if _, m := k.ExpSumNextMax(x, next, 0); m != 7 {
						t.Errorf("ExpSumNextMax (%s), %d elements, 7 at %d: max %v", k.Name, n, at, m)
					}
					if _, m := k.ExpShiftNextMax(e, x, next, 0); m != 7 {
						t.Errorf("ExpShiftNextMax (%s), %d elements, 7 at %d: max %v", k.Name, n, at, m)
					}
					next[at] = old
				}
			}
			if s, m := k.ExpSumNextMax(x, nil, 0.5); s != k.ExpShiftSum(x, 0.5) || !math.IsInf(float64(m), -1) {
				t.Errorf("ExpSumNextMax (%s), %d elements, no next: %v, %v", k.Name, n, s, m)
			}
			if s, m := k.ExpShiftNextMax(e, x, nil, 0.5); s != k.ExpShift(ref, x, 1, 0.5) || !math.IsInf(float64(m), -1) {
				t.Errorf("ExpShiftNextMax (%s), %d elements, no next: %v, %v", k.Name, n, s, m)
			}
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("ExpSumNextMax (%s) with next shorter than x did not panic", k.Name)
				}
			}()
			k.ExpSumNextMax(make([]float32, 8), make([]float32, 7), 0)
		}()
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("ExpShiftNextMax (%s) with next shorter than dst did not panic", k.Name)
				}
			}()
			k.ExpShiftNextMax(make([]float32, 8), make([]float32, 8), make([]float32, 7), 0)
		}()
	}
}

// TestExpShiftSpecial passes ExpShift and ExpShiftNextMax the arguments
// their reductions must survive, at every position of rows long enough
// for the unrolled loops and a tail: −Inf and arguments far below any
// result give 0 (AVX-512's table reduction clamps them as exp does), NaNs
// of any payload NaN in their lane and in the sum, and results that are
// subnormal round once.
func TestExpShiftSpecial(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := math.Float32frombits(0x7fc001ff)
	snan := math.Float32frombits(0xff800001)
	cases := []float32{-inf, -3.4e38, -1e30, -1e6, -200, -104, -103.5, -100, -87.5, nan, snan, 88.5}
	const n = 16*16 + 16*4 + 16*2 + 16 + 7 // every loop and the tail (AVX-512's widest)
	for _, k := range All() {
		for _, v := range cases {
			for _, at := range []int{0, 5, 16*16 + 3, n - 1} {
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(i%7) - 6
				}
				x[at] = v
				e := make([]float32, n)
				sum := k.ExpShift(e, x, 1, 0)
				e2 := make([]float32, n)
				sum2, _ := k.ExpShiftNextMax(e2, x, x, 0)
				var ref float64
				for _, xi := range x {
					ref += math.Exp(float64(xi))
				}
				want := math.Exp(float64(v))
				for _, r := range []struct {
					name string
					got  float32
					sum  float64
				}{{"ExpShift", e[at], sum}, {"ExpShiftNextMax", e2[at], sum2}} {
					if v != v {
						if r.got == r.got || r.sum == r.sum {
							t.Errorf("%s (%s) of NaN at %d: %v, sum %v, want NaN", r.name, k.Name, at, r.got, r.sum)
						}
						continue
					}
					if !(math.Abs(float64(r.got)-want) <= 2*ulpOf(want)) {
						t.Errorf("%s (%s) of %g at %d = %g, want %g", r.name, k.Name, v, at, r.got, want)
					}
					if !(math.Abs(r.sum-ref) <= 1e-6*ref) {
						t.Errorf("%s (%s) with %g at %d: sum %g, want %g", r.name, k.Name, v, at, r.sum, ref)
					}
				}
			}
		}
	}
}

// TestGELUTanhExp checks GELUTanh's exponential, 2^v for v = x·(a1 +
// a3·x²), against float64 over 2²² points of [−gtXMax, gtXMax] where 2^v
// is a normal float32 (|v| reaches 126, so that v's float32 rounding
// alone would cost up to 2⁻¹⁸ relative): the compensated reduction keeps
// v's error near 2⁻²⁸, so that the error is the final rounding's, at most
// 2⁻²⁴ relative, plus a little (1.045·2⁻²⁴ measured; 28·2⁻²⁴ with a head
// gtA1Hi that makes Qh − gtA1Hi inexact).
func TestGELUTanhExp(t *testing.T) {
	n := 1 << 22
	if testing.Short() {
		n = 1 << 16
	}
	var worst, worstX float64
	for _, a := range sweep(-gtXMax, gtXMax, n) {
		x := float64(a)
		v := x * (gtA1 + gtA3*x*x)
		if v < -126 || v >= 127.96875 { // where the scaling exponent n is within [−126, 127]
			continue
		}
		e, x2 := geluTanhExp(a)
		if x2 != a*a {
			t.Fatalf("geluTanhExp(%g): x² = %g, want %g", a, x2, a*a)
		}
		ref := math.Exp2(v)
		if r := math.Abs(float64(e)-ref) / ref; !(r <= worst) {
			worst, worstX = r, x
		}
	}
	t.Logf("2^v: max relative error %.3g = %.3f·2⁻²⁴ (at x = %.7g)", worst, worst/0x1p-24, worstX)
	if !(worst <= 1.1*0x1p-24) {
		t.Errorf("2^v: relative error %.3g at x = %.9g, above 1.1·2⁻²⁴", worst, worstX)
	}
}

// TestGELUTanhLimits checks GELU's tanh approximation where it saturates,
// in every kernel set and through the vector tails: x itself from x = 10
// on (e^{−y} is below half an ulp of 1 there), ±0 from x = −10.6 down
// (e^{−y} overflows: the function is below 2⁻¹⁴⁹ there), derivative 1 and
// 0, nothing infinite or NaN for any finite x up to the largest float
// (where x³, or x·y′ in the derivative, would overflow in float32), and
// NaN kept.
func TestGELUTanhLimits(t *testing.T) {
	big := []float32{10, 10.5, 13, 20, 50, 100, 1e4, 1.9e19, 1e30, 3e38, math.MaxFloat32}
	for _, k := range All() {
		for _, n := range []int{1, 7, 9, 17, 23, 35} {
			for _, v := range big {
				for _, sign := range []float32{1, -1} {
					y, dx := fnAndGrad(k, k.GELUTanh, k.GELUTanhGrad, n, sign*v)
					wantY, wantDX := sign*v, float32(1)
					if sign < 0 {
						wantY, wantDX = 0, 0
					}
					if sign < 0 && v < 10.6 {
						// Not yet 0 but tiny: x·e^y, about −1e−37 at −10.
						wantY, wantDX = y[0], dx[0]
						if !(math.Abs(float64(y[0])) < 2e-37 && math.Abs(float64(dx[0])) < 4e-36) {
							t.Errorf("%s: GELUTanh(%g) = %g, derivative %g; want tiny", k.Name, sign*v, y[0], dx[0])
						}
					}
					for i := range y {
						if y[i] != wantY || dx[i] != wantDX {
							t.Fatalf("%s, %d elements: GELUTanh(%g) = %g, derivative %g at %d; want %g and %g",
								k.Name, n, sign*v, y[i], dx[i], i, wantY, wantDX)
						}
					}
				}
			}
		}
		inf, nan := float32(math.Inf(1)), float32(math.NaN())
		x := []float32{inf, nan, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 1e-40}
		y, dx := make([]float32, len(x)), make([]float32, len(x))
		k.GELUTanh(y, x)
		k.GELUTanhGrad(dx, x, []float32{1, 1, 1, 1, 1, 1, 1})
		want := []float32{inf, nan, 0, 0, 0.5e-30, -0.5e-30, 0.5e-40}
		for i := range x {
			if !(y[i] == want[i] || y[i] != y[i] && want[i] != want[i]) {
				t.Errorf("%s: GELUTanh(%g) = %g, want %g", k.Name, x[i], y[i], want[i])
			}
		}
		if dx[0] != 1 || dx[1] == dx[1] || dx[2] != 0.5 || dx[4] != 0.5 {
			t.Errorf("%s: GELUTanh′ at +Inf, NaN, 0, 1e−30 = %v, want 1, NaN, 0.5, 0.5", k.Name, dx)
		}
	}
}

// TestGELULimits checks the exact GELU and its derivative of every set
// (and streaming twin) beyond geluMaxA, where Φ's tail is taken as 0:
// GELU(x) = x and GELU′ = 1 above, 0 and 0 below, ±Inf included (their
// products with the vanished tail were ∞·0 = NaN), and NaN for NaN. The
// lengths put the values in the kernels' unrolled loops and tails.
func TestGELULimits(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	for _, set := range All() {
		for _, k := range []*Kernels{set, set.Streaming()} {
			for _, n := range []int{1, 7, 9, 17, 23, 35, 70} {
				for _, v := range []float32{13.3, 20, 1e4, 1e30, math.MaxFloat32, inf} {
					for _, sign := range []float32{1, -1} {
						y, dx := fnAndGrad(k, k.GELU, k.GELUGrad, n, sign*v)
						wantY, wantDX := sign*v, float32(1)
						if sign < 0 {
							wantY, wantDX = 0, 0
						}
						for i := range y {
							if y[i] != wantY || dx[i] != wantDX {
								t.Fatalf("%s, %d elements: GELU(%g) = %g, derivative %g at %d; want %g and %g",
									setName(k), n, sign*v, y[i], dx[i], i, wantY, wantDX)
							}
						}
					}
				}
				y, dx := fnAndGrad(k, k.GELU, k.GELUGrad, n, nan)
				for i := range y {
					if y[i] == y[i] || dx[i] == dx[i] {
						t.Fatalf("%s, %d elements: GELU(NaN) = %g, derivative %g at %d; want NaN", setName(k), n, y[i], dx[i], i)
					}
				}
			}
		}
	}
}

// fnAndGrad runs an element-wise function f of k and its derivative g
// (with dy = 1) over n copies of v and returns both outputs.
func fnAndGrad(k *Kernels, f func(dst, x []float32), g func(dx, x, dy []float32), n int, v float32) (y, dx []float32) {
	x, dy := make([]float32, n), make([]float32, n)
	for i := range x {
		x[i], dy[i] = v, 1
	}
	y, dx = make([]float32, n), make([]float32, n)
	f(y, x)
	g(dx, x, dy)
	k.Fence()
	return y, dx
}
