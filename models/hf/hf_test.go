package hf

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/testdata"
	"github.com/sora-go/sora/models/internal/reference"
	"github.com/sora-go/sora/models/internal/stories"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/safetensors"
)

func tinyConfig(tied bool, kvHeads int) llama.Config {
	return llama.Config{Dim: 16, HiddenDim: 24, NumLayers: 2, NumHeads: 4, NumKVHeads: kvHeads, VocabSize: 19,
		MaxSeqLen: 8, NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: tied, RopeLayout: llama.RopeInterleaved}
}

func randomWeights(t testing.TB, rng *rand.Rand, cfg llama.Config) *llama.Weights {
	t.Helper()
	w, err := llama.NewWeights(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range w.Params() {
		for i := range p.Data {
			p.Data[i] = float32(rng.NormFloat64() * 0.3)
		}
	}
	return w
}

func sameWeights(t *testing.T, got, want *llama.Weights) {
	t.Helper()
	if got.Config != want.Config {
		t.Fatalf("config %+v, want %+v", got.Config, want.Config)
	}
	gp, wp := got.Params(), want.Params()
	if len(gp) != len(wp) {
		t.Fatalf("%d params, want %d", len(gp), len(wp))
	}
	for i := range wp {
		for j := range wp[i].Data {
			if math.Float32bits(gp[i].Data[j]) != math.Float32bits(wp[i].Data[j]) {
				t.Fatalf("%s[%d] = %v, want %v", wp[i].Name, j, gp[i].Data[j], wp[i].Data[j])
			}
		}
	}
}

func logitsAt(t *testing.T, w *llama.Weights, tokens []int) []float32 {
	t.Helper()
	m, err := reference.New(w)
	if err != nil {
		t.Fatal(err)
	}
	var out []float32
	for pos, tk := range tokens {
		l, err := m.Forward(tk, pos)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out[:0], l...)
	}
	return out
}

func TestWriteLoad(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	cases := []struct {
		name    string
		tied    bool
		kv      int
		shard   int64
		halfSrc bool // source weights already in the half-split layout
	}{
		{"tied mha", true, 4, 0, false},
		{"untied gqa", false, 2, 0, false},
		{"tied gqa sharded", true, 1, 3000, false},
		{"untied sharded half-split source", false, 2, 5000, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := randomWeights(t, rng, tinyConfig(c.tied, c.kv))
			if c.halfSrc {
				src.ToLayout(llama.RopeHalfSplit)
			}
			dir, got := writeLoad(t, src, &WriteOptions{MaxShardSize: c.shard})
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if c.shard > 0 {
				if len(names) < 4 || !contains(names, IndexFile) || contains(names, WeightsFile) {
					t.Fatalf("sharded checkpoint holds %v", names)
				}
			} else if strings.Join(names, ",") != "config.json,model.safetensors" {
				t.Fatalf("checkpoint holds %v", names)
			}
			// The loaded model computes the same function as the source.
			tokens := []int{1, 7, 18, 3, 3}
			sameLogits(t, logitsAt(t, got, tokens), logitsAt(t, src, tokens))
		})
	}
}

// writeLoad writes src as a Hugging Face folder with opts, loads it back
// and checks that the loaded weights are src's, bit for bit, in the
// half-split layout the folder holds. It returns the folder and them.
func writeLoad(t *testing.T, src *llama.Weights, opts *WriteOptions) (string, *llama.Weights) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := Write(dir, src, opts); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := src.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if err := want.ToLayout(llama.RopeHalfSplit); err != nil {
		t.Fatal(err)
	}
	sameWeights(t, got, want)
	return dir, got
}

// sameLogits fails t at the first logit of got (after a round trip) more
// than 1e-4·(1+|want|) from want's (before it).
func sameLogits(t *testing.T, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Abs(float64(want[i]-got[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("logit %d: %v after the round trip, %v before", i, got[i], want[i])
		}
	}
}

// forwardLogits is the training forward of the model built from w on
// backend b over one sequence of tokens: the logits [len(tokens), vocab].
func forwardLogits(t *testing.T, b backend.Backend, w *llama.Weights, tokens []int32) []float32 {
	t.Helper()
	m, err := llama.New(b, w)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	g := graph.New(b)
	defer g.Close()
	lv, err := m.Forward(g, llama.Batch{Tokens: tokens, Size: 1, Len: len(tokens)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := lv.Download()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// TestFileContents checks what Write puts on disk against Hugging Face's
// conventions independently of Load: tensor names, no lm_head when tied,
// q/k rows permuted to the half-split layout, and config.json fields.
func TestFileContents(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	src := randomWeights(t, rng, tinyConfig(true, 2))
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := Write(dir, src, nil); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata()["format"] != "pt" {
		t.Error("safetensors metadata lacks format=pt, which transformers requires")
	}
	if _, ok := f.Info("lm_head.weight"); ok {
		t.Error("tied checkpoint has lm_head.weight")
	}
	if n := len(f.Tensors()); n != 2+9*2 {
		t.Errorf("%d tensors, want %d", n, 2+9*2)
	}
	// k_proj of layer 1: head g, pair i, member j of the interleaved source
	// row 2i+j must be at half-split row j·hd/2+i.
	k, err := f.Float32("model.layers.1.self_attn.k_proj.weight")
	if err != nil {
		t.Fatal(err)
	}
	hd, cols := 4, 16
	for g := 0; g < 2; g++ {
		for i := 0; i < hd/2; i++ {
			for j := 0; j < 2; j++ {
				srcRow, dstRow := g*hd+2*i+j, g*hd+j*hd/2+i
				for col := 0; col < cols; col++ {
					if k[dstRow*cols+col] != src.Layers[1].Wk[srcRow*cols+col] {
						t.Fatalf("k_proj row %d is not source row %d", dstRow, srcRow)
					}
				}
			}
		}
	}
	v, _ := f.Float32("model.layers.1.self_attn.v_proj.weight")
	if v[5] != src.Layers[1].Wv[5] {
		t.Error("v_proj was permuted")
	}
	raw, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"hidden_size": 16.0, "intermediate_size": 24.0, "num_hidden_layers": 2.0, "num_attention_heads": 4.0,
		"num_key_value_heads": 2.0, "vocab_size": 19.0, "max_position_embeddings": 8.0, "rms_norm_eps": 1e-5,
		"rope_theta": 10000.0, "tie_word_embeddings": true, "model_type": "llama", "hidden_act": "silu",
	} {
		if m[k] != want {
			t.Errorf("config.json %s = %v, want %v", k, m[k], want)
		}
	}
}

// TestStories260KConvert converts the real llama2.c checkpoint to the
// Hugging Face layout, loads it back and checks that greedy generation
// still gives llama2.c's text.
func TestStories260KConvert(t *testing.T) {
	modelPath, _ := testdata.Stories260K(t)
	w, tok := stories.Load(t)
	dir := filepath.Join(t.TempDir(), "stories260K-hf")
	if err := Write(dir, w, nil); err != nil {
		t.Fatal(err)
	}
	hfw, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if hfw.Config.RopeLayout != llama.RopeHalfSplit || !hfw.Config.TiedEmbeddings || hfw.Config.NumKVHeads != 4 {
		t.Fatalf("loaded config %+v", hfw.Config)
	}
	m, err := reference.New(hfw)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := reference.Greedy(m, tok.Encode("Once upon a time", true, false), 60)
	if err != nil {
		t.Fatal(err)
	}
	const known = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."
	if got := tok.DecodeAll(seq); !strings.HasPrefix(got, known) {
		t.Fatalf("after conversion: %q, want prefix %q", got, known)
	}
	// And back to llama2.c: byte-identical weights to the original file.
	back := filepath.Join(t.TempDir(), "back.bin")
	if err := llama2c.Write(back, hfw, llama2c.Legacy); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(modelPath)
	again, _ := os.ReadFile(back)
	tables := len(orig) - 4*2*512*4 // the RoPE tables at the end are recomputed
	if len(again) != len(orig) || !bytes.Equal(again[:tables], orig[:tables]) {
		t.Fatal("llama2.c → HF → llama2.c changed the weights")
	}
}

func TestRewriteExistingFolder(t *testing.T) {
	rng := rand.New(rand.NewSource(14))
	dir := t.TempDir() // exists already
	a := randomWeights(t, rng, tinyConfig(false, 2))
	if err := Write(dir, a, &WriteOptions{MaxShardSize: 2000}); err != nil {
		t.Fatal(err)
	}
	b := randomWeights(t, rng, tinyConfig(false, 2))
	if err := Write(dir, b, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, IndexFile)); !os.IsNotExist(err) {
		t.Fatal("stale index left beside the new single-file weights")
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := b.Clone()
	want.ToLayout(llama.RopeHalfSplit)
	sameWeights(t, got, want)
}

// TestRewriteRemovesStaleShards rewrites one folder with fewer shards, then
// with none: the shards of the earlier writes must go, files that only look
// alike must stay, and the result must load as the last weights written.
func TestRewriteRemovesStaleShards(t *testing.T) {
	rng := rand.New(rand.NewSource(15))
	dir := t.TempDir()
	shardsIn := func() []string {
		names, err := filepath.Glob(filepath.Join(dir, shardPattern))
		if err != nil {
			t.Fatal(err)
		}
		for i := range names {
			names[i] = filepath.Base(names[i])
		}
		return names
	}
	// Not shards by the pattern, or not files: these must survive.
	keep := []string{"model-notes.txt", "model.safetensors.bak", "tokenizer.json"}
	for _, n := range keep {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "model-00001-of-00099.safetensors"), 0o755); err != nil {
		t.Fatal(err)
	}
	keep = append(keep, "model-00001-of-00099.safetensors")
	var last *llama.Weights
	var counts []int
	for _, shard := range []int64{1000, 3000, 0} {
		last = randomWeights(t, rng, tinyConfig(false, 2))
		if err := Write(dir, last, &WriteOptions{MaxShardSize: shard}); err != nil {
			t.Fatal(err)
		}
		got, err := Load(dir)
		if err != nil {
			t.Fatalf("shard size %d: %v", shard, err)
		}
		want, _ := last.Clone()
		want.ToLayout(llama.RopeHalfSplit)
		sameWeights(t, got, want)
		current := map[string]bool{}
		if shard > 0 {
			data, err := os.ReadFile(filepath.Join(dir, IndexFile))
			if err != nil {
				t.Fatal(err)
			}
			wm, err := ParseIndex(data, IndexFile)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range wm {
				current[f] = true
			}
		}
		counts = append(counts, len(current))
		for _, name := range shardsIn() {
			if !current[name] && name != "model-00001-of-00099.safetensors" {
				t.Errorf("shard size %d: stale shard %s left beside %d new ones", shard, name, len(current))
			}
		}
	}
	if counts[0] <= counts[1] || counts[1] < 2 || counts[2] != 0 {
		t.Errorf("shard counts %v; want fewer at each rewrite, ending with none", counts)
	}
	for _, n := range keep {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s, not a shard of this writer, was removed: %v", n, err)
		}
	}
}

func TestParseConfig(t *testing.T) {
	base := `"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 19`
	cfg, err := ParseConfig([]byte(`{`+base+`}`), "c.json")
	if err != nil {
		t.Fatal(err)
	}
	// LlamaConfig's defaults for the absent fields.
	want := llama.Config{Dim: 16, HiddenDim: 24, NumLayers: 2, NumHeads: 4, NumKVHeads: 4, VocabSize: 19, MaxSeqLen: 2048,
		NormEps: 1e-6, RopeTheta: 10000, TiedEmbeddings: false, RopeLayout: llama.RopeHalfSplit}
	if cfg != want {
		t.Errorf("defaults: %+v, want %+v", cfg, want)
	}
	cfg, err = ParseConfig([]byte(`{`+base+`, "num_key_value_heads": 2, "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "max_position_embeddings": 4096, "rope_scaling": null, "head_dim": 4, "torch_dtype": "bfloat16"}`), "c.json")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NumKVHeads != 2 || cfg.RopeTheta != 500000 || cfg.NormEps != 1e-5 || !cfg.TiedEmbeddings || cfg.MaxSeqLen != 4096 || cfg.HeadWidth != 0 {
		t.Errorf("explicit fields: %+v", cfg)
	}
	// head_dim: null or hidden_size / num_attention_heads leave the width
	// implicit; another one is the width, even where the heads do not
	// divide hidden_size.
	for _, c := range []struct {
		json      string
		width, hd int
	}{
		{`{` + base + `, "head_dim": null}`, 0, 4},
		{`{` + base + `, "head_dim": 4.0}`, 0, 4},
		{`{` + base + `, "head_dim": 8}`, 8, 8},
		{`{` + base + `, "head_dim": 2}`, 2, 2},
		{`{` + base + `, "hidden_size": 18, "head_dim": 4}`, 4, 4},
		{`{` + base + `, "model_type": "mistral", "sliding_window": null, "num_key_value_heads": 2, "head_dim": 6}`, 6, 6},
		{`{` + base + `, "model_type": "qwen2", "num_key_value_heads": 2, "head_dim": 6}`, 6, 6},
	} {
		cfg, err := ParseConfig([]byte(c.json), "c.json")
		if err != nil {
			t.Errorf("%s: %v", c.json, err)
		} else if cfg.HeadWidth != c.width || cfg.HeadDim() != c.hd {
			t.Errorf("%s: head width %d, head dim %d; want %d, %d", c.json, cfg.HeadWidth, cfg.HeadDim(), c.width, c.hd)
		}
	}
	// Newer transformers give the rotary base inside rope_parameters.
	for _, c := range []struct {
		json string
		want float64
	}{
		{`{` + base + `, "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}}`, 500000},
		{`{` + base + `, "rope_parameters": {"rope_theta": 500000.0, "type": "default", "partial_rotary_factor": 1.0, "factor": null}}`, 500000},
		{`{` + base + `, "rope_theta": 500000.0, "rope_parameters": {"rope_theta": 500000.0}}`, 500000},
		{`{` + base + `, "rope_theta": 250000.0, "rope_parameters": {"rope_type": "default"}}`, 250000},
		{`{` + base + `, "rope_parameters": null, "partial_rotary_factor": 1.0}`, 10000},
	} {
		cfg, err := ParseConfig([]byte(c.json), "c.json")
		if err != nil {
			t.Errorf("%s: %v", c.json, err)
		} else if cfg.RopeTheta != c.want {
			t.Errorf("%s: rope theta %v, want %v", c.json, cfg.RopeTheta, c.want)
		}
	}
	checkRefused(t, []refused{
		{`[]`, "not a valid config"},
		{`{` + base + `, "rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0}}`, `rope_parameters.low_freq_factor is missing`},
		{`{` + base + `, "rope_parameters": {"type": "dynamic", "factor": 2.0}}`, `rope_parameters.type is "dynamic"`},
		{`{` + base + `, "rope_parameters": {"type": "linear"}}`, `rope_parameters.factor is missing; rope_type "linear" needs one`},
		{`{` + base + `, "rope_parameters": {"type": "linear", "factor": -2.0}}`, `rope_parameters.factor is -2; expected a positive number`},
		{`{` + base + `, "rope_parameters": {"type": "linear", "factor": 2.0, "low_freq_factor": 1.0}}`, `rope_parameters.low_freq_factor is set`},
		{`{` + base + `, "rope_parameters": {"rope_theta": 500000.0, "factor": 2.0}}`, `rope_parameters.factor is set ({"rope_theta":500000.0,"factor":2.0}) without rope_type "llama3"`},
		// Indented objects are quoted on one line.
		{`{` + base + `, "rope_parameters": {` + "\n  " + `"rope_type": "yarn"` + "\n" + `}}`, `rope_parameters.rope_type is "yarn" ({"rope_type":"yarn"})`},
		{`{` + base + `, "rope_scaling": {` + "\n  " + `"type": "dynamic"` + "\n" + `}}`, `rope_scaling.type is "dynamic" ({"type":"dynamic"})`},
		{`{` + base + `, "rope_parameters": {"full_attention": {"rope_theta": 500000.0}}}`, "rope_parameters.full_attention is set"},
		{`{` + base + `, "rope_parameters": {"rope_theta": 500000.0, "partial_rotary_factor": 0.5}}`, "rope_parameters.partial_rotary_factor is 0.5"},
		{`{` + base + `, "partial_rotary_factor": 0.25}`, "partial_rotary_factor is 0.25"},
		{`{` + base + `, "rope_theta": 10000.0, "rope_parameters": {"rope_theta": 500000.0}}`, "rope_theta is 10000 but rope_parameters.rope_theta is 500000"},
		{`{` + base + `, "rope_parameters": {"rope_theta": "big"}}`, "rope_parameters.rope_theta is \"big\"; expected a number"},
		{`{` + base + `, "rope_parameters": {"rope_theta": -1}}`, "rope theta -1"},
		{`{` + base + `, "rope_parameters": [1]}`, "rope_parameters must be an object"},
		{`{` + base + `, "rope_parameters": {"rope_type": 3}}`, "rope_parameters.rope_type is 3; expected a string"},
		{`{"hidden_size": 16}`, "missing required field intermediate_size"},
		{`{` + base + `, "model_type": "gpt2"}`, `model_type is "gpt2"`},
		{`{` + base + `, "hidden_act": "gelu"}`, `hidden_act is "gelu"`},
		{`{` + base + `, "rope_scaling": {"type": "yarn", "factor": 2.0}}`, `rope_scaling.type is "yarn"`},
		{`{` + base + `, "mlp_bias": true}`, "mlp_bias is true"},
		{`{` + base + `, "attention_dropout": 0.5}`, "attention_dropout is 0.5"},
		{`{` + base + `, "num_key_value_heads": 3}`, "n_kv_heads 3"},
		{`{` + base + `, "head_dim": 9}`, "head_dim 9 must be even"},
		{`{` + base + `, "head_dim": 0}`, "head_dim is 0; expected null or a positive whole number"},
		{`{` + base + `, "head_dim": -8}`, "head_dim is -8; expected null or a positive whole number"},
		{`{` + base + `, "head_dim": 7.5}`, "head_dim is 7.5; expected null or a positive whole number"},
		{`{` + base + `, "head_dim": "8"}`, `head_dim is "8"; expected null or a positive whole number`},
		{`{` + base + `, "hidden_size": 18}`, "dim 18 is not a multiple of n_heads 4 (and no head_dim is given)"},
		{`{` + base + `, "rms_norm_eps": -1}`, "norm eps"},
		{`{` + base + `, "vocab_size": 1.5}`, "not a valid config"},
		{`{` + base + `} {}`, "trailing data"},
	})
}

func TestParseIndex(t *testing.T) {
	wm, err := ParseIndex([]byte(`{"metadata": {"total_size": 8}, "weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}`), "i.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(wm) != 2 || wm["b"] != "model-2.safetensors" {
		t.Errorf("weight_map = %v", wm)
	}
	bad := []struct{ json, want string }{
		{`{}`, "missing weight_map"},
		{`{"weight_map": {}}`, "empty"},
		{`{"weight_map": []}`, "must be an object"},
		{`{"weight_map": {"a": 3}}`, `weight_map["a"] must be a file name`},
		{`{"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}}`, `lists tensor "a" twice`},
		{`{"weight_map": {"a": "../x.safetensors"}}`, "plain file name"},
		{`{"weight_map": {"a": "/etc/passwd"}}`, "plain file name"},
		{`{"weight_map": {"a": "x.bin"}}`, "ending in .safetensors"},
	}
	for _, c := range bad {
		_, err := ParseIndex([]byte(c.json), "i.json")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "i.json") {
			t.Errorf("%s: error %v, want one naming i.json and containing %q", c.json, err, c.want)
		}
	}
}

// writeRaw writes a checkpoint folder with the given config and tensors,
// bypassing Write's checks.
func writeRaw(t *testing.T, cfg llama.Config, tensors []safetensors.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	c, err := EncodeConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), c, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(filepath.Join(dir, WeightsFile), tensors, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func tensorsOf(w *llama.Weights) []safetensors.Tensor {
	var ts []safetensors.Tensor
	for _, p := range w.Params() {
		ts = append(ts, safetensors.Tensor{Name: p.Name, Shape: p.Shape, Data: p.Data})
	}
	return ts
}

func TestLoadErrors(t *testing.T) {
	rng := rand.New(rand.NewSource(15))
	cfg := tinyConfig(false, 2)
	w := randomWeights(t, rng, cfg)
	good := tensorsOf(w)
	extra := append(append([]safetensors.Tensor{}, good...), safetensors.Tensor{Name: "model.layers.0.self_attn.q_proj.bias", Shape: []int{16}, Data: make([]float32, 16)})
	checkBadFolders(t, []badFolder{
		{"missing lm_head", cfg, without(good, "lm_head.weight"), `no tensor "lm_head.weight" (config.json says tie_word_embeddings is false)`},
		{"missing layer", cfg, without(good, "model.layers.1.mlp.up_proj.weight"), `no tensor "model.layers.1.mlp.up_proj.weight"`},
		{"wrong shape", cfg, reshaped(good, "model.layers.0.self_attn.k_proj.weight", 16, 8), "has shape [16 8]; the config implies [8 16]"},
		{"unexpected", cfg, extra, "does not use: model.layers.0.self_attn.q_proj.bias"},
	})
	// Tolerated extras: inv_freq buffers, and lm_head beside tied embeddings.
	tied := tinyConfig(true, 2)
	tw := randomWeights(t, rng, tied)
	ts := append(tensorsOf(tw),
		safetensors.Tensor{Name: "lm_head.weight", Shape: []int{19, 16}, Data: make([]float32, 19*16)},
		safetensors.Tensor{Name: "model.layers.0.self_attn.rotary_emb.inv_freq", Shape: []int{2}, Data: []float32{1, 0.01}})
	if _, err := Load(writeRaw(t, tied, ts)); err != nil {
		t.Errorf("tolerated extras rejected: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("empty folder: %v", err)
	}
	noWeights := writeRaw(t, cfg, good)
	os.Remove(filepath.Join(noWeights, WeightsFile))
	if _, err := Load(noWeights); err == nil || !strings.Contains(err.Error(), "neither model.safetensors.index.json nor a readable model.safetensors") {
		t.Errorf("no weights: %v", err)
	}
}

func TestShardErrors(t *testing.T) {
	rng := rand.New(rand.NewSource(16))
	w := randomWeights(t, rng, tinyConfig(true, 2))
	write := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "ckpt")
		if err := Write(dir, w, &WriteOptions{MaxShardSize: 4000}); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	edit := func(t *testing.T, dir string, f func(wm map[string]string)) {
		t.Helper()
		raw, _ := os.ReadFile(filepath.Join(dir, IndexFile))
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		json.Unmarshal(raw, &idx)
		f(idx.WeightMap)
		b, _ := json.Marshal(idx)
		if err := os.WriteFile(filepath.Join(dir, IndexFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("wrong shard", func(t *testing.T) {
		dir := write(t)
		edit(t, dir, func(wm map[string]string) {
			var names []string
			for _, f := range wm {
				names = append(names, f)
			}
			sort.Strings(names)
			wm["model.norm.weight"] = names[0] // the norm is in the last shard
		})
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), `tensor "model.norm.weight" is in`) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("missing shard", func(t *testing.T) {
		dir := write(t)
		edit(t, dir, func(wm map[string]string) { wm["model.norm.weight"] = "model-00099-of-00099.safetensors" })
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "model-00099-of-00099.safetensors") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("unlisted tensor", func(t *testing.T) {
		dir := write(t)
		edit(t, dir, func(wm map[string]string) { delete(wm, "model.layers.0.mlp.up_proj.weight") })
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "which the index does not list") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("truncated shard", func(t *testing.T) {
		dir := write(t)
		shards, _ := filepath.Glob(filepath.Join(dir, "model-00001-of-*.safetensors"))
		if len(shards) != 1 {
			t.Fatalf("first shard: %v", shards)
		}
		b, _ := os.ReadFile(shards[0])
		if err := os.WriteFile(shards[0], b[:len(b)-3], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), filepath.Base(shards[0])) {
			t.Errorf("err = %v", err)
		}
	})
}

// TestHugeConfigSmallFile: a config.json claiming a giant model beside a
// small weights file must fail before allocating the model.
func TestHugeConfigSmallFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"hidden_size": 65536, "intermediate_size": 262144, "num_hidden_layers": 1000,
		"num_attention_heads": 512, "vocab_size": 1000000, "tie_word_embeddings": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(filepath.Join(dir, WeightsFile), []safetensors.Tensor{{Name: "model.embed_tokens.weight", Shape: []int{2, 2}, Data: make([]float32, 4)}}, nil); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Load(dir)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "has shape [2 2]; the config implies [1000000 65536]") {
		t.Fatalf("err = %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("rejecting the checkpoint allocated %d bytes", grew)
	}
}

func FuzzParseConfig(f *testing.F) {
	c, _ := EncodeConfig(tinyConfig(true, 2))
	f.Add(c)
	f.Add([]byte(`{"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 19, "rope_scaling": null}`))
	f.Add([]byte(`{"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 19, "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}}`))
	f.Add([]byte(`{"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 19, "rope_theta": 10000.0, "rope_parameters": {"rope_theta": 500000.0, "rope_type": "yarn", "factor": 4.0}}`))
	f.Add([]byte(llama31Config))
	f.Add([]byte(qwen25Config))
	f.Add([]byte(mistral7Bv03Config))
	f.Add([]byte(mistral7Bv01Config))
	f.Add([]byte(`{"model_type": "mistral", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 19, "max_position_embeddings": 64, "sliding_window": 64, "head_dim": 4}`))
	f.Add([]byte(`{"model_type": "qwen2", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 19, "layer_types": ["full_attention", "sliding_attention"], "use_sliding_window": false}`))
	f.Add([]byte(qwen3_0_6BConfig))
	f.Add([]byte(`{"model_type": "qwen3", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 19, "head_dim": 6, "attention_bias": true, "layer_types": ["full_attention", "full_attention"]}`))
	f.Add([]byte(`{"model_type": "qwen3", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 19, "head_dim": null}`))
	f.Add([]byte(`{"model_type": "mistral", "hidden_size": 20, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 19, "sliding_window": null, "head_dim": 8}`))
	f.Add([]byte(`{"model_type": "llama", "attention_bias": true, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 19}`))
	f.Add([]byte(`{"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 19, "rope_parameters": {"type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}`))
	f.Add([]byte(gemma3_270MConfig))
	f.Add([]byte(gemma3_1BConfig))
	f.Add([]byte(gemma3_4BTextConfig))
	f.Add([]byte(`{"model_type": "gemma3_text", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 19, "head_dim": 6, "sliding_window": 2, "sliding_window_pattern": 2, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}`))
	f.Add([]byte(`{"model_type": "gemma3_text", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 19, "layer_types": ["full_attention", "full_attention"], "rope_parameters": {"full_attention": {"rope_theta": 5.0}}}`))
	for _, name := range []string{"gemma-2-2b.json", "gemma-2-2b-it.json"} {
		f.Add([]byte(readGemma2Config(f, name)))
	}
	f.Add([]byte(`{"model_type": "gemma2", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 19, "head_dim": 6, "sliding_window": 2, "attn_logit_softcapping": null, "final_logit_softcapping": 2.5}`))
	f.Add([]byte(`{"model_type": "gemma2", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 19, "layer_types": ["full_attention", "sliding_attention"], "rope_parameters": {"rope_theta": 5.0}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b, "fuzz.json")
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
		// Whatever is accepted must survive EncodeConfig → ParseConfig.
		enc, err := EncodeConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseConfig(enc, "again.json")
		if err != nil || again != cfg {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, cfg)
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"metadata": {"total_size": 8}, "weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}`))
	f.Add([]byte(`{"weight_map": {"a": "../x.safetensors"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		wm, err := ParseIndex(b, "fuzz.json")
		if err != nil {
			return
		}
		for name, file := range wm {
			if filepath.Base(file) != file || strings.ContainsAny(file, `/\`) || !strings.HasSuffix(file, ".safetensors") {
				t.Fatalf("accepted shard name %q for %q", file, name)
			}
		}
	})
}

// FuzzAssemble feeds arbitrary bytes as the weights file of small fixed
// configs, without and with attention biases, and Qwen3's (QK-norm, heads
// 4 wide over a width of 4 with 2 heads): no panic, and an accepted file
// gives valid weights.
func FuzzAssemble(f *testing.F) {
	cfg := llama.Config{Dim: 4, HiddenDim: 3, NumLayers: 1, NumHeads: 2, NumKVHeads: 1, VocabSize: 3, MaxSeqLen: 4,
		NormEps: 1e-5, RopeTheta: 1e4, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit}
	biased := cfg
	biased.AttentionBias = llama.BiasQKV
	qwen3 := cfg
	qwen3.HeadWidth, qwen3.QKNorm = 4, true
	gemma := qwen3
	gemma.Family, gemma.Activation, gemma.QueryPreAttnScalar = llama.FamilyGemma3, llama.GELUTanh, 4
	gemma.LayerKinds, gemma.SlidingWindow, gemma.LocalRopeTheta = "s", 2, 1e4
	gemma2 := cfg
	gemma2.HeadWidth, gemma2.Family, gemma2.Activation, gemma2.QueryPreAttnScalar = 4, llama.FamilyGemma2, llama.GELUTanh, 4
	gemma2.LayerKinds, gemma2.SlidingWindow, gemma2.LocalRopeTheta = "s", 2, cfg.RopeTheta
	gemma2.AttnLogitSoftcap, gemma2.FinalLogitSoftcap = 50, 30
	configs := []llama.Config{cfg, biased, qwen3, gemma, gemma2}
	rng := rand.New(rand.NewSource(17))
	for _, c := range configs {
		w := randomWeights(f, rng, c)
		var buf bytes.Buffer
		safetensors.Encode(&buf, tensorsOf(w), nil)
		f.Add(buf.Bytes())
		// The same tensors in BF16, and in F16, F32 and BF16 mixed, as
		// real checkpoints (and Open's streamed reads) have them.
		for _, dtypeOf := range []func(string) safetensors.DType{allOf(safetensors.BF16), mixedTypes} {
			var typed []typedTensor
			for _, p := range w.Params() {
				typed = append(typed, randomTyped(rng, p.Name, p.Shape, dtypeOf(p.Name)))
			}
			f.Add(encodeTyped(typed))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, c := range configs {
			file, err := safetensors.NewFile(bytes.NewReader(b), int64(len(b)), "fuzz.safetensors")
			if err != nil {
				return
			}
			got, err := Assemble(c, []*safetensors.File{file}, nil)
			if err != nil {
				continue
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("assembled invalid weights: %v", err)
			}
		}
	})
}

// TestWriteFiles checks that WriteOptions.Files land in the folder with the
// weights, and that names Write cannot take are refused before anything is
// written.
func TestWriteFiles(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	src := randomWeights(t, rng, tinyConfig(true, 2))
	dir := filepath.Join(t.TempDir(), "ckpt")
	files := map[string][]byte{"tokenizer.json": []byte(`{"model":{}}`), "tokenizer_config.json": []byte(`{}`)}
	if err := Write(dir, src, &WriteOptions{Files: files}); err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s holds %q, want %q", name, got, want)
		}
	}
	if _, err := Load(dir); err != nil {
		t.Fatalf("the folder with extra files does not load: %v", err)
	}
	// A rewrite with Stale names removes those it does not write, keeps
	// those it does, and leaves other files alone.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	stale := []string{"tokenizer.json", "tokenizer_config.json", "tokenizer.model"}
	if err := Write(dir, src, &WriteOptions{Files: map[string][]byte{"tokenizer_config.json": []byte(`{"new":1}`)}, Stale: stale}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"tokenizer.json": false, "tokenizer_config.json": true, "notes.txt": true} {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("after a rewrite with Stale %v: %s present %v, want %v", stale, name, err == nil, want)
		}
	}
	for _, name := range []string{"", ".", "..", "sub/tokenizer.json", `sub\tokenizer.json`, ConfigFile, WeightsFile, IndexFile, "model-00001-of-00002.safetensors"} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "ckpt")
			err := Write(out, src, &WriteOptions{Files: map[string][]byte{name: []byte("x")}})
			if err == nil || !strings.Contains(err.Error(), "extra file") {
				t.Fatalf("Write with extra file %q: error %v, want one naming the extra file", name, err)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a refused Write left %s behind (stat: %v)", out, err)
			}
		})
	}
}
