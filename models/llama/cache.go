package llama

import (
	"fmt"
	"iter"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// Cache holds the keys and values of the positions a model has decoded so
// far, for generation one token at a time: each new token attends to the
// cached positions instead of recomputing them. All sequences of the batch
// advance together, one slot per position; prompts of different lengths
// are left-padded to one length, and [Cache.SetPadding] hides each row's
// padding from its queries.
//
// The cache also keeps the scratch buffers of the attention, so that a
// generation step allocates nothing on the device for it. Attention over
// the cache runs in one of three ways. The layout of the keys and values
// is chosen when a sequence starts (its first [Model.Decode] after
// NewCache or Reset), the way for each Decode:
//
//   - fused: where the tape allows the backend's fused attention
//     ([graph.Tape.FusedAttention]: the backend has the ops, and neither
//     [graph.Tape.SetFusedAttention](false) nor SORA_ATTENTION=unfused
//     forbids them), one [backend.Ops.Attention] per sequence over its
//     cached keys, with keys and values laid out [batch, maxSeq,
//     kvHeads·headDim], so that a sequence's positions lo … n−1 are a
//     dense [1, n−lo, kvHeads, headDim] tensor, the op's layout. No
//     scores are stored (the block-diagonal composition's scratch holds
//     [heads·T, n] of them, 128 MiB for a prefill of 2048 positions with
//     8 heads; the per-head one [heads/kvHeads·T, n]),
//     and a prefill of T positions does about half the work of the
//     composition (the op skips the keys the causal mask hides).
//   - block-diagonal: without the fused op, for narrow models (see
//     blockDiagonal), all heads at once, on the same layout, from MatMul
//     and Softmax. Narrow models also take it for steps of one position
//     where the fused op is allowed: with heads of 8 (stories260K's
//     shape) the CPU backend's fused kernel took 2 to 2.7 times as long
//     for one query over 512 or 2048 keys as the block-diagonal
//     products, while its prefill of 512 positions was 1.8 times as
//     fast (BenchmarkCacheDecode, BenchmarkCachePrefill). With heads of
//     64 a fused step took as long as the per-head one.
//   - per head: without the fused op, for wider models, one product per
//     key/value head, with keys and values laid out [batch, kvHeads,
//     maxSeq, headDim] so that one head's positions form one matrix.
//
// The layout is fixed for the rest of the sequence: a tape that forbids
// the fused op in the middle of a sequence laid out for it gets the
// block-diagonal composition on that layout, and one that allows it in a
// sequence laid out per head gets the per-head composition.
type Cache struct {
	m             *Model
	batch, maxSeq int
	pos           int
	// k and v are per layer, allocated [batch, maxSeq, kvDim]; a sequence
	// laid out per head reads the same buffers as [batch, kvHeads,
	// maxSeq, headDim].
	k, v []backend.Tensor
	// perHead is the layout of the current sequence (see Cache), set by
	// its first Decode; forcePerHead is Model.perHeadAttention when the
	// cache was made, which always picks it.
	perHead, forcePerHead bool
	// fused says whether the current Decode call attends with the fused
	// op, path names the attention it ran last (for tests). fusedSteps
	// makes one-position steps of narrow models fused too (tests and
	// benchmarks; see Cache).
	fused, fusedSteps bool
	path              string
	// pad[i] is the number of padding positions at the start of row i
	// (SetPadding); nil when there are none.
	pad []int

	// Scratch, grown on demand (see the attend functions).
	scores, qh, oh, ot backend.Tensor
	qhT                int // the T whose zero pattern qh holds (block-diagonal)

	// rows[l][i] is layer l's keys (rows[l][B+i] its values) of sequence
	// i as a [maxSeq, kvDim] matrix, for the all-heads layout.
	rows [][]backend.Tensor
	// bv holds attendBlockDiag's views of the scratch buffers for bv.T
	// query positions and ov the views of the output for ov.T new
	// positions: made once, not every step and layer (views allocate).
	bv blockViews
	ov outViews
}

// blockViews are the views attendBlockDiag takes of the cache's scratch
// for T query positions of one sequence; see there for the layouts.
type blockViews struct {
	T      int
	qh, ph backend.Tensor // [H·T, W]: Q̂ and P·V
	diag   backend.Tensor // Q̂'s diagonal blocks as [T, KV, group, hd]
	pdiag  backend.Tensor // the same blocks of P·V
}

// outViews are the views of the attention's output, [B, T, H, hd], for T
// new positions.
type outViews struct {
	T      int
	flat   backend.Tensor   // [B·T, H·hd], what attend returns
	rows   []backend.Tensor // sequence i as [1, T, H, hd] (fused)
	blocks []backend.Tensor // sequence i as [T, KV, group, hd] (block-diagonal)
	heads  backend.Tensor   // [B·T·KV, group, hd] (per head)
}

// blockDiagonal reports whether attention over a cache should use one
// product over all heads (see attendBlockDiag) rather than one per
// key/value head, where the backend has no fused attention. The all-heads
// product does kvHeads times the necessary multiply-adds but replaces
// 3·kvHeads small calls by three well-shaped ones; that pays while the rows
// of the concatenated heads are narrow (stories260K: 4 heads of 8), and
// loses once heads are wide enough to fill the matrix kernel on their own.
func blockDiagonal(c Config) bool { return c.KVDim() <= 128 }

// NewCache allocates a cache for batch sequences of up to maxSeq positions
// (0 means the model's seq_len, which is also the limit).
func (m *Model) NewCache(batch, maxSeq int) (*Cache, error) {
	c := m.cfg
	if maxSeq == 0 {
		maxSeq = c.MaxSeqLen
	}
	if batch < 1 || maxSeq < 1 || maxSeq > c.MaxSeqLen {
		return nil, fmt.Errorf("llama: NewCache: batch %d, %d positions; want a batch of at least 1 and 1 to %d positions", batch, maxSeq, c.MaxSeqLen)
	}
	kc := &Cache{m: m, batch: batch, maxSeq: maxSeq, forcePerHead: m.perHeadAttention}
	W := c.KVDim()
	for range m.Blocks {
		for _, dst := range []*[]backend.Tensor{&kc.k, &kc.v} {
			t, err := m.b.Alloc(backend.Float32, batch, maxSeq, W)
			if err != nil {
				kc.Free()
				return nil, fmt.Errorf("llama: NewCache: %w", err)
			}
			*dst = append(*dst, t)
		}
	}
	for l := range m.Blocks {
		rows := make([]backend.Tensor, 2*batch)
		for i := range batch {
			rows[i] = kc.k[l].MustSlice(i, i+1).MustReshape(maxSeq, W)
			rows[batch+i] = kc.v[l].MustSlice(i, i+1).MustReshape(maxSeq, W)
		}
		kc.rows = append(kc.rows, rows)
	}
	return kc, nil
}

// Len returns the number of positions decoded so far.
func (kc *Cache) Len() int { return kc.pos }

// Batch returns the number of sequences the cache holds.
func (kc *Cache) Batch() int { return kc.batch }

// MaxSeq returns the number of positions the cache can hold.
func (kc *Cache) MaxSeq() int { return kc.maxSeq }

// Reset empties the cache for a new sequence, keeping its memory; the
// padding set by SetPadding goes with the old sequence.
func (kc *Cache) Reset() { kc.pos, kc.pad = 0, nil }

// SetPadding declares that the first pad[i] positions of row i are
// padding, for a batch of prompts of different lengths left-padded to one
// length: no query attends to them, so each row's real tokens see only
// each other, as they would alone. It takes one count per row, each below
// MaxSeq, and must be called on an empty cache (before the prefill; Reset
// clears it). The tokens [Model.Decode] gets at the padded positions may
// be any valid id; their logits are meaningless (the attention's output
// there is zero).
//
// A row's positions stay the slots of the cache, so its real tokens sit
// at rotary positions pad[i], pad[i]+1, …: rotary attention depends only
// on the distance between query and key, so the logits are those of the
// row alone to float32 rounding (the rotation angles are computed at
// other positions).
func (kc *Cache) SetPadding(pad []int) error {
	if kc.pos != 0 {
		return fmt.Errorf("llama: SetPadding: the cache already holds %d positions; set the padding before the prefill (after Reset)", kc.pos)
	}
	if len(pad) != kc.batch {
		return fmt.Errorf("llama: SetPadding: %d counts for a batch of %d", len(pad), kc.batch)
	}
	for i, p := range pad {
		if p < 0 || p >= kc.maxSeq {
			return fmt.Errorf("llama: SetPadding: row %d has %d padding positions, want 0 to %d (the cache's positions less one)", i, p, kc.maxSeq-1)
		}
	}
	kc.pad = nil
	for _, p := range pad {
		if p > 0 {
			kc.pad = append([]int(nil), pad...)
			break
		}
	}
	return nil
}

// Free releases the cache's device memory.
func (kc *Cache) Free() {
	b := kc.m.b
	for _, t := range append(kc.k, kc.v...) {
		b.Free(t)
	}
	for _, t := range []backend.Tensor{kc.scores, kc.qh, kc.oh, kc.ot} {
		b.Free(t)
	}
	kc.k, kc.v, kc.rows = nil, nil, nil
	kc.scores, kc.qh, kc.oh, kc.ot = backend.Tensor{}, backend.Tensor{}, backend.Tensor{}, backend.Tensor{}
	kc.bv, kc.ov = blockViews{}, outViews{}
}

// scratch returns a contiguous view of shape from *t, reallocating *t with
// room for at least capacity elements when it is too small. Its contents
// are unspecified.
func (kc *Cache) scratch(t *backend.Tensor, capacity int, shape ...int) (backend.Tensor, error) {
	n := backend.Shape(shape).NumElements()
	if t.IsZero() || t.Len() < n {
		kc.m.b.Free(*t)
		*t = backend.Tensor{}
		nt, err := kc.m.b.Alloc(backend.Float32, max(n, capacity))
		if err != nil {
			return backend.Tensor{}, fmt.Errorf("llama: attention scratch: %w", err)
		}
		*t = nt
		switch t {
		case &kc.qh:
			kc.qhT = 0
			kc.bv = blockViews{} // views of the old buffer
		case &kc.oh:
			kc.bv = blockViews{}
		case &kc.ot:
			kc.ov = outViews{}
		}
	}
	return t.MustSlice(0, n).MustReshape(shape...), nil
}

// Decode appends T positions to every sequence of the cache: tokens holds
// batch·T ids, row-major, the tokens at positions Len() … Len()+T−1. It
// returns the logits of the last new position of each sequence, [batch,
// vocab], or with all those of every new position, [batch, T, vocab].
// Decoding the prompt in one call (T = its length) is the prefill; then one
// token at a time.
//
// Decode records nothing (it runs with g's recording off) and allocates
// the tape's buffers, so the caller resets g between steps once it has read
// the logits. The attention uses the backend's fused op where g allows it
// ([graph.Tape.FusedAttention]; see [Cache] for what else decides). After
// an error the cache's contents are undefined: Reset it.
func (m *Model) Decode(g *graph.Tape, kc *Cache, tokens []int32, T int, all bool) (*graph.Value, error) {
	if kc == nil || kc.m != m {
		return nil, fmt.Errorf("llama: Decode: the cache was not made by this model")
	}
	if kc.k == nil {
		return nil, fmt.Errorf("llama: Decode: the cache was freed")
	}
	B := kc.batch
	switch {
	case T < 1 || len(tokens) != B*T:
		return nil, fmt.Errorf("llama: Decode: %d token ids for a batch of %d and %d positions", len(tokens), B, T)
	case kc.pos+T > kc.maxSeq:
		return nil, fmt.Errorf("llama: Decode: %d positions after %d exceed the cache's %d", T, kc.pos, kc.maxSeq)
	}
	if err := checkTokens(tokens, m.cfg.VocabSize); err != nil {
		return nil, err
	}
	defer g.SetNoGrad(g.SetNoGrad(true))
	fused := g.FusedAttention()
	if kc.pos == 0 {
		// A new sequence: its layout is free to choose.
		kc.perHead = kc.forcePerHead || (!fused && !blockDiagonal(m.cfg))
	}
	kc.fused = fused && !kc.perHead && (T > 1 || !blockDiagonal(m.cfg) || kc.fusedSteps)
	pos := kc.pos
	var serr error
	attend := func(g *graph.Tape, l int, q, k, v *graph.Value) *graph.Value {
		out, err := kc.attend(g, l, pos, q, k, v)
		if err != nil && serr == nil {
			serr = err
		}
		return out
	}
	// Each layer a segment: without recording, it releases the layer's
	// intermediates when it ends, so a long prefill holds one layer's.
	x := m.decode(g, tokens, B, T, pos, attend, true)
	if serr != nil {
		return nil, serr
	}
	kc.pos += T
	if !all && T > 1 {
		x = g.Reshape(g.Slice(g.Reshape(x, B, T, m.cfg.Dim), 1, T-1, T), B, m.cfg.Dim)
	}
	logits := m.capLogits(g, m.Output.Forward(g, m.norm(g, x, m.Norm)))
	if all {
		logits = g.Reshape(logits, B, T, m.cfg.VocabSize)
	}
	return logits, nil
}

// attend stores the new keys and values of layer l at positions pos … pos+T−1
// and returns the attention of the new queries over every cached position
// of their sequence (for a sliding layer, every position in their windows;
// never a row's padding), [B·T, H·hd], from the rotated queries q [B, T,
// H, hd], keys and values [B, T, KV, hd]. It calls the backend directly,
// on the cache's buffers: the result is a constant of g that stays valid
// until the next attend call.
func (kc *Cache) attend(g *graph.Tape, l, pos int, q, k, v *graph.Value) (*graph.Value, error) {
	B, T, dim := kc.batch, q.Dim(1), kc.m.cfg.QDim()
	qt, kt, vt := q.Tensor(), k.Tensor(), v.Tensor()
	if qt.IsZero() || kt.IsZero() || vt.IsZero() {
		// An earlier op failed; the tape holds the error. Return a
		// placeholder of the right shape so the forward runs to its end.
		return g.Reshape(q, B*T, dim), nil
	}
	var err error
	if kc.perHead {
		err = kc.storePerHead(l, pos, kt, vt)
	} else {
		err = kc.storeAllHeads(l, pos, kt, vt)
	}
	if err != nil {
		return nil, err
	}
	ov, err := kc.outViews(T)
	if err != nil {
		return nil, err
	}
	switch {
	case kc.perHead:
		kc.path = "per-head"
		err = kc.attendPerHead(l, pos, qt, ov)
	case kc.fused:
		kc.path = "fused"
		kc.attendFused(l, pos, qt, ov)
	default:
		kc.path = "block-diagonal"
		err = kc.attendBlockDiag(l, pos, qt, ov)
	}
	if err != nil {
		return nil, err
	}
	return g.Const(ov.flat), nil
}

// storeAllHeads writes the new keys and values [B, T, KV, hd] of layer l
// to positions pos … pos+T−1 of the all-heads layout.
func (kc *Cache) storeAllHeads(l, pos int, kt, vt backend.Tensor) error {
	b := kc.m.b
	B, T, S, W := kc.batch, kt.Dim(1), kc.maxSeq, kc.m.cfg.KVDim()
	if B == 1 {
		// New keys and values are rows pos … pos+T−1 of the matrices.
		b.Copy(kc.rows[l][0].MustSlice(pos, pos+T), kt.MustReshape(T, W), false)
		b.Copy(kc.rows[l][1].MustSlice(pos, pos+T), vt.MustReshape(T, W), false)
		return nil
	}
	for _, kv := range []struct{ cache, src backend.Tensor }{{kc.k[l], kt}, {kc.v[l], vt}} {
		dst, err := kv.cache.Strided(pos*W, backend.Shape{B, T, W}, []int{S * W, W, 1})
		if err != nil {
			return fmt.Errorf("llama: cache view: %w", err)
		}
		b.Copy(dst, kv.src.MustReshape(B, T, W), false)
	}
	return nil
}

// storePerHead writes the new keys and values [B, T, KV, hd] of layer l
// to positions pos … pos+T−1 of the per-head layout, [b, j, pos+t, :], a
// strided view of shape [B, T, KV, hd].
func (kc *Cache) storePerHead(l, pos int, kt, vt backend.Tensor) error {
	c := kc.m.cfg
	B, T, KV, hd, S := kc.batch, kt.Dim(1), c.NumKVHeads, c.HeadDim(), kc.maxSeq
	for _, kv := range []struct{ cache, src backend.Tensor }{{kc.k[l], kt}, {kc.v[l], vt}} {
		dst, err := kv.cache.Strided(pos*hd, backend.Shape{B, T, KV, hd}, []int{KV * S * hd, hd, S * hd, 1})
		if err != nil {
			return fmt.Errorf("llama: cache view: %w", err)
		}
		kc.m.b.Copy(dst, kv.src, false)
	}
	return nil
}

// outViews returns the views of the output scratch for T new positions,
// growing it as needed, and keeps them for the next call with the same T.
func (kc *Cache) outViews(T int) (outViews, error) {
	if kc.ov.T == T {
		return kc.ov, nil
	}
	c := kc.m.cfg
	B, H, KV, hd := kc.batch, c.NumHeads, c.NumKVHeads, c.HeadDim()
	out, err := kc.scratch(&kc.ot, 0, B, T, H, hd)
	if err != nil {
		return outViews{}, err
	}
	ov := outViews{T: T, flat: out.MustReshape(B*T, c.QDim()), heads: out.MustReshape(B*T*KV, H/KV, hd)}
	for i := range B {
		r := out.MustSlice(i, i+1)
		ov.rows = append(ov.rows, r)
		ov.blocks = append(ov.blocks, r.MustReshape(T, KV, H/KV, hd))
	}
	kc.ov = ov
	return ov, nil
}

// span returns, for sequence i of T new positions from pos in layer l,
// the first of them that is not padding, t0 (T when all are), and the
// first cached position that those queries can see, lo: the row's first
// real position, or for a sliding layer the start of the first real
// query's window where that is later. The keys before lo are left out of
// the products altogether (the mask would give them weight 0), so that a
// sliding layer's work per generated token stays bounded by its window
// however long the sequence grows.
func (kc *Cache) span(l, i, pos, T int) (t0, lo int) {
	if kc.pad != nil {
		lo = kc.pad[i]
		t0 = min(T, max(0, lo-pos))
	}
	if w := kc.m.layers[l].window; w > 0 {
		lo = max(lo, pos+t0-w+1)
	}
	return t0, lo
}

// rowSpan is a sequence's span of new positions and keys (see span).
type rowSpan struct{ t0, lo int }

// realRows yields each sequence i with a real query among the T new
// positions from pos, with its span in layer l (see span), for the attend
// functions; the outputs (ov.rows) of the sequences whose new positions
// are all padding are zeroed instead, as they attend to nothing.
func (kc *Cache) realRows(l, pos, T int, ov outViews) iter.Seq2[int, rowSpan] {
	return func(yield func(int, rowSpan) bool) {
		for i := range kc.batch {
			t0, lo := kc.span(l, i, pos, T)
			if t0 == T {
				kc.m.b.Fill(ov.rows[i], 0)
				continue
			}
			if !yield(i, rowSpan{t0, lo}) {
				return
			}
		}
	}
}

// padded returns sequence i's output positions [t0, T) as [T−t0, H, hd]
// (row is ov.rows[i]), zeroing the padding positions before t0.
func (kc *Cache) padded(row backend.Tensor, t0 int) backend.Tensor {
	r3 := row.MustReshape(row.Dim(1), row.Dim(2), row.Dim(3))
	kc.m.b.Fill(r3.MustSlice(0, t0), 0)
	return r3.MustSlice(t0, r3.Dim(0))
}

// attendFused is attend with the backend's fused attention, one call per
// sequence: its keys lo … n−1 of the all-heads layout, rows of [KV·hd], are
// the dense [1, n−lo, KV, hd] k and v the op takes, and its new queries
// the op's q, at QueryOffset pos+t0−lo. The mask is causal even for one
// query (which then sees every key), so one set of parameters serves
// every step.
func (kc *Cache) attendFused(l, pos int, qt backend.Tensor, ov outViews) {
	c := kc.m.cfg
	b := kc.m.b
	B, T := kc.batch, qt.Dim(1)
	H, KV, hd := c.NumHeads, c.NumKVHeads, c.HeadDim()
	n := pos + T
	p := kc.m.attentionParams(l)
	p.Causal, p.Segments = true, nil
	for i, sp := range kc.realRows(l, pos, T, ov) {
		t0, lo := sp.t0, sp.lo
		qi, oi := qt, ov.rows[i]
		if B > 1 {
			qi = qt.MustSlice(i, i+1)
		}
		if t0 > 0 {
			qi = qi.MustReshape(T, H, hd).MustSlice(t0, T).MustReshape(1, T-t0, H, hd)
			oi = kc.padded(oi, t0).MustReshape(1, T-t0, H, hd)
		}
		ki := kc.rows[l][i].MustSlice(lo, n).MustReshape(1, n-lo, KV, hd)
		vi := kc.rows[l][B+i].MustSlice(lo, n).MustReshape(1, n-lo, KV, hd)
		p.QueryOffset = pos + t0 - lo
		b.Attention(oi, backend.Tensor{}, qi, ki, vi, p)
	}
}

// attendBlockDiag is attend with one product over all heads, on the
// all-heads layout, where the keys of positions lo … n−1 of every head of
// a sequence form one [n−lo, KV·hd] matrix K. The queries go into a
// block-diagonal matrix Q̂ [H·T, KV·hd] whose row (h, t) holds query h at
// position t in the columns of h's key/value head and zeros elsewhere, so
// Q̂·Kᵀ is every head's scores at once, [H, T, n−lo]. After the softmax,
// P·V [H·T, KV·hd] holds each head's output in the columns of its
// key/value head (the other columns mix in other heads' values and are
// ignored): copying those diagonal blocks out gives [T, H, hd]. A row's
// padding queries are left out (T is then the number of its real ones).
func (kc *Cache) attendBlockDiag(l, pos int, qt backend.Tensor, ov outViews) error {
	c := kc.m.cfg
	b := kc.m.b
	B, T := kc.batch, qt.Dim(1)
	H, KV, hd := c.NumHeads, c.NumKVHeads, c.HeadDim()
	group := H / KV
	n := pos + T
	q4 := qt.MustReshape(B, T, KV, group, hd)
	var sv scoreView
	for i, sp := range kc.realRows(l, pos, T, ov) {
		t0, lo := sp.t0, sp.lo
		Ti := T - t0
		v, err := kc.blockViews(Ti)
		if err != nil {
			return err
		}
		if kc.qhT != Ti {
			// Only the diagonal blocks are ever written, so the zeros
			// stay while T does.
			b.Fill(v.qh, 0)
			kc.qhT = Ti
		}
		if sv, err = kc.scoreView(sv, H, l, pos, T, Ti, lo); err != nil {
			return err
		}
		qi, oi := q4, ov.blocks[i]
		if B > 1 {
			qi = q4.MustSlice(i, i+1)
		}
		qi = qi.MustReshape(T, KV, group, hd)
		if t0 > 0 {
			qi = qi.MustSlice(t0, T)
			oi = kc.padded(ov.rows[i], t0).MustReshape(Ti, KV, group, hd)
		}
		b.Copy(v.diag, qi, false)
		kc.logits(sv.scores, v.qh, kc.rows[l][i].MustSlice(lo, n))
		b.Softmax(sv.rows, sv.rows, sv.mask)
		b.MatMul(v.ph, sv.scores, kc.rows[l][B+i].MustSlice(lo, n), backend.MatMulParams{Alpha: 1})
		b.Copy(oi, v.pdiag, false)
	}
	return nil
}

// logits sets dst = q·kᵀ, the attention logits of queries q over keys k,
// soft-capped where the model has Config.AttnLogitSoftcap c to
// tanh(q·kᵀ·scale/c) (the product's alpha taking capScale, tanh in
// place), for the softmax of softmaxParams, whose scale c gives
// c·tanh(scale·q·kᵀ/c).
func (kc *Cache) logits(dst, q, k backend.Tensor) {
	b, cs := kc.m.b, kc.m.capScale
	if cs == 0 {
		b.MatMul(dst, q, k, backend.MatMulParams{TransB: true, Alpha: 1})
		return
	}
	b.MatMul(dst, q, k, backend.MatMulParams{TransB: true, Alpha: cs})
	b.Unary(backend.Tanh, dst, dst)
}

// scoreView is the composed attention's scores scratch for Ti query
// positions of `heads` heads over the keys lo … n−1 of a sequence.
type scoreView struct {
	Ti, lo int
	scores backend.Tensor        // [heads·Ti, n−lo], the products' view
	rows   backend.Tensor        // the view the softmax takes (see kc.scoreView)
	mask   backend.SoftmaxParams // the mask of those queries over those keys
}

// scoreView returns the scores scratch for Ti of T new positions from pos
// (the last Ti: those before are a row's padding) of `heads` heads in
// layer l, over the keys lo … pos+T−1, growing the buffer as needed; it
// returns prev (made by the previous call) where that covers the same Ti
// and lo, as it does for every row without padding, so that rows do not
// make views again. The softmax's rows are the scores as they are, but
// for a causal mask, which needs each head's [Ti, n−lo] block apart.
func (kc *Cache) scoreView(prev scoreView, heads, l, pos, T, Ti, lo int) (scoreView, error) {
	if !prev.scores.IsZero() && prev.Ti == Ti && prev.lo == lo {
		return prev, nil
	}
	n := pos + T
	scores, err := kc.scratch(&kc.scores, heads*T*kc.maxSeq, heads*Ti, n-lo)
	if err != nil {
		return scoreView{}, err
	}
	sv := scoreView{Ti: Ti, lo: lo, scores: scores, rows: scores, mask: kc.m.softmaxParams(l, pos+T-Ti-lo, Ti)}
	if sv.mask.Causal {
		sv.rows = scores.MustReshape(heads, Ti, n-lo)
	}
	return sv, nil
}

// blockViews returns attendBlockDiag's views of the scratch buffers for T
// query positions, growing the buffers as needed, and keeps them for the
// next call with the same T.
func (kc *Cache) blockViews(T int) (blockViews, error) {
	if kc.bv.T == T {
		return kc.bv, nil
	}
	c := kc.m.cfg
	H, KV, hd := c.NumHeads, c.NumKVHeads, c.HeadDim()
	group, W := H/KV, c.KVDim()
	qh, err := kc.scratch(&kc.qh, 0, H*T, W)
	if err != nil {
		return blockViews{}, err
	}
	ph, err := kc.scratch(&kc.oh, 0, H*T, W)
	if err != nil {
		return blockViews{}, err
	}
	// Element (t, j, i, d) of a [T, KV, group, hd] tensor, query head
	// h = j·group + i, sits in Q̂ (and P·V) at row h·T + t, column j·hd + d.
	dshape, dstrides := backend.Shape{T, KV, group, hd}, []int{W, group*T*W + hd, T * W, 1}
	diag, err := qh.Strided(0, dshape, dstrides)
	if err != nil {
		return blockViews{}, err
	}
	pdiag, err := ph.Strided(0, dshape, dstrides)
	if err != nil {
		return blockViews{}, err
	}
	kc.bv = blockViews{T: T, qh: qh, ph: ph, diag: diag, pdiag: pdiag}
	return kc.bv, nil
}

// attendPerHead is attend with one product per key/value head, on the
// per-head layout [B, KV, S, hd], sequence by sequence. A sequence's
// queries in [H, T, hd] order are [KV, group·T, hd]: the queries of the
// heads that share one key/value head are one matrix. For one query
// position that is its own layout, so the products read q and write the
// output in place; for more, the queries and outputs go through scratch
// in that order. A row's padding queries are left out (T is then the
// number of its real ones).
func (kc *Cache) attendPerHead(l, pos int, qt backend.Tensor, ov outViews) error {
	c := kc.m.cfg
	b := kc.m.b
	B, T := kc.batch, qt.Dim(1)
	H, KV, hd, S := c.NumHeads, c.NumKVHeads, c.HeadDim(), kc.maxSeq
	group := H / KV
	n := pos + T
	kAll := kc.k[l].MustReshape(B*KV, S, hd)
	vAll := kc.v[l].MustReshape(B*KV, S, hd)
	// Query position t of row i, key/value head j, is matrix
	// (i·T + t)·KV + j of these, [group, hd].
	qAll, oAll := qt.MustReshape(B*T*KV, group, hd), ov.heads
	var sv scoreView
	for i, sp := range kc.realRows(l, pos, T, ov) {
		t0, lo := sp.t0, sp.lo
		Ti := T - t0
		var err error
		if sv, err = kc.scoreView(sv, group, l, pos, T, Ti, lo); err != nil {
			return err
		}
		var oi, qh, oh backend.Tensor // oh, qh: [KV, group·Ti, hd] for Ti > 1
		if t0 > 0 {
			oi = kc.padded(ov.rows[i], t0)
		}
		if Ti > 1 {
			// [Ti, H, hd] to [H, Ti, hd] and back.
			if t0 == 0 {
				oi = ov.rows[i].MustReshape(T, H, hd)
			}
			var err error
			if qh, err = kc.scratch(&kc.qh, 0, H, Ti, hd); err != nil {
				return err
			}
			kc.qhT = 0 // no longer the block-diagonal zeros
			qi := qt.MustReshape(B*T, H, hd).MustSlice(i*T+t0, (i+1)*T)
			perm, err := qi.Permute(1, 0, 2)
			if err != nil {
				return err
			}
			b.Copy(qh, perm, false)
			qh = qh.MustReshape(KV, group*Ti, hd)
			if oh, err = kc.scratch(&kc.oh, 0, KV, group*Ti, hd); err != nil {
				return err
			}
		}
		for j := range KV {
			var qj, oj backend.Tensor
			if Ti == 1 {
				m := (i*T+t0)*KV + j
				qj, oj = qAll.MustSlice(m, m+1).MustReshape(group, hd), oAll.MustSlice(m, m+1).MustReshape(group, hd)
			} else {
				qj, oj = qh.MustSlice(j, j+1).MustReshape(group*Ti, hd), oh.MustSlice(j, j+1).MustReshape(group*Ti, hd)
			}
			ki := kAll.MustSlice(i*KV+j, i*KV+j+1).MustReshape(S, hd).MustSlice(lo, n)
			vi := vAll.MustSlice(i*KV+j, i*KV+j+1).MustReshape(S, hd).MustSlice(lo, n)
			kc.logits(sv.scores, qj, ki)
			b.Softmax(sv.rows, sv.rows, sv.mask)
			b.MatMul(oj, sv.scores, vi, backend.MatMulParams{Alpha: 1})
		}
		if Ti > 1 {
			perm, err := oh.MustReshape(H, Ti, hd).Permute(1, 0, 2)
			if err != nil {
				return err
			}
			b.Copy(oi, perm, false)
		}
	}
	return nil
}
