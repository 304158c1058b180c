package cpu

import (
	"math"

	"github.com/sora-go/sora/backend"
)

// logSumExp returns log Σ exp(x): the maximum m is subtracted first, the
// exponentials (float32, a few ulps) are summed in float64, and the result
// is m + log(sum) in float64.
func (b *Backend) logSumExp(x []float32) (m float32, lse float64) {
	m = b.kern.MaxScaled(x, 1)
	return m, float64(m) + math.Log(b.kern.ExpShiftSum(x, 1, m))
}

// CrossEntropy writes each row's loss −Σ_j q_j·log softmax(logits)_j for
// the target distribution q = (1−ε)·one-hot + ε/vocab, which is
// logsumexp(logits) − Σ_j q_j·logits_j; rows whose target is p.IgnoreIndex
// get 0.
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
	b.parallelFor(rows, vocab*8, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			t := targets[r]
			if t == p.IgnoreIndex {
				ls[r] = 0
				continue
			}
			x := xs[r*vocab : (r+1)*vocab]
			_, lse := b.logSumExp(x)
			l := lse - (1-eps)*float64(x[t])
			if eps != 0 {
				l -= eps * b.kern.Sum(x) / float64(vocab)
			}
			ls[r] = float32(l)
		}
	})
}

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
	tmp := b.rowScratch(k, chunks, vocab)
	b.parallelChunks(rows, chunks, func(c, lo, hi int) {
		for r := lo; r < hi; r++ {
			d := ds[r*vocab : (r+1)*vocab]
			t := targets[r]
			if t == p.IgnoreIndex {
				clear(d)
				continue
			}
			// scale·softmax(x), as softmaxRow computes it, keeping the
			// target's exponential before the scaling.
			x := xs[r*vocab : (r+1)*vocab]
			m := k.MaxScaled(x, 1)
			e := d
			if tmp != nil {
				e = tmp[c][:vocab]
			}
			sum := k.ExpShift(e, x, 1, m)
			et := float64(e[t])
			// d[t] is left out of the scaling: written after d's
			// streaming (non-temporal) stores, it would meet its line in
			// the write-combining buffer and stall for a memory round
			// trip every row. Split, the line holding d[t] is written with
			// ordinary stores (the kernels' unaligned head and tail).
			if eps != 0 {
				// scale·(e/sum − uniform) = (e − uniform·sum)·scale/sum:
				// subtracted from e while it is in the cache, not from d
				// after its streaming stores, which would read it back.
				k.AddScalar(e, e, float32(-uniform*sum))
			}
			k.ScaleTo(d[:t], e[:t], scale/sum)
			k.ScaleTo(d[t+1:], e[t+1:], scale/sum)
			d[t] = float32(scale * (et/sum - (uniform + 1 - eps)))
		}
		k.Fence()
	})
}
