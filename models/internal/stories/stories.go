// Package stories loads the stories260K checkpoint and tokenizer from the
// shared data folder for tests, skipping a test where they are absent.
package stories

import (
	"testing"

	"github.com/sora-go/sora/internal/testdata"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
)

// Load returns the stories260K weights and their tokenizer, checked to fit
// each other. It skips tb when the files are absent and stops it when they
// cannot be read.
func Load(tb testing.TB) (*llama.Weights, *tokenizer.Tokenizer) {
	tb.Helper()
	modelPath, tokPath := testdata.Stories260K(tb)
	w, _, err := llama2c.Load(modelPath)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		tb.Fatal(err)
	}
	if err := tok.CheckVocab(w.Config.VocabSize); err != nil {
		tb.Fatal(err)
	}
	return w, tok
}
