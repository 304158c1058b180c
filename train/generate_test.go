package train

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sora-go/sora/internal/testdata"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
)

// stories loads stories260K and its tokenizer (skipping without the data).
func stories(t *testing.T) (*llama.Model, *tokenizer.Tokenizer) {
	t.Helper()
	modelPath, tokPath := testdata.Stories260K(t)
	w, _, err := llama2c.Load(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.New(openCPU(t), w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m, tok
}

// alone generates for each prompt by itself with a llama.Generator, the
// reference Generate's batches must reproduce.
func alone(t *testing.T, m *llama.Model, prompts [][]int, maxNew int, stop []int) [][]int {
	t.Helper()
	gen, err := m.NewGenerator(0)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	out := make([][]int, len(prompts))
	for i, p := range prompts {
		seq, err := gen.Generate(p, llama.GenerateOptions{Steps: len(p) + maxNew - 1, Stop: stop}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = seq[len(p):]
	}
	return out
}

// TestGenerateBatches checks that batched greedy generation gives every
// prompt the tokens it gets alone, for batches of 1, 3 and 16 (more than
// the prompts), with prompts of varied lengths, a stop token that ends
// some rows early, and a prompt so long that the batch's positions run
// out before its short neighbours are done (they are finished alone).
func TestGenerateBatches(t *testing.T) {
	m, tok := stories(t)
	texts := []string{
		"Once upon a time",
		"Tom had a dog",
		"The sun was hot and the children went to the park to play on the swings. Lily",
		"One day",
		"Sara saw a big red ball in the garden. She",
		"The cat",
		"Ben and Mia wanted to build a tower of blocks, but the tower fell down. Ben was sad. Mia said",
	}
	var prompts [][]int
	for _, s := range texts {
		prompts = append(prompts, tok.Encode(s, true, false))
	}
	const maxNew = 60
	// Stop at the token the first prompt's continuation has 10th, so
	// that rows end at different steps (and some never).
	stop := []int{1, alone(t, m, prompts[:1], maxNew, nil)[0][9]}
	want := alone(t, m, prompts, maxNew, stop)
	stopped := 0
	for _, w := range want {
		if len(w) < maxNew {
			stopped++
		}
	}
	t.Logf("%d of %d prompts stop before %d tokens", stopped, len(prompts), maxNew)
	for _, batch := range []int{1, 3, 16} {
		got, err := Generate(context.Background(), m, prompts, maxNew, batch, stop)
		if err != nil {
			t.Fatal(err)
		}
		for i := range prompts {
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("batch %d, prompt %d: %v\nalone: %v", batch, i, tok.DecodeAll(got[i]), tok.DecodeAll(want[i]))
			}
		}
	}

	// A prompt 20 positions short of seq_len: alone it gets 21 new
	// tokens; in a batch its short neighbours would get as few, so they
	// are finished alone.
	seqLen := m.Config().MaxSeqLen
	long := slices.Clone(prompts[6])
	for len(long) < seqLen-20 {
		long = append(long, prompts[6][1:]...)
	}
	long = long[:seqLen-20]
	near := [][]int{prompts[0], long, prompts[3]}
	want = alone(t, m, near, maxNew, nil)
	if len(want[1]) != 21 || len(want[0]) != maxNew {
		t.Fatalf("alone: %d and %d new tokens, want 21 and %d", len(want[1]), len(want[0]), maxNew)
	}
	got, err := Generate(context.Background(), m, near, maxNew, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range near {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("near seq_len, prompt %d: %d tokens %v, alone %d tokens %v", i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
}

// TestGenerateEdges checks the limits of batched generation against each
// prompt alone: one new token (the prefill's), a prompt one position
// short of seq_len beside a short one (it gets two tokens; its neighbour
// is finished alone), one two short on its own, BOS-only prompts beside
// a long one, a batch of 0 (taken as 1) and no prompts at all.
func TestGenerateEdges(t *testing.T) {
	m, tok := stories(t)
	seqLen := m.Config().MaxSeqLen
	text := tok.Encode("Once upon a time there was a dog. The dog", true, false)
	prompt := func(n int) []int {
		p := slices.Clone(text)
		for len(p) < n {
			p = append(p, text[1:]...)
		}
		return p[:n]
	}
	stop := []int{1}
	for _, c := range []struct {
		name    string
		prompts [][]int
		maxNew  int
		batch   int
		lens    []int // the new tokens of each prompt
	}{
		{"one new token", [][]int{prompt(3), prompt(10), prompt(7)}, 1, 3, []int{1, 1, 1}},
		{"seq_len-1 in a batch", [][]int{prompt(seqLen - 1), prompt(5)}, 10, 2, []int{2, 10}},
		{"seq_len-1, one new token", [][]int{prompt(seqLen - 1), prompt(5)}, 1, 2, []int{1, 1}},
		{"seq_len-2 alone", [][]int{prompt(seqLen - 2)}, 10, 4, []int{3}},
		{"BOS only beside a long prompt", [][]int{{1}, prompt(300), {1}}, 400, 3, nil},
		{"batch 0", [][]int{prompt(4), prompt(9)}, 6, 0, []int{6, 6}},
		{"no prompts", nil, 5, 4, []int{}},
	} {
		got, err := Generate(context.Background(), m, c.prompts, c.maxNew, c.batch, stop)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(got) != len(c.prompts) {
			t.Fatalf("%s: %d outputs for %d prompts", c.name, len(got), len(c.prompts))
		}
		want := alone(t, m, c.prompts, c.maxNew, stop)
		for i := range want {
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("%s, prompt %d: %d tokens %v, alone %d tokens %v", c.name, i, len(got[i]), got[i], len(want[i]), want[i])
			}
			if c.lens != nil && len(got[i]) != c.lens[i] {
				t.Errorf("%s, prompt %d: %d new tokens, want %d", c.name, i, len(got[i]), c.lens[i])
			}
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	m, _ := stories(t)
	seqLen := m.Config().MaxSeqLen
	for _, c := range []struct {
		name    string
		prompts [][]int
		want    string
	}{
		{"empty prompt", [][]int{{1, 5}, {}}, "prompt 1 is empty"},
		{"prompt too long", [][]int{make([]int, seqLen)}, "leaving no room to generate"},
		{"token outside the vocabulary", [][]int{{1, 600}}, "token 600 at index 1 is outside the vocabulary of 512"},
	} {
		if _, err := Generate(context.Background(), m, c.prompts, 4, 2, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Generate(ctx, m, [][]int{{1, 5}}, 4, 2, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: error %v, want context.Canceled", err)
	}
	// Cancelled in the middle of a batch: it stops at the next step
	// rather than after the batch's 40 steps.
	sc := &stepsCtx{Context: context.Background(), left: 5}
	if _, err := Generate(sc, m, [][]int{{1, 5}, {1, 6, 7}, {1}}, 40, 3, nil); !errors.Is(err, context.Canceled) || sc.calls != 6 {
		t.Errorf("cancelled after 5 steps: error %v after %d checks, want context.Canceled after 6", err, sc.calls)
	}
}

// stepsCtx is a context that is cancelled once its Err has been asked
// left times, counting the calls.
type stepsCtx struct {
	context.Context
	left, calls int
}

func (c *stepsCtx) Err() error {
	c.calls++
	if c.left--; c.left < 0 {
		return context.Canceled
	}
	return nil
}

// BenchmarkGenerate times greedy generation of 32 new tokens for 16
// prompts of 20 to 80 tokens with a LLaMA shape whose weights (24M
// parameters) stream from memory at every step, one prompt at a time and
// in batches of 16, and reports the batched speed-up measured in the same
// run (tokens/s counts new tokens).
func BenchmarkGenerate(b *testing.B) {
	cfg := llama.Config{Dim: 512, HiddenDim: 1376, NumLayers: 8, NumHeads: 8, NumKVHeads: 4,
		VocabSize: 32000, MaxSeqLen: 512, NormEps: 1e-5, RopeTheta: 10000}
	w, err := InitWeights(cfg, 1)
	if err != nil {
		b.Fatal(err)
	}
	m, err := llama.New(openCPU(b), w)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Free()
	prompts := make([][]int, 16)
	for i := range prompts {
		prompts[i] = []int{1}
		for j := range 20 + i*4 {
			prompts[i] = append(prompts[i], 2+(i*131+j*17)%31000)
		}
	}
	const maxNew = 32
	var secs [2]float64
	for b.Loop() {
		for k, batch := range []int{1, 16} {
			start := time.Now()
			if _, err := Generate(context.Background(), m, prompts, maxNew, batch, nil); err != nil {
				b.Fatal(err)
			}
			secs[k] += time.Since(start).Seconds()
		}
	}
	n := float64(b.N * len(prompts) * maxNew)
	b.ReportMetric(n/secs[0], "tokens/s-alone")
	b.ReportMetric(n/secs[1], "tokens/s-batch16")
	b.ReportMetric(secs[0]/secs[1], "speedup")
}
