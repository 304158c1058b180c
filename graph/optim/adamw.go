package optim

import (
	"fmt"

	"github.com/sora-go/sora/backend"
)

// AdamWConfig holds AdamW's hyper-parameters other than the per-group
// learning rate and weight decay.
type AdamWConfig struct {
	Beta1, Beta2 float64
	// Eps is added to the root of the second moment; it must be positive.
	Eps float64
}

// DefaultAdamWConfig returns PyTorch's defaults: betas (0.9, 0.999), eps
// 1e-8.
func DefaultAdamWConfig() AdamWConfig { return AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8} }

// AdamW is Adam with decoupled weight decay, step for step the rule of
// torch.optim.AdamW (without amsgrad): for a parameter with gradient g at
// its t-th update, with lr the group's learning rate times the schedule's
// factor and λ the group's weight decay,
//
//	θ ← θ − lr·λ·θ
//	m ← β₁·m + (1−β₁)·g
//	v ← β₂·v + (1−β₂)·g²
//	θ ← θ − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)
//
// The moments m and v start at zero and are allocated at a parameter's
// first update; t counts that parameter's own updates.
type AdamW struct {
	base
	cfg AdamWConfig
}

// NewAdamW returns an AdamW optimizer over groups, with the learning rate
// of each group multiplied by sched (nil: constant).
func NewAdamW(groups []Group, cfg AdamWConfig, sched Schedule) (*AdamW, error) {
	if !(cfg.Beta1 >= 0 && cfg.Beta1 < 1 && cfg.Beta2 >= 0 && cfg.Beta2 < 1) {
		return nil, fmt.Errorf("optim: AdamW betas (%g, %g) must lie in [0, 1)", cfg.Beta1, cfg.Beta2)
	}
	if !(cfg.Eps > 0) {
		return nil, fmt.Errorf("optim: AdamW eps %g must be positive (PyTorch's default is 1e-8; start from DefaultAdamWConfig)", cfg.Eps)
	}
	b, err := newBase("adamw", groups, sched, []string{"exp_avg", "exp_avg_sq"})
	if err != nil {
		return nil, err
	}
	return &AdamW{base: b, cfg: cfg}, nil
}

// Step applies one AdamW update (see [Optimizer]).
func (o *AdamW) Step() error {
	f := o.sched.Factor(o.steps)
	for _, g := range o.groups {
		for _, p := range g.Params {
			grad := p.Grad()
			if grad.IsZero() {
				continue
			}
			st, err := o.stateOf(p)
			if err != nil {
				return err
			}
			st.steps++
			o.b.AdamW(p.Tensor(), grad, st.slots[0], st.slots[1], backend.AdamWParams{
				LR: g.LR * f, Beta1: o.cfg.Beta1, Beta2: o.cfg.Beta2,
				Eps: o.cfg.Eps, WeightDecay: g.WeightDecay, Step: st.steps,
			})
		}
	}
	o.steps++
	return o.b.Sync()
}
