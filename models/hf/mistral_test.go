package hf

import (
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/models/llama"
)

// mistral7Bv03Config is mistralai/Mistral-7B-v0.3's config.json as
// published on the Hugging Face hub (written out here from its values):
// no sliding window, a 32768-token vocabulary.
const mistral7Bv03Config = `{
  "architectures": [
    "MistralForCausalLM"
  ],
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.42.0.dev0",
  "use_cache": true,
  "vocab_size": 32768
}
`

// mistral7Bv01Config is mistralai/Mistral-7B-v0.1's config.json: a
// 4096-token sliding window over a 32768-token context.
const mistral7Bv01Config = `{
  "architectures": [
    "MistralForCausalLM"
  ],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "sliding_window": 4096,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.34.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
}
`

func TestParseMistralConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(mistral7Bv03Config), "Mistral-7B-v0.3/config.json")
	if err != nil {
		t.Fatal(err)
	}
	want := llama.Config{Dim: 4096, HiddenDim: 14336, NumLayers: 32, NumHeads: 32, NumKVHeads: 8, VocabSize: 32768,
		MaxSeqLen: 32768, NormEps: 1e-5, RopeTheta: 1e6, RopeLayout: llama.RopeHalfSplit, Family: llama.FamilyMistral}
	if cfg != want {
		t.Fatalf("Mistral-7B-v0.3:\n got %+v\nwant %+v", cfg, want)
	}
	// The hub's safetensors total for Mistral-7B-v0.3.
	if n := cfg.NumParams(); n != 7248023552 {
		t.Errorf("Mistral-7B-v0.3 has %d parameters, want 7248023552", n)
	}

	// Mistral Nemo (Mistral-Nemo-Base-2407): 5120 / 32 heads is 160, but
	// its heads are 128 wide. Its config is Mistral-7B-v0.3's with these
	// fields changed. By hand: per layer q_proj and o_proj 32·128·5120 =
	// 20,971,520 each, k_proj and v_proj 8·128·5120 = 5,242,880 each, the
	// feed-forward 3·14336·5120 = 220,200,960 and two norms of 5120, so
	// 272,640,000; 40 layers 10,905,600,000; the embedding and lm_head
	// 131072·5120 = 671,088,640 each and the final norm 5120: in all
	// 12,247,782,400, the hub's safetensors total (24,495,564,800 bytes of
	// bf16).
	nemo, err := ParseConfig([]byte(strings.NewReplacer(`"hidden_size": 4096`, `"hidden_size": 5120`, `"num_hidden_layers": 32`, `"num_hidden_layers": 40`,
		`"vocab_size": 32768`, `"vocab_size": 131072`, `"max_position_embeddings": 32768`, `"max_position_embeddings": 1024000`,
		`"sliding_window": null`, `"sliding_window": null, "head_dim": 128`).Replace(mistral7Bv03Config)), "Mistral-Nemo/config.json")
	if err != nil {
		t.Fatal(err)
	}
	if nemo.HeadDim() != 128 || nemo.HeadWidth != 128 || nemo.QDim() != 4096 || nemo.QKNorm || nemo.Family != llama.FamilyMistral {
		t.Errorf("Mistral Nemo: head dim %d (width %d), q dim %d, QK-norm %v, family %q", nemo.HeadDim(), nemo.HeadWidth, nemo.QDim(), nemo.QKNorm, nemo.Family)
	}
	if n := nemo.NumParams(); n != 12247782400 {
		t.Errorf("Mistral Nemo has %d parameters, want 12247782400", n)
	}

	// Mistral 7B v0.1: a 4096-token window over a 32768-token context, on
	// every layer.
	v01, err := ParseConfig([]byte(mistral7Bv01Config), "Mistral-7B-v0.1/config.json")
	if err != nil {
		t.Fatal(err)
	}
	if v01.LayerKinds != strings.Repeat("s", 32) || v01.SlidingWindow != 4096 || v01.LocalRopeTheta != 10000 || v01.Family != llama.FamilyMistral {
		t.Errorf("Mistral-7B-v0.1: layer kinds %q, window %d, local theta %v, family %q", v01.LayerKinds, v01.SlidingWindow, v01.LocalRopeTheta, v01.Family)
	}

	// MistralConfig's defaults for absent fields (8 key/value heads, a
	// 131072-token context) and the windows that never take effect.
	base := `"model_type": "mistral", "hidden_size": 32, "intermediate_size": 24, "num_hidden_layers": 3, "num_attention_heads": 8, "vocab_size": 19`
	small := llama.Config{Dim: 32, HiddenDim: 24, NumLayers: 3, NumHeads: 8, NumKVHeads: 8, VocabSize: 19,
		MaxSeqLen: 131072, NormEps: 1e-6, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit, Family: llama.FamilyMistral}
	with := func(f func(*llama.Config)) llama.Config { c := small; f(&c); return c }
	checkParsed(t, []parsed{
		{`{` + base + `, "sliding_window": null}`, small},
		{`{` + base + `, "sliding_window": 131072}`, small},
		{`{` + base + `, "sliding_window": 1e9}`, small},
		{`{` + base + `, "max_position_embeddings": 4096}`, with(func(c *llama.Config) { c.MaxSeqLen = 4096 })}, // absent window: 4096
		{`{` + base + `, "max_position_embeddings": 512, "sliding_window": 4096, "num_key_value_heads": 2}`,
			with(func(c *llama.Config) { c.MaxSeqLen, c.NumKVHeads = 512, 2 })},
		// transformers' Mistral reads no attention_bias, mlp_bias or layer_types.
		{`{` + base + `, "sliding_window": null, "attention_bias": true, "mlp_bias": true, "layer_types": ["sliding_attention"]}`, small},
		{`{` + base + `, "sliding_window": null, "head_dim": 4, "tie_word_embeddings": true}`, with(func(c *llama.Config) { c.TiedEmbeddings = true })},
		// Windows that bite: every layer slides, with the model's own base.
		{`{` + base + `}`, with(func(c *llama.Config) { c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = "sss", 4096, 10000 })},
		{`{` + base + `, "sliding_window": 131071}`, with(func(c *llama.Config) { c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = "sss", 131071, 10000 })},
	})

	checkRefused(t, []refused{
		{`{` + base + `, "sliding_window": 8, "rope_scaling": {"type": "linear", "factor": 2}}`, "sliding_window 8 together with rope_scaling is not supported"},
		{`{` + base + `, "sliding_window": 0}`, "sliding_window is 0; expected null or a positive whole number"},
		// A window makes one attention kind per layer: the layer count
		// is checked first (a negative one panicked in strings.Repeat).
		{strings.Replace(`{`+base+`, "sliding_window": 8}`, `"num_hidden_layers": 3`, `"num_hidden_layers": -1`, 1), "num_hidden_layers is -1; expected 1 to 1048576"},
		{strings.Replace(`{`+base+`, "sliding_window": 8}`, `"num_hidden_layers": 3`, `"num_hidden_layers": 2000000000`, 1), "num_hidden_layers is 2000000000; expected 1 to 1048576"},
		{`{` + base + `, "sliding_window": 4096.5}`, "sliding_window is 4096.5; expected null or a positive whole number"},
		{`{` + base + `, "sliding_window": "4096"}`, `sliding_window is "4096"; expected null or a positive whole number`},
		{`{` + base + `, "sliding_window": null, "num_attention_heads": 4}`, "n_heads 4 is not a multiple of n_kv_heads 8"}, // default 8 kv heads
		{strings.Replace(mistral7Bv03Config, `"attention_dropout": 0.0`, `"attention_dropout": 0.1`, 1), "attention_dropout is 0.1"},
		{strings.Replace(mistral7Bv03Config, `"model_type": "mistral"`, `"model_type": "mixtral"`, 1), `model_type is "mixtral"; expected "llama", "qwen2", "qwen3", "mistral", "gemma2" or "gemma3_text"`},
	})
}

// TestWriteLoadMistral: Write labels a Mistral model as one, with a null
// sliding_window (an absent one would mean 4096), and Load reads it back
// as the same model, Family included, so merging or fully fine-tuning a
// Mistral folder writes a Mistral folder.
func TestWriteLoadMistral(t *testing.T) {
	rng := rand.New(rand.NewSource(53))
	for _, tied := range []bool{false, true} {
		cfg := tinyConfig(tied, 2)
		cfg.Family = llama.FamilyMistral
		src := randomWeights(t, rng, cfg)
		dir, got := writeLoad(t, src, &WriteOptions{MaxShardSize: 3000})
		if got.Config.Family != llama.FamilyMistral {
			t.Fatalf("loaded family %q", got.Config.Family)
		}
		data, err := os.ReadFile(filepath.Join(dir, ConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		// MistralConfig has no attention_bias, mlp_bias or use_sliding_window.
		checkFields(t, data, map[string]any{"model_type": "mistral", "architectures": []any{"MistralForCausalLM"}, "sliding_window": nil},
			[]string{"attention_bias", "mlp_bias", "use_sliding_window"}, "Mistral")
		tokens := []int{1, 7, 18, 3, 3}
		sameLogits(t, logitsAt(t, got, tokens), logitsAt(t, src, tokens))
	}

	// A window that bites is written and read back (Mistral 7B v0.1).
	cfg := tinyConfig(false, 2)
	cfg.Family, cfg.SlidingWindow, cfg.LocalRopeTheta = llama.FamilyMistral, 3, cfg.RopeTheta
	cfg.LayerKinds = strings.Repeat("s", cfg.NumLayers)
	src := randomWeights(t, rng, cfg)
	dir, got := writeLoad(t, src, nil)
	want := cfg
	want.RopeLayout = llama.RopeHalfSplit // as Hugging Face stores it
	if got.Config != want {
		t.Errorf("windowed Mistral read back as %+v, want %+v", got.Config, want)
	}
	sameLogits(t, logitsAt(t, got, []int{1, 7, 18, 3, 3, 9, 2}), logitsAt(t, src, []int{1, 7, 18, 3, 3, 9, 2}))
	data, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"sliding_window": 3`) {
		t.Errorf("windowed Mistral's config.json has no sliding_window 3:\n%s", data)
	}

	// A LLaMA stays a LLaMA, and a family with biases is refused.
	if mt, arch := Architecture(tinyConfig(true, 2)); mt != ModelTypeLlama || arch != ArchLlama {
		t.Errorf("Architecture(llama) = %s, %s", mt, arch)
	}
	bad := tinyConfig(true, 2)
	bad.Family, bad.AttentionBias = llama.FamilyMistral, llama.BiasQKV
	if _, err := EncodeConfig(bad); err == nil || !strings.Contains(err.Error(), "Mistral has none") {
		t.Errorf("EncodeConfig(Mistral with biases): %v", err)
	}
	bad.Family, bad.AttentionBias = "gemma", llama.NoBias
	if _, err := EncodeConfig(bad); err == nil || !strings.Contains(err.Error(), `family "gemma"`) {
		t.Errorf("EncodeConfig(family gemma): %v", err)
	}
}
