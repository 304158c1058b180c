package train

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
)

// TestStepLossIsTargetMean checks the loss a step logs against an
// independent computation: Evaluate's float64 sum of each target's
// negative log-likelihood on the host, over the step's sequences, divided
// by their number of targets. A step's loss is that mean over all its
// micro-batches (what package doc says, and Hugging Face's Trainer
// computes with num_items_in_batch), not the mean of the micro-batches'
// own means, which differs where they hold different numbers of targets;
// the test checks that the two differ by far more than its tolerance for
// the data it uses, so that it would catch the other.
func TestStepLossIsTargetMean(t *testing.T) {
	b := openCPU(t)
	vocab := tinyConfig().VocabSize
	for _, c := range []struct {
		name         string
		task         Task
		seqs         []data.Sequence
		batch, micro int
	}{
		// 6 to 16 tokens with prompts of 2 to 5: micro-batches of 4 and 2
		// sequences with different numbers of answer tokens.
		{"lm", LM, randomSeqs(6, vocab, 4), 6, 4},
		// One target per sequence: micro-batches of 2, 2 and 1.
		{"classify", Classify, randomSeqs(5, vocab, 7), 5, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, _ := tinyModel(t, b, "", 4)
			classes := 0
			if c.task == Classify {
				classes = 2
				if err := m.AddScoreHead(classes, 1); err != nil {
					t.Fatal(err)
				}
			}
			const seed = 3
			idx := newOrder(len(c.seqs), seed).batch(0, c.batch)
			eval := func(is []int) *EvalResult {
				t.Helper()
				seqs := make([]data.Sequence, len(is))
				for k, i := range is {
					seqs[k] = c.seqs[i]
				}
				ev, err := Evaluate(context.Background(), m, c.task, seqs, len(seqs), classes)
				if err != nil {
					t.Fatal(err)
				}
				return ev
			}
			// Before training: the step's loss is that of the weights it
			// starts from.
			whole := eval(idx)
			var meanOfMeans float64
			mbs := microBatches(idx, c.micro)
			for _, mb := range mbs {
				meanOfMeans += eval(mb).Loss / float64(len(mbs))
			}
			tr := &Trainer{Model: m, Task: c.task, Classes: classes, Train: c.seqs,
				Options: Options{Steps: 1, Batch: c.batch, MicroBatch: c.micro, LR: 1e-3, Seed: seed}}
			res, err := tr.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			tol := 1e-5 * whole.Loss
			if d := math.Abs(res.Loss - whole.Loss); d > tol {
				t.Errorf("step loss %.9g, want the mean over the step's %d targets %.9g (differs by %.3g)", res.Loss, whole.Targets, whole.Loss, d)
			}
			if d := math.Abs(meanOfMeans - whole.Loss); d < 100*tol {
				t.Fatalf("the mean of the micro-batches' means %.9g is within %.3g of the target mean %.9g: the test cannot tell them apart", meanOfMeans, d, whole.Loss)
			}
		})
	}
}

// TestTrainOnInputs: with TrainOnInputs the step's loss is the mean over
// every token after the first, prompts included (Evaluate on the
// sequences with no prompt gives it independently), which differs from
// the response-only mean; the setting is recorded for a resume; a
// classification run refuses it.
func TestTrainOnInputs(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(6, tinyConfig().VocabSize, 4)
	m, _ := tinyModel(t, b, "", 4)
	const seed, batch = 3, 6
	idx := newOrder(len(seqs), seed).batch(0, batch)
	eval := func(seqs []data.Sequence) float64 {
		t.Helper()
		picked := make([]data.Sequence, len(idx))
		for k, i := range idx {
			picked[k] = seqs[i]
		}
		ev, err := Evaluate(context.Background(), m, LM, picked, len(picked), 0)
		if err != nil {
			t.Fatal(err)
		}
		return ev.Loss
	}
	whole, response := eval(trainedWhole(seqs)), eval(seqs)
	if math.Abs(whole-response) < 1e-3*whole {
		t.Fatalf("whole-sequence loss %.6g and response loss %.6g too close for the test to tell them apart", whole, response)
	}
	tr := &Trainer{Model: m, Task: LM, Train: seqs,
		Options: Options{Steps: 1, Batch: batch, LR: 1e-3, Seed: seed, TrainOnInputs: true}}
	res, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(res.Loss - whole); d > 1e-5*whole {
		t.Errorf("step loss %.9g, want the mean over every token %.9g (the response-only mean is %.9g)", res.Loss, whole, response)
	}
	if seqs[0].PromptLen == 0 {
		t.Errorf("the caller's sequences lost their prompts")
	}
	if s := runSettings(tr.Options, nil, 0, nil, 0); s["train-on-inputs"] != "true" {
		t.Errorf("settings %v lack train-on-inputs", s)
	}
	if s := runSettings(Options{}, nil, 0, nil, 0); s["train-on-inputs"] != "" {
		t.Errorf("a run without it records train-on-inputs %q", s["train-on-inputs"])
	}
	mc, _ := tinyModel(t, b, "", 4)
	if err := mc.AddScoreHead(2, 1); err != nil {
		t.Fatal(err)
	}
	_, err = (&Trainer{Model: mc, Task: Classify, Classes: 2, Train: seqs, Options: Options{Steps: 1, Batch: 2, LR: 1e-3, TrainOnInputs: true}}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "train-on-inputs") {
		t.Errorf("classification with TrainOnInputs: %v, want a refusal naming it", err)
	}
}
