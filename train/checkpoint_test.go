package train

import (
	"context"
	"math"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// TestGradientCheckpointingRun checks that a run with
// Options.GradientCheckpointing (LoRA with dropout, micro-batches) ends
// with the trainable weights of one without, bit for bit (the tiny
// vocabulary keeps the head in one chunk, so only the layers are
// recomputed), and that the trainer leaves the model as it found it.
func TestGradientCheckpointingRun(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(8, tinyConfig().VocabSize, 6)
	var got [][][]float32
	for _, on := range []bool{false, true} {
		m, pm := tinyModelDropout(t, b, peft.LoRA, 9, 0.2)
		o := Options{Steps: 3, Batch: 4, MicroBatch: 2, LR: 1e-2, Seed: 2, GradientCheckpointing: on}
		tr := &Trainer{Model: m, Adapter: pm, Train: seqs, Options: o}
		if _, err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		got = append(got, download(t, pm.Trainable()))
	}
	if i, j, ok := sameBits(got[0], got[1]); !ok {
		t.Errorf("tensor %d element %d: %v with gradient checkpointing, %v without", i, j, got[1][i][j], got[0][i][j])
	}
}

// TestStepLossCapsLogits checks that the trainer's loss and evaluation go
// through the model's own head, Gemma 2's final soft-cap included: the
// step loss equals the model's LMLoss over the same batch, and it would
// not without the cap (the cap of 2 bends these logits).
func TestStepLossCapsLogits(t *testing.T) {
	b := openCPU(t)
	cfg := llama.Config{Dim: 16, HiddenDim: 24, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, HeadWidth: 8, VocabSize: 23,
		MaxSeqLen: 24, NormEps: 1e-6, RopeTheta: 1e4, TiedEmbeddings: true, Family: llama.FamilyGemma2,
		Activation: llama.GELUTanh, QueryPreAttnScalar: 8, LayerKinds: "sf", SlidingWindow: 4, LocalRopeTheta: 1e4,
		RopeLayout: llama.RopeHalfSplit, AttnLogitSoftcap: 3, FinalLogitSoftcap: 2}
	w, err := InitWeights(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range w.Params() {
		for i := range p.Data {
			p.Data[i] *= 20 // logits well past the cap
		}
	}
	m, err := llama.New(b, w)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	seqs := randomSeqs(3, cfg.VocabSize, 8)
	batch, err := data.MakeBatch(seqs, []int{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	g := graph.New(b)
	defer g.Close()
	g.SetNoGrad(true)
	loss, n, err := stepLoss(g, m, LM, batch, 0)
	if err != nil {
		t.Fatal(err)
	}
	rows, targets := batch.LossPositions()
	all := make([]int32, batch.Size*batch.Len)
	for i := range all {
		all[i] = graph.IgnoreIndex
	}
	for k, r := range rows {
		all[r] = targets[k]
	}
	want, err := m.LMLoss(g, toLlama(batch), all, graph.CrossEntropyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	uncapped := uncappedLoss(t, g, m, batch, rows, targets)
	got, wl := item(t, loss), item(t, want)
	// stepLoss divides by the divisor it is given, 0 here: the count.
	if n != len(rows) || math.Abs(got-wl) > 1e-6*wl {
		t.Errorf("step loss %v over %d targets; LMLoss %v over %d", got, n, wl, len(rows))
	}
	if math.Abs(uncapped-wl) < 1e-2*wl {
		t.Fatalf("the cap moves the loss only from %v to %v; the test cannot tell them apart", uncapped, wl)
	}
	res, err := Evaluate(m, LM, seqs, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(res.Loss-wl) > 1e-5*wl {
		t.Errorf("Evaluate's loss %v, LMLoss %v", res.Loss, wl)
	}
}

// uncappedLoss is the mean cross-entropy of the output head's logits
// without the final soft-cap.
func uncappedLoss(t *testing.T, g *graph.Tape, m *llama.Model, b data.Batch, rows, targets []int32) float64 {
	t.Helper()
	h, err := m.Hidden(g, toLlama(b))
	if err != nil {
		t.Fatal(err)
	}
	sel := g.Gather(g.Reshape(h, b.Size*b.Len, m.Config().Dim), rows)
	return item(t, g.CrossEntropy(m.Output.Forward(g, sel), targets, graph.CrossEntropyOptions{}))
}

func item(t *testing.T, v *graph.Value) float64 {
	t.Helper()
	x, err := v.Item()
	if err != nil {
		t.Fatal(err)
	}
	return float64(x)
}
