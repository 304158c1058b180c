package optim

import (
	"fmt"
)

// SGDConfig holds SGD's hyper-parameters other than the per-group learning
// rate and weight decay.
type SGDConfig struct {
	// Momentum is the momentum factor μ; 0 disables momentum.
	Momentum float64
	// Dampening τ scales the gradient entering the momentum buffer by 1−τ.
	Dampening float64
	// Nesterov uses Nesterov momentum (requires Momentum > 0 and
	// Dampening 0, as in PyTorch).
	Nesterov bool
}

// SGD is stochastic gradient descent with momentum, step for step the rule
// of torch.optim.SGD: for a parameter with gradient g, λ the group's weight
// decay (an L2 penalty here, not decoupled) and lr the scheduled rate,
//
//	d ← g + λ·θ
//	b ← d at the first update, μ·b + (1−τ)·d afterwards   (momentum only)
//	d ← d + μ·b with Nesterov, b otherwise                  (momentum only)
//	θ ← θ − lr·d
//
// composed from the backend's Scale, Axpy and Copy, so it runs on any
// backend. The gradient itself is left unchanged.
type SGD struct {
	base
	cfg SGDConfig
}

// NewSGD returns an SGD optimizer over groups, with the learning rate of
// each group multiplied by sched (nil: constant).
func NewSGD(groups []Group, cfg SGDConfig, sched Schedule) (*SGD, error) {
	if cfg.Momentum < 0 || cfg.Dampening < 0 || cfg.Dampening > 1 {
		return nil, fmt.Errorf("optim: SGD momentum %g must not be negative and dampening %g must lie in [0, 1]", cfg.Momentum, cfg.Dampening)
	}
	if cfg.Nesterov && (cfg.Momentum <= 0 || cfg.Dampening != 0) {
		return nil, fmt.Errorf("optim: Nesterov momentum needs momentum > 0 and zero dampening (have %g, %g)", cfg.Momentum, cfg.Dampening)
	}
	var slots []string
	if cfg.Momentum != 0 {
		slots = []string{"momentum_buffer"}
	}
	b, err := newBase("sgd", groups, sched, slots)
	if err != nil {
		return nil, err
	}
	return &SGD{base: b, cfg: cfg}, nil
}

// Step applies one SGD update (see [Optimizer]).
func (o *SGD) Step() error {
	f := o.sched.Factor(o.steps)
	mu, damp := float32(o.cfg.Momentum), float32(o.cfg.Dampening)
	for _, g := range o.groups {
		lr, wd := float32(g.LR*f), float32(g.WeightDecay)
		for _, p := range g.Params {
			grad := p.Grad()
			if grad.IsZero() {
				continue
			}
			theta := p.Tensor()
			st, err := o.stateOf(p)
			if err != nil {
				return err
			}
			st.steps++
			if mu == 0 {
				// θ ← θ(1 − lr·λ) − lr·g
				if wd != 0 {
					o.b.Scale(theta, theta, 1-lr*wd)
				}
				o.b.Axpy(theta, -lr, grad)
				continue
			}
			buf := st.slots[0]
			// b from the current θ, before θ changes.
			if st.steps == 1 {
				o.b.Copy(buf, grad, false)
				if wd != 0 {
					o.b.Axpy(buf, wd, theta)
				}
			} else {
				o.b.Scale(buf, buf, mu)
				o.b.Axpy(buf, 1-damp, grad)
				if wd != 0 {
					o.b.Axpy(buf, (1-damp)*wd, theta)
				}
			}
			if o.cfg.Nesterov {
				// θ ← θ(1 − lr·λ) − lr·g − lr·μ·b
				if wd != 0 {
					o.b.Scale(theta, theta, 1-lr*wd)
				}
				o.b.Axpy(theta, -lr, grad)
				o.b.Axpy(theta, -lr*mu, buf)
			} else {
				o.b.Axpy(theta, -lr, buf)
			}
		}
	}
	o.steps++
	return o.b.Sync()
}
