package vec

import "math"

// The pure-Go kernels. Each reslices its inputs to the output's length
// first, which both enforces the length contract (with a panic) and lets
// the compiler drop the bounds checks in the loops.

func goFill(dst []float32, v float32) {
	for i := range dst {
		dst[i] = v
	}
}

func goAdd(dst, a, b []float32) {
	a, b = a[:len(dst)], b[:len(dst)]
	for i := range dst {
		dst[i] = a[i] + b[i]
	}
}

func goSub(dst, a, b []float32) {
	a, b = a[:len(dst)], b[:len(dst)]
	for i := range dst {
		dst[i] = a[i] - b[i]
	}
}

func goMul(dst, a, b []float32) {
	a, b = a[:len(dst)], b[:len(dst)]
	for i := range dst {
		dst[i] = a[i] * b[i]
	}
}

func goDiv(dst, a, b []float32) {
	a, b = a[:len(dst)], b[:len(dst)]
	for i := range dst {
		dst[i] = a[i] / b[i]
	}
}

func goAddScalar(dst, a []float32, s float32) {
	a = a[:len(dst)]
	for i := range dst {
		dst[i] = a[i] + s
	}
}

func goSubScalar(dst, a []float32, s float32) {
	a = a[:len(dst)]
	for i := range dst {
		dst[i] = a[i] - s
	}
}

func goMulScalar(dst, a []float32, s float32) {
	a = a[:len(dst)]
	for i := range dst {
		dst[i] = a[i] * s
	}
}

// goDivScalar divides rather than multiplying by 1/s, to round as a/s
// does.
func goDivScalar(dst, a []float32, s float32) {
	a = a[:len(dst)]
	for i := range dst {
		dst[i] = a[i] / s
	}
}

func goAxpy(y []float32, alpha float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += alpha * x[i]
	}
}

// mapper turns a scalar function into an element-wise kernel.
func mapper(f func(float32) float32) func(dst, x []float32) {
	return func(dst, x []float32) {
		x = x[:len(dst)]
		for i := range dst {
			dst[i] = f(x[i])
		}
	}
}

// gradMapper turns f(x, dy) into a kernel dx = f(x, dy).
func gradMapper(f func(x, dy float32) float32) func(dx, x, dy []float32) {
	return func(dx, x, dy []float32) {
		x, dy = x[:len(dx)], dy[:len(dx)]
		for i := range dx {
			dx[i] = f(x[i], dy[i])
		}
	}
}

// sqrt32 is the correctly rounded float32 square root (rounding the
// float64 root again is exact for square roots).
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

func goSqrt(dst, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] = sqrt32(x[i])
	}
}

func goRsqrt(dst, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] = 1 / sqrt32(x[i])
	}
}

func goReLU(dst, x []float32) {
	x = x[:len(dst)]
	for i, v := range x {
		if v <= 0 { // NaN is not <= 0 and passes through, as in PyTorch
			v = 0
		}
		dst[i] = v
	}
}

func goNeg(dst, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] = -x[i]
	}
}

func goSquare(dst, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] = x[i] * x[i]
	}
}

func goReLUGrad(dx, x, dy []float32) {
	x, dy = x[:len(dx)], dy[:len(dx)]
	for i := range dx {
		g := dy[i]
		if !(x[i] > 0) {
			g = 0
		}
		dx[i] = g
	}
}

func goSum(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	return s
}

func goSumSquares(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return s
}

func goDot(a, b []float32) float64 {
	b = b[:len(a)]
	var s float64
	for i, v := range a {
		s += float64(v) * float64(b[i])
	}
	return s
}

func goSumSquaresDot3(x, a, b []float32) (ss, dot float64) {
	a, b = a[:len(x)], b[:len(x)]
	for i, v := range x {
		ss += float64(v) * float64(v)
		dot += float64(a[i]*b[i]) * float64(v) // a·b rounded to float32, as the assembly does
	}
	return ss, dot
}

func goSumsAbout(x []float32, c float64) (sd, ssd float64) {
	for _, v := range x {
		d := float64(v) - c
		sd += d
		ssd += d * d
	}
	return sd, ssd
}

func goMax(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		if v != v {
			return v
		}
		if v > m {
			m = v
		}
	}
	return m // NaN when x[0] is: nothing compares greater than NaN
}

func goMaxScaled(x []float32, s float32) float32 {
	m := s * x[0]
	for _, v := range x[1:] {
		if p := s * v; p > m || p != p {
			m = p
		}
	}
	return m
}

// expShiftArg is scale·x − shift with one rounding where the platform
// fuses, two where it does not; either way the product's rounding error
// is far below exp's own.
func expShiftArg(x, scale, shift float32) float32 { return scale*x - shift }

func goExpShift(dst, x []float32, scale, shift float32) float64 {
	x = x[:len(dst)]
	var s float64
	for i := range dst {
		e := exp32(expShiftArg(x[i], scale, shift))
		dst[i] = e
		s += float64(e)
	}
	return s
}

func goExpShiftSum(x []float32, shift float32) float64 {
	c, fix, ok := sumShift(shift)
	if !ok {
		return expShiftSumSlow(x, shift)
	}
	return goExp2Sum(x, c) * fix
}

// goExp2Sum returns Σ 2^(x·log2e − c), each exponent computed with a
// float64 fused multiply-add and rounded to float32, as the assembly's
// float32 fused multiply-subtract rounds it (but for the rare double
// rounding where the exact difference needs more than 53 bits).
func goExp2Sum(x []float32, c float32) float64 {
	var s float64
	for _, v := range x {
		u := float32(math.FMA(float64(v), float64(float32(log2e)), -float64(c)))
		s += float64(expSum32(u))
	}
	return s
}

// expShiftSumSlow is ExpShiftSum for a shift the sum kernels do not take
// (see sumShift): beyond about ±45426, infinite or NaN, all rare in
// practice, summed with exp32.
func expShiftSumSlow(x []float32, shift float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(exp32(v - shift))
	}
	return s
}

// nextMax is the largest element of next, −Inf for none; next must be
// empty or n long.
func nextMax(next []float32, n int) float32 {
	if len(next) != 0 && len(next) != n {
		panic("vec: next row and row differ in length")
	}
	m := float32(math.Inf(-1))
	for _, v := range next {
		if v > m || v != v {
			m = v
		}
	}
	return m
}

func goExpShiftNextMax(dst, x, next []float32, shift float32) (float64, float32) {
	m := nextMax(next, len(dst))
	return goExpShift(dst, x, 1, shift), m
}

func goExpSumNextMax(x, next []float32, shift float32) (float64, float32) {
	m := nextMax(next, len(x))
	return goExpShiftSum(x, shift), m
}

func goAccumulate(acc []float64, x []float32) {
	x = x[:len(acc)]
	for i := range acc {
		acc[i] += float64(x[i])
	}
}

func goScaleTo(dst, x []float32, s float64) { goMulScalar(dst, x, float32(s)) }

func goScaleMul(dst, x, w []float32, s float64) {
	x, w = x[:len(dst)], w[:len(dst)]
	s32 := float32(s)
	for i := range dst {
		dst[i] = x[i] * s32 * w[i]
	}
}

// split returns v as a float32 pair hi + lo, close to v to about 2⁻⁴⁸ of
// it: subtracting hi and then lo from a float32 x keeps x − v accurate to
// its own size even where x and v nearly cancel, which subtracting
// float32(v) alone does not (its rounding can be larger than x − v).
func split(v float64) (hi, lo float32) {
	hi = float32(v)
	return hi, float32(v - float64(hi))
}

func goNormalize(dst, x, g, b []float32, mean, rstd float64) {
	x, g = x[:len(dst)], g[:len(dst)]
	mh, ml := split(mean)
	r := float32(rstd)
	if b == nil {
		for i := range dst {
			dst[i] = (x[i] - mh - ml) * r * g[i]
		}
		return
	}
	b = b[:len(dst)]
	for i := range dst {
		dst[i] = (x[i]-mh-ml)*r*g[i] + b[i]
	}
}

func goSoftmaxGrad(dx, y, dy []float32, scale, dot float64) {
	y, dy = y[:len(dx)], dy[:len(dx)]
	s := float32(scale)
	dh, dl := split(dot)
	for i := range dx {
		dx[i] = y[i] * s * (dy[i] - dh - dl)
	}
}

func goRMSNormGrad(dx, x, w, dy []float32, rs, c float64) {
	x, w, dy = x[:len(dx)], w[:len(dx)], dy[:len(dx)]
	rs32, c32 := float32(rs), float32(c)
	for i := range dx {
		dx[i] = rs32*w[i]*dy[i] - x[i]*c32
	}
}

func goRMSNormGradAcc(dx, x, w, dy, acc []float32, rs, c float64) {
	x, w, dy, acc = x[:len(dx)], w[:len(dx)], dy[:len(dx)], acc[:len(dx)]
	rs32, c32 := float32(rs), float32(c)
	for i := range dx {
		d := dy[i]
		dx[i] = rs32*w[i]*d - x[i]*c32
		acc[i] += x[i] * rs32 * d
	}
}

func goLayerNormGrad(dx, x, w, dy []float32, mean, rstd, mg, mgx float64) {
	x, w, dy = x[:len(dx)], w[:len(dx)], dy[:len(dx)]
	mh, ml := split(mean)
	r, mg32, mgx32 := float32(rstd), float32(mg), float32(mgx)
	for i := range dx {
		xh := (x[i] - mh - ml) * r
		// The conversions round each product, as amd64 does: Go on
		// arm64 would otherwise fuse them into the subtractions.
		dx[i] = (float32(dy[i]*w[i]) - mg32 - float32(xh*mgx32)) * r
	}
}

func goLayerNormGradStats(x, w, dy []float32, c float64) (sd, ssd, sg, sgd float64) {
	w, dy = w[:len(x)], dy[:len(x)]
	for i, v := range x {
		d := float64(v) - c
		g := float64(w[i] * dy[i]) // rounded to float32, as the assembly does
		sd += d
		ssd += d * d
		sg += g
		sgd += d * g
	}
	return sd, ssd, sg, sgd
}

func goLayerNormGradAcc(dx, x, w, dy, accG, accB []float32, mean, rstd, mg, mgx float64) {
	x, w, dy, accG = x[:len(dx)], w[:len(dx)], dy[:len(dx)], accG[:len(dx)]
	if accB != nil {
		accB = accB[:len(dx)]
	}
	mh, ml := split(mean)
	r, mg32, mgx32 := float32(rstd), float32(mg), float32(mgx)
	for i := range dx {
		xh := (x[i] - mh - ml) * r
		d := dy[i]
		dx[i] = (float32(d*w[i]) - mg32 - float32(xh*mgx32)) * r // products rounded, as above
		accG[i] += xh * d
		if accB != nil {
			accB[i] += d
		}
	}
}

func goAdamW(p, g, m, v []float32, s *AdamWStep) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	for i := range p {
		gi := float64(g[i])
		// The conversions round each product, as the assembly does: the
		// compiler may otherwise fuse a product into the add that follows
		// (GOAMD64=v3), and the kernels must agree bit for bit.
		mi := float64(s.Beta1*float64(m[i])) + float64(s.OneMinusBeta1*gi)
		vi := float64(s.Beta2*float64(v[i])) + float64(s.OneMinusBeta2*gi*gi)
		m[i], v[i] = float32(mi), float32(vi)
		p[i] = float32(float64(s.Decay*float64(p[i])) - s.StepSize*mi/(math.Sqrt(vi)+s.Eps))
	}
}
