package llama_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/gradcheck"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// gemmaConfig is a tiny Gemma 3: width 32, four query heads of width 16
// (not 32/4) over two key/value heads, four layers whose kinds are
// sliding, sliding, full, sliding with a window of 3 positions, local and
// global rotary bases 10⁴ and 10⁶, and a query_pre_attn_scalar of 24
// (not the head width, so that the attention scale tells them apart).
func gemmaConfig(layout llama.RopeLayout) llama.Config {
	return llama.Config{
		Dim: 32, HiddenDim: 40, NumLayers: 4, NumHeads: 4, NumKVHeads: 2, HeadWidth: 16,
		VocabSize: 29, MaxSeqLen: 32, NormEps: 1e-6, RopeTheta: 1e6, TiedEmbeddings: true,
		RopeLayout: layout, QKNorm: true, Family: llama.FamilyGemma3, Activation: llama.GELUTanh,
		QueryPreAttnScalar: 24, LayerKinds: "ssfs", SlidingWindow: 3, LocalRopeTheta: 1e4,
	}
}

// gemmaWeights fills weights for cfg from a seeded generator as
// randomWeights does, except that the norm weights, stored as offsets
// from one, are drawn around 0 (the norms multiplying by 1 + w around 1),
// spread enough (±0.4) that a norm read as w instead of 1 + w, or applied
// to the wrong dimensions, moves the logits far beyond the tolerances.
func gemmaWeights(tb testing.TB, cfg llama.Config, seed uint64) *llama.Weights {
	tb.Helper()
	w := randomWeights(tb, cfg, seed)
	rng := rand.New(rand.NewPCG(seed, 123))
	for _, p := range w.Params() {
		if len(p.Shape) == 1 && !strings.HasSuffix(p.Name, ".bias") {
			for i := range p.Data {
				p.Data[i] = float32(0.4 * rng.NormFloat64())
			}
		}
	}
	return w
}

// gemmaVariant names an ablation of the float64 reference: each computes a
// model that lacks one of Gemma's features, to show that the comparison
// with the backend model can see that feature.
type gemmaVariant int

const (
	gemmaExact           gemmaVariant = iota
	gemmaNoWindow                     // every layer attends to every earlier position
	gemmaOneTheta                     // sliding layers rotate with the global base
	gemmaHeadDimScale                 // logits scaled by head_dim^−1/2
	gemmaNoNormOffset                 // norms multiply by w, not 1 + w
	gemmaNoEmbedScale                 // embedding not multiplied by √dim
	gemmaNoPostNorms                  // no norm on the attention and feed-forward outputs
	gemmaExactGELU                    // x·Φ(x) instead of the tanh approximation
	gemmaNoLinearScaling              // full layers' rope_scaling ignored
	gemmaVariants
)

var gemmaVariantNames = [...]string{"exact", "no window", "one rope theta", "head_dim scale", "norms w not 1+w",
	"no embedding scale", "no post norms", "exact GELU", "no linear rope scaling"}

// gemmaArch64 is Gemma 3's decoder as decoder64 computes it, written
// from transformers' Gemma3ForCausalLM: the embedding times √dim; per
// layer h = norm(x) with every RMSNorm multiplying by 1 + w; q, k, v
// projections (plus biases where the layer has them); each head's query
// and key normalised (q_norm, k_norm, also 1 + w); rotation by pos·f_i
// with f_i = θ^(−2i/d) (θ the local base on sliding layers, the global
// one, divided by a linear rope_scaling factor, on full ones) in the
// weights' layout; scores q·k·query_pre_attn_scalar^(−1/2), causal, and on
// sliding layers only keys with pos − key < sliding_window; o_proj, then
// the post-attention norm, added to x; the feed-forward
// down(gelu_tanh(gate(h))·up(h)) of h = pre_feedforward_norm(x), then the
// post-feed-forward norm, added to x; the final norm and the tied
// embedding (unscaled) as the output head. v selects an ablation.
func gemmaArch64(c llama.Config, v gemmaVariant) arch64 {
	hd := c.HeadDim()
	a := arch64{
		freqs: func(layer int) []float64 {
			theta, factor := c.RopeTheta, 1.0
			if c.RopeScaling.Type == llama.RopeScalingLinear && v != gemmaNoLinearScaling {
				factor = c.RopeScaling.Factor
			}
			if c.Sliding(layer) && v != gemmaOneTheta {
				theta, factor = c.LocalRopeTheta, 1
			}
			f := make([]float64, hd/2)
			for i := range f {
				f[i] = math.Pow(theta, -float64(2*i)/float64(hd)) / factor
			}
			return f
		},
		window: func(layer int) int {
			if c.Sliding(layer) && v != gemmaNoWindow {
				return c.SlidingWindow
			}
			return 0
		},
		normOffset: v != gemmaNoNormOffset,
		embedScale: math.Sqrt(float64(c.Dim)),
		postNorms:  v != gemmaNoPostNorms,
		qkNorm:     true,
		scale:      1 / math.Sqrt(c.QueryPreAttnScalar),
		act: func(x float64) float64 {
			if v == gemmaExactGELU {
				return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
			}
			return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
		},
	}
	if v == gemmaHeadDimScale {
		a.scale = 1 / math.Sqrt(float64(hd))
	}
	if v == gemmaNoEmbedScale {
		a.embedScale = 1
	}
	return a
}

// gemmaRows64 runs Gemma 3's float64 forward (gemmaArch64) over each of
// the B rows of ids and concatenates the logits, [B, T, vocab].
func gemmaRows64(w *llama.Weights, ids []int32, B int, v gemmaVariant) []float64 {
	return decoderRows64(w, ids, B, gemmaArch64(w.Config, v))
}

// gemmaExact64 is gemmaRows64 without an ablation.
func gemmaExact64(w *llama.Weights, ids []int32, B int) []float64 {
	return gemmaRows64(w, ids, B, gemmaExact)
}

// gemmaCases are the tiny Gemma 3 of gemmaConfig, the same with linear
// rope scaling on its full layer (as Gemma 3 4B–27B scale theirs, by 8),
// and one untied with attention biases on all four projections
// (attention_bias true).
func gemmaCases() []namedConfig {
	scaled := gemmaConfig(llama.RopeHalfSplit)
	scaled.RopeScaling = llama.RopeScaling{Type: llama.RopeScalingLinear, Factor: 8}
	bias := gemmaConfig(llama.RopeHalfSplit)
	bias.AttentionBias, bias.TiedEmbeddings = llama.BiasQKVO, false
	return []namedConfig{
		{"gemma3", gemmaConfig(llama.RopeHalfSplit)},
		{"linear rope scaling", scaled},
		{"bias untied", bias},
	}
}

func TestGemma3Config(t *testing.T) {
	c := gemmaConfig(llama.RopeHalfSplit)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// Counted by hand: embedding 29·32 (tied); per layer four norms of 32,
	// q_proj 64·32, k_proj and v_proj 32·32, o_proj 32·64, q_norm and
	// k_norm 16 each, gate and up 40·32, down 32·40; the final norm 32.
	perLayer := int64(4*32 + 64*32 + 2*32*32 + 32*64 + 2*16 + 3*40*32)
	checkParamCounts(t, c, perLayer, 29*32+4*perLayer+32, "")
	if got, want := c.Modules(), []string{llama.ModInputNorm, llama.ModQ, llama.ModK, llama.ModV, llama.ModO,
		llama.ModQNorm, llama.ModKNorm, llama.ModPostNorm, llama.ModPreFFNNorm, llama.ModPostFFNNorm,
		llama.ModGate, llama.ModUp, llama.ModDown}; !slices.Equal(got, want) {
		t.Errorf("Modules = %v, want %v", got, want)
	}
	w, err := llama.NewWeights(c)
	if err != nil {
		t.Fatal(err)
	}
	// post_attention_layernorm is the attention output's norm in Gemma,
	// the feed-forward's input norm in LLaMA.
	ly := &w.Layers[1]
	for name, want := range map[string][]float32{
		"model.layers.1.post_attention_layernorm.weight":   ly.PostAttnNorm,
		"model.layers.1.pre_feedforward_layernorm.weight":  ly.FFNNorm,
		"model.layers.1.post_feedforward_layernorm.weight": ly.PostFFNNorm,
		"model.layers.1.input_layernorm.weight":            ly.AttnNorm,
	} {
		p, ok := w.Param(name)
		if !ok || len(p.Data) != 32 || &p.Data[0] != &want[0] {
			t.Errorf("%s is not the layer's slice", name)
		}
	}
	if s := c.EmbedScale(); s != float32(math.Sqrt(32)) {
		t.Errorf("EmbedScale = %v", s)
	}
	if a := c.AttentionScale(); a != 1/math.Sqrt(24) {
		t.Errorf("AttentionScale = %v", a)
	}
	if c.Sliding(2) || !c.Sliding(3) || c.Sliding(4) || c.Sliding(-1) {
		t.Error("Sliding disagrees with LayerKinds ssfs")
	}
	if !c.NormOffset() || !c.PostNorms() || tinyConfig(true, 0).NormOffset() || tinyConfig(true, 0).PostNorms() || tinyConfig(true, 0).EmbedScale() != 1 {
		t.Error("NormOffset/PostNorms/EmbedScale: Gemma only")
	}

	checkConfigErrors(t, gemmaConfig(llama.RopeHalfSplit), []configError{
		{"kinds length", func(c *llama.Config) { c.LayerKinds = "ssf" }, "attention kinds of 3 layers"},
		{"kind byte", func(c *llama.Config) { c.LayerKinds = "ssxs" }, "layer 2 has attention kind 'x'"},
		{"no window", func(c *llama.Config) { c.SlidingWindow = 0 }, "sliding_window = 0"},
		{"no local theta", func(c *llama.Config) { c.LocalRopeTheta = 0 }, "rope_local_base_freq"},
		{"window unused", func(c *llama.Config) { c.LayerKinds = "ffff" }, "no layer is sliding"},
		{"scalar", func(c *llama.Config) { c.QueryPreAttnScalar = -1 }, "query_pre_attn_scalar -1"},
		{"activation", func(c *llama.Config) { c.Activation = 7 }, "unknown activation 7"},
		{"no qk-norm", func(c *llama.Config) { c.QKNorm = false }, "no QK-norm"},
		{"qwen2 bias", func(c *llama.Config) { c.AttentionBias = llama.BiasQKV }, "biases on q/k/v only"},
		{"llama gelu", func(c *llama.Config) {
			c.Family, c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta, c.QueryPreAttnScalar = "", "", 0, 0, 0
		},
			"activation gelu_pytorch_tanh in family"},
		{"llama window", func(c *llama.Config) { c.Family, c.Activation, c.QueryPreAttnScalar = "", llama.SiLU, 0 }, "sliding window in family"},
		{"llama scalar", func(c *llama.Config) {
			c.Family, c.Activation, c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = "", llama.SiLU, "", 0, 0
		}, "query_pre_attn_scalar 24 in family"},
		{"linear extra", func(c *llama.Config) {
			c.RopeScaling = llama.RopeScaling{Type: llama.RopeScalingLinear, Factor: 8, OriginalMaxPos: 10}
		}, "a linear scaling has a factor only"},
		{"linear factor", func(c *llama.Config) { c.RopeScaling = llama.RopeScaling{Type: llama.RopeScalingLinear} }, "factor = 0"},
	})
}

// TestGemma3ForwardMatchesFloat64 checks the backend model's logits
// against gemmaRows64 in both rotary layouts, on sequences of 8 positions,
// longer than the window of 3, to 2e-6 of the largest logit (float32
// rounding leaves about 2e-7). Each ablation of the reference (a model
// without one of Gemma's features) differs from it by at least ten times
// the tolerance, so the agreement shows that the model has every feature.
// The smallest is the exact GELU's, about 5e-5: the tanh approximation is
// within 3e-4 of it everywhere (TestGELUTanhOp tells them apart directly).
func TestGemma3ForwardMatchesFloat64(t *testing.T) {
	b := openCPU(t)
	const B, T, tol = 2, 8, 2e-6
	for _, tc := range gemmaCases() {
		t.Run(tc.name, func(t *testing.T) {
			w := gemmaWeights(t, tc.cfg, 61)
			rng := rand.New(rand.NewPCG(6, 7))
			ids := randomTokens(rng, B*T, tc.cfg.VocabSize)
			want := gemmaExact64(w, ids, B)
			for v := gemmaExact + 1; v < gemmaVariants; v++ {
				if v == gemmaNoLinearScaling && tc.cfg.RopeScaling.IsZero() {
					continue
				}
				if d := maxRelDiff(gemmaRows64(w, ids, B, v), want); d < 10*tol {
					t.Errorf("ablation %q moves the float64 logits by only %.3g", gemmaVariantNames[v], d)
				}
			}
			checkForward64(t, b, w, ids, B, want, gemmaExact64, tol, "")
		})
	}
}

// TestGemma3DecodeMatchesFloat64 checks the KV-cache path (both ways the
// cache attends, a token at a time and in chunks, to positions well past
// the window) against gemmaRows64, and greedy generation through the cache
// against the full forward rerun over the sequence at every step.
func TestGemma3DecodeMatchesFloat64(t *testing.T) {
	b := openCPU(t)
	for _, tc := range gemmaCases() {
		for _, layout := range bothLayouts {
			w := inLayout(t, gemmaWeights(t, tc.cfg, 71), layout)
			checkDecode64(t, b, w, gemmaExact64, [][]int{{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {4, 1, 1, 5}, {2, 7, 2}}, true, fmt.Sprintf("%s %v", tc.name, layout))
		}
	}
}

// TestGemma3Gradients checks the backward of the whole model, every
// parameter trainable, against central differences of the loss: through
// the norms' 1 + w (all six kinds of norm weight), the embedding's √dim
// (the tied embedding is also the output head), the GeGLU gate and the
// sliding window (sequences of 7 and 5 positions over a window of 3).
func TestGemma3Gradients(t *testing.T) {
	b := openCPU(t)
	for _, layout := range bothLayouts {
		cfg := gemmaConfig(layout)
		cfg.NumLayers, cfg.LayerKinds = 2, "sf"
		rng := rand.New(rand.NewPCG(12, 13))
		m, f, grads := paddedProbe(t, b, gemmaWeights(t, cfg, 81), 7, rng)
		var check []*graph.Value
		for i, blk := range m.Blocks {
			check = append(check, blk.AttnNorm, blk.QNorm, blk.KNorm, blk.PostAttnNorm, blk.FFNNorm, blk.PostFFNNorm)
			if i == 0 {
				check = append(check, llama.LayerParams(blk.Gate)[0], llama.LayerParams(blk.Up)[0], llama.LayerParams(blk.K)[0])
			}
		}
		check = append(check, m.Norm, m.Embed)
		f.nonzero(layout.String(), check, grads)
		f.check(layout.String(), check, grads, 4, rng)
	}
}

// TestGELUTanhOp checks the GeGLU activation's op, forward and backward,
// against the float64 formula, on values well beyond where tanh
// saturates, and a dropped term in the reference fails the check.
func TestGELUTanhOp(t *testing.T) {
	b := openCPU(t)
	gelu := func(x float64) float64 {
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	}
	for _, broken := range []bool{false, true} {
		c := gradcheck.Case{
			Name:   "llama/gelu_tanh",
			Inputs: []gradcheck.Input{{Name: "x", Shape: []int{7, 13}, Lo: -6, Hi: 6}},
			Forward: func(g *graph.Tape, in []*graph.Value) *graph.Value {
				// x² after the activation makes its gradient add into
				// one that is already there.
				return g.Add(llama.GELUTanhOp(g, in[0]), g.Square(in[0]))
			},
			Reference: func(in [][]float64) []float64 {
				out := make([]float64, len(in[0]))
				for i, x := range in[0] {
					out[i] = gelu(x) + x*x
					if broken {
						out[i] = 0.5*x*(1+math.Tanh(math.Sqrt(2/math.Pi)*x)) + x*x // κ dropped
					}
				}
				return out
			},
		}
		r, err := gradcheck.Check(b, c, gradcheck.Options{Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		if r.Passed() == broken {
			t.Errorf("broken reference %v: %s", broken, r)
		}
	}
	// The op against PyTorch's float32 values at a few points (computed
	// from the same formula in float64 and rounded).
	g := graph.New(b)
	defer g.Close()
	xs := []float32{-5, -1.5, -0.25, 0, 0.5, 1, 3, 10}
	y := download(t, llama.GELUTanhOp(g, g.Input(xs, len(xs))))
	for i, x := range xs {
		if want := gelu(float64(x)); math.Abs(float64(y[i])-want) > 2e-7*max(1, math.Abs(want)) {
			t.Errorf("gelu_tanh(%v) = %v, want %v", x, y[i], want)
		}
	}
}

// TestGemma3PEFTMerge checks what PEFT does to a Gemma model: its seven
// linear layers per block are adapted and every norm stays frozen, and
// merging gives weights (norm offsets unchanged) whose float64 logits are
// the adapted model's.
func TestGemma3PEFTMerge(t *testing.T) {
	b := openCPU(t)
	cfg := gemmaConfig(llama.RopeHalfSplit)
	w := gemmaWeights(t, cfg, 91)
	rng := rand.New(rand.NewPCG(16, 17))
	bt := llama.Batch{Tokens: randomTokens(rng, 2*9, cfg.VocabSize), Size: 2, Len: 9}
	for _, method := range []peft.Method{peft.LoRA, peft.SORA, peft.DoRA} {
		checkPEFTMerge(t, b, w, bt, method, gemmaExact64, rng)
	}
}

// TestRopeFreqsLinear: linear scaling divides every frequency by the
// factor, from θ rounded to float32 as the model hands it to the backends.
func TestRopeFreqsLinear(t *testing.T) {
	c := gemmaConfig(llama.RopeHalfSplit)
	c.RopeScaling = llama.RopeScaling{Type: llama.RopeScalingLinear, Factor: 8}
	f := c.RopeFreqs()
	if len(f) != 8 {
		t.Fatalf("%d frequencies, want 8", len(f))
	}
	for i, got := range f {
		if want := math.Pow(float64(float32(1e6)), -float64(2*i)/16) / 8; got != want {
			t.Errorf("pair %d: %v, want %v", i, got, want)
		}
	}
}
