package cpu

import (
	"math"

	"github.com/sora-go/sora/backend"
)

// AdamW performs one torch.optim.AdamW step in place on param, m and v (see
// [backend.AdamWParams]). The bias corrections are computed in float64; the
// element update follows PyTorch's float32 order of operations, with the
// step size lr/(1−β₁ᵗ) and the denominator sqrt(v)/sqrt(1−β₂ᵗ) + eps.
func (b *Backend) AdamW(param, grad, m, v backend.Tensor, p backend.AdamWParams) {
	const op = backend.OpAdamW
	if b.skip(op) {
		return
	}
	if _, err := backend.CheckElementwise(op, param, grad, m, v); err != nil {
		b.Record(err)
		return
	}
	vs, ok := b.views(op, param, grad, m, v)
	if !ok {
		return
	}
	ps, gs, ms, ss := vs[0], vs[1], vs[2], vs[3]
	step := float64(p.Step)
	bc1 := 1 - math.Pow(float64(p.Beta1), step)
	bc2 := 1 - math.Pow(float64(p.Beta2), step)
	stepSize := float32(float64(p.LR) / bc1)
	sqrtBC2 := float32(math.Sqrt(bc2))
	decay := 1 - p.LR*p.WeightDecay
	b1, b2, eps := p.Beta1, p.Beta2, p.Eps
	b.parallelFor(len(ps), 12, func(lo, hi int) {
		pr, gr, mr, sr := ps[lo:hi], gs[lo:hi], ms[lo:hi], ss[lo:hi]
		for i, g := range gr {
			mi := b1*mr[i] + (1-b1)*g
			vi := b2*sr[i] + (1-b2)*g*g
			mr[i], sr[i] = mi, vi
			denom := float32(math.Sqrt(float64(vi)))/sqrtBC2 + eps
			pr[i] = pr[i]*decay - stepSize*(mi/denom)
		}
	})
}
