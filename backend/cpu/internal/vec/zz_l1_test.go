package vec

import (
	"fmt"
	"testing"
	"time"
)

func TestScratchL1(t *testing.T) {
	const n = 1024
	x, y, z, w := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	acc, acc2 := make([]float64, n), make([]float64, n)
	for i := range x {
		x[i] = float32(i%1000)/125 - 4
		y[i] = 0.5
		w[i] = 1
	}
	step := NewAdamWStep(1e-6, 0.9, 0.999, 1e-8, 0.01, 1)
	for _, k := range All() {
		for _, o := range []struct {
			n string
			f func()
		}{
			{"Add", func() { k.Add(z, x, y) }},
			{"Exp", func() { k.Exp(z, x) }},
			{"GELU", func() { k.GELU(z, x) }},
			{"SiLU", func() { k.SiLU(z, x) }},
			{"Sum", func() { k.Sum(x) }},
			{"SumSqDiff", func() { k.SumSquaredDiff(x, 0.1) }},
			{"MaxScaled", func() { k.MaxScaled(x, 1) }},
			{"ExpShift", func() { k.ExpShift(z, x, 1, 4) }},
			{"ScaleTo", func() { k.ScaleTo(z, x, 0.5) }},
			{"ScaleMul", func() { k.ScaleMul(z, x, w, 0.5) }},
			{"Normalize", func() { k.Normalize(z, x, w, y, 0.1, 2) }},
			{"SoftmaxGrad", func() { k.SoftmaxGrad(z, x, y, 1, 0.1) }},
			{"RMSGradAcc", func() { k.RMSNormGrad(z, x, w, y, acc, 1, 0.1) }},
			{"LNGradSums", func() { k.LayerNormGradSums(x, w, y, acc, acc2, 0.1, 2) }},
			{"LNGrad", func() { k.LayerNormGrad(z, x, w, y, 0.1, 2, 0.1, 0.1) }},
			{"AdamW", func() { k.AdamW(z, y, w, x, &step) }},
		} {
			best := time.Hour
			for r := 0; r < 300; r++ {
				t0 := time.Now()
				for j := 0; j < 20; j++ {
					o.f()
				}
				best = min(best, time.Since(t0))
			}
			fmt.Printf("%-7s %-12s %.3f ns/elem\n", k.Name, o.n, float64(best.Nanoseconds())/(20*n))
		}
	}
}
