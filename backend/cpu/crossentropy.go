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
// computed as Softmax does (float32 exponentials summed in float64); the
// target's element, which can cancel, is computed in float64 throughout.
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
			// scale·softmax(x), as Softmax computes it, minus scale·q.
			x := xs[r*vocab : (r+1)*vocab]
			m, sum := softmaxRow(k, d, x, row(tmp, c), 1, scale)
			uniform := eps / float64(vocab)
			if eps != 0 {
				k.AddScalar(d, d, float32(-scale*uniform))
			}
			// The target's term can cancel (a confident, right
			// prediction): compute it in float64 from the start.
			lse := float64(m) + math.Log(sum)
			d[t] = float32(scale * (math.Exp(float64(x[t])-lse) - (uniform + 1 - eps)))
		}
		k.Fence()
	})
}
