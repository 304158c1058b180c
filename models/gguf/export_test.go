package gguf

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/float16"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
)

// exportRead exports w with tok as typ and opens the file.
func exportRead(t *testing.T, w *llama.Weights, tok *tokenizer.Tokenizer, o Options) (*Plan, *File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	p, err := Export(path, w, tok, o)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return p, f
}

func miniTokenizer(t *testing.T, name string) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.LoadHF(filepath.Join("..", "tokenizer", "testdata", name, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func getInt(t *testing.T, f *File, key string) int64 {
	t.Helper()
	v, ok := f.Get(key)
	if !ok {
		t.Fatalf("no %s", key)
	}
	n, ok := v.Int()
	if !ok {
		t.Fatalf("%s is %v, not an integer", key, v)
	}
	return n
}

func readTensor(t *testing.T, f *File, name string) []float32 {
	t.Helper()
	x, err := f.ReadFloat32(name)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestExportStories260K checks the metadata, tokenizer and tensors of
// stories260K written as f32 against the checkpoint: llama.cpp's llama
// architecture with llama2.c's interleaved rotary rows kept as they are.
func TestExportStories260K(t *testing.T) {
	w, tok := loadStories(t)
	p, f := exportRead(t, w, tok, Options{Type: F32, Name: "stories260K"})
	if p.Arch != "llama" || len(p.Notes) != 0 {
		t.Errorf("arch %q, notes %q; want llama and none", p.Arch, p.Notes)
	}
	for key, want := range map[string]int64{
		"llama.context_length": 512, "llama.embedding_length": 64, "llama.block_count": 5, "llama.feed_forward_length": 172,
		"llama.attention.head_count": 8, "llama.attention.head_count_kv": 4, "llama.attention.key_length": 8,
		"llama.rope.dimension_count": 8, "general.file_type": 0, "tokenizer.ggml.bos_token_id": 1,
		"tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
	} {
		if got := getInt(t, f, key); got != want {
			t.Errorf("%s = %d, want %d", key, got, want)
		}
	}
	for key, want := range map[string]float64{"llama.rope.freq_base": 10000, "llama.attention.layer_norm_rms_epsilon": float64(float32(1e-5))} {
		v, _ := f.Get(key)
		if got, ok := v.Float(); !ok || got != want || v.Type() != TypeFloat32 {
			t.Errorf("%s = %v (%s), want float32 %v", key, v, v.Type(), want)
		}
	}
	for key, want := range map[string]string{"general.architecture": "llama", "general.name": "stories260K", "tokenizer.ggml.model": "llama"} {
		v, _ := f.Get(key)
		if got, _ := v.Str(); got != want {
			t.Errorf("%s = %v, want %q", key, v, want)
		}
	}
	for key, want := range map[string]bool{"tokenizer.ggml.add_bos_token": true, "tokenizer.ggml.add_eos_token": false, "tokenizer.ggml.add_space_prefix": true} {
		v, _ := f.Get(key)
		if got, ok := v.Bool(); !ok || got != want {
			t.Errorf("%s = %v, want %v", key, v, want)
		}
	}
	toks, _ := f.Get("tokenizer.ggml.tokens")
	texts, _ := toks.Strs()
	scoresV, _ := f.Get("tokenizer.ggml.scores")
	scores, _ := scoresV.Floats()
	typesV, _ := f.Get("tokenizer.ggml.token_type")
	types, _ := typesV.Ints()
	if len(texts) != 512 || len(scores) != 512 || len(types) != 512 || scoresV.ElemType() != TypeFloat32 || typesV.ElemType() != TypeInt32 {
		t.Fatalf("%d tokens, %d %s scores, %d %s types; want 512 each, float32 and int32", len(texts), len(scores), scoresV.ElemType(), len(types), typesV.ElemType())
	}
	for id := range 512 {
		wantText, wantType := strings.ReplaceAll(tok.Piece(id), " ", "▁"), int64(tokenNormal)
		switch {
		case id == 0:
			wantType = tokenUnknown
		case id == 1:
			wantText, wantType = "<s>", tokenControl
		case id == 2:
			wantText, wantType = "</s>", tokenControl
		case id < 259:
			wantType = tokenByte
		}
		if texts[id] != wantText || types[id] != wantType || scores[id] != float64(tok.Score(id)) {
			t.Errorf("token %d: %q type %d score %v; want %q type %d score %v", id, texts[id], types[id], scores[id], wantText, wantType, tok.Score(id))
		}
	}
	// Every tensor, bit for bit, under llama.cpp's names; none other.
	want := map[string][]float32{"token_embd.weight": w.TokenEmbedding, "output_norm.weight": w.FinalNorm}
	for l, ly := range w.Layers {
		for name, data := range map[string][]float32{
			"attn_norm": ly.AttnNorm, "attn_q": ly.Wq, "attn_k": ly.Wk, "attn_v": ly.Wv, "attn_output": ly.Wo,
			"ffn_norm": ly.FFNNorm, "ffn_gate": ly.W1, "ffn_up": ly.W3, "ffn_down": ly.W2,
		} {
			want["blk."+strconv.Itoa(l)+"."+name+".weight"] = data
		}
	}
	if len(f.Tensors) != len(want) {
		t.Errorf("%d tensors, want %d (no output.weight: the head is tied)", len(f.Tensors), len(want))
	}
	for name, data := range want {
		ti, ok := f.Tensor(name)
		if !ok {
			t.Errorf("no tensor %s", name)
			continue
		}
		if ti.Type != F32 {
			t.Errorf("%s is %s", name, ti.Type)
		}
		if got := readTensor(t, f, name); !slices.Equal(got, data) {
			t.Errorf("%s differs from the checkpoint's", name)
		}
	}
	if ti, _ := f.Tensor("blk.0.attn_q.weight"); !slices.Equal(ti.Shape, []int{64, 64}) {
		t.Errorf("attn_q shape %v", ti.Shape)
	}
}

// TestExportRotaryLayouts checks the q/k rows, their biases and the
// QK-norm weights in each architecture's layout against the llama
// package's own conversion (Weights.ToLayout), and Gemma's norm weights
// written as 1 + w.
func TestExportRotaryLayouts(t *testing.T) {
	tok := miniTokenizer(t, "bl-llama3-mini")
	v := tok.VocabSize()
	base := llama.Config{Dim: 32, HiddenDim: 48, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, VocabSize: v, MaxSeqLen: 64,
		NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true}
	cases := []struct {
		name string
		cfg  func(llama.RopeLayout) llama.Config
		arch string
		want llama.RopeLayout
	}{
		{"llama", func(l llama.RopeLayout) llama.Config {
			c := base
			c.RopeLayout = l
			c.AttentionBias = llama.BiasQKVO
			return c
		}, "llama", llama.RopeInterleaved},
		{"qwen2", func(l llama.RopeLayout) llama.Config {
			c := base
			c.RopeLayout = l
			c.AttentionBias = llama.BiasQKV
			return c
		}, "qwen2", llama.RopeHalfSplit},
		{"qwen3", func(l llama.RopeLayout) llama.Config {
			c := base
			c.RopeLayout, c.QKNorm, c.HeadWidth = l, true, 12
			return c
		}, "qwen3", llama.RopeHalfSplit},
	}
	for _, c := range cases {
		for _, from := range []llama.RopeLayout{llama.RopeHalfSplit, llama.RopeInterleaved} {
			t.Run(c.name+"/from-"+from.String(), func(t *testing.T) {
				w := randomWeights(t, c.cfg(from), 3)
				p, f := exportRead(t, w, tok, Options{Type: F32})
				if p.Arch != c.arch {
					t.Fatalf("arch %q, want %q", p.Arch, c.arch)
				}
				ref, err := w.Clone()
				if err != nil {
					t.Fatal(err)
				}
				if err := ref.ToLayout(c.want); err != nil {
					t.Fatal(err)
				}
				for l, ly := range ref.Layers {
					for name, data := range map[string][]float32{
						"attn_q.weight": ly.Wq, "attn_k.weight": ly.Wk, "attn_q.bias": ly.Bq, "attn_k.bias": ly.Bk,
						"attn_v.bias": ly.Bv, "attn_output.bias": ly.Bo, "attn_q_norm.weight": ly.QNorm, "attn_k_norm.weight": ly.KNorm,
					} {
						full := "blk." + strconv.Itoa(l) + "." + name
						if data == nil {
							if _, ok := f.Tensor(full); ok {
								t.Errorf("%s is written but the model has none", full)
							}
							continue
						}
						if got := readTensor(t, f, full); !slices.Equal(got, data) {
							t.Errorf("%s is not the %s rows of the llama package's conversion", full, c.want)
						}
					}
				}
			})
		}
	}
}

func TestExportGemmaNorms(t *testing.T) {
	tok := miniTokenizer(t, "sp-metaspace")
	cfg := llama.Config{Dim: 32, HiddenDim: 48, NumLayers: 6, NumHeads: 2, NumKVHeads: 1, HeadWidth: 16, VocabSize: tok.VocabSize(), MaxSeqLen: 64,
		NormEps: 1e-6, RopeTheta: 1e6, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit, Family: llama.FamilyGemma3, QKNorm: true,
		Activation: llama.GELUTanh, QueryPreAttnScalar: 16, LayerKinds: "sssssf", SlidingWindow: 4, LocalRopeTheta: 10000}
	w := randomWeights(t, cfg, 4)
	p, f := exportRead(t, w, tok, Options{Type: F32})
	if p.Arch != "gemma3" {
		t.Fatalf("arch %q", p.Arch)
	}
	plusOne := func(x []float32) []float32 {
		out := make([]float32, len(x))
		for i, v := range x {
			out[i] = v + 1
		}
		return out
	}
	want := map[string][]float32{"output_norm.weight": plusOne(w.FinalNorm)}
	for l, ly := range w.Layers {
		for name, data := range map[string][]float32{
			"attn_norm": ly.AttnNorm, "post_attention_norm": ly.PostAttnNorm, "ffn_norm": ly.FFNNorm,
			"post_ffw_norm": ly.PostFFNNorm, "attn_q_norm": ly.QNorm, "attn_k_norm": ly.KNorm,
		} {
			want["blk."+strconv.Itoa(l)+"."+name+".weight"] = plusOne(data)
		}
	}
	for name, data := range want {
		if got := readTensor(t, f, name); !slices.Equal(got, data) {
			t.Errorf("%s is not 1 + the stored offsets", name)
		}
	}
	if n := getInt(t, f, "gemma3.attention.sliding_window"); n != 4 {
		t.Errorf("sliding window %d, want 4", n)
	}
	if _, ok := f.Tensor("output.weight"); ok {
		t.Error("a tied head is written as output.weight")
	}
}

// TestExportRefuses lists what llama.cpp would run differently and the
// export refuses, naming why.
func TestExportRefuses(t *testing.T) {
	tok := miniTokenizer(t, "sp-metaspace")
	v := tok.VocabSize()
	gemma2 := llama.Config{Dim: 32, HiddenDim: 48, NumLayers: 4, NumHeads: 2, NumKVHeads: 1, HeadWidth: 16, VocabSize: v, MaxSeqLen: 64,
		NormEps: 1e-6, RopeTheta: 10000, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit, Family: llama.FamilyGemma2,
		Activation: llama.GELUTanh, QueryPreAttnScalar: 16, LayerKinds: "sfsf", SlidingWindow: 4, LocalRopeTheta: 10000,
		AttnLogitSoftcap: 50, FinalLogitSoftcap: 30}
	gemma3 := llama.Config{Dim: 32, HiddenDim: 48, NumLayers: 6, NumHeads: 2, NumKVHeads: 1, HeadWidth: 16, VocabSize: v, MaxSeqLen: 64,
		NormEps: 1e-6, RopeTheta: 1e6, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit, Family: llama.FamilyGemma3, QKNorm: true,
		Activation: llama.GELUTanh, QueryPreAttnScalar: 16, LayerKinds: "sssssf", SlidingWindow: 4, LocalRopeTheta: 10000}
	plain := llama.Config{Dim: 32, HiddenDim: 48, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, VocabSize: v, MaxSeqLen: 64,
		NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true}
	llama3 := llama.RopeScaling{Type: llama.RopeScalingLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 32}
	for _, c := range []struct {
		name string
		edit func(c *llama.Config)
		base llama.Config
		want string
	}{
		{"gemma2 pattern", func(c *llama.Config) { c.LayerKinds = "fsfs" }, gemma2, "each second one"},
		{"gemma2 scale", func(c *llama.Config) { c.QueryPreAttnScalar = 64 }, gemma2, "attention scale"},
		{"gemma2 no softcap", func(c *llama.Config) { c.FinalLogitSoftcap = 0 }, gemma2, "always caps"},
		{"gemma2 untied", func(c *llama.Config) { c.TiedEmbeddings = false }, gemma2, "ties it"},
		{"gemma3 pattern", func(c *llama.Config) { c.LayerKinds = "ssssss" }, gemma3, "each sixth one"},
		{"gemma3 no window", func(c *llama.Config) { c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = "", 0, 0 }, gemma3, "each sixth one"},
		{"gemma3 local base", func(c *llama.Config) { c.LocalRopeTheta = 20000 }, gemma3, "fixes it at 10000"},
		{"gemma3 bias", func(c *llama.Config) { c.AttentionBias = llama.BiasQKVO }, gemma3, "no"},
		{"gemma3 llama3 rope", func(c *llama.Config) { c.RopeScaling = llama3 }, gemma3, "Llama 3's rope scaling"},
		{"qwen2 head width", func(c *llama.Config) { c.AttentionBias, c.HeadWidth = llama.BiasQKV, 16 }, plain, "dim × dim"},
		{"qwen3 bias", func(c *llama.Config) { c.QKNorm, c.AttentionBias = true, llama.BiasQKV }, plain, "qwen3 has none"},
		{"qwen3 llama3 rope", func(c *llama.Config) { c.QKNorm, c.RopeScaling = true, llama3 }, plain, "Llama 3's rope scaling"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.base
			c.edit(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatalf("the case's config is invalid before the export sees it: %v", err)
			}
			w := randomWeights(t, cfg, 5)
			path := filepath.Join(t.TempDir(), "m.gguf")
			_, err := Export(path, w, tok, Options{Type: F16})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "cannot export") {
				t.Fatalf("Export: %v; want a refusal saying %q", err, c.want)
			}
		})
	}
}

// TestExportQ8Fallback checks that Q8_0 matrices whose rows are not whole
// blocks are written f16, with a note, and the others q8_0.
func TestExportQ8Fallback(t *testing.T) {
	tok := miniTokenizer(t, "bl-llama3-mini")
	cfg := llama.Config{Dim: 64, HiddenDim: 40, NumLayers: 1, NumHeads: 4, NumKVHeads: 4, VocabSize: tok.VocabSize(), MaxSeqLen: 64,
		NormEps: 1e-5, RopeTheta: 10000}
	w := randomWeights(t, cfg, 6)
	p, f := exportRead(t, w, tok, Options{Type: Q8_0})
	for _, ti := range f.Tensors {
		want := Q8_0
		switch {
		case len(ti.Shape) == 1:
			want = F32
		case ti.Name == "blk.0.ffn_down.weight": // rows of 40
			want = F16
		}
		if ti.Type != want {
			t.Errorf("%s %v is %s, want %s", ti.Name, ti.Shape, ti.Type, want)
		}
	}
	if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "blk.0.ffn_down.weight") {
		t.Errorf("notes %q; want one naming blk.0.ffn_down.weight", p.Notes)
	}
	if getInt(t, f, "general.file_type") != 7 || getInt(t, f, "general.quantization_version") != 2 {
		t.Error("q8_0 file without file type 7 and quantization version 2")
	}
	// The embedding's values are ggml's Q8_0 of the weights.
	if !slices.Equal(readTensor(t, f, "token_embd.weight"), q8RoundTrip(t, w.TokenEmbedding)) {
		t.Error("token_embd is not the Q8_0 of the embedding")
	}
}

// TestExportPermutedSlabs writes a model whose q/k rows are permuted
// through slabs far smaller than a head, so that reads start and end
// inside heads, and checks the file is the same as with whole tensors.
func TestExportPermutedSlabs(t *testing.T) {
	tok := miniTokenizer(t, "bl-llama3-mini")
	cfg := llama.Config{Dim: 48, HiddenDim: 64, NumLayers: 1, NumHeads: 3, NumKVHeads: 3, VocabSize: tok.VocabSize(), MaxSeqLen: 64,
		NormEps: 1e-5, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit}
	w := randomWeights(t, cfg, 7)
	_, whole := exportRead(t, w, tok, Options{Type: F32})
	defer func(s int) { slab = s }(slab)
	slab = 3 * 48 // three rows of q_proj: a head is 16
	_, small := exportRead(t, w, tok, Options{Type: F32})
	for _, ti := range whole.Tensors {
		if !slices.Equal(readTensor(t, whole, ti.Name), readTensor(t, small, ti.Name)) {
			t.Errorf("%s differs when written in slabs of 3 rows", ti.Name)
		}
	}
}

// TestExportLlama3RopeFactors checks rope_freqs against the rule of Llama
// 3's scaling computed here in float64 from its definition.
func TestExportLlama3RopeFactors(t *testing.T) {
	tok := miniTokenizer(t, "bl-llama3-mini")
	rs := llama.RopeScaling{Type: llama.RopeScalingLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 64}
	cfg := llama.Config{Dim: 64, HiddenDim: 64, NumLayers: 1, NumHeads: 2, NumKVHeads: 2, VocabSize: tok.VocabSize(), MaxSeqLen: 256,
		NormEps: 1e-5, RopeTheta: 500000, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit, RopeScaling: rs}
	_, f := exportRead(t, randomWeights(t, cfg, 8), tok, Options{Type: F16})
	got := readTensor(t, f, "rope_freqs.weight")
	hd := 32
	if len(got) != hd/2 {
		t.Fatalf("%d factors, want %d", len(got), hd/2)
	}
	var slow, fast, between int
	for i, g := range got {
		freq := math.Pow(500000, -float64(2*i)/float64(hd))
		wl := 2 * math.Pi / freq
		want := 1.0
		switch {
		case wl > 64/rs.LowFreqFactor:
			want, slow = rs.Factor, slow+1
		case wl < 64/rs.HighFreqFactor:
			fast++
		default:
			s := (64/wl - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
			want = 1 / ((1-s)/rs.Factor + s)
			between++
		}
		if math.Abs(float64(g)-want) > 1e-5*want {
			t.Errorf("factor %d = %v, want %v", i, g, want)
		}
	}
	if slow == 0 || fast == 0 || between == 0 {
		t.Errorf("the case covers %d slowed, %d kept and %d interpolated pairs; want some of each", slow, fast, between)
	}
}

// TestVocabKinds checks how each kind of tokenizer is described to
// llama.cpp, on the tokenizer package's small test tokenizers.
func TestVocabKinds(t *testing.T) {
	for _, c := range []struct {
		mini, model, pre string
		prefix           bool
		note             string
	}{
		{"bl-llama3-mini", "gpt2", "llama-bpe", false, ""},
		{"bl-strip-mini", "gpt2", "llama-bpe", false, "lstrip"},
		{"bl-gpt2-mini", "gpt2", "gpt-2", false, ""},
		{"bl-qwen3-mini", "gpt2", "qwen2", false, noteNFC},
		{"bl-tekken-mini", "gpt2", "tekken", false, noteMarks},
		{"sp-metaspace", "llama", "", true, noteMetaspace},
	} {
		t.Run(c.mini, func(t *testing.T) {
			tok := miniTokenizer(t, c.mini)
			v, err := newVocab(tok, tok.VocabSize(), "")
			if err != nil {
				t.Fatal(err)
			}
			if v.model != c.model || v.pre != c.pre || (v.model == vocabSPM && v.addSpacePrefix != c.prefix) {
				t.Errorf("model %q pre %q prefix %v; want %q %q %v", v.model, v.pre, v.addSpacePrefix, c.model, c.pre, c.prefix)
			}
			found := c.note == ""
			for _, n := range v.notes {
				found = found || strings.Contains(n, c.note)
			}
			if !found {
				t.Errorf("notes %q lack %q", v.notes, c.note)
			}
			if len(v.tokens) != tok.VocabSize() || len(v.types) != len(v.tokens) {
				t.Errorf("%d tokens and %d types for %d", len(v.tokens), len(v.types), tok.VocabSize())
			}
			for id := range v.tokens {
				if id == tok.BOS() || id == tok.EOS() {
					if v.types[id] != tokenControl {
						t.Errorf("BOS/EOS %d has type %d", id, v.types[id])
					}
				}
			}
		})
	}
	for _, c := range []struct{ mini, want string }{
		{"bl-digits-mini", "pre-tokenizer"}, // ByteLevel with add_prefix_space
		{"bl-nfd-mini", "normalizer NFD"},   // llama.cpp has no NFD
		{"bl-nfkc-mini", "normalizer NFKC"}, // nor NFKC
	} {
		t.Run(c.mini, func(t *testing.T) {
			tok := miniTokenizer(t, c.mini)
			if _, err := newVocab(tok, tok.VocabSize(), ""); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("newVocab: %v; want a refusal about %q", err, c.want)
			}
		})
	}
}

// TestSPMScoresFollowMerges checks the scores given a SentencePiece-style
// tokenizer.json: each token a merge makes scores minus one plus the rank
// of the first merge that makes it, so that llama.cpp's highest-score-first
// merging follows the ranks.
func TestSPMScoresFollowMerges(t *testing.T) {
	tok := miniTokenizer(t, "sp-metaspace")
	v, err := newVocab(tok, tok.VocabSize(), "")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.MarshalHF()
	var j tokenizerJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	merges, err := parseMerges(j.Model.Merges)
	if err != nil || len(merges) == 0 {
		t.Fatalf("%d merges: %v", len(merges), err)
	}
	first := map[int]int{}
	for r, m := range merges {
		id := j.Model.Vocab[m[0]+m[1]]
		if _, ok := first[id]; !ok {
			first[id] = r
		}
	}
	for id, r := range first {
		if v.scores[id] != -float32(r+1) {
			t.Errorf("token %d %q scores %v; its first merge has rank %d", id, v.tokens[id], v.scores[id], r)
		}
	}
	for id, s := range v.scores {
		if _, made := first[id]; !made && s != 0 {
			t.Errorf("token %d %q, made by no merge, scores %v", id, v.tokens[id], s)
		}
	}
	for id, text := range v.tokens {
		if isBytePiece(text) && v.types[id] != tokenByte {
			t.Errorf("byte token %d %q has type %d", id, text, v.types[id])
		}
	}
}

func TestVocabFit(t *testing.T) {
	tok := miniTokenizer(t, "bl-llama3-mini")
	v, err := newVocab(tok, tok.VocabSize()+3, "")
	if err != nil {
		t.Fatal(err)
	}
	n := tok.VocabSize()
	for i := range 3 {
		if v.tokens[n+i] != "[PAD"+strconv.Itoa(n+i)+"]" || v.types[n+i] != tokenUnused {
			t.Errorf("padding token %d is %q type %d", n+i, v.tokens[n+i], v.types[n+i])
		}
	}
	// The last tokens are special added ones, which a smaller embedding
	// may leave out (as Gemma 3's does its image token); the others not.
	short, err := newVocab(tok, n-1, "")
	if err != nil || len(short.tokens) != n-1 || len(short.notes) != 1 || !strings.Contains(short.notes[0], "left out") {
		t.Errorf("one special token past the embedding: %v, %d tokens, notes %q", err, len(short.tokens), short.notes)
	}
	if _, err := newVocab(tok, n-10, ""); err == nil {
		t.Error("a model smaller than its tokenizer's ordinary tokens was accepted")
	}
	if _, err := newVocab(tok, tok.VocabSize(), "no such token"); err == nil || !strings.Contains(err.Error(), "padding token") {
		t.Errorf("an unknown padding token: %v", err)
	}
}

// TestExportHalfRange checks that an f16 export refuses a weight float16
// cannot hold, naming it, and that bf16 (float32's range) writes it.
func TestExportHalfRange(t *testing.T) {
	tok := miniTokenizer(t, "bl-llama3-mini")
	cfg := llama.Config{Dim: 32, HiddenDim: 32, NumLayers: 1, NumHeads: 2, NumKVHeads: 2, VocabSize: tok.VocabSize(), MaxSeqLen: 64,
		NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true}
	w := randomWeights(t, cfg, 9)
	w.Layers[0].W3[5] = 70000
	path := filepath.Join(t.TempDir(), "m.gguf")
	if _, err := Export(path, w, tok, Options{Type: F16}); err == nil || !strings.Contains(err.Error(), "blk.0.ffn_up.weight") || !strings.Contains(err.Error(), "65504") {
		t.Fatalf("f16 export of a weight of 70000: %v; want a refusal naming blk.0.ffn_up.weight", err)
	}
	_, f := exportRead(t, w, tok, Options{Type: BF16})
	if x := readTensor(t, f, "blk.0.ffn_up.weight"); x[5] != float16.BF16ToFloat32(float16.BF16Bits(70000)) {
		t.Errorf("bf16 wrote %v for 70000", x[5])
	}
	// A padding token the tokenizer has is written by id.
	v, err := newVocab(tok, tok.VocabSize(), tok.Piece(tok.EOS()))
	if err != nil || v.pad != tok.EOS() {
		t.Errorf("padding token %q: id %d, %v; want %d", tok.Piece(tok.EOS()), v.pad, err, tok.EOS())
	}
}

// TestVocabMetaspaceNoPrefix checks that an older tokenizer.json whose
// Metaspace pre-tokenizer says add_prefix_space false (no prepend_scheme),
// which the tokenizer package reads as "never", is exported without
// llama.cpp's space prefix: with it, llama.cpp put "▁" before every text.
func TestVocabMetaspaceNoPrefix(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "tokenizer", "testdata", "sp-metaspace", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	j["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "add_prefix_space": false}
	out, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.LoadHF(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := newVocab(tok, tok.VocabSize(), "")
	if err != nil {
		t.Fatal(err)
	}
	if v.model != vocabSPM || v.addSpacePrefix {
		t.Errorf("model %q, add_space_prefix %v; want %q and false", v.model, v.addSpacePrefix, vocabSPM)
	}
}
