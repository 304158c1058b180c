package train

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// TestResumeFullOlderGroups resumes full fine-tuning of the linear layers
// of a model with Qwen2's q/k/v biases from a checkpoint as sora wrote it
// before full fine-tuning exempted biases and norm weights from weight
// decay: one optimizer group, each layer's bias after its weight, so its
// optimizer state lists the parameters in another order. Without weight
// decay the groups differ in nothing but order, and the resumed run ends
// with the uninterrupted run's weights bit for bit; with weight decay the
// old run decayed the biases, which this one does not, and the resume is
// refused with a message that says so and names the checkpoint.
func TestResumeFullOlderGroups(t *testing.T) {
	b := openCPU(t)
	cfg := tinyConfig()
	cfg.AttentionBias = llama.BiasQKV
	seqs := randomSeqs(13, cfg.VocabSize, 5)
	model := func() *peft.Model {
		t.Helper()
		w, err := InitWeights(cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range w.Params() {
			for i := range p.Data {
				p.Data[i] *= 10 // biases away from 0 too
				if len(p.Shape) == 1 {
					p.Data[i] += 0.1 * float32(i%5)
				}
			}
		}
		m, err := llama.New(b, w)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Free)
		pm, err := peft.Inject(m, peft.Config{Method: peft.Full, TargetModules: []string{peft.AllLinear}})
		if err != nil {
			t.Fatal(err)
		}
		return pm
	}
	for _, wd := range []float64{0, 0.01} {
		t.Run(fmt.Sprintf("weight-decay=%g", wd), func(t *testing.T) {
			opts := func(dir string) Options {
				o := resumeOptions(dir)
				o.WeightDecay = wd
				return o
			}
			pmA := model()
			if _, err := (&Trainer{Model: pmA.Module().(*llama.Model), Adapter: pmA, Train: seqs, Options: opts(t.TempDir())}).Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			want := download(t, pmA.Trainable())

			dir := t.TempDir()
			pmB := model()
			if _, err := runStoppingAt(&Trainer{Model: pmB.Module().(*llama.Model), Adapter: pmB, Train: seqs, Options: opts(dir)}, 4); !IsInterrupted(err) {
				t.Fatalf("interrupted run: %v", err)
			}
			// The older layout: layer by layer, weight then bias.
			var old []string
			for _, l := range pmB.Layers() {
				for _, p := range l.Trainable() {
					old = append(old, p.Name())
				}
			}
			ck, err := LatestCheckpoint(dir)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(ck, optimizerFile)
			s, err := loadOptimizer(path)
			if err != nil {
				t.Fatal(err)
			}
			byName := map[string]optim.ParamState{}
			for _, ps := range s.Params {
				byName[ps.Name] = ps
			}
			reordered := &optim.State{Kind: s.Kind, Steps: s.Steps}
			for _, n := range old {
				reordered.Params = append(reordered.Params, byName[n])
			}
			if len(old) != len(s.Params) || reordered.Params[1].Name == s.Params[1].Name {
				t.Fatalf("the older order %v is not another order of the checkpoint's %d parameters", old, len(s.Params))
			}
			if err := saveOptimizer(path, reordered); err != nil {
				t.Fatal(err)
			}

			pmC := model()
			o := opts(dir)
			o.Resume = true
			_, err = (&Trainer{Model: pmC.Module().(*llama.Model), Adapter: pmC, Train: seqs, Options: o}).Run(context.Background())
			if wd != 0 {
				if err == nil || !strings.Contains(err.Error(), ck) || !strings.Contains(err.Error(), "weight decay") || !strings.Contains(err.Error(), "biases") {
					t.Fatalf("resuming an older checkpoint with weight decay: %v; want a refusal that names the checkpoint and says why", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if i, j, same := sameBits(download(t, pmC.Trainable()), want); !same {
				t.Errorf("resumed %s[%d] differs from the uninterrupted run's", pmC.Trainable()[i].Name(), j)
			}
		})
	}
}
