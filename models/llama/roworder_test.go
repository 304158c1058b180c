package llama_test

import (
	"slices"
	"testing"

	"github.com/sora-go/sora/models/llama"
)

// TestHFRowOrder: for q_proj and k_proj of an interleaved model the order
// is what InterleavedToHalfSplit does to the rows (checked on a matrix
// whose row r holds r), with the key/value heads for k_proj under grouped
// query attention; everything else, and every layer of a half-split
// model, has none.
func TestHFRowOrder(t *testing.T) {
	gqa := llama.Config{Dim: 64, HiddenDim: 172, NumLayers: 5, NumHeads: 8, NumKVHeads: 4, VocabSize: 512, MaxSeqLen: 512,
		NormEps: llama.DefaultNormEps, RopeTheta: llama.DefaultRopeTheta, TiedEmbeddings: true} // stories260K: head width 8
	mha := llama.Config{Dim: 24, HiddenDim: 40, NumLayers: 2, NumHeads: 2, NumKVHeads: 2, VocabSize: 16, MaxSeqLen: 8,
		NormEps: llama.DefaultNormEps, RopeTheta: llama.DefaultRopeTheta}
	tiny := llama.Config{Dim: 6, HiddenDim: 8, NumLayers: 1, NumHeads: 3, NumKVHeads: 1, VocabSize: 4, MaxSeqLen: 4,
		NormEps: llama.DefaultNormEps, RopeTheta: llama.DefaultRopeTheta} // head width 2: pairs already adjacent
	for _, c := range []struct {
		name  string
		cfg   llama.Config
		layer string
		heads int
	}{
		{"gqa q", gqa, "model.layers.0.self_attn.q_proj", gqa.NumHeads},
		{"gqa k", gqa, "model.layers.4.self_attn.k_proj", gqa.NumKVHeads},
		{"mha q", mha, "model.layers.1.self_attn.q_proj", mha.NumHeads},
		{"mha k", mha, "model.layers.0.self_attn.k_proj", mha.NumKVHeads},
		{"tiny k", tiny, "model.layers.0.self_attn.k_proj", tiny.NumKVHeads},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			hd := c.cfg.HeadDim()
			rows, cols := c.heads*hd, 3
			w := make([]float32, rows*cols)
			for r := 0; r < rows; r++ {
				for j := 0; j < cols; j++ {
					w[r*cols+j] = float32(r)
				}
			}
			want := llama.InterleavedToHalfSplit(w, c.heads, hd, cols)
			perm := llama.HFRowOrder(c.cfg, c.layer)
			if len(perm) != rows {
				t.Fatalf("order of %d rows, want %d", len(perm), rows)
			}
			moved := false
			for i, p := range perm {
				if want[i*cols] != float32(p) {
					t.Fatalf("row %d of Hugging Face's order is row %v of the interleaved weights; HFRowOrder says %d", i, want[i*cols], p)
				}
				moved = moved || p != i
			}
			if moved != (hd > 2) {
				t.Errorf("the order moves rows: %v; want %v for head width %d", moved, hd > 2, hd)
			}
			half := c.cfg
			half.RopeLayout = llama.RopeHalfSplit
			if p := llama.HFRowOrder(half, c.layer); p != nil {
				t.Errorf("half-split model: order %v, want none", p)
			}
		})
	}
	for _, name := range []string{
		"model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.gate_proj",
		"model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj", llama.OutputModule, llama.ScoreModule,
		"model.layers.5.self_attn.q_proj",  // past the last layer
		"model.layers.-1.self_attn.q_proj", // not a layer
		"model.layers.01.self_attn.q_proj", // not the name Model.Layers gives
		"model.layers.0.self_attn.q_proj.x", "self_attn.q_proj", "",
	} {
		if p := llama.HFRowOrder(gqa, name); p != nil {
			t.Errorf("%q: order %v, want none", name, p)
		}
	}
}

// TestModelHFRowOrder: the model answers for its own configuration and
// layout, so that adapters see the order of the weights it was built from.
func TestModelHFRowOrder(t *testing.T) {
	b := openCPU(t)
	w := randomWeights(t, tinyConfig(true, llama.RopeInterleaved), 3)
	m, err := llama.New(b, w)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	q := llama.ModuleName(0, llama.ModQ)
	if got, want := m.HFRowOrder(q), llama.HFRowOrder(w.Config, q); len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("model order %v, want %v", got, want)
	}
	if err := w.ToLayout(llama.RopeHalfSplit); err != nil {
		t.Fatal(err)
	}
	h, err := llama.New(b, w)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Free()
	if p := h.HFRowOrder(q); p != nil {
		t.Errorf("half-split model: order %v, want none", p)
	}
}
