package train_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/train"
)

// TestTrainingThreadIndependent trains a model of stories260K's shape
// (dim 64, 5 layers, 8 query heads over 4 key/value heads, vocabulary
// 512; randomly initialised, so that no data file is needed) with full
// fine-tuning at batch 1 on sequences of 256 tokens, on CPU backends
// capped at 1 and at 3 threads, and requires the same losses and the
// same trained weights, bit for bit: the run behind the finding that the
// norms' weight gradients and attention's key and value gradients once
// split their sums by thread. At this shape they are split into several
// pieces (and attention's backward into several parts per key/value
// head) at the production grain. It runs with fused attention and with
// the unfused composition (Softmax, batched MatMul). It lives with the
// trainer it drives, not in the CPU backend's tests, which do not drive
// the trainer (they test ops, directly and through package conformance's
// graph and gradient checks).
func TestTrainingThreadIndependent(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a small model twice per attention kind; skipped with -short")
	}
	for _, attention := range []string{"fused", "unfused"} {
		t.Run(attention, func(t *testing.T) {
			if attention == "unfused" {
				t.Setenv(graph.AttentionEnv, "unfused")
			}
			type run struct {
				losses  []float64
				weights [][]float32
			}
			var runs []run
			for _, threads := range []int{1, 3} {
				losses, weights := trainStories(t, threads)
				runs = append(runs, run{losses, weights})
			}
			a, b := runs[0], runs[1]
			if len(a.losses) != len(b.losses) || len(a.losses) == 0 {
				t.Fatalf("%d and %d losses recorded", len(a.losses), len(b.losses))
			}
			for i := range a.losses {
				if math.Float64bits(a.losses[i]) != math.Float64bits(b.losses[i]) {
					t.Errorf("step %d: loss %.17g on 1 thread, %.17g on 3", i+1, a.losses[i], b.losses[i])
				}
			}
			diff := 0
			for p := range a.weights {
				for i := range a.weights[p] {
					if math.Float32bits(a.weights[p][i]) != math.Float32bits(b.weights[p][i]) {
						diff++
					}
				}
			}
			if diff > 0 {
				t.Errorf("%d trained weights differ between 1 and 3 threads", diff)
			}
			t.Logf("losses %v", a.losses)
		})
	}
}

// trainStories runs four steps of full fine-tuning on a CPU backend with
// the given thread cap and returns each step's loss and every trained
// weight.
func trainStories(t *testing.T, threads int) ([]float64, [][]float32) {
	t.Helper()
	be := cpu.New(cpu.Options{Threads: threads})
	defer be.Close()
	cfg := llama.Config{Dim: 64, HiddenDim: 172, NumLayers: 5, NumHeads: 8, NumKVHeads: 4, VocabSize: 512,
		MaxSeqLen: 256, NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true}
	w, err := train.InitWeights(cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.New(be, w)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	pm, err := peft.Inject(m, peft.Config{Method: peft.Full, TargetModules: []string{peft.AllParameters}})
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Unload()
	rng := rand.New(rand.NewPCG(5, 6))
	seqs := make([]data.Sequence, 4)
	for i := range seqs {
		toks := make([]int32, 256)
		toks[0] = 1
		for j := 1; j < len(toks); j++ {
			toks[j] = int32(3 + rng.IntN(cfg.VocabSize-3))
		}
		seqs[i] = data.Sequence{Tokens: toks, PromptLen: 1, Row: i}
	}
	out := t.TempDir()
	tr := &train.Trainer{Model: m, Adapter: pm, Task: train.LM, Train: seqs,
		Options: train.Options{Steps: 4, Batch: 1, LR: 3e-3, Warmup: 1, Schedule: "constant", WeightDecay: 0.01,
			Seed: 3, Out: out, NoSpectra: true}}
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var losses []float64
	for _, r := range rs {
		if r.Loss != nil {
			losses = append(losses, *r.Loss)
		}
	}
	var weights [][]float32
	for _, p := range m.Params() {
		h, err := p.Download()
		if err != nil {
			t.Fatal(fmt.Errorf("%s: %w", p.Name(), err))
		}
		weights = append(weights, h)
	}
	return losses, weights
}
