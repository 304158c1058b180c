package gguf_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/sora-go/sora/models/gguf"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
)

// Write a GGUF file with metadata and one Q8_0 tensor, then read it back.
func ExampleWrite() {
	dir, err := os.MkdirTemp("", "gguf-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tiny.gguf")

	w := make([]float32, 2*32) // a [2, 32] matrix: two rows of one block each
	for i := range w {
		w[i] = float32(i%32-16) / 16
	}
	err = gguf.Write(path,
		[]gguf.KV{
			{Key: "general.architecture", Value: gguf.String("llama")},
			{Key: "tokenizer.ggml.tokens", Value: gguf.Strings([]string{"<unk>", "<s>", "</s>"})},
		},
		[]gguf.Tensor{{
			Name: "w", Shape: []int{2, 32}, Type: gguf.Q8_0,
			Read: func(row0 int, dst []float32) error { copy(dst, w[row0*32:]); return nil },
		}})
	if err != nil {
		log.Fatal(err)
	}

	f, err := gguf.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	arch, _ := f.Get("general.architecture")
	toks, _ := f.Get("tokenizer.ggml.tokens")
	fmt.Println(arch, toks)
	ti, _ := f.Tensor("w")
	x, err := f.ReadFloat32("w")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ti.Name, ti.Shape, ti.Type, ti.Size, "bytes")
	// Q8_0 keeps 8 bits per value and a half-precision scale: -1 and
	// 0.9375 come back as the nearest multiples of the block's scale
	// (1/127 rounded to half precision).
	fmt.Println(x[0], x[16], x[31])
	// Output:
	// "llama" [3 string: "<unk>" "<s>" "</s>"]
	// w [2 32] q8_0 68 bytes
	// -0.99993896 0 0.9369507
}

// Export a model with its tokenizer as a GGUF file that llama.cpp, Ollama
// and LM Studio load: here a tiny LLaMA-shaped model in Hugging Face's
// rotary layout with a byte-level (Llama 3 style) tokenizer, stored f16.
func ExampleExport() {
	tok, err := tokenizer.LoadHF("../tokenizer/testdata/bl-llama3-mini/tokenizer.json")
	if err != nil {
		log.Fatal(err)
	}
	w, err := llama.NewWeights(llama.Config{
		Dim: 32, HiddenDim: 64, NumLayers: 2, NumHeads: 4, NumKVHeads: 2,
		VocabSize: tok.VocabSize(), MaxSeqLen: 128, NormEps: 1e-5, RopeTheta: 500000,
		TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit,
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range w.Params() { // stand-in weights: a real model comes from a loader or a merge
		for i := range p.Data {
			p.Data[i] = float32(i%7) / 7
		}
	}
	dir, err := os.MkdirTemp("", "gguf-export")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	plan, err := gguf.Export(filepath.Join(dir, "tiny.gguf"), w, tok, gguf.Options{Type: gguf.F16, Name: "tiny"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("architecture:", plan.Arch, "tensors:", len(plan.Tensors), "notes:", len(plan.Notes))
	for _, kv := range plan.KV {
		switch kv.Key {
		case "llama.embedding_length", "llama.rope.freq_base", "tokenizer.ggml.model", "tokenizer.ggml.pre":
			fmt.Println(kv.Key, "=", kv.Value)
		}
	}
	// Output:
	// architecture: llama tensors: 20 notes: 0
	// llama.embedding_length = 32
	// llama.rope.freq_base = 500000
	// tokenizer.ggml.model = "gpt2"
	// tokenizer.ggml.pre = "llama-bpe"
}
