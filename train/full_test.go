package train

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/optim"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// TestFullFineTuneEveryParameter trains the tiny model (tied embeddings)
// with full fine-tuning of every parameter, as a causal LM and as a
// classifier whose head was added before Inject (as sora finetune adds
// it): every parameter moves, the embedding and each norm included; the
// loss falls; the trainer counts and optimizes every element once (the
// head in the adapter's groups, not in a second one); the spectra cover
// the 14 linear layers.
func TestFullFineTuneEveryParameter(t *testing.T) {
	b := openCPU(t)
	for _, task := range []Task{LM, Classify} {
		t.Run(task.String(), func(t *testing.T) {
			w, err := InitWeights(tinyConfig(), 4)
			if err != nil {
				t.Fatal(err)
			}
			m, err := llama.New(b, w)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m.Free)
			classes := 0
			if task == Classify {
				classes = 2
				if err := m.AddScoreHead(classes, 1); err != nil {
					t.Fatal(err)
				}
			}
			pm, err := peft.Inject(m, peft.Config{Method: peft.Full, TargetModules: []string{peft.AllParameters}})
			if err != nil {
				t.Fatal(err)
			}
			defer pm.Unload()
			params := m.Params()
			before := download(t, params)
			var total int64
			for _, p := range params {
				total += int64(p.Len())
			}
			if r := pm.Report(); r.Trainable != total || r.Total != total || r.Percent() != 100 {
				t.Errorf("report %+v: want all %d elements trainable", r, total)
			}
			out := t.TempDir()
			tr := &Trainer{Model: m, Adapter: pm, Task: task, Classes: classes, Train: randomSeqs(4, tinyConfig().VocabSize, 6), // one batch, learned by heart
				Options: Options{Steps: 12, Batch: 4, LR: 1e-2, Warmup: 1, Schedule: "constant", WeightDecay: 0.01, Seed: 3, Out: out}}
			res, err := tr.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if res.Trainable != total {
				t.Errorf("the trainer optimized %d elements, want the model's %d", res.Trainable, total)
			}
			after := download(t, params)
			for i, p := range params {
				if _, _, same := sameBits([][]float32{after[i]}, [][]float32{before[i]}); same {
					t.Errorf("%s did not move", p.Name())
				}
			}
			for _, name := range []string{llama.EmbedName, llama.NormName, llama.LayerParamName(1, llama.ModInputNorm), llama.LayerParamName(0, llama.ModPostNorm)} {
				if !slices.ContainsFunc(params, func(p *graph.Value) bool { return p.Name() == name }) {
					t.Errorf("the model has no %s to check", name)
				}
			}
			rs, err := ReadMetrics(filepath.Join(out, MetricsFile))
			if err != nil {
				t.Fatal(err)
			}
			ls := losses(rs)
			first, last := (ls[0]+ls[1]+ls[2])/3, (ls[9]+ls[10]+ls[11])/3
			if !(last < 0.8*first) {
				t.Errorf("mean loss of the first 3 steps %.4f, of the last 3 %.4f: want a fall of 20%%", first, last)
			}
			t.Logf("loss %.4f → %.4f", first, last)
			var sum Summary
			if raw, err := os.ReadFile(filepath.Join(out, SpectrumJSON)); err != nil {
				t.Fatal(err)
			} else if err := json.Unmarshal(raw, &sum); err != nil {
				t.Fatal(err)
			}
			if len(sum.Layers) != 14 || !(sum.MeanEntropy > 0) {
				t.Errorf("spectrum.json: %d layers, mean entropy %g; want the 14 linear layers' non-zero updates", len(sum.Layers), sum.MeanEntropy)
			}
		})
	}
}

// TestFullFineTuneMemory: full fine-tuning of every parameter holds on the
// device each parameter once, its gradient and AdamW's two moments (16
// bytes per parameter), and nothing else: no second copy of a weight (the
// tied embedding included); Unload gives back all but the model.
func TestFullFineTuneMemory(t *testing.T) {
	b := openCPU(t)
	cfg := tinyConfig()
	w, err := InitWeights(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	start := b.BytesInUse()
	m, err := llama.New(b, w)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	n := cfg.NumParams() // tied: the embedding once
	if got := b.BytesInUse() - start; got != 4*n {
		t.Fatalf("the model holds %d bytes, want 4 × %d parameters", got, n)
	}
	pm, err := peft.Inject(m, peft.Config{Method: peft.Full, TargetModules: []string{peft.AllParameters}})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.BytesInUse() - start; got != 8*n {
		t.Errorf("after Inject %d bytes, want 8 × %d (each parameter and its gradient)", got, n)
	}
	opt, err := optim.NewAdamW(pm.ParamGroups(1e-3, 0.01), optim.DefaultAdamWConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	g := graph.New(b)
	bt := llama.Batch{Tokens: []int32{1, 5, 9, 3, 7, 2}, Size: 1, Len: 6}
	targets, err := llama.LMTargets(bt, nil)
	if err != nil {
		t.Fatal(err)
	}
	loss, err := m.LMLoss(g, bt, targets, graph.CrossEntropyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Backward(loss); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	if got := b.BytesInUse() - start; got != 16*n {
		t.Errorf("after a step %d bytes, want 16 × %d (parameter, gradient, two moments)", got, n)
	}
	opt.Free()
	pm.Unload()
	if got := b.BytesInUse() - start; got != 4*n {
		t.Errorf("after Unload %d bytes, want the model's 4 × %d", got, n)
	}
}
