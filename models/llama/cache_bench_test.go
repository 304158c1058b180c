package llama_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
)

// cacheBenchShapes are the models the cache benchmarks run, with random
// weights: a small LLaMA (8 heads of 64, key/value width 512, which the
// composition attends per head) and stories260K's shape (8 heads of 8
// over 4 key/value heads, width 32, which it attends block-diagonally),
// both with two layers and room for 2048 positions and more.
func cacheBenchShapes() []namedConfig {
	small := llama.Config{Dim: 512, HiddenDim: 1376, NumLayers: 2, NumHeads: 8, NumKVHeads: 8, VocabSize: 512,
		MaxSeqLen: 2560, NormEps: 1e-5, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit}
	stories := llama.Config{Dim: 64, HiddenDim: 172, NumLayers: 2, NumHeads: 8, NumKVHeads: 4, VocabSize: 512,
		MaxSeqLen: 2560, NormEps: 1e-5, RopeTheta: 10000, RopeLayout: llama.RopeInterleaved}
	return []namedConfig{{"llama-d512", small}, {"stories260K-shape", stories}}
}

// cacheVariant is one way of attending the cache benchmarks time: a
// tape with its fused setting and a cache, SetFusedSteps as named.
type cacheVariant struct {
	name string
	g    *graph.Tape
	kc   *llama.Cache
	took []time.Duration // per timed call
}

// newCacheVariants makes, for a model of cfg, the variants named (any of
// "composed", "fused", "fused-op") with caches of maxSeq positions; it
// skips b where the backend lacks the fused op.
func newCacheVariants(b *testing.B, cfg llama.Config, maxSeq int, names ...string) (*llama.Model, []*cacheVariant) {
	be := openCPU(b)
	if !(be.Supports(backend.OpAttention) && be.Supports(backend.OpAttentionGrad)) {
		b.Skipf("the %s backend lacks the fused attention ops: nothing to compare", be.Name())
	}
	m := newModel(b, be, randomWeights(b, cfg, 3))
	var vs []*cacheVariant
	for _, name := range names {
		g := graph.New(be)
		b.Cleanup(g.Close)
		g.SetFusedAttention(name != "composed")
		kc, err := m.NewCache(1, maxSeq)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(kc.Free)
		llama.SetFusedSteps(kc, name == "fused-op")
		vs = append(vs, &cacheVariant{name: name, g: g, kc: kc})
	}
	return m, vs
}

// decode runs one Decode of T positions and waits for its logits, adding
// the time it took to v.took.
func (v *cacheVariant) decode(b *testing.B, m *llama.Model, ids []int32, T int) {
	start := time.Now()
	lv, err := m.Decode(v.g, v.kc, ids, T, false)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := lv.Download(); err != nil {
		b.Fatal(err)
	}
	v.took = append(v.took, time.Since(start))
	v.g.Reset()
}

// median returns the median of xs (which it sorts).
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// report reports each variant's median time per call in microseconds
// and, for every variant after the first, the median over iterations of
// the first's time over its own in the same iteration (x-composed: above
// 1 faster than the composition). The variants alternate within each
// iteration, and medians of paired ratios keep a burst of load on the
// shared machine from deciding the comparison.
func report(b *testing.B, vs []*cacheVariant) {
	for _, v := range vs {
		us := make([]float64, len(v.took))
		ratios := make([]float64, len(v.took))
		for i, d := range v.took {
			us[i] = float64(d) / 1e3
			ratios[i] = float64(vs[0].took[i]) / float64(d)
		}
		b.ReportMetric(median(us), v.name+"-us/op")
		if v != vs[0] {
			b.ReportMetric(median(ratios), v.name+"-x-composed")
		}
	}
}

// BenchmarkCachePrefill times the prefill of a 512-token prompt (one
// sequence) through a KV cache with the attention composed from MatMul
// and Softmax (the path of a backend without fused attention) and with
// the backend's fused op, alternating the two in every iteration so
// that both see the same load. It reports each one's median time, the
// fused one's speed relative to the composed one (fused-x-composed, see
// report) and the bytes of each cache's attention scratch.
func BenchmarkCachePrefill(b *testing.B) {
	const T = 512
	for _, shape := range cacheBenchShapes() {
		b.Run(shape.name, func(b *testing.B) {
			m, vs := newCacheVariants(b, shape.cfg, T, "composed", "fused")
			ids := randomTokens(rand.New(rand.NewPCG(1, 2)), T, shape.cfg.VocabSize)
			for _, v := range vs {
				v.decode(b, m, ids, T) // warm-up: scratch, pools
				v.took = v.took[:0]
			}
			b.ResetTimer()
			for range b.N {
				for _, v := range vs {
					v.kc.Reset()
					v.decode(b, m, ids, T)
				}
			}
			report(b, vs)
			for _, v := range vs {
				b.ReportMetric(float64(llama.CacheScratchBytes(v.kc)), v.name+"-scratch-B")
			}
		})
	}
}

// BenchmarkCacheDecode times one generated token (one sequence) at a
// context of 512 and 2048 cached positions, composed and fused, each
// after a prefill with its own setting (which lays its cache out for
// it), alternating in every iteration as BenchmarkCachePrefill does.
// "fused" is what the cache picks with the fused op allowed, which for a
// narrow model's steps (stories260K's shape) is the block-diagonal
// composition on the fused layout; "fused-op" forces the fused op there
// (SetFusedSteps), to show why.
func BenchmarkCacheDecode(b *testing.B) {
	for _, shape := range cacheBenchShapes() {
		names := []string{"composed", "fused"}
		if shape.cfg.KVDim() <= 128 {
			names = append(names, "fused-op")
		}
		for _, ctx := range []int{512, 2048} {
			b.Run(fmt.Sprintf("%s/ctx=%d", shape.name, ctx), func(b *testing.B) {
				m, vs := newCacheVariants(b, shape.cfg, ctx+1, names...)
				rng := rand.New(rand.NewPCG(3, 4))
				prompt := randomTokens(rng, ctx, shape.cfg.VocabSize)
				tok := randomTokens(rng, 1, shape.cfg.VocabSize)
				for _, v := range vs {
					v.decode(b, m, prompt, ctx)
					v.decode(b, m, tok, 1) // warm-up
					v.took = v.took[:0]
				}
				b.ResetTimer()
				for range b.N {
					for _, v := range vs {
						llama.SetCacheLen(v.kc, ctx)
						v.decode(b, m, tok, 1)
					}
				}
				report(b, vs)
			})
		}
	}
}
