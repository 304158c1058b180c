package cuda

// Tests of fused attention over packed sequences (AttentionParams.Segments)
// on the emulated device: against the float64 reference of
// attention_test.go, whose mask compares document numbers directly (it
// does not use backend.SegmentBounds, which the backend uses); that
// documents skip the tiles of other documents; that one document per
// sequence changes no bit; and that the bounds' scratch comes from the
// pool.

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/conformance"
)

// packDocs returns segment numbers for sequences made of documents of the
// given lengths, one list per sequence. The numbers skip values and differ
// between sequences (they need only not decrease), so that nothing may
// depend on them being 0, 1, 2, ...
func packDocs(seqs ...[]int) []int32 {
	var out []int32
	for b, lens := range seqs {
		for d, n := range lens {
			for range n {
				out = append(out, int32(100*b+3*d+1))
			}
		}
	}
	return out
}

// attnSegmentCases pack documents of varied lengths (length 1 included)
// across the kernels' tile edges (32 and 64 queries or keys), with and
// without a causal mask, with a window, a cap, query offsets (documents
// that no query reaches, queries that start inside a document), grouped
// heads, batches of two packed differently (one as a single document),
// and heads in each kernel variant and in two passes.
func attnSegmentCases() []attnCase {
	sc := func(d int) float32 { return float32(1 / math.Sqrt(float64(d))) }
	// Thirty documents of one token, one of ten, thirty of one.
	ones := make([]int, 61)
	for i := range ones {
		ones[i] = 1
	}
	ones[30] = 10
	return []attnCase{
		{batch: 2, queries: 150, keys: 150, heads: 2, kvHeads: 1, dim: 16, p: backend.AttentionParams{Scale: sc(16), Causal: true,
			Segments: packDocs([]int{1, 63, 2, 40, 1, 43}, []int{70, 1, 1, 78})}},
		{batch: 2, queries: 150, keys: 150, heads: 2, kvHeads: 1, dim: 16, p: backend.AttentionParams{Scale: sc(16),
			Segments: packDocs([]int{5, 60, 1, 84}, []int{150})}},
		{batch: 1, queries: 130, keys: 130, heads: 4, kvHeads: 2, dim: 24, p: backend.AttentionParams{Scale: 0.7, Softcap: 3, Causal: true, Window: 20,
			Segments: packDocs([]int{33, 1, 64, 31, 1})}},
		{batch: 2, queries: 40, keys: 100, heads: 2, kvHeads: 2, dim: 8, p: backend.AttentionParams{Scale: sc(8), Causal: true, QueryOffset: 60,
			Segments: packDocs([]int{50, 20, 1, 29}, []int{61, 39})}},
		{batch: 1, queries: 30, keys: 90, heads: 3, kvHeads: 1, dim: 12, p: backend.AttentionParams{Scale: sc(12), QueryOffset: 45,
			Segments: packDocs([]int{40, 10, 40})}},
		{batch: 1, queries: 70, keys: 70, heads: 1, kvHeads: 1, dim: 8, p: backend.AttentionParams{Scale: 1, Causal: true,
			Segments: packDocs(ones)}},
		{batch: 1, queries: 40, keys: 40, heads: 2, kvHeads: 1, dim: 300, p: backend.AttentionParams{Scale: sc(300), Causal: true,
			Segments: packDocs([]int{17, 23})}},
		{batch: 1, queries: 100, keys: 100, heads: 2, kvHeads: 2, dim: 130, p: backend.AttentionParams{Scale: sc(130), Softcap: 4,
			Segments: packDocs([]int{31, 2, 67})}},
		{batch: 1, queries: 9, keys: 100, heads: 3, kvHeads: 1, dim: 16, p: backend.AttentionParams{Scale: sc(16), Causal: true, QueryOffset: 91, Window: 20,
			Segments: packDocs([]int{95, 5})}},
		{batch: 2, queries: 97, keys: 97, heads: 4, kvHeads: 1, dim: 64, p: backend.AttentionParams{Scale: sc(64),
			Segments: packDocs([]int{32, 32, 33}, []int{1, 96})}},
	}
}

func TestAttentionSegmentsEmulated(t *testing.T) {
	b := openFake(t, Options{})
	for i, c := range attnSegmentCases() {
		t.Run(c.String(), func(t *testing.T) { checkAttentionCase(t, b, c, uint64(100+i)) })
	}
}

// TestAttentionSegmentsSingleTokens: documents of one token each see only
// themselves, so out is v and dv is dout exactly (each probability is
// exp(0) = 1), and dq and dk vanish up to rounding (dS = 1·(dout·v − δ) with
// δ = dout·out).
func TestAttentionSegmentsSingleTokens(t *testing.T) {
	b := openFake(t, Options{})
	ones := make([]int, 45)
	for i := range ones {
		ones[i] = 1
	}
	for _, causal := range []bool{false, true} {
		c := attnCase{batch: 1, queries: 45, keys: 45, heads: 1, kvHeads: 1, dim: 8,
			p: backend.AttentionParams{Scale: 0.4, Causal: causal, Segments: packDocs(ones)}}
		t.Run(c.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(8, 9))
			n := 45 * 8
			qh, kh, vh, douth := uniform(rng, n, -1, 1), uniform(rng, n, -1, 1), uniform(rng, n, -1, 1), uniform(rng, n, -1, 1)
			got := runAttentionOn(t, b, c, qh, kh, vh, douth)
			for _, o := range []struct {
				name      string
				got, want []float32
			}{{"out", got[0], vh}, {"dv", got[4], douth}} {
				for i, x := range o.got {
					if x != o.want[i] {
						t.Errorf("%s[%d] = %g, want %g exactly", o.name, i, x, o.want[i])
						break
					}
				}
			}
			for _, o := range []struct {
				name string
				got  []float32
			}{{"dq", got[2]}, {"dk", got[3]}} {
				for i, x := range o.got {
					if !(math.Abs(float64(x)) <= 1e-6) {
						t.Errorf("%s[%d] = %g, want 0 up to rounding", o.name, i, x)
						break
					}
				}
			}
		})
	}
}

// TestAttentionSegmentsOneDocument: a single document per sequence hides
// nothing, and the kernels visit the same tiles in the same order as
// without segments, so every output must have the same bits.
func TestAttentionSegmentsOneDocument(t *testing.T) {
	b := openFake(t, Options{})
	for i, c := range attnCases() {
		if c.queries+c.p.QueryOffset > c.keys {
			continue // segments need every query at a key
		}
		t.Run(c.String(), func(t *testing.T) {
			lens := make([][]int, c.batch)
			for s := range lens {
				lens[s] = []int{c.keys}
			}
			packed := c
			packed.p.Segments = packDocs(lens...)
			plain := runAttention(t, b, c, uint64(i+1))
			got := runAttention(t, b, packed, uint64(i+1))
			for k, name := range []string{"out", "lse", "dq", "dk", "dv"} {
				for j, x := range got[k] {
					if math.Float32bits(x) != math.Float32bits(plain[k][j]) {
						t.Errorf("%s[%d] = %g with one document per sequence, %g without segments", name, j, x, plain[k][j])
						break
					}
				}
			}
		})
	}
}

// runAttention runs Attention and AttentionGrad on random inputs (of seed)
// and returns out, lse, dq, dk and dv.
func runAttention(t *testing.T, b *Backend, c attnCase, seed uint64) [5][]float32 {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 5))
	nq, nk := backend.Shape(c.qShape()).NumElements(), backend.Shape(c.kShape()).NumElements()
	return runAttentionOn(t, b, c, uniform(rng, nq, -1, 1), uniform(rng, nk, -1, 1), uniform(rng, nk, -1, 1), uniform(rng, nq, -1, 1))
}

func runAttentionOn(t *testing.T, b *Backend, c attnCase, qh, kh, vh, douth []float32) [5][]float32 {
	t.Helper()
	q, k, v := upload(t, b, qh, c.qShape()...), upload(t, b, kh, c.kShape()...), upload(t, b, vh, c.kShape()...)
	dout := upload(t, b, douth, c.qShape()...)
	out, lse := mustAlloc(t, b, c.qShape()...), mustAlloc(t, b, c.batch, c.heads, c.queries)
	dq, dk, dv := mustAlloc(t, b, c.qShape()...), mustAlloc(t, b, c.kShape()...), mustAlloc(t, b, c.kShape()...)
	b.Attention(out, lse, q, k, v, c.p)
	b.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, c.p)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	var r [5][]float32
	for i, x := range []backend.Tensor{out, lse, dq, dk, dv} {
		r[i] = downloadAll(t, b, x)
	}
	for _, x := range []backend.Tensor{q, k, v, dout, out, lse, dq, dk, dv} {
		b.Free(x)
	}
	return r
}

// TestAttentionSegmentsSkipTiles: the tiles of other documents are
// skipped, not merely masked. Two documents of 64 tokens fill whole tiles
// (64 keys of attn_fwd and attn_dq, 32 keys and 64 queries of attn_dkdv).
// NaN in one document's inputs would reach the other document's results
// through a masked tile all the same (a masked probability of 0 times NaN
// is NaN), so the other document's results must match the float64
// reference computed from clean inputs: with NaN in one document's keys
// and values, the other's out, lse and dq; with NaN in one document's
// queries and output gradients, the other's dk and dv. Both documents take
// each part, so that the tiles before a document and those after it are
// both seen to be skipped.
func TestAttentionSegmentsSkipTiles(t *testing.T) {
	b := openFake(t, Options{})
	const T, D, H = 128, 8, 2
	for _, causal := range []bool{false, true} {
		c := attnCase{batch: 1, queries: T, keys: T, heads: H, kvHeads: 1, dim: D,
			p: backend.AttentionParams{Scale: 0.5, Causal: causal, Segments: packDocs([]int{64, 64})}}
		t.Run(c.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			qh, kh, vh, douth := uniform(rng, T*H*D, -1, 1), uniform(rng, T*D, -1, 1), uniform(rng, T*D, -1, 1), uniform(rng, T*H*D, -1, 1)
			ref := attentionRef(c, qh, kh, vh, douth)
			// poison returns x with NaN in the rows of document doc
			// (positions 64·doc ..), rows of width elements.
			poison := func(x []float32, doc, width int) []float32 {
				y := append([]float32(nil), x...)
				for i := 64 * doc * width; i < 64*(doc+1)*width; i++ {
					y[i] = float32(math.NaN())
				}
				return y
			}
			// rows returns the rows of document doc of x [positions, width]
			// or, for lse [H, positions], of each head.
			rows := func(x []float32, doc, width int) []float32 { return x[64*doc*width : 64*(doc+1)*width] }
			rows64 := func(x []float64, doc, width int) []float64 { return x[64*doc*width : 64*(doc+1)*width] }
			lseRows := func(x []float32, doc int) []float32 {
				var y []float32
				for h := range H {
					y = append(y, x[h*T+64*doc:h*T+64*(doc+1)]...)
				}
				return y
			}
			lseRows64 := func(x []float64, doc int) []float64 {
				var y []float64
				for h := range H {
					y = append(y, x[h*T+64*doc:h*T+64*(doc+1)]...)
				}
				return y
			}
			type check struct {
				name string
				got  []float32
				want []float64
			}
			for bad := range 2 {
				good := 1 - bad
				got := runAttentionOn(t, b, c, qh, poison(kh, bad, D), poison(vh, bad, D), douth)
				for _, o := range []check{
					{"out", rows(got[0], good, H*D), rows64(ref.out, good, H*D)},
					{"lse", lseRows(got[1], good), lseRows64(ref.lse, good)},
					{"dq", rows(got[2], good, H*D), rows64(ref.dq, good, H*D)},
				} {
					if e := conformance.NMSE(o.got, o.want); !(e <= 1e-9) {
						t.Errorf("document %d's %s with NaN in document %d's k and v: NMSE %.3g against clean float64 (a key tile of document %d was visited)", good, o.name, bad, e, bad)
					}
				}
				got = runAttentionOn(t, b, c, poison(qh, bad, H*D), kh, vh, poison(douth, bad, H*D))
				for _, o := range []check{
					{"dk", rows(got[3], good, D), rows64(ref.dk, good, D)},
					{"dv", rows(got[4], good, D), rows64(ref.dv, good, D)},
				} {
					if e := conformance.NMSE(o.got, o.want); !(e <= 1e-9) {
						t.Errorf("document %d's %s with NaN in document %d's q and dout: NMSE %.3g against clean float64 (a query tile of document %d was visited)", good, o.name, bad, e, bad)
					}
				}
			}
		})
	}
}

// TestAttentionSegmentsPooled: the documents' bounds go through the pool's
// scratch blocks, so calls after the first allocate no device memory.
func TestAttentionSegmentsPooled(t *testing.T) {
	b := openFake(t, Options{})
	stats := fakeCounters(t, b.api.drv, "sora_fake_stats")
	c := attnSegmentCases()[0]
	runAttention(t, b, c, 1)
	allocs := stats[0]
	runAttention(t, b, c, 2)
	if stats[0] != allocs {
		t.Errorf("a second call with segments made %d cuMemAlloc calls, want 0 (the pool's blocks)", stats[0]-allocs)
	}
}

// TestAttentionGridStride: with grids smaller than the tiles, each block
// strides over several tiles (of different query or key positions, heads
// and batch elements, documents included), reusing its shared memory
// from one tile to the next; every output must have the bits of one block
// per tile. A barrier missing between the last reads of one tile's row
// bounds, probabilities or staged rows and the next tile's writes would
// show here, the emulator running the warps in varying order.
func TestAttentionGridStride(t *testing.T) {
	b := openFake(t, Options{})
	cases := attnCases()
	segs := attnSegmentCases()
	for i, c := range []attnCase{cases[1], cases[6], cases[10], segs[0], segs[1], segs[2], segs[3], segs[9]} {
		t.Run(c.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 77))
			nq, nk := backend.Shape(c.qShape()).NumElements(), backend.Shape(c.kShape()).NumElements()
			qh, kh, vh, douth := uniform(rng, nq, -1, 1), uniform(rng, nk, -1, 1), uniform(rng, nk, -1, 1), uniform(rng, nq, -1, 1)
			want := runAttentionOn(t, b, c, qh, kh, vh, douth)
			for _, grid := range []int64{1, 3} {
				attnMaxGrid = grid
				got := runAttentionOn(t, b, c, qh, kh, vh, douth)
				attnMaxGrid = maxGridX
				for o, name := range []string{"out", "lse", "dq", "dk", "dv"} {
					for j, x := range got[o] {
						if math.Float32bits(x) != math.Float32bits(want[o][j]) {
							t.Errorf("grid of %d blocks: %s[%d] = %g, with a block per tile %g", grid, name, j, x, want[o][j])
							break
						}
					}
				}
			}
		})
	}
}
