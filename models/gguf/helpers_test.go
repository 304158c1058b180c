package gguf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/refops"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
)

func openCPU(tb testing.TB) backend.Backend { return testbackend.Open(tb, "cpu") }

// randomWeights fills weights for cfg from a seeded generator: projections
// of a scale that keeps activations of order one, the embedding and the
// output head of one that spreads the logits over several units (so that
// greedy choices are clear, not near-ties), norm weights near one (near
// zero for Gemma's offsets), biases of order one half.
func randomWeights(tb testing.TB, cfg llama.Config, seed uint64) *llama.Weights {
	tb.Helper()
	w, err := llama.NewWeights(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 11))
	for _, p := range w.Params() {
		switch {
		case strings.HasSuffix(p.Name, ".bias"):
			for i := range p.Data {
				p.Data[i] = float32(0.5 * rng.NormFloat64())
			}
		case len(p.Shape) == 1:
			center := 1.0
			if cfg.NormOffset() {
				center = 0
			}
			for i := range p.Data {
				p.Data[i] = float32(center + 0.2*rng.NormFloat64())
			}
		default:
			std := 1 / math.Sqrt(float64(p.Shape[1]))
			if p.Name == llama.EmbedName || p.Name == llama.OutputName {
				std = 3 / math.Sqrt(float64(p.Shape[1]))
				if p.Name == llama.EmbedName && cfg.TiedEmbeddings {
					std = 1
				}
			}
			for i := range p.Data {
				p.Data[i] = float32(std * rng.NormFloat64())
			}
		}
	}
	return w
}

// soraModel uploads w to the CPU backend.
func soraModel(tb testing.TB, b backend.Backend, w *llama.Weights) *llama.Model {
	tb.Helper()
	m, err := llama.New(b, w)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Free)
	return m
}

// soraGreedy returns the n tokens this project's model picks greedily
// after prompt (no stop tokens: the caller compares as far as it needs).
func soraGreedy(tb testing.TB, m *llama.Model, prompt []int, n int) []int {
	tb.Helper()
	gen, err := m.NewGenerator(len(prompt) + n)
	if err != nil {
		tb.Fatal(err)
	}
	defer gen.Close()
	seq, err := gen.Generate(prompt, llama.GenerateOptions{Steps: len(prompt) + n - 1}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return seq[len(prompt):]
}

// soraLogProbs returns the log-softmax of the model's logits for the token
// after prompt, in float64.
func soraLogProbs(tb testing.TB, m *llama.Model, prompt []int) []float64 {
	tb.Helper()
	ids := make([]int32, len(prompt))
	for i, t := range prompt {
		ids[i] = int32(t)
	}
	g := graph.New(m.Backend())
	defer g.Close()
	lv, err := m.LogitsAt(g, llama.Batch{Tokens: ids, Size: 1, Len: len(ids)}, []int32{int32(len(ids) - 1)})
	if err != nil {
		tb.Fatal(err)
	}
	z, err := lv.Download()
	if err != nil {
		tb.Fatal(err)
	}
	z64 := make([]float64, len(z))
	for i, v := range z {
		z64[i] = float64(v)
	}
	return refops.LogSoftmax(z64)
}

// q8RoundTrip returns x quantized to Q8_0 (QuantizeQ8_0) and dequantized
// back: the values a q8_0 tensor written from x holds.
func q8RoundTrip(tb testing.TB, x []float32) []float32 {
	tb.Helper()
	blocks := make([]byte, len(x)/QK8_0*q8Block)
	if err := QuantizeQ8_0(blocks, x); err != nil {
		tb.Fatal(err)
	}
	out := make([]float32, len(x))
	if err := DequantizeQ8_0(out, blocks); err != nil {
		tb.Fatal(err)
	}
	return out
}

// argmax returns the index of the largest value and the margin to the
// second largest.
func argmax(x []float64) (int, float64) {
	best, second := 0, math.Inf(-1)
	for i, v := range x[1:] {
		if v > x[best] {
			best, second = i+1, x[best]
		} else if v > second {
			second = v
		}
	}
	return best, x[best] - second
}

// ggufSource reads the model back from an exported file, dequantized to
// float32 and transformed back into the configuration's layout and norm
// convention: the weights llama.cpp runs, as this project's decoder takes
// them.
type ggufSource struct {
	f     *File
	cfg   llama.Config
	cache map[string][]float32
}

func (s *ggufSource) Config() llama.Config { return s.cfg }

func (s *ggufSource) ReadRows(name string, row0 int, dst []float32) error {
	full, ok := s.cache[name]
	if !ok {
		var err error
		if full, err = s.tensor(name); err != nil {
			return err
		}
		s.cache[name] = full
	}
	shape := s.shape(name)
	copy(dst, full[row0*cols(shape):])
	return nil
}

func (s *ggufSource) shape(name string) []int {
	c := s.cfg
	switch name {
	case llama.EmbedName, llama.OutputName:
		return []int{c.VocabSize, c.Dim}
	case llama.NormName:
		return []int{c.Dim}
	}
	for l := range c.NumLayers {
		for _, mod := range c.Modules() {
			if name == llama.LayerParamName(l, mod) {
				return llama.ModuleShape(c, mod)
			}
			if name == llama.LayerBiasName(l, mod) {
				return llama.ModuleShape(c, mod)[:1]
			}
		}
	}
	return nil
}

// tensor reads and converts the tensor of canonical name name.
func (s *ggufSource) tensor(name string) ([]float32, error) {
	c := s.cfg
	arch := archOf(c)
	gname, mod := "", ""
	switch name {
	case llama.EmbedName:
		gname = "token_embd.weight"
	case llama.OutputName:
		gname = "output.weight"
	case llama.NormName:
		gname, mod = "output_norm.weight", llama.ModInputNorm
	default:
		for l := range c.NumLayers {
			for _, m := range c.Modules() {
				base := fmt.Sprintf("blk.%d.%s", l, ggufLayerName(c, m))
				if name == llama.LayerParamName(l, m) {
					gname, mod = base+".weight", m
				} else if name == llama.LayerBiasName(l, m) {
					gname, mod = base+".bias", m
				}
			}
		}
	}
	x, err := s.f.ReadFloat32(gname)
	if err != nil {
		return nil, err
	}
	if isNorm(mod) && c.NormOffset() && strings.HasSuffix(gname, ".weight") {
		for i := range x {
			x[i]--
		}
	}
	have := llama.RopeHalfSplit
	if arch == "llama" {
		have = llama.RopeInterleaved
	}
	heads := map[string]int{llama.ModQ: c.NumHeads, llama.ModK: c.NumKVHeads, llama.ModQNorm: 1, llama.ModKNorm: 1}[mod]
	if heads > 0 && have != c.RopeLayout {
		perm := rowOrder(heads, c.HeadDim(), c.RopeLayout)
		cl := len(x) / len(perm)
		out := make([]float32, len(x))
		for r, from := range perm {
			copy(out[r*cl:(r+1)*cl], x[from*cl:(from+1)*cl])
		}
		x = out
	}
	return x, nil
}

// modelFromFile builds this project's model from the exported file at
// path, for a model of configuration cfg.
func modelFromFile(tb testing.TB, b backend.Backend, path string, cfg llama.Config) *llama.Model {
	tb.Helper()
	f, err := Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	m, err := llama.NewFromSource(b, &ggufSource{f: f, cfg: cfg, cache: map[string][]float32{}}, llama.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Free)
	return m
}
