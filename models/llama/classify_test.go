package llama_test

import (
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/optim"
	"github.com/sora-go/sora/models/llama"
)

// TestClassifyReadsLastRealToken checks the classification logits against
// the score weights applied on the host to the hidden state of each row's
// last real position.
func TestClassifyReadsLastRealToken(t *testing.T) {
	b := openCPU(t)
	cfg := tinyConfig(true, llama.RopeInterleaved)
	m := newModel(t, b, randomWeights(t, cfg, 101))
	if err := m.AddScoreHead(3, 5); err != nil {
		t.Fatal(err)
	}
	if refs := m.Layers(); refs[len(refs)-1].Name != "score" {
		t.Fatalf("last layer slot is %q, want score", refs[len(refs)-1].Name)
	}
	ps := m.Params()
	if last := ps[len(ps)-1]; last.Name() != "score.weight" || !last.Trainable() {
		t.Fatalf("last parameter %v, want the trainable score.weight", last)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	const T = 7
	bt := llama.Batch{Tokens: randomTokens(rng, 3*T, cfg.VocabSize), Size: 3, Len: T, Lengths: []int{7, 2, 4}}
	g := graph.New(b)
	defer g.Close()
	g.SetNoGrad(true)
	h, err := m.Hidden(g, bt)
	if err != nil {
		t.Fatal(err)
	}
	hidden := download(t, h)
	lv, err := m.Classify(g, bt)
	if err != nil {
		t.Fatal(err)
	}
	got := download(t, lv)
	w := download(t, ps[len(ps)-1])
	d := cfg.Dim
	for r, n := range bt.Lengths {
		x := hidden[(r*T+n-1)*d : (r*T+n)*d]
		for k := range 3 {
			var s float64
			for j := range d {
				s += float64(w[k*d+j]) * float64(x[j])
			}
			if diff := float64(got[r*3+k]) - s; diff > 1e-5 || diff < -1e-5 {
				t.Errorf("row %d label %d: logit %v, want %v", r, k, got[r*3+k], s)
			}
		}
	}
	if err := m.AddScoreHead(1, 0); err == nil {
		t.Error("a score head with one label: no error")
	}
	if _, _, err := m.ClassifyLoss(g, bt, []int32{0, 3, 1}); err == nil {
		t.Error("label 3 of 3 labels: no error")
	}
}

// TestClassifierLearnsToyTask trains the score head together with the
// final norm and the last block's feed-forward (standing in for adapters)
// on a toy task, whether the last real token of a padded random
// sequence is in a fixed half of the vocabulary, and checks that the loss
// falls well below its start and the training accuracy rises.
func TestClassifierLearnsToyTask(t *testing.T) {
	b := openCPU(t)
	cfg := tinyConfig(false, llama.RopeHalfSplit)
	m := newModel(t, b, randomWeights(t, cfg, 111))
	if err := m.AddScoreHead(2, 9); err != nil {
		t.Fatal(err)
	}
	last := m.Blocks[len(m.Blocks)-1]
	for _, p := range append(llama.LayerParams(last.Gate), m.Norm) {
		if err := p.SetTrainable(true); err != nil {
			t.Fatal(err)
		}
	}
	trainable := m.Trainable()
	if len(trainable) != 3 {
		t.Fatalf("%d trainable parameters, want gate_proj, the final norm and the score head", len(trainable))
	}
	opt, err := optim.NewAdamW([]optim.Group{{Params: trainable, LR: 0.02}}, optim.DefaultAdamWConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()
	rng := rand.New(rand.NewPCG(2, 3))
	positive := rng.Perm(cfg.VocabSize)[:cfg.VocabSize/2]
	inSet := map[int32]bool{}
	for _, v := range positive {
		inSet[int32(v)] = true
	}
	const B, T = 16, 6
	batch := func() (llama.Batch, []int32) {
		bt := llama.Batch{Tokens: randomTokens(rng, B*T, cfg.VocabSize), Size: B, Len: T, Lengths: make([]int, B)}
		labels := make([]int32, B)
		for r := range B {
			n := 1 + rng.IntN(T)
			bt.Lengths[r] = n
			if inSet[bt.Tokens[r*T+n-1]] {
				labels[r] = 1
			}
		}
		return bt, labels
	}
	g := graph.New(b)
	defer g.Close()
	evalBt, evalLabels := batch()
	evaluate := func() (loss float32, acc float64) {
		g.Reset()
		defer g.SetNoGrad(g.SetNoGrad(true))
		l, logits, err := m.ClassifyLoss(g, evalBt, evalLabels)
		if err != nil {
			t.Fatal(err)
		}
		loss, err = l.Item()
		if err != nil {
			t.Fatal(err)
		}
		lg := download(t, logits)
		for r, y := range evalLabels {
			if pred := llama.Argmax(lg[2*r : 2*r+2]); int32(pred) == y {
				acc++
			}
		}
		return loss, acc / B
	}
	startLoss, startAcc := evaluate()
	for range 100 {
		g.Reset()
		bt, labels := batch()
		loss, _, err := m.ClassifyLoss(g, bt, labels)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Backward(loss); err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		opt.ZeroGrad()
	}
	endLoss, endAcc := evaluate()
	t.Logf("held-out loss %.4f -> %.4f, accuracy %.2f -> %.2f", startLoss, endLoss, startAcc, endAcc)
	if !(endLoss < 0.5*startLoss) || endAcc < 0.8 {
		t.Fatalf("training did not learn the task: loss %.4f -> %.4f, accuracy %.2f -> %.2f", startLoss, endLoss, startAcc, endAcc)
	}
	// Only the trainable parameters received gradients.
	for _, p := range m.Params() {
		if !p.Trainable() && !p.Grad().IsZero() {
			t.Errorf("frozen %s has a gradient", p.Name())
		}
	}
}
