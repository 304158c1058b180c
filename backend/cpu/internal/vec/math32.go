package vec

import "math"

// The float32 approximations below are the scalar, pure-Go form of the
// assembly kernels: the same range reductions and the same polynomials
// (coeffs.go), so both paths agree to within rounding. Each is accurate to
// a few float32 ulps (accuracy_test.go measures them against float64 math
// over dense sweeps). Polynomials are evaluated by Horner's rule; where
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
	// 2·√(2/π) and c3 = c1·0.044715. Its exponential takes, in float64,
	// v = −y·log2e = x·(gtA1 + gtA3·x²), whose integer part is clamped to
	// [gtVLo, gtVHi]: 2^v is 0 below −160 and +Inf above 130 either way,
	// and the clamp keeps the integers of the scaling by 2ⁿ small.
	gtC1  = 1.5957691216057308 // 2·√(2/π)
	gtC3  = gtC1 * 0.044715    // 2·√(2/π)·0.044715
	gtA1  = -gtC1 * math.Log2E // −c1·log2e
	gtA3  = -gtC3 * math.Log2E // −c3·log2e
	gtVLo = -160
	gtVHi = 130
	gtLn2 = math.Ln2
	// gtXMax bounds |x| in the exponential's argument and in the
	// derivative's x·y′(x) term: from |x| ≈ 10.6 on, e^{−|y|} is below the
	// float32 range, so the results do not change, and the bound keeps v
	// finite for infinite x (whose v − n would be NaN) and x·y′ finite,
	// so that its product with σ(y)·σ(−y) = 0 is 0 rather than ∞·0.
	gtXMax = 20
)

// roundEven rounds x, |x| < 2²², to the nearest integer, ties to even, as
// the assembly's VROUNDPS does: adding and subtracting 1.5·2²³ leaves no
// bits below the units, and float32 addition rounds to nearest even.
func roundEven(x float32) float32 {
	const magic = 0x1.8p23
	return (x + magic) - magic
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

// siluGrad32 is d/dx x·σ(x) = σ + x·σ·(1−σ).
func siluGrad32(x float32) float32 {
	s, d := sigmoidParts(x)
	return x*d + s
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
// product is exact in float64.
func gelu32(x float32) float32 {
	h, _ := phiTail(x)
	return float32(float64(max(x, 0)) - float64(abs32(x))*float64(h))
}

// geluGrad32 is d/dx x·Φ(x) = Φ(x) + x·φ(x).
func geluGrad32(x float32) float32 {
	h, g := phiTail(x)
	c := h
	if x >= 0 {
		c = 1 - h
	}
	return x*(g*invSqrt2Pi) + c
}

// geluTanhExp returns e^{−y} for y = c1·x + c3·x³, the exponential of
// GELU's tanh approximation x·σ(y) = x/(1 + e^{−y}) (for x ≥ 0 the
// derivative's e^{−|y|}), for |x| ≤ gtXMax or NaN. The argument in base 2, v = x·(gtA1 + gtA3·x²),
// is formed in float64, where it is finite for every float32 x and good to
// about 1e−16 relative, then reduced to v = n + f, n an integer and |f| ≤
// ½ (f exact), and 2^v = e^r·2ⁿ with r = f·ln2 rounded once to float32
// and n clamped to [gtVLo, gtVHi]. In
// float32 the argument's own rounding would make e^{−y} err by |y|·2⁻²⁴
// relative, 70 ulps in the left tail where |y| nears 87; here the error
// is exp's (expCore's) and r's rounding, about 1e−8 relative. The
// assembly does the same operations in the same order on float64 halves
// of each vector.
func geluTanhExp(x float32) float32 {
	xd := float64(x)
	v := xd * math.FMA(gtA3, xd*xd, gtA1)
	n := math.RoundToEven(v)
	r := float32((v - n) * gtLn2)
	// Beyond [gtVLo, gtVHi] 2^v is 0 or +Inf whatever n is clamped to,
	// and clamping keeps the scaling's integers small (NaN passes).
	n = max(min(n, gtVHi), gtVLo)
	i := int32(n)
	i1 := i >> 1
	return expCore(r) * pow2(i1) * pow2(i-i1)
}

// geluTanh32 is GELU's tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x +
// 0.044715·x³))) as x/(1 + e^{−y}), which does not cancel in the left tail
// where 1 + tanh does: x for large x (e^{−y} is below half an ulp of 1
// from x ≈ 5.6), −0 below x ≈ −10.5, where e^{−y} overflows.
func geluTanh32(x float32) float32 { return x / (1 + geluTanhExp(clamp(x, -gtXMax, gtXMax))) }

// geluTanhGrad32 is the derivative σ(y) + x·σ(y)·σ(−y)·y′ with y′ = c1 +
// 3c3·x², σ(y) from e = e^{−|y|} as sigmoidParts takes it (y has x's
// sign), and σ(y)·σ(−y) as s0 − s0² for s0 = σ(−|y|), which carries
// s0's error alone (r·s0 would add r's). The fused multiply-adds are
// the assembly's.
func geluTanhGrad32(x float32) float32 {
	xc := clamp(x, -gtXMax, gtXMax)
	e := geluTanhExp(abs32(xc))
	r := 1 / (1 + e)
	s0 := e * r
	s := s0
	if x >= 0 {
		s = r
	}
	yp := fma32(xc*xc, 3*gtC3, gtC1)
	t := fma32(-s0, s0, s0) // σ(y)·σ(−y) = s0·(1 − s0), s0 = σ(−|y|) ≤ ½
	return fma32(xc*yp, t, s)
}

// fma32 returns a·b + c rounded once, as the assembly's fused
// multiply-adds do: the product of two float32s is exact in float64, and
// the float64 sum rounded to float32 differs from the once-rounded one
// only in the rare double rounding at a float32 midpoint.
func fma32(a, b, c float32) float32 { return float32(float64(a)*float64(b) + float64(c)) }
