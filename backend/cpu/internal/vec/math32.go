package vec

import "math"

// The float32 approximations below are the scalar, pure-Go form of the
// assembly kernels: the same range reductions and the same polynomials
// (coeffs.go), so both paths agree to within rounding. (GELU and its tanh
// form are the exception on amd64, whose kernels take their tails from
// pwPoly tables; the forms here are the Go and NEON kernels'.) Each is
// accurate to a few float32 ulps (accuracy_test.go measures them against
// float64 math over dense sweeps). Polynomials are evaluated by Horner's rule; where
// the assembly fuses a multiply and an add, Go rounds twice (or fuses too,
// on architectures where the compiler does), which is why the two paths
// are compared with a tolerance rather than bit for bit.

const (
	log2e = 1.442695041 // 1/ln 2

	// ln2Hi + ln2Lo = ln 2, with ln2Hi short (9 significant bits) so that
	// n·ln2Hi is exact for the |n| ≤ 160 of a float32 exponential and
	// x − n·ln2Hi is exact too (the two are within a factor of two).
	ln2Hi = 0.693359375
	ln2Lo = -2.12194440e-4

	// expSumLo bounds below the base-2 argument of expSum32, whose
	// reduction needs a normal result: 2^−125 stands for anything smaller.
	expSumLo = -125

	// expLo and expHi bound exp's argument without changing its result:
	// exp(−110) < 2⁻¹⁵⁰ rounds to 0 and exp(89) overflows to +Inf.
	expLo = -110
	expHi = 89

	// tanhSmall is where tanh switches from its odd polynomial to
	// 1 − 2/(exp(2|x|)+1), whose cancellation is mild above it.
	tanhSmall = 0.625

	// geluMaxA bounds |x| in Φ(x): beyond it exp(−x²/2) leaves the normal
	// float32 range (x²/2 > 87.3) and the kernels flush the Gaussian tail
	// to 0; then Φ is exactly 0 or 1 and x·Φ(x) below 2⁻¹²⁶ in magnitude.
	// fit_coeffs.go fits phiT up to it.
	geluMaxA = 13.2

	invSqrt2Pi = 0.3989422804014327 // 1/√(2π)

	// GELU's tanh approximation is x·σ(y) with y = c1·x + c3·x³, c1 =
	// 2·√(2/π) and c3 = c1·0.044715. Its exponential e^{−y} is 2^v for
	// v = −y·log2e = x·Q, Q = a1 + a3·x², a1 = −c1·log2e and a3 =
	// −c3·log2e, each split into a float32 head and tail (gtA1Hi + gtA1Lo,
	// gtA3Hi + gtA3Lo; see geluTanhExp). gtA1Hi is a1 rounded to a multiple
	// of 2⁻¹⁸ (20 significant bits), which makes Q's head minus it exact.
	gtC1   = 1.5957691216057308 // 2·√(2/π)
	gtC3   = gtC1 * 0.044715    // 2·√(2/π)·0.044715
	gtA1   = -gtC1 * math.Log2E
	gtA3   = -gtC3 * math.Log2E
	gtA1Hi = float32(-603510.0 / (1 << 18)) // a1 = −2.3022082… to 2⁻¹⁸
	gtA1Lo = float32(gtA1 - float64(gtA1Hi))
	gtA3Hi = float32(gtA3)
	gtA3Lo = float32(gtA3 - float64(gtA3Hi))
	// gtMagic (1.5·2¹⁹) added to t, |t| < 2¹⁸, rounds the sum to a
	// multiple of 1/16 (the binade's spacing), leaving m = round(16·t) in
	// its low mantissa bits.
	gtMagic = 0x1.8p19
	// gtXMax bounds |x| in the exponential and in the derivative's
	// x·y′(x) term: from |x| = 10.75 on, e^{−|y|} < 2⁻¹⁵⁰ (|y| > 105.8)
	// rounds to 0, so the results do not change (x, −0, derivative 1 or
	// 0), and the bound keeps |v| ≤ 153, where 2^v is scaled in two steps
	// without a clamp, x·y′ finite (its product with σ(y)·σ(−y) = 0 is
	// 0 rather than ∞·0), and x² and Q small enough for geluTanhExp's
	// exact steps.
	gtXMax = 10.75
)

// gtExp2T and gtExp2Tau are the table of 2^(j/16), j = 0..15, rounded to
// float32, and each entry's relative rounding error (2^(j/16) − T)/T, so
// that T·(1 + τ) is 2^(j/16) to about 2⁻⁴⁸.
var gtExp2T, gtExp2Tau = func() (t, tau [16]float32) {
	for j := range t {
		e := math.Exp2(float64(j) / 16)
		t[j] = float32(e)
		tau[j] = float32((e - float64(t[j])) / float64(t[j]))
	}
	return t, tau
}()

// sumMagic (1.5·2¹⁸) added to x, |x| < 2¹⁷, rounding down, leaves
// ⌊32x⌋ in the sum's low bits (its unit in the last place is 1/32): AVX-512's
// sums of exponentials take their table index from them (see exp2Split in
// gen_amd64.go).
const sumMagic = 0x1.8p18

// exp2S32 is the table of 2^(j/32), j = 0..31, rounded to float32 (5.6e−8
// relative at most, 0 for j = 0), in the two halves of sixteen that
// AVX-512's two-register permute takes.
var exp2S32 = func() (t [2][16]float32) {
	for j := range 32 {
		t[j/16][j%16] = float32(math.Exp2(float64(j) / 32))
	}
	return t
}()

// roundEven rounds x, |x| < 2²², to the nearest integer, ties to even, as
// the assembly's VROUNDPS does: adding and subtracting 1.5·2²³ leaves no
// bits below the units, and float32 addition rounds to nearest even.
func roundEven(x float32) float32 {
	const magic = 0x1.8p23
	return (x + magic) - magic
}

// pwPoly is a function of a = |x| ≥ 0 as polynomials on n intervals of
// equal width, [i/scale, (i+1)/scale) for i = 0..n−1, evaluated in v =
// a·scale − i, and 0 beyond max: c[k][i] is interval i's coefficient of
// v^k. The amd64 sets' GELU kernels take their functions' tail parts from
// such tables (pwGELU, pwGELUGrad, pwGELUTanh and pwGELUTanhGrad in
// coeffs.go, sixteen intervals of degree five for AVX-512, and the same
// names with 8, eight of degree seven, for AVX2; fit_coeffs.go fits
// them), one VPERMPS per coefficient. Fitted for absolute error (at most
// 4.8e−8, 3.2·2⁻²⁶, in exact arithmetic with the float32 coefficients;
// taking P as 0 beyond max, about 2⁻²⁶), they make GELU's error absolute
// where it is small (see the package doc).
type pwPoly struct {
	scale, max float32
	c          [][]float32
}

// abs32 is |x| (NaN stays NaN), without a round trip through float64.
func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// clamp limits x to [lo, hi], passing NaN through.
func clamp(x, lo, hi float32) float32 {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}

// pow2 returns 2^i for an integer exponent i in [−126, 127].
func pow2(i int32) float32 { return math.Float32frombits(uint32(i+127) << 23) }

// expCore returns e^r for |r| ≤ ln2/2 (a little beyond is fine).
func expCore(r float32) float32 {
	q := expQ[4]
	q = q*r + expQ[3]
	q = q*r + expQ[2]
	q = q*r + expQ[1]
	q = q*r + expQ[0]
	return (r*r*q + r) + 1
}

// exp32 returns e^x: +Inf above 88.72, subnormal results below −87.34 and
// 0 below about −103.97, NaN for NaN.
func exp32(x float32) float32 {
	x = clamp(x, expLo, expHi)
	n := roundEven(x * log2e)
	r := x - n*ln2Hi
	r -= n * ln2Lo
	// Scale by 2^n in two steps so that results beyond the normal range
	// overflow or go subnormal with one rounding, as they should.
	i := int32(n)
	i1 := i >> 1
	return expCore(r) * pow2(i1) * pow2(i-i1)
}

// expSum32 returns 2^u for u ≤ 127.9, for terms that are only summed
// (ExpShiftSum, ExpSumNextMax): 2^n·2^f for n = round(u) and f = u − n,
// exact, in [−½, ½], with a polynomial good to 1.1e−7 and 2^n added to the
// result's exponent field. Below −125 the result is 2^−125 (about
// 2.4e−38), so that it stays normal: a term that small is nothing next to
// a sum whose largest term is 1, as callers shift it. −Inf gives 2^−125
// too, and NaN NaN. Its callers' argument is x·log2e − c, rounded once:
// see sumShift for the error that brings.
func expSum32(u float32) float32 {
	if u != u {
		return u
	}
	u = max(u, expSumLo)
	n := roundEven(u)
	f := u - n
	p := exp2P[4]
	p = p*f + exp2P[3]
	p = p*f + exp2P[2]
	p = p*f + exp2P[1]
	p = p*f + exp2P[0]
	p = p*f + 1
	return math.Float32frombits(math.Float32bits(p) + uint32(int32(n))<<23)
}

// sumShift returns what the sum kernels need to compute Σ exp(x − shift)
// as Σ 2^(x·log2e − c), each exponent a single fused multiply-add: c, the
// shift in base 2 rounded to float32, and fix, which takes that sum to
// the one asked for. With L = float32(log2e), 2^(x·L − c) is
// 2^((x − shift)·L) times 2^(shift·L − c); the second factor, the same
// for every term and known exactly (shift·L is exact in float64), is what
// fix divides out, to second order in a d = shift·L − c of at most
// 2⁻²⁴·|c| < 2⁻⁸ (the third order is below 4e−10).
// What remains is L's own error, 1.3e−8 relative: each term is
// exp((x − shift)·(1 + ε)), |ε| < 1.4e−8, so that its error grows with
// its distance below the shift, where terms weigh less in a sum, plus the
// rounding of x·L − c, half a float32 ulp of it. ok is false where
// |c| ≥ 2¹⁶ (|shift| above about 45426, infinite or NaN), which the
// kernels are not used for: there d, up to 2⁻²⁴·|c|, would leave the
// correction's second-order form and, at 2^(x·L − c) for x = shift, the
// largest term's exponent (d itself) would no longer be small.
func sumShift(shift float32) (c float32, fix float64, ok bool) {
	c = shift * log2e
	if !(math.Abs(float64(c)) < 0x1p16) {
		return 0, 0, false
	}
	y := -(float64(shift)*float64(float32(log2e)) - float64(c)) * math.Ln2
	return c, 1 + y + y*y/2, true
}

// log32 returns ln x: −Inf for 0, NaN for negative x and NaN, +Inf for
// +Inf.
func log32(x float32) float32 {
	switch {
	case x == 0:
		return float32(math.Inf(-1))
	case !(x >= 0):
		return float32(math.NaN())
	case x > math.MaxFloat32:
		return x
	}
	var k float32
	if x < 0x1p-126 { // subnormal: scale into the normal range first
		x *= 0x1p23
		k = 23
	}
	// x = 2^e·m with m in [√½, √2): subtracting √½'s bits before taking
	// the exponent field rounds e to nearest instead of down.
	bits := math.Float32bits(x)
	e := int32(bits-0x3f3504f3) >> 23
	f := math.Float32frombits(bits-uint32(e<<23)) - 1
	p := logL[7]
	for k := 6; k >= 0; k-- {
		p = p*f + logL[k]
	}
	y := f*f*(p*f-0.5) + f
	ef := float32(e) - k
	return (y + ef*ln2Lo) + ef*ln2Hi
}

// tanhParts returns tanh(x) and 1 − tanh²(x), each without cancellation:
// for |x| ≥ tanhSmall, tanh|x| = 1 − q with q = 2/(e^{2|x|}+1) and
// 1 − tanh² = q·(2 − q).
func tanhParts(x float32) (t, d float32) {
	a := abs32(x)
	if a < tanhSmall {
		u := x * x
		p := tanhP[5]
		for k := 4; k >= 0; k-- {
			p = p*u + tanhP[k]
		}
		t = x*u*p + x
		return t, 1 - t*t
	}
	q := 2 / (exp32(a+a) + 1)
	t = 1 - q
	if math.Float32bits(x)&(1<<31) != 0 {
		t = -t
	}
	return t, q * (2 - q)
}

func tanh32(x float32) float32 {
	t, _ := tanhParts(x)
	return t
}

// sigmoidParts returns σ(x) and σ(x)·(1−σ(x)). With e = exp(−|x|),
// σ(|x|) = 1/(1+e) and σ(−|x|) = e/(1+e): neither overflows nor cancels.
func sigmoidParts(x float32) (s, d float32) {
	e := exp32(-abs32(x))
	r := 1 / (1 + e)
	s0 := e * r
	s = s0
	if x >= 0 {
		s = r
	}
	return s, r * s0
}

// sigmoid32 is σ(x) = 1/(1 + exp(−x)): exp's error and two roundings.
// Below x = −88.7, exp(−x) overflows and σ is 0 rather than subnormal.
func sigmoid32(x float32) float32 { return 1 / (1 + exp32(-x)) }

// silu32 is x·σ(x) = x/(1 + exp(−x)), with one rounding fewer than the
// product; 0 below x = −88.7, where x·σ(x) is below 2.7e−37 in magnitude.
func silu32(x float32) float32 { return x / (1 + exp32(-x)) }

// siluGrad32 is d/dx x·σ(x) = σ + x·σ·(1−σ), the last step fused as the
// assembly fuses it: rounded twice, as Go compiles x·d + s on amd64, the
// error reached 5.06 ulps of the bound of 5 near x = −13.8
// (TestAccuracyEveryFloat).
func siluGrad32(x float32) float32 {
	s, d := sigmoidParts(x)
	return fma32(x, d, s)
}

// phiTail returns h = Φ(−|x|) = ½·erfc(|x|/√2), the standard normal tail,
// and g = exp(−x²/2), both 0 where |x| > geluMaxA (NaN for NaN). With
// a = |x|, h = g·F(a) for the smooth factor F(a) = ½·erfc(a/√2)·e^{a²/2}
// (from ½ at 0 to about 1/(a√(2π))), which phiT approximates on sixteen
// intervals by polynomials of degree five: the interval's number comes
// from the bits of a+1 and its coefficients from a table, so that the
// assembly fetches each with a single permute. Φ(x) is h for x < 0 and
// 1 − h otherwise, so the left tail keeps its relative precision.
func phiTail(x float32) (h, g float32) {
	a := abs32(x)
	if a > geluMaxA {
		return 0, 0
	}
	// e^{−a²/2} = 2ⁿ·e^{−R/2} with n = round(−a²/(2 ln 2)) and R =
	// a² + 2n·ln 2 in about [−ln 2, ln 2]. a² + 2n·ln2Hi is computed
	// exactly and rounded once, so that R keeps all its digits however
	// large a² is: a float32 square and 2n·ln2Hi (16 bits) are exact in
	// float64, and so is their sum (at most 49 significant bits); the
	// assembly's fused multiply-add rounds the same exact value.
	a2 := float64(a) * float64(a)
	n := roundEven(float32(a2) * (-0.5 * log2e))
	r := float32(a2 + float64(n*(2*ln2Hi)))
	r += n * (2 * ln2Lo)
	q := gaussQ[len(gaussQ)-1]
	for k := len(gaussQ) - 2; k >= 0; k-- {
		q = q*r + gaussQ[k]
	}
	g = (q*r + 1) * pow2(int32(n))
	i := (math.Float32bits(a+1) >> 21) & 15
	u := a - phiT[0][i]
	p := phiT[len(phiT)-1][i]
	for k := len(phiT) - 2; k >= 1; k-- {
		p = p*u + phiT[k][i]
	}
	return g * p, g
}

// gelu32 is x·Φ(x) = max(x, 0) − |x|·h (x − x·h from 0 on, x·h
// below), rounded once as the assembly's fused multiply-add: the
// product is exact in float64. Beyond geluMaxA, where h is 0, |x| is
// taken as geluMaxA, so that ±Inf gives +Inf and 0, not ∞·0 (NaN stays
// NaN: Go's min and max return it).
func gelu32(x float32) float32 {
	h, _ := phiTail(x)
	return float32(float64(max(x, 0)) - float64(min(abs32(x), geluMaxA))*float64(h))
}

// geluGrad32 is d/dx x·Φ(x) = Φ(x) + x·φ(x), with x clamped to
// ±geluMaxA in the second term, where φ is 0 beyond it (as gelu32).
func geluGrad32(x float32) float32 {
	h, g := phiTail(x)
	c := h
	if x >= 0 {
		c = 1 - h
	}
	return min(max(x, -geluMaxA), geluMaxA)*(g*invSqrt2Pi) + c
}

// geluTanhExp returns 2^v = e^{−y} for v = −y·log2e = a·Q, Q = a1 +
// a3·a², for |a| ≤ gtXMax (for NaN, NaN or some number: callers' results
// are NaN through x itself), and a² rounded, which the derivative reuses.
// Where e^{−y} is large (the left tail) its relative error is v's
// absolute one, and v in float32 would be off by up to |v|·2⁻²⁴, 70 ulps
// as |v| nears 126; here v is reduced with float32 operations whose
// roundings are compensated, so that its error stays about 2⁻²⁸.
//
// Q = Qh + Ql in two parts: with s = fl(a²) and sl = a² − s (exact, a
// fused multiply-add), Qh = fl(gtA3Hi·s + gtA1Hi) (fused), and its
// rounding error exactly as fl(gtA3Hi·s − (Qh − gtA1Hi)): Qh − gtA1Hi is
// exact because gtA1Hi is a multiple of 2⁻¹⁸ and |Qh| < 2⁶ (and Qh has
// gtA1Hi's sign, and is larger). Ql adds that error to gtA3Hi·sl +
// gtA3Lo·s + gtA1Lo, about 2⁻²⁴ of Q, which float32 holds to 2⁻⁴⁸.
//
// Then v = m/16 + g: m = round(16·a·Qh) from a·Qh + gtMagic rounded once
// (fused), g = (a·Qh − m/16) + a·Ql, two fused multiply-adds whose first
// is exact before its rounding, so that g, |g| ≤ 1/32 + 10⁻⁵, is off by
// two roundings of 2⁻²⁹. With m = 16n + j, 2^v = 2ⁿ·2^(j/16)·2^g:
// 2^(j/16) = T_j·(1 + τ_j) from the tables, 2^g = 1 + g·P(g) with P of
// degree 2 (gtExp2P, 1.6e−9 relative), so that 2^v = 2ⁿ·T_j + 2ⁿ·T_j·(τ_j
// + g·P(g)), one fused multiply-add rounded. The scaling by 2ⁿ is exact
// where it leaves T_j normal, n ≥ −126, and done on T_j's exponent field
// before the last multiply-add (off the dependency chain in the
// assembly). Below, where 2^v < 2⁻¹²⁶, it is flushed to 0; above 127,
// where 2^v ≥ 2^127.97, +Inf is returned (the derivative's argument is
// never positive, and the forward's result x/(1 + e^{−y}) is then below
// 3e−38 in magnitude). The assembly does the same operations in the same
// order (and, where Go rounds a fused multiply-add's float64 sum twice,
// may differ from it in the last bit).
func geluTanhExp(a float32) (e, s float32) {
	s = float32(a * a) // conversions keep Go from fusing a product and a sum
	sl := fma32(a, a, -s)
	qh := fma32(gtA3Hi, s, gtA1Hi)
	ql := fma32(gtA3Hi, s, -(qh - gtA1Hi))
	ql += fma32(gtA3Hi, sl, fma32(gtA3Lo, s, gtA1Lo))
	idx := fma32(a, qh, gtMagic)
	m16 := idx - gtMagic // exactly m/16
	g := fma32(a, qh, -m16)
	g = fma32(a, ql, g)
	// idx and gtMagic share a binade: their bits differ by m (for NaN,
	// by anything, which only picks some table entry).
	m := int32(math.Float32bits(idx) - math.Float32bits(gtMagic))
	j := m & 15
	n := m >> 4 // ⌊m/16⌋
	p := fma32(gtExp2P[2], g, gtExp2P[1])
	p = fma32(p, g, gtExp2P[0])
	u := fma32(g, p, gtExp2Tau[j])
	switch {
	case n < -126:
		return 0, s
	case n > 127:
		return float32(math.Inf(1)), s
	}
	t := math.Float32frombits(math.Float32bits(gtExp2T[j]) + uint32(n)<<23) // T_j·2ⁿ
	return fma32(t, u, t), s
}

// geluTanh32 is GELU's tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x +
// 0.044715·x³))) as x/(1 + e^{−y}), which does not cancel in the left tail
// where 1 + tanh does: x for large x (e^{−y} is below half an ulp of 1
// from x ≈ 5.6), 0 from x ≈ −10.06 down, where e^{−y} overflows (and the
// function is below 3e−38).
func geluTanh32(x float32) float32 {
	if x != x {
		return x
	}
	e, _ := geluTanhExp(clamp(x, -gtXMax, gtXMax))
	if e > math.MaxFloat32 {
		return 0 // −Inf included, which x/(1 + e) would make NaN
	}
	return x / (1 + e)
}

// geluTanhGrad32 is the derivative σ(y) + x·σ(y)·σ(−y)·y′ with y′ = c1 +
// 3c3·x², σ(y) from e = e^{−|y|} as sigmoidParts takes it (y has x's
// sign), and σ(y)·σ(−y) as s0 − s0² for s0 = σ(−|y|), which carries
// s0's error alone (r·s0 would add r's). The fused multiply-adds are
// the assembly's. e is 0 from |x| ≈ 9.95 on, where e^{−|y|} < 2⁻¹²⁶: the
// derivative is then 1 or 0 (it is below 4e−36 in magnitude for x < 0).
func geluTanhGrad32(x float32) float32 {
	xc := clamp(x, -gtXMax, gtXMax)
	e, x2 := geluTanhExp(abs32(xc))
	r := 1 / (1 + e)
	s0 := e * r
	s := s0
	if x >= 0 {
		s = r
	}
	yp := fma32(x2, 3*gtC3, gtC1)
	t := fma32(-s0, s0, s0) // σ(y)·σ(−y) = s0·(1 − s0), s0 = σ(−|y|) ≤ ½
	return fma32(xc*yp, t, s)
}

// fma32 returns a·b + c rounded once, as the assembly's fused
// multiply-adds do: the product of two float32s is exact in float64, and
// the float64 sum rounded to float32 differs from the once-rounded one
// only in the rare double rounding at a float32 midpoint.
func fma32(a, b, c float32) float32 { return float32(float64(a)*float64(b) + float64(c)) }
