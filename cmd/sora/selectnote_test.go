package main

import (
	"strings"
	"testing"

	"github.com/sora-go/sora/train"
)

// TestSelectionNote checks when finetune says that --keep-best or
// --early-stopping cannot act: evaluations every --eval-every steps before
// the last and one after it.
func TestSelectionNote(t *testing.T) {
	for _, c := range []struct {
		o    train.Options
		want string
	}{
		{train.Options{Steps: 6, EvalEvery: 10, KeepBest: true}, "the only evaluation is the final one"},
		{train.Options{Steps: 6, EvalEvery: 6, KeepBest: true}, "the only evaluation is the final one"},
		{train.Options{Steps: 7, EvalEvery: 6, KeepBest: true}, ""},
		{train.Options{Steps: 6, EvalEvery: 10, EarlyStopping: 2}, "the run makes 1 evaluation (every 10 of its 6 steps, and at the end), so --early-stopping 2 can never stop it"},
		{train.Options{Steps: 20, EvalEvery: 10, EarlyStopping: 2}, "makes 2 evaluations"},
		{train.Options{Steps: 21, EvalEvery: 10, EarlyStopping: 2}, ""},
		{train.Options{Steps: 100, EvalEvery: 10, EarlyStopping: 3, KeepBest: true}, ""},
		{train.Options{Steps: 6, EvalEvery: 10}, ""},
	} {
		got := selectionNote(c.o)
		if (got == "") != (c.want == "") || !strings.Contains(got, c.want) {
			t.Errorf("steps %d, eval every %d, keep-best %v, early stopping %d: %q; want %q", c.o.Steps, c.o.EvalEvery, c.o.KeepBest, c.o.EarlyStopping, got, c.want)
		}
	}
}
