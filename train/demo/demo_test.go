package demo

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/peft"
)

func TestTasks(t *testing.T) {
	in := []int32{3, 1, 4, 9}
	cases := []struct {
		task Task
		want string
	}{
		{Copy, "<s> <copy> 3 1 4 9 = 3 1 4 9 </s>"},
		{Reverse, "<s> <reverse> 3 1 4 9 = 9 4 1 3 </s>"},
		{Sort, "<s> <sort> 3 1 4 9 = 1 3 4 9 </s>"},
		{ReverseIncrement, "<s> <reverse+1> 3 1 4 9 = 0 5 2 4 </s>"},
	}
	for _, c := range cases {
		s := c.task.example(in)
		if got := Format(s.Tokens); got != c.want {
			t.Errorf("%s: %q, want %q", c.task.Name, got, c.want)
		}
		if s.PromptLen != 7 {
			t.Errorf("%s: prompt length %d, want 7 (BOS, task, 4 digits, =)", c.task.Name, s.PromptLen)
		}
		if len(s.Tokens) > MaxSeqLen {
			t.Errorf("%s: %d tokens exceed MaxSeqLen %d", c.task.Name, len(s.Tokens), MaxSeqLen)
		}
		if slices.Max(s.Tokens) >= VocabSize {
			t.Errorf("%s: token %d outside the vocabulary", c.task.Name, slices.Max(s.Tokens))
		}
	}
}

// small is a demonstration cut down to a few seconds.
func small() Options {
	return Options{Seed: 3, PretrainSteps: 60, FinetuneSteps: 30, Repeats: 1, Methods: []peft.Method{peft.LoRA, peft.SORA}}
}

// TestDeterministic runs a cut-down demonstration twice with one seed: the
// table (times aside) must be identical, and fine-tuning must lower the
// held-out loss of the new task below the pretrained model's for every
// method.
func TestDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demonstration twice (several seconds)")
	}
	b := testbackend.Open(t, "cpu")
	var reps []*Report
	for range 2 {
		var log bytes.Buffer
		r, err := Run(context.Background(), b, func() Options { o := small(); o.Log = &log; return o }())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log.String(), "pretraining") {
			t.Errorf("log lacks the pretraining line:\n%s", log.String())
		}
		reps = append(reps, r)
	}
	a, c := reps[0], reps[1]
	if a.PretrainAccuracy != c.PretrainAccuracy || a.BaselineLoss != c.BaselineLoss {
		t.Errorf("pretraining differs between runs: accuracy %v vs %v, new-task loss %v vs %v", a.PretrainAccuracy, c.PretrainAccuracy, a.BaselineLoss, c.BaselineLoss)
	}
	for i := range a.Rows {
		x, y := a.Rows[i], c.Rows[i]
		x.MsPerStep, y.MsPerStep = 0, 0
		if x.Accuracy != y.Accuracy || x.Loss != y.Loss || x.Entropy != y.Entropy || x.Trainable != y.Trainable {
			t.Errorf("%s differs between runs: %+v vs %+v", x.Method, x, y)
		}
		if !(x.Loss < a.BaselineLoss) {
			t.Errorf("%s: held-out loss %v after fine-tuning, %v before", x.Method, x.Loss, a.BaselineLoss)
		}
		if !(x.Entropy > 0) {
			t.Errorf("%s: update entropy %v; the adapters did not move", x.Method, x.Entropy)
		}
	}
	var table bytes.Buffer
	a.WriteTable(&table)
	for _, want := range []string{"lora", "sora", "held-out accuracy", "SVD entropy", "ms/step"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}
