package llama_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
)

// forwardLogits returns the logits [B, T, vocab] of the training forward
// over ids, B rows of equal length.
func forwardLogits(t *testing.T, m *llama.Model, ids []int32, B int) []float32 {
	t.Helper()
	g := graph.New(m.Backend())
	defer g.Close()
	lv, err := m.Forward(g, llama.Batch{Tokens: ids, Size: B, Len: len(ids) / B})
	if err != nil {
		t.Fatal(err)
	}
	return download(t, lv)
}

// TestGemma3WindowOneLayer checks a Gemma sliding layer through the
// identity TestMistralWindowOneLayer uses, independently of the float64
// reference: with one layer, the query at position t sees the keys of
// the last W tokens, computed from those tokens alone, and rotary scores
// depend on relative positions only, so the windowed model's logits at t
// are those of a model without a window, rotating with the local base
// rope_local_base_freq unscaled, run on tokens t−W+1…t alone. The
// windowed model is given a global base and a linear rope scaling, which
// its sliding layer must ignore; without the window the logits differ.
func TestGemma3WindowOneLayer(t *testing.T) {
	b := openCPU(t)
	for _, layout := range []llama.RopeLayout{llama.RopeHalfSplit, llama.RopeInterleaved} {
		for _, W := range []int{1, 2, 4} {
			cfg := gemmaConfig(layout)
			cfg.NumLayers, cfg.LayerKinds, cfg.SlidingWindow = 1, "s", W
			cfg.RopeScaling = llama.RopeScaling{Type: llama.RopeScalingLinear, Factor: 8}
			w := gemmaWeights(t, cfg, 5)
			plain := cfg
			plain.LayerKinds, plain.SlidingWindow, plain.LocalRopeTheta = "", 0, 0
			plain.RopeTheta, plain.RopeScaling = cfg.LocalRopeTheta, llama.RopeScaling{}
			pw := *w
			pw.Config = plain
			const T = 10
			ids := randomTokens(rand.New(rand.NewPCG(1, uint64(W))), T, cfg.VocabSize)
			V := cfg.VocabSize
			got := forwardLogits(t, newModel(t, b, w), ids, 1)
			mp := newModel(t, b, &pw)
			full := forwardLogits(t, mp, ids, 1)
			for pos := W - 1; pos < T; pos++ {
				want := forwardLogits(t, mp, ids[pos-W+1:pos+1], 1)[(W-1)*V:]
				if d := maxRelDiff(got[pos*V:(pos+1)*V], want); d > 1e-5 {
					t.Errorf("%v window %d: position %d: windowed logits differ by %.3g from the last %d tokens run alone", layout, W, pos, d, W)
				}
				if d := maxRelDiff(full[pos*V:(pos+1)*V], want); pos >= W && d < 1e-3 {
					t.Errorf("%v window %d: position %d: without the window the logits differ by only %.3g; the test cannot see the window", layout, W, pos, d)
				}
			}
		}
	}
}

// TestMistralWindowDecode checks Mistral's all-layer window through the
// KV cache against the training forward, on three sequences of 11
// positions over a window of 4 (the cache skips the keys before each
// window), both ways the cache attends, a token at a time and in chunks,
// for a narrow model (all heads at once by default) and a wide one (per
// key/value head by default).
func TestMistralWindowDecode(t *testing.T) {
	b := openCPU(t)
	const W, B, T = 4, 3, 11
	for _, wide := range []bool{false, true} {
		cfg := tinyConfig(false, llama.RopeHalfSplit)
		cfg.NumLayers, cfg.Family = 3, llama.FamilyMistral
		if wide {
			cfg.Dim, cfg.NumHeads, cfg.NumKVHeads, cfg.HeadWidth = 48, 6, 3, 48
		}
		cfg.LayerKinds, cfg.SlidingWindow, cfg.LocalRopeTheta = strings.Repeat("s", cfg.NumLayers), W, cfg.RopeTheta
		w := randomWeights(t, cfg, 3)
		ids := randomTokens(rand.New(rand.NewPCG(4, 5)), B*T, cfg.VocabSize)
		V := cfg.VocabSize
		noWindow := *w
		noWindow.Config.LayerKinds, noWindow.Config.SlidingWindow, noWindow.Config.LocalRopeTheta = "", 0, 0
		for _, perHead := range []bool{false, true} {
			m := newModel(t, b, w)
			llama.SetPerHeadAttention(m, perHead)
			want := forwardLogits(t, m, ids, B)
			if d := maxRelDiff(forwardLogits(t, newModel(t, b, &noWindow), ids, B)[(T-1)*V:T*V], want[(T-1)*V:T*V]); d < 1e-3 {
				t.Fatalf("the window moves the last logits by only %.3g; the test cannot see it", d)
			}
			g := graph.New(b)
			for _, chunks := range [][]int{{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {9, 1, 1}, {3, 5, 3}, {11}} {
				got := decodeChunks(t, m, g, ids, B, T, chunks)
				samePositions(t, got, want, B, T, V, 1e-5, fmt.Sprintf("wide %v per-head %v chunks %v", wide, perHead, chunks), "the training forward")
			}
			g.Close()
		}
	}
}
