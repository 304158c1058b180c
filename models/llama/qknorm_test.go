package llama_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/optim"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// qwen3Config is the tiny model of tinyConfig (width 24, 4 query heads over
// 2 key/value heads) with Qwen3's attention: heads 10 wide, so q_proj is
// [40, 24] and o_proj [24, 40], each head's query and key normalised
// (QK-norm), and Qwen3's rope theta and norm epsilon.
func qwen3Config(layout llama.RopeLayout) llama.Config {
	c := tinyConfig(true, layout)
	c.HeadWidth, c.QKNorm = 10, true
	c.RopeTheta, c.NormEps = 1e6, 1e-6
	return c
}

// headWidthCases are models whose head width is not dim / heads: Qwen3's
// (wider heads, QK-norm), Qwen3 with attention_bias (biases on all four
// projections, untied), heads narrower than dim / heads with QK-norm, and
// Mistral Nemo's shape (wider heads, no QK-norm).
func headWidthCases() []namedConfig {
	bias := qwen3Config(llama.RopeHalfSplit)
	bias.AttentionBias, bias.TiedEmbeddings = llama.BiasQKVO, false
	narrow := qwen3Config(llama.RopeHalfSplit)
	narrow.HeadWidth = 4
	nemo := qwen3Config(llama.RopeHalfSplit)
	nemo.QKNorm = false
	return []namedConfig{
		{"qwen3", qwen3Config(llama.RopeHalfSplit)},
		{"qwen3+bias", bias},
		{"narrow heads", narrow},
		{"nemo", nemo},
	}
}

// qkWeights is randomWeights with QK-norm weights spread over [0.3, 2], far
// enough from one, and from each other, that a norm weight applied to the
// wrong dimension of a head moves the logits well beyond the tolerances.
func qkWeights(tb testing.TB, cfg llama.Config, seed uint64) *llama.Weights {
	tb.Helper()
	w := randomWeights(tb, cfg, seed)
	rng := rand.New(rand.NewPCG(seed, 99))
	for i := range w.Layers {
		for _, v := range [][]float32{w.Layers[i].QNorm, w.Layers[i].KNorm} {
			for j := range v {
				v[j] = float32(0.3 + 1.7*rng.Float64())
			}
		}
	}
	return w
}

func TestHeadWidthConfig(t *testing.T) {
	c := qwen3Config(llama.RopeHalfSplit)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.HeadDim() != 10 || c.QDim() != 40 || c.KVDim() != 20 {
		t.Errorf("head dim %d, q dim %d, kv dim %d; want 10, 40, 20", c.HeadDim(), c.QDim(), c.KVDim())
	}
	// Counted by hand: embedding 29·24 (tied); per layer two norms of 24,
	// q_proj 40·24, k_proj and v_proj 20·24, o_proj 24·40, q_norm and
	// k_norm 10 each, gate and up 37·24, down 24·37; the final norm 24.
	perLayer := int64(2*24 + 40*24 + 2*20*24 + 24*40 + 2*10 + 3*37*24)
	checkParamCounts(t, c, perLayer, 29*24+2*perLayer+24, "")
	for mod, want := range map[string][]int{
		llama.ModQ: {40, 24}, llama.ModO: {24, 40}, llama.ModK: {20, 24}, llama.ModV: {20, 24},
		llama.ModQNorm: {10}, llama.ModKNorm: {10}, llama.ModInputNorm: {24},
	} {
		if got := llama.ModuleShape(c, mod); !slices.Equal(got, want) {
			t.Errorf("ModuleShape(%s) = %v, want %v", mod, got, want)
		}
	}
	if got, want := c.Modules(), []string{llama.ModInputNorm, llama.ModQ, llama.ModK, llama.ModV, llama.ModO,
		llama.ModQNorm, llama.ModKNorm, llama.ModPostNorm, llama.ModGate, llama.ModUp, llama.ModDown}; !slices.Equal(got, want) {
		t.Errorf("Modules = %v, want %v", got, want)
	}
	if got := tinyConfig(true, 0).Modules(); !slices.Equal(got, llama.LayerModules()) {
		t.Errorf("Modules without QK-norm = %v, want LayerModules", got)
	}
	// A head width equal to dim / heads is the same model as none.
	same := tinyConfig(true, 0)
	same.HeadWidth = 6
	if err := same.Validate(); err != nil || same.NumParams() != tinyConfig(true, 0).NumParams() {
		t.Errorf("explicit head width 6 = 24/4: %v, %d parameters", err, same.NumParams())
	}
	// Without a head width the heads must divide the model; with one they
	// need not.
	odd := qwen3Config(llama.RopeHalfSplit)
	odd.Dim = 26
	if err := odd.Validate(); err != nil {
		t.Errorf("dim 26 over 4 heads of 10: %v", err)
	}

	checkConfigErrors(t, qwen3Config(llama.RopeHalfSplit), []configError{
		{"odd head width", func(c *llama.Config) { c.HeadWidth = 9 }, "head_dim 9 must be even"},
		{"odd derived width", func(c *llama.Config) { c.HeadWidth, c.Dim = 0, 20 }, "head_dim 5 (dim 20 / n_heads 4) must be even"},
		{"negative", func(c *llama.Config) { c.HeadWidth = -2 }, "head_dim = -2"},
		{"huge", func(c *llama.Config) { c.HeadWidth = 1 << 30 }, "head_dim = 1073741824"},
		{"huge product", func(c *llama.Config) { c.HeadWidth, c.NumHeads, c.NumKVHeads = 1<<20, 1<<10, 1<<10 }, "n_heads 1024 × head_dim 1048576"},
		{"not a multiple", func(c *llama.Config) { c.HeadWidth, c.Dim = 0, 26 }, "dim 26 is not a multiple of n_heads 4"},
		{"mistral with QK-norm", func(c *llama.Config) { c.Family = llama.FamilyMistral }, "has QK-norm; Mistral has none"},
	})

	// QK-norm weights without QK-norm in the config are refused.
	w := randomWeights(t, tinyConfig(true, 0), 1)
	w.Layers[1].KNorm = make([]float32, 6)
	if err := w.Validate(); err == nil || !strings.Contains(err.Error(), "layer 1 has a self_attn.k_norm weight but the config has no QK-norm") {
		t.Errorf("stray k_norm: %v", err)
	}
	// And missing ones with it.
	w = randomWeights(t, qwen3Config(llama.RopeHalfSplit), 1)
	w.Layers[0].QNorm = nil
	if err := w.Validate(); err == nil || !strings.Contains(err.Error(), "self_attn.q_norm.weight has 0 elements") {
		t.Errorf("missing q_norm: %v", err)
	}
}

// TestHeadWidthForwardMatchesFloat64 checks the training forward of models
// whose head width is not dim / heads, with and without QK-norm, against
// the float64 forward and against the float32 one-position reference, in
// both rotary layouts (the interleaved weights are the half-split ones
// converted by ToLayout). The QK-norm must move the logits, and ToLayout
// must permute the norm weights within the head: left in the half-split
// order, they give other logits.
func TestHeadWidthForwardMatchesFloat64(t *testing.T) {
	b := openCPU(t)
	const B, T = 2, 9
	for _, tc := range headWidthCases() {
		t.Run(tc.name, func(t *testing.T) {
			w := qkWeights(t, tc.cfg, 61)
			rng := rand.New(rand.NewPCG(6, 7))
			ids := randomTokens(rng, B*T, tc.cfg.VocabSize)
			want := forwardRows64(w, ids, B)
			if tc.cfg.QKNorm {
				plain := tc.cfg
				plain.QKNorm = false
				nw, err := llama.NewWeights(plain)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range nw.Params() {
					src, _ := w.Param(p.Name)
					copy(p.Data, src.Data)
				}
				if d := maxRelDiff(forwardRows64(nw, ids, B), want); d < 1e-2 {
					t.Fatalf("QK-norm moves the float64 logits by only %.3g", d)
				}
				// Interleaved weights whose norms kept the half-split order.
				wrong := inLayout(t, w, llama.RopeInterleaved)
				for i := range wrong.Layers {
					copy(wrong.Layers[i].QNorm, w.Layers[i].QNorm)
					copy(wrong.Layers[i].KNorm, w.Layers[i].KNorm)
				}
				if d := maxRelDiff(forwardRows64(wrong, ids, B), want); d < 1e-3 {
					t.Fatalf("norm weights in the wrong order move the float64 logits by only %.3g", d)
				}
			}
			checkForward64(t, b, w, ids, B, want, forwardRows64, 1e-5, "")
			checkLayoutRoundTrip(t, w, "")
		})
	}
}

// TestHeadWidthDecodeMatchesFloat64 checks the KV-cache path (both ways
// the cache attends, a token at a time and in chunks) of the same models
// against the float64 forward, and that greedy generation through the
// cache picks the tokens that the full forward, rerun over the whole
// sequence at every step, picks.
func TestHeadWidthDecodeMatchesFloat64(t *testing.T) {
	b := openCPU(t)
	for _, tc := range headWidthCases() {
		for _, layout := range bothLayouts {
			w := inLayout(t, qkWeights(t, tc.cfg, 71), layout)
			checkDecode64(t, b, w, forwardRows64, [][]int{{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {4, 1, 1, 5}}, true, fmt.Sprintf("%s %v", tc.name, layout))
		}
	}
}

// TestHeadWidthGradients checks the backward through the rectangular q/o
// projections and the QK-norm, in both layouts, with every parameter
// trainable (full fine-tuning of the whole model, q_norm and k_norm
// included) against central differences of the loss.
func TestHeadWidthGradients(t *testing.T) {
	b := openCPU(t)
	for _, layout := range bothLayouts {
		for _, tc := range headWidthCases()[:2] {
			cfg := tc.cfg
			cfg.NumLayers, cfg.RopeLayout = 1, layout
			rng := rand.New(rand.NewPCG(12, 13))
			m, f, grads := paddedProbe(t, b, qkWeights(t, cfg, 81), 6, rng)
			blk := m.Blocks[0]
			var check []*graph.Value
			for _, p := range m.Params() {
				if p == blk.QNorm || p == blk.KNorm || p == llama.LayerParams(blk.Q)[0] || p == llama.LayerParams(blk.O)[0] || strings.HasSuffix(p.Name(), ".bias") {
					check = append(check, p)
				}
			}
			label := fmt.Sprintf("%s %v", tc.name, layout)
			f.nonzero(label, []*graph.Value{blk.QNorm, blk.KNorm}, grads)
			f.check(label, check, grads, 6, rng)
		}
	}
}

// TestQKNormTraining checks what training does to the QK-norm weights: a
// PEFT method leaves them frozen and merging leaves them as they were (the
// merged model computes what the adapted one does); full fine-tuning
// trains them, and Weights gives the trained values back for writing.
func TestQKNormTraining(t *testing.T) {
	b := openCPU(t)
	cfg := qwen3Config(llama.RopeHalfSplit)
	w := qkWeights(t, cfg, 91)
	rng := rand.New(rand.NewPCG(16, 17))
	bt := llama.Batch{Tokens: randomTokens(rng, 2*7, cfg.VocabSize), Size: 2, Len: 7}
	t.Run("peft", func(t *testing.T) {
		checkPEFTMerge(t, b, w, bt, peft.SORA, forwardRows64, rng)
	})

	t.Run("full", func(t *testing.T) {
		m := newModel(t, b, w)
		for _, p := range m.Params() {
			if err := p.SetTrainable(true); err != nil {
				t.Fatal(err)
			}
		}
		const lr = 0.5
		opt, err := optim.NewSGD([]optim.Group{{Name: "all", Params: m.Trainable(), LR: lr}}, optim.SGDConfig{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		targets, err := llama.LMTargets(bt, nil)
		if err != nil {
			t.Fatal(err)
		}
		g := graph.New(b)
		defer g.Close()
		loss, err := m.LMLoss(g, bt, targets, graph.CrossEntropyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Backward(loss); err != nil {
			t.Fatal(err)
		}
		qg, err := m.Blocks[1].QNorm.DownloadGrad()
		if err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		mw, err := m.Weights()
		if err != nil {
			t.Fatal(err)
		}
		moved := 0.0
		for j, v := range mw.Layers[1].QNorm {
			want := w.Layers[1].QNorm[j] - lr*qg[j]
			if math.Abs(float64(v-want)) > 1e-6 {
				t.Errorf("trained q_norm[%d] = %v, want %v − %v·%v = %v", j, v, w.Layers[1].QNorm[j], lr, qg[j], want)
			}
			moved = max(moved, math.Abs(float64(v-w.Layers[1].QNorm[j])))
		}
		if moved < 1e-4 {
			t.Errorf("one step moved q_norm by at most %.3g: the check says nothing", moved)
		}
	})
}

// TestHeadWidthClassifyAndRowOrder: the score head reads the model width
// (dim, not q_dim), and the Hugging Face row order of a rectangular q_proj
// covers its heads·head_dim rows.
func TestHeadWidthClassifyAndRowOrder(t *testing.T) {
	b := openCPU(t)
	cfg := qwen3Config(llama.RopeInterleaved)
	m := newModel(t, b, qkWeights(t, cfg, 101))
	if err := m.AddScoreHead(3, 1); err != nil {
		t.Fatal(err)
	}
	g := graph.New(b)
	defer g.Close()
	lv, err := m.Classify(g, llama.Batch{Tokens: []int32{1, 2, 3, 4, 5, 6}, Size: 2, Len: 3, Lengths: []int{3, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
	if s := lv.Shape(); len(s) != 2 || s[0] != 2 || s[1] != 3 {
		t.Errorf("classification logits %v, want [2 3]", s)
	}
	for _, c := range []struct {
		mod  string
		rows int
	}{{llama.ModQ, 40}, {llama.ModK, 20}} {
		perm := m.HFRowOrder(llama.ModuleName(0, c.mod))
		sorted := slices.Sorted(slices.Values(perm))
		if len(perm) != c.rows || sorted[0] != 0 || sorted[len(sorted)-1] != c.rows-1 || slices.Equal(perm, sorted) {
			t.Errorf("%s: row order %v; want a permutation of %d rows that moves some", c.mod, perm, c.rows)
		}
	}
}
