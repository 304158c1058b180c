package cpu

import (
	"math"
	"testing"

	"github.com/sora-go/sora/backend"
)

func TestAdamW(t *testing.T) {
	tests := []struct {
		n int
		p backend.AdamWParams
	}{
		{1, backend.AdamWParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}},
		{17, backend.AdamWParams{LR: 0.1, Beta1: 0.8, Beta2: 0.95, Eps: 1e-6, WeightDecay: 0}},
		{3000, backend.AdamWParams{LR: 2e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1}},
	}
	for i, tt := range tests {
		t.Run(shapeName(tt.n), func(t *testing.T) {
			eachConfig(t, func(t *testing.T, be *Backend) {
				rng := newRNG(uint64(i))
				pData := uniform(rng, tt.n, -1, 1)
				param := upload(t, be, pData, tt.n)
				m := upload(t, be, make([]float32, tt.n), tt.n)
				v := upload(t, be, make([]float32, tt.n), tt.n)
				// The float64 reference follows the AdamWParams formulas.
				rp, rm, rv := f64(pData), make([]float64, tt.n), make([]float64, tt.n)
				b1, b2 := float64(tt.p.Beta1), float64(tt.p.Beta2)
				lr, wd, eps := float64(tt.p.LR), float64(tt.p.WeightDecay), float64(tt.p.Eps)
				for step := 1; step <= 5; step++ {
					gData := uniform(rng, tt.n, -1, 1)
					if step == 3 {
						gData[0] = 0 // a zero gradient still decays and moves by momentum
					}
					grad := upload(t, be, gData, tt.n)
					p := tt.p
					p.Step = step
					be.AdamW(param, grad, m, v, p)
					be.Free(grad)
					for j, g32 := range gData {
						g := float64(g32)
						rp[j] -= lr * wd * rp[j]
						rm[j] = b1*rm[j] + (1-b1)*g
						rv[j] = b2*rv[j] + (1-b2)*g*g
						mhat := rm[j] / (1 - math.Pow(b1, float64(step)))
						vhat := rv[j] / (1 - math.Pow(b2, float64(step)))
						rp[j] -= lr * mhat / (math.Sqrt(vhat) + eps)
					}
				}
				// m cancels terms of size ~0.1 in float32: absolute error ~1e-8.
				assertClose(t, "m", download(t, be, m), rm, 1e-5, 1e-7)
				assertClose(t, "v", download(t, be, v), rv, 1e-5, 1e-12)
				// Each step moves a parameter by about lr; float32 rounding
				// of the parameter itself dominates the error.
				assertClose(t, "param", download(t, be, param), rp, 1e-6, 1e-6)
			})
		})
	}
}
