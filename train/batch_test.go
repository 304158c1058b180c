package train

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/peft"
)

// TestGroupedOrder checks GroupByLength's order: every epoch is a
// permutation of the sequences that starts with a longest one, each
// megabatch of groupBatches batches runs longest first after its first
// position (where the swap that puts the longest first may have put a
// shorter one), the order follows the seed and the epoch, and the
// batches pad far less than the ungrouped order's.
func TestGroupedOrder(t *testing.T) {
	const n, batch = 1000, 4
	seqs := make([]data.Sequence, n)
	for i := range seqs {
		seqs[i].Tokens = make([]int32, 1+(i*7919)%97) // lengths 1 to 97, scattered
	}
	seqs[n-1].Tokens = make([]int32, 150) // one longest, which each epoch must start with
	padding := func(o *order) (real, computed int) {
		for s := range n / batch {
			longest := 0
			for _, i := range o.batch(s, batch) {
				real += len(seqs[i].Tokens)
				longest = max(longest, len(seqs[i].Tokens))
			}
			computed += batch * longest
		}
		return real, computed
	}
	g := groupedOrder(seqs, 3, batch)
	for e := range 4 {
		seen := make([]bool, n)
		for p := e * n; p < (e+1)*n; p++ {
			i := g.at(p)
			if seen[i] {
				t.Fatalf("epoch %d: sequence %d twice", e, i)
			}
			seen[i] = true
			if q := p - e*n; q%g.group > 1 && len(seqs[i].Tokens) > len(seqs[g.at(p-1)].Tokens) {
				t.Fatalf("epoch %d, position %d: longer than the one before within a megabatch", e, q)
			}
		}
		if first := g.at(e * n); first != n-1 {
			t.Errorf("epoch %d starts with sequence %d (%d tokens), want the longest, %d", e, first, len(seqs[first].Tokens), n-1)
		}
	}
	if g.group != groupBatches*batch {
		t.Errorf("megabatch of %d positions, want %d", g.group, groupBatches*batch)
	}
	again, other := groupedOrder(seqs, 3, batch), groupedOrder(seqs, 4, batch)
	var same, differs bool = true, false
	for p := range 2 * n {
		same = same && again.at(p) == g.at(p)
		differs = differs || other.at(p) != g.at(p)
	}
	if !same || !differs {
		t.Errorf("the grouped order does not follow the seed (same seed equal: %v, other seed differs: %v)", same, differs)
	}
	realG, compG := padding(groupedOrder(seqs, 3, batch))
	realR, compR := padding(newOrder(n, 3))
	t.Logf("real/computed positions: grouped %.3f, random %.3f", float64(realG)/float64(compG), float64(realR)/float64(compR))
	if realG != realR || !(float64(realG)/float64(compG) > 0.95 && float64(compG) < 0.8*float64(compR)) {
		t.Errorf("grouped batches compute %d positions for %d, random ones %d for %d; want nearly no padding", compG, realG, compR, realR)
	}
}

// TestMegabatch: Hugging Face's megabatch size, 50 batches or the number
// that makes four megabatches, whichever is fewer, and at least one.
func TestMegabatch(t *testing.T) {
	for _, c := range []struct{ n, batch, want int }{
		{1000, 4, 200}, {100000, 8, 400}, {100, 4, 24}, {16, 4, 4}, {10, 4, 4}, {1, 1, 1}, {801, 4, 200}, {799, 4, 196},
	} {
		if got := megabatch(c.n, c.batch); got != c.want {
			t.Errorf("megabatch(%d, %d) = %d, want %d", c.n, c.batch, got, c.want)
		}
	}
}

// TestGroupByLengthResume checks that GroupByLength is part of what a
// resume must keep: a run with it cannot resume a checkpoint without it,
// nor the reverse, and a run resumes its own.
func TestGroupByLengthResume(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(16, tinyConfig().VocabSize, 7)
	out := t.TempDir()
	// run trains 4 steps, stopping after stopAt (0: not) as Ctrl-C does.
	run := func(group, resume bool, stopAt int) error {
		m, pm := tinyModel(t, b, peft.LoRA, 3)
		o := Options{Steps: 4, Batch: 4, LR: 1e-3, Seed: 5, Out: out, Resume: resume, GroupByLength: group, SaveEvery: 2}
		_, err := runStoppingAt(&Trainer{Model: m, Adapter: pm, Train: seqs, Options: o}, stopAt)
		return err
	}
	if err := run(true, false, 2); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if err := run(false, true, 0); err == nil || !strings.Contains(err.Error(), "group-by-length true (now false)") {
		t.Errorf("resuming a grouped run without grouping: error %v; want one naming group-by-length", err)
	}
	if err := run(true, true, 0); err != nil {
		t.Errorf("resuming a grouped run with grouping: %v", err)
	}
	out = t.TempDir()
	if err := run(false, false, 2); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if err := run(true, true, 0); err == nil || !strings.Contains(err.Error(), "group-by-length false (now true)") {
		t.Errorf("resuming an ungrouped run with grouping: error %v; want one naming group-by-length", err)
	}
}

// TestEvaluateOrderFree checks that Evaluate, which batches its sequences
// longest first, gives the same results whatever order they come in.
func TestEvaluateOrderFree(t *testing.T) {
	b := openCPU(t)
	m, _ := tinyModel(t, b, "", 6)
	seqs := randomSeqs(11, tinyConfig().VocabSize, 9)
	want, err := Evaluate(context.Background(), m, LM, seqs, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	rev := slices.Clone(seqs)
	slices.Reverse(rev)
	got, err := Evaluate(context.Background(), m, LM, rev, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got.Loss-want.Loss) > 1e-6*want.Loss || got.Accuracy != want.Accuracy || got.Targets != want.Targets {
		t.Errorf("reversed input: %+v; in order: %+v", got, want)
	}
}
