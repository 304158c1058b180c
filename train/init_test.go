package train

import (
	"math"
	"strings"
	"testing"

	"github.com/sora-go/sora/models/llama"
)

// TestInitWeightsValues checks InitWeights against Hugging Face's
// initialisation: norm weights 1, biases 0, and matrices drawn from
// N(0, InitStd²) (their sample mean and standard deviation, over thousands
// of draws, within a few standard errors).
func TestInitWeightsValues(t *testing.T) {
	cfg := tinyConfig()
	cfg.AttentionBias = llama.BiasQKVO
	w, err := InitWeights(cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	var n, biases, norms int
	var sum, sumSq float64
	for _, p := range w.Params() {
		switch {
		case len(p.Shape) == 1 && strings.HasSuffix(p.Name, ".bias"):
			biases++
			for i, v := range p.Data {
				if v != 0 {
					t.Fatalf("%s[%d] = %g; want a bias initialised to 0", p.Name, i, v)
				}
			}
		case len(p.Shape) == 1:
			norms++
			for i, v := range p.Data {
				if v != 1 {
					t.Fatalf("%s[%d] = %g; want a norm weight initialised to 1", p.Name, i, v)
				}
			}
		default:
			for _, v := range p.Data {
				n++
				sum += float64(v)
				sumSq += float64(v) * float64(v)
			}
		}
	}
	if biases != 4*cfg.NumLayers || norms != 2*cfg.NumLayers+1 {
		t.Fatalf("%d biases and %d norm weights; want %d and %d", biases, norms, 4*cfg.NumLayers, 2*cfg.NumLayers+1)
	}
	mean := sum / float64(n)
	std := (sumSq/float64(n) - mean*mean)
	if se := InitStd / math.Sqrt(float64(n)); mean < -4*se || mean > 4*se {
		t.Errorf("matrix mean %g over %d draws; want 0 within %g", mean, n, 4*se)
	}
	if std = math.Sqrt(std); std < 0.95*InitStd || std > 1.05*InitStd {
		t.Errorf("matrix standard deviation %g over %d draws; want %g within 5%%", std, n, InitStd)
	}
}

// TestInitWeightsGemmaNorms checks that Gemma's norm weights, offsets from
// one (the norm multiplies by 1 + w), start at 0, the identity, as
// transformers' Gemma initialises them.
func TestInitWeightsGemmaNorms(t *testing.T) {
	cfg := tinyConfig()
	cfg.Family, cfg.QKNorm, cfg.Activation = llama.FamilyGemma3, true, llama.GELUTanh
	w, err := InitWeights(cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	norms := 0
	for _, p := range w.Params() {
		if len(p.Shape) != 1 {
			continue
		}
		norms++
		for i, v := range p.Data {
			if v != 0 {
				t.Fatalf("%s[%d] = %g; want Gemma's norm offset initialised to 0", p.Name, i, v)
			}
		}
	}
	// Per layer: input, post-attention, pre- and post-feed-forward, q and k
	// norms; and the final norm.
	if want := 6*cfg.NumLayers + 1; norms != want {
		t.Fatalf("%d norm weights; want %d", norms, want)
	}
}
