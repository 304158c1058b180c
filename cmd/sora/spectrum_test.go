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

	// A --plot or --json path that cannot be written (under a plain file)
	// is refused, naming it, before the adapter is analysed: nothing is
	// written, not even the other file.
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flag       string
		plot, json string
	}{
		{"--plot", filepath.Join(blocker, "s.png"), filepath.Join(dir, "kept", "s.json")},
		{"--json", filepath.Join(dir, "kept", "s.png"), filepath.Join(blocker, "sub", "s.json")},
	} {
		code, stdout, errOut := runCLI(t, "spectrum", "--backend", "cpu", "--adapter", ad, "--plot", c.plot, "--json", c.json)
		if code != exitFailure || !strings.Contains(errOut, c.flag) || !strings.Contains(errOut, blocker) {
			t.Errorf("%s under a file: status %d, stderr %q; want a failure naming %s and %s", c.flag, code, errOut, c.flag, blocker)
		}
		if strings.Contains(stdout, "spectra of") {
			t.Errorf("%s under a file: the adapter was analysed first:\n%s", c.flag, stdout)
		}
		if _, err := os.Stat(filepath.Join(dir, "kept")); err == nil {
			t.Errorf("%s under a file: the other output's folder was made", c.flag)
		}
	}
}
