package llama_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
)

// llama31Scaling is Llama 3.1's rope_scaling.
var llama31Scaling = llama.RopeScaling{Type: llama.RopeScalingLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192}

// TestRopeFreqsLlama3 checks Llama 3.1's scaled frequencies (θ = 500000,
// head width 128) against values worked out separately in float64, pair by
// pair: pairs 0–28 have wavelengths under 8192/4 = 2048 and keep
// θ^(−2i/128); 35–63 have wavelengths over 8192 and are divided by 8; in
// between, with s = (8192/λ − 1)/3, f' = (1−s)·f/8 + s·f (pair 30: λ =
// 2948.30, s = 0.592849).
func TestRopeFreqsLlama3(t *testing.T) {
	cfg := llama.Config{Dim: 4096, NumHeads: 32, RopeTheta: 500000, RopeScaling: llama31Scaling}
	f := cfg.RopeFreqs()
	if len(f) != 64 {
		t.Fatalf("%d frequencies, want 64", len(f))
	}
	for _, c := range []struct {
		i    int
		want float64
	}{
		{0, 1},                       // kept
		{20, 0.016560440080994446},   // kept
		{28, 0.003211445994752591},   // kept: λ = 1956.5, just under 2048
		{29, 0.002166570763503359},   // smoothed, s = 0.8036
		{30, 0.0013718935677611381},  // smoothed, s = 0.5928
		{33, 0.00031269375038406517}, // smoothed, s = 0.1673
		{34, 0.0001785078127679964},  // smoothed, s = 0.0745
		{35, 9.556212353964683e-05},  // divided by 8: λ = 8218.7, just over 8192
		{40, 3.428102195952591e-05},  // divided by 8
		{63, 3.068925988914511e-07},  // divided by 8
	} {
		if d := math.Abs(f[c.i]-c.want) / c.want; d > 1e-13 {
			t.Errorf("pair %d: frequency %.17g, want %.17g (relative difference %.2g)", c.i, f[c.i], c.want, d)
		}
	}
	// Every frequency lies between its unscaled value and that divided
	// by the factor, and they keep decreasing.
	for i, v := range f {
		base := math.Pow(500000, -float64(2*i)/128)
		if v > base || v < base/8*(1-1e-15) {
			t.Errorf("pair %d: %g outside [%g, %g]", i, v, base/8, base)
		}
		if i > 0 && v >= f[i-1] {
			t.Errorf("pair %d: %g not below pair %d's %g", i, v, i-1, f[i-1])
		}
	}
	// Llama 3.2's factor 32 divides the long wavelengths by 32 instead.
	cfg.RopeScaling.Factor = 32
	if got, want := cfg.RopeFreqs()[40], 0.0002742481756762073/32; math.Abs(got-want) > 1e-13*want {
		t.Errorf("factor 32, pair 40: %g, want %g", got, want)
	}
	if f := (llama.Config{Dim: 8, NumHeads: 1, RopeTheta: 10000}).RopeFreqs(); f != nil {
		t.Errorf("no scaling: RopeFreqs = %v, want nil (the backend's theta path)", f)
	}
}

// TestRopeScalingValidate checks that bad scalings are refused with an
// error naming the rope_scaling field at fault.
func TestRopeScalingValidate(t *testing.T) {
	ok := llama31Scaling
	tests := []struct {
		name string
		edit func(s *llama.RopeScaling)
		want string // "" for valid
	}{
		{"llama 3.1", func(s *llama.RopeScaling) {}, ""},
		{"none", func(s *llama.RopeScaling) { *s = llama.RopeScaling{} }, ""},
		{"factor 1", func(s *llama.RopeScaling) { s.Factor = 1 }, ""},
		{"factor 0", func(s *llama.RopeScaling) { s.Factor = 0 }, "factor = 0"},
		{"factor negative", func(s *llama.RopeScaling) { s.Factor = -8 }, "factor = -8"},
		{"factor NaN", func(s *llama.RopeScaling) { s.Factor = math.NaN() }, "factor = NaN"},
		{"factor infinite", func(s *llama.RopeScaling) { s.Factor = math.Inf(1) }, "factor = +Inf"},
		{"low 0", func(s *llama.RopeScaling) { s.LowFreqFactor = 0 }, "low_freq_factor = 0"},
		{"high NaN", func(s *llama.RopeScaling) { s.HighFreqFactor = math.NaN() }, "high_freq_factor = NaN"},
		{"low = high", func(s *llama.RopeScaling) { s.LowFreqFactor = 4 }, "low_freq_factor 4 must be less than high_freq_factor 4"},
		{"low > high", func(s *llama.RopeScaling) { s.LowFreqFactor, s.HighFreqFactor = 4, 1 }, "low_freq_factor 4 must be less than high_freq_factor 1"},
		{"no original length", func(s *llama.RopeScaling) { s.OriginalMaxPos = 0 }, "original_max_position_embeddings = 0"},
		{"other type", func(s *llama.RopeScaling) { s.Type = "yarn" }, `type "yarn"`},
		{"fields without a type", func(s *llama.RopeScaling) { s.Type = "" }, "no type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.edit(&s)
			cfg := tinyConfig(true, llama.RopeHalfSplit)
			cfg.RopeScaling = s
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// smallScaledConfig is a tiny model (head width 8: frequencies 1, 0.1,
// 0.01, 0.001, wavelengths 6.3, 63, 628, 6283) with a llama3 scaling over
// an original context of 64 positions: pair 0 (λ < 64/4) keeps its
// frequency, pair 1 (16 ≤ λ ≤ 64) is smoothed, pairs 2 and 3 (λ > 64) are
// slowed by the factor. Sequences run to 96 positions, past the original 64.
func smallScaledConfig(layout llama.RopeLayout, factor float64) llama.Config {
	return llama.Config{
		Dim: 32, HiddenDim: 37, NumLayers: 2, NumHeads: 4, NumKVHeads: 2,
		VocabSize: 29, MaxSeqLen: 96, NormEps: 1e-5, RopeTheta: 10000, RopeLayout: layout,
		RopeScaling: llama.RopeScaling{Type: llama.RopeScalingLlama3, Factor: factor, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 64},
	}
}

// TestRopeScalingFactorOneIsPlain checks that a llama3 scaling with factor
// 1, which changes no frequency, gives bit for bit the logits of the
// unscaled model, though its rotations go through RoPEParams.Freqs instead
// of Theta, in the training forward and in cached decoding.
func TestRopeScalingFactorOneIsPlain(t *testing.T) {
	b := openCPU(t)
	for _, layout := range []llama.RopeLayout{llama.RopeInterleaved, llama.RopeHalfSplit} {
		scaled := smallScaledConfig(layout, 1)
		if scaled.RopeFreqs() == nil {
			t.Fatal("factor 1 gave no frequencies: the test would not exercise Freqs")
		}
		plain := scaled
		plain.RopeScaling = llama.RopeScaling{}
		w := randomWeights(t, plain, 5)
		ws, err := w.Clone()
		if err != nil {
			t.Fatal(err)
		}
		ws.Config = scaled
		rng := rand.New(rand.NewPCG(1, 2))
		const T = 90
		ids := randomTokens(rng, T, plain.VocabSize)
		var outs [2][]float32
		for k, w := range []*llama.Weights{w, ws} {
			m := newModel(t, b, w)
			g := graph.New(b)
			lv, err := m.Forward(g, llama.Batch{Tokens: ids, Size: 1, Len: T})
			if err != nil {
				t.Fatal(err)
			}
			outs[k] = download(t, lv)
			// Decoding the last tokens one at a time after a prefill.
			kc, err := m.NewCache(1, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.Decode(g, kc, ids[:T-3], T-3, false); err != nil {
				t.Fatal(err)
			}
			for p := T - 3; p < T; p++ {
				lv, err := m.Decode(g, kc, ids[p:p+1], 1, true)
				if err != nil {
					t.Fatal(err)
				}
				outs[k] = append(outs[k], download(t, lv)...)
			}
			kc.Free()
			g.Close()
		}
		for i := range outs[0] {
			if math.Float32bits(outs[0][i]) != math.Float32bits(outs[1][i]) {
				t.Fatalf("%v: logit %d is %v unscaled, %v with factor 1", layout, i, outs[0][i], outs[1][i])
			}
		}
	}
}

// TestRopeScalingMatchesFloat64 checks the forward of a llama3-scaled
// model, over 90 positions (past the original 64), and cached decoding of
// its last positions, against a float64 forward written from the
// definitions, whose frequencies come from its own reading of the rule.
// The unscaled reference must be far off, so the scaling is what the
// comparison tests.
func TestRopeScalingMatchesFloat64(t *testing.T) {
	b := openCPU(t)
	for _, layout := range []llama.RopeLayout{llama.RopeInterleaved, llama.RopeHalfSplit} {
		cfg := smallScaledConfig(layout, 8)
		w := randomWeights(t, cfg, 17)
		m := newModel(t, b, w)
		rng := rand.New(rand.NewPCG(3, 4))
		const T = 90
		ids := randomTokens(rng, T, cfg.VocabSize)
		g := graph.New(b)
		lv, err := m.Forward(g, llama.Batch{Tokens: ids, Size: 1, Len: T})
		if err != nil {
			t.Fatal(err)
		}
		got := download(t, lv)
		want := forward64(w, ids, llama3Freqs64(10000, 8, 8, 1, 4, 64))
		plain := forward64(w, ids, llama3Freqs64(10000, 8, 1, 1, 4, 64))
		V := cfg.VocabSize
		var worst, unscaled float64
		for p := range T {
			worst = max(worst, maxRelDiff(got[p*V:(p+1)*V], want[p*V:(p+1)*V]))
			unscaled = max(unscaled, maxRelDiff(got[p*V:(p+1)*V], plain[p*V:(p+1)*V]))
		}
		if worst > 1e-5 {
			t.Errorf("%v: scaled forward differs from the float64 reference by %.3g", layout, worst)
		}
		t.Logf("%v: %.3g from the float64 reference, %.3g from its unscaled twin", layout, worst, unscaled)
		if unscaled < 1e-2 {
			t.Errorf("%v: the unscaled reference is only %.3g away: the scaling changed too little to be tested", layout, unscaled)
		}
		// Cached decoding at positions 70 and on.
		kc, err := m.NewCache(1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Decode(g, kc, ids[:70], 70, false); err != nil {
			t.Fatal(err)
		}
		for p := 70; p < T; p += 4 {
			n := min(4, T-p)
			lv, err := m.Decode(g, kc, ids[p:p+n], n, true)
			if err != nil {
				t.Fatal(err)
			}
			dec := download(t, lv)
			for i := range n {
				if d := maxRelDiff(dec[i*V:(i+1)*V], want[(p+i)*V:(p+i+1)*V]); d > 1e-5 {
					t.Errorf("%v: decoded logits at position %d differ from the float64 reference by %.3g", layout, p+i, d)
				}
			}
		}
		kc.Free()
		g.Close()
	}
}

// TestRopeScalingGradients checks the training backward of a scaled model
// against central differences of its loss: RoPE's backward must rotate
// back by the scaled frequencies.
func TestRopeScalingGradients(t *testing.T) {
	b := openCPU(t)
	cfg := smallScaledConfig(llama.RopeHalfSplit, 8)
	cfg.NumLayers = 1
	m := newModel(t, b, randomWeights(t, cfg, 43))
	rng := rand.New(rand.NewPCG(10, 11))
	const T = 80
	bt := llama.Batch{Tokens: randomTokens(rng, T, cfg.VocabSize), Size: 1, Len: T}
	f := newFDProbe(t, b, m, bt, nil)
	grads := f.grads()
	// q_proj and k_proj reach the loss only through the rotation.
	var qk []*graph.Value
	for _, p := range m.Params() {
		if strings.Contains(p.Name(), "q_proj") || strings.Contains(p.Name(), "k_proj") {
			qk = append(qk, p)
		}
	}
	f.check("llama3-scaled", qk, grads, 8, rng)
}

// llama3Freqs64 computes the scaled frequencies of a head of width d from
// the rule's own statement: keep f where the wavelength 2π/f is below
// orig/high, divide by factor where it is above orig/low, and in between
// mix f/factor and f with the weight s = (orig/λ − low)/(high − low) on f.
func llama3Freqs64(theta float64, d int, factor, low, high float64, orig int) []float64 {
	out := make([]float64, d/2)
	for i := range out {
		f := 1 / math.Pow(theta, float64(2*i)/float64(d))
		lambda := 2 * math.Pi / f
		switch {
		case lambda < float64(orig)/high:
			out[i] = f
		case lambda > float64(orig)/low:
			out[i] = f / factor
		default:
			s := (float64(orig)/lambda - low) / (high - low)
			out[i] = (1-s)*f/factor + s*f
		}
	}
	return out
}

// Llama 3.1's rotary frequencies: the fast pairs keep θ^(−2i/d), the slow
// ones turn 8 times slower, and the pairs between are interpolated.
func ExampleConfig_RopeFreqs() {
	cfg := llama.Config{Dim: 4096, NumHeads: 32, RopeTheta: 500000, RopeScaling: llama.RopeScaling{
		Type: llama.RopeScalingLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192}}
	f := cfg.RopeFreqs()
	for _, i := range []int{0, 28, 30, 40} {
		fmt.Printf("pair %d: %.4g (unscaled %.4g)\n", i, f[i], math.Pow(500000, -float64(2*i)/128))
	}
	// Output:
	// pair 0: 1 (unscaled 1)
	// pair 28: 0.003211 (unscaled 0.003211)
	// pair 30: 0.001372 (unscaled 0.002131)
	// pair 40: 3.428e-05 (unscaled 0.0002742)
}
