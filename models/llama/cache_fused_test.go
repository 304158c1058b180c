package llama_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/internal/reference"
	"github.com/sora-go/sora/models/llama"
)

// cacheMode is one way of running a cache's attention: the tape's fused
// setting for the first Decode of a sequence and for the later ones (a
// change in the middle keeps the sequence's layout), whether the model
// forces the per-head layout, and whether one-position steps of narrow
// models use the fused op too (SetFusedSteps). want names the path the
// last Decode, of lastT positions, must have run.
type cacheMode struct {
	name                  string
	fusedFirst, fusedRest bool
	perHead, fusedSteps   bool
	want                  func(c llama.Config, lastT int) string
}

// cacheModes are every path of Cache: fused where the cache chooses it
// (not for steps of one position in narrow models); fused always;
// composed, as a backend without the fused op gets it (block-diagonal for
// narrow models, per head for wide ones); per head forced; and fused for
// the prefill, then composed on the fused layout (block-diagonal whatever
// the width).
func cacheModes() []cacheMode {
	const fused, blockDiag, perHead = "fused", "block-diagonal", "per-head"
	narrow := func(c llama.Config) bool { return c.KVDim() <= 128 }
	return []cacheMode{
		{"fused", true, true, false, false, func(c llama.Config, lastT int) string {
			if lastT == 1 && narrow(c) {
				return blockDiag
			}
			return fused
		}},
		{"fused-steps", true, true, false, true, func(llama.Config, int) string { return fused }},
		{"composed", false, false, false, false, func(c llama.Config, _ int) string {
			if narrow(c) {
				return blockDiag
			}
			return perHead
		}},
		{"per-head", true, true, true, true, func(llama.Config, int) string { return perHead }},
		{"fused-then-composed", true, false, false, true, func(llama.Config, int) string { return blockDiag }},
	}
}

// needsFused reports whether mode runs the fused op somewhere.
func (cm cacheMode) needsFused() bool { return !cm.perHead && (cm.fusedFirst || cm.fusedRest) }

// leftPad returns rows of different lengths left-padded with token 0 to
// the longest, as B·T ids, with each row's number of padding positions.
func leftPad(rows [][]int32) (ids []int32, T int, pad []int) {
	for _, r := range rows {
		T = max(T, len(r))
	}
	for _, r := range rows {
		p := T - len(r)
		pad = append(pad, p)
		ids = append(ids, make([]int32, p)...)
		ids = append(ids, r...)
	}
	return ids, T, pad
}

// decodePadded runs the left-padded batch ids ([B·T], pad positions of
// padding per row) through a fresh cache of m with that padding, in
// chunks of the given lengths (summing to T), asking for every position's
// logits, the tape set as mode says, and returns them as [B, T, vocab]
// with the path the last chunk ran.
func decodePadded(tb testing.TB, m *llama.Model, ids []int32, B, T int, pad, chunks []int, mode cacheMode) ([]float32, string) {
	tb.Helper()
	g := graph.New(m.Backend())
	defer g.Close()
	kc, err := m.NewCache(B, T+3)
	if err != nil {
		tb.Fatal(err)
	}
	defer kc.Free()
	if err := kc.SetPadding(pad); err != nil {
		tb.Fatal(err)
	}
	llama.SetFusedSteps(kc, mode.fusedSteps)
	out := decodeInto(tb, m, g, kc, ids, B, T, chunks, func(c int) {
		g.SetFusedAttention(mode.fusedRest)
		if c == 0 {
			g.SetFusedAttention(mode.fusedFirst)
		}
	})
	return out, llama.CachePath(kc)
}

// aloneLogits returns the logits [len(row), vocab] of row run alone
// through the training forward with the composed attention: no cache, no
// padding, no fused op.
func aloneLogits(tb testing.TB, m *llama.Model, row []int32) []float32 {
	tb.Helper()
	g := graph.New(m.Backend())
	defer g.Close()
	g.SetFusedAttention(false)
	g.SetNoGrad(true)
	lv, err := m.Forward(g, llama.Batch{Tokens: row, Size: 1, Len: len(row)})
	if err != nil {
		tb.Fatal(err)
	}
	return download(tb, lv)
}

// TestCachePathsAgree decodes a batch of two prompts of different lengths
// (left-padded, SetPadding hiding the padding) through every path of the
// cache (cacheModes), a prefill and then one position at a time in
// several chunkings, one of which starts with a chunk that is all
// padding for the shorter row and one that ends inside its padding, and
// checks every real position's logits against each row run alone
// through the training forward (to 1e-5 of max(1, |logit|)): the padding
// must stay invisible, the window must hide the keys it leaves out (the
// sequences run well past the windows of 3 of the Gemma configurations),
// and the soft-cap must apply. Padding positions' logits are not
// compared, but must be finite. Configurations: LLaMA with grouped-query
// attention, LLaMA with one key/value head per query head, a wide model
// (key/value width 160, which the composition attends per head), Qwen3
// (QK-norm), Mistral (every layer sliding), Gemma 3 and Gemma 2.
func TestCachePathsAgree(t *testing.T) {
	b := openCPU(t)
	fusedOK := b.Supports(backend.OpAttention) && b.Supports(backend.OpAttentionGrad)
	mha := tinyConfig(false, llama.RopeInterleaved)
	mha.NumKVHeads = mha.NumHeads
	wide := llama.Config{Dim: 320, HiddenDim: 48, NumLayers: 2, NumHeads: 8, NumKVHeads: 4, VocabSize: 29,
		MaxSeqLen: 32, NormEps: 1e-5, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit}
	mistral := tinyConfig(false, llama.RopeHalfSplit)
	mistral.Family, mistral.LayerKinds, mistral.SlidingWindow, mistral.LocalRopeTheta = llama.FamilyMistral, "ss", 4, mistral.RopeTheta
	configs := []namedConfig{
		{"llama-gqa", tinyConfig(false, llama.RopeInterleaved)},
		{"llama-mha", mha},
		{"wide", wide},
		{"qwen3", qwen3Config(llama.RopeHalfSplit)},
		{"mistral", mistral},
		{"gemma3", gemmaConfig(llama.RopeHalfSplit)},
		{"gemma2", gemma2Config(llama.RopeHalfSplit)},
	}
	if wide.KVDim() <= 128 {
		t.Fatalf("the wide configuration has key/value width %d; it must exceed 128 to take the per-head composition", wide.KVDim())
	}
	rng := rand.New(rand.NewPCG(31, 32))
	for _, nc := range configs {
		t.Run(nc.name, func(t *testing.T) {
			if err := nc.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			w := randomWeights(t, nc.cfg, 41)
			if nc.cfg.NormOffset() {
				w = gemmaWeights(t, nc.cfg, 41)
			}
			m := newModel(t, b, w)
			V := nc.cfg.VocabSize
			rows := [][]int32{randomTokens(rng, 20, V), randomTokens(rng, 11, V)}
			ids, T, pad := leftPad(rows)
			want := [][]float32{aloneLogits(t, m, rows[0]), aloneLogits(t, m, rows[1])}
			for _, mode := range cacheModes() {
				if mode.needsFused() && !fusedOK {
					t.Logf("%s: skipped, the %s backend lacks the fused attention ops", mode.name, b.Name())
					continue
				}
				llama.SetPerHeadAttention(m, mode.perHead)
				for _, chunks := range [][]int{
					{14, 1, 1, 1, 1, 1, 1},
					{20},
					{5, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1},
					{8, 12},
				} {
					if len(chunks) == 1 && mode.fusedFirst != mode.fusedRest {
						continue // no later chunk to change to
					}
					got, path := decodePadded(t, m, ids, 2, T, pad, chunks, mode)
					label := fmt.Sprintf("%s chunks %v", mode.name, chunks)
					if w := mode.want(nc.cfg, chunks[len(chunks)-1]); path != w {
						t.Fatalf("%s: the cache ran the %s path, want %s", label, path, w)
					}
					for row := range 2 {
						for p := range T {
							k := row*T + p
							z := got[k*V : (k+1)*V]
							if p < pad[row] {
								if !finite(z) {
									t.Fatalf("%s: row %d padding position %d has logits %v", label, row, p, z)
								}
								continue
							}
							r := p - pad[row]
							if d := maxRelDiff(z, want[row][r*V:(r+1)*V]); d > 1e-5 {
								t.Fatalf("%s: row %d position %d (its token %d) differs from the row run alone by %.3g", label, row, p, r, d)
							}
						}
					}
				}
				llama.SetPerHeadAttention(m, false)
			}
		})
	}
}

func finite(z []float32) bool {
	for _, v := range z {
		if v != v || v > 3e38 || v < -3e38 {
			return false
		}
	}
	return true
}

// TestCacheStoriesBatchedGreedy generates greedily with stories260K for
// two prompts of different lengths at once (a long one of well over a
// hundred tokens and a short one, left-padded; a prefill, then one token
// per step for 60 steps) through every path of the cache, and checks
// each row's tokens against the float32 host reference (llama2.c's
// run.c rewritten in Go) generating that prompt alone, and each step's
// logits against the reference's to 1e-4 of max(1, |logit|), as
// TestStories260KAgreesWithLlama2c does for one sequence.
func TestCacheStoriesBatchedGreedy(t *testing.T) {
	w, tok := loadStories(t)
	b := openCPU(t)
	fusedOK := b.Supports(backend.OpAttention) && b.Supports(backend.OpAttentionGrad)
	long := strings.Repeat("Lily and Ben went to the park to play with their big red ball. They ran and laughed in the sun. ", 5)
	prompts := [][]int{tok.Encode(long+"Then", true, false), tok.Encode("Once upon a time", true, false)}
	if len(prompts[0]) < 100 {
		t.Fatalf("the long prompt has %d tokens; the test wants a prefill of over 100", len(prompts[0]))
	}
	const steps = 60
	V := w.Config.VocabSize
	// The reference, one prompt at a time: the greedy tokens and the
	// logits at each generated position.
	wantTok := make([][]int, 2)
	wantLogits := make([][][]float32, 2)
	for i, pr := range prompts {
		ref, err := reference.New(w)
		if err != nil {
			t.Fatal(err)
		}
		var logits []float32
		for pos := range len(pr) + steps - 1 {
			tk := pr[min(pos, len(pr)-1)]
			if pos >= len(pr) {
				tk = wantTok[i][pos-len(pr)]
			}
			if logits, err = ref.Forward(tk, pos); err != nil {
				t.Fatal(err)
			}
			if pos >= len(pr)-1 {
				wantTok[i] = append(wantTok[i], reference.Argmax(logits))
				wantLogits[i] = append(wantLogits[i], slices.Clone(logits))
			}
		}
	}
	rows := [][]int32{toInt32(prompts[0]), toInt32(prompts[1])}
	ids, T, pad := leftPad(rows)
	m := newModel(t, b, w)
	for _, mode := range cacheModes() {
		if mode.needsFused() && !fusedOK {
			t.Logf("%s: skipped, the %s backend lacks the fused attention ops", mode.name, b.Name())
			continue
		}
		t.Run(mode.name, func(t *testing.T) {
			llama.SetPerHeadAttention(m, mode.perHead)
			defer llama.SetPerHeadAttention(m, false)
			kc, err := m.NewCache(2, T+steps)
			if err != nil {
				t.Fatal(err)
			}
			defer kc.Free()
			if err := kc.SetPadding(pad); err != nil {
				t.Fatal(err)
			}
			llama.SetFusedSteps(kc, mode.fusedSteps)
			g := graph.New(b)
			defer g.Close()
			g.SetFusedAttention(mode.fusedFirst)
			in, n := ids, T
			var worst float64
			for s := range steps {
				lv, err := m.Decode(g, kc, in, n, false)
				if err != nil {
					t.Fatal(err)
				}
				got := download(t, lv)
				if err := g.Err(); err != nil {
					t.Fatal(err)
				}
				g.Reset()
				g.SetFusedAttention(mode.fusedRest)
				next := make([]int32, 2)
				for row := range 2 {
					z := got[row*V : (row+1)*V]
					next[row] = int32(reference.Argmax(z))
					if int(next[row]) != wantTok[row][s] {
						t.Fatalf("row %d step %d: token %d, the reference generating the prompt alone picks %d", row, s, next[row], wantTok[row][s])
					}
					worst = max(worst, maxRelDiff(z, wantLogits[row][s]))
				}
				in, n = next, 1
			}
			if want := mode.want(w.Config, 1); llama.CachePath(kc) != want {
				t.Fatalf("the cache ran the %s path, want %s", llama.CachePath(kc), want)
			}
			t.Logf("prompts of %d and %d tokens, %d steps: tokens as the reference's; largest logit difference %.3g", len(prompts[0]), len(prompts[1]), steps, worst)
			if worst > 1e-4 {
				t.Fatalf("logits differ from the reference by %.3g", worst)
			}
			for row := range 2 {
				t.Logf("row %d continues %q", row, printed(tok, append([]int{prompts[row][len(prompts[row])-1]}, wantTok[row]...)))
			}
		})
	}
}

func toInt32(ids []int) []int32 {
	out := make([]int32, len(ids))
	for i, v := range ids {
		out[i] = int32(v)
	}
	return out
}

// TestCacheSetPaddingErrors checks SetPadding's refusals, each naming what
// was wrong, and that Reset forgets the padding: a row decoded after it
// sees its first positions again.
func TestCacheSetPaddingErrors(t *testing.T) {
	b := openCPU(t)
	cfg := tinyConfig(false, llama.RopeInterleaved)
	m := newModel(t, b, randomWeights(t, cfg, 5))
	kc, err := m.NewCache(2, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Free()
	for _, tc := range []struct {
		name string
		pad  []int
		want string
	}{
		{"too few", []int{1}, "1 counts for a batch of 2"},
		{"too many", []int{1, 2, 3}, "3 counts for a batch of 2"},
		{"negative", []int{0, -1}, "row 1 has -1 padding positions, want 0 to 9"},
		{"whole cache", []int{10, 0}, "row 0 has 10 padding positions, want 0 to 9"},
	} {
		if err := kc.SetPadding(tc.pad); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: SetPadding(%v) = %v, want an error containing %q", tc.name, tc.pad, err, tc.want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ids := randomTokens(rng, 2*6, cfg.VocabSize)
	if err := kc.SetPadding([]int{0, 3}); err != nil {
		t.Fatal(err)
	}
	g := graph.New(b)
	defer g.Close()
	if _, err := m.Decode(g, kc, ids, 6, false); err != nil {
		t.Fatal(err)
	}
	g.Reset()
	if err := kc.SetPadding([]int{0, 1}); err == nil || !strings.Contains(err.Error(), "already holds 6 positions") {
		t.Errorf("SetPadding after the prefill = %v, want a refusal naming the 6 positions held", err)
	}
	kc.Reset()
	lv, err := m.Decode(g, kc, ids, 6, true)
	if err != nil {
		t.Fatal(err)
	}
	got := download(t, lv)
	V := cfg.VocabSize
	want := aloneLogits(t, m, ids[6:])
	if d := maxRelDiff(got[6*V:], want); d > 1e-5 {
		t.Errorf("after Reset, row 1 differs from its tokens run alone by %.3g: the old padding still hides positions", d)
	}
}

// TestCacheAttentionEnv checks that the cache follows the tape's fused
// setting as package graph's Attention does: SORA_ATTENTION=unfused (read
// by graph.New) makes it compose attention, unset or "fused" lets it use
// the backend's op; SetFusedAttention overrides the variable.
func TestCacheAttentionEnv(t *testing.T) {
	b := openCPU(t)
	if !b.Supports(backend.OpAttention) || !b.Supports(backend.OpAttentionGrad) {
		t.Skipf("the %s backend lacks the fused attention ops", b.Name())
	}
	cfg := tinyConfig(false, llama.RopeInterleaved)
	m := newModel(t, b, randomWeights(t, cfg, 5))
	ids := randomTokens(rand.New(rand.NewPCG(3, 4)), 5, cfg.VocabSize)
	for _, tc := range []struct {
		env      string
		override int // 0: none, 1: SetFusedAttention(true), -1: (false)
		want     string
	}{
		{"", 0, "fused"},
		{"fused", 0, "fused"},
		{"unfused", 0, "block-diagonal"},
		{"unfused", 1, "fused"},
		{"fused", -1, "block-diagonal"},
	} {
		t.Setenv(graph.AttentionEnv, tc.env)
		g := graph.New(b)
		if tc.override != 0 {
			g.SetFusedAttention(tc.override > 0)
		}
		kc, err := m.NewCache(1, 8)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Decode(g, kc, ids, 5, false); err != nil {
			t.Fatal(err)
		}
		if got := llama.CachePath(kc); got != tc.want {
			t.Errorf("%s=%q, override %d: the cache ran %s, want %s", graph.AttentionEnv, tc.env, tc.override, got, tc.want)
		}
		kc.Free()
		g.Close()
	}
}
