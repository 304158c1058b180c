package cpu

import (
	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/gemm"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// Fused attention works on blocks of score rows. A block is a run of
// consecutive query positions of one batch element together with every
// query head of one key/value group: the group's heads share the keys,
// the values and, at the same position, the mask, so stacking them makes
// each matrix product taller for the same keys (fewer passes over k and
// v) while the run of positions, and with it the keys the mask hides
// inside the block's key range, stays short. A block's products see only
// the keys its rows can see (for a causal mask: none after its last
// position; with a window: none before its first position's window), so
// a causal attention does about half the work of the unfused one, which
// computes every score and masks afterwards. The scores of a block live in
// a per-worker scratch of rows × keys floats, never the whole
// [queries, keys] matrix.
//
// With segments (sequence packing) a row sees, on top of the mask, only
// its own document's keys: an interval again, the mask's cut to the
// document's bounds. Every row's bounds grow with its position, so a
// block's keys still run from its first row's first key to its last row's
// last one, and a block inside one document multiplies only that
// document's keys. Blocks are then cut per sequence at document ends
// where that pays (see planBlocks), so that a block does not multiply,
// for every row, the keys of the two documents it spans. The backward
// hands out the blocks of a document (more exactly, of a unit: blocks
// whose keys overlap) with each key/value head in turn, as it would the
// documents of an unpacked batch.
//
// This file holds a call's geometry and scratch; attention_plan.go plans
// the blocks of packed sequences, attention_forward.go and
// attention_backward.go run the ops.

// attnBlockRows is the number of score rows (positions × heads of a
// group) a block aims at: tall enough for the matrix products to run near
// their peak, short enough that a causal block computes few masked
// scores and that its scratch (three rows × keys buffers in the backward)
// stays in the L2 cache for the usual few thousand keys.
const attnBlockRows = 64

// attnCall is one validated Attention or AttentionGrad on resolved
// operands.
type attnCall struct {
	d    backend.AttentionDims
	mask backend.SoftmaxParams
	kern *vec.Kernels
	// alpha scales q·k in the scores' product; scale multiplies the
	// product's result inside the softmax. Without a cap they are 1 and
	// Scale (the exponentials then take Scale·q·k unrounded); with one,
	// Scale/Softcap and Softcap, with tanh applied in between.
	alpha, scale float32
	softcap      bool
	gradScale    float64 // Scale, which the scores' gradient carries

	q, k, v, out, lse, dout, dq, dk, dv []float32

	bp, nb int // query positions per block, blocks per sequence (without segments)

	// With segments (segs), the first and one past the last key of each
	// key's document (backend.SegmentBounds; batch·keys of each), and the
	// blocks, which differ between sequences: batch element b has the
	// blocks first[b] to first[b+1]−1 of all, and its block t covers the
	// query positions [edges[e], edges[e+1]) for e = first[b] + b + t (each
	// sequence's edges run from 0 to queries). order lists all blocks in
	// the order the workers take them: costliest first when there are
	// several workers (see sortBlocks). The blocks of a sequence are also
	// grouped into units, maximal runs of consecutive blocks whose keys
	// overlap, each laid out like the blocks (ufirst, uedges, the block
	// edges of each sequence's units, from 0 to its blocks, and uorder);
	// no key of a unit is seen by a block of another, so that in the
	// backward each (unit, key/value head) writes its own rows of dk and
	// dv.
	segs                   bool
	starts, ends           []int32
	first, edges, order    []int32
	ufirst, uedges, uorder []int32
}

// newAttnCall sets up the geometry and scaling of a validated call.
func newAttnCall(d backend.AttentionDims, p backend.AttentionParams, kern *vec.Kernels) attnCall {
	c := attnCall{d: d, mask: p.Mask(), kern: kern, alpha: 1, scale: p.Scale, gradScale: float64(p.Scale)}
	if p.Softcap > 0 {
		c.alpha, c.scale, c.softcap = p.Scale/p.Softcap, p.Softcap, true
	}
	c.bp = max(attnBlockRows/max(d.Group(), 1), 1)
	c.nb = (d.Queries + c.bp - 1) / c.bp
	return c
}

// rows returns the number of score rows of a full block.
func (c *attnCall) rows() int { return min(c.bp, c.d.Queries) * c.d.Group() }

// rowKeys returns the keys [lo, hi) that query position i of batch
// element b sees: the mask's, cut to its document's with segments.
func (c *attnCall) rowKeys(b, i int) (lo, hi int) {
	lo, hi = visible(i, c.d.Queries, c.d.Keys, c.mask)
	if c.segs {
		at := b*c.d.Keys + i + c.mask.QueryOffset
		lo, hi = max(lo, int(c.starts[at])), min(hi, int(c.ends[at]))
	}
	return lo, hi
}

// blocks returns the number of blocks of batch element b.
func (c *attnCall) blocks(b int) int {
	if !c.segs {
		return c.nb
	}
	return int(c.first[b+1] - c.first[b])
}

// block returns the positions [i0, i1) of block t of batch element b and
// the keys [lo, hi) that some row of it sees.
func (c *attnCall) block(b, t int) (i0, i1, lo, hi int) {
	if c.segs {
		e := int(c.first[b]) + b + t
		i0, i1 = int(c.edges[e]), int(c.edges[e+1])
	} else {
		i0, i1 = t*c.bp, min((t+1)*c.bp, c.d.Queries)
	}
	lo, _ = c.rowKeys(b, i0)
	_, hi = c.rowKeys(b, i1-1)
	return i0, i1, lo, hi
}

// blockCost estimates the work of block t of batch element b in
// multiply-adds per head dimension (rows × keys), for balancing.
func (c *attnCall) blockCost(b, t int) int {
	i0, i1, lo, hi := c.block(b, t)
	return (i1 - i0) * c.d.Group() * (hi - lo)
}

// qRow returns the offset in q, out, dq and dout of query position i,
// head h of batch element b.
func (c *attnCall) qRow(b, i, h int) int { return ((b*c.d.Queries+i)*c.d.Heads + h) * c.d.HeadDim }

// kRow returns the offset in k, v, dk and dv of key j, head g of batch
// element b.
func (c *attnCall) kRow(b, j, g int) int { return ((b*c.d.Keys+j)*c.d.KVHeads + g) * c.d.HeadDim }

// lseAt returns the offset in lse of query position i, head h of batch
// element b.
func (c *attnCall) lseAt(b, i, h int) int { return (b*c.d.Heads+h)*c.d.Queries + i }

// blockRows returns the rows of src (q or dout) for positions [i0, i1),
// heads of group g, as a matrix with its row stride: in place for one head
// per group, where they are evenly strided, else packed into pack
// (position-major, the group's heads of one position adjacent, as they
// are in src).
func (c *attnCall) blockRows(src, pack []float32, b, g, i0, i1 int) ([]float32, int) {
	G, D := c.d.Group(), c.d.HeadDim
	if G == 1 {
		return src[c.qRow(b, i0, g):], c.d.Heads * D
	}
	for i := i0; i < i1; i++ {
		o := c.qRow(b, i, g*G)
		copy(pack[(i-i0)*G*D:(i-i0+1)*G*D], src[o:o+G*D])
	}
	return pack, D
}

// attnScratch is one worker's share of the scratch: score rows and packed
// head rows.
type attnScratch struct {
	s, p, dp []float32 // rows × keys: scores, probabilities, their gradient
	qp, dop  []float32 // rows × headDim: packed q and dout rows
	o        []float32 // rows × headDim: a product's output before it is placed
	inv      []float32 // rows: reciprocal row sums
	e        *gemm.Engine
}

// scratchLen returns the floats one worker's attnScratch needs.
func (c *attnCall) scratchLen(backwards bool) int {
	m, n, D := c.rows(), c.d.Keys, c.d.HeadDim
	if backwards {
		return 3*m*n + 3*m*D
	}
	return m*n + 2*m*D + m
}

// carve cuts a worker's attnScratch out of buf (scratchLen long).
func (c *attnCall) carve(buf []float32, e *gemm.Engine, backwards bool) attnScratch {
	m, n, D := c.rows(), c.d.Keys, c.d.HeadDim
	take := func(k int) []float32 {
		s := buf[:k:k]
		buf = buf[k:]
		return s
	}
	w := attnScratch{e: e}
	w.s, w.qp, w.o = take(m*n), take(m*D), take(m*D)
	if backwards {
		w.p, w.dp, w.dop = take(m*n), take(m*n), take(m*D)
	} else {
		w.inv = take(m)
	}
	return w
}
