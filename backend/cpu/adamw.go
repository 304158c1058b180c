package cpu

import (
	"math"

	"github.com/sora-go/sora/backend"
)

// AdamW performs one torch.optim.AdamW step in place on param, m and v (see
// [backend.AdamWParams]). Each element's step is computed in float64 from
// the stored float32 values and rounded once per stored result, so that
// when β₁·m and (1−β₁)·g nearly cancel the update keeps its digits (a
// float32 evaluation, as PyTorch's, rounds both terms first).
func (b *Backend) AdamW(param, grad, m, v backend.Tensor, p backend.AdamWParams) {
	const op = backend.OpAdamW
	if b.skip(op) {
		return
	}
	if _, err := backend.CheckAdamW(param, grad, m, v, p); err != nil {
		b.Record(err)
		return
	}
	vs, ok := b.views(op, param, grad, m, v)
	if !ok {
		return
	}
	ps, gs, ms, ss := vs[0], vs[1], vs[2], vs[3]
	b1, b2 := float64(p.Beta1), float64(p.Beta2)
	lr, eps := float64(p.LR), float64(p.Eps)
	stepSize := lr / (1 - math.Pow(b1, float64(p.Step)))
	sqrtBC2 := math.Sqrt(1 - math.Pow(b2, float64(p.Step)))
	decay := 1 - lr*float64(p.WeightDecay)
	b.parallelFor(len(ps), 16, func(lo, hi int) {
		pr, gr, mr, sr := ps[lo:hi], gs[lo:hi], ms[lo:hi], ss[lo:hi]
		for i, g32 := range gr {
			g := float64(g32)
			mi := b1*float64(mr[i]) + (1-b1)*g
			vi := b2*float64(sr[i]) + (1-b2)*g*g
			mr[i], sr[i] = float32(mi), float32(vi)
			pr[i] = float32(float64(pr[i])*decay - stepSize*mi/(math.Sqrt(vi)/sqrtBC2+eps))
		}
	})
}
