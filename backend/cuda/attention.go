package cuda

import (
	"fmt"

	"github.com/sora-go/sora/backend"
)

// Fused attention: the kernels attn_fwd_*, attn_delta, attn_dq_* and
// attn_dkdv_* of kernels.cu (see the comment there for the algorithm).
// Launch geometry, with Tq queries, Tk keys, H query heads and KV
// key/value heads:
//
//   - attn_fwd and attn_dq: blocks of attnRowThreads threads, one block
//     per tile of attnQueryTile queries of one (batch element, head):
//     ⌈Tq/32⌉·B·H tiles;
//   - attn_dkdv: blocks of attnColThreads threads, one per tile of
//     attnKeyTile keys of one (batch element, key/value head):
//     ⌈Tk/32⌉·B·KV tiles;
//   - attn_delta: blocks of elemBlock threads, a warp per (b, i, h) row.
//
// Grids larger than the hardware's x limit stride: every kernel loops over
// its tiles (or rows) by the grid's size.
//
// Packed sequences (AttentionParams.Segments) reach the kernels as each
// key's document bounds, computed on the host with backend.SegmentBounds
// and copied on the stream into a scratch block (see uploadSegments); the
// kernels then skip the key tiles (and in attn_dkdv the query tiles) that
// lie wholly in other documents.
const (
	attnRowThreads = 128 // ATT_NT
	attnColThreads = 256 // ATT_KV_NT
	attnQueryTile  = 32  // ATT_BR
	attnKeyTile    = 32  // ATT_BK
)

// attnChunks are the head-column chunks (DCH) of the kernel variants: the
// columns of out, dq, dk and dv each thread accumulates at a time, 1/16 of
// them per thread. The host picks the smallest chunk that holds the head;
// a head wider than the last is done in several passes of it.
var attnChunks = [...]int{64, 128, 256}

// attnVariant returns the index in attnChunks of the kernels for heads of
// headDim elements.
func attnVariant(headDim int) int {
	for i, c := range attnChunks {
		if headDim <= c {
			return i
		}
	}
	return len(attnChunks) - 1
}

// attnParams mirrors struct AttnParams of kernels.cu (twelve 4-byte
// fields, 48 bytes).
type attnParams struct {
	batch, queries, keys, heads, kvHeads, headDim int32
	group, causal, qoff, window                   int32
	scale, softcap                                float32
}

// newAttnParams checks that d's extents and p's mask fit the kernels'
// 32-bit ints and returns the kernels' parameters. Without Causal or
// Segments the offset means nothing and is passed as 0, and so is the
// window without Causal; a window wider than the last query's position + 1
// hides no key and is clamped there, as Softmax does.
func newAttnParams(d backend.AttentionDims, p backend.AttentionParams) (attnParams, error) {
	for _, e := range []struct {
		what string
		v    int
	}{
		{"batch", d.Batch}, {"queries", d.Queries}, {"keys", d.Keys}, {"heads", d.Heads},
		{"key/value heads", d.KVHeads}, {"head size", d.HeadDim},
	} {
		if err := check32(e.what, e.v); err != nil {
			return attnParams{}, err
		}
	}
	a := attnParams{
		batch: int32(d.Batch), queries: int32(d.Queries), keys: int32(d.Keys), heads: int32(d.Heads),
		kvHeads: int32(d.KVHeads), headDim: int32(d.HeadDim), group: int32(d.Group()),
		scale: p.Scale, softcap: p.Softcap,
	}
	if p.Causal {
		// The kernels form query positions i + offset as ints.
		if p.QueryOffset > kernelIntLimit-d.Queries {
			return attnParams{}, fmt.Errorf("query offset %d with %d queries exceeds the kernels' 32-bit limit (%d)", p.QueryOffset, d.Queries, kernelIntLimit)
		}
		a.causal, a.qoff = 1, int32(p.QueryOffset)
		a.window = int32(min(p.Window, d.Queries+p.QueryOffset))
	}
	if p.Segments != nil {
		// Queries sit at keys (CheckAttention saw to it), so the offset
		// is below keys.
		a.qoff = int32(p.QueryOffset)
	}
	return a, nil
}

// uploadSegments copies the document bounds of p.Segments (the first key
// of each key's document for every sequence, then one past its last: the
// seg argument of the kernels, 2·batch·keys int32) into a scratch block on
// the stream, to be freed with tempFree once the kernels that read it are
// enqueued. Without segments it returns the zero temp, whose null pointer
// tells the kernels there are none. The host staging is reused; the driver
// has copied it before the upload returns.
func (b *Backend) uploadSegments(p backend.AttentionParams, d backend.AttentionDims) (temp, error) {
	if p.Segments == nil {
		return temp{}, nil
	}
	n := len(p.Segments)
	if cap(b.segs) < 2*n {
		b.segs = make([]int32, 2*n)
	}
	bounds := b.segs[:2*n]
	backend.SegmentBounds(p.Segments, d.Keys, bounds[:n], bounds[n:])
	return uploadScratch(b, bounds)
}

// attnMaxGrid caps the attention kernels' grids: the hardware's x limit.
// Tests lower it so that blocks stride over several tiles, which otherwise
// only a grid beyond that limit (2³¹ − 1 tiles) would make them do.
var attnMaxGrid int64 = maxGridX

// tileGrid returns a grid of one block per tile, up to attnMaxGrid (the
// kernels stride over the rest).
func tileGrid(tiles int64) dim3 {
	return dim3{int(max(min(tiles, attnMaxGrid), 1)), 1, 1}
}

// attnRowTiles is the number of query tiles of attn_fwd and attn_dq.
func attnRowTiles(d backend.AttentionDims) int64 {
	return int64((d.Queries+attnQueryTile-1)/attnQueryTile) * int64(d.Batch) * int64(d.Heads)
}

// attnColTiles is the number of key tiles of attn_dkdv.
func attnColTiles(d backend.AttentionDims) int64 {
	return int64((d.Keys+attnKeyTile-1)/attnKeyTile) * int64(d.Batch) * int64(d.KVHeads)
}

// Attention computes fused scaled dot-product attention (see
// [backend.Ops.Attention]) in one launch of attn_fwd: out and, when lse is
// not the zero Tensor, the rows' log-sum-exp. Scores, their exponentials
// and the output accumulate in float32. With p.Segments, the documents'
// bounds go to the device first (an asynchronous copy, 8·batch·keys
// bytes).
func (b *Backend) Attention(out, lse, q, k, v backend.Tensor, p backend.AttentionParams) {
	const op = backend.OpAttention
	if b.skip(op) {
		return
	}
	d, err := backend.CheckAttention(out, lse, q, k, v, p)
	if err != nil {
		b.Record(err)
		return
	}
	if d.Batch == 0 || d.Queries == 0 {
		return
	}
	b.run(op, []backend.Tensor{out, lse, q, k, v}, func() error {
		ap, err := newAttnParams(d, p)
		if err != nil {
			return err
		}
		ptrs, err := b.dptrs(out, lse, q, k, v)
		if err != nil {
			return err
		}
		seg, err := b.uploadSegments(p, d)
		if err != nil {
			return err
		}
		defer b.tempFree(seg)
		spec := kAttnFwd[attnVariant(d.HeadDim)]
		args := b.kernel(spec)
		args.attnParams(&ap)
		for _, ptr := range ptrs {
			args.ptr(ptr)
		}
		args.ptr(seg.ptr)
		return b.launch(spec, tileGrid(attnRowTiles(d)), dim3{attnRowThreads, 1, 1})
	})
}

// AttentionGrad computes Attention's gradients (see
// [backend.Ops.AttentionGrad]): attn_delta forms δ = Σ dout·out per query
// in a scratch block, attn_dkdv writes dk and dv (every element, zeros for
// keys no query sees), attn_dq writes dq. No atomics: each output element
// is summed by one thread in a fixed order, so results repeat exactly.
// With p.Segments, attn_dkdv and attn_dq share one upload of the
// documents' bounds.
func (b *Backend) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	const op = backend.OpAttentionGrad
	if b.skip(op) {
		return
	}
	d, err := backend.CheckAttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
	if err != nil {
		b.Record(err)
		return
	}
	if d.Batch == 0 {
		return
	}
	b.run(op, []backend.Tensor{dq, dk, dv, q, k, v, out, lse, dout}, func() error {
		ap, err := newAttnParams(d, p)
		if err != nil {
			return err
		}
		ptrs, err := b.dptrs(dq, dk, dv, q, k, v, out, lse, dout)
		if err != nil {
			return err
		}
		pdq, pdk, pdv, pq, pk, pv, pout, plse, pdout := ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], ptrs[6], ptrs[7], ptrs[8]
		variant := attnVariant(d.HeadDim)
		var delta, seg temp
		if d.Queries > 0 {
			// Without queries dk and dv are zeros whatever the documents.
			if seg, err = b.uploadSegments(p, d); err != nil {
				return err
			}
			defer b.tempFree(seg)
			rows := int64(d.Batch) * int64(d.Queries) * int64(d.Heads)
			if delta, err = b.tempAlloc(rows * 4); err != nil {
				return err
			}
			defer b.tempFree(delta)
			args := b.kernel(kAttnDelta)
			args.attnParams(&ap)
			args.ptr(delta.ptr)
			args.ptr(pout)
			args.ptr(pdout)
			// A warp per row: rows/8 blocks of 256 threads, at most
			// 32 blocks per multiprocessor (the warps stride beyond).
			grid, block := elementwiseGrid(rows*32, b.sms)
			if err := b.launch(kAttnDelta, grid, block); err != nil {
				return err
			}
		}
		args := b.kernel(kAttnDKV[variant])
		args.attnParams(&ap)
		for _, ptr := range []uintptr{pdk, pdv, pq, pk, pv, pdout, plse, delta.ptr, seg.ptr} {
			args.ptr(ptr)
		}
		if err := b.launch(kAttnDKV[variant], tileGrid(attnColTiles(d)), dim3{attnColThreads, 1, 1}); err != nil {
			return err
		}
		if d.Queries == 0 {
			return nil
		}
		args = b.kernel(kAttnDQ[variant])
		args.attnParams(&ap)
		for _, ptr := range []uintptr{pdq, pq, pk, pv, pdout, plse, delta.ptr, seg.ptr} {
			args.ptr(ptr)
		}
		return b.launch(kAttnDQ[variant], tileGrid(attnRowTiles(d)), dim3{attnRowThreads, 1, 1})
	})
}
