package conformance

import (
	"fmt"

	"github.com/sora-go/sora/backend"
)

func init() {
	type ac struct {
		shape     []int
		steps     int
		firstStep int
		decay     float64
		lr        float64
	}
	for _, c := range []ac{
		// One element, one step: in later steps m = β1·m + (1−β1)·g can
		// cancel to almost nothing for a single element, and float32
		// rounding of the two terms then decides the update's digits.
		// Larger tensors are checked over several steps, where such
		// elements are rare and weigh little in the NMSE.
		{[]int{1}, 1, 1, 0, 1e-2},
		{[]int{13, 7}, 5, 1, 0.1, 1e-2},
		{[]int{4096}, 4, 1, 0.01, 5e-3},
		{[]int{3, 127}, 3, 1000, 0.1, 5e-3},
		{[]int{300, 301}, 2, 1, 0.01, 1e-2},
	} {
		c := c
		Register(Case{
			Name: fmt.Sprintf("adamw/%s/steps=%d..%d,lr=%g,decay=%g", dims(c.shape...), c.firstStep, c.firstStep+c.steps-1, c.lr, c.decay),
			Op:   backend.OpAdamW,
			Run: func(e *Env) {
				n := backend.Shape(c.shape).NumElements()
				param := e.OutputInit(e.Uniform(n, -1, 1), c.shape...).SetName("param")
				var m0, v0 []float32
				if c.firstStep == 1 {
					m0, v0 = make([]float32, n), make([]float32, n)
				} else {
					// Later in training: moments already hold history.
					m0, v0 = e.Uniform(n, -0.1, 0.1), e.Uniform(n, 0, 0.01)
				}
				m := e.OutputInit(m0, c.shape...).SetName("m")
				v := e.OutputInit(v0, c.shape...).SetName("v")
				for s := c.firstStep; s < c.firstStep+c.steps; s++ {
					gv := e.Uniform(n, -1, 1)
					g := e.Input(gv, c.shape...)
					p := backend.AdamWParams{LR: c.lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: c.decay, Step: s}
					e.B.AdamW(param.T, g, m.T, v.T, p)
					// Each step is checked against a float64 step from
					// the backend's own state before it.
					rp, rm, rv := refAdamW(param.Init, gv, m.Init, v.Init, p)
					e.Check(param, rp)
					e.Check(m, rm)
					e.Check(v, rv)
					// The change of the parameter is small next to the
					// parameter, so it is checked on its own.
					got := e.Values(param)
					du, dr := make([]float64, n), make([]float64, n)
					for i := range got {
						du[i] = float64(got[i]) - float64(param.Init[i])
						dr[i] = rp[i] - float64(param.Init[i])
					}
					e.CheckValues(fmt.Sprintf("param update of step %d", s), "adamw_update", du, dr)
					if e.Failed() {
						return
					}
					e.Rebase(param)
					e.Rebase(m)
					e.Rebase(v)
				}
			},
		})
	}
}
