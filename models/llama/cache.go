package llama

import (
	"fmt"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// Cache holds the keys and values of the positions a model has decoded so
// far, for generation one token at a time: each new token attends to the
// cached positions instead of recomputing them. All sequences of the batch
// are at the same position.
//
// The cache also keeps the scratch buffers of the attention, so that a
// generation step allocates nothing on the device for it. Attention over
// the cache runs in one of two ways, chosen by the model's shape (see
// blockDiagonal): per key/value head, with keys and values laid out
// [batch, kvHeads, maxSeq, headDim] so that one head's positions form one
// matrix; or, for narrow models, all heads at once, with keys and values
// laid out [batch, maxSeq, kvHeads·headDim].
type Cache struct {
	m             *Model
	batch, maxSeq int
	pos           int
	k, v          []backend.Tensor // per layer
	blockDiag     bool

	// Scratch, grown on demand (see attendPerHead and attendBlockDiag).
	scores, qh, oh, ot backend.Tensor
	qhT                int // the T whose zero pattern qh holds (block-diagonal)

	// rows[l][i] is layer l's keys (rows[l][B+i] its values) of sequence
	// i as a [maxSeq, kvDim] matrix, for the block-diagonal layout.
	rows [][]backend.Tensor
	// bv holds attendBlockDiag's views of the scratch buffers for bv.T new
	// positions: made once, not every step and layer (views allocate).
	bv blockViews
}

// blockViews are the views attendBlockDiag takes of the cache's scratch
// for T new positions; see there for the layouts.
type blockViews struct {
	T         int
	qh, ph    backend.Tensor   // [H·T, W]: Q̂ and P·V
	diag      backend.Tensor   // Q̂'s diagonal blocks as [T, KV, group, hd]
	pdiag     backend.Tensor   // the same blocks of P·V
	outFlat   backend.Tensor   // the output, [B·T, H·hd] = [B, T, H, hd]
	outBlocks []backend.Tensor // sequence i of out as [T, KV, group, hd]
}

// blockDiagonal reports whether attention over a cache should use one
// product over all heads (see attendBlockDiag) rather than one per
// key/value head. The all-heads product does kvHeads times the necessary
// multiply-adds but replaces 3·kvHeads small calls by three well-shaped
// ones; that pays while the rows of the concatenated heads are narrow
// (stories260K: 4 heads of 8), and loses once heads are wide enough to fill
// the matrix kernel on their own.
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
	kc := &Cache{m: m, batch: batch, maxSeq: maxSeq, blockDiag: blockDiagonal(c) && !m.perHeadAttention}
	shape := []int{batch, c.NumKVHeads, maxSeq, c.HeadDim()}
	if kc.blockDiag {
		shape = []int{batch, maxSeq, c.KVDim()}
	}
	for range m.Blocks {
		for _, dst := range []*[]backend.Tensor{&kc.k, &kc.v} {
			t, err := m.b.Alloc(backend.Float32, shape...)
			if err != nil {
				kc.Free()
				return nil, fmt.Errorf("llama: NewCache: %w", err)
			}
			*dst = append(*dst, t)
		}
	}
	if kc.blockDiag {
		W := c.KVDim()
		for l := range m.Blocks {
			rows := make([]backend.Tensor, 2*batch)
			for i := range batch {
				rows[i] = kc.k[l].MustSlice(i, i+1).MustReshape(maxSeq, W)
				rows[batch+i] = kc.v[l].MustSlice(i, i+1).MustReshape(maxSeq, W)
			}
			kc.rows = append(kc.rows, rows)
		}
	}
	return kc, nil
}

// Len returns the number of positions decoded so far.
func (kc *Cache) Len() int { return kc.pos }

// Batch returns the number of sequences the cache holds.
func (kc *Cache) Batch() int { return kc.batch }

// MaxSeq returns the number of positions the cache can hold.
func (kc *Cache) MaxSeq() int { return kc.maxSeq }

// Reset empties the cache for a new sequence, keeping its memory.
func (kc *Cache) Reset() { kc.pos = 0 }

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
	kc.bv = blockViews{}
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
		if t == &kc.qh {
			kc.qhT = 0
		}
		if t != &kc.scores {
			kc.bv = blockViews{} // views of the old buffer
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
// the logits. After an error the cache's contents are undefined: Reset it.
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
	pos := kc.pos
	var serr error
	attend := func(g *graph.Tape, l int, q, k, v *graph.Value) *graph.Value {
		out, err := kc.attend(g, l, pos, q, k, v)
		if err != nil && serr == nil {
			serr = err
		}
		return out
	}
	x := m.decode(g, tokens, B, T, pos, attend, false)
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
// (for a sliding layer, every position in their windows),
// [B·T, H·hd], from the rotated queries q [B, T, H, hd], keys and values
// [B, T, KV, hd]. It calls the backend directly, on the cache's buffers:
// the result is a constant of g that stays valid until the next attend
// call.
func (kc *Cache) attend(g *graph.Tape, l, pos int, q, k, v *graph.Value) (*graph.Value, error) {
	B, T, dim := kc.batch, q.Dim(1), kc.m.cfg.QDim()
	qt, kt, vt := q.Tensor(), k.Tensor(), v.Tensor()
	if qt.IsZero() || kt.IsZero() || vt.IsZero() {
		// An earlier op failed; the tape holds the error. Return a
		// placeholder of the right shape so the forward runs to its end.
		return g.Reshape(q, B*T, dim), nil
	}
	var out backend.Tensor
	var err error
	if kc.blockDiag {
		out, err = kc.attendBlockDiag(l, pos, qt, kt, vt)
	} else {
		out, err = kc.attendPerHead(l, pos, qt, kt, vt)
	}
	if err != nil {
		return nil, err
	}
	if out.Rank() != 2 {
		out = out.MustReshape(B*T, dim)
	}
	return g.Const(out), nil
}

// firstKey returns the first cached position that layer l's queries from
// position pos can see: 0, or for a sliding layer the start of the
// first query's window, pos − window + 1. The keys before it are left out
// of the products altogether (the softmax's window would give them weight
// 0), so that a sliding layer's work per generated token stays bounded by
// its window however long the sequence grows.
func (kc *Cache) firstKey(l, pos int) int {
	if w := kc.m.layers[l].window; w > 0 {
		return max(0, pos-w+1)
	}
	return 0
}

// attendBlockDiag is attend with one product over all heads, on a cache
// laid out [B, S, KV·hd], where the keys of positions 0 … n−1 of every head
// form one [n, KV·hd] matrix K. The queries go into a block-diagonal matrix
// Q̂ [H·T, KV·hd] whose row (h, t) holds query h at position t in the
// columns of h's key/value head and zeros elsewhere, so Q̂·Kᵀ is every
// head's scores at once, [H, T, n]. After the softmax, P·V [H·T, KV·hd]
// holds each head's output in the columns of its key/value head (the other
// columns mix in other heads' values and are ignored): copying those
// diagonal blocks out gives [T, H, hd].
func (kc *Cache) attendBlockDiag(l, pos int, qt, kt, vt backend.Tensor) (backend.Tensor, error) {
	c := kc.m.cfg
	b := kc.m.b
	B, T := kc.batch, qt.Dim(1)
	H, KV, hd, S := c.NumHeads, c.NumKVHeads, c.HeadDim(), kc.maxSeq
	group, W := H/KV, c.KVDim()
	n := pos + T
	if B == 1 {
		// New keys and values are rows pos … pos+T−1 of the matrices.
		b.Copy(kc.rows[l][0].MustSlice(pos, n), kt.MustReshape(T, W), false)
		b.Copy(kc.rows[l][1].MustSlice(pos, n), vt.MustReshape(T, W), false)
	} else {
		for _, kv := range []struct{ cache, src backend.Tensor }{{kc.k[l], kt}, {kc.v[l], vt}} {
			dst, err := kv.cache.Strided(pos*W, backend.Shape{B, T, W}, []int{S * W, W, 1})
			if err != nil {
				return backend.Tensor{}, fmt.Errorf("llama: cache view: %w", err)
			}
			b.Copy(dst, kv.src.MustReshape(B, T, W), false)
		}
	}
	v, err := kc.blockViews(T)
	if err != nil {
		return backend.Tensor{}, err
	}
	if kc.qhT != T {
		// Only the diagonal blocks are ever written, so the zeros stay
		// while T does.
		b.Fill(v.qh, 0)
		kc.qhT = T
	}
	lo := kc.firstKey(l, pos)
	scores, err := kc.scratch(&kc.scores, H*T*S, H*T, n-lo)
	if err != nil {
		return backend.Tensor{}, err
	}
	sp := kc.m.softmaxParams(l, pos-lo, T)
	// Rows of one query position are independent of T's other rows only
	// through the causal mask; without one the [H·T, n−lo] scores are
	// the softmax's rows as they are.
	s3 := scores
	if sp.Causal {
		s3 = scores.MustReshape(H, T, n-lo)
	}
	q4 := qt.MustReshape(B, T, KV, group, hd)
	for i := range B {
		qi := q4
		if B > 1 {
			qi = q4.MustSlice(i, i+1)
		}
		b.Copy(v.diag, qi.MustReshape(T, KV, group, hd), false)
		ki := kc.rows[l][i].MustSlice(lo, n)
		vi := kc.rows[l][B+i].MustSlice(lo, n)
		kc.logits(scores, v.qh, ki)
		b.Softmax(s3, s3, sp)
		b.MatMul(v.ph, scores, vi, backend.MatMulParams{Alpha: 1})
		b.Copy(v.outBlocks[i], v.pdiag, false)
	}
	return v.outFlat, nil
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

// blockViews returns attendBlockDiag's views of the scratch buffers for T
// new positions, growing the buffers as needed, and keeps them for the
// next call with the same T.
func (kc *Cache) blockViews(T int) (blockViews, error) {
	if kc.bv.T == T {
		return kc.bv, nil
	}
	c := kc.m.cfg
	B, H, KV, hd := kc.batch, c.NumHeads, c.NumKVHeads, c.HeadDim()
	group, W := H/KV, c.KVDim()
	qh, err := kc.scratch(&kc.qh, 0, H*T, W)
	if err != nil {
		return blockViews{}, err
	}
	ph, err := kc.scratch(&kc.oh, 0, H*T, W)
	if err != nil {
		return blockViews{}, err
	}
	out, err := kc.scratch(&kc.ot, 0, B, T, H, hd)
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
	v := blockViews{T: T, qh: qh, ph: ph, diag: diag, pdiag: pdiag, outFlat: out.MustReshape(B*T, c.QDim())}
	o4 := out.MustReshape(B, T, KV, group, hd)
	for i := range B {
		v.outBlocks = append(v.outBlocks, o4.MustSlice(i, i+1).MustReshape(T, KV, group, hd))
	}
	kc.bv = v
	return v, nil
}

// attendPerHead is attend with one product per key/value head, on a cache
// laid out [B, KV, S, hd].
func (kc *Cache) attendPerHead(l, pos int, qt, kt, vt backend.Tensor) (backend.Tensor, error) {
	c := kc.m.cfg
	b := kc.m.b
	B, T := kc.batch, qt.Dim(1)
	H, KV, hd, S := c.NumHeads, c.NumKVHeads, c.HeadDim(), kc.maxSeq
	group := H / KV
	n := pos + T
	// New keys and values go to [b, j, pos+t, :] of the cache, a strided
	// view of shape [B, T, KV, hd].
	for _, kv := range []struct{ cache, src backend.Tensor }{{kc.k[l], kt}, {kc.v[l], vt}} {
		dst, err := kv.cache.Strided(pos*hd, backend.Shape{B, T, KV, hd}, []int{KV * S * hd, hd, S * hd, 1})
		if err != nil {
			return backend.Tensor{}, fmt.Errorf("llama: cache view: %w", err)
		}
		b.Copy(dst, kv.src, false)
	}
	// Queries in [B, H, T, hd] order, which is [B·KV, group·T, hd]: the
	// queries of the heads that share one key/value head are one matrix.
	qh := qt
	if T > 1 {
		var err error
		if qh, err = kc.scratch(&kc.qh, 0, B, H, T, hd); err != nil {
			return backend.Tensor{}, err
		}
		perm, err := qt.Permute(0, 2, 1, 3)
		if err != nil {
			return backend.Tensor{}, err
		}
		b.Copy(qh, perm, false)
	}
	qh = qh.MustReshape(B*KV, group*T, hd)
	oh, err := kc.scratch(&kc.oh, 0, B*KV, group*T, hd)
	if err != nil {
		return backend.Tensor{}, err
	}
	lo := kc.firstKey(l, pos)
	scores, err := kc.scratch(&kc.scores, group*T*S, group*T, n-lo)
	if err != nil {
		return backend.Tensor{}, err
	}
	sp := kc.m.softmaxParams(l, pos-lo, T)
	kAll := kc.k[l].MustReshape(B*KV, S, hd)
	vAll := kc.v[l].MustReshape(B*KV, S, hd)
	scores3 := scores.MustReshape(group, T, n-lo)
	for i := 0; i < B*KV; i++ {
		qi := qh.MustSlice(i, i+1).MustReshape(group*T, hd)
		ki := kAll.MustSlice(i, i+1).MustReshape(S, hd).MustSlice(lo, n)
		vi := vAll.MustSlice(i, i+1).MustReshape(S, hd).MustSlice(lo, n)
		oi := oh.MustSlice(i, i+1).MustReshape(group*T, hd)
		kc.logits(scores, qi, ki)
		b.Softmax(scores3, scores3, sp)
		b.MatMul(oi, scores, vi, backend.MatMulParams{Alpha: 1})
	}
	out := oh
	if T > 1 {
		// [B, H, T, hd] back to [B, T, H, hd].
		ot, err := kc.scratch(&kc.ot, 0, B, T, H, hd)
		if err != nil {
			return backend.Tensor{}, err
		}
		perm, err := oh.MustReshape(B, H, T, hd).Permute(0, 2, 1, 3)
		if err != nil {
			return backend.Tensor{}, err
		}
		b.Copy(ot, perm, false)
		out = ot
	}
	return out, nil
}
