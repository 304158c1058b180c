// Package optim updates the parameters of package graph from their
// gradients: AdamW with decoupled weight decay (the update rule of PyTorch's
// torch.optim.AdamW) and SGD with momentum (torch.optim.SGD), parameter
// groups with their own learning rate and weight decay, learning-rate
// schedules (constant, linear and cosine decay after a linear warm-up, as
// the Hugging Face schedulers define them), gradient clipping by global
// norm, and optimizer state that can be exported to the host and imported
// again to resume training exactly.
//
// Optimizers work on any backend: AdamW through the backend's fused AdamW
// op, SGD composed from Scale, Axpy and Copy.
//
// A step:
//
//	if _, err := optim.ClipGradNorm(opt.Params(), 1.0); err != nil { … }
//	if err := opt.Step(); err != nil { … }
//	opt.ZeroGrad()
package optim

import (
	"fmt"
	"sort"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// Group is a set of parameters that share a learning rate and a weight
// decay. LoRA+ puts the B matrices in a group of its own with λ times the
// learning rate of the A matrices; biases and norms usually get a group
// without weight decay.
type Group struct {
	Name   string
	Params []*graph.Value
	// LR is the group's base learning rate; a schedule multiplies it.
	LR float64
	// WeightDecay is the decoupled weight decay (AdamW) or L2 penalty
	// (SGD) coefficient.
	WeightDecay float64
}

// DecayGroups splits params into a group "decay" of the matrices (rank 2
// or more: linear weights, embeddings, heads) with weight decay wd and a
// group "no_decay" of the vectors (biases, norm weights) without, both
// with learning rate lr, keeping params' order within each; an empty group
// is left out. Hugging Face's Trainer exempts biases and norm weights by
// name; in the LLaMA family the rule by rank picks the same tensors.
func DecayGroups(params []*graph.Value, lr, wd float64) []Group {
	var decay, none []*graph.Value
	for _, p := range params {
		if p.Rank() >= 2 {
			decay = append(decay, p)
		} else {
			none = append(none, p)
		}
	}
	var gs []Group
	if len(decay) > 0 {
		gs = append(gs, Group{Name: "decay", Params: decay, LR: lr, WeightDecay: wd})
	}
	if len(none) > 0 {
		gs = append(gs, Group{Name: "no_decay", Params: none, LR: lr})
	}
	return gs
}

// Optimizer updates parameters from their gradients.
type Optimizer interface {
	// Step applies one update to every parameter that has a gradient
	// (parameters without one, see graph.Value.ZeroGrad, are skipped and
	// keep their state, as in PyTorch) and advances the schedule. It
	// returns the backend's first recorded error.
	Step() error
	// ZeroGrad empties the gradients of all parameters.
	ZeroGrad()
	// Params returns every parameter of every group, in order.
	Params() []*graph.Value
	// Groups returns the parameter groups.
	Groups() []Group
	// Steps returns the number of Steps taken.
	Steps() int
	// LR returns the learning rate the next Step uses for group i.
	LR(i int) float64
	// State copies the optimizer's state to the host.
	State() (*State, error)
	// SetState replaces the optimizer's state with s, which must come from
	// an optimizer of the same kind over parameters of the same names and
	// shapes.
	SetState(s *State) error
	// Free releases the optimizer's device buffers (its state).
	Free()
}

// State is an optimizer's state on the host: enough, with the parameters,
// to resume training exactly where it stopped.
type State struct {
	// Kind is "adamw" or "sgd".
	Kind string
	// Steps is the number of optimizer steps taken (the schedule's
	// position).
	Steps int
	// Params holds one entry per parameter, in the order of Params().
	Params []ParamState
}

// ParamState is the state of one parameter.
type ParamState struct {
	// Name is the parameter's name, checked on import.
	Name string
	// Steps counts the updates applied to this parameter; AdamW's bias
	// correction uses it. 0 means the parameter has no state yet.
	Steps int
	// Slots holds the state tensors by their PyTorch names: "exp_avg"
	// and "exp_avg_sq" (AdamW), "momentum_buffer" (SGD with momentum).
	Slots map[string][]float32
}

// paramState is a parameter's state on the device.
type paramState struct {
	steps int
	slots []backend.Tensor // in the order of the optimizer's slot names
}

// base holds what every optimizer shares.
type base struct {
	kind   string
	b      backend.Backend
	groups []Group
	params []*graph.Value
	sched  Schedule
	steps  int
	slots  []string // names of the per-parameter state tensors
	state  map[*graph.Value]*paramState
}

func newBase(kind string, groups []Group, sched Schedule, slots []string) (base, error) {
	o := base{kind: kind, sched: sched, slots: slots, state: map[*graph.Value]*paramState{}}
	if o.sched == nil {
		o.sched = Constant{}
	}
	seen := map[*graph.Value]bool{}
	for gi, g := range groups {
		if g.LR < 0 || g.WeightDecay < 0 {
			return o, fmt.Errorf("optim: group %d (%q): learning rate %g and weight decay %g must not be negative", gi, g.Name, g.LR, g.WeightDecay)
		}
		for pi, p := range g.Params {
			switch {
			case p == nil || !p.IsParam():
				return o, fmt.Errorf("optim: group %d (%q) item %d is not a parameter", gi, g.Name, pi)
			case seen[p]:
				return o, fmt.Errorf("optim: parameter %q is in more than one group", p.Name())
			case o.b != nil && p.Backend() != o.b:
				return o, fmt.Errorf("optim: parameter %q lives on another backend than %q", p.Name(), o.params[0].Name())
			}
			seen[p] = true
			o.b = p.Backend()
			o.params = append(o.params, p)
		}
		g.Params = append([]*graph.Value(nil), g.Params...)
		o.groups = append(o.groups, g)
	}
	if len(o.params) == 0 {
		return o, fmt.Errorf("optim: no parameters")
	}
	return o, nil
}

func (o *base) ZeroGrad() {
	for _, p := range o.params {
		p.ZeroGrad()
	}
}

func (o *base) Params() []*graph.Value { return append([]*graph.Value(nil), o.params...) }

func (o *base) Groups() []Group {
	gs := append([]Group(nil), o.groups...)
	for i := range gs {
		gs[i].Params = append([]*graph.Value(nil), gs[i].Params...)
	}
	return gs
}

func (o *base) Steps() int { return o.steps }

func (o *base) LR(i int) float64 { return o.groups[i].LR * o.sched.Factor(o.steps) }

func (o *base) Free() {
	for p, st := range o.state {
		for _, t := range st.slots {
			o.b.Free(t)
		}
		delete(o.state, p)
	}
}

// stateOf returns p's state, allocating zeroed slots on first use.
func (o *base) stateOf(p *graph.Value) (*paramState, error) {
	if st := o.state[p]; st != nil {
		return st, nil
	}
	st := &paramState{}
	for _, name := range o.slots {
		t, err := o.b.Alloc(backend.Float32, p.Shape()...)
		if err != nil {
			for _, u := range st.slots {
				o.b.Free(u)
			}
			return nil, fmt.Errorf("optim: %s state of %q: %w", name, p.Name(), err)
		}
		o.b.Fill(t, 0)
		st.slots = append(st.slots, t)
	}
	o.state[p] = st
	return st, nil
}

func (o *base) State() (*State, error) {
	s := &State{Kind: o.kind, Steps: o.steps}
	for _, p := range o.params {
		ps := ParamState{Name: p.Name()}
		if st := o.state[p]; st != nil {
			ps.Steps = st.steps
			ps.Slots = map[string][]float32{}
			for i, name := range o.slots {
				h := make([]float32, p.Len())
				if err := o.b.Download(h, st.slots[i]); err != nil {
					return nil, fmt.Errorf("optim: downloading %s of %q: %w", name, p.Name(), err)
				}
				ps.Slots[name] = h
			}
		}
		s.Params = append(s.Params, ps)
	}
	return s, nil
}

func (o *base) SetState(s *State) error {
	if s == nil {
		return fmt.Errorf("optim: nil state")
	}
	if s.Kind != o.kind {
		return fmt.Errorf("optim: state of a %q optimizer given to a %q optimizer", s.Kind, o.kind)
	}
	if len(s.Params) != len(o.params) {
		return fmt.Errorf("optim: state has %d parameters, the optimizer %d", len(s.Params), len(o.params))
	}
	if s.Steps < 0 {
		return fmt.Errorf("optim: state has a negative step count %d", s.Steps)
	}
	// Validate everything before changing anything.
	for i, ps := range s.Params {
		p := o.params[i]
		if ps.Name != p.Name() {
			return fmt.Errorf("optim: state parameter %d is named %q, the optimizer's is %q", i, ps.Name, p.Name())
		}
		if ps.Steps < 0 {
			return fmt.Errorf("optim: state of %q has a negative step count %d", ps.Name, ps.Steps)
		}
		if ps.Steps == 0 {
			continue
		}
		for _, name := range o.slots {
			h, ok := ps.Slots[name]
			if !ok {
				return fmt.Errorf("optim: state of %q lacks %q", ps.Name, name)
			}
			if len(h) != p.Len() {
				return fmt.Errorf("optim: %s of %q has %d values, the parameter %v has %d", name, ps.Name, len(h), p.Shape(), p.Len())
			}
		}
		if len(ps.Slots) != len(o.slots) {
			return fmt.Errorf("optim: state of %q has slots %v, want %v", ps.Name, keys(ps.Slots), o.slots)
		}
	}
	o.Free()
	for i, ps := range s.Params {
		if ps.Steps == 0 {
			continue
		}
		p := o.params[i]
		st, err := o.stateOf(p)
		if err != nil {
			return err
		}
		st.steps = ps.Steps
		for j, name := range o.slots {
			o.b.Upload(st.slots[j], ps.Slots[name])
		}
	}
	o.steps = s.Steps
	return o.b.Sync()
}

func keys(m map[string][]float32) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
