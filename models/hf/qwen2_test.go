package hf

import (
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/safetensors"
)

// qwen25Config is Qwen/Qwen2.5-0.5B's config.json as published on the
// Hugging Face hub (written out here from its values).
const qwen25Config = `{
  "architectures": [
    "Qwen2ForCausalLM"
  ],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151643,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 24,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1",
  "use_cache": true,
  "use_mrope": false,
  "use_sliding_window": false,
  "vocab_size": 151936
}
`

// qwen2_7BInstructConfig is Qwen/Qwen2-7B-Instruct's config.json: untied,
// with a null sliding_window and rope_scaling.
const qwen2_7BInstructConfig = `{
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 3584,
  "initializer_range": 0.02,
  "intermediate_size": 18944,
  "max_position_embeddings": 32768,
  "max_window_layers": 28,
  "model_type": "qwen2",
  "num_attention_heads": 28,
  "num_hidden_layers": 28,
  "num_key_value_heads": 4,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000.0,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 152064
}`

func TestParseQwen2Config(t *testing.T) {
	cfg, err := ParseConfig([]byte(qwen25Config), "Qwen2.5-0.5B/config.json")
	if err != nil {
		t.Fatal(err)
	}
	want := llama.Config{Dim: 896, HiddenDim: 4864, NumLayers: 24, NumHeads: 14, NumKVHeads: 2, VocabSize: 151936,
		MaxSeqLen: 32768, NormEps: 1e-6, RopeTheta: 1e6, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit,
		AttentionBias: llama.BiasQKV}
	if cfg != want {
		t.Fatalf("Qwen2.5-0.5B: %+v, want %+v", cfg, want)
	}
	// The model card gives 0.49B parameters, 0.36B of them outside the
	// embedding; the hub's safetensors total is 494,032,768.
	if n := cfg.NumParams(); n != 494032768 {
		t.Errorf("Qwen2.5-0.5B has %d parameters, want 494032768", n)
	}
	if n := cfg.NumParams() - int64(cfg.VocabSize*cfg.Dim); math.Abs(float64(n)/1e9-0.36) > 0.005 {
		t.Errorf("Qwen2.5-0.5B has %d non-embedding parameters, want 0.36B", n)
	}
	cfg, err = ParseConfig([]byte(qwen2_7BInstructConfig), "c.json")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dim != 3584 || cfg.NumKVHeads != 4 || cfg.TiedEmbeddings || cfg.AttentionBias != llama.BiasQKV || cfg.VocabSize != 152064 {
		t.Errorf("Qwen2-7B-Instruct: %+v", cfg)
	}
	// Qwen2Config's defaults for the absent fields, which are not
	// LlamaConfig's; and a LLaMA with attention_bias has all four biases.
	base := `"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 19`
	checkParsed(t, []parsed{
		// An absent num_key_value_heads is Qwen2Config's 32, a null one
		// num_attention_heads.
		{`{"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 24, "num_hidden_layers": 3, "num_attention_heads": 32, "vocab_size": 19}`,
			llama.Config{Dim: 64, HiddenDim: 24, NumLayers: 3, NumHeads: 32, NumKVHeads: 32, VocabSize: 19,
				MaxSeqLen: 32768, NormEps: 1e-6, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit, AttentionBias: llama.BiasQKV}},
		{`{"model_type": "qwen2", "num_key_value_heads": null, ` + base + `}`, llama.Config{Dim: 16, HiddenDim: 24, NumLayers: 3, NumHeads: 4, NumKVHeads: 4, VocabSize: 19,
			MaxSeqLen: 32768, NormEps: 1e-6, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit, AttentionBias: llama.BiasQKV}},
		// Qwen2 ignores attention_bias and mlp_bias, as transformers does.
		{`{"model_type": "qwen2", "attention_bias": false, "mlp_bias": true, "sliding_window": 4096, "max_window_layers": 1, "use_sliding_window": false, "layer_types": ["full_attention", "full_attention", "full_attention"], "num_key_value_heads": 2, ` + base + `}`,
			llama.Config{Dim: 16, HiddenDim: 24, NumLayers: 3, NumHeads: 4, NumKVHeads: 2, VocabSize: 19,
				MaxSeqLen: 32768, NormEps: 1e-6, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit, AttentionBias: llama.BiasQKV}},
		{`{"model_type": "llama", "attention_bias": true, "mlp_bias": false, "attention_dropout": 0.0, ` + base + `}`, llama.Config{Dim: 16, HiddenDim: 24, NumLayers: 3, NumHeads: 4, NumKVHeads: 4, VocabSize: 19,
			MaxSeqLen: 2048, NormEps: 1e-6, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit, AttentionBias: llama.BiasQKVO}},
		{`{"attention_bias": false, ` + base + `}`, llama.Config{Dim: 16, HiddenDim: 24, NumLayers: 3, NumHeads: 4, NumKVHeads: 4, VocabSize: 19,
			MaxSeqLen: 2048, NormEps: 1e-6, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit}},
	})
	checkRefused(t, []refused{
		{strings.Replace(qwen25Config, `"use_sliding_window": false`, `"use_sliding_window": true`, 1), "use_sliding_window is true; sliding-window attention is not supported"},
		{strings.Replace(qwen25Config, `"use_mrope": false`, `"use_mrope": true`, 1), "use_mrope is true"},
		{strings.Replace(qwen25Config, `"attention_dropout": 0.0`, `"attention_dropout": 0.1`, 1), "attention_dropout is 0.1"},
		{strings.Replace(qwen25Config, `"model_type": "qwen2"`, `"model_type": "qwen3_moe"`, 1), `model_type is "qwen3_moe"; expected "llama", "qwen2", "qwen3", "mistral", "gemma2" or "gemma3_text"`},
		{strings.Replace(qwen25Config, `"hidden_act": "silu"`, `"hidden_act": "gelu"`, 1), `hidden_act is "gelu"`},
		{`{"model_type": "qwen2", "layer_types": ["full_attention", "full_attention", "sliding_attention"], ` + base + `}`, `layer_types[2] is "sliding_attention"; only "full_attention" is supported`},
		{`{"model_type": "qwen2", "layer_types": ["full_attention"], ` + base + `}`, "layer_types lists 1 layers; num_hidden_layers is 3"},
		{`{"model_type": "qwen2", "layer_types": "full_attention", ` + base + `}`, `layer_types is "full_attention"; expected a list of strings`},
		{`{"model_type": "qwen2", "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}, ` + base + `}`, `rope_scaling.type is "yarn"`},
		{`{"model_type": "llama", "mlp_bias": true, ` + base + `}`, "mlp_bias is true"},
	})
}

// TestEncodeQwen2Config checks the config.json Write gives each kind of
// biased model: Qwen2's for q/k/v biases (no LlamaConfig-only fields,
// sliding windows off), LLaMA's with attention_bias for q/k/v/o; and that
// it parses back to the same configuration.
func TestEncodeQwen2Config(t *testing.T) {
	qwen, err := ParseConfig([]byte(qwen25Config), "c.json")
	if err != nil {
		t.Fatal(err)
	}
	llamaBias := tinyConfig(false, 2)
	llamaBias.AttentionBias = llama.BiasQKVO
	checkEncoded(t, qwen, map[string]any{"model_type": "qwen2", "architectures": []any{"Qwen2ForCausalLM"}, "use_sliding_window": false,
		"sliding_window": nil, "max_window_layers": 24.0, "rope_theta": 1e6, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
		"num_key_value_heads": 2.0, "attention_dropout": 0.0},
		[]string{"head_dim", "attention_bias", "mlp_bias", "bos_token_id", "eos_token_id"})
	checkEncoded(t, llamaBias, map[string]any{"model_type": "llama", "architectures": []any{"LlamaForCausalLM"}, "attention_bias": true, "mlp_bias": false, "head_dim": 4.0},
		[]string{"use_sliding_window", "bos_token_id", "eos_token_id"})
	checkEncoded(t, tinyConfig(true, 2), map[string]any{"model_type": "llama", "attention_bias": false}, nil)
}

// TestWriteLoadBiases writes biased models (Qwen2's q/k/v and LLaMA's
// q/k/v/o; tied and untied; whole and sharded; from either rotary layout)
// and loads them back bit for bit, q and k biases permuted with their rows
// where the source is interleaved; the file holds the half-split rows; and
// the model built from the folder computes the source's logits.
func TestWriteLoadBiases(t *testing.T) {
	b := testbackend.Open(t, "cpu")
	rng := rand.New(rand.NewSource(41))
	for _, tc := range []fileCase{
		{"qwen2 tied", true, llama.BiasQKV, 0, llama.RopeHalfSplit},
		{"qwen2 untied sharded interleaved", false, llama.BiasQKV, 3000, llama.RopeInterleaved},
		{"llama attention_bias", false, llama.BiasQKVO, 0, llama.RopeHalfSplit},
		{"llama attention_bias tied interleaved", true, llama.BiasQKVO, 0, llama.RopeInterleaved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.config(func(tied bool) llama.Config { return tinyConfig(tied, 2) })
			src := randomWeights(t, rng, cfg)
			modelType, arch := "qwen2", "Qwen2ForCausalLM"
			if tc.bias == llama.BiasQKVO {
				modelType, arch = "llama", "LlamaForCausalLM"
			}
			f, _ := roundTrip(t, b, src, tc.shard, []int32{1, 7, 18, 3, 3, 11}, modelType, arch)
			if f != nil {
				// k_proj.bias of layer 1, over its two heads.
				checkHalfSplitRows(t, f, "model.layers.1.self_attn.k_proj.bias", src.Layers[1].Bk, cfg.HeadDim(), tc.layout == llama.RopeInterleaved)
				_, hasO := f.Info("model.layers.0.self_attn.o_proj.bias")
				if hasO != (tc.bias == llama.BiasQKVO) {
					t.Errorf("o_proj.bias in the file: %v", hasO)
				}
			}
		})
	}
}

// TestLoadBiasErrors: a Qwen2 folder must hold every q/k/v bias with its
// shape, and a LLaMA folder without attention_bias must not hold any.
func TestLoadBiasErrors(t *testing.T) {
	rng := rand.New(rand.NewSource(43))
	cfg := tinyConfig(true, 2)
	cfg.AttentionBias, cfg.RopeLayout = llama.BiasQKV, llama.RopeHalfSplit
	good := tensorsOf(randomWeights(t, rng, cfg))
	plain := cfg
	plain.AttentionBias = llama.NoBias
	checkBadFolders(t, []badFolder{
		{"missing v bias", cfg, without(good, "model.layers.1.self_attn.v_proj.bias"), `no tensor "model.layers.1.self_attn.v_proj.bias"`},
		{"bias shape", cfg, reshaped(good, "model.layers.0.self_attn.q_proj.bias", 1, 16),
			`tensor "model.layers.0.self_attn.q_proj.bias" has shape [1 16]; the config implies [16]`},
		{"o bias on qwen2", cfg, append(slices.Clone(good), safetensors.Tensor{Name: "model.layers.0.self_attn.o_proj.bias", Shape: []int{16}, Data: make([]float32, 16)}),
			"does not use: model.layers.0.self_attn.o_proj.bias"},
		{"biases in a llama folder", plain, good, `model.layers.0.self_attn.k_proj.bias, model.layers.0.self_attn.q_proj.bias, model.layers.0.self_attn.v_proj.bias, model.layers.1.self_attn.k_proj.bias, model.layers.1.self_attn.q_proj.bias, … (attention biases, where the config's attention bias is none: a Qwen2 checkpoint needs model_type "qwen2"`},
	})
	// The config as Qwen writes it, over the same tensors, loads.
	w := loadPublished(t, cfg, good, qwen25Config, `"hidden_size": 896`, `"hidden_size": 16`, `"intermediate_size": 4864`, `"intermediate_size": 24`,
		`"num_attention_heads": 14`, `"num_attention_heads": 4`, `"num_hidden_layers": 24`, `"num_hidden_layers": 2`,
		`"vocab_size": 151936`, `"vocab_size": 19`)
	if w.Config.AttentionBias != llama.BiasQKV || w.Config.RopeTheta != 1e6 || w.Layers[1].Bv == nil {
		t.Errorf("loaded %+v", w.Config)
	}
}

// TestKVHeadsNullOrAbsent checks num_key_value_heads as transformers reads
// it: null means num_attention_heads for every model type, an absent field
// the model type's default (LLaMA: num_attention_heads; Qwen2: 32;
// Mistral: 8), and anything but a positive whole number is refused.
func TestKVHeadsNullOrAbsent(t *testing.T) {
	for _, c := range []struct {
		modelType, field string
		want             int // 0: refused
	}{
		{"llama", ``, 32}, {"llama", `"num_key_value_heads": null, `, 32}, {"llama", `"num_key_value_heads": 8, `, 8},
		{"qwen2", ``, 32}, {"qwen2", `"num_key_value_heads": null, `, 32}, {"qwen2", `"num_key_value_heads": 4, `, 4},
		{"mistral", ``, 8}, {"mistral", `"num_key_value_heads": null, `, 32}, {"mistral", `"num_key_value_heads": 16, `, 16},
		{"llama", `"num_key_value_heads": 2.5, `, 0}, {"llama", `"num_key_value_heads": 0, `, 0}, {"qwen2", `"num_key_value_heads": "8", `, 0},
	} {
		js := `{"model_type": "` + c.modelType + `", ` + c.field + `"hidden_size": 128, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 32, "vocab_size": 19, "sliding_window": null}`
		cfg, err := ParseConfig([]byte(js), "c.json")
		switch {
		case c.want == 0:
			if err == nil || !strings.Contains(err.Error(), "num_key_value_heads") {
				t.Errorf("%s: error %v, want one naming num_key_value_heads", js, err)
			}
		case err != nil:
			t.Errorf("%s: %v", js, err)
		case cfg.NumKVHeads != c.want:
			t.Errorf("%s: %d key/value heads, want %d", js, cfg.NumKVHeads, c.want)
		}
	}
}
