package hf_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

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
