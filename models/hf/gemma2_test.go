package hf

import (
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
)

// readGemma2Config returns testdata/gemma2/name, a published Gemma 2
// config.json (see the README there).
func readGemma2Config(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "gemma2", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// gemma2_2B is what google/gemma-2-2b's (and gemma-2-2b-it's) config.json
// describes, spelled out from the published values: 26 layers of width
// 2304, 8 query heads of 256 over 4 key/value heads, GeGLU of 9216, the
// even-indexed layers sliding over 4096 positions, one rotary base of
// 10⁴, soft-caps of 50 (attention) and 30 (output).
var gemma2_2B = llama.Config{
	Dim: 2304, HiddenDim: 9216, NumLayers: 26, NumHeads: 8, NumKVHeads: 4, HeadWidth: 256,
	VocabSize: 256000, MaxSeqLen: 8192, NormEps: 1e-6, RopeTheta: 10000, TiedEmbeddings: true,
	RopeLayout: llama.RopeHalfSplit, Family: llama.FamilyGemma2, Activation: llama.GELUTanh,
	QueryPreAttnScalar: 256, LayerKinds: strings.Repeat("sf", 13), SlidingWindow: 4096, LocalRopeTheta: 10000,
	AttnLogitSoftcap: 50, FinalLogitSoftcap: 30,
}

func TestParseGemma2Config(t *testing.T) {
	for _, name := range []string{"gemma-2-2b.json", "gemma-2-2b-it.json"} {
		cfg, err := ParseConfig([]byte(readGemma2Config(t, name)), name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cfg != gemma2_2B {
			t.Errorf("%s:\n got %+v\nwant %+v", name, cfg, gemma2_2B)
		}
		// By hand: the embedding 256000·2304 = 589,824,000; per layer
		// q_proj and o_proj 2048·2304 = 4,718,592 each, k_proj and v_proj
		// 1024·2304 = 2,359,296 each, the feed-forward 3·9216·2304 =
		// 63,700,992 and four norms of 2304: 77,865,984; 26 layers
		// 2,024,515,584; the final norm 2304. In all 2,614,341,888, the
		// count that public code records for google/gemma-2-2b and -2b-it
		// (the sum of numel() over a loaded model's parameters, and the
		// parameter count of the GGUF conversions).
		if n := cfg.NumParams(); n != 2614341888 {
			t.Errorf("%s has %d parameters, want 2614341888", name, n)
		}
		// Gemma 2's alternation, whatever the Config spells: layer 0
		// slides, layer 1 and the last (25) attend to every position.
		if !cfg.Sliding(0) || cfg.Sliding(1) || !cfg.Sliding(24) || cfg.Sliding(25) {
			t.Errorf("%s: layer kinds %q; want the even layers sliding", name, cfg.LayerKinds)
		}
	}

	// Gemma2Config's defaults for absent fields, and other spellings.
	base := `"model_type": "gemma2", "hidden_size": 64, "intermediate_size": 24, "num_hidden_layers": 5, "num_attention_heads": 4, "vocab_size": 19`
	small := llama.Config{Dim: 64, HiddenDim: 24, NumLayers: 5, NumHeads: 4, NumKVHeads: 4, VocabSize: 19, MaxSeqLen: 8192,
		HeadWidth: 256, NormEps: 1e-6, RopeTheta: 10000, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit,
		Family: llama.FamilyGemma2, Activation: llama.GELUTanh, QueryPreAttnScalar: 256, LayerKinds: "sfsfs",
		SlidingWindow: 4096, LocalRopeTheta: 10000, AttnLogitSoftcap: 50, FinalLogitSoftcap: 30}
	with := func(f func(*llama.Config)) llama.Config { c := small; f(&c); return c }
	checkParsed(t, []parsed{
		// Absent soft-caps are Gemma2Config's 50.0 and 30.0; absent
		// layer_types the even layers sliding.
		{`{` + base + `}`, small},
		{`{` + base + `, "attn_logit_softcapping": null, "final_logit_softcapping": null}`,
			with(func(c *llama.Config) { c.AttnLogitSoftcap, c.FinalLogitSoftcap = 0, 0 })},
		{`{` + base + `, "attn_logit_softcapping": 20, "final_logit_softcapping": 7.5e0}`,
			with(func(c *llama.Config) { c.AttnLogitSoftcap, c.FinalLogitSoftcap = 20, 7.5 })},
		{`{` + base + `, "head_dim": 16, "num_key_value_heads": 2, "tie_word_embeddings": false, "hidden_act": "gelu", "sliding_window_pattern": 6, "rope_local_base_freq": 5.0}`,
			with(func(c *llama.Config) { c.HeadWidth, c.NumKVHeads, c.TiedEmbeddings = 0, 2, false })},
		{`{` + base + `, "layer_types": ["full_attention", "sliding_attention", "sliding_attention", "full_attention", "full_attention"], "sliding_window": 3, "query_pre_attn_scalar": 24.5}`,
			with(func(c *llama.Config) { c.LayerKinds, c.SlidingWindow, c.QueryPreAttnScalar = "fssff", 3, 24.5 })},
		// Every layer full: the window goes unused, and may be null.
		{`{` + base + `, "layer_types": ["full_attention", "full_attention", "full_attention", "full_attention", "full_attention"], "sliding_window": null}`,
			with(func(c *llama.Config) { c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = "", 0, 0 })},
		{`{` + base + `, "layer_types": null, "attention_bias": true, "hidden_activation": "silu", "rope_scaling": {"rope_type": "default"}, "use_bidirectional_attention": false}`,
			with(func(c *llama.Config) { c.AttentionBias, c.Activation = llama.BiasQKVO, llama.SiLU })},
		{`{` + base + `, "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}`,
			with(func(c *llama.Config) { c.RopeTheta, c.LocalRopeTheta = 5e5, 5e5 })},
		{`{` + base + `, "rope_theta": 500000.0, "rope_parameters": {"rope_theta": 500000.0}}`,
			with(func(c *llama.Config) { c.RopeTheta, c.LocalRopeTheta = 5e5, 5e5 })},
	})

	published := readGemma2Config(t, "gemma-2-2b.json")
	replaced := func(old, new string) string {
		if !strings.Contains(published, old) {
			t.Fatalf("the published config has no %s", old)
		}
		return strings.Replace(published, old, new, 1)
	}
	checkRefused(t, []refused{
		{replaced(`"attn_logit_softcapping": 50.0`, `"attn_logit_softcapping": "50"`),
			`attn_logit_softcapping is "50"; expected a positive number, or null for no soft-capping`},
		{replaced(`"attn_logit_softcapping": 50.0`, `"attn_logit_softcapping": true`), "attn_logit_softcapping is true; expected a positive number"},
		{replaced(`"attn_logit_softcapping": 50.0`, `"attn_logit_softcapping": [50.0]`), "attn_logit_softcapping is [50.0]; expected a positive number"},
		{replaced(`"attn_logit_softcapping": 50.0`, `"attn_logit_softcapping": 0`), "attn_logit_softcapping is 0; expected a positive number"},
		{replaced(`"final_logit_softcapping": 30.0`, `"final_logit_softcapping": -30.0`), "final_logit_softcapping is -30.0; expected a positive number"},
		{replaced(`"final_logit_softcapping": 30.0`, `"final_logit_softcapping": 1e999`), "final_logit_softcapping is 1e999; expected a positive number"},
		{replaced(`"final_logit_softcapping": 30.0`, `"final_logit_softcapping": {}`), "final_logit_softcapping is {}; expected a positive number"},
		{replaced(`"head_dim": 256`, `"head_dim": null`), "head_dim is null; Gemma 2 needs the width"},
		{replaced(`"sliding_window": 4096`, `"sliding_window": null`), "sliding_window is null but layer 0 is sliding_attention"},
		{replaced(`"sliding_window": 4096`, `"sliding_window": 0`), "sliding_window is 0; expected a whole number"},
		{replaced(`"use_cache": true`, `"use_cache": true, "use_bidirectional_attention": true`), "use_bidirectional_attention is true"},
		{replaced(`"hidden_activation": "gelu_pytorch_tanh"`, `"hidden_activation": "gelu"`), `hidden_activation is "gelu"; only "gelu_pytorch_tanh"`},
		{replaced(`"attention_dropout": 0.0`, `"attention_dropout": 0.1`), "attention_dropout is 0.1"},
		{replaced(`"query_pre_attn_scalar": 256`, `"query_pre_attn_scalar": -256`), "query_pre_attn_scalar is -256; expected a positive number"},
		{replaced(`"rope_theta": 10000.0`, `"rope_theta": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 2.0}`),
			`rope_scaling is {"rope_type":"linear","factor":2.0}; Gemma 2's rotary embedding is unscaled`},
		{replaced(`"rope_theta": 10000.0`, `"rope_theta": 10000.0, "rope_parameters": {"rope_type": "yarn", "factor": 2.0}`), `rope_parameters.rope_type is "yarn"`},
		{replaced(`"rope_theta": 10000.0`, `"rope_theta": 10000.0, "rope_parameters": {"rope_theta": 20.0}`), "rope_theta is 10000 but rope_parameters.rope_theta is 20"},
		{replaced(`"num_hidden_layers": 26`, `"num_hidden_layers": 26, "layer_types": ["sliding_attention"]`), "layer_types lists 1 layers; num_hidden_layers is 26"},
		{replaced(`"num_hidden_layers": 26`, `"num_hidden_layers": 2, "layer_types": ["sliding_attention", "global"]`), `layer_types[1] is "global"`},
		{replaced(`"num_hidden_layers": 26`, `"num_hidden_layers": -1`), "num_hidden_layers is -1; expected 1 to 1048576"},
		{replaced(`"head_dim": 256`, `"head_dim": 255`), "head_dim 255 must be even"},
		{`{"model_type": "gemma2", "hidden_size": 64}`, "missing required field intermediate_size"},
	})
}

// gemma2Tiny is a tiny Gemma 2 for files: heads 6 wide over width 16,
// layers sliding then full over a window of 3, query_pre_attn_scalar 6,
// and soft-caps that are neither Gemma2Config's defaults nor whole
// numbers, so that a round trip that lost them would be seen.
func gemma2Tiny(tied bool) llama.Config {
	c := tinyConfig(tied, 2)
	c.HeadWidth, c.Family, c.Activation = 6, llama.FamilyGemma2, llama.GELUTanh
	c.QueryPreAttnScalar, c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = 6, "sf", 3, c.RopeTheta
	c.NormEps, c.AttnLogitSoftcap, c.FinalLogitSoftcap = 1e-6, 1.75, 2.5
	return c
}

// TestEncodeGemma2Config checks the config.json of a Gemma 2 model:
// Gemma2Config's fields, layer_types and the soft-caps (null where there
// are none, not absent, which would mean 50 and 30); and that it parses
// back to the same configuration, the published ones included.
func TestEncodeGemma2Config(t *testing.T) {
	uncapped := gemma2Tiny(false)
	uncapped.AttnLogitSoftcap, uncapped.FinalLogitSoftcap, uncapped.AttentionBias = 0, 0, llama.BiasQKVO
	full := gemma2Tiny(true)
	full.LayerKinds, full.SlidingWindow, full.LocalRopeTheta = "", 0, 0
	checkEncoded(t, gemma2Tiny(true), map[string]any{"model_type": "gemma2", "architectures": []any{"Gemma2ForCausalLM"}, "head_dim": 6.0,
		"hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 6.0, "sliding_window": 3.0, "rope_theta": 10000.0,
		"layer_types": []any{"sliding_attention", "full_attention"}, "attn_logit_softcapping": 1.75, "final_logit_softcapping": 2.5,
		"tie_word_embeddings": true, "attention_bias": false},
		[]string{"hidden_act", "mlp_bias", "rope_local_base_freq", "sliding_window_pattern", "rope_scaling"})
	checkEncoded(t, uncapped, map[string]any{"attn_logit_softcapping": nil, "final_logit_softcapping": nil, "attention_bias": true, "tie_word_embeddings": false}, nil)
	checkEncoded(t, full, map[string]any{"layer_types": []any{"full_attention", "full_attention"}, "sliding_window": 4096.0}, nil)
	for _, name := range []string{"gemma-2-2b.json", "gemma-2-2b-it.json"} {
		cfg, err := ParseConfig([]byte(readGemma2Config(t, name)), name)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := EncodeConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := ParseConfig(raw, "again.json"); err != nil || back != cfg {
			t.Errorf("round trip of %s: %+v, %v; want %+v", name, back, err, cfg)
		}
	}
}

// TestWriteLoadGemma2 writes tiny Gemma 2 models (tied and untied, whole
// and sharded, with attention_bias, from either rotary layout; with and
// without soft-caps) and loads them back bit for bit, config included:
// the folder's config.json keeps model_type gemma2 and the soft-capping
// fields, and the model built from it computes the source's logits.
func TestWriteLoadGemma2(t *testing.T) {
	b := testbackend.Open(t, "cpu")
	rng := rand.New(rand.NewSource(61))
	cases := append([]fileCase{}, fileCases...)
	cases = append(cases, fileCase{"uncapped", true, llama.NoBias, 0, llama.RopeHalfSplit})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.config(gemma2Tiny)
			wantCaps := map[string]any{"attn_logit_softcapping": 1.75, "final_logit_softcapping": 2.5}
			if tc.name == "uncapped" {
				cfg.AttnLogitSoftcap, cfg.FinalLogitSoftcap = 0, 0
				wantCaps = map[string]any{"attn_logit_softcapping": nil, "final_logit_softcapping": nil}
			}
			src := randomWeights(t, rng, cfg)
			_, got := roundTrip(t, b, src, tc.shard, []int32{1, 7, 18, 3, 3, 11, 4}, "gemma2", ArchGemma2)
			if got.Config.Family != llama.FamilyGemma2 || got.Config.AttnLogitSoftcap != cfg.AttnLogitSoftcap || got.Config.FinalLogitSoftcap != cfg.FinalLogitSoftcap {
				t.Errorf("loaded config %+v; want family gemma2 and the source's caps", got.Config)
			}
			dir := filepath.Join(t.TempDir(), "again")
			if err := Write(dir, got, nil); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(filepath.Join(dir, ConfigFile))
			if err != nil {
				t.Fatal(err)
			}
			checkFields(t, raw, wantCaps, nil, tc.name)
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil || m["model_type"] != "gemma2" {
				t.Errorf("written again, model_type is %v (%v)", m["model_type"], err)
			}
		})
	}
}

// TestLoadGemma2Errors: a Gemma 2 folder must hold its four norms of
// every layer and no QK-norm weights.
func TestLoadGemma2Errors(t *testing.T) {
	rng := rand.New(rand.NewSource(67))
	cfg := gemma2Tiny(true)
	cfg.RopeLayout = llama.RopeHalfSplit
	good := tensorsOf(randomWeights(t, rng, cfg))
	gemma3 := gemmaTiny(true)
	gemma3.RopeLayout = llama.RopeHalfSplit
	checkBadFolders(t, []badFolder{
		{"missing post-attention norm", cfg, without(good, "model.layers.0.post_attention_layernorm.weight"),
			`no tensor "model.layers.0.post_attention_layernorm.weight"`},
		{"q_norm in a gemma2 folder", cfg, tensorsOf(randomWeights(t, rng, gemma3)),
			`tensors a model of this config does not use: model.layers.0.self_attn.k_norm.weight`},
	})
}
