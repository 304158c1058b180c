package llama_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// gemma2Config is a tiny Gemma 2: width 32, four query heads of width 16
// over two key/value heads, four layers alternating sliding and full from
// the first (as Gemma 2's even-indexed layers slide) with a window of 3,
// one rotary base 10⁴ for all of them, a query_pre_attn_scalar of 24, and
// soft-caps of 2 on the attention logits and 4 on the output's: small
// enough that tanh bends every logit (the released models' 50 and 30
// hardly bend the logits of a tiny random model; gemma2Cases has them
// too).
func gemma2Config(layout llama.RopeLayout) llama.Config {
	return llama.Config{
		Dim: 32, HiddenDim: 40, NumLayers: 4, NumHeads: 4, NumKVHeads: 2, HeadWidth: 16,
		VocabSize: 29, MaxSeqLen: 32, NormEps: 1e-6, RopeTheta: 1e4, TiedEmbeddings: true,
		RopeLayout: layout, Family: llama.FamilyGemma2, Activation: llama.GELUTanh,
		QueryPreAttnScalar: 24, LayerKinds: "sfsf", SlidingWindow: 3, LocalRopeTheta: 1e4,
		AttnLogitSoftcap: 2, FinalLogitSoftcap: 4,
	}
}

// gemma2Variant names an ablation of Gemma 2's float64 reference.
type gemma2Variant int

const (
	gemma2Exact        gemma2Variant = iota
	gemma2NoAttnCap                  // attention logits not capped
	gemma2NoFinalCap                 // output logits not capped
	gemma2CapFirst                   // q·k capped before its scaling by query_pre_attn_scalar^(−1/2)
	gemma2NoWindow                   // every layer attends to every earlier position
	gemma2HeadDimScale               // logits scaled by head_dim^−1/2
	gemma2NoNormOffset               // norms multiply by w, not 1 + w
	gemma2NoEmbedScale               // embedding not multiplied by √dim
	gemma2NoPostNorms                // no norm on the attention and feed-forward outputs
	gemma2Variants
)

var gemma2VariantNames = [...]string{"exact", "no attention cap", "no final cap", "cap before scaling", "no window",
	"head_dim scale", "norms w not 1+w", "no embedding scale", "no post norms"}

// gemma2Arch64 is Gemma 2's decoder as decoder64 computes it, written
// from transformers' Gemma2ForCausalLM (modeling_gemma2.py): the embedding
// times √hidden_size; RMSNorms multiplying by 1 + w
// (Gemma2RMSNorm); no q_norm or k_norm; one rotary embedding,
// θ^(−2i/d) with θ = rope_theta, on every layer; scores
// s = q·k·query_pre_attn_scalar^(−1/2), then (eager_attention_forward)
// s/c, tanh, ·c with c = attn_logit_softcapping, then the causal mask and
// on sliding layers (layer_types "sliding_attention") only keys with
// pos − key < sliding_window; o_proj, post_attention_layernorm, the
// residual; pre_feedforward_layernorm, down(gelu_tanh(gate(h))·up(h)),
// post_feedforward_layernorm, the residual; the final norm, the tied
// embedding as lm_head, and logits z/c, tanh, ·c with c =
// final_logit_softcapping. A soft-cap of 0 (a null field) is none. v
// selects an ablation.
func gemma2Arch64(c llama.Config, v gemma2Variant) arch64 {
	hd := c.HeadDim()
	freqs := plainFreqs64(c.RopeTheta, hd)
	a := arch64{
		freqs: func(int) []float64 { return freqs },
		window: func(layer int) int {
			if c.Sliding(layer) && v != gemma2NoWindow {
				return c.SlidingWindow
			}
			return 0
		},
		normOffset: v != gemma2NoNormOffset,
		embedScale: math.Sqrt(float64(c.Dim)),
		postNorms:  v != gemma2NoPostNorms,
		scale:      1 / math.Sqrt(c.QueryPreAttnScalar),
		act: func(x float64) float64 {
			return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
		},
		attnCap:  c.AttnLogitSoftcap,
		capFirst: v == gemma2CapFirst,
		finalCap: c.FinalLogitSoftcap,
	}
	switch v {
	case gemma2NoAttnCap:
		a.attnCap = 0
	case gemma2NoFinalCap:
		a.finalCap = 0
	case gemma2HeadDimScale:
		a.scale = 1 / math.Sqrt(float64(hd))
	case gemma2NoEmbedScale:
		a.embedScale = 1
	}
	return a
}

// gemma2Rows64 runs Gemma 2's float64 forward (gemma2Arch64) over each of
// the B rows of ids and concatenates the logits, [B, T, vocab].
func gemma2Rows64(w *llama.Weights, ids []int32, B int, v gemma2Variant) []float64 {
	return decoderRows64(w, ids, B, gemma2Arch64(w.Config, v))
}

// gemma2Exact64 is gemma2Rows64 without an ablation.
func gemma2Exact64(w *llama.Weights, ids []int32, B int) []float64 {
	return gemma2Rows64(w, ids, B, gemma2Exact)
}

// gemma2Cases are the tiny Gemma 2 of gemma2Config; the same with the
// released models' soft-caps (50 and 30); with the attention cap only and
// with none (the fields null); and one untied with attention biases on
// all four projections (attention_bias true).
func gemma2Cases() []namedConfig {
	with := func(f func(*llama.Config)) llama.Config {
		c := gemma2Config(llama.RopeHalfSplit)
		f(&c)
		return c
	}
	return []namedConfig{
		{"gemma2", gemma2Config(llama.RopeHalfSplit)},
		{"published caps", with(func(c *llama.Config) { c.AttnLogitSoftcap, c.FinalLogitSoftcap = 50, 30 })},
		{"attention cap only", with(func(c *llama.Config) { c.FinalLogitSoftcap = 0 })},
		{"no caps", with(func(c *llama.Config) { c.AttnLogitSoftcap, c.FinalLogitSoftcap = 0, 0 })},
		{"bias untied", with(func(c *llama.Config) { c.AttentionBias, c.TiedEmbeddings = llama.BiasQKVO, false })},
	}
}

func TestGemma2Config(t *testing.T) {
	c := gemma2Config(llama.RopeHalfSplit)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// Counted by hand: embedding 29·32 (tied); per layer four norms of 32,
	// q_proj 64·32, k_proj and v_proj 32·32, o_proj 32·64 (no q_norm or
	// k_norm), gate and up 40·32, down 32·40; the final norm 32.
	perLayer := int64(4*32 + 64*32 + 2*32*32 + 32*64 + 3*40*32)
	checkParamCounts(t, c, perLayer, 29*32+4*perLayer+32, "")
	if !c.NormOffset() || !c.PostNorms() || c.EmbedScale() != float32(math.Sqrt(32)) || c.AttentionScale() != 1/math.Sqrt(24) {
		t.Errorf("Gemma 2 config: NormOffset %v, PostNorms %v, EmbedScale %v, AttentionScale %v",
			c.NormOffset(), c.PostNorms(), c.EmbedScale(), c.AttentionScale())
	}
	if c.Sliding(1) || !c.Sliding(2) {
		t.Error("Sliding disagrees with LayerKinds sfsf")
	}
	// Every layer full: no window, no local base.
	full := c
	full.LayerKinds, full.SlidingWindow, full.LocalRopeTheta = "", 0, 0
	if err := full.Validate(); err != nil {
		t.Errorf("Gemma 2 without sliding layers: %v", err)
	}

	checkConfigErrors(t, c, []configError{
		{"qk-norm", func(c *llama.Config) { c.QKNorm = true }, `family "gemma2" has QK-norm; Gemma 2 has none`},
		{"qwen2 bias", func(c *llama.Config) { c.AttentionBias = llama.BiasQKV }, "biases on q/k/v only; Gemma 2's"},
		{"local theta", func(c *llama.Config) { c.LocalRopeTheta = 1e6 }, "local rope theta 1e+06 other than rope_theta 10000; Gemma 2 rotates every layer"},
		{"rope scaling", func(c *llama.Config) { c.RopeScaling = llama.RopeScaling{Type: llama.RopeScalingLinear, Factor: 8} },
			`rope scaling "linear"; Gemma 2's rotary embedding is unscaled`},
		{"negative attention cap", func(c *llama.Config) { c.AttnLogitSoftcap = -50 }, "attn_logit_softcapping -50; expected a positive finite number"},
		{"NaN final cap", func(c *llama.Config) { c.FinalLogitSoftcap = math.NaN() }, "final_logit_softcapping NaN"},
		{"infinite final cap", func(c *llama.Config) { c.FinalLogitSoftcap = math.Inf(1) }, "final_logit_softcapping +Inf"},
		{"no window", func(c *llama.Config) { c.SlidingWindow = 0 }, "sliding_window = 0"},
		{"kinds length", func(c *llama.Config) { c.LayerKinds = "sf" }, "attention kinds of 2 layers"},
		{"scalar", func(c *llama.Config) { c.QueryPreAttnScalar = -1 }, "query_pre_attn_scalar -1"},
		{"gemma3 caps", func(c *llama.Config) { c.Family, c.QKNorm, c.LocalRopeTheta = llama.FamilyGemma3, true, 1e4 },
			`logit soft-capping (attention 2, final 4) in family "gemma3"`},
		{"llama caps", func(c *llama.Config) {
			c.Family, c.Activation, c.QueryPreAttnScalar, c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = "", llama.SiLU, 0, "", 0, 0
		}, `soft-capping (attention 2, final 4) in family ""`},
		{"unknown family", func(c *llama.Config) { c.Family = "gemma" }, `family "gemma"; expected "", "mistral", "gemma2" or "gemma3"`},
	})
}

// TestGemma2ForwardMatchesFloat64 checks the backend model's logits
// against gemma2Rows64 in both rotary layouts, on sequences of 8
// positions, longer than the window of 3, to 2e-6 of the largest logit
// (or of 1). In every case each ablation of the reference that changes
// something there (no attention cap, no final cap, the cap taken before
// the scaling, no window, and the other Gemma features) moves the float64
// logits by at least ten times the tolerance, so the agreement shows that
// the model (and the float32 reference, models/internal/reference) has
// each of them, the caps in their place. The smallest is
// dropping the released models' attention cap of 50, about 1e-4: it
// hardly bends the logits of a tiny random model, which is why
// gemma2Config's caps are 2 and 4.
func TestGemma2ForwardMatchesFloat64(t *testing.T) {
	b := openCPU(t)
	const B, T, tol = 2, 8, 2e-6
	for _, tc := range gemma2Cases() {
		t.Run(tc.name, func(t *testing.T) {
			w := gemmaWeights(t, tc.cfg, 63)
			rng := rand.New(rand.NewPCG(8, 9))
			ids := randomTokens(rng, B*T, tc.cfg.VocabSize)
			want := gemma2Exact64(w, ids, B)
			for v := gemma2Exact + 1; v < gemma2Variants; v++ {
				if (v == gemma2NoAttnCap || v == gemma2CapFirst) && tc.cfg.AttnLogitSoftcap == 0 || v == gemma2NoFinalCap && tc.cfg.FinalLogitSoftcap == 0 {
					continue // no cap to drop or move
				}
				d := maxRelDiff(gemma2Rows64(w, ids, B, v), want)
				t.Logf("ablation %q moves the float64 logits by %.3g", gemma2VariantNames[v], d)
				if d < 10*tol {
					t.Errorf("ablation %q moves the float64 logits by only %.3g", gemma2VariantNames[v], d)
				}
			}
			checkForward64(t, b, w, ids, B, want, gemma2Exact64, tol, "")
		})
	}
}

// TestGemma2DecodeMatchesFloat64 checks the KV-cache path (both ways the
// cache attends, a token at a time and in chunks, past the window)
// against gemma2Rows64, and greedy generation through the cache against
// the full forward rerun at every step, with and without the caps.
func TestGemma2DecodeMatchesFloat64(t *testing.T) {
	b := openCPU(t)
	for _, tc := range gemma2Cases() {
		for _, layout := range bothLayouts {
			w := inLayout(t, gemmaWeights(t, tc.cfg, 73), layout)
			checkDecode64(t, b, w, gemma2Exact64, [][]int{{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {4, 1, 1, 5}, {2, 7, 2}}, true,
				fmt.Sprintf("%s %v", tc.name, layout))
		}
	}
}

// TestGemma2Gradients checks the backward of the whole model, every
// parameter trainable, against central differences of the loss, through
// both soft-caps where they bend the logits: the key projection and the
// attention norm (whose gradients pass the attention cap's tanh), the
// embedding (also the tied output head, under the final cap), every norm.
func TestGemma2Gradients(t *testing.T) {
	b := openCPU(t)
	for _, layout := range bothLayouts {
		cfg := gemma2Config(layout)
		cfg.NumLayers, cfg.LayerKinds = 2, "sf"
		rng := rand.New(rand.NewPCG(14, 15))
		m, f, grads := paddedProbe(t, b, gemmaWeights(t, cfg, 83), 7, rng)
		var check []*graph.Value
		for i, blk := range m.Blocks {
			check = append(check, blk.AttnNorm, blk.PostAttnNorm, blk.FFNNorm, blk.PostFFNNorm)
			if i == 0 {
				check = append(check, llama.LayerParams(blk.Q)[0], llama.LayerParams(blk.K)[0], llama.LayerParams(blk.Gate)[0])
			}
		}
		check = append(check, m.Norm, m.Embed)
		f.nonzero(layout.String(), check, grads)
		f.check(layout.String(), check, grads, 4, rng)
	}
}

// TestGemma2PEFTMerge: PEFT adapts Gemma 2's seven linear layers per block
// and leaves its norms frozen, and the merged weights' float64 logits
// (soft-capped) are the adapted model's.
func TestGemma2PEFTMerge(t *testing.T) {
	b := openCPU(t)
	cfg := gemma2Config(llama.RopeHalfSplit)
	w := gemmaWeights(t, cfg, 93)
	rng := rand.New(rand.NewPCG(18, 19))
	bt := llama.Batch{Tokens: randomTokens(rng, 2*9, cfg.VocabSize), Size: 2, Len: 9}
	for _, method := range []peft.Method{peft.LoRA, peft.SORA} {
		checkPEFTMerge(t, b, w, bt, method, gemma2Exact64, rng)
	}
}
