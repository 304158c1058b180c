package llama2c_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
)

// Example writes a tiny model in the version-1 format and loads it back.
func Example() {
	cfg := llama.Config{Dim: 8, HiddenDim: 16, NumLayers: 2, NumHeads: 2, NumKVHeads: 1, VocabSize: 32, MaxSeqLen: 16,
		NormEps: llama.DefaultNormEps, RopeTheta: llama.DefaultRopeTheta, TiedEmbeddings: true}
	w, err := llama.NewWeights(cfg)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "llama2c-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tiny.bin")
	if err := llama2c.Write(path, w, llama2c.Version1); err != nil {
		log.Fatal(err)
	}

	loaded, format, err := llama2c.Load(path)
	if err != nil {
		log.Fatal(err)
	}
	c := loaded.Config
	fmt.Println(format, c.Dim, c.NumLayers, c.NumKVHeads, c.TiedEmbeddings, c.RopeLayout, c.NumParams())
	// Output: version 1 8 2 1 true interleaved 1448
}
