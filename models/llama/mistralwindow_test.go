package llama_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
)

// TestMistralWindowOneLayer checks Mistral's sliding window (every layer
// sliding) through an identity of one-layer models: a query sees the last
// W keys, whose keys and values a single layer computes from their own
// tokens, and rotary embedding makes the scores depend on relative
// positions only. So at each position t the windowed model's logits are
// those of the model without a window run on tokens t−W+1…t alone, at its
// last position: a computation that shares nothing with the mask.
func TestMistralWindowOneLayer(t *testing.T) {
	const window, T = 3, 9
	b := openCPU(t)
	for _, layout := range []llama.RopeLayout{llama.RopeHalfSplit, llama.RopeInterleaved} {
		plain := tinyConfig(false, layout)
		plain.NumLayers, plain.Family = 1, llama.FamilyMistral
		windowed := plain
		windowed.LayerKinds, windowed.SlidingWindow, windowed.LocalRopeTheta = strings.Repeat("s", plain.NumLayers), window, plain.RopeTheta
		w := randomWeights(t, plain, 71)
		ww := *w
		ww.Config = windowed
		ids := randomTokens(rand.New(rand.NewPCG(8, 9)), T, plain.VocabSize)
		logits := func(m *llama.Model, ids []int32) []float32 {
			g := graph.New(b)
			defer g.Close()
			lv, err := m.Forward(g, llama.Batch{Tokens: ids, Size: 1, Len: len(ids)})
			if err != nil {
				t.Fatal(err)
			}
			return download(t, lv)
		}
		V := plain.VocabSize
		got := logits(newModel(t, b, &ww), ids)
		full := logits(newModel(t, b, w), ids)
		mp := newModel(t, b, w)
		for pos := window; pos < T; pos++ {
			want := logits(mp, ids[pos-window+1:pos+1])
			if d := maxRelDiff(got[pos*V:(pos+1)*V], want[(window-1)*V:]); d > 1e-5 {
				t.Errorf("%v: position %d: windowed logits differ by %.3g from the last %d tokens run alone", layout, pos, d, window)
			}
			if d := maxRelDiff(full[pos*V:(pos+1)*V], want[(window-1)*V:]); d < 1e-3 {
				t.Errorf("%v: position %d: without the window the logits differ by only %.3g; the test cannot see the window", layout, pos, d)
			}
		}
	}
}
