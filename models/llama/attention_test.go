package llama_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
)

// normRelDiff returns ‖a − b‖ / ‖b‖ (0 when both are zero).
func normRelDiff(a, b []float32) float64 {
	var d, n float64
	for i := range b {
		e := float64(a[i]) - float64(b[i])
		d += e * e
		n += float64(b[i]) * float64(b[i])
	}
	if d == 0 {
		return 0
	}
	return math.Sqrt(d / n)
}

// sameStep checks that the step got gives want's loss and every parameter
// want has a gradient for the same gradient, to tol (relative; normwise
// for the gradients), and logs the worst gradient. what says which runs
// these are, for the messages: say "checkpointing true", "fused",
// "composed".
func sameStep(t *testing.T, got, want checkpointRun, tol float64, what, gotName, wantName string) {
	t.Helper()
	if d := math.Abs(float64(got.loss-want.loss)) / math.Abs(float64(want.loss)); d > tol {
		t.Errorf("%s: loss %v %s, %v %s (relative %.3g)", what, got.loss, gotName, want.loss, wantName, d)
	}
	if len(got.grads) != len(want.grads) || len(want.grads) == 0 {
		t.Fatalf("%s: %d gradients %s, %d %s", what, len(got.grads), gotName, len(want.grads), wantName)
	}
	worst, worstName := 0.0, ""
	for name, w := range want.grads {
		g := got.grads[name]
		if w == nil || g == nil {
			t.Errorf("%s: %s: no gradient (%s %v, %s %v)", what, name, gotName, g != nil, wantName, w != nil)
			continue
		}
		if d := normRelDiff(g, w); d > worst {
			worst, worstName = d, name
		}
	}
	if worst > tol {
		t.Errorf("%s: gradient of %s differs by %.3g (normwise relative) %s against %s", what, worstName, worst, gotName, wantName)
	}
	t.Logf("%s: loss %v %s, %v %s; worst gradient %s %.2g", what, got.loss, gotName, want.loss, wantName, worstName, worst)
}

// TestFusedAttentionMatchesComposed runs the same batch through each kind
// of decoder layer (LLaMA with grouped-query attention, Qwen3's QK-norm,
// Gemma 3's sliding windows, Gemma 2's sliding windows and attention
// soft-cap) twice, with the backend's fused attention and with it forced
// off (the composition from MatMul and Softmax), every parameter
// trainable, and compares the loss and every parameter's gradient, and
// the no-grad forward's logits, to float32 rounding; also with gradient
// checkpointing, which recomputes the fused attention in Backward. The
// batch is padded (one row shorter) and longer than the windows.
func TestFusedAttentionMatchesComposed(t *testing.T) {
	b := openCPU(t)
	if !b.Supports(backend.OpAttention) || !b.Supports(backend.OpAttentionGrad) {
		t.Skipf("the %s backend lacks the fused attention ops (Supports reports false for %s, %s): nothing to compare", b.Name(), backend.OpAttention, backend.OpAttentionGrad)
	}
	configs := []namedConfig{
		{"llama", tinyConfig(false, llama.RopeInterleaved)},
		{"qwen3", qwen3Config(llama.RopeHalfSplit)},
		{"gemma3", gemmaConfig(llama.RopeHalfSplit)},
		{"gemma2", gemma2Config(llama.RopeHalfSplit)},
	}
	const B, T = 2, 11
	// The loss and gradients of float32 runs that round differently: the
	// fused kernel sums in another order and never forms the probabilities.
	const tol = 2e-5
	for _, nc := range configs {
		t.Run(nc.name, func(t *testing.T) {
			w := gemmaWeights(t, nc.cfg, 23)
			rng := rand.New(rand.NewPCG(8, 9))
			bt := llama.Batch{Tokens: randomTokens(rng, B*T, nc.cfg.VocabSize), Size: B, Len: T, Lengths: []int{T, T - 3}}
			targets, err := llama.LMTargets(bt, []int{2, 3})
			if err != nil {
				t.Fatal(err)
			}
			m := newModel(t, b, w)
			trainAll(t, m)
			run := func(fused, checkpoint bool) checkpointRun {
				m.SetGradientCheckpointing(checkpoint)
				return stepGrads(t, m, func(g *graph.Tape) (*graph.Value, error) {
					g.SetFusedAttention(fused)
					if g.FusedAttention() != fused {
						t.Fatalf("FusedAttention() = %v after SetFusedAttention(%v)", g.FusedAttention(), fused)
					}
					return m.LMLoss(g, bt, targets, graph.CrossEntropyOptions{})
				})
			}
			composed := run(false, false)
			for _, checkpoint := range []bool{false, true} {
				fused := run(true, checkpoint)
				sameStep(t, fused, composed, tol, fmt.Sprintf("checkpointing %v", checkpoint), "fused", "composed")
				t.Logf("checkpointing %v: tape peak %d bytes fused, %d composed", checkpoint, fused.peak, composed.peak)
			}

			// Evaluation: no backward, so the fused forward keeps no
			// log-sum-exp.
			logits := func(fused bool) []float32 {
				g := graph.New(b)
				defer g.Close()
				g.SetFusedAttention(fused)
				g.SetNoGrad(true)
				z, err := m.Forward(g, bt)
				if err != nil {
					t.Fatal(err)
				}
				return download(t, z)
			}
			zf, zc := logits(true), logits(false)
			samePositions(t, zf, zc, B, T, nc.cfg.VocabSize, tol, "fused logits", "composed ones")
		})
	}
}
