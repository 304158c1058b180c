// Package vec holds the CPU backend's vector kernels: element-wise
// arithmetic, float32 transcendental functions, row reductions with
// float64 accumulation and the fused row steps of softmax, the norms and
// AdamW, each in pure Go and in assembly: AVX2/FMA and AVX-512 on amd64,
// chosen at run time, and NEON on arm64.
//
// A [Kernels] value is one complete implementation. [Go] is the portable
// one; [Best] returns the fastest one this CPU runs. Callers split work
// into rows or ranges themselves: every kernel runs on the calling
// goroutine and allocates nothing.
//
// # Accuracy
//
// Element-wise arithmetic rounds once, as a scalar float32 operation does.
// Exp, Log, Tanh, Sigmoid, SiLU, GELU (the exact, erf-based one) and
// GELUTanh (its tanh approximation) and their derivatives use float32
// range reductions and polynomial approximations (math32.go, coefficients
// fitted by fit_coeffs.go) good to a few float32 ulps; accuracy_test.go
// states and checks each bound against float64 math over dense sweeps of
// inputs (2²⁰ points per function). The bounds, with in brackets the
// largest error measured over the Go, AVX2 and AVX-512 kernels when they
// were set (the NEON kernels, measured under qemu, which emulates IEEE
// arithmetic exactly, agree with the Go set bit for bit but for a rare
// ulp where the Go set rounds a float64 sum to float32 at a midpoint,
// see fma32, and so have its errors: over accuracy_test.go's sweeps Exp
// and ExpShift 0.97, Log 0.85, Tanh 1.26, TanhGrad 2.32, Sigmoid 2.01,
// SiLU 2.02, SigmoidGrad 4.35, SiLUGrad 3.98; ExpShiftSum rows 7.1e−8,
// their float64 sums added in another order):
//
//	Exp, ExpGrad        2 ulps (0.97)   all float32 arguments with a result
//	ExpShift            2 ulps (0.98)   with scale 1 and shift 0, which leave x exact
//	Log                 2 ulps (0.85)   all positive float32
//	Tanh                3 ulps (1.3)    TanhGrad 4 ulps (2.3)
//	Sigmoid, SiLU       3 ulps (2.0, 2.0) for |x| ≤ 87, where σ is normal
//	SigmoidGrad         5 ulps (4.4)    SiLUGrad 5 ulps (4.0)
//	GELU, GELUTanh      3 ulps (2.1, 2.0) of the larger of the result and |x|/2
//	GELUGrad            4 ulps (2.2)    of the larger of its largest term and ½
//	GELUTanhGrad        4 ulps (3.3)    likewise (these four: all float32 in [−8, 8])
//	ExpShiftSum         1.2e−7 relative (7.5e−8) for sums shifted by their maximum
//
// where an ulp is that of the result (for derivatives that subtract, of
// their largest term), about 6e-8 to 1.2e-7 relative. Over every float32
// of the intervals where the largest errors sit (TestAccuracyEveryFloat),
// every set's Sigmoid reaches 2.48 ulps near x = −16.6, SiLU 2.44 (AVX-512
// 2.38), SigmoidGrad 4.98 near x = 3.42, within 0.02 of its bound, and
// SiLUGrad 4.67 near x = −13.8 (AVX-512 4.71). The GELU family's
// errors are absolute where its results are small: Φ(x), σ(y) and the
// derivatives to a few units of 2⁻²⁴ absolutely, which is what
// ½·(1 + erf(x/√2)) in float32, PyTorch's definition, gives however
// exact its erf (1 + erf cancels in the left tail). The amd64 sets
// evaluate their tails as piecewise polynomials with no exponential
// (pwPoly in math32.go), taken as 0 where they fall below 2⁻²⁶ for good
// (|x| from 5.2 to 6.1 on: there GELU is x or 0 and the derivatives 1 or
// 0). Over every float32 in [−8, 8], GELU, GELUGrad, GELUTanh and
// GELUTanhGrad are within 1.67, 1.79, 1.55 and 1.42 of those ulps on
// AVX-512 and 1.82, 2.10, 1.40 and 1.46 on AVX2; from memory on Zen 5
// they are 10–55% faster than with an exponential on AVX-512, 1.6–1.9×
// on AVX2 (docs/cpu-row-kernels.md). The Go and NEON sets take their
// tails from an exponential (e^{−x²/2}, e^{−y}) and are also accurate
// relative to the result down to where it leaves the normal range: GELU
// 6 ulps (3.6) for |x| ≤ 13, GELUGrad 6 (3.0), GELUTanh 3 (1.97) for
// x ≥ −10, GELUTanhGrad 6 (4.1), against the result or, for the
// derivatives, their largest term. Reductions (sums, dot products, norm
// statistics, gradient accumulators) accumulate in float64; the norm and
// softmax steps that combine a row with its statistics do so in float32
// with the statistics split where a subtraction needs their digits (see
// Kernels), and AdamW computes in float64 and rounds once per stored
// value.
package vec

//go:generate sh -c "GOAMD64=v1 go run fit_coeffs.go > coeffs.go"

// The arm64 generator's directive is here, in a file every architecture
// builds, so that go generate on an amd64 machine rewrites the NEON files
// too (in kernels_arm64.go only an arm64 machine would reach it).
//go:generate go run gen_arm64.go

import (
	"math"
	"unsafe"
)

// Kernels is one implementation of every vector kernel. Unless stated
// otherwise, the output (the first argument) sets the length and the other
// slices must be at least that long (a shorter one panics); outputs may
// alias inputs element for element (dst == a) but must not overlap them
// otherwise.
type Kernels struct {
	// Name says which implementation this is: "go", "avx2", "avx512" or
	// "neon".
	Name string

	// Fill sets every element of dst to v.
	Fill func(dst []float32, v float32)
	// Element-wise dst = a op b.
	Add, Sub, Mul, Div func(dst, a, b []float32)
	// Element-wise dst = a op s.
	AddScalar, SubScalar, MulScalar, DivScalar func(dst, a []float32, s float32)
	// Axpy computes y += alpha·x.
	Axpy func(y []float32, alpha float32, x []float32)

	// Element-wise functions dst = f(x). Sqrt is correctly rounded; Rsqrt
	// is 1/Sqrt, rounded twice; Neg, Square and ReLU are exact, and ReLU
	// passes NaN through.
	// GELUTanh is GELU's tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x +
	// 0.044715·x³))), computed as x/(1 + e^{−y}) with y = 2·√(2/π)·(x +
	// 0.044715·x³), whose rounding the exponential compensates; it is 0
	// from x ≈ −10.06 down (−Inf included), where e^{−y} overflows and
	// x·σ(y) is below 3e−38, and its derivative is 0 or 1 where e^{−|y|}
	// < 2⁻¹²⁶ (|x| > 9.95; the derivative is below 4e−36 in magnitude
	// there for x < 0).
	Exp, Log, Sqrt, Rsqrt, Tanh, Sigmoid, SiLU, GELU, GELUTanh, ReLU, Neg, Square func(dst, x []float32)
	// Derivatives dx = dy·f′(x) of the functions above. ReLUGrad is dy
	// where x > 0 and 0 elsewhere (also where dy is NaN), as PyTorch's.
	ExpGrad, LogGrad, SqrtGrad, RsqrtGrad, TanhGrad, SigmoidGrad, SiLUGrad, GELUGrad, GELUTanhGrad, ReLUGrad, NegGrad, SquareGrad func(dx, x, dy []float32)

	// Sum returns Σ x and SumSquares Σ x², accumulated in float64.
	Sum, SumSquares func(x []float32) float64
	// Dot returns Σ a·b in float64; the length is len(a).
	Dot func(a, b []float32) float64
	// SumSquaresDot3 returns Σ x² and Σ p·x in float64 for the products
	// p = a·b rounded to float32, in one pass (RMSNormGrad's statistics);
	// the length is len(x).
	SumSquaresDot3 func(x, a, b []float32) (ss, dot float64)
	// SumsAbout returns Σ (x − c) and Σ (x − c)² in float64, in one
	// pass: with c near the mean (an element of x, say), the caller
	// recovers the mean and the sum of squared deviations from them
	// without cancellation to speak of (see Centre).
	SumsAbout func(x []float32, c float64) (sd, ssd float64)
	// Max returns the largest element of a non-empty x, or a NaN of x if
	// it holds one.
	Max func(x []float32) float32
	// MaxScaled returns the largest s·x[j] (each product rounded to
	// float32) of a non-empty x; with a NaN in x the result may be NaN
	// or the largest of some of the others (−Inf if none).
	MaxScaled func(x []float32, s float32) float32
	// ExpShift sets dst = exp(scale·x − shift) (the product not rounded
	// before the subtraction) and returns Σ dst, accumulated in float64
	// (the amd64 assembly adds groups of terms in float32 first: up to
	// four, two roundings as small as the terms' own, with AVX2; up to
	// sixteen, in a tree four roundings deep, with AVX-512; NEON widens
	// each term to float64 at once). The shift
	// must keep every finite scale·x − shift below 88, as the maximum of
	// scale·x does (see MaxScaled); −Inf and NaN are fine.
	ExpShift func(dst, x []float32, scale, shift float32) float64
	// ExpShiftSum returns Σ exp(x − shift) in float64 without storing
	// the terms, for x − shift below 88 where finite, as the maximum of x
	// keeps it; −Inf and NaN are fine. Its terms are not ExpShift's:
	// each is 2 to the power x·log2e − shift·log2e, the exponent one
	// fused multiply-add (sumShift), with a shorter polynomial (Go, AVX2
	// and NEON: expSum32, where terms below 2.4e−38 count as that; AVX-512: a
	// table of 2^(j/32) and a polynomial on [0, 1/32], see exp2Sum in
	// gen_amd64.go, which computes terms down to subnormals and 0). A
	// term's relative error is at most 1.8e−7 (2.2e−7 in AVX-512's runs
	// of sixteen vectors, which take a term as two factors for a
	// multiply-add, see exp2Factors) plus 1.4e−8 per unit of
	// |x − shift| plus 0.35 of a float32 ulp of (x − shift)·log2e: larger
	// than ExpShift's far below the shift, where terms weigh nothing in
	// a sum whose largest term is near 1 (shift the maximum), which is
	// within a float32 ulp, 1.2e−7 relative, of the exact one. The
	// float32 grouping of terms is ExpShift's, but for AVX-512's runs
	// of sixteen vectors: two chains of multiply-adds, eight terms a
	// lane each, added before widening.
	ExpShiftSum func(x []float32, shift float32) float64
	// ExpSumNextMax returns ExpShiftSum(x, shift), the same sum computed the
	// same way, and the largest element of next, which must be as long as x
	// or empty (−Inf then; with a NaN in next the maximum may be NaN or the
	// largest of some of the others, −Inf if none): a row's sum with the
	// maximum of the row to come, whose loads, missing the cache, overlap
	// the exponentials instead of making a pass of their own wait for
	// memory. On AVX-512 (every set, not only the streaming one) the loop
	// also asks for next's cache lines 8 KB ahead of its loads (PREFETCHT0,
	// see nextPrefetch in gen_amd64.go), which changes nothing observable.
	ExpSumNextMax func(x, next []float32, shift float32) (sum float64, nextMax float32)
	// ExpSumRows takes the parts of the log-sum-exp of each of the
	// first len(sums) rows of x, cols elements each, that cross-entropy
	// needs: it sets sums[r] to ExpShiftSum(row r, float32(maxes[r])),
	// bit for bit, and maxes, one for every row x holds (len(sums) to
	// len(sums)+2 rows), to the rows' largest elements, as MaxScaled(row,
	// 1) takes them (but for a row holding a NaN, whose sum is NaN and
	// whose maximum may be NaN or the largest of some of its elements,
	// as ExpSumNextMax's of next). The first known entries of maxes, at
	// most two, are the caller's and kept: those a call over the rows
	// before set for its last two rows, held in its x, so that rows taken
	// in blocks (to work on each block while it is in the cache) cost no
	// more than in one call. The AVX sets run the rows in one assembly
	// call that takes each row's maximum two rows ahead, in the pass over
	// the row two before (rows of 1024 from the L3 cache on Zen 5: 77 ns
	// a row with ExpSumNextMax a row at a time, 70–75 so); the others
	// call ExpSumNextMax a row at a time, each pass taking the maximum of
	// the first row not known.
	ExpSumRows func(x []float32, cols, known int, sums, maxes []float64)
	// Log64 sets dst = ln x in float64 (the length is len(dst)), for
	// cross-entropy's log-sum-exps, a block of rows' sums at a time:
	// within 4e−16 + 1e−14·|ln x| of math.Log, and within 1e−15 of ln x
	// relatively within 2⁻⁷ of 1, where it is small (log64_test.go). Every
	// set computes log64's bits; AVX-512 eight at a time (a vector that
	// holds a zero, subnormal, negative, infinite or NaN element goes to
	// log64, which leaves those to math.Log), the others with log64 itself.
	Log64 func(dst, x []float64)
	// ExpShiftNextMax is ExpShift(dst, x, 1, shift), the same exponentials
	// and sum computed the same way, with the largest element of next as
	// ExpSumNextMax takes it (next as long as dst, or empty).
	ExpShiftNextMax func(dst, x, next []float32, shift float32) (sum float64, nextMax float32)
	// SoftmaxStep is one pass of a softmax over rows, which writes a row's
	// output in the pass over the row after it: it sets dst = exp(scale·x −
	// shift) and returns Σ dst as ExpShift does, returns the largest
	// scale·next[j] as MaxScaled does (−Inf for an empty next; with a NaN in
	// next it may be NaN or the largest of some of the others, −Inf if none),
	// and sets out = src·float32(c) as ScaleTo does, the previous row's output
	// from the exponentials its step stored, but for out[hole] = value where
	// hole ≥ 0 (cross-entropy's target), as ScaleToWith does; the values are
	// those of the separate kernels bit for bit. next is as long as dst or
	// empty, src and out as long as dst or both empty; out may be src but
	// overlaps no other. The AVX-512 streaming set does all this in one pass
	// where out is vector-aligned and not src, next not empty and scale
	// positive, so that the previous row's stores to memory and the next row's
	// loads overlap this row's exponentials (the CPU backend's softmax over 4M
	// floats in rows of 1024, one thread: 0.56–0.64 of the copy's bandwidth in
	// separate passes, 0.74–0.86 fused); the others call the separate kernels
	// and ScaleToWith.
	SoftmaxStep func(dst, x, next, src, out []float32, scale, shift float32, c float64, hole int, value float32) (sum float64, nextMax float32)
	// Prefetch asks for x to be brought into the cache without waiting
	// for it, so that a row to be read next arrives while the current one
	// is computed on; it changes nothing that can be observed. Only the
	// amd64 streaming sets (see [Kernels.Streaming]) and NEON prefetch:
	// on amd64 data that fit in the cache are there already, and the
	// prefetches only slow the loads that follow. The Go set's does
	// nothing.
	Prefetch func(x []float32)
	// StatsAhead says that SumSquaresDot3, LayerNormGradStats and
	// LayerNormGradStatsAcc ask for their rows' data ahead of their loads
	// themselves (the AVX-512 streaming set, for rows outside the cache),
	// so that a caller need not prefetch the next row for them: where
	// they do, a burst of prefetches for the next row's head only slows
	// them (4M floats, rows of 1024, one thread, two runs of each build
	// alternated: rmsnorm_grad 54–60 GB/s without the burst, 45–46 with
	// it, 40 with neither the burst nor the kernels' prefetches).
	StatsAhead bool
	// Accumulate adds x to the float64 accumulators acc (the length is
	// len(acc)).
	Accumulate func(acc []float64, x []float32)

	// The row steps below combine a row with its float64 statistics in
	// float32 arithmetic: each statistic is rounded to float32 (a
	// subtracted one is split into a float32 pair hi + lo, subtracted in
	// turn, so that x − mean keeps its digits however close x and mean
	// are), and each element costs a few roundings, so results are within
	// a few ulps of the largest term. Accumulators stay float64.

	// ScaleTo sets dst = x·float32(s).
	ScaleTo func(dst, x []float32, s float64)
	// ScaleMul sets dst = x·s·w (RMSNorm).
	ScaleMul func(dst, x, w []float32, s float64)
	// Normalize sets dst = (x − mean)·rstd·g + b (LayerNorm); b may be
	// nil for no shift.
	Normalize func(dst, x, g, b []float32, mean, rstd float64)
	// SoftmaxGrad sets dx = scale·y·(dy − dot).
	SoftmaxGrad func(dx, y, dy []float32, scale, dot float64)
	// RMSNormGrad sets dx = rs·w·dy − x·c.
	RMSNormGrad func(dx, x, w, dy []float32, rs, c float64)
	// RMSNormGradAcc does what RMSNormGrad does and also adds (x·rs)·dy
	// to acc, in float32 (the caller flushes it into float64 sums every
	// few rows); the length is len(dx).
	RMSNormGradAcc func(dx, x, w, dy, acc []float32, rs, c float64)
	// LayerNormGradStats returns, in one pass, Σ d, Σ d², Σ g and Σ g·d
	// for d = x − c and g = dy·w, accumulated in float64; d is exact, g
	// is the float32 product (rounded once, as the row steps use it). The
	// length is len(x). With c near the mean (say an element of the row),
	// the caller recovers the sums about the mean without cancellation
	// to speak of (see Centre and LayerNormGradRows).
	LayerNormGradStats func(x, w, dy []float32, c float64) (sd, ssd, sg, sgd float64)
	// LayerNormGradStatsAcc, where a set has it (AVX-512; nil elsewhere),
	// does what LayerNormGradStats does and also adds dy to accB, in
	// float32 (the caller flushes it into float64 sums every few rows);
	// the length is len(x), and accB must not overlap x, w or dy (the
	// AVX-512 kernel stores a vector of accB before it loads x's). The
	// bias's gradient is then summed in the pass that reads dy from
	// memory, which leaves the core time to spare, and LayerNormGradAcc,
	// whose pass from the cache waits on its stores, is called without
	// accB. AVX2 has too few registers for it.
	LayerNormGradStatsAcc func(x, w, dy, accB []float32, c float64) (sd, ssd, sg, sgd float64)
	// LayerNormGrad sets dx = rstd·(dy·w − mg − x̂·mgx) for
	// x̂ = (x−mean)·rstd.
	LayerNormGrad func(dx, x, w, dy []float32, mean, rstd, mg, mgx float64)
	// LayerNormGradAcc does what LayerNormGrad does and also adds dy·x̂ to
	// accG and, unless accB is nil, dy to accB, in float32 (the caller
	// flushes them into float64 sums every few rows); the length is
	// len(dx).
	LayerNormGradAcc func(dx, x, w, dy, accG, accB []float32, mean, rstd, mg, mgx float64)
	// The Next forms of the forward norms' row steps do what the step
	// does and, in the same pass, return the statistics of the next row
	// that its own step needs, bit for bit as the statistics kernel
	// computes them: SumSquares(next) for ScaleMulNext, SumsAbout(next, c)
	// for NormalizeNext. The next row's loads, which miss the cache on an
	// op larger than it, then overlap this row's arithmetic instead of
	// making a pass of their own wait for memory (one thread, 4M floats
	// in rows of 1024: LayerNorm 46–48 GB/s in two passes, 53–66 fused).
	// The next row is as long as dst and does not overlap it, or empty,
	// for which the statistics are 0.
	ScaleMulNext  func(dst, x, w []float32, s float64, next []float32) (ss float64)
	NormalizeNext func(dst, x, g, b []float32, mean, rstd float64, next []float32, c float64) (sd, ssd float64)
	// The Next forms of the norm gradients' output passes do what the
	// step does and, in the same pass, return the next row's statistics
	// as the statistics kernel takes them, bit for bit: for RMSNormGrad's
	// steps SumSquaresDot3(next, w, nextDy), for LayerNormGrad's
	// LayerNormGradStats(next, w, nextDy, c). LayerNormGradAccNext, where
	// a set has LayerNormGradStatsAcc (nil elsewhere), does what
	// LayerNormGradAcc(dx, x, w, dy, accG, nil, …) does and returns
	// LayerNormGradStatsAcc(next, w, nextDy, accB, c), adding nextDy to
	// accB as that does. next and nextDy are as long as dx, or both empty
	// (statistics 0, accB untouched); none of the slices may overlap dx or
	// the accumulators.
	RMSNormGradNext    func(dx, x, w, dy []float32, rs, c float64, next, nextDy []float32) (ss, dot float64)
	RMSNormGradAccNext func(dx, x, w, dy, acc []float32, rs, c float64, next, nextDy []float32) (ss, dot float64)
	LayerNormGradNext  func(dx, x, w, dy []float32, mean, rstd, mg, mgx float64,
		next, nextDy []float32, c float64) (sd, ssd, sg, sgd float64)
	LayerNormGradAccNext func(dx, x, w, dy, accG []float32, mean, rstd, mg, mgx float64,
		next, nextDy, accB []float32, c float64) (sd, ssd, sg, sgd float64)
	// SoftmaxGradNext, likewise, does what SoftmaxGrad does and returns
	// Dot(nextY, nextDy), the next row's dot product, bit for bit; nextY
	// and nextDy are as long as dx, or both empty (0), and may not overlap
	// dx, which may alias y or dy element for element.
	SoftmaxGradNext func(dx, y, dy []float32, scale, dot float64, nextY, nextDy []float32) (nextDot float64)
	// RMSNormGradRows and LayerNormGradRows run a norm's gradient over the
	// rows of cols floats of x and dy (len(dx)/cols rows; w is one row),
	// each row's statistics in float64 as SumSquaresDot3 and
	// LayerNormGradStats take them (about the row's first element, Pivot),
	// in the pass over the row before (the Next forms), the first row's its
	// own. RMSNormGrad's step takes rs = 1/√(Σx²/cols + eps) and
	// c = rs³·Σ(w·dy·x)/cols; LayerNormGrad's the mean and rstd (see Centre),
	// mg = Σ(w·dy)/cols and mgx = Σ(w·dy·x̂)/cols. Where acc is not nil
	// RMSNormGradRows adds dy·x·rs to it, and where accG is not nil
	// LayerNormGradRows adds dy·x̂ to accG and dy to accB (as long as w),
	// in float32, row after row; the caller flushes them every few rows.
	// Running the rows in one call, the scalars between the kernels
	// computed in the loop and the entry points called without a
	// wrapper's checks each row, made the CPU backend's gradients faster
	// on AVX-512 (4M floats in rows of 1024, one thread, five alternated
	// runs of sora bench ops, GB/s, with the backend's column sums changed
	// in the same commit, which alone measured 2–3%): layernorm_grad
	// 47.1–53.3 → 57.5–59.1, with frozen parameters (no column sums)
	// 57.9–63.6 → 69.4–72.6, rmsnorm_grad 58.4–64.9 → 61.8–67.7.
	RMSNormGradRows   func(dx, x, w, dy, acc []float32, cols int, eps float64)
	LayerNormGradRows func(dx, x, w, dy, accG, accB []float32, cols int, eps float64)

	// AdamW performs one AdamW step on p, m and v with gradient g (the
	// length is len(p)); see [AdamWStep].
	AdamW func(p, g, m, v []float32, s *AdamWStep)

	// streaming is this set with non-temporal stores for large outputs;
	// nil where there is no such variant.
	streaming *Kernels
	// fence orders non-temporal stores; nil where there are none.
	fence func()
}

// Fence makes the output of the streaming kernels called so far on this
// goroutine visible to later loads and stores in order; callers call it
// once after a batch of kernel calls (a parallel chunk), before the output
// is used elsewhere. The kernels do not fence each call, which would stall
// every row of a row-wise op. It does nothing for sets without streaming
// stores.
func (k *Kernels) Fence() {
	if k.fence != nil {
		k.fence()
	}
}

// Streaming returns the kernels to use when an operation's output is too
// large to stay in the cache: on amd64 the kernels with a float32 output
// that is only written (element-wise ops, ScaleTo, ScaleMul, Normalize and
// the norm and softmax gradients) then write it with non-temporal stores,
// which skip reading each cache line before overwriting it and leave the
// cache to the inputs; an output that aliases an input is written as
// usual. Call [Kernels.Fence] after a batch of calls. Kernels without a
// streaming variant return themselves.
func (k *Kernels) Streaming() *Kernels {
	if k.streaming != nil {
		return k.streaming
	}
	return k
}

// AdamWStep holds the per-step constants of an AdamW update in float64:
//
//	m ← Beta1·m + OneMinusBeta1·g
//	v ← Beta2·v + OneMinusBeta2·g²
//	p ← Decay·p − StepSize·m / (√v + Eps)
//
// where, for PyTorch's bias-corrected AdamW at step t with learning rate
// lr, StepSize = lr·√(1−β₂ᵗ)/(1−β₁ᵗ), Eps = ε·√(1−β₂ᵗ) and Decay = 1 −
// lr·weight_decay (see [NewAdamWStep]). The field order is relied on by the
// assembly.
type AdamWStep struct {
	Beta1, OneMinusBeta1, Beta2, OneMinusBeta2, Decay, StepSize, Eps float64
}

// Go is the portable implementation, in pure Go.
var Go = &Kernels{
	Name: "go",

	Fill: goFill,
	Add:  goAdd, Sub: goSub, Mul: goMul, Div: goDiv,
	AddScalar: goAddScalar, SubScalar: goSubScalar, MulScalar: goMulScalar, DivScalar: goDivScalar,
	Axpy: goAxpy,

	Exp: mapper(exp32), Log: mapper(log32), Sqrt: goSqrt, Rsqrt: goRsqrt,
	Tanh: mapper(tanh32), Sigmoid: mapper(sigmoid32), SiLU: mapper(silu32), GELU: mapper(gelu32),
	GELUTanh: mapper(geluTanh32), ReLU: goReLU, Neg: goNeg, Square: goSquare,

	ExpGrad:      gradMapper(func(x, g float32) float32 { return g * exp32(x) }),
	LogGrad:      gradMapper(func(x, g float32) float32 { return g / x }),
	SqrtGrad:     gradMapper(func(x, g float32) float32 { return g * 0.5 / sqrt32(x) }),
	RsqrtGrad:    gradMapper(func(x, g float32) float32 { return g * -0.5 * (1 / sqrt32(x)) / x }),
	TanhGrad:     gradMapper(func(x, g float32) float32 { _, d := tanhParts(x); return g * d }),
	SigmoidGrad:  gradMapper(func(x, g float32) float32 { _, d := sigmoidParts(x); return g * d }),
	SiLUGrad:     gradMapper(func(x, g float32) float32 { return g * siluGrad32(x) }),
	GELUGrad:     gradMapper(func(x, g float32) float32 { return g * geluGrad32(x) }),
	GELUTanhGrad: gradMapper(func(x, g float32) float32 { return g * geluTanhGrad32(x) }),
	ReLUGrad:     goReLUGrad,
	NegGrad:      gradMapper(func(_, g float32) float32 { return -g }),
	SquareGrad:   gradMapper(func(x, g float32) float32 { return (x + x) * g }),

	Sum: goSum, SumSquares: goSumSquares, Dot: goDot, SumSquaresDot3: goSumSquaresDot3,
	SumsAbout: goSumsAbout,
	Max:       goMax, MaxScaled: goMaxScaled, ExpShift: goExpShift, ExpShiftSum: goExpShiftSum,
	ExpSumNextMax: goExpSumNextMax, ExpShiftNextMax: goExpShiftNextMax,
	Accumulate: goAccumulate, Prefetch: func([]float32) {}, Log64: goLog64,

	ScaleTo: goScaleTo, ScaleMul: goScaleMul, Normalize: goNormalize, SoftmaxGrad: goSoftmaxGrad,
	RMSNormGrad: goRMSNormGrad, RMSNormGradAcc: goRMSNormGradAcc, LayerNormGrad: goLayerNormGrad,
	LayerNormGradAcc: goLayerNormGradAcc, LayerNormGradStats: goLayerNormGradStats,
	AdamW: goAdamW,
}

func init() {
	Go.composeNext()
	Go.ExpSumRows = expSumRowsOf(Go)
}

// expSumRowsShape checks ExpSumRows' arguments and returns how many rows
// x holds.
func expSumRowsShape(x []float32, cols, known int, sums, maxes []float64) int {
	n := len(sums)
	held := len(maxes) // x holds any number of empty rows
	if cols > 0 {
		held = len(x) / cols
	}
	switch {
	case cols < 0:
		panic("vec: ExpSumRows' rows have negative length")
	case len(x) != held*cols || held < n || held > n+2:
		panic("vec: ExpSumRows' x does not hold len(sums) to len(sums)+2 rows")
	case len(maxes) != held:
		panic("vec: ExpSumRows' maxes are not one for each row of x")
	case known < 0 || known > min(held, 2):
		panic("vec: ExpSumRows' known maxima are not at most two of maxes")
	}
	return held
}

// rowMaxima sets *known entries of maxes on, through maxes[r], to the
// maxima of x's rows (ExpSumRows' maxes), taken as MaxScaled takes them.
func (k *Kernels) rowMaxima(x []float32, cols int, maxes []float64, known *int, r int) {
	for ; *known <= r; *known++ {
		maxes[*known] = float64(k.MaxScaled(x[*known*cols:(*known+1)*cols], 1))
	}
}

// expSumRowsOf returns k's ExpSumRows as a loop of ExpSumNextMax calls,
// a row's maximum taken in the pass over the row before (or two before,
// where a call over the rows before left two known). Not inlined, so
// that its closure is compiled with the calls it makes inlined (see
// binWrapper in kernels_amd64.go).
//
//go:noinline
func expSumRowsOf(k *Kernels) func(x []float32, cols, known int, sums, maxes []float64) {
	return func(x []float32, cols, known int, sums, maxes []float64) {
		held := expSumRowsShape(x, cols, known, sums, maxes)
		if cols == 0 {
			clear(sums)
			for r := known; r < len(maxes); r++ {
				maxes[r] = math.Inf(-1)
			}
			return
		}
		for r := range sums {
			k.rowMaxima(x, cols, maxes, &known, r)
			row := x[r*cols : (r+1)*cols]
			// The pass over row r takes the maximum of the first row
			// not known yet: the next, or with two known from the call
			// before, the one after it (known is at most r+2 here: at
			// most 2 at the start, one more a pass).
			if u := known; u < held {
				var m float32
				sums[r], m = k.ExpSumNextMax(row, x[u*cols:(u+1)*cols], float32(maxes[r]))
				maxes[u] = float64(m)
				known++
				continue
			}
			sums[r] = k.ExpShiftSum(row, float32(maxes[r]))
		}
		k.rowMaxima(x, cols, maxes, &known, held-1)
	}
}

// ScaleToWith sets dst = x·float32(s) as ScaleTo does, but dst[at] = v
// where at ≥ 0. The 64-byte cache line holding dst[at] is written with
// ordinary stores only, dst[at] last, and ScaleTo writes the rest: an
// ordinary store to a line that a streaming set's non-temporal stores
// are filling meets it in the write-combining buffer and stalls for a
// memory round trip. Writing the line here keeps that from depending on
// how ScaleTo divides its range between its two kinds of store: when it
// gave the non-temporal one everything from the first aligned vector on,
// splitting the row at at let AVX2's 32-byte vectors stream half of
// dst[at]'s line (CrossEntropyGrad with the AVX2 set, 4M floats in rows
// of 1024, one thread on Zen 5: 12 → 19 GB/s with this line written here).
func (k *Kernels) ScaleToWith(dst, x []float32, s float64, at int, v float32) {
	if at < 0 {
		k.ScaleTo(dst, x, s)
		return
	}
	x = x[:len(dst)]
	// The line's first element, which precedes dst where dst starts
	// inside the line; both ends are clipped to dst.
	first := at - int(uintptr(unsafe.Pointer(&dst[at]))%lineBytes/4)
	lo, hi := max(first, 0), min(first+lineBytes/4, len(dst))
	k.ScaleTo(dst[:lo], x[:lo], s)
	k.ScaleTo(dst[hi:], x[hi:], s)
	s32 := float32(s)
	for i := lo; i < hi; i++ {
		dst[i] = x[i] * s32 // as ScaleTo rounds: once
	}
	dst[at] = v
}

// lineBytes is the cache line's size on the CPUs the kernels target.
const lineBytes = 64

// composeNext sets k's Next forms to its step followed by its statistics
// kernel, two passes; sets with fused kernels replace them afterwards
// (and fall back on these where the fused ones cannot run).
func (k *Kernels) composeNext() {
	k.SoftmaxStep = func(dst, x, next, src, out []float32, scale, shift float32, c float64, hole int, value float32) (float64, float32) {
		var sum float64
		var m float32
		if scale == 1 {
			// exp(1·x − shift) is exp(x − shift): one pass takes the
			// maximum too.
			sum, m = k.ExpShiftNextMax(dst, x, next, shift)
		} else {
			if len(next) != 0 && len(next) != len(dst) {
				panic("vec: next row and row differ in length")
			}
			sum, m = k.ExpShift(dst, x, scale, shift), float32(math.Inf(-1))
			if len(next) != 0 {
				m = k.MaxScaled(next, scale)
			}
		}
		k.ScaleToWith(out, src, c, hole, value)
		return sum, m
	}
	k.ScaleMulNext = func(dst, x, w []float32, s float64, next []float32) float64 {
		k.ScaleMul(dst, x, w, s)
		return k.SumSquares(next)
	}
	k.NormalizeNext = func(dst, x, g, b []float32, mean, rstd float64, next []float32, c float64) (float64, float64) {
		// The next row arrives while this one is normalised from the
		// cache, as LayerNorm had it before the fused form (where the set
		// prefetches at all: see Prefetch).
		k.Prefetch(next)
		k.Normalize(dst, x, g, b, mean, rstd)
		return k.SumsAbout(next, c)
	}
	// The gradients' two passes leave prefetching to their caller (the
	// rows loops ask for the head of the next row only: prefetchHeads).
	checkNext := func(dx, next []float32) bool {
		if len(next) != 0 && len(next) != len(dx) {
			panic("vec: next row and row differ in length")
		}
		return len(next) != 0
	}
	k.SoftmaxGradNext = func(dx, y, dy []float32, scale, dot float64, nextY, nextDy []float32) float64 {
		more := checkNext(dx, nextY)
		k.SoftmaxGrad(dx, y, dy, scale, dot)
		if !more {
			return 0
		}
		return k.Dot(nextY, nextDy)
	}
	k.RMSNormGradNext = func(dx, x, w, dy []float32, rs, c float64, next, nextDy []float32) (float64, float64) {
		more := checkNext(dx, next)
		k.RMSNormGrad(dx, x, w, dy, rs, c)
		if !more {
			return 0, 0
		}
		return k.SumSquaresDot3(next, w, nextDy)
	}
	k.RMSNormGradAccNext = func(dx, x, w, dy, acc []float32, rs, c float64, next, nextDy []float32) (float64, float64) {
		more := checkNext(dx, next)
		k.RMSNormGradAcc(dx, x, w, dy, acc, rs, c)
		if !more {
			return 0, 0
		}
		return k.SumSquaresDot3(next, w, nextDy)
	}
	k.LayerNormGradNext = func(dx, x, w, dy []float32, mean, rstd, mg, mgx float64,
		next, nextDy []float32, c float64) (float64, float64, float64, float64) {
		more := checkNext(dx, next)
		k.LayerNormGrad(dx, x, w, dy, mean, rstd, mg, mgx)
		if !more {
			return 0, 0, 0, 0
		}
		return k.LayerNormGradStats(next, w, nextDy, c)
	}
	k.RMSNormGradRows, k.LayerNormGradRows = k.rmsNormGradRows, k.layerNormGradRows
	k.LayerNormGradAccNext = nil
	if statsAcc := k.LayerNormGradStatsAcc; statsAcc != nil {
		k.LayerNormGradAccNext = func(dx, x, w, dy, accG []float32, mean, rstd, mg, mgx float64,
			next, nextDy, accB []float32, c float64) (float64, float64, float64, float64) {
			more := checkNext(dx, next)
			k.LayerNormGradAcc(dx, x, w, dy, accG, nil, mean, rstd, mg, mgx)
			if !more {
				return 0, 0, 0, 0
			}
			return statsAcc(next, w, nextDy, accB, c)
		}
	}
}

// Best returns the fastest implementation this CPU runs: assembly where
// the CPU has the features it needs, else [Go].
func Best() *Kernels {
	if k := simd(); k != nil {
		return k
	}
	return Go
}

// Names lists the name ([Kernels.Name]) of every kernel set this package
// has for any CPU or architecture; [All] returns those this CPU runs.
var Names = []string{"avx512", "avx2", "neon", "go"}

// Named returns the set this CPU runs by the given name, or nil.
func Named(name string) *Kernels {
	for _, k := range All() {
		if k.Name == name {
			return k
		}
	}
	return nil
}

// All returns every implementation this CPU runs, [Go] first; tests and
// benchmarks compare them.
func All() []*Kernels {
	return append([]*Kernels{Go}, simdAll()...)
}

// NewAdamWStep returns the constants of step t (counted from 1) of
// PyTorch's AdamW with learning rate lr, betas beta1 and beta2, epsilon eps
// and decoupled weight decay wd.
func NewAdamWStep(lr, beta1, beta2, eps, wd float64, t int) AdamWStep {
	bc1 := 1 - math.Pow(beta1, float64(t))
	sqrtBC2 := math.Sqrt(1 - math.Pow(beta2, float64(t)))
	return AdamWStep{
		Beta1: beta1, OneMinusBeta1: 1 - beta1,
		Beta2: beta2, OneMinusBeta2: 1 - beta2,
		Decay:    1 - lr*wd,
		StepSize: lr * sqrtBC2 / bc1,
		Eps:      eps * sqrtBC2,
	}
}
