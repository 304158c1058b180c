package vec

import "math"

// logTabBits is how many leading mantissa bits pick log64's table entry.
const logTabBits = 7

// logInv and logC are log64's table: for the mantissa interval [1 +
// i/128, 1 + (i+1)/128), the float64 reciprocal of a point c_i in it and
// −log of that reciprocal (so that m·logInv[i] − 1 is the reduced
// argument of an exactly known logarithm); c_0 is 1 itself (r = m − 1,
// exactly), the others are the intervals' midpoints. The AVX-512 kernel
// gathers from them (gen_amd64.go's log64).
var logInv, logC = func() (inv, lc [1 << logTabBits]float64) {
	for i := range inv {
		c := 1.0
		if i > 0 {
			c = 1 + (float64(i)+0.5)/(1<<logTabBits)
		}
		inv[i] = 1 / c
		lc[i] = -math.Log(inv[i])
	}
	return inv, lc
}()

// log64Near is how close to 1 log64 takes r = s − 1 as it is.
const log64Near = 1.0 / (1 << logTabBits)

// log64 returns ln s in float64 as Kernels.Log64 computes it, bit for
// bit: with s = 2^e·m, m in [1, 2), ln s = e·ln 2 − ln(logInv[i]) +
// ln(1 + r) for r = m·logInv[i] − 1 (one rounding, a fused
// multiply-add), |r| < 2⁻⁷ (index 0) or 2⁻⁸, and ln(1 + r) = r +
// r²·p(r), the Taylor series to degree 7 (truncated below 2e−18
// absolutely) in fused multiply-adds. Within 2⁻⁷ of 1, where ln s is
// small, r is s − 1 (exact) and e·ln 2 and the table entry, which would
// cancel, are left out. Zero, subnormal, negative, infinite and NaN s
// go to math.Log.
func log64(s float64) float64 {
	if !(s >= 0x1p-1022 && s <= math.MaxFloat64) {
		return math.Log(s)
	}
	r := s - 1
	var base float64
	if !(r > -log64Near && r < log64Near) {
		b := math.Float64bits(s)
		e := float64(int64(b>>52) - 1023)
		i := b >> (52 - logTabBits) & (1<<logTabBits - 1)
		m := math.Float64frombits(b&(1<<52-1) | 1023<<52)
		r = math.FMA(m, logInv[i], -1)
		base = math.FMA(e, math.Ln2, logC[i])
	}
	p := math.FMA(r, 1.0/7, -1.0/6)
	p = math.FMA(p, r, 1.0/5)
	p = math.FMA(p, r, -1.0/4)
	p = math.FMA(p, r, 1.0/3)
	p = math.FMA(p, r, -1.0/2)
	return base + math.FMA(r*r, p, r)
}

// goLog64 is the Go set's Log64.
func goLog64(dst, x []float64) {
	x = x[:len(dst)]
	for i, s := range x {
		dst[i] = log64(s)
	}
}
