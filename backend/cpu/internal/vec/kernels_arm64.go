//go:build !noasm

package vec

// The NEON kernel set. Advanced SIMD is part of every ARMv8-A CPU, so
// nothing is checked before using it. Every kernel is in
// kernels_arm64.s. The element-wise arithmetic and functions (Exp, Log,
// Tanh, Sigmoid, SiLU, GELU, GELUTanh and their derivatives), the row
// steps, AdamW and ExpShift's exponentials agree with the Go set bit for
// bit, as both do the same operations in the same order and fuse the
// same multiply-adds (gen_arm64.go; GELU, GELUTanh and the terms of the
// exponential sums round once where Go rounds a float64 sum to float32,
// which can differ only at a float32 midpoint); the reductions, the
// exponential sums included, accumulate in float64 in another order.
// Prefetch issues PRFM PLDL1KEEP for each cache line. There are no
// streaming stores: Streaming returns the set itself.

var neonSet = newNEON()

func simdAll() []*Kernels { return []*Kernels{neonSet} }

func simd() *Kernels { return neonSet }

// newNEON wraps the assembly entry points, which take raw pointers and a
// length: each wrapper reslices its inputs to the output's length first,
// which panics where one is shorter (as the Go kernels do), and passes
// nothing to the assembly for an empty output.
func newNEON() *Kernels {
	k := *Go
	k.Name = "neon"

	k.Fill = func(dst []float32, v float32) {
		if len(dst) > 0 {
			neonFill(&dst[0], v, len(dst))
		}
	}
	k.Add, k.Sub, k.Mul, k.Div = bin(neonAdd), bin(neonSub), bin(neonMul), bin(neonDiv)
	k.AddScalar, k.SubScalar = scalar(neonAddScalar), scalar(neonSubScalar)
	k.MulScalar, k.DivScalar = scalar(neonMulScalar), scalar(neonDivScalar)
	k.Axpy = func(y []float32, alpha float32, x []float32) {
		if len(y) == 0 {
			return
		}
		x = x[:len(y)]
		neonAxpy(&y[0], &y[0], &x[0], alpha, len(y))
	}

	k.Sqrt, k.Neg, k.Square, k.ReLU = unary(neonSqrt), unary(neonNeg), unary(neonSquare), unary(neonReLU)
	k.Rsqrt = func(dst, x []float32) {
		if len(dst) > 0 {
			x = x[:len(dst)]
			neonRsqrt(&dst[0], &x[0], 1, len(dst))
		}
	}
	k.ReLUGrad, k.NegGrad, k.SquareGrad = bin(neonReLUGrad), bin(neonNegGrad), bin(neonSquareGrad)
	k.LogGrad = bin(neonLogGrad)
	k.SqrtGrad = func(dx, x, dy []float32) {
		if n := len(dx); n > 0 {
			x, dy = x[:n], dy[:n]
			neonSqrtGrad(&dx[0], &x[0], &dy[0], 0.5, n)
		}
	}
	k.RsqrtGrad = func(dx, x, dy []float32) {
		if n := len(dx); n > 0 {
			x, dy = x[:n], dy[:n]
			neonRsqrtGrad(&dx[0], &x[0], &dy[0], -0.5, 1, n)
		}
	}

	k.Exp, k.Sigmoid, k.SiLU = unary(neonExp), unary(neonSigmoid), unary(neonSiLU)
	k.Log, k.Tanh, k.GELU, k.GELUTanh = unary(neonLog), unary(neonTanh), unary(neonGELU), unary(neonGELUTanh)
	k.TanhGrad, k.GELUGrad, k.GELUTanhGrad = bin(neonTanhGrad), bin(neonGELUGrad), bin(neonGELUTanhGrad)
	k.Prefetch = func(x []float32) {
		if len(x) > 0 {
			neonPrefetch(&x[0], len(x))
		}
	}
	k.ExpGrad, k.SigmoidGrad, k.SiLUGrad = bin(neonExpGrad), bin(neonSigmoidGrad), bin(neonSiLUGrad)
	expAsm{
		expShift: neonExpShift,
		expShiftNextMax: func(dst, x, next *float32, shift float32, n int) (float64, float32) {
			return neonExpShiftNextMax(dst, x, next, 1, shift, n)
		},
		expShiftSum:   neonExpShiftSum,
		expSumNextMax: neonExpShiftSumNextMax,
	}.install(&k)

	k.Sum = func(x []float32) float64 {
		if len(x) == 0 {
			return 0
		}
		return neonSum(&x[0], len(x))
	}
	k.SumSquares = func(x []float32) float64 {
		if len(x) == 0 {
			return 0
		}
		return neonSumSquares(&x[0], len(x))
	}
	k.Dot = func(a, b []float32) float64 {
		if len(a) == 0 {
			return 0
		}
		b = b[:len(a)]
		return neonDot(&a[0], &b[0], len(a))
	}
	k.SumSquaresDot3 = func(x, a, b []float32) (float64, float64) {
		if len(x) == 0 {
			return 0, 0
		}
		a, b = a[:len(x)], b[:len(x)]
		return neonSumSquaresDot3(&x[0], &a[0], &b[0], len(x))
	}
	k.SumsAbout = func(x []float32, c float64) (float64, float64) {
		if len(x) == 0 {
			return 0, 0
		}
		return neonSumsAbout(&x[0], c, len(x))
	}
	k.Max = func(x []float32) float32 {
		m := neonMax(&x[0], len(x)) // x[0] panics for an empty x, as goMax does
		if m != m {
			return goMax(x) // finds the NaN of x to return
		}
		return m
	}
	k.MaxScaled = func(x []float32, s float32) float32 { return neonMaxScaled(&x[0], s, len(x)) }
	k.Accumulate = func(acc []float64, x []float32) {
		if len(acc) == 0 {
			return
		}
		x = x[:len(acc)]
		neonAccumulate(&acc[0], &x[0], len(acc))
	}

	k.ScaleTo = func(dst, x []float32, s float64) { k.MulScalar(dst, x, float32(s)) }
	k.ScaleMul = func(dst, x, w []float32, s float64) {
		if n := len(dst); n > 0 {
			x, w = x[:n], w[:n]
			neonScaleMul(&dst[0], &x[0], &w[0], float32(s), n)
		}
	}
	k.Normalize = func(dst, x, g, b []float32, mean, rstd float64) {
		n := len(dst)
		if n == 0 {
			return
		}
		x, g = x[:n], g[:n]
		mh, ml := split(mean)
		r := float32(rstd)
		if b == nil {
			neonNormalize(&dst[0], &x[0], &g[0], mh, ml, r, n)
			return
		}
		b = b[:n]
		neonNormalizeShift(&dst[0], &x[0], &g[0], &b[0], mh, ml, r, n)
	}
	k.SoftmaxGrad = func(dx, y, dy []float32, scale, dot float64) {
		if n := len(dx); n > 0 {
			y, dy = y[:n], dy[:n]
			dh, dl := split(dot)
			neonSoftmaxGrad(&dx[0], &y[0], &dy[0], float32(scale), dh, dl, n)
		}
	}
	k.RMSNormGrad = func(dx, x, w, dy []float32, rs, c float64) {
		if n := len(dx); n > 0 {
			x, w, dy = x[:n], w[:n], dy[:n]
			neonRMSNormGrad(&dx[0], &x[0], &w[0], &dy[0], float32(rs), float32(c), n)
		}
	}
	k.RMSNormGradAcc = func(dx, x, w, dy, acc []float32, rs, c float64) {
		if n := len(dx); n > 0 {
			x, w, dy, acc = x[:n], w[:n], dy[:n], acc[:n]
			neonRMSNormGradAcc(&dx[0], &x[0], &w[0], &dy[0], &acc[0], float32(rs), float32(c), n)
		}
	}
	k.LayerNormGrad = func(dx, x, w, dy []float32, mean, rstd, mg, mgx float64) {
		if n := len(dx); n > 0 {
			x, w, dy = x[:n], w[:n], dy[:n]
			mh, ml := split(mean)
			neonLayerNormGrad(&dx[0], &x[0], &w[0], &dy[0], mh, ml, float32(rstd), float32(mg), float32(mgx), n)
		}
	}
	k.LayerNormGradAcc = func(dx, x, w, dy, accG, accB []float32, mean, rstd, mg, mgx float64) {
		n := len(dx)
		if n == 0 {
			return
		}
		x, w, dy, accG = x[:n], w[:n], dy[:n], accG[:n]
		mh, ml := split(mean)
		if accB == nil {
			neonLayerNormGradAccG(&dx[0], &x[0], &w[0], &dy[0], &accG[0], mh, ml,
				float32(rstd), float32(mg), float32(mgx), n)
			return
		}
		accB = accB[:n]
		neonLayerNormGradAcc(&dx[0], &x[0], &w[0], &dy[0], &accG[0], &accB[0], mh, ml,
			float32(rstd), float32(mg), float32(mgx), n)
	}
	k.LayerNormGradStats = func(x, w, dy []float32, c float64) (float64, float64, float64, float64) {
		n := len(x)
		if n == 0 {
			return 0, 0, 0, 0
		}
		w, dy = w[:n], dy[:n]
		return neonLayerNormGradStats(&x[0], &w[0], &dy[0], c, n)
	}
	k.AdamW = func(p, g, m, v []float32, s *AdamWStep) {
		if n := len(p); n > 0 {
			g, m, v = g[:n], m[:n], v[:n]
			neonAdamW(&p[0], &g[0], &m[0], &v[0], s, n)
		}
	}
	k.composeNext()
	return &k
}

func bin(f func(dst, a, b *float32, n int)) func(dst, a, b []float32) {
	return func(dst, a, b []float32) {
		if n := len(dst); n > 0 {
			a, b = a[:n], b[:n]
			f(&dst[0], &a[0], &b[0], n)
		}
	}
}

func scalar(f func(dst, a *float32, s float32, n int)) func(dst, a []float32, s float32) {
	return func(dst, a []float32, s float32) {
		if n := len(dst); n > 0 {
			a = a[:n]
			f(&dst[0], &a[0], s, n)
		}
	}
}

func unary(f func(dst, x *float32, n int)) func(dst, x []float32) {
	return func(dst, x []float32) {
		if n := len(dst); n > 0 {
			x = x[:n]
			f(&dst[0], &x[0], n)
		}
	}
}
