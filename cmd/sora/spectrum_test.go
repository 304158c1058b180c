package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/peft/adapter"
	"github.com/sora-go/sora/train"
)

// rankOneAdapter saves into dir a LoRA adapter of rank 1 on lm_head of
// model with A = e₀ and B = e₁, so ΔW has one nonzero singular value and
// the spectrum command has one layer to analyse.
func rankOneAdapter(t *testing.T, model, dir string) {
	t.Helper()
	w, _, err := llama2c.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	b := testbackend.Open(t, "cpu")
	pm, err := peft.Inject(newModel(t, b, w), peft.Config{Method: peft.LoRA, R: 1, Alpha: 1, TargetModules: []string{llama.OutputModule}})
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Unload()
	a := make([]float32, w.Config.Dim)
	a[0] = 1
	bm := make([]float32, w.Config.VocabSize)
	bm[1] = 1
	l := pm.Layers()[0]
	for i, data := range [][]float32{a, bm} {
		b.Upload(l.Trainable()[i].Tensor(), data)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := adapter.Save(dir, pm, adapter.Meta{BaseModel: model, TaskType: "CAUSAL_LM"}); err != nil {
		t.Fatal(err)
	}
}

// TestSpectrumOutputs checks where "sora spectrum" writes: --plot and
// --json both make missing folders, and the JSON is written before the
// plot, so a plot that cannot be written leaves the figures behind.
func TestSpectrumOutputs(t *testing.T) {
	model, _ := stories260K(t)
	dir := t.TempDir()
	ad := filepath.Join(dir, "adapter")
	rankOneAdapter(t, model, ad)

	plot, js := filepath.Join(dir, "new", "plots", "s.png"), filepath.Join(dir, "other", "s.json")
	code, stdout, errOut := runCLI(t, "spectrum", "--backend", "cpu", "--adapter", ad, "--plot", plot, "--json", js)
	if code != 0 {
		t.Fatalf("spectrum into new folders: status %d\n%s\n%s", code, stdout, errOut)
	}
	checkPNG(t, plot)
	var sum train.Summary
	readJSON(t, js, &sum)
	if len(sum.Layers) != 1 || sum.Layers[0].NumericalRank != 1 {
		t.Errorf("summary %+v; want one layer of rank 1", sum)
	}

	// A plot path under a plain file cannot be made: the command fails,
	// naming it, but the JSON is already there.
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	js2 := filepath.Join(dir, "kept", "s.json")
	code, _, errOut = runCLI(t, "spectrum", "--backend", "cpu", "--adapter", ad, "--plot", filepath.Join(blocker, "s.png"), "--json", js2)
	if code != exitFailure || !strings.Contains(errOut, blocker) {
		t.Errorf("plot under a file: status %d, stderr %q; want a failure naming %s", code, errOut, blocker)
	}
	var kept train.Summary
	readJSON(t, js2, &kept)
	if len(kept.Layers) != 1 || kept.Layers[0] != sum.Layers[0] {
		t.Errorf("JSON beside the failed plot: %+v, want %+v", kept, sum)
	}
}
