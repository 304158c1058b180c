package hf_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/models/hf"
	"github.com/sora-go/sora/models/llama"
)

// Example writes weights held in llama2.c's rotary layout as a Hugging Face
// checkpoint and loads them back (in the half-split layout), as
// "sora convert" does.
func Example() {
	cfg := llama.Config{Dim: 8, HiddenDim: 16, NumLayers: 2, NumHeads: 2, NumKVHeads: 1, VocabSize: 32, MaxSeqLen: 16,
		NormEps: llama.DefaultNormEps, RopeTheta: llama.DefaultRopeTheta, TiedEmbeddings: true}
	w, err := llama.NewWeights(cfg)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "hf-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "tiny-llama")
	if err := hf.Write(out, w, nil); err != nil {
		log.Fatal(err)
	}

	loaded, err := hf.Load(out)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(loaded.Config.RopeLayout, loaded.Config.TiedEmbeddings, len(loaded.Params()))
	// Output: half-split true 20
}

// ExampleOpen puts a Hugging Face checkpoint on a backend a slab of one
// tensor's rows at a time, with its linear layers' weights and its
// embedding in bfloat16, as "sora finetune" does: the host never holds
// the whole model, nor its largest tensor, in float32.
func ExampleOpen() {
	cfg := llama.Config{Dim: 8, HiddenDim: 16, NumLayers: 2, NumHeads: 2, NumKVHeads: 1, VocabSize: 32, MaxSeqLen: 16,
		NormEps: llama.DefaultNormEps, RopeTheta: llama.DefaultRopeTheta}
	w, err := llama.NewWeights(cfg)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "hf-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := hf.Write(dir, w, nil); err != nil {
		log.Fatal(err)
	}

	b, err := backend.Open("cpu")
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	src, err := hf.Open(dir) // config.json and the files' headers; no tensor yet
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	m, err := llama.NewFromSource(b, src, llama.Options{BaseDType: backend.BFloat16})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Free()
	fmt.Println(m.Config().RopeLayout, m.BaseDType(), len(m.Params()), b.BytesInUse())
	// Output: half-split bfloat16 21 3488
}

// ExampleParseConfig reads the shape of a Qwen3 config.json: heads wider
// than hidden_size / num_attention_heads, and QK-norm.
func ExampleParseConfig() {
	cfg, err := hf.ParseConfig([]byte(`{"model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072,
		"num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
		"vocab_size": 151936, "tie_word_embeddings": true}`), "config.json")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.HeadDim(), cfg.QDim(), cfg.QKNorm, cfg.NumParams())
	// Output: 128 2048 true 596049920
}

// ExampleParseConfig_gemma3 reads Gemma 3 1B's layer layout: every sixth
// layer attends to the whole sequence with rope_theta, the others to the
// last 512 positions with rope_local_base_freq.
func ExampleParseConfig_gemma3() {
	cfg, err := hf.ParseConfig([]byte(`{"model_type": "gemma3_text", "hidden_size": 1152, "intermediate_size": 6912,
		"num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
		"vocab_size": 262144, "sliding_window": 512, "sliding_window_pattern": 6, "max_position_embeddings": 32768}`), "config.json")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Family, cfg.LayerKinds, cfg.SlidingWindow, cfg.LocalRopeTheta, cfg.RopeTheta, cfg.NumParams())
	// Output: gemma3 sssssfsssssfsssssfsssssfss 512 10000 1e+06 999885952
}
