package hf

import (
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
)

// qwen3_0_6BConfig is Qwen/Qwen3-0.6B's config.json as published on the
// Hugging Face hub (written out here from its values): heads 128 wide over
// a width of 1024 with 16 of them, so q_proj is [2048, 1024]; the rotary
// base written as the integer 1000000.
const qwen3_0_6BConfig = `{
  "architectures": [
    "Qwen3ForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 1024,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "max_position_embeddings": 40960,
  "max_window_layers": 28,
  "model_type": "qwen3",
  "num_attention_heads": 16,
  "num_hidden_layers": 28,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "sliding_window": null,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
}
`

func TestParseQwen3Config(t *testing.T) {
	cfg, err := ParseConfig([]byte(qwen3_0_6BConfig), "Qwen3-0.6B/config.json")
	if err != nil {
		t.Fatal(err)
	}
	want := llama.Config{Dim: 1024, HiddenDim: 3072, NumLayers: 28, NumHeads: 16, NumKVHeads: 8, VocabSize: 151936,
		MaxSeqLen: 40960, HeadWidth: 128, NormEps: 1e-6, RopeTheta: 1e6, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit,
		QKNorm: true}
	if cfg != want {
		t.Fatalf("Qwen3-0.6B:\n got %+v\nwant %+v", cfg, want)
	}
	// By hand: the embedding 151936·1024 = 155,582,464 (tied: counted
	// once); per layer q_proj 16·128·1024 = 2,097,152, k_proj and v_proj
	// 8·128·1024 = 1,048,576 each, o_proj 1024·2048 = 2,097,152, q_norm
	// and k_norm 128 each, gate, up and down 3·3072·1024 = 9,437,184, and
	// two norms of 1024: 15,730,944; 28 layers 440,466,432; the final norm
	// 1024. In all 596,049,920, the hub's safetensors total (1,192,099,840
	// bytes of bf16), 0.44B of it outside the embedding as the model card
	// says.
	if n := cfg.NumParams(); n != 596049920 {
		t.Errorf("Qwen3-0.6B has %d parameters, want 596049920", n)
	}
	if n := cfg.NumParams() - int64(cfg.VocabSize*cfg.Dim); n != 440467456 {
		t.Errorf("Qwen3-0.6B has %d parameters outside the embedding, want 440467456", n)
	}
	if n := cfg.LayerParams(); n != 15730944 {
		t.Errorf("a Qwen3-0.6B layer has %d parameters, want 15730944", n)
	}
	// Qwen3-8B: hidden 4096 over 32 heads is 128 wide anyway, so the
	// width stays implicit; untied. By hand: per layer q_proj and o_proj
	// 4096·4096 = 16,777,216 each, k_proj and v_proj 1024·4096 = 4,194,304
	// each, the feed-forward 3·12288·4096 = 150,994,944, norms 2·4096 and
	// 2·128: 192,946,432; 36 layers 6,946,071,552; embedding and lm_head
	// 151936·4096 = 622,329,856 each, the final norm 4096: 8,190,735,360,
	// the hub's total.
	c8, err := ParseConfig([]byte(strings.NewReplacer(`"hidden_size": 1024`, `"hidden_size": 4096`, `"intermediate_size": 3072`, `"intermediate_size": 12288`,
		`"num_attention_heads": 16`, `"num_attention_heads": 32`, `"num_hidden_layers": 28`, `"num_hidden_layers": 36`,
		`"max_window_layers": 28`, `"max_window_layers": 36`, `"tie_word_embeddings": true`, `"tie_word_embeddings": false`).Replace(qwen3_0_6BConfig)), "Qwen3-8B/config.json")
	if err != nil {
		t.Fatal(err)
	}
	if c8.HeadWidth != 0 || c8.HeadDim() != 128 || !c8.QKNorm || c8.TiedEmbeddings {
		t.Errorf("Qwen3-8B: %+v", c8)
	}
	if n := c8.NumParams(); n != 8190735360 {
		t.Errorf("Qwen3-8B has %d parameters, want 8190735360", n)
	}

	// Qwen3Config's defaults for absent fields: 32 key/value heads, a
	// 32768-token context and, whatever the width, heads 128 wide.
	base := `"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 24, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 19`
	small := llama.Config{Dim: 64, HiddenDim: 24, NumLayers: 3, NumHeads: 4, NumKVHeads: 4, VocabSize: 19, MaxSeqLen: 32768,
		HeadWidth: 16, NormEps: 1e-6, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit, QKNorm: true}
	with := func(f func(*llama.Config)) llama.Config { c := small; f(&c); return c }
	checkParsed(t, []parsed{
		{`{` + base + `, "num_key_value_heads": 4, "head_dim": 16}`, with(func(c *llama.Config) { c.HeadWidth = 0 })},
		{`{` + base + `, "num_key_value_heads": 2}`, with(func(c *llama.Config) { c.NumKVHeads, c.HeadWidth = 2, 128 })},
		{`{` + base + `, "num_attention_heads": 32, "head_dim": 2}`, with(func(c *llama.Config) { c.NumHeads, c.NumKVHeads, c.HeadWidth = 32, 32, 0 })},
		{`{` + base + `, "num_key_value_heads": null, "head_dim": 16, "attention_bias": true}`,
			with(func(c *llama.Config) { c.HeadWidth, c.AttentionBias = 0, llama.BiasQKVO })},
		// Read as transformers reads them: no mlp_bias (the MLP has none),
		// and a window that use_sliding_window false leaves unused.
		{`{` + base + `, "num_key_value_heads": 4, "head_dim": 8, "mlp_bias": true, "use_sliding_window": false, "sliding_window": 4096, "max_window_layers": 1, "layer_types": ["full_attention", "full_attention", "full_attention"]}`,
			with(func(c *llama.Config) { c.HeadWidth = 8 })},
		{`{` + base + `, "num_key_value_heads": 4, "head_dim": 16, "tie_word_embeddings": true, "max_position_embeddings": 40960, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}`,
			with(func(c *llama.Config) { c.HeadWidth, c.TiedEmbeddings, c.MaxSeqLen, c.RopeTheta = 0, true, 40960, 1e6 })},
	})

	checkRefused(t, []refused{
		{strings.Replace(qwen3_0_6BConfig, `"use_sliding_window": false`, `"use_sliding_window": true`, 1),
			"use_sliding_window is true; sliding-window attention is not supported (expected false, as released Qwen3 checkpoints set it)"},
		{`{` + base + `, "layer_types": ["full_attention", "sliding_attention", "full_attention"]}`, `layer_types[1] is "sliding_attention"; only "full_attention" is supported`},
		{`{` + base + `, "layer_types": ["full_attention"]}`, "layer_types lists 1 layers; num_hidden_layers is 3"},
		{`{` + base + `, "head_dim": null}`, "head_dim is null; Qwen3 needs the width of its attention heads"},
		{strings.Replace(qwen3_0_6BConfig, `"head_dim": 128`, `"head_dim": 127`, 1), "head_dim 127 must be even"},
		{strings.Replace(qwen3_0_6BConfig, `"head_dim": 128`, `"head_dim": 0`, 1), "head_dim is 0; expected null or a positive whole number"},
		// Qwen3's long-context setting, which its model card suggests adding.
		{strings.Replace(qwen3_0_6BConfig, `"rope_scaling": null`, `"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}`, 1),
			`rope_scaling.rope_type is "yarn"`},
		{strings.Replace(qwen3_0_6BConfig, `"attention_dropout": 0.0`, `"attention_dropout": 0.1`, 1), "attention_dropout is 0.1"},
		{strings.Replace(qwen3_0_6BConfig, `"hidden_act": "silu"`, `"hidden_act": "gelu"`, 1), `hidden_act is "gelu"`},
		{strings.Replace(qwen3_0_6BConfig, `"num_key_value_heads": 8`, `"num_key_value_heads": 3`, 1), "n_heads 16 is not a multiple of n_kv_heads 3"},
		{strings.Replace(qwen3_0_6BConfig, `"model_type": "qwen3"`, `"model_type": "qwen3_moe"`, 1), `model_type is "qwen3_moe"`},
	})
}

// qwen3Tiny is hf's tiny model with Qwen3's attention: heads 6 wide over a
// width of 16 (q_proj [24, 16]) and QK-norm.
func qwen3Tiny(tied bool) llama.Config {
	c := tinyConfig(tied, 2)
	c.HeadWidth, c.QKNorm = 6, true
	return c
}

// TestEncodeQwen3Config checks the config.json of a Qwen3 model: Qwen3's
// model_type and architecture, head_dim, attention_bias as the biases say,
// sliding windows off, no LlamaConfig-only mlp_bias; and that it parses
// back to the same configuration. Qwen2's q/k/v biases with QK-norm have
// no architecture and are refused.
func TestEncodeQwen3Config(t *testing.T) {
	biased := qwen3Tiny(false)
	biased.AttentionBias = llama.BiasQKVO
	wide := qwen3Tiny(true)
	wide.HeadWidth = 0 // 16 / 4 heads: head_dim 4, still written
	// Qwen3Config has no mlp_bias.
	checkEncoded(t, qwen3Tiny(true), map[string]any{"model_type": "qwen3", "architectures": []any{"Qwen3ForCausalLM"}, "head_dim": 6.0,
		"attention_bias": false, "use_sliding_window": false, "sliding_window": nil, "max_window_layers": 2.0, "tie_word_embeddings": true}, []string{"mlp_bias"})
	checkEncoded(t, biased, map[string]any{"model_type": "qwen3", "attention_bias": true, "tie_word_embeddings": false}, []string{"mlp_bias"})
	checkEncoded(t, wide, map[string]any{"model_type": "qwen3", "head_dim": 4.0}, []string{"mlp_bias"})
	bad := qwen3Tiny(true)
	bad.AttentionBias = llama.BiasQKV
	if _, err := EncodeConfig(bad); err == nil || !strings.Contains(err.Error(), "QK-norm and biases on q/k/v but not o_proj") {
		t.Errorf("EncodeConfig(QK-norm with q/k/v biases): %v", err)
	}
	if err := Write(filepath.Join(t.TempDir(), "x"), randomWeights(t, rand.New(rand.NewSource(1)), bad), nil); err == nil {
		t.Error("Write wrote a model with QK-norm and q/k/v biases")
	}
	// A head width of its own is written for Qwen2 and LLaMA too.
	for _, c := range []llama.Config{tinyConfig(true, 2), func() llama.Config { c := tinyConfig(true, 2); c.AttentionBias = llama.BiasQKV; return c }()} {
		c.HeadWidth = 6
		raw, err := EncodeConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseConfig(raw, "again.json")
		c.RopeLayout = llama.RopeHalfSplit
		if err != nil || back != c {
			t.Errorf("head width 6, attention bias %v: read back %+v, %v", c.AttentionBias, back, err)
		}
	}
}

// TestWriteLoadQwen3 writes tiny Qwen3 models (tied and untied, whole and
// sharded, with and without attention_bias, from either rotary layout) and
// loads them back bit for bit, config included; the file holds q_norm in
// the half-split order (permuted like a head's rows where the source is
// interleaved); and the model built from the folder computes the source's
// logits.
func TestWriteLoadQwen3(t *testing.T) {
	b := testbackend.Open(t, "cpu")
	rng := rand.New(rand.NewSource(47))
	for _, tc := range fileCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.config(qwen3Tiny)
			src := randomWeights(t, rng, cfg)
			f, got := roundTrip(t, b, src, tc.shard, []int32{1, 7, 18, 3, 3, 11}, "qwen3", ArchQwen3)
			if got.Config.HeadWidth != 6 || !got.Config.QKNorm {
				t.Fatalf("loaded %+v", got.Config)
			}
			if f != nil {
				// q_norm of layer 1: one head's width of weights.
				checkHalfSplitRows(t, f, "model.layers.1.self_attn.q_norm.weight", src.Layers[1].QNorm, cfg.HeadDim(), tc.layout == llama.RopeInterleaved)
				if info, ok := f.Info("model.layers.0.self_attn.q_proj.weight"); !ok || len(info.Shape) != 2 || info.Shape[0] != 24 || info.Shape[1] != 16 {
					t.Errorf("q_proj in the file: %+v", info)
				}
			}
		})
	}
}

// TestLoadQwen3Errors: a Qwen3 folder must hold every q_norm and k_norm
// with its shape, and a folder whose config is not Qwen3's must not hold
// them.
func TestLoadQwen3Errors(t *testing.T) {
	rng := rand.New(rand.NewSource(49))
	cfg := qwen3Tiny(true)
	cfg.RopeLayout = llama.RopeHalfSplit
	good := tensorsOf(randomWeights(t, rng, cfg))
	plain := cfg
	plain.QKNorm = false
	checkBadFolders(t, []badFolder{
		{"missing k_norm", cfg, without(good, "model.layers.1.self_attn.k_norm.weight"), `model.safetensors: no tensor "model.layers.1.self_attn.k_norm.weight"`},
		{"q_norm shape", cfg, reshaped(good, "model.layers.0.self_attn.q_norm.weight", 2, 3),
			`tensor "model.layers.0.self_attn.q_norm.weight" has shape [2 3]; the config implies [6]`},
		{"q_proj as if square", cfg, reshaped(good, "model.layers.0.self_attn.q_proj.weight", 16, 16),
			`tensor "model.layers.0.self_attn.q_proj.weight" has shape [16 16]; the config implies [24 16]`},
		{"norms in a llama folder", plain, good, `QK-norm weights: a Qwen3 checkpoint needs model_type "qwen3"`},
	})
	// The config as Qwen writes it, over the same tensors, loads.
	w := loadPublished(t, cfg, good, qwen3_0_6BConfig, `"hidden_size": 1024`, `"hidden_size": 16`, `"intermediate_size": 3072`, `"intermediate_size": 24`,
		`"num_attention_heads": 16`, `"num_attention_heads": 4`, `"num_key_value_heads": 8`, `"num_key_value_heads": 2`,
		`"num_hidden_layers": 28`, `"num_hidden_layers": 2`, `"head_dim": 128`, `"head_dim": 6`, `"vocab_size": 151936`, `"vocab_size": 19`)
	if !w.Config.QKNorm || w.Config.HeadDim() != 6 || w.Config.RopeTheta != 1e6 || w.Layers[1].KNorm == nil {
		t.Errorf("loaded %+v", w.Config)
	}
}
