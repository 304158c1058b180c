package llama_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/internal/stories"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
)

func openCPU(tb testing.TB) backend.Backend { return testbackend.Open(tb, "cpu") }

// tinyConfig is a small model with grouped-query attention (4 query heads
// over 2 key/value heads) and dimensions that are neither powers of two nor
// multiples of the matrix kernels' tiles.
func tinyConfig(tied bool, layout llama.RopeLayout) llama.Config {
	return llama.Config{
		Dim: 24, HiddenDim: 37, NumLayers: 2, NumHeads: 4, NumKVHeads: 2,
		VocabSize: 29, MaxSeqLen: 32, NormEps: 1e-5, RopeTheta: 10000,
		TiedEmbeddings: tied, RopeLayout: layout,
	}
}

// randomWeights fills weights for cfg from a seeded generator: projections
// with a scale that keeps activations of order one, norms near one, and
// attention biases (where cfg has them) of order one half, large enough to
// change every logit.
func randomWeights(tb testing.TB, cfg llama.Config, seed uint64) *llama.Weights {
	tb.Helper()
	w, err := llama.NewWeights(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, p := range w.Params() {
		if strings.HasSuffix(p.Name, ".bias") {
			for i := range p.Data {
				p.Data[i] = float32(0.5 * rng.NormFloat64())
			}
			continue
		}
		if len(p.Shape) == 1 { // norm weights
			for i := range p.Data {
				p.Data[i] = float32(1 + 0.2*rng.NormFloat64())
			}
			continue
		}
		std := 1 / math.Sqrt(float64(p.Shape[1]))
		if p.Name == llama.EmbedName {
			std = 1
		}
		for i := range p.Data {
			p.Data[i] = float32(std * rng.NormFloat64())
		}
	}
	return w
}

func newModel(tb testing.TB, b backend.Backend, w *llama.Weights) *llama.Model {
	tb.Helper()
	m, err := llama.New(b, w)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Free)
	return m
}

func loadStories(tb testing.TB) (*llama.Weights, *tokenizer.Tokenizer) {
	tb.Helper()
	return stories.Load(tb)
}

func randomTokens(rng *rand.Rand, n, vocab int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(rng.IntN(vocab))
	}
	return ids
}

func download(tb testing.TB, v *graph.Value) []float32 {
	tb.Helper()
	h, err := v.Download()
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// maxRelDiff returns max |a−b| / max(1, max|b|) over the two slices.
func maxRelDiff(a, b []float32) float64 {
	var scale, d float64
	for i := range b {
		scale = max(scale, math.Abs(float64(b[i])))
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d / max(1, scale)
}

// knownText is what llama2.c's run.c prints for stories260K at temperature
// 0 from the prompt "Once upon a time" (the data README and the issue).
const knownText = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."

// printed decodes a sequence as run.c prints it: piece by piece, each
// decoded after its predecessor, skipping unprintable single bytes.
func printed(tok *tokenizer.Tokenizer, seq []int) string {
	var s []byte
	for i := 1; i < len(seq); i++ {
		if p := tok.Decode(seq[i-1], seq[i]); tokenizer.IsPrintable(p) {
			s = append(s, p...)
		}
	}
	return string(s)
}
