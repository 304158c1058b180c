package peft

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestScaling(t *testing.T) {
	cases := []struct {
		cfg  Config
		want float64
	}{
		{Config{R: 8, Alpha: 16}, 2},
		{Config{R: 8, Alpha: 16, RSLoRA: true}, 16 / math.Sqrt(8)},
		{Config{R: 16, Alpha: 32, RSLoRA: true}, 8},
		{Config{R: 1, Alpha: 3, RSLoRA: true}, 3},
	}
	for _, c := range cases {
		if got := c.cfg.Scaling(); got != c.want {
			t.Errorf("Scaling of r=%d alpha=%g rslora=%v = %g, want %g", c.cfg.R, c.cfg.Alpha, c.cfg.RSLoRA, got, c.want)
		}
	}
}

// TestRSLoRAIdentity checks rsLoRA through every method with a low-rank
// update by the identity alpha/√r = (alpha·√r)/r: with r = 4, rsLoRA at
// alpha 3 must compute exactly what the plain scaling computes at alpha 6,
// in the forward pass and in the merged weight (the scale 1.5 is exact in
// both). A layer that ignored RSLoRA would scale by 0.75.
func TestRSLoRAIdentity(t *testing.T) {
	b := openCPU(t)
	const out, in, n = 6, 5, 3
	x := randn(rand.New(rand.NewPCG(3, 3)), n*in, 1)
	for _, m := range Methods {
		if !m.Spec().LowRank {
			continue
		}
		t.Run(string(m), func(t *testing.T) {
			rs := Config{Method: m, R: 4, Alpha: 3, RSLoRA: true, RotationRank: 2, Seed: 5}
			plain := rs
			plain.RSLoRA, plain.Alpha = false, 6
			var outs [2][]float32
			var merged [2][]float32
			for i, cfg := range []Config{rs, plain} {
				l := testLayer(t, b, cfg, out, in, 11)
				perturb(t, l, 12)
				outs[i] = forward(t, l, b, x, n, in)
				w, _, err := l.EffectiveWeight()
				if err != nil {
					t.Fatal(err)
				}
				merged[i] = w
			}
			for j := range outs[0] {
				if math.Float32bits(outs[0][j]) != math.Float32bits(outs[1][j]) {
					t.Fatalf("output %d: rslora alpha 3 gives %v, alpha 6 gives %v", j, outs[0][j], outs[1][j])
				}
			}
			for j := range merged[0] {
				if math.Float32bits(merged[0][j]) != math.Float32bits(merged[1][j]) {
					t.Fatalf("merged weight %d: rslora alpha 3 gives %v, alpha 6 gives %v", j, merged[0][j], merged[1][j])
				}
			}
		})
	}
}

func TestRSLoRARefused(t *testing.T) {
	for _, cfg := range []Config{
		{Method: OFT, OFTBlockSize: 4, RSLoRA: true, TargetModules: []string{AllLinear}},
		{Method: Full, RSLoRA: true, TargetModules: []string{AllParameters}},
	} {
		err := cfg.WithDefaults().Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "RSLoRA" || ce.Method != cfg.Method || !strings.Contains(err.Error(), "Config.RSLoRA = true") {
			t.Errorf("%s with RSLoRA: error %v, want a *ConfigError naming the field RSLoRA", cfg.Method, err)
		}
	}
}
