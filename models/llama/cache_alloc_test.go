package llama_test

import (
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
)

// decodeStepAllocs returns the heap allocations of one warmed-up
// one-token Decode step (the tape reset after it) of a batch of B rows
// at a context of ctx positions, in mode.
func decodeStepAllocs(tb testing.TB, m *llama.Model, B, ctx int, mode cacheMode) (float64, string) {
	tb.Helper()
	llama.SetPerHeadAttention(m, mode.perHead)
	defer llama.SetPerHeadAttention(m, false)
	kc, err := m.NewCache(B, ctx+1)
	if err != nil {
		tb.Fatal(err)
	}
	defer kc.Free()
	llama.SetFusedSteps(kc, mode.fusedSteps)
	g := graph.New(m.Backend())
	defer g.Close()
	g.SetFusedAttention(mode.fusedFirst)
	V := m.Config().VocabSize
	rng := rand.New(rand.NewPCG(5, 5))
	if _, err := m.Decode(g, kc, randomTokens(rng, B*ctx, V), ctx, false); err != nil {
		tb.Fatal(err)
	}
	g.Reset()
	g.SetFusedAttention(mode.fusedRest)
	tok := randomTokens(rng, B, V)
	var stepErr error
	step := func() {
		llama.SetCacheLen(kc, ctx)
		if _, err := m.Decode(g, kc, tok, 1, false); err != nil && stepErr == nil {
			stepErr = err
		}
		g.Reset()
	}
	step()
	step()
	n := testing.AllocsPerRun(20, step)
	if stepErr != nil {
		tb.Fatal(stepErr)
	}
	return n, llama.CachePath(kc)
}

// TestCacheDecodeAllocations counts the heap allocations of a warmed-up
// one-token decoding step of stories260K (one and two sequences, 100
// cached positions) on every path of the cache, and checks that with the
// fused op allowed (stories260K's steps then compose block-diagonally on
// the fused layout) or forced (SetFusedSteps) a step allocates no more
// than the composition a backend without the op gets. Most of a step's
// allocations are the tape's values and the backend's parallel dispatch,
// not the cache's; the test guards against views made per position or
// per key.
func TestCacheDecodeAllocations(t *testing.T) {
	w, _ := loadStories(t)
	b := openCPU(t)
	m := newModel(t, b, w)
	for _, B := range []int{1, 2} {
		counts := map[string]float64{}
		for _, mode := range cacheModes() {
			if mode.needsFused() && !b.Supports(backend.OpAttention) {
				continue
			}
			n, path := decodeStepAllocs(t, m, B, 100, mode)
			counts[mode.name] = n
			t.Logf("B=%d %s (%s): %.0f allocations per step", B, mode.name, path, n)
		}
		if _, ok := counts["fused-steps"]; !ok {
			t.Skipf("the %s backend lacks the fused attention ops", b.Name())
		}
		for _, name := range []string{"fused", "fused-steps"} {
			if counts[name] > counts["composed"] {
				t.Errorf("B=%d: a %s step allocates %.0f times, a composed one %.0f", B, name, counts[name], counts["composed"])
			}
		}
	}
}
