package llama_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/llama"
)

// checkWindowOneLayer checks a one-layer model with a sliding window of W
// through an identity: a query sees the last W keys, whose keys and values
// a single layer computes from their own tokens, and rotary embedding
// makes the scores depend on relative positions only. So at each position
// t the windowed model's logits (windowed) are those of the model without
// a window (plain) run on tokens t−W+1…t alone, at its last position: a
// computation that shares nothing with the mask (to 1e-5). From position W
// on, where the window hides a key, plain over the whole sequence must
// differ by at least 1e-3, or the test could not see the window.
func checkWindowOneLayer(t *testing.T, b backend.Backend, windowed, plain *llama.Weights, ids []int32, W int, label string) {
	t.Helper()
	V := plain.Config.VocabSize
	got := forwardLogits(t, newModel(t, b, windowed), ids, 1)
	mp := newModel(t, b, plain)
	full := forwardLogits(t, mp, ids, 1)
	for pos := W - 1; pos < len(ids); pos++ {
		want := forwardLogits(t, mp, ids[pos-W+1:pos+1], 1)[(W-1)*V:]
		if d := maxRelDiff(got[pos*V:(pos+1)*V], want); d > 1e-5 {
			t.Errorf("%s: position %d: windowed logits differ by %.3g from the last %d tokens run alone", label, pos, d, W)
		}
		if d := maxRelDiff(full[pos*V:(pos+1)*V], want); pos >= W && d < 1e-3 {
			t.Errorf("%s: position %d: without the window the logits differ by only %.3g; the test cannot see the window", label, pos, d)
		}
	}
}

// TestMistralWindowOneLayer checks Mistral's sliding window (every layer
// sliding) through the identity of checkWindowOneLayer.
func TestMistralWindowOneLayer(t *testing.T) {
	const window, T = 3, 9
	b := openCPU(t)
	for _, layout := range bothLayouts {
		plain := tinyConfig(false, layout)
		plain.NumLayers, plain.Family = 1, llama.FamilyMistral
		windowed := plain
		windowed.LayerKinds, windowed.SlidingWindow, windowed.LocalRopeTheta = strings.Repeat("s", plain.NumLayers), window, plain.RopeTheta
		w := randomWeights(t, plain, 71)
		ww := *w
		ww.Config = windowed
		ids := randomTokens(rand.New(rand.NewPCG(8, 9)), T, plain.VocabSize)
		checkWindowOneLayer(t, b, &ww, w, ids, window, layout.String())
	}
}

// TestGemma3WindowOneLayer checks a Gemma sliding layer through the
// identity TestMistralWindowOneLayer uses (checkWindowOneLayer),
// independently of the float64 reference: with one layer, the query at
// position t sees the keys of the last W tokens, computed from those
// tokens alone, and rotary scores depend on relative positions only, so
// the windowed model's logits at t are those of a model without a window,
// rotating with the local base rope_local_base_freq unscaled, run on
// tokens t−W+1…t alone. The windowed model is given a global base and a
// linear rope scaling, which its sliding layer must ignore; without the
// window the logits differ.
func TestGemma3WindowOneLayer(t *testing.T) {
	b := openCPU(t)
	for _, layout := range bothLayouts {
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
			checkWindowOneLayer(t, b, w, &pw, ids, W, fmt.Sprintf("%v window %d", layout, W))
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
		want := forwardLogits(t, newModel(t, b, w), ids, B)
		if d := maxRelDiff(forwardLogits(t, newModel(t, b, &noWindow), ids, B)[(T-1)*V:T*V], want[(T-1)*V:T*V]); d < 1e-3 {
			t.Fatalf("the window moves the last logits by only %.3g; the test cannot see it", d)
		}
		checkDecode(t, b, w, ids, B, T, want, [][]int{{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {9, 1, 1}, {3, 5, 3}, {11}},
			false, fmt.Sprintf("wide %v", wide), "the training forward")
	}
}
