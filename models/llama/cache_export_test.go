package llama

import "github.com/sora-go/sora/backend"

// CachePath names the attention kc ran in its last Decode: "fused",
// "block-diagonal" or "per-head" ("" before the first), so that tests can
// check which path they exercised.
func CachePath(kc *Cache) string { return kc.path }

// SetCacheLen moves kc's length back to n (at most Len), as if the
// positions after n had not been decoded: benchmarks and allocation tests
// decode at one context length again and again with it.
func SetCacheLen(kc *Cache, n int) {
	if n < 0 || n > kc.pos {
		panic("SetCacheLen: length outside 0 … Len")
	}
	kc.pos = n
}

// CacheScratchBytes returns the bytes of kc's attention scratch buffers
// (the scores, the block-diagonal or permuted queries and outputs, the
// output), which the fused path mostly does without.
func CacheScratchBytes(kc *Cache) int {
	n := 0
	for _, t := range []backend.Tensor{kc.scores, kc.qh, kc.oh, kc.ot} {
		if !t.IsZero() {
			n += 4 * t.Len()
		}
	}
	return n
}

// SetFusedSteps makes kc attend with the fused op (where the tape allows
// it) in one-position steps of narrow models too, which otherwise take
// the block-diagonal composition, so that tests cover the fused op on
// every shape and benchmarks can time it.
func SetFusedSteps(kc *Cache, on bool) { kc.fusedSteps = on }
