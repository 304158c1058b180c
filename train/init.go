package train

import (
	"math/rand/v2"
	"strings"

	"github.com/sora-go/sora/models/llama"
)

// InitStd is the standard deviation of the normal distribution InitWeights
// draws matrices from: Hugging Face's initializer_range for LLaMA.
const InitStd = 0.02

// InitWeights returns freshly initialised weights for cfg, as Hugging Face
// initialises a LlamaForCausalLM: every matrix (embedding, projections,
// output head) from N(0, 0.02²), every RMSNorm weight 1 (0 for Gemma's,
// which multiply by 1 + w) and every bias (Qwen2's attention biases) 0,
// as nn.Linear's are. The draws come from
// a PCG generator seeded with seed, so a seed gives the same model
// everywhere. It is the starting point of models trained from scratch (the
// built-in demonstration) and of the training benchmark.
func InitWeights(cfg llama.Config, seed uint64) (*llama.Weights, error) {
	w, err := llama.NewWeights(cfg)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, seed^0xda3e39cb94b95bdb))
	for _, p := range w.Params() {
		if len(p.Shape) == 1 {
			// Gemma's norms multiply by 1 + w: their identity is w = 0.
			if !strings.HasSuffix(p.Name, ".bias") && !cfg.NormOffset() {
				for i := range p.Data {
					p.Data[i] = 1
				}
			}
			continue
		}
		for i := range p.Data {
			p.Data[i] = float32(rng.NormFloat64() * InitStd)
		}
	}
	return w, nil
}
