package llama_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
)

// packedCase is a set of documents laid out twice: one per row of an
// unpacked batch, and packed several to a row (Batch.Segments).
type packedCase struct {
	unpacked, packed llama.Batch
	// at[d][t] is the flat position of token t of document d in the
	// packed batch; last[d] that of its last token in the unpacked one.
	at   [][]int32
	last []int32
}

// packDocs makes a packedCase of documents of the given lengths with
// random tokens, packed into rows as rows lists them (indices into lens),
// each row padded to the longest with a document number of its own.
func packDocs(lens []int, rows [][]int, vocab int, rng *rand.Rand) packedCase {
	var c packedCase
	longest := 0
	for _, n := range lens {
		longest = max(longest, n)
	}
	c.unpacked = llama.Batch{Size: len(lens), Len: longest, Tokens: make([]int32, len(lens)*longest), Lengths: lens}
	for d, n := range lens {
		copy(c.unpacked.Tokens[d*longest:], randomTokens(rng, n, vocab))
		c.last = append(c.last, int32(d*longest+n-1))
	}
	packLen := 0
	for _, r := range rows {
		n := 0
		for _, d := range r {
			n += lens[d]
		}
		packLen = max(packLen, n)
	}
	c.packed = llama.Batch{Size: len(rows), Len: packLen, Tokens: make([]int32, len(rows)*packLen), Segments: make([]int32, len(rows)*packLen)}
	c.at = make([][]int32, len(lens))
	for r, docs := range rows {
		off := 0
		for k, d := range docs {
			for t := range lens[d] {
				p := r*packLen + off + t
				c.packed.Tokens[p] = c.unpacked.Tokens[d*longest+t]
				c.packed.Segments[p] = int32(k)
				c.at[d] = append(c.at[d], int32(p))
			}
			off += lens[d]
		}
		for p := off; p < packLen; p++ { // padding: a document of its own
			c.packed.Segments[r*packLen+p] = int32(len(docs))
		}
		c.packed.Lengths = append(c.packed.Lengths, off)
	}
	return c
}

// packTargets moves unpacked targets (one per position of c.unpacked) to
// the packed positions of their documents, IgnoreIndex elsewhere.
func (c packedCase) packTargets(unpacked []int32) []int32 {
	out := make([]int32, c.packed.Size*c.packed.Len)
	for i := range out {
		out[i] = graph.IgnoreIndex
	}
	for d, ps := range c.at {
		for t, p := range ps {
			out[p] = unpacked[d*c.unpacked.Len+t]
		}
	}
	return out
}

// packedDocs are the documents of the packing tests: one of a single token,
// two at a row's start, others starting mid-row after documents longer
// than the test models' sliding window of 3 (so that a window without the
// segments would reach into the document before), and a row shorter than
// the other (padded).
var (
	packedLens = []int{7, 1, 3, 9, 1, 4}
	packedRows = [][]int{{0, 1, 2}, {3, 4, 5}}
)

func requireFused(t *testing.T, b backend.Backend) {
	t.Helper()
	// These tests are about the fused path: a SORA_ATTENTION=unfused in
	// the environment (CI runs the package so once) must not turn it off.
	t.Setenv(graph.AttentionEnv, "")
	if !b.Supports(backend.OpAttention) || !b.Supports(backend.OpAttentionGrad) {
		t.Skipf("the %s backend lacks the fused attention ops (Supports reports false for %s, %s), which packing needs", b.Name(), backend.OpAttention, backend.OpAttentionGrad)
	}
}

// TestPackedMatchesUnpacked is packing's central check: documents packed
// several to a row (LLaMA; Gemma 3 with sliding windows of 3; Gemma 2 with
// windows and attention and final soft-caps) give the loss and every
// parameter's gradient that they give one per row, to float32 rounding,
// with and without gradient checkpointing, even where the caller reuses
// its segments' slice before Backward; so do their no-grad logits and
// a score head's classification logits (ClassifyAt at each document's last
// position). The same packing without segments gives other logits, so
// the comparison can see documents attending to each other.
func TestPackedMatchesUnpacked(t *testing.T) {
	b := openCPU(t)
	requireFused(t, b)
	configs := []namedConfig{
		{"llama", tinyConfig(false, llama.RopeInterleaved)},
		{"gemma3", gemmaConfig(llama.RopeHalfSplit)},
		{"gemma2", gemma2Config(llama.RopeHalfSplit)},
	}
	// Runs that differ in rounding alone: other rows, so other sums in
	// the products, the attention and the loss.
	const tol = 2e-5
	for _, nc := range configs {
		t.Run(nc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(31, 4))
			c := packDocs(packedLens, packedRows, nc.cfg.VocabSize, rng)
			prompts := make([]int, len(packedLens))
			for d, n := range packedLens {
				prompts[d] = rng.IntN(n) // 0 trains every token
			}
			unTargets, err := llama.LMTargets(c.unpacked, prompts)
			if err != nil {
				t.Fatal(err)
			}
			pkTargets := c.packTargets(unTargets)
			m := newModel(t, b, gemmaWeights(t, nc.cfg, 41))
			trainAll(t, m)
			run := func(bt llama.Batch, targets []int32, checkpoint bool) checkpointRun {
				m.SetGradientCheckpointing(checkpoint)
				defer m.SetGradientCheckpointing(false)
				return stepGrads(t, m, func(g *graph.Tape) (*graph.Value, error) {
					// The segments are the caller's again once the forward
					// returns, though Backward (and a checkpointed layer's
					// recomputation) attends again: one document from here.
					bt.Segments = slices.Clone(bt.Segments)
					loss, err := m.LMLoss(g, bt, targets, graph.CrossEntropyOptions{})
					clear(bt.Segments)
					return loss, err
				})
			}
			want := run(c.unpacked, unTargets, false)
			for _, checkpoint := range []bool{false, true} {
				got := run(c.packed, pkTargets, checkpoint)
				sameStep(t, got, want, tol, fmt.Sprintf("checkpointing %v", checkpoint), "packed", "unpacked")
			}

			// No-grad logits at each document's positions.
			logits := func(bt llama.Batch) []float32 {
				g := graph.New(b)
				defer g.Close()
				g.SetNoGrad(true)
				z, err := m.Forward(g, bt)
				if err != nil {
					t.Fatal(err)
				}
				return download(t, z)
			}
			V := nc.cfg.VocabSize
			// worstDoc returns the largest difference of z's logits (of
			// the packed layout) from the unpacked ones zu at any
			// document's position.
			zu := logits(c.unpacked)
			worstDoc := func(z []float32) (worst float64, doc, tok int) {
				for d, ps := range c.at {
					for tk, p := range ps {
						u := d*c.unpacked.Len + tk
						if diff := maxRelDiff(z[int(p)*V:int(p+1)*V], zu[u*V:(u+1)*V]); diff > worst {
							worst, doc, tok = diff, d, tk
						}
					}
				}
				return worst, doc, tok
			}
			if diff, d, tk := worstDoc(logits(c.packed)); diff > tol {
				t.Errorf("logits of document %d token %d differ by %.3g packed against unpacked", d, tk, diff)
			}
			// Without the segments, the packed documents see each other:
			// the comparison must see that.
			open := c.packed
			open.Segments = nil
			if diff, _, _ := worstDoc(logits(open)); diff < 100*tol {
				t.Errorf("the packed batch without segments gives logits within %.3g of the unpacked ones: the test cannot tell them apart", diff)
			}

			// Classification at each document's last token.
			if err := m.AddScoreHead(3, 7); err != nil {
				t.Fatal(err)
			}
			classify := func(bt llama.Batch, rows []int32) []float32 {
				g := graph.New(b)
				defer g.Close()
				g.SetNoGrad(true)
				var z *graph.Value
				var err error
				if rows == nil {
					z, err = m.Classify(g, bt)
				} else {
					z, err = m.ClassifyAt(g, bt, rows)
				}
				if err != nil {
					t.Fatal(err)
				}
				return download(t, z)
			}
			lastPacked := make([]int32, len(c.at))
			for d, ps := range c.at {
				lastPacked[d] = ps[len(ps)-1]
			}
			cu, cp := classify(c.unpacked, nil), classify(c.packed, lastPacked)
			if diff := maxRelDiff(cp, cu); diff > tol {
				t.Errorf("classification logits differ by %.3g packed (ClassifyAt) against unpacked (Classify)", diff)
			}
			if cu2 := classify(c.unpacked, c.last); maxRelDiff(cu2, cu) != 0 {
				t.Errorf("ClassifyAt at the rows' last positions differs from Classify")
			}
		})
	}
}

// TestPackedTargets checks that in a packed batch LMTargets ignores each
// document's last position (which would otherwise predict the next
// document's first token) and the padding, and otherwise gives each
// document the targets it has alone.
func TestPackedTargets(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	c := packDocs(packedLens, packedRows, 29, rng)
	unpacked, err := llama.LMTargets(c.unpacked, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := llama.LMTargets(c.packed, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := c.packTargets(unpacked)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("packed position %d: target %d, want %d", i, got[i], want[i])
		}
	}
	// The boundaries themselves, stated directly.
	for d, ps := range c.at {
		if p := ps[len(ps)-1]; got[p] != graph.IgnoreIndex {
			t.Errorf("document %d's last position %d has target %d; want it ignored", d, p, got[p])
		}
	}
	// Without segments the same rows train across the boundaries.
	open := c.packed
	open.Segments = nil
	across, err := llama.LMTargets(open, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.at[0][len(c.at[0])-1]; across[p] != c.packed.Tokens[c.at[1][0]] {
		t.Errorf("without segments, document 0's last position predicts %d, want document 1's first token %d", across[p], c.packed.Tokens[c.at[1][0]])
	}
}

// TestPackedErrors checks the refusals of packed batches: segments of the
// wrong length or decreasing along a row, Classify (one reading per row),
// per-row prompt lengths, and attention composed without the fused kernel,
// each with an error that names the cause.
func TestPackedErrors(t *testing.T) {
	b := openCPU(t)
	cfg := tinyConfig(false, llama.RopeInterleaved)
	m := newModel(t, b, randomWeights(t, cfg, 3))
	if err := m.AddScoreHead(2, 1); err != nil {
		t.Fatal(err)
	}
	c := packDocs(packedLens, packedRows, cfg.VocabSize, rand.New(rand.NewPCG(1, 1)))
	short := c.packed
	short.Segments = short.Segments[1:]
	down := c.packed
	down.Segments = append([]int32{}, c.packed.Segments...)
	down.Segments[c.packed.Len+5] = 0 // row 1 goes 0, 0, …, 1 then back to 0
	down.Segments[c.packed.Len+4] = 1
	tape := func() *graph.Tape {
		g := graph.New(b)
		t.Cleanup(g.Close)
		return g
	}
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"short segments", func() error { _, err := m.Hidden(tape(), short); return err }, "llama: batch has 27 segment numbers, want one per position"},
		{"decreasing", func() error { _, err := m.Hidden(tape(), down); return err }, "decrease in sequence 1 at position 5"},
		{"LMTargets decreasing", func() error { _, err := llama.LMTargets(down, nil); return err }, "llama: LMTargets: batch segment numbers decrease"},
		{"Classify", func() error { _, err := m.Classify(tape(), c.packed); return err }, "ClassifyAt"},
		{"prompts", func() error { _, err := llama.LMTargets(c.packed, make([]int, 2)); return err }, "packed batch"},
		{"ClassifyAt nothing", func() error { _, err := m.ClassifyAt(tape(), c.packed, nil); return err }, "no positions"},
		{"composed attention", func() error {
			g := tape()
			g.SetFusedAttention(false)
			targets, err := llama.LMTargets(c.packed, nil)
			if err != nil {
				return err
			}
			loss, err := m.LMLoss(g, c.packed, targets, graph.CrossEntropyOptions{})
			if err != nil {
				return err
			}
			return g.Backward(loss)
		}, "segments (sequence packing) need the backend's fused attention"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want one containing %q", err, tc.want)
			}
		})
	}
}
