package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/hf"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
	"github.com/sora-go/sora/train"
)

// TestOpenBase checks what the commands that only need the model on a
// backend load: a Hugging Face folder is opened, not read (no host
// weights), and the model built from it tensor by tensor is the one
// loadBase's weights give, bit for bit, with float32 and bfloat16 base
// weights; a llama2.c checkpoint is read whole and its weights are let go
// once uploaded; a second build is refused rather than made from nothing.
func TestOpenBase(t *testing.T) {
	b := testbackend.Open(t, "cpu")
	cfg := llama.Config{Dim: 16, HiddenDim: 24, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, VocabSize: 19,
		MaxSeqLen: 8, NormEps: 1e-5, RopeTheta: 1e4}
	w, err := train.InitWeights(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	folder, file := filepath.Join(dir, "hf"), filepath.Join(dir, "model.bin")
	if err := hf.Write(folder, w, nil); err != nil {
		t.Fatal(err)
	}
	if err := llama2c.Write(file, w, llama2c.Version1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path   string
		stream bool
	}{{folder, true}, {file, false}} {
		for _, dt := range []backend.DType{backend.Float32, backend.BFloat16} {
			o := llama.Options{BaseDType: dt}
			loaded, err := loadBase(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			want, err := llama.NewWithOptions(b, loaded.w, o)
			if err != nil {
				t.Fatal(err)
			}
			bm, err := openBase(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if streamed := bm.src != nil && bm.w == nil; streamed != tc.stream {
				t.Errorf("%s: opened with host weights %v, source %v", tc.path, bm.w != nil, bm.src != nil)
			}
			if bm.config() != loaded.w.Config {
				t.Errorf("%s: config %+v, loadBase's %+v", tc.path, bm.config(), loaded.w.Config)
			}
			got, err := bm.newModel(b, o)
			if err != nil {
				t.Fatal(err)
			}
			if bm.w != nil {
				t.Errorf("%s: the host weights are kept after the upload", tc.path)
			}
			gp, wp := got.Params(), want.Params()
			if len(gp) != len(wp) {
				t.Fatalf("%s: %d parameters, want %d", tc.path, len(gp), len(wp))
			}
			for i := range wp {
				gd, err := gp[i].Download()
				if err != nil {
					t.Fatal(err)
				}
				wd, err := wp[i].Download()
				if err != nil {
					t.Fatal(err)
				}
				if gp[i].Name() != wp[i].Name() || gp[i].DType() != wp[i].DType() || !sameFloats(gd, wd) {
					t.Errorf("%s, base %s: parameter %s (%s) differs from %s (%s) built from loadBase's weights", tc.path, dt, gp[i].Name(), gp[i].DType(), wp[i].Name(), wp[i].DType())
				}
			}
			got.Free()
			want.Free()
			if !tc.stream {
				if m, err := bm.newModel(b, o); err == nil || !strings.Contains(err.Error(), "already uploaded") {
					if m != nil {
						m.Free()
					}
					t.Errorf("%s: a second build: %v, want a refusal", tc.path, err)
				}
			}
			bm.close()
		}
	}
}

// loadWeights reads a llama2.c checkpoint file, or a Hugging Face
// checkpoint folder, whole (see loadBase).
func loadWeights(path string) (*llama.Weights, error) {
	bm, err := loadBase(path)
	if err != nil {
		return nil, err
	}
	return bm.w, nil
}

// loadModelAndTokenizer is openBaseAndTokenizer with the base model's
// weights read whole (loadBase), for tests that build models from them.
func loadModelAndTokenizer(modelPath, tokPath string) (*llama.Weights, *tokenizer.Tokenizer, error) {
	bm, tok, err := baseAndTokenizer(modelPath, tokPath, loadBase)
	if err != nil {
		return nil, nil, err
	}
	return bm.w, tok, nil
}
