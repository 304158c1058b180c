//go:build !noasm

package vec

//go:generate go run gen_amd64.go

import (
	"math"
	"sync"
	"unsafe"

	"github.com/klauspost/cpuid/v2"
)

func splat(v float32) (s [16]float32) {
	for i := range s {
		s[i] = v
	}
	return s
}

func splatBits(b uint32) [16]float32 { return splat(math.Float32frombits(b)) }

// splatTable splats each coefficient of t; the assembly was generated for
// n of them, so any other length is a programming error.
func splatTable(t []float32, n int) [][16]float32 {
	if len(t) != n {
		panic("vec: coefficient table changed length; rerun go generate")
	}
	s := make([][16]float32, n)
	for i, v := range t {
		s[i] = splat(v)
	}
	return s
}

// The assembly kernel sets, built once where the CPU supports them.
// cpuid also checks that the operating system saves the YMM (and for
// AVX-512 the ZMM and opmask) registers.
var simdSets = sync.OnceValue(func() []*Kernels {
	var ks []*Kernels
	if cpuid.CPU.Supports(cpuid.AVX, cpuid.AVX2, cpuid.FMA3) {
		ks = append(ks, build("avx2", &funcsAVX2))
	}
	if cpuid.CPU.Supports(cpuid.AVX, cpuid.AVX2, cpuid.FMA3, cpuid.AVX512F, cpuid.AVX512DQ) {
		ks = append(ks, build("avx512", &funcsAVX512))
	}
	return ks
})

func simdAll() []*Kernels { return simdSets() }

func simd() *Kernels {
	ks := simdSets()
	if len(ks) == 0 {
		return nil
	}
	return ks[len(ks)-1]
}

// build wraps one instruction set's entry points as Kernels, and its
// streaming twin.
func build(name string, f *asmFuncs) *Kernels {
	k := buildSet(name, f, false)
	k.streaming = buildSet(name, f, true)
	k.streaming.streaming = k.streaming
	return k
}

func buildSet(name string, f *asmFuncs, nt bool) *Kernels {
	b := binWrapper{f.lanes, nt}
	var fence func()
	if nt {
		fence = sfence
	}
	mulScalar := b.scalar(f.mulScalar)
	// The statistics passes of the norm gradients over rows outside the
	// cache prefetch ahead (AVX-512; see rowK's ahead).
	statsAhead := nt && f.sumSquaresDot3[1] != nil
	sumSquaresDot3, layerNormGradStats := f.sumSquaresDot3[0], f.layerNormGradStats[0]
	if statsAhead {
		sumSquaresDot3, layerNormGradStats = f.sumSquaresDot3[1], f.layerNormGradStats[1]
	}
	k := &Kernels{
		Name:       name,
		fence:      fence,
		StatsAhead: statsAhead,

		Fill: func(dst []float32, v float32) {
			if len(dst) == 0 {
				return
			}
			b.split(dst, false, func(lo, hi, e int) { f.fill[e](&dst[lo], v, hi-lo) })
		},
		Add: b.bin(f.add), Sub: b.bin(f.sub), Mul: b.bin(f.mul), Div: b.bin(f.div),
		AddScalar: b.scalar(f.addScalar), SubScalar: b.scalar(f.subScalar),
		MulScalar: mulScalar, DivScalar: b.scalar(f.divScalar),
		Axpy: func(y []float32, alpha float32, x []float32) {
			if len(y) == 0 {
				return
			}
			x = x[:len(y)]
			f.axpy[0](&y[0], &y[0], &x[0], alpha, len(y))
		},

		Exp: b.unary(f.exp), Log: b.unary(f.log), Sqrt: b.unary(f.sqrt), Rsqrt: b.unary(f.rsqrt),
		Tanh: b.unary(f.tanh), Sigmoid: b.unary(f.sigmoid), SiLU: b.unary(f.silu), GELU: b.unary(f.gelu),
		GELUTanh: b.unary(f.geluTanh),
		ReLU:     b.unary(f.relu), Neg: b.unary(f.neg), Square: b.unary(f.square),

		ExpGrad: b.bin(f.expGrad), LogGrad: b.bin(f.logGrad), SqrtGrad: b.bin(f.sqrtGrad),
		RsqrtGrad: b.bin(f.rsqrtGrad), TanhGrad: b.bin(f.tanhGrad), SigmoidGrad: b.bin(f.sigmoidGrad),
		SiLUGrad: b.bin(f.siluGrad), GELUGrad: b.bin(f.geluGrad), ReLUGrad: b.bin(f.reluGrad),
		GELUTanhGrad: b.bin(f.geluTanhGrad),
		NegGrad:      b.bin(f.negGrad), SquareGrad: b.bin(f.squareGrad),

		Sum:        reduce(f.sum),
		SumSquares: reduce(f.sumSquares),
		Dot: func(a, b []float32) float64 {
			if len(a) == 0 {
				return 0
			}
			b = b[:len(a)]
			return f.dot(&a[0], &b[0], len(a))
		},
		SumSquaresDot3: func(x, a, b []float32) (float64, float64) {
			if len(x) == 0 {
				return 0, 0
			}
			a, b = a[:len(x)], b[:len(x)]
			return sumSquaresDot3(&x[0], &a[0], &b[0], len(x))
		},
		SumsAbout: func(x []float32, c float64) (float64, float64) {
			if len(x) == 0 {
				return 0, 0
			}
			return f.sumsAbout(&x[0], c, len(x))
		},
		Max: func(x []float32) float32 {
			m, nan := f.max(&x[0], len(x)) // x[0] panics for an empty x, as goMax does
			if nan {
				return goMax(x) // finds the NaN to return
			}
			return m
		},
		MaxScaled: func(x []float32, s float32) float32 { return f.maxScaled(&x[0], s, len(x)) },
		Prefetch:  func([]float32) {},
		Log64:     log64Of(f.log64),
		Accumulate: func(acc []float64, x []float32) {
			if len(acc) == 0 {
				return
			}
			x = x[:len(acc)]
			f.accumulate(&acc[0], &x[0], len(acc))
		},

		ScaleTo: func(dst, x []float32, s float64) { mulScalar(dst, x, float32(s)) },
		ScaleMul: func(dst, x, w []float32, s float64) {
			n := len(dst)
			if n == 0 {
				return
			}
			x, w = x[:n], w[:n]
			s32 := float32(s)
			b.split(dst, same(dst, x) || same(dst, w), func(lo, hi, e int) {
				f.scaleMul[e](&dst[lo], &x[lo], &w[lo], s32, hi-lo)
			})
		},
		Normalize: func(dst, x, g, sh []float32, mean, rstd float64) {
			n := len(dst)
			if n == 0 {
				return
			}
			x, g = x[:n], g[:n]
			mh, ml := split(mean)
			r := float32(rstd)
			if sh == nil {
				b.split(dst, same(dst, x) || same(dst, g), func(lo, hi, e int) {
					f.normalize[e](&dst[lo], &x[lo], &g[lo], mh, ml, r, hi-lo)
				})
				return
			}
			sh = sh[:n]
			b.split(dst, same(dst, x) || same(dst, g) || same(dst, sh), func(lo, hi, e int) {
				f.normalizeShift[e](&dst[lo], &x[lo], &g[lo], &sh[lo], mh, ml, r, hi-lo)
			})
		},
		SoftmaxGrad: func(dx, y, dy []float32, scale, dot float64) {
			n := len(dx)
			if n == 0 {
				return
			}
			y, dy = y[:n], dy[:n]
			dh, dl := split(dot)
			s32 := float32(scale)
			b.split(dx, same(dx, y) || same(dx, dy), func(lo, hi, e int) {
				f.softmaxGrad[e](&dx[lo], &y[lo], &dy[lo], s32, dh, dl, hi-lo)
			})
		},
		RMSNormGrad: func(dx, x, w, dy []float32, rs, c float64) {
			n := len(dx)
			if n == 0 {
				return
			}
			x, w, dy = x[:n], w[:n], dy[:n]
			rs32, c32 := float32(rs), float32(c)
			b.split(dx, same(dx, x) || same(dx, w) || same(dx, dy), func(lo, hi, e int) {
				f.rmsNormGrad[e](&dx[lo], &x[lo], &w[lo], &dy[lo], rs32, c32, hi-lo)
			})
		},
		RMSNormGradAcc: func(dx, x, w, dy, acc []float32, rs, c float64) {
			n := len(dx)
			if n == 0 {
				return
			}
			x, w, dy, acc = x[:n], w[:n], dy[:n], acc[:n]
			rs32, c32 := float32(rs), float32(c)
			alias := same(dx, x) || same(dx, w) || same(dx, dy) || same(dx, acc)
			b.split(dx, alias, func(lo, hi, e int) {
				f.rmsNormGradAcc[e](&dx[lo], &x[lo], &w[lo], &dy[lo], &acc[lo], rs32, c32, hi-lo)
			})
		},
		LayerNormGrad: func(dx, x, w, dy []float32, mean, rstd, mg, mgx float64) {
			n := len(dx)
			if n == 0 {
				return
			}
			x, w, dy = x[:n], w[:n], dy[:n]
			mh, ml := split(mean)
			r, mg32, mgx32 := float32(rstd), float32(mg), float32(mgx)
			b.split(dx, same(dx, x) || same(dx, w) || same(dx, dy), func(lo, hi, e int) {
				f.layerNormGrad[e](&dx[lo], &x[lo], &w[lo], &dy[lo], mh, ml, r, mg32, mgx32, hi-lo)
			})
		},
		LayerNormGradStats: func(x, w, dy []float32, c float64) (float64, float64, float64, float64) {
			n := len(x)
			if n == 0 {
				return 0, 0, 0, 0
			}
			w, dy = w[:n], dy[:n]
			return layerNormGradStats(&x[0], &w[0], &dy[0], c, n)
		},
		LayerNormGradAcc: func(dx, x, w, dy, accG, accB []float32, mean, rstd, mg, mgx float64) {
			n := len(dx)
			if n == 0 {
				return
			}
			x, w, dy, accG = x[:n], w[:n], dy[:n], accG[:n]
			mh, ml := split(mean)
			r, mg32, mgx32 := float32(rstd), float32(mg), float32(mgx)
			alias := same(dx, x) || same(dx, w) || same(dx, dy) || same(dx, accG)
			if accB == nil {
				b.split(dx, alias, func(lo, hi, e int) {
					f.layerNormGradAccG[e](&dx[lo], &x[lo], &w[lo], &dy[lo], &accG[lo], mh, ml, r, mg32, mgx32, hi-lo)
				})
				return
			}
			accB = accB[:n]
			b.split(dx, alias || same(dx, accB), func(lo, hi, e int) {
				f.layerNormGradAcc[e](&dx[lo], &x[lo], &w[lo], &dy[lo], &accG[lo], &accB[lo], mh, ml, r, mg32, mgx32, hi-lo)
			})
		},
		AdamW: func(p, g, m, v []float32, s *AdamWStep) {
			n := len(p)
			if n == 0 {
				return
			}
			g, m, v = g[:n], m[:n], v[:n]
			f.adamw(&p[0], &g[0], &m[0], &v[0], s.Beta1, s.OneMinusBeta1, s.Beta2, s.OneMinusBeta2,
				s.Decay, s.StepSize, s.Eps, n)
		},
	}
	k.LayerNormGradStatsAcc = layerNormGradStatsAcc(f, statsAhead)
	expAsm{f.expShift, f.expShiftNextMax, f.expShiftSum, f.expSumNextMax, f.expSumRows}.install(k)
	k.composeNext()
	if f.scaleMulNext[0] != nil {
		b.installNext(k, f)
	}
	if nt && f.softmaxStep != nil {
		b.installSoftmaxStep(k, f)
	}
	if nt {
		// Only the streaming set prefetches: it serves ops whose data
		// outgrow the L3 cache, where the next row comes from memory.
		// Where they fit, a burst of a row's prefetches costs more than
		// it saves (rows of 1024 on Zen 5, one thread, 64K–1M floats:
		// the CPU backend's norm gradients 20–30% slower with them; at
		// 4M floats, 10–20% faster).
		k.Prefetch = func(x []float32) {
			if len(x) > 0 {
				f.prefetch(&x[0], len(x))
			}
		}
	}
	return k
}

// reduce turns a reduction's entry point into a slice kernel (not
// inlined: see binWrapper).
//
//go:noinline
func reduce(f func(*float32, int) float64) func(x []float32) float64 {
	return func(x []float32) float64 {
		if len(x) == 0 {
			return 0
		}
		return f(&x[0], len(x))
	}
}

// binWrapper turns element-wise entry points into slice kernels. With nt
// set, a kernel whose output does not alias an input writes the output's
// whole 64-byte cache lines with the non-temporal entry point (which needs
// vector-aligned stores) and the elements before the first line boundary
// and after the last with the ordinary one (see split).
//
// Its methods that return kernels (bin, scalar, unary and the install
// methods), and reduce and layerNormGradStatsAcc, are marked
// //go:noinline. Inlined into buildSet, a function's closures are compiled
// as copies in which the small functions they call (same, overlaps, head,
// parts) are called, not inlined, every live value spilled to the stack
// around each call: SoftmaxStep's checks cost cross-entropy's gradient
// 15 ns a row of 1024 (134–136 ns a row against 119–122 with the kernel
// called directly, 118–121 with installSoftmaxStep not inlined; Go 1.26).
type binWrapper struct {
	lanes int
	nt    bool
}

// head returns how many leading elements of dst precede the first one
// aligned to the vector size, at most len(dst).
func (w binWrapper) head(dst []float32) int {
	size := uintptr(4 * w.lanes)
	off := uintptr(unsafe.Pointer(&dst[0])) % size
	if off == 0 {
		return 0
	}
	return min(int((size-off)/4), len(dst))
}

func same(a, b []float32) bool { return &a[0] == &b[0] }

// split runs f(lo, hi, entry) over dst's range: entry 0 is the ordinary
// entry point and entry 1 the non-temporal one, used (unless nt is off or
// the output aliases an input) for the whole cache lines of dst, and
// entry 0 for the elements before the first line boundary and after the
// last. A line must not get both: an ordinary store to a line that
// non-temporal stores are filling waits on the write-combining buffer for
// a memory round trip. Where a vector is a line (AVX-512) this is where
// the vectors start; AVX2's 32-byte vectors split a line in two, and
// adjacent calls (a row's end, the next row's start; CrossEntropyGrad's
// target element, see ScaleToWith) would otherwise stream one half and
// store the other.
func (w binWrapper) split(dst []float32, alias bool, f func(lo, hi, entry int)) {
	n := len(dst)
	if !w.nt || alias {
		f(0, n, 0)
		return
	}
	h, t := w.parts(dst)
	if h > 0 {
		f(0, h, 0)
	}
	if t > h {
		f(h, t, 1)
	}
	if t < n {
		f(t, n, 0)
	}
}

// parts returns the ends of split's parts of a non-empty dst: the
// elements before h and from t on take the ordinary entry point, those
// between the non-temporal one. Where a vector is a line (AVX-512), the
// non-temporal entry point's own tail, stored with ordinary masked
// stores, is in a line of its own, and t is len(dst).
func (w binWrapper) parts(dst []float32) (h, t int) {
	n := len(dst)
	if off := uintptr(unsafe.Pointer(&dst[0])) % lineBytes; off != 0 {
		h = min(int((lineBytes-off)/4), n)
	}
	t = n
	if 4*w.lanes < lineBytes {
		t = h + (n-h)/(lineBytes/4)*(lineBytes/4)
	}
	return h, t
}

// bin turns a binary element-wise kernel's entry points into a slice
// kernel (see split; not inlined: see binWrapper).
//
//go:noinline
func (w binWrapper) bin(fs [2]func(*float32, *float32, *float32, int)) func(dst, a, b []float32) {
	return func(dst, a, b []float32) {
		n := len(dst)
		if n == 0 {
			return
		}
		a, b = a[:n], b[:n]
		if w.nt && !same(dst, a) && !same(dst, b) {
			h, t := w.parts(dst)
			if h > 0 {
				fs[0](&dst[0], &a[0], &b[0], h)
			}
			if t > h {
				fs[1](&dst[h], &a[h], &b[h], t-h)
			}
			if t < n {
				fs[0](&dst[t], &a[t], &b[t], n-t)
			}
			return
		}
		fs[0](&dst[0], &a[0], &b[0], n)
	}
}

// scalar turns an element-wise kernel of a slice and a scalar into a
// slice kernel (see split; not inlined: see binWrapper).
//
//go:noinline
func (w binWrapper) scalar(fs [2]func(*float32, *float32, float32, int)) func(dst, a []float32, s float32) {
	return func(dst, a []float32, s float32) {
		n := len(dst)
		if n == 0 {
			return
		}
		a = a[:n]
		if w.nt && !same(dst, a) {
			h, t := w.parts(dst)
			if h > 0 {
				fs[0](&dst[0], &a[0], s, h)
			}
			if t > h {
				fs[1](&dst[h], &a[h], s, t-h)
			}
			if t < n {
				fs[0](&dst[t], &a[t], s, n-t)
			}
			return
		}
		fs[0](&dst[0], &a[0], s, n)
	}
}

// unary turns a unary element-wise kernel's entry points into a slice
// kernel (see split; not inlined: see binWrapper).
//
//go:noinline
func (w binWrapper) unary(fs [2]func(*float32, *float32, int)) func(dst, x []float32) {
	return func(dst, x []float32) {
		n := len(dst)
		if n == 0 {
			return
		}
		x = x[:n]
		if w.nt && !same(dst, x) {
			h, t := w.parts(dst)
			if h > 0 {
				fs[0](&dst[0], &x[0], h)
			}
			if t > h {
				fs[1](&dst[h], &x[h], t-h)
			}
			if t < n {
				fs[0](&dst[t], &x[t], n-t)
			}
			return
		}
		fs[0](&dst[0], &x[0], n)
	}
}

// installNext sets k's Next forms to the fused kernels of f (AVX-512). Each
// runs over the whole row, so that its sums are the statistics kernel's
// bit for bit: with non-temporal stores where the set streams, the output
// aliases no input and starts on a vector boundary, with ordinary ones
// where the set does not stream or the output aliases an input. A
// streaming set's unaligned row, an empty one or an empty next row take
// the two passes instead (which stream from the row's first aligned
// vector on).
func (w binWrapper) installNext(k *Kernels, f *asmFuncs) {
	scaleMulTwoPass, normalizeTwoPass := k.ScaleMulNext, k.NormalizeNext // composeNext's
	softmaxGradTwoPass := k.SoftmaxGradNext
	rmsTwoPass, rmsAccTwoPass := k.RMSNormGradNext, k.RMSNormGradAccNext
	layerTwoPass, layerAccTwoPass := k.LayerNormGradNext, k.LayerNormGradAccNext
	// entry picks f's entry point for dst, or -1 for the two passes.
	entry := func(dst []float32, alias bool) int {
		switch {
		case !w.nt || alias:
			return 0
		case w.head(dst) == 0:
			return 1
		}
		return -1
	}
	k.ScaleMulNext = func(dst, x, wt []float32, s float64, next []float32) float64 {
		n := len(dst)
		if n == 0 || len(next) == 0 {
			return scaleMulTwoPass(dst, x, wt, s, next)
		}
		x, wt, next = x[:n], wt[:n], next[:n]
		e := entry(dst, same(dst, x) || same(dst, wt))
		if e < 0 {
			return scaleMulTwoPass(dst, x, wt, s, next)
		}
		return f.scaleMulNext[e](&dst[0], &x[0], &wt[0], &next[0], float32(s), n)
	}
	k.NormalizeNext = func(dst, x, g, sh []float32, mean, rstd float64, next []float32, c float64) (float64, float64) {
		n := len(dst)
		if n == 0 || len(next) == 0 {
			return normalizeTwoPass(dst, x, g, sh, mean, rstd, next, c)
		}
		x, g, next = x[:n], g[:n], next[:n]
		alias := same(dst, x) || same(dst, g)
		if sh != nil {
			sh = sh[:n]
			alias = alias || same(dst, sh)
		}
		e := entry(dst, alias)
		if e < 0 {
			return normalizeTwoPass(dst, x, g, sh, mean, rstd, next, c)
		}
		mh, ml := split(mean)
		r := float32(rstd)
		if sh == nil {
			return f.normalizeNext[e](&dst[0], &x[0], &g[0], &next[0], mh, ml, r, c, n)
		}
		return f.normalizeShiftNext[e](&dst[0], &x[0], &g[0], &sh[0], &next[0], mh, ml, r, c, n)
	}
	// The norm gradients' Next forms: dx takes the entry point (see
	// normGradEntry), the accumulators ordinary stores.
	gradEntry := func(dx []float32, next []float32, ins ...[]float32) int {
		if len(dx) == 0 || len(next) == 0 {
			return -1
		}
		alias := false
		for _, in := range ins {
			alias = alias || same(dx, in)
		}
		return w.normGradEntry(alias, w.head(dx) == 0)
	}
	// SoftmaxGradNext streams dx even in place, as the tape calls it,
	// where the norm gradients' in-place rows take two passes (their
	// statistics kernels prefetch; Dot does not). In place, 4096 rows of
	// 1024 floats, one thread, ns a row: two passes 259–274, the fused
	// kernel with ordinary stores 284–326, with streaming ones 190–251.
	// Each vector of dx is stored after its loads of y and dy.
	k.SoftmaxGradNext = func(dx, y, dy []float32, scale, dot float64, nextY, nextDy []float32) float64 {
		n := len(dx)
		if n == 0 || len(nextY) == 0 {
			return softmaxGradTwoPass(dx, y, dy, scale, dot, nextY, nextDy)
		}
		y, dy, nextY, nextDy = y[:n], dy[:n], nextY[:n], nextDy[:n] // each checked before any is read
		e := entry(dx, false)
		if e < 0 {
			return softmaxGradTwoPass(dx, y, dy, scale, dot, nextY, nextDy)
		}
		dh, dl := split(dot)
		return f.softmaxGradNext[e](&dx[0], &y[0], &dy[0], &nextY[0], &nextDy[0], float32(scale), dh, dl, n)
	}
	k.RMSNormGradNext = func(dx, x, wt, dy []float32, rs, c float64, next, nextDy []float32) (float64, float64) {
		n := len(dx)
		e := gradEntry(dx, next, x[:n], wt[:n], dy[:n])
		if e < 0 {
			return rmsTwoPass(dx, x, wt, dy, rs, c, next, nextDy)
		}
		next, nextDy = next[:n], nextDy[:n]
		return f.rmsNormGradNext[e](&dx[0], &x[0], &wt[0], &dy[0], &next[0], &nextDy[0], float32(rs), float32(c), n)
	}
	k.RMSNormGradAccNext = func(dx, x, wt, dy, acc []float32, rs, c float64, next, nextDy []float32) (float64, float64) {
		n := len(dx)
		e := gradEntry(dx, next, x[:n], wt[:n], dy[:n], acc[:n])
		if e < 0 {
			return rmsAccTwoPass(dx, x, wt, dy, acc, rs, c, next, nextDy)
		}
		next, nextDy = next[:n], nextDy[:n]
		return f.rmsNormGradAccNext[e](&dx[0], &x[0], &wt[0], &dy[0], &acc[0], &next[0], &nextDy[0],
			float32(rs), float32(c), n)
	}
	k.LayerNormGradNext = func(dx, x, wt, dy []float32, mean, rstd, mg, mgx float64,
		next, nextDy []float32, c float64) (float64, float64, float64, float64) {
		n := len(dx)
		e := gradEntry(dx, next, x[:n], wt[:n], dy[:n])
		if e < 0 {
			return layerTwoPass(dx, x, wt, dy, mean, rstd, mg, mgx, next, nextDy, c)
		}
		next, nextDy = next[:n], nextDy[:n]
		mh, ml := split(mean)
		return f.layerNormGradNext[e](&dx[0], &x[0], &wt[0], &dy[0], &next[0], &nextDy[0],
			mh, ml, float32(rstd), float32(mg), float32(mgx), c, n)
	}
	w.installNormGradRows(k, f)
	if layerAccTwoPass == nil {
		return
	}
	k.LayerNormGradAccNext = func(dx, x, wt, dy, accG []float32, mean, rstd, mg, mgx float64,
		next, nextDy, accB []float32, c float64) (float64, float64, float64, float64) {
		n := len(dx)
		e := gradEntry(dx, next, x[:n], wt[:n], dy[:n], accG[:n])
		if e < 0 {
			return layerAccTwoPass(dx, x, wt, dy, accG, mean, rstd, mg, mgx, next, nextDy, accB, c)
		}
		next, nextDy, accB = next[:n], nextDy[:n], accB[:n]
		mh, ml := split(mean)
		return f.layerNormGradAccGNext[e](&dx[0], &x[0], &wt[0], &dy[0], &accG[0], &next[0], &nextDy[0], &accB[0],
			mh, ml, float32(rstd), float32(mg), float32(mgx), c, n)
	}
}

// normGradEntry picks the entry point of the fused norm-gradient kernels
// (AVX-512) for a dx that aliases an input or not and whose rows all start
// on a cache line or not: 0, ordinary stores, where the set does not
// stream; on a streaming set 1, non-temporal stores, for aligned rows that
// alias nothing, and -1, the Next forms' two passes, for the others: in
// place too, because the fused kernels prefetch the next rows only in their
// non-temporal variant and the two passes' statistics kernel prefetches
// them instead. The per-row Next forms (installNext) and the block loops
// (installNormGradRows) both choose by it.
func (w binWrapper) normGradEntry(alias, aligned bool) int {
	switch {
	case !w.nt:
		return 0
	case alias || !aligned:
		return -1
	}
	return 1
}

// installNormGradRows sets k's RMSNormGradRows and LayerNormGradRows to
// loops over f's entry points (AVX-512), the alignment and aliasing of dx
// checked once for all rows: ordinary stores where the set does not
// stream, non-temporal ones where dx overlaps no other operand and every
// row starts on a vector boundary, else composeNext's loops (whose Next
// forms take two passes for rows off the boundary or in place, so that
// the statistics kernel prefetches the rows of a large op). The last row has
// no next and takes the step alone. Not inlined (see binWrapper).
//
//go:noinline
func (w binWrapper) installNormGradRows(k *Kernels, f *asmFuncs) {
	rmsRows, layerRows := k.RMSNormGradRows, k.LayerNormGradRows // composeNext's
	entry := func(dx []float32, cols int, others ...[]float32) int {
		alias := false
		for _, o := range others {
			alias = alias || len(o) > 0 && overlaps(dx, o)
		}
		return w.normGradEntry(alias, w.head(dx) == 0 && 4*cols%lineBytes == 0)
	}
	k.RMSNormGradRows = func(dx, x, wt, dy, acc []float32, cols int, eps float64) {
		rows := normGradRows(dx, x, wt, dy, cols)
		if rows == 0 {
			return
		}
		e := entry(dx, cols, x, wt, dy, acc)
		if e < 0 {
			rmsRows(dx, x, wt, dy, acc, cols, eps)
			return
		}
		wt = wt[:cols]
		if acc != nil {
			acc = acc[:cols]
		}
		n := float64(cols)
		ss, dot := k.SumSquaresDot3(x[:cols], wt, dy[:cols])
		for r := range rows {
			o, p := r*cols, (r+1)*cols
			rs, c := rmsNormGradScalars(ss, dot, n, eps)
			rs32, c32 := float32(rs), float32(c)
			switch last := r+1 == rows; {
			case last && acc != nil:
				f.rmsNormGradAcc[e](&dx[o], &x[o], &wt[0], &dy[o], &acc[0], rs32, c32, cols)
			case last:
				f.rmsNormGrad[e](&dx[o], &x[o], &wt[0], &dy[o], rs32, c32, cols)
			case acc != nil:
				ss, dot = f.rmsNormGradAccNext[e](&dx[o], &x[o], &wt[0], &dy[o], &acc[0], &x[p], &dy[p], rs32, c32, cols)
			default:
				ss, dot = f.rmsNormGradNext[e](&dx[o], &x[o], &wt[0], &dy[o], &x[p], &dy[p], rs32, c32, cols)
			}
		}
	}
	k.LayerNormGradRows = func(dx, x, wt, dy, accG, accB []float32, cols int, eps float64) {
		rows := normGradRows(dx, x, wt, dy, cols)
		if rows == 0 {
			return
		}
		e := entry(dx, cols, x, wt, dy, accG, accB)
		if e < 0 || accG != nil && k.LayerNormGradStatsAcc == nil {
			// The parameter sums need the statistics kernel that adds dy
			// to accB (every set with these entry points has it).
			layerRows(dx, x, wt, dy, accG, accB, cols, eps)
			return
		}
		wt = wt[:cols]
		var sd, ssd, sg, sgd float64
		if accG != nil {
			accG, accB = accG[:cols], accB[:cols]
			sd, ssd, sg, sgd = k.LayerNormGradStatsAcc(x[:cols], wt, dy[:cols], accB, Pivot(x))
		} else {
			sd, ssd, sg, sgd = k.LayerNormGradStats(x[:cols], wt, dy[:cols], Pivot(x))
		}
		n := float64(cols)
		for r := range rows {
			o, p := r*cols, (r+1)*cols
			mean, rstd, mg, mgx := layerNormGradScalars(x[o:p], sd, ssd, sg, sgd, n, eps)
			mh, ml := split(mean)
			r32, mg32, mgx32 := float32(rstd), float32(mg), float32(mgx)
			switch last := r+1 == rows; {
			case last && accG != nil:
				f.layerNormGradAccG[e](&dx[o], &x[o], &wt[0], &dy[o], &accG[0], mh, ml, r32, mg32, mgx32, cols)
			case last:
				f.layerNormGrad[e](&dx[o], &x[o], &wt[0], &dy[o], mh, ml, r32, mg32, mgx32, cols)
			case accG != nil:
				sd, ssd, sg, sgd = f.layerNormGradAccGNext[e](&dx[o], &x[o], &wt[0], &dy[o], &accG[0], &x[p], &dy[p], &accB[0],
					mh, ml, r32, mg32, mgx32, float64(x[p]), cols)
			default:
				sd, ssd, sg, sgd = f.layerNormGradNext[e](&dx[o], &x[o], &wt[0], &dy[o], &x[p], &dy[p],
					mh, ml, r32, mg32, mgx32, float64(x[p]), cols)
			}
		}
	}
}

// installSoftmaxStep sets a streaming set's SoftmaxStep to f's fused
// kernel (AVX-512) where it can run: a non-empty row with a next row and
// an output row on a vector boundary that overlaps none of the others,
// and a positive scale, by which the largest scale·next[j] is scale
// times the largest next[j], rounded once, as MaxScaled takes it. The
// rest takes the separate kernels (composeNext's). Not inlined (see
// binWrapper).
//
//go:noinline
func (w binWrapper) installSoftmaxStep(k *Kernels, f *asmFuncs) {
	separate := k.SoftmaxStep
	k.SoftmaxStep = func(dst, x, next, src, out []float32, scale, shift float32, c float64, hole int, value float32) (float64, float32) {
		n := len(dst)
		if n == 0 || len(next) != n || len(out) != n || !(scale > 0) || w.head(out) != 0 ||
			overlaps(out, dst) || overlaps(out, x) || overlaps(out, next) || overlaps(out, src) {
			return separate(dst, x, next, src, out, scale, shift, c, hole, value)
		}
		x, src = x[:n], src[:n]
		h, mask := (*float32)(nil), 0
		if hole >= 0 {
			_ = out[hole]
			h, mask = &out[hole/w.lanes*w.lanes], 1<<(hole%w.lanes)
		}
		sum, m := f.softmaxStep(&dst[0], &x[0], &next[0], &src[0], &out[0], h, mask, value, scale, float32(c), shift, n)
		if scale != 1 {
			m *= scale
		}
		return sum, m
	}
}

// overlaps reports whether the non-empty slices a and b share memory.
func overlaps(a, b []float32) bool {
	pa, pb := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&b[0]))
	return pa < pb+4*uintptr(len(b)) && pb < pa+4*uintptr(len(a))
}

// layerNormGradStatsAcc returns a set's LayerNormGradStatsAcc, its kernel
// (with ahead, the twin that prefetches its rows), or nil where the set
// has none (AVX2). Not inlined (see binWrapper).
//
//go:noinline
func layerNormGradStatsAcc(f *asmFuncs, ahead bool) func(x, w, dy, accB []float32, c float64) (float64, float64, float64, float64) {
	kernel := f.layerNormGradStatsAcc[0]
	if ahead {
		kernel = f.layerNormGradStatsAcc[1]
	}
	if kernel == nil {
		return nil
	}
	return func(x, w, dy, accB []float32, c float64) (float64, float64, float64, float64) {
		n := len(x)
		if n == 0 {
			return 0, 0, 0, 0
		}
		w, dy, accB = w[:n], dy[:n], accB[:n]
		return kernel(&x[0], &w[0], &dy[0], &accB[0], c, n)
	}
}

// pwRows returns p's coefficient rows (six of sixteen), then its scale,
// the rounding constant 1.5·2²³ and its max, each splat: the registers of
// AVX-512's GELU kernels (pwTail in gen_amd64.go, whose pwRows is this
// length).
func pwRows(p *pwPoly) (rows [9][16]float32) {
	if len(p.c) != len(rows)-3 {
		panic("vec: a pwPoly table changed degree; rerun go generate")
	}
	for k, row := range p.c {
		rows[k] = [16]float32(row)
	}
	rows[6], rows[7], rows[8] = splat(p.scale), splat(0x1.8p23), splat(p.max)
	return rows
}

// pwRows8 returns p's coefficient rows (eight of eight), then its scale
// and its max, each splat: the rows AVX2's GELU kernels read (pwRows8 in
// gen_amd64.go).
func pwRows8(p *pwPoly) (rows [10][8]float32) {
	if len(p.c) != len(rows)-2 {
		panic("vec: a pwPoly table changed degree; rerun go generate")
	}
	for k, row := range p.c {
		rows[k] = [8]float32(row)
	}
	for i := range 8 {
		rows[8][i], rows[9][i] = p.scale, p.max
	}
	return rows
}

// log64Table holds the AVX-512 log64 kernel's constants (tLog64), in the
// order gen_amd64.go's log64 loads them.
func log64Table() [11]float64 {
	return [...]float64{1, math.Ln2, 1.0 / 7, -1.0 / 6, 1.0 / 5, -1.0 / 4, 1.0 / 3, -1.0 / 2,
		log64Near, math.Float64frombits(1<<63 - 1), math.Float64frombits(1<<logTabBits - 1)}
}

// log64Of returns Log64 from an assembly set's log64 kernel: the kernel
// over the vectors it takes, log64 over the vector it stops at and the
// last few elements. Sets without one (nil) get the Go set's.
func log64Of(kernel func(dst, x *float64, n int) int) func(dst, x []float64) {
	if kernel == nil {
		return goLog64
	}
	return func(dst, x []float64) {
		x = x[:len(dst)]
		for len(dst) > 0 {
			done := kernel(&dst[0], &x[0], len(dst))
			n := min(done+8, len(dst))
			goLog64(dst[done:n], x[done:n])
			dst, x = dst[n:], x[n:]
		}
	}
}
