package gguf

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/models/llama"
)

// TestBoolOfOtherTypes: Bool says false, false for a value that is not a
// bool, whatever its number (Uint8(1) read true before).
func TestBoolOfOtherTypes(t *testing.T) {
	for _, c := range []struct {
		v       Value
		val, ok bool
	}{{Bool(true), true, true}, {Bool(false), false, true}, {Uint8(1), false, false}, {Int32(-1), false, false}, {String("true"), false, false}} {
		if val, ok := c.v.Bool(); val != c.val || ok != c.ok {
			t.Errorf("%v.Bool() = %v, %v; want %v, %v", c.v, val, ok, c.val, c.ok)
		}
	}
}

// TestReadAfterClose: reading a tensor of a closed file says the file is
// closed (before, it read through the closed *os.File and reported its
// "file already closed").
func TestReadAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := Write(path, nil, []Tensor{{"x", []int{4}, F32, rowsOf([]float32{1, 2, 3, 4}, 1)}}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFloat32("x"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFloat32("x"); err == nil || !strings.Contains(err.Error(), "the file is closed") {
		t.Errorf("reading after Close: %v; want \"the file is closed\"", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// TestConfigBOSEOS: a tokenizer without BOS (Qwen's) gets the BOS id of
// Options.BOSID, so that llama.cpp does not take its default, yet no BOS
// is added; an id the tokenizer has is kept, and one outside the
// vocabulary refused.
func TestConfigBOSEOS(t *testing.T) {
	tok := miniTokenizer(t, "bl-qwen3-mini")
	if tok.BOS() >= 0 || tok.EOS() < 0 {
		t.Fatalf("bl-qwen3-mini: BOS %d, EOS %d; the test wants a tokenizer with EOS and no BOS", tok.BOS(), tok.EOS())
	}
	cfg := llama.Config{Dim: 32, HiddenDim: 48, NumLayers: 1, NumHeads: 4, NumKVHeads: 2, VocabSize: tok.VocabSize(), MaxSeqLen: 64,
		NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true, AttentionBias: llama.BiasQKV}
	w := randomWeights(t, cfg, 1)
	id := func(v Value) int {
		n, ok := v.Int()
		if !ok {
			return -1
		}
		return int(n)
	}
	_, f := exportRead(t, w, tok, Options{Type: F32})
	if _, ok := f.Get("tokenizer.ggml.bos_token_id"); ok {
		t.Error("a BOS id written with none given")
	}
	bos, eos := 7, tok.EOS()+1
	_, f = exportRead(t, w, tok, Options{Type: F32, BOSID: &bos, EOSID: &eos})
	if v, _ := f.Get("tokenizer.ggml.bos_token_id"); id(v) != bos {
		t.Errorf("bos_token_id %v, want %d", v, bos)
	}
	if v, _ := f.Get("tokenizer.ggml.eos_token_id"); id(v) != tok.EOS() {
		t.Errorf("eos_token_id %v, want the tokenizer's %d", v, tok.EOS())
	}
	if v, _ := f.Get("tokenizer.ggml.add_bos_token"); func() bool { b, _ := v.Bool(); return b }() {
		t.Error("add_bos_token true for a BOS the tokenizer does not add")
	}
	far := tok.VocabSize()
	if err := Check(cfg, tok, Options{Type: F32, BOSID: &far}); err == nil || !strings.Contains(err.Error(), "BOS token id") {
		t.Errorf("BOS id %d of %d tokens: %v; want a refusal", far, tok.VocabSize(), err)
	}
}
