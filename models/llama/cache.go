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
// Keys and values of layer l live in device tensors [batch, kvHeads,
// maxSeq, headDim], so that the positions decoded so far for one key/value
// head form one contiguous matrix that a matrix multiply can read directly.
// The cache also keeps the scratch buffers of the attention, so that a
// generation step allocates nothing on the device for it.
type Cache struct {
	m             *Model
	batch, maxSeq int
	pos           int
	k, v          []backend.Tensor // per layer

	// Scratch, grown on demand: scores [group·T, n] of one key/value head,
	// queries and outputs in [B, heads, T, headDim] order, and the output
	// in [B, T, heads, headDim] order.
	scores, qh, oh, ot backend.Tensor
}

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
	kc := &Cache{m: m, batch: batch, maxSeq: maxSeq}
	for range m.Blocks {
		for _, dst := range []*[]backend.Tensor{&kc.k, &kc.v} {
			t, err := m.b.Alloc(backend.Float32, batch, c.NumKVHeads, maxSeq, c.HeadDim())
			if err != nil {
				kc.Free()
				return nil, fmt.Errorf("llama: NewCache: %w", err)
			}
			*dst = append(*dst, t)
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
	kc.k, kc.v = nil, nil
	kc.scores, kc.qh, kc.oh, kc.ot = backend.Tensor{}, backend.Tensor{}, backend.Tensor{}, backend.Tensor{}
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
	x := m.decode(g, tokens, B, T, pos, attend)
	if serr != nil {
		return nil, serr
	}
	kc.pos += T
	if !all && T > 1 {
		x = g.Slice(x, 1, T-1, T)
	}
	logits := m.Output.Forward(g, g.RMSNorm(x, m.Norm, float32(m.cfg.NormEps)))
	if !all {
		logits = g.Reshape(logits, B, m.cfg.VocabSize)
	}
	return logits, nil
}

// attend stores the new keys and values of layer l at positions pos … pos+T−1
// and returns the attention of the new queries over every cached position,
// [B, T, dim]. It calls the backend directly, on the cache's buffers: the
// result is a constant of g that stays valid until the next attend call.
func (kc *Cache) attend(g *graph.Tape, l, pos int, q, k, v *graph.Value) (*graph.Value, error) {
	c := kc.m.cfg
	b := kc.m.b
	B, T := kc.batch, q.Dim(1)
	H, KV, hd, S := c.NumHeads, c.NumKVHeads, c.HeadDim(), kc.maxSeq
	group := H / KV
	n := pos + T
	qt, kt, vt := q.Tensor(), k.Tensor(), v.Tensor()
	if qt.IsZero() || kt.IsZero() || vt.IsZero() {
		// An earlier op failed; the tape holds the error. Return a
		// placeholder of the right shape so the forward runs to its end.
		return g.Reshape(q, B, T, c.Dim), nil
	}
	// New keys and values go to [b, j, pos+t, :] of the cache, a strided
	// view of shape [B, T, KV, hd].
	for _, kv := range []struct{ cache, src backend.Tensor }{{kc.k[l], kt}, {kc.v[l], vt}} {
		dst, err := kv.cache.Strided(pos*hd, backend.Shape{B, T, KV, hd}, []int{KV * S * hd, hd, S * hd, 1})
		if err != nil {
			return nil, fmt.Errorf("llama: cache view: %w", err)
		}
		b.Copy(dst, kv.src, false)
	}
	// Queries in [B, H, T, hd] order, which is [B·KV, group·T, hd]: the
	// queries of the heads that share one key/value head are one matrix.
	qh := qt
	if T > 1 {
		var err error
		if qh, err = kc.scratch(&kc.qh, 0, B, H, T, hd); err != nil {
			return nil, err
		}
		perm, err := qt.Permute(0, 2, 1, 3)
		if err != nil {
			return nil, err
		}
		b.Copy(qh, perm, false)
	}
	qh = qh.MustReshape(B*KV, group*T, hd)
	oh, err := kc.scratch(&kc.oh, 0, B*KV, group*T, hd)
	if err != nil {
		return nil, err
	}
	scores, err := kc.scratch(&kc.scores, group*T*S, group*T, n)
	if err != nil {
		return nil, err
	}
	sp := backend.SoftmaxParams{Scale: kc.m.attnScale(), Causal: T > 1, QueryOffset: pos}
	kAll := kc.k[l].MustReshape(B*KV, S, hd)
	vAll := kc.v[l].MustReshape(B*KV, S, hd)
	scores3 := scores.MustReshape(group, T, n)
	for i := 0; i < B*KV; i++ {
		qi := qh.MustSlice(i, i+1).MustReshape(group*T, hd)
		ki := kAll.MustSlice(i, i+1).MustReshape(S, hd).MustSlice(0, n)
		vi := vAll.MustSlice(i, i+1).MustReshape(S, hd).MustSlice(0, n)
		oi := oh.MustSlice(i, i+1).MustReshape(group*T, hd)
		b.MatMul(scores, qi, ki, backend.MatMulParams{TransB: true, Alpha: 1})
		b.Softmax(scores3, scores3, sp)
		b.MatMul(oi, scores, vi, backend.MatMulParams{Alpha: 1})
	}
	out := oh
	if T > 1 {
		// [B, H, T, hd] back to [B, T, H, hd].
		ot, err := kc.scratch(&kc.ot, 0, B, T, H, hd)
		if err != nil {
			return nil, err
		}
		perm, err := oh.MustReshape(B, H, T, hd).Permute(0, 2, 1, 3)
		if err != nil {
			return nil, err
		}
		b.Copy(ot, perm, false)
		out = ot
	}
	return g.Const(out.MustReshape(B, T, c.Dim)), nil
}
