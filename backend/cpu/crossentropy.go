package cpu

import (
	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// CrossEntropy writes each row's loss −Σ_j q_j·log softmax(logits)_j for
// the target distribution q = (1−ε)·one-hot + ε/vocab, which is
// logsumexp(logits) − Σ_j q_j·logits_j; rows whose target is p.IgnoreIndex
// get 0. The log-sum-exp subtracts the row's maximum m first, sums the
// exponentials (float32, see vec's ExpSumRows) in float64 and is m +
// log(sum) in float64 (vec's Log64).
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
	// Runs of rows not ignored go to ExpSumRows in blocks of about
	// ceBlockBytes, so that the targets' logits (and with smoothing the
	// rows' sums) are read while the block is still in the cache; each
	// call holds the next block's first two rows, whose maxima it takes
	// for the next call. Each block's losses are then finished at once,
	// their logarithms by Log64, which on AVX-512 takes eight at a time
	// (scalar logarithms, in a loop over the chunk's rows after its
	// blocks as before or after each block, cost the op 6% on two
	// threads, 4M floats in rows of 1024 on Zen 5).
	chunks := b.chunks(rows, vocab*8)
	block := min(max(1, ceBlockBytes/(4*max(vocab, 1))), // rows of length 0: all ignored
		(rows+chunks-1)/chunks) // no more than a chunk's rows
	bufs := b.scratch64(chunks, 2*block+2)
	b.parallelChunks(rows, chunks, func(c, lo, hi int) {
		// A block's rows' maxima and those of the two rows after it, and
		// the rows' sums, then their logarithms.
		maxes, sums := bufs[c][:block+2], bufs[c][block+2:]
		for r := lo; r < hi; {
			if targets[r] == p.IgnoreIndex {
				ls[r] = 0
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
				n := z - a
				copy(maxes, maxes[block:block+known]) // the previous call's held maxima
				k.ExpSumRows(xs[a*vocab:held*vocab], vocab, known, sums[:n], maxes[:held-a])
				known = held - z
				k.Log64(sums[:n], sums[:n])
				// The loss m − (1−ε)·x_t − ε·mean(x) + log(sum) in float64,
				// rounded once.
				xb := xs[a*vocab : z*vocab]
				for i, t := range targets[a:z] {
					l := maxes[i] - (1-eps)*float64(xb[i*vocab+int(t)])
					if eps != 0 {
						l -= eps * k.Sum(xb[i*vocab:(i+1)*vocab]) / float64(vocab)
					}
					ls[a+i] = float32(l + sums[i])
				}
			}
			r = end
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
			pending.set(d, e, int(t), sum, scale, uniform+1-eps)
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

// set makes g the row whose output d is still to be written from its
// exponentials e, with target t, their sum, the op's scale and q_t. It
// stores field by field: the struct literal the compiler built and then
// copied into g read each pair of its words back with one 16-byte load,
// which no store can forward, so that the load waited for its two stores
// to leave the store buffer, behind the streaming stores of the row
// before: a tenth of the op's samples in a profile on Zen 5 (one thread,
// in the cache); from memory the op measured 5% faster on one thread, at
// the edge of this machine's noise.
func (g *ceGradRow) set(d, e []float32, t int, sum, scale, q float64) {
	g.d, g.e, g.t, g.et, g.sum, g.scale, g.q = d, e, t, float64(e[t]), sum, scale, q
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
