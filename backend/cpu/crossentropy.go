package cpu

import (
	"math"

	"github.com/sora-go/sora/backend"
)

// logSumExp returns max(x) and log Σ exp(x − max(x)) + max(x), in float64.
func logSumExp(x []float32) (m, lse float64) {
	m = math.Inf(-1)
	for _, v := range x {
		m = max(m, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return m, m + math.Log(s)
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
	b.parallelFor(rows, vocab*24, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			t := targets[r]
			if t == p.IgnoreIndex {
				ls[r] = 0
				continue
			}
			x := xs[r*vocab : (r+1)*vocab]
			_, lse := logSumExp(x)
			l := lse - (1-eps)*float64(x[t])
			if eps != 0 {
				l -= eps * sum64(x) / float64(vocab)
			}
			ls[r] = float32(l)
		}
	})
}

// CrossEntropyGrad writes p.Scale·(softmax(logits) − q) per row, q the
// smoothed one-hot target, and zeros for ignored rows.
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
	b.parallelFor(rows, vocab*24, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			d := ds[r*vocab : (r+1)*vocab]
			t := targets[r]
			if t == p.IgnoreIndex {
				clear(d)
				continue
			}
			x := xs[r*vocab : (r+1)*vocab]
			_, lse := logSumExp(x)
			uniform := eps / float64(vocab)
			for j, xv := range x {
				q := uniform
				if j == int(t) {
					q += 1 - eps
				}
				d[j] = float32(scale * (math.Exp(float64(xv)-lse) - q))
			}
		}
	})
}
