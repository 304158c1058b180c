package cpu

import (
	"math"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// CrossEntropy writes each row's loss −Σ_j q_j·log softmax(logits)_j for
// the target distribution q = (1−ε)·one-hot + ε/vocab, which is
// logsumexp(logits) − Σ_j q_j·logits_j; rows whose target is p.IgnoreIndex
// get 0. The log-sum-exp subtracts the row's maximum m first, sums the
// exponentials (float32, see vec's ExpSumRows) in
// float64 and is m + log(sum) in float64 (logSum).
func (b *Backend) CrossEntropy(loss, logits backend.Tensor, targets []int32, p backend.CrossEntropyParams) {
	const op = backend.OpCrossEntropy
	if b.skip(op) {
		return
	}
	rows, vocab, err := backend.CheckCrossEntropy(op, loss, logits, targets, p)
	if err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(op, loss, logits)
	if !ok {
		return
	}
	ls, xs := v[0], v[1]
	eps := float64(p.Smoothing)
	k := b.kern
	// Each row's loss without its log(sum) (part, which holds the row's
	// maximum first) and its sum, kept for the logarithms, which a loop
	// of their own after the chunk's kernels takes with no kernel call
	// between them, so that the core overlaps their latencies (logSum
	// takes 3.4 ns in such a loop, 11 between kernel calls; rows of
	// 1024, 4M floats, one thread on Zen 5, against logarithms taken eight
	// rows at a time between the kernels: 92.3–96.6 → 89.9–91.9 ns a
	// row).
	scratch := b.scratch64(1, 2*rows)[0]
	part, sums := scratch[:rows], scratch[rows:]
	// Runs of rows not ignored go to ExpSumRows in blocks of about
	// ceBlockBytes, so that the targets' logits (and with smoothing the
	// rows' sums) are read while the block is still in the cache; each
	// call holds the next block's first two rows, whose maxima it takes
	// for the next call.
	block := max(1, ceBlockBytes/(4*max(vocab, 1))) // rows of length 0: all ignored
	b.parallelFor(rows, vocab*8, func(lo, hi int) {
		for r := lo; r < hi; {
			if targets[r] == p.IgnoreIndex {
				part[r], sums[r] = 0, 1 // log 1 = 0
				r++
				continue
			}
			end := r + 1
			for end < hi && targets[end] != p.IgnoreIndex {
				end++
			}
			known := 0
			for a := r; a < end; a += block {
				z := min(a+block, end)
				held := min(z+2, end)
				k.ExpSumRows(xs[a*vocab:held*vocab], vocab, known, sums[a:z], part[a:held])
				known = held - z
				for i := a; i < z; i++ {
					x := xs[i*vocab : (i+1)*vocab]
					part[i] -= (1 - eps) * float64(x[targets[i]])
					if eps != 0 {
						part[i] -= eps * k.Sum(x) / float64(vocab)
					}
				}
			}
			r = end
		}
		for r := lo; r < hi; r++ {
			ls[r] = float32(part[r] + logSum(sums[r]))
		}
	})
}

// ceBlockBytes is about how much of the logits CrossEntropy hands
// ExpSumRows at a time: well within any L2 cache.
const ceBlockBytes = 128 << 10

// CrossEntropyGrad writes p.Scale·(softmax(logits) − q) per row, q the
// smoothed one-hot target, and zeros for ignored rows. The softmax is
// computed as Softmax does (float32 exponentials summed in float64). The
// target's element, which can cancel (a confident, right prediction), is
// its exponential e_t = exp(x_t − max) over the sum, minus q_t, in
// float64: where x_t is not the maximum, softmax_t ≤ ½ and nothing
// cancels; where it is, e_t = exp(0) is exactly 1 and 1/sum − q_t is as
// good as the sum, whose float32 grouping of terms (see vec's ExpShift)
// leaves it within a few float32 ulps of 1, absolutely.
func (b *Backend) CrossEntropyGrad(dlogits, logits backend.Tensor, targets []int32, p backend.CrossEntropyParams) {
	const op = backend.OpCrossEntropyGrad
	if b.skip(op) {
		return
	}
	rows, vocab, err := backend.CheckCrossEntropy(op, dlogits, logits, targets, p)
	if err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(op, dlogits, logits)
	if !ok {
		return
	}
	ds, xs := v[0], v[1]
	eps, scale := float64(p.Smoothing), float64(p.Scale)
	uniform := eps / float64(vocab)
	k := b.kernels(8 * len(ds))
	chunks := b.chunks(rows, vocab*8)
	tmp := b.rowScratch(k, chunks, 2*vocab)
	b.parallelChunks(rows, chunks, func(c, lo, hi int) {
		rm := ceRows{xs: xs, targets: targets, vocab: vocab, hi: hi, ignore: p.IgnoreIndex}
		// Each row's output is written by the pass over the next row
		// (vec's SoftmaxStep), as Softmax writes its rows, or by a pass
		// of its own (finish) where no next row's pass follows; pending
		// is the row waiting for it.
		var pending ceGradRow
		for r := lo; r < hi; r++ {
			d := ds[r*vocab : (r+1)*vocab]
			t := targets[r]
			if t == p.IgnoreIndex {
				pending.finish(k)
				clear(d)
				rm.forget()
				continue
			}
			// scale·softmax(x), as softmaxRow computes it, keeping the
			// target's exponential before the scaling.
			x, m, next := rm.row(k, r)
			e := d
			if tmp != nil {
				e = tmp[c][r%2*vocab : (r%2+1)*vocab]
			}
			var sum float64
			var mNext float32
			if pending.d != nil && next != nil {
				sum, mNext = k.SoftmaxStep(e, x, next, pending.e, pending.d, 1, m, pending.scale/pending.sum, pending.t, pending.target())
			} else {
				pending.finish(k)
				sum, mNext = k.ExpShiftNextMax(e, x, next, m)
			}
			rm.carry(mNext, next)
			pending = ceGradRow{d: d, e: e, t: int(t), et: float64(e[t]), sum: sum,
				scale: scale, q: uniform + 1 - eps}
			if eps != 0 {
				// scale·(e/sum − uniform) = (e − uniform·sum)·scale/sum:
				// subtracted from e while it is in the cache, not from d
				// after its streaming stores, which would read it back.
				k.AddScalar(e, e, float32(-uniform*sum))
			}
		}
		pending.finish(k)
		k.Fence()
	})
}

// ceGradRow is a row of CrossEntropyGrad whose exponentials (e, less
// the smoothing's uniform·sum) are computed and whose output d is still
// to be written: d = e·scale/sum but for the target's element, d[t] =
// scale·(e_t/sum − q) in float64 from the exponential e_t before the
// smoothing (see CrossEntropyGrad on why).
type ceGradRow struct {
	d, e     []float32
	t        int
	et, sum  float64
	scale, q float64 // the op's scale and the target's probability q_t
}

// target returns d[t].
func (g *ceGradRow) target() float32 { return float32(g.scale * (g.et/g.sum - g.q)) }

// finish writes the row in a pass of its own (vec's ScaleToWith, which
// writes d[t] without waiting for memory), if there is one waiting, and
// leaves none waiting.
func (g *ceGradRow) finish(k *vec.Kernels) {
	if g.d == nil {
		return
	}
	k.ScaleToWith(g.d, g.e, g.scale/g.sum, g.t, g.target())
	*g = ceGradRow{}
}

// ceRows walks the rows of a chunk of logits for CrossEntropyGrad,
// carrying each row's maximum: the pass over a row's exponentials takes
// the next row's maximum with it (vec's ExpShiftNextMax), so that the
// next row's loads, missing the cache, overlap the exponentials instead
// of a pass of their own waiting for memory. The next row is one of the
// same chunk (below hi) that is not ignored; after an ignored row the
// maximum is taken afresh.
type ceRows struct {
	xs      []float32
	targets []int32
	vocab   int
	hi      int
	ignore  int32
	m       float32 // the maximum of the row after the last one passed, when known
	known   bool
}

// row returns row r of the logits, its maximum and the row whose maximum
// the pass over row r should take (nil when there is none to take).
func (c *ceRows) row(k *vec.Kernels, r int) (x []float32, m float32, next []float32) {
	x = c.xs[r*c.vocab : (r+1)*c.vocab]
	if !c.known {
		c.m = k.MaxScaled(x, 1)
	}
	if r+1 < c.hi && c.targets[r+1] != c.ignore {
		next = c.xs[(r+1)*c.vocab : (r+2)*c.vocab]
	}
	return x, c.m, next
}

// carry records mNext, the maximum of next taken by the pass over a row.
func (c *ceRows) carry(mNext float32, next []float32) { c.m, c.known = mNext, next != nil }

// forget drops the carried maximum, after an ignored row.
func (c *ceRows) forget() { c.known = false }

// logTabBits is how many leading mantissa bits pick logSum's table entry.
const logTabBits = 7

// logInv and logC are logSum's table: for the mantissa interval [1 +
// i/128, 1 + (i+1)/128), the float64 reciprocal of a point c_i in it and
// −log of that reciprocal (so that m·logInv[i] − 1 is the reduced
// argument of an exactly known logarithm); c_0 is 1 itself (r = m − 1,
// exactly), the others are the intervals' midpoints.
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

// logSum returns ln s, for the sums of exponentials of CrossEntropy's rows
// (at least 1 but for roundings), about half as fast again as math.Log,
// which took a tenth of the op's time on a 2-core Zen 5: with s = 2^e·m,
// m in [1, 2), ln s = e·ln 2 − ln(logInv[i]) + ln(1 + r) for r =
// m·logInv[i] − 1, |r| < 2⁻⁷ (index 0) or 2⁻⁸, and ln(1 + r) a Taylor
// polynomial of degree 7 (truncation below 2e−18 absolute). Within 2⁻⁷ of
// 1, where ln s is small, r is s − 1 (exact) and e·ln 2 and the table
// entry, which would cancel, are left out. The result is within 4e−16 +
// 1e−14·|ln s| of math.Log's, and near 1 within 1e−15 of ln s relatively
// (crossentropy_test.go): far below the float32 loss's own rounding.
// Zero, subnormal, negative, infinite and NaN s go to math.Log.
func logSum(s float64) float64 {
	if !(s >= 0x1p-1022 && s <= math.MaxFloat64) {
		return math.Log(s)
	}
	var e, c, r float64
	if s > 1-1.0/(1<<logTabBits) && s < 1+1.0/(1<<logTabBits) {
		r = s - 1
	} else {
		b := math.Float64bits(s)
		e = float64(int64(b>>52) - 1023)
		i := b >> (52 - logTabBits) & (1<<logTabBits - 1)
		m := math.Float64frombits(b&(1<<52-1) | 1023<<52)
		r, c = m*logInv[i]-1, logC[i]
	}
	p := r*(1.0/7) - 1.0/6
	p = p*r + 1.0/5
	p = p*r - 1.0/4
	p = p*r + 1.0/3
	p = p*r - 1.0/2
	return e*math.Ln2 + c + (r + r*r*p)
}
