package cpu

import (
	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// AdamW performs one torch.optim.AdamW step in place on param, m and v (see
// [backend.AdamWParams]). Each element's step is computed in float64 from
// the stored float32 values and rounded once per stored result, so that
// when β₁·m and (1−β₁)·g nearly cancel the update keeps its digits (a
// float32 evaluation, as PyTorch's, rounds both terms first). The bias
// corrections are folded into the step size and epsilon (see
// vec.NewAdamWStep), which is the same update up to float64 rounding.
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
	step := vec.NewAdamWStep(p.LR, p.Beta1, p.Beta2, p.Eps, p.WeightDecay, p.Step)
	k := b.kernels(28 * len(ps))
	b.parallelFor(len(ps), 16, func(lo, hi int) { k.AdamW(ps[lo:hi], gs[lo:hi], ms[lo:hi], ss[lo:hi], &step) })
}
