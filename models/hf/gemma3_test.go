package hf

import (
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
)

// gemma3_270MConfig is google/gemma-3-270m's config.json as published on
// the Hugging Face hub (written out here from its values, as reproduced in
// public code that tests against it, circuit-tracer's Gemma 3 fixture):
// transformers 4.55's layout, with layer_types and the private
// _sliding_window_pattern.
const gemma3_270MConfig = `{
  "_sliding_window_pattern": 6,
  "architectures": [
    "Gemma3ForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "attn_logit_softcapping": null,
  "bos_token_id": 2,
  "eos_token_id": 1,
  "final_logit_softcapping": null,
  "head_dim": 256,
  "hidden_activation": "gelu_pytorch_tanh",
  "hidden_size": 640,
  "initializer_range": 0.02,
  "intermediate_size": 2048,
  "layer_types": [
    "sliding_attention",
    "sliding_attention",
    "sliding_attention",
    "sliding_attention",
    "sliding_attention",
    "full_attention",
    "sliding_attention",
    "sliding_attention",
    "sliding_attention",
    "sliding_attention",
    "sliding_attention",
    "full_attention",
    "sliding_attention",
    "sliding_attention",
    "sliding_attention",
    "sliding_attention",
    "sliding_attention",
    "full_attention"
  ],
  "max_position_embeddings": 32768,
  "model_type": "gemma3_text",
  "num_attention_heads": 4,
  "num_hidden_layers": 18,
  "num_key_value_heads": 1,
  "pad_token_id": 0,
  "query_pre_attn_scalar": 256,
  "rms_norm_eps": 1e-06,
  "rope_local_base_freq": 10000.0,
  "rope_scaling": null,
  "rope_theta": 1000000.0,
  "sliding_window": 512,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.55.0.dev0",
  "use_bidirectional_attention": false,
  "use_cache": true,
  "vocab_size": 262144
}
`

// gemma3_1BConfig is google/gemma-3-1b-it's config.json (as reproduced in
// public Gemma 3 checkpoint-loading notes that quote it whole): the older
// layout, no layer_types but sliding_window_pattern, integer rotary bases,
// and two EOS tokens.
const gemma3_1BConfig = `{
  "architectures": [
    "Gemma3ForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "attn_logit_softcapping": null,
  "bos_token_id": 2,
  "cache_implementation": "hybrid",
  "eos_token_id": [
    1,
    106
  ],
  "final_logit_softcapping": null,
  "head_dim": 256,
  "hidden_activation": "gelu_pytorch_tanh",
  "hidden_size": 1152,
  "initializer_range": 0.02,
  "intermediate_size": 6912,
  "max_position_embeddings": 32768,
  "model_type": "gemma3_text",
  "num_attention_heads": 4,
  "num_hidden_layers": 26,
  "num_key_value_heads": 1,
  "pad_token_id": 0,
  "query_pre_attn_scalar": 256,
  "rms_norm_eps": 1e-06,
  "rope_local_base_freq": 10000,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "sliding_window": 512,
  "sliding_window_pattern": 6,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.52.4",
  "use_cache": true,
  "vocab_size": 262144
}
`

// gemma3_4BTextConfig is the text_config of google/gemma-3-4b-it (a
// Gemma3ForConditionalGeneration, whose config.json is refused whole) as a
// text-only gemma3_text config, in the layout of transformers 5:
// rope_parameters keyed by layer type, with the full layers' linear
// scaling by 8.
const gemma3_4BTextConfig = `{
  "model_type": "gemma3_text",
  "vocab_size": 262208,
  "hidden_size": 2560,
  "intermediate_size": 10240,
  "num_hidden_layers": 34,
  "num_attention_heads": 8,
  "num_key_value_heads": 4,
  "head_dim": 256,
  "hidden_activation": "gelu_pytorch_tanh",
  "max_position_embeddings": 131072,
  "rms_norm_eps": 1e-06,
  "query_pre_attn_scalar": 256,
  "sliding_window": 1024,
  "_sliding_window_pattern": 6,
  "attention_bias": false,
  "attention_dropout": 0.0,
  "use_bidirectional_attention": false,
  "rope_theta": 1000000.0,
  "rope_local_base_freq": 10000.0,
  "rope_parameters": {
    "full_attention": {"factor": 8.0, "rope_type": "linear"},
    "sliding_attention": {"rope_type": "default"}
  }
}
`

// gemmaKinds returns the layer kinds of n layers whose every pattern-th
// layer is full.
func gemmaKinds(n, pattern int) string {
	var b strings.Builder
	for i := range n {
		if (i+1)%pattern == 0 {
			b.WriteByte(llama.LayerFull)
		} else {
			b.WriteByte(llama.LayerSliding)
		}
	}
	return b.String()
}

func TestParseGemma3Configs(t *testing.T) {
	gemma := func(dim, hidden, layers, heads, kv, vocab, maxPos, window int) llama.Config {
		return llama.Config{Dim: dim, HiddenDim: hidden, NumLayers: layers, NumHeads: heads, NumKVHeads: kv, VocabSize: vocab,
			MaxSeqLen: maxPos, HeadWidth: 256, NormEps: 1e-6, RopeTheta: 1e6, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit,
			QKNorm: true, Family: llama.FamilyGemma3, Activation: llama.GELUTanh, QueryPreAttnScalar: 256,
			LayerKinds: gemmaKinds(layers, 6), SlidingWindow: window, LocalRopeTheta: 10000}
	}
	scaled := gemma(2560, 10240, 34, 8, 4, 262208, 131072, 1024)
	scaled.RopeScaling = llama.RopeScaling{Type: llama.RopeScalingLinear, Factor: 8}
	for _, c := range []struct {
		name, json string
		want       llama.Config
		params     int64
	}{
		// By hand: the embedding 262144·640 = 167,772,160 (tied: counted
		// once); per layer q_proj 4·256·640 = 655,360, k_proj and v_proj
		// 256·640 = 163,840 each, o_proj 640·1024 = 655,360, gate, up and
		// down 3·2048·640 = 3,932,160, four norms of 640 and q_norm,
		// k_norm of 256: 5,573,632; 18 layers 100,325,376; the final norm
		// 640. In all 268,098,176: the total that Keras Hub's
		// gemma3_270m preset and llama.cpp (n_params of its GGUF) publish,
		// 170M embedding and 100M transformer parameters as Google's
		// announcement splits them.
		{"gemma-3-270m", gemma3_270MConfig, gemma(640, 2048, 18, 4, 1, 262144, 32768, 512), 268098176},
		// By hand: the embedding 262144·1152 = 301,989,888; per layer
		// q_proj and o_proj 1024·1152 = 1,179,648 each, k_proj and
		// v_proj 256·1152 = 294,912 each, the feed-forward
		// 3·6912·1152 = 23,887,872, four norms of 1152 and two of 256:
		// 26,842,112; 26 layers 697,894,912; the final norm 1152. In all
		// 999,885,952: the safetensors total the hub's API gives for
		// google/gemma-3-1b-it, also Keras Hub's gemma3_1b preset's.
		{"gemma-3-1b-it", gemma3_1BConfig, gemma(1152, 6912, 26, 4, 1, 262144, 32768, 512), 999885952},
		// By hand, the text model alone (the published 4B total includes
		// the vision tower): embedding 262208·2560 = 671,252,480; per
		// layer q_proj and o_proj 2048·2560 = 5,242,880 each, k_proj and
		// v_proj 1024·2560 = 2,621,440 each, feed-forward 3·10240·2560 =
		// 78,643,200, norms 4·2560 + 2·256: 94,382,592; 34 layers
		// 3,209,008,128; the final norm 2560: 3,880,263,168.
		{"gemma-3-4b text", gemma3_4BTextConfig, scaled, 3880263168},
	} {
		cfg, err := ParseConfig([]byte(c.json), c.name+"/config.json")
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if cfg != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, cfg, c.want)
		}
		if n := cfg.NumParams(); n != c.params {
			t.Errorf("%s has %d parameters, want %d", c.name, n, c.params)
		}
	}
	// The two layouts of the 270M's layers say the same.
	old, err := ParseConfig([]byte(strings.Replace(gemma3_1BConfig, `"num_hidden_layers": 26`, `"num_hidden_layers": 18`, 1)), "c.json")
	if err != nil {
		t.Fatal(err)
	}
	if old.LayerKinds != "sssssfsssssfsssssf" {
		t.Errorf("sliding_window_pattern 6 over 18 layers: kinds %q", old.LayerKinds)
	}
	// The 4B text model in the older layout reads as in the newer.
	older := strings.Replace(gemma3_4BTextConfig, `"rope_parameters": {
    "full_attention": {"factor": 8.0, "rope_type": "linear"},
    "sliding_attention": {"rope_type": "default"}
  }`, `"rope_scaling": {"factor": 8.0, "rope_type": "linear"}`, 1)
	if cfg, err := ParseConfig([]byte(older), "c.json"); err != nil || cfg != scaled {
		t.Errorf("4B text config with rope_scaling: %+v, %v", cfg, err)
	}

	// Gemma3TextConfig's defaults for absent fields, and other spellings.
	base := `"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 24, "num_hidden_layers": 7, "num_attention_heads": 4, "vocab_size": 19`
	small := llama.Config{Dim: 64, HiddenDim: 24, NumLayers: 7, NumHeads: 4, NumKVHeads: 4, VocabSize: 19, MaxSeqLen: 131072,
		HeadWidth: 256, NormEps: 1e-6, RopeTheta: 1e6, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit, QKNorm: true,
		Family: llama.FamilyGemma3, Activation: llama.GELUTanh, QueryPreAttnScalar: 256, LayerKinds: "sssssfs",
		SlidingWindow: 4096, LocalRopeTheta: 10000}
	with := func(f func(*llama.Config)) llama.Config { c := small; f(&c); return c }
	checkParsed(t, []parsed{
		{`{` + base + `}`, small},
		{`{` + base + `, "head_dim": 16, "num_key_value_heads": 2, "tie_word_embeddings": false, "hidden_act": "gelu"}`,
			with(func(c *llama.Config) { c.HeadWidth, c.NumKVHeads, c.TiedEmbeddings = 0, 2, false })},
		{`{` + base + `, "sliding_window_pattern": 2, "_sliding_window_pattern": 2.0, "sliding_window": 3, "query_pre_attn_scalar": 24.5}`,
			with(func(c *llama.Config) { c.LayerKinds, c.SlidingWindow, c.QueryPreAttnScalar = "sfsfsfs", 3, 24.5 })},
		// Every layer full: the window and local base go unused.
		{`{` + base + `, "sliding_window_pattern": 1, "sliding_window": null, "rope_local_base_freq": 5.0}`,
			with(func(c *llama.Config) { c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = "", 0, 0 })},
		{`{` + base + `, "layer_types": ["full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention", "full_attention"]}`,
			with(func(c *llama.Config) { c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = "", 0, 0 })},
		{`{` + base + `, "layer_types": null, "attention_bias": true, "hidden_activation": "silu", "rope_scaling": {"rope_type": "default"}}`,
			with(func(c *llama.Config) { c.AttentionBias, c.Activation = llama.BiasQKVO, llama.SiLU })},
		{`{` + base + `, "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 500000.0}, "sliding_attention": {"rope_type": "default", "rope_theta": 1000.0}}}`,
			with(func(c *llama.Config) { c.RopeTheta, c.LocalRopeTheta = 5e5, 1000 })},
		{`{` + base + `, "rope_theta": 500000.0, "rope_local_base_freq": 1000.0, "rope_parameters": {"full_attention": {"rope_theta": 500000.0}, "sliding_attention": null}}`,
			with(func(c *llama.Config) { c.RopeTheta, c.LocalRopeTheta = 5e5, 1000 })},
	})

	checkRefused(t, []refused{
		{`{"model_type": "gemma3", "text_config": {"model_type": "gemma3_text"}}`, `model_type is "gemma3": Gemma3ForConditionalGeneration, the multimodal Gemma 3`},
		{strings.Replace(gemma3_1BConfig, `"gemma3_text"`, `"gemma"`, 1), `model_type is "gemma", which is not supported`},
		{strings.Replace(gemma3_1BConfig, `"attn_logit_softcapping": null`, `"attn_logit_softcapping": 50.0`, 1),
			`attn_logit_softcapping is 50.0; logit soft-capping is not supported in a Gemma 3 config (expected null, as Gemma 3 sets it; Gemma 2's configs, model_type "gemma2", have it)`},
		{strings.Replace(gemma3_1BConfig, `"final_logit_softcapping": null`, `"final_logit_softcapping": 30.0`, 1), "final_logit_softcapping is 30.0"},
		{strings.Replace(gemma3_270MConfig, `"use_bidirectional_attention": false`, `"use_bidirectional_attention": true`, 1), "use_bidirectional_attention is true"},
		{strings.Replace(gemma3_1BConfig, `"gelu_pytorch_tanh"`, `"gelu"`, 1), `hidden_activation is "gelu"; only "gelu_pytorch_tanh" (Gemma's) and "silu" are supported`},
		{strings.Replace(gemma3_1BConfig, `"head_dim": 256`, `"head_dim": null`, 1), "head_dim is null; Gemma 3 needs the width"},
		{strings.Replace(gemma3_1BConfig, `"head_dim": 256`, `"head_dim": 255`, 1), "head_dim 255 must be even"},
		{strings.Replace(gemma3_1BConfig, `"sliding_window": 512`, `"sliding_window": null`, 1), "sliding_window is null but layer 0 is sliding_attention"},
		{strings.Replace(gemma3_1BConfig, `"sliding_window": 512`, `"sliding_window": 0`, 1), "sliding_window is 0; expected a whole number from 1 to 2147483647"},
		{strings.Replace(gemma3_1BConfig, `"sliding_window": 512`, `"sliding_window": 1e12`, 1), "sliding_window is 1e12; expected a whole number from 1 to 2147483647"},
		{strings.Replace(gemma3_1BConfig, `"sliding_window_pattern": 6`, `"sliding_window_pattern": 0`, 1), "sliding_window_pattern is 0; expected a whole number from 1 to 2147483647"},
		{strings.Replace(gemma3_1BConfig, `"sliding_window_pattern": 6`, `"sliding_window_pattern": 6e9`, 1), "sliding_window_pattern is 6e9; expected a whole number from 1 to 2147483647"},
		{strings.Replace(gemma3_1BConfig, `"sliding_window_pattern": 6`, `"sliding_window_pattern": 6, "_sliding_window_pattern": 3`, 1),
			"sliding_window_pattern is 6 but _sliding_window_pattern is 3"},
		{strings.Replace(gemma3_270MConfig, `"full_attention"
  ]`, `"global"
  ]`, 1), `layer_types[17] is "global"; expected "full_attention" or "sliding_attention"`},
		{strings.Replace(gemma3_270MConfig, `"num_hidden_layers": 18`, `"num_hidden_layers": 17`, 1), "layer_types lists 18 layers; num_hidden_layers is 17"},
		{strings.Replace(gemma3_1BConfig, `"query_pre_attn_scalar": 256`, `"query_pre_attn_scalar": 0`, 1), "query_pre_attn_scalar is 0; expected a positive number"},
		{strings.Replace(gemma3_1BConfig, `"attention_dropout": 0.0`, `"attention_dropout": 0.1`, 1), "attention_dropout is 0.1"},
		{strings.Replace(gemma3_1BConfig, `"rope_scaling": null`, `"rope_scaling": {"rope_type": "yarn", "factor": 4.0}`, 1), `rope_scaling.rope_type is "yarn"`},
		{strings.Replace(gemma3_4BTextConfig, `"rope_type": "default"}`, `"rope_type": "linear", "factor": 2.0}`, 1),
			"rope_parameters.sliding_attention scales the sliding layers' rotary embedding"},
		{strings.Replace(gemma3_4BTextConfig, `"factor": 8.0, "rope_type": "linear"`, `"factor": 8.0, "rope_type": "linear", "rope_theta": 10.0`, 1),
			"rope_theta is 1e+06 but rope_parameters.full_attention.rope_theta is 10"},
		{strings.Replace(gemma3_4BTextConfig, `"sliding_attention": {"rope_type": "default"}`, `"sliding_attention": {"rope_type": "default", "rope_theta": 20.0}`, 1),
			"rope_local_base_freq is 10000 but rope_parameters.sliding_attention.rope_theta is 20"},
		{strings.Replace(gemma3_4BTextConfig, `"full_attention": {`, `"rope_theta": 5.0, "full_attention": {`, 1),
			"rope_parameters.rope_theta is set; Gemma 3's rope_parameters are keyed by layer type"},
		{strings.Replace(gemma3_4BTextConfig, `"rope_local_base_freq": 10000.0,`, `"rope_local_base_freq": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 4.0},`, 1),
			`rope_scaling ({"rope_type":"linear","factor":4.0}) and rope_parameters.full_attention`},
		{`{"model_type": "gemma3_text", "hidden_size": 64}`, "missing required field intermediate_size"},
		// Checked before the layers' kinds are made (a negative count
		// panicked in make, a huge one allocated a byte per layer).
		{strings.Replace(gemma3_1BConfig, `"num_hidden_layers": 26`, `"num_hidden_layers": -1`, 1), "num_hidden_layers is -1; expected 1 to 1048576"},
		{strings.Replace(gemma3_1BConfig, `"num_hidden_layers": 26`, `"num_hidden_layers": 0`, 1), "num_hidden_layers is 0; expected 1 to 1048576"},
		{strings.Replace(gemma3_1BConfig, `"num_hidden_layers": 26`, `"num_hidden_layers": 2000000000`, 1), "num_hidden_layers is 2000000000; expected 1 to 1048576"},
	})
}

// gemmaTiny is a tiny Gemma 3 for files: heads 6 wide over width 16,
// layers sliding then full, a window of 3, query_pre_attn_scalar 6.
func gemmaTiny(tied bool) llama.Config {
	c := tinyConfig(tied, 2)
	c.HeadWidth, c.QKNorm, c.Family, c.Activation = 6, true, llama.FamilyGemma3, llama.GELUTanh
	c.QueryPreAttnScalar, c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = 6, "sf", 3, 10000
	c.NormEps, c.RopeTheta = 1e-6, 1e6
	return c
}

// TestEncodeGemma3Config checks the config.json of a Gemma 3 model:
// Gemma3TextConfig's fields, layer_types and the matching
// sliding_window_pattern, null soft-capping; and that it parses back to the
// same configuration, the published ones included.
func TestEncodeGemma3Config(t *testing.T) {
	scaled := gemmaTiny(false)
	scaled.RopeScaling = llama.RopeScaling{Type: llama.RopeScalingLinear, Factor: 8}
	scaled.AttentionBias = llama.BiasQKVO
	full := gemmaTiny(true)
	full.LayerKinds, full.SlidingWindow, full.LocalRopeTheta = "", 0, 0
	odd := gemmaTiny(true)
	odd.LayerKinds = "fs" // no pattern gives a full layer before a sliding one
	// The absent fields are ones Gemma3TextConfig does not have or the
	// layers contradict.
	checkEncoded(t, gemmaTiny(true), map[string]any{"model_type": "gemma3_text", "architectures": []any{"Gemma3ForCausalLM"}, "head_dim": 6.0,
		"hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 6.0, "sliding_window": 3.0, "rope_local_base_freq": 10000.0,
		"layer_types": []any{"sliding_attention", "full_attention"}, "sliding_window_pattern": 2.0, "attn_logit_softcapping": nil,
		"final_logit_softcapping": nil, "tie_word_embeddings": true, "attention_bias": false, "rope_scaling": nil}, []string{"hidden_act", "mlp_bias"})
	checkEncoded(t, scaled, map[string]any{"rope_scaling": map[string]any{"rope_type": "linear", "factor": 8.0}, "attention_bias": true, "tie_word_embeddings": false}, nil)
	checkEncoded(t, full, map[string]any{"layer_types": []any{"full_attention", "full_attention"}, "sliding_window_pattern": 1.0, "sliding_window": 4096.0}, nil)
	checkEncoded(t, odd, map[string]any{"layer_types": []any{"full_attention", "sliding_attention"}}, []string{"sliding_window_pattern"})
	for _, published := range []string{gemma3_270MConfig, gemma3_1BConfig, gemma3_4BTextConfig} {
		cfg, err := ParseConfig([]byte(published), "c.json")
		if err != nil {
			t.Fatal(err)
		}
		raw, err := EncodeConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := ParseConfig(raw, "again.json"); err != nil || back != cfg {
			t.Errorf("round trip of a published config: %+v, %v; want %+v", back, err, cfg)
		}
	}
}

// TestWriteLoadGemma3 writes tiny Gemma 3 models (tied and untied, whole
// and sharded, with attention_bias, from either rotary layout) and loads
// them back bit for bit, config included. The norm weights are offsets
// near 0 that 1 + w in float32 would round away (1e-9), so a writer that
// stored 1 + w, or a loader that subtracted one, would be caught; the file
// holds Gemma's norm names; and the model built from the folder computes
// the source's logits.
func TestWriteLoadGemma3(t *testing.T) {
	b := testbackend.Open(t, "cpu")
	rng := rand.New(rand.NewSource(53))
	for _, tc := range fileCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.config(gemmaTiny)
			src := randomWeights(t, rng, cfg)
			src.Layers[1].PostFFNNorm[3] = 1e-9
			src.FinalNorm[0] = -3e-10
			f, got := roundTrip(t, b, src, tc.shard, []int32{1, 7, 18, 3, 3, 11, 4}, "gemma3_text", ArchGemma3)
			if got.Layers[1].PostFFNNorm[3] != 1e-9 || got.FinalNorm[0] != -3e-10 {
				t.Errorf("norm offsets read back as %v and %v", got.Layers[1].PostFFNNorm[3], got.FinalNorm[0])
			}
			if f != nil {
				for name, want := range map[string][]float32{
					"model.layers.1.post_attention_layernorm.weight":   src.Layers[1].PostAttnNorm,
					"model.layers.1.pre_feedforward_layernorm.weight":  src.Layers[1].FFNNorm,
					"model.layers.1.post_feedforward_layernorm.weight": src.Layers[1].PostFFNNorm,
					"model.layers.0.input_layernorm.weight":            src.Layers[0].AttnNorm,
				} {
					data, err := f.Float32(name)
					if err != nil {
						t.Fatal(err)
					}
					for i := range want {
						if math.Float32bits(data[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s[%d] in the file is %v, want %v", name, i, data[i], want[i])
						}
					}
				}
			}
		})
	}
}

// TestLoadGemma3Errors: a Gemma 3 folder must hold its four norms of every
// layer with their shapes, and a LLaMA folder must not hold Gemma's.
func TestLoadGemma3Errors(t *testing.T) {
	rng := rand.New(rand.NewSource(59))
	cfg := gemmaTiny(true)
	cfg.RopeLayout = llama.RopeHalfSplit
	good := tensorsOf(randomWeights(t, rng, cfg))
	plain := qwen3Tiny(true)
	plain.RopeLayout = llama.RopeHalfSplit
	checkBadFolders(t, []badFolder{
		{"missing post-ffn norm", cfg, without(good, "model.layers.1.post_feedforward_layernorm.weight"),
			`model.safetensors: no tensor "model.layers.1.post_feedforward_layernorm.weight"`},
		{"pre-ffn norm shape", cfg, reshaped(good, "model.layers.0.pre_feedforward_layernorm.weight", 4, 4),
			`tensor "model.layers.0.pre_feedforward_layernorm.weight" has shape [4 4]; the config implies [16]`},
		{"gemma norms in a qwen3 folder", plain, good, `Gemma's feed-forward norms: a Gemma 2 checkpoint needs model_type "gemma2" in config.json, a Gemma 3 one "gemma3_text"`},
	})
}
