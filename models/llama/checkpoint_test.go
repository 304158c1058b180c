package llama_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// checkpointRun is one training step's loss, trainable gradients by name
// and the tape's peak live bytes, of a fresh model over w, with gradient
// checkpointing on or off; with method set, a PEFT method with input
// dropout adapts every linear layer, else every parameter is trainable.
type checkpointRun struct {
	loss  float32
	grads map[string][]float32
	peak  int64
}

func runCheckpointStep(t *testing.T, w *llama.Weights, bt llama.Batch, targets []int32, method peft.Method, checkpoint bool) checkpointRun {
	t.Helper()
	b := openCPU(t)
	m := newModel(t, b, w)
	if method != "" {
		pm, err := peft.Inject(m, peft.Config{Method: method, R: 2, Alpha: 4, RotationRank: 2, Dropout: 0.3,
			TargetModules: []string{peft.AllLinear}, Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		pm.SetDropoutStep(3, 1)
	} else {
		for _, p := range m.Params() {
			if err := p.SetTrainable(true); err != nil {
				t.Fatal(err)
			}
		}
	}
	m.SetGradientCheckpointing(checkpoint)
	g := graph.New(b)
	t.Cleanup(g.Close)
	loss, err := m.LMLoss(g, bt, targets, graph.CrossEntropyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Backward(loss); err != nil {
		t.Fatal(err)
	}
	r := checkpointRun{grads: map[string][]float32{}, peak: g.Stats().PeakLiveBytes}
	if r.loss, err = loss.Item(); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Trainable() {
		if r.grads[p.Name()], err = p.DownloadGrad(); err != nil {
			t.Fatalf("%s: %v", p.Name(), err)
		}
	}
	return r
}

// TestGradientCheckpointing checks that checkpointing every decoder layer
// changes neither the loss nor any gradient, by a single bit, for each
// kind of layer (LLaMA, Qwen3's QK-norm, Gemma 3's and Gemma 2's with
// sliding windows and soft-caps) with every parameter trainable and with
// LoRA and SORA adapters whose input dropout must draw the same masks in
// the recomputation; and that it keeps fewer activations at the step's
// peak.
func TestGradientCheckpointing(t *testing.T) {
	configs := []namedConfig{
		{"llama", tinyConfig(false, llama.RopeInterleaved)},
		{"qwen3", qwen3Config(llama.RopeHalfSplit)},
		{"gemma3", gemmaConfig(llama.RopeHalfSplit)},
		{"gemma2", gemma2Config(llama.RopeHalfSplit)},
	}
	const B, T = 2, 9
	for _, nc := range configs {
		w := gemmaWeights(t, nc.cfg, 17)
		rng := rand.New(rand.NewPCG(4, 5))
		bt := llama.Batch{Tokens: randomTokens(rng, B*T, nc.cfg.VocabSize), Size: B, Len: T}
		targets, err := llama.LMTargets(bt, []int{2, 3})
		if err != nil {
			t.Fatal(err)
		}
		for _, method := range []peft.Method{"", peft.LoRA, peft.SORA} {
			name := nc.name + "/" + string(method)
			if method == "" {
				name = nc.name + "/every parameter"
			}
			t.Run(name, func(t *testing.T) {
				plain := runCheckpointStep(t, w, bt, targets, method, false)
				ckpt := runCheckpointStep(t, w, bt, targets, method, true)
				if ckpt.loss != plain.loss {
					t.Errorf("loss %v checkpointed, %v plain", ckpt.loss, plain.loss)
				}
				if len(ckpt.grads) != len(plain.grads) || len(plain.grads) == 0 {
					t.Fatalf("%d trainable tensors checkpointed, %d plain", len(ckpt.grads), len(plain.grads))
				}
				for name, want := range plain.grads {
					if !slices.Equal(ckpt.grads[name], want) {
						t.Errorf("%s: gradient differs with checkpointing (max relative %.3g)", name, maxRelDiff(ckpt.grads[name], want))
					}
				}
				t.Logf("loss %v; peak live bytes: %d checkpointed, %d plain", plain.loss, ckpt.peak, plain.peak)
				if !(ckpt.peak < plain.peak) {
					t.Errorf("peak live bytes %d checkpointed, not below the plain run's %d", ckpt.peak, plain.peak)
				}
			})
		}
	}
}
