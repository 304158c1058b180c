package optim

import "math"

// Schedule gives the factor by which the learning rate of every group is
// multiplied at each optimizer step. step counts the steps already taken:
// 0 for the first, as for PyTorch's LambdaLR and the Hugging Face
// schedulers, so that with a warm-up the first step has factor 0 exactly as
// there.
type Schedule interface {
	Factor(step int) float64
}

// ScheduleFunc adapts a function to a Schedule.
type ScheduleFunc func(step int) float64

// Factor returns f(step).
func (f ScheduleFunc) Factor(step int) float64 { return f(step) }

// warmup returns the warm-up factor step/Warmup and whether step is still
// warming up.
func warmup(step, steps int) (float64, bool) {
	if step < steps {
		return float64(step) / float64(max(1, steps)), true
	}
	return 0, false
}

// Constant keeps the learning rate after a linear warm-up over Warmup
// steps (0 for none), like get_constant_schedule_with_warmup.
type Constant struct {
	Warmup int
}

// Factor implements Schedule.
func (s Constant) Factor(step int) float64 {
	if f, ok := warmup(step, s.Warmup); ok {
		return f
	}
	return 1
}

// WarmupLinear rises linearly from 0 to 1 over Warmup steps, then decays
// linearly to 0 at step Total, like get_linear_schedule_with_warmup.
type WarmupLinear struct {
	Warmup, Total int
}

// Factor implements Schedule.
func (s WarmupLinear) Factor(step int) float64 {
	if f, ok := warmup(step, s.Warmup); ok {
		return f
	}
	return math.Max(0, float64(s.Total-step)/float64(max(1, s.Total-s.Warmup)))
}

// WarmupCosine rises linearly from 0 to 1 over Warmup steps, then follows
// half a cosine down to 0 at step Total, like
// get_cosine_schedule_with_warmup with its default half cycle.
type WarmupCosine struct {
	Warmup, Total int
}

// Factor implements Schedule.
func (s WarmupCosine) Factor(step int) float64 {
	if f, ok := warmup(step, s.Warmup); ok {
		return f
	}
	progress := float64(step-s.Warmup) / float64(max(1, s.Total-s.Warmup))
	return math.Max(0, 0.5*(1+math.Cos(math.Pi*progress)))
}
