package cpu

import (
	"cmp"
	"math"
	"slices"
	"sync/atomic"

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

// attnBlockOverhead is the fixed cost of a block, in score entries (rows
// × keys), that planBlocks weighs against the scores a longer block
// computes in vain: the products' set-up and packing, which a block pays
// however few rows it has. Chosen by timing packed sequences of 1024
// positions (head size 64, 8 query heads, 8 or 2 key/value heads; one
// thread on a loaded two-core machine) with documents of 1 to 300
// positions: values from 64 to 512 came out alike within the noise
// (about ±10%), 0 (a block for every tiny document) up to 1.6× slower
// with documents of one position, and no cutting at all up to 1.5×
// slower with documents of 4 or 8 and about 10% slower with lengths mixed
// from 1 to 300.
const attnBlockOverhead = 256

// segLen returns the int32s segment scratch takes: the bounds, and
// first, edges and order for the blocks and for the units.
func (c *attnCall) segLen() int {
	B, Tq, Tk := c.d.Batch, c.d.Queries, c.d.Keys
	return 2*B*Tk + 2*((B+1)+B*(Tq+1)+B*Tq)
}

// planBlocks sets c up for p.Segments out of scratch (segLen int32s): the
// document bounds of every key and the blocks of every sequence. A
// sequence's blocks are cut greedily, left to right: from the first
// position not yet in a block, the block ends at the end of a document
// within bp positions, or after bp positions (or at the last query),
// whichever gives the least cost per row, counting its scores (rows ×
// the keys some row sees) and a fixed attnBlockOverhead per block; ties
// go to the block of bp positions. So a block inside a long document is
// bp positions as without segments, documents much shorter than a block
// get blocks of their own, and runs of tiny documents share one rather
// than paying for products of their own.
func (c *attnCall) planBlocks(segments []int32, scratch []int32) {
	B, Tq, Tk, G := c.d.Batch, c.d.Queries, c.d.Keys, c.d.Group()
	off := c.mask.QueryOffset
	take := func(n int) []int32 {
		s := scratch[:n:n]
		scratch = scratch[n:]
		return s
	}
	c.segs = true
	c.starts, c.ends = take(B*Tk), take(B*Tk)
	c.first, c.edges, c.order = take(B+1), take(B*(Tq+1)), take(B*Tq)
	c.ufirst, c.uedges, c.uorder = take(B+1), take(B*(Tq+1)), take(B*Tq)
	backend.SegmentBounds(segments, Tk, c.starts, c.ends)
	// cost returns the scores and overhead of a block [i0, i1).
	cost := func(b, i0, i1 int) int {
		lo, _ := c.rowKeys(b, i0)
		_, hi := c.rowKeys(b, i1-1)
		return (i1-i0)*G*(hi-lo) + attnBlockOverhead
	}
	ne := 0
	for b := range B {
		c.first[b] = int32(ne - b)
		c.edges[ne] = 0
		ne++
		for i0 := 0; i0 < Tq; {
			end := min(i0+c.bp, Tq)
			best, bestCost := end, cost(b, i0, end)
			// Document ends within the block, in query positions.
			for e := int(c.ends[b*Tk+i0+off]) - off; e < end; e = int(c.ends[b*Tk+e+off]) - off {
				// e's cost per row below best's: cost/(e−i0) <
				// bestCost/(best−i0).
				if x := cost(b, i0, e); x*(best-i0) < bestCost*(e-i0) {
					best, bestCost = e, x
				}
			}
			c.edges[ne] = int32(best)
			ne++
			i0 = best
		}
	}
	c.first[B] = int32(ne - B)
	c.order = c.order[:c.first[B]]
	for x := range c.order {
		c.order[x] = int32(x)
	}
	// Units: a new one wherever a block's first key comes at or after
	// the previous block's last (keys grow with the blocks, so no later
	// block reaches back).
	nu := 0
	for b := range B {
		c.ufirst[b] = int32(nu - b)
		c.uedges[nu] = 0
		nu++
		_, _, _, prev := c.block(b, 0)
		for t := 1; t < c.blocks(b); t++ {
			_, _, lo, hi := c.block(b, t)
			if lo >= prev {
				c.uedges[nu] = int32(t)
				nu++
			}
			prev = hi
		}
		c.uedges[nu] = int32(c.blocks(b))
		nu++
	}
	c.ufirst[B] = int32(nu - B)
	c.uorder = c.uorder[:c.ufirst[B]]
	for x := range c.uorder {
		c.uorder[x] = int32(x)
	}
}

// gradItem is a share of the backward that alone writes some rows of dk
// and dv: key/value head g of blocks [t0, t1) of batch element b, whose
// rows [own0, own1) of dk and dv no other item's blocks reach (it clears
// those its blocks do not reach either).
type gradItem struct{ b, g, t0, t1, own0, own1 int }

// gradItems returns the number of backward items: without segments one
// per batch element and key/value head, with them one per unit and
// key/value head.
func (c *attnCall) gradItems() int {
	if !c.segs {
		return c.d.Batch * c.d.KVHeads
	}
	return int(c.ufirst[c.d.Batch]) * c.d.KVHeads
}

// gradItem returns item it: without segments batch element it / KVHeads
// whole; with them unit uorder[it / KVHeads], so that one unit's heads
// come one after another (and find its rows in the cache), owning the
// keys from its first block's first (0 for a sequence's first unit) to
// the next unit's (keys for the last).
func (c *attnCall) gradItem(it int) gradItem {
	KV := c.d.KVHeads
	if !c.segs {
		return gradItem{it / KV, it % KV, 0, c.nb, 0, c.d.Keys}
	}
	b, u := globalIndex(c.ufirst, c.d.Batch, int(c.uorder[it/KV]))
	e := int(c.ufirst[b]) + b + u
	x := gradItem{b: b, g: it % KV, t0: int(c.uedges[e]), t1: int(c.uedges[e+1]), own1: c.d.Keys}
	if x.t0 > 0 {
		_, _, x.own0, _ = c.block(b, x.t0)
	}
	if x.t1 < c.blocks(b) {
		_, _, x.own1, _ = c.block(b, x.t1)
	}
	return x
}

// unitCost returns the cost of unit x of all (with segments), for
// ordering.
func (c *attnCall) unitCost(x int) int {
	b, u := globalIndex(c.ufirst, c.d.Batch, x)
	e := int(c.ufirst[b]) + b + u
	total := 0
	for t := int(c.uedges[e]); t < int(c.uedges[e+1]); t++ {
		total += c.blockCost(b, t)
	}
	return total
}

// sortUnits orders c.uorder costliest first (with segments), as
// sortBlocks the blocks.
func (c *attnCall) sortUnits() {
	slices.SortFunc(c.uorder, func(x, y int32) int {
		if r := cmp.Compare(c.unitCost(int(y)), c.unitCost(int(x))); r != 0 {
			return r
		}
		return cmp.Compare(x, y)
	})
}

// globalBlock returns the batch element and block of block x of all
// (with segments).
func (c *attnCall) globalBlock(x int) (b, t int) { return globalIndex(c.first, c.d.Batch, x) }

// globalIndex returns the batch element b and its index x − first[b] for
// x counted over all batch elements, with first as attnCall's first or
// ufirst.
func globalIndex(first []int32, batch, x int) (b, t int) {
	lo, hi := 0, batch // first[lo] ≤ x < first[hi]
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; int(first[mid]) <= x {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, x - int(first[lo])
}

// segTasks returns, with segments, the tasks of a call (a block and a
// key/value head each) and their mean cost in element-operations for
// work operations per multiply-add, for Backend.chunks.
func (c *attnCall) segTasks(work int) (tasks, cost int) {
	n, total := int(c.first[c.d.Batch]), 0
	for x := range n {
		total += c.blockCost(c.globalBlock(x))
	}
	return n * c.d.KVHeads, (total + n - 1) / n * c.d.HeadDim * work
}

// sortBlocks orders c.order costliest first (with segments), so that the
// workers, taking blocks in that order, finish close together.
func (c *attnCall) sortBlocks() {
	slices.SortFunc(c.order, func(x, y int32) int {
		if r := cmp.Compare(c.blockCost(c.globalBlock(int(y))), c.blockCost(c.globalBlock(int(x)))); r != 0 {
			return r
		}
		return cmp.Compare(x, y)
	})
}

// attnSegments sets c up for segments, in scratch of b's kept between
// calls.
func (b *Backend) attnSegments(c *attnCall, segments []int32) {
	n := c.segLen()
	if cap(b.ints) < n {
		b.ints = make([]int32, n)
	}
	c.planBlocks(segments, b.ints[:n])
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

// Attention computes fused scaled dot-product attention, block by block
// of query rows (see the comment at the top of this file): per block, the
// scores over the keys the block can see with one matrix product, an exact
// two-pass softmax per row in float32 with the exponentials summed in
// float64 (as Softmax does: the row maximum of the scaled scores shifts
// the exponentials, and only a row's visible keys are exponentiated), the
// unnormalised output with a second product, then each output row scaled
// by its reciprocal sum. Blocks are spread over the threads, largest
// first, each worker taking the next one when it is done. Scratch and
// matrix-multiply engines are kept, so that once warm a single-threaded
// call allocates nothing of its own.
func (b *Backend) Attention(out, lse, q, k, v backend.Tensor, p backend.AttentionParams) {
	if b.skip(backend.OpAttention) {
		return
	}
	d, err := backend.CheckAttention(out, lse, q, k, v, p)
	if err != nil {
		b.Record(err)
		return
	}
	vs, ok := b.views(backend.OpAttention, out, lse, q, k, v)
	if !ok {
		return
	}
	if d.Batch == 0 || d.Queries == 0 || d.Heads == 0 {
		return
	}
	c := newAttnCall(d, p, b.kern)
	c.out, c.lse, c.q, c.k, c.v = vs[0], vs[1], vs[2], vs[3], vs[4]
	items := d.Batch * d.KVHeads
	tasks, cost := items*c.nb, c.rows()*d.Keys*d.HeadDim*4
	if p.Segments != nil {
		b.attnSegments(&c, p.Segments)
		tasks, cost = c.segTasks(4)
	}
	workers := b.chunks(tasks, cost)
	need := c.scratchLen(false)
	buf := b.scratch32(1, workers*need)[0]
	b.batchEngines(workers)
	if workers > 1 && c.segs {
		c.sortBlocks()
	}
	if workers == 1 {
		w := c.carve(buf, b.batch[0], false)
		for t := range tasks {
			c.forwardTask(&w, t, items)
		}
		return
	}
	// Only this branch hands the call to goroutines, so only here does
	// it escape (and cost allocations).
	var next atomic.Int64
	pc := c
	b.parallelChunks(workers, workers, func(ch, _, _ int) {
		w := pc.carve(buf[ch*need:(ch+1)*need], b.batch[ch], false)
		for t := int(next.Add(1) - 1); t < tasks; t = int(next.Add(1) - 1) {
			pc.forwardTask(&w, t, items)
		}
	})
}

// forwardTask computes task t of tasks items·nb, taken largest first:
// the last blocks of every sequence (which, under a causal mask, see the
// most keys) come first. With segments task t is key/value head t % KVHeads
// of block c.order[t / KVHeads].
func (c *attnCall) forwardTask(w *attnScratch, t, items int) {
	if c.segs {
		b, blk := c.globalBlock(int(c.order[t/c.d.KVHeads]))
		c.forwardBlock(w, b, t%c.d.KVHeads, blk)
		return
	}
	it := t % items
	c.forwardBlock(w, it/c.d.KVHeads, it%c.d.KVHeads, c.nb-1-t/items)
}

// forwardBlock computes out (and lse) for block t of batch element b and
// key/value head g.
func (c *attnCall) forwardBlock(w *attnScratch, b, g, t int) {
	d, kern := &c.d, c.kern
	G, D, ldk := d.Group(), d.HeadDim, d.KVHeads*d.HeadDim
	i0, i1, lo, hi := c.block(b, t)
	m, n := (i1-i0)*G, hi-lo
	qa, lda := c.blockRows(c.q, w.qp, b, g, i0, i1)
	s := w.s[:m*n]
	w.e.Sgemm(false, true, m, n, D, c.alpha, qa, lda, c.k[c.kRow(b, lo, g):], ldk, 0, s, n)
	if c.softcap {
		kern.Tanh(s, s)
	}
	for r := range m {
		i, h := i0+r/G, g*G+r%G
		a, e := c.rowKeys(b, i)
		a, e = a-lo, e-lo
		row := s[r*n : (r+1)*n]
		mx := kern.MaxScaled(row[a:e], c.scale)
		sum := kern.ExpShift(row[a:e], row[a:e], c.scale, mx)
		clear(row[:a])
		clear(row[e:])
		w.inv[r] = float32(1 / sum)
		if c.lse != nil {
			c.lse[c.lseAt(b, i, h)] = float32(float64(mx) + math.Log(sum))
		}
	}
	// out = (E·v) / Σ E row by row, with E the unnormalised exponentials.
	if G == 1 {
		o := c.out[c.qRow(b, i0, g):]
		ldo := d.Heads * D
		w.e.Sgemm(false, false, m, D, n, 1, s, n, c.v[c.kRow(b, lo, g):], ldk, 0, o, ldo)
		for r := range m {
			row := o[r*ldo : r*ldo+D]
			kern.ScaleTo(row, row, float64(w.inv[r]))
		}
		return
	}
	o := w.o[:m*D]
	w.e.Sgemm(false, false, m, D, n, 1, s, n, c.v[c.kRow(b, lo, g):], ldk, 0, o, D)
	for r := range m {
		off := c.qRow(b, i0+r/G, g*G+r%G)
		kern.ScaleTo(c.out[off:off+D], o[r*D:(r+1)*D], float64(w.inv[r]))
	}
}

// AttentionGrad computes Attention's backward, FlashAttention's way: per
// block of query rows it recomputes the scores and, from lse, the
// probabilities P (exactly 0 where masked), then with δ_i = dout_i·out_i
// (which equals Σ_j P_ij·dP_ij) the scores' gradient dS = Scale·P⊙(dP − δ)
// (times 1 − tanh² under a cap), and from them dq = dS·k, dk += dSᵀ·q and
// dv += Pᵀ·dout. A worker owns the dk and dv rows of one batch element
// and key/value head at a time (with segments, of one unit of blocks and
// key/value head: see attnCall), so that no two write the same rows; when
// there are fewer of those than threads (batch 1 with one key/value head,
// say), each one's blocks are split between workers that sum into private
// dk and dv copies, added into dk and dv in a fixed order at the end.
// Once warm, a single-threaded call allocates nothing of its own.
func (b *Backend) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	if b.skip(backend.OpAttentionGrad) {
		return
	}
	d, err := backend.CheckAttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
	if err != nil {
		b.Record(err)
		return
	}
	vs, ok := b.views(backend.OpAttentionGrad, dq, dk, dv, q, k, v, out, lse, dout)
	if !ok {
		return
	}
	if d.Batch == 0 || d.Queries == 0 || d.Heads == 0 {
		// No query sees any key: the keys' gradients are zero.
		clear(vs[1])
		clear(vs[2])
		return
	}
	c := newAttnCall(d, p, b.kern)
	c.dq, c.dk, c.dv, c.q, c.k, c.v, c.out, c.lse, c.dout = vs[0], vs[1], vs[2], vs[3], vs[4], vs[5], vs[6], vs[7], vs[8]
	if p.Segments != nil {
		b.attnSegments(&c, p.Segments)
	}
	items := c.gradItems()
	workers, splits := b.gradPlan(&c)
	if workers > 1 && c.segs {
		c.sortUnits()
	}
	tasks := items * splits
	need, part := c.scratchLen(true), 2*d.Keys*d.HeadDim
	// Split s > 0 of an item sums into its own dk and dv copies; split 0
	// sums into dk and dv themselves.
	buf := b.scratch32(1, workers*need+items*(splits-1)*part)[0]
	parts := buf[workers*need:]
	b.batchEngines(workers)
	if workers == 1 {
		w := c.carve(buf, b.batch[0], true)
		for t := range tasks {
			c.backwardTask(&w, t, splits, parts)
		}
		return
	}
	var next atomic.Int64
	pc := c
	b.parallelChunks(workers, workers, func(ch, _, _ int) {
		w := pc.carve(buf[ch*need:(ch+1)*need], b.batch[ch], true)
		for t := int(next.Add(1) - 1); t < tasks; t = int(next.Add(1) - 1) {
			pc.backwardTask(&w, t, splits, parts)
		}
	})
	if splits > 1 {
		pc.reduceSplits(b, items, splits, parts)
	}
}

// gradPlan returns how many workers AttentionGrad uses for c and into
// how many splits it cuts each item (see gradItem).
func (b *Backend) gradPlan(c *attnCall) (workers, splits int) {
	items := c.gradItems()
	// A block's backward is five products to the forward's two, plus the
	// exponentials again.
	if !c.segs {
		workers = b.chunks(items*c.nb, c.rows()*c.d.Keys*c.d.HeadDim*10)
		return workers, attnSplits(items, workers, c.nb)
	}
	workers = b.chunks(c.segTasks(10))
	most := 0
	for it := 0; it < items; it += c.d.KVHeads {
		x := c.gradItem(it)
		most = max(most, x.t1-x.t0)
	}
	return workers, attnSplits(items, workers, most)
}

// attnSplits returns how many workers share the blocks of each of items
// (batch element, key/value head) pairs in the backward: 1 when the items
// keep workers evenly busy (a multiple of them, or so many that the last
// round hardly matters), else enough that items·splits is a multiple of
// workers, but never more than the blocks there are.
func attnSplits(items, workers, blocks int) int {
	if workers <= 1 || items%workers == 0 || items >= 4*workers {
		return 1
	}
	g := items
	for w := workers; w != 0; g, w = w, g%w {
	}
	return max(min(workers/g, blocks), 1)
}

// backwardTask runs split s = t % splits of item t / splits: its share of
// the item's blocks, balanced by cost, summed into dk and dv (split 0) or
// into the split's copies in parts.
func (c *attnCall) backwardTask(w *attnScratch, t, splits int, parts []float32) {
	d := &c.d
	it, s := t/splits, t%splits
	x := c.gradItem(it)
	b, g := x.b, x.g
	t0, t1 := c.splitBlocks(x, s, splits)
	D, ldk := d.HeadDim, d.KVHeads*d.HeadDim
	var dk, dv []float32
	if s == 0 {
		dk, dv = c.dk[c.kRow(b, 0, g):], c.dv[c.kRow(b, 0, g):]
	} else {
		n := d.Keys * D
		o := (it*(splits-1) + s - 1) * 2 * n
		dk, dv, ldk = parts[o:o+n], parts[o+n:o+2*n], D
	}
	// Last blocks first, as in the forward. A split's blocks and their
	// order are fixed whichever worker takes it, so the sums come out
	// the same however the work was scheduled. The key rows written so
	// far, [cov.lo, cov.hi), are summed into; the others are written
	// (beta 0), so that dk and dv need no clearing first.
	cov := keyRange{-1, -1}
	for blk := t1 - 1; blk >= t0; blk-- {
		cov = c.backwardBlock(w, b, g, blk, dk, dv, ldk, cov)
	}
	// Keys no query of the split sees get zero gradients.
	if cov.lo < 0 {
		cov = keyRange{x.own0, x.own0}
	}
	for j := x.own0; j < x.own1; j++ {
		if j < cov.lo || j >= cov.hi {
			clear(dk[j*ldk : j*ldk+D])
			clear(dv[j*ldk : j*ldk+D])
		}
	}
}

// keyRange is a range [lo, hi) of keys; lo < 0 for none.
type keyRange struct{ lo, hi int }

// addKeyGrads adds op(A)·B to the key rows [lo, hi) of dst (row stride
// ldk) for A the block's m × (hi−lo) matrix a (P or dS, row stride
// hi−lo, op transposing it) and B the block's m × headDim rows bm (row
// stride ldb), writing instead of adding in rows outside cov, those not
// written before; a gap between [lo, hi) and cov is cleared. It returns
// the rows written so far.
func (c *attnCall) addKeyGrads(e *gemm.Engine, dst []float32, ldk int, a []float32, bm []float32, ldb, m, lo, hi int, cov keyRange) keyRange {
	D, n := c.d.HeadDim, hi-lo
	put := func(j0, j1 int, beta float32) {
		if j0 < j1 {
			e.Sgemm(true, false, j1-j0, D, m, 1, a[j0-lo:], n, bm, ldb, beta, dst[j0*ldk:], ldk)
		}
	}
	if cov.lo < 0 {
		put(lo, hi, 0)
		return keyRange{lo, hi}
	}
	for j := hi; j < cov.lo; j++ {
		clear(dst[j*ldk : j*ldk+D])
	}
	for j := cov.hi; j < lo; j++ {
		clear(dst[j*ldk : j*ldk+D])
	}
	put(lo, min(hi, cov.lo), 0)
	put(max(lo, cov.lo), min(hi, cov.hi), 1)
	put(max(lo, cov.hi), hi, 0)
	return keyRange{min(lo, cov.lo), max(hi, cov.hi)}
}

// splitBlocks returns the blocks [t0, t1) of item x for split s of
// splits, cut where the running cost passes s/splits of the total.
func (c *attnCall) splitBlocks(x gradItem, s, splits int) (t0, t1 int) {
	if splits == 1 {
		return x.t0, x.t1
	}
	total := 0
	for t := x.t0; t < x.t1; t++ {
		total += c.blockCost(x.b, t)
	}
	cut := func(k int) int {
		if k == splits {
			return x.t1
		}
		goal, run := total*k/splits, 0
		for t := x.t0; t < x.t1; t++ {
			if run >= goal {
				return t
			}
			run += c.blockCost(x.b, t)
		}
		return x.t1
	}
	return cut(s), cut(s + 1)
}

// backwardBlock adds block t's contributions of batch element b and
// key/value head g to dk and dv (rows of stride ldk from the item's key
// 0; the rows outside cov are written, not added to) and writes its rows
// of dq. It returns the key rows of dk and dv written so far.
func (c *attnCall) backwardBlock(w *attnScratch, b, g, t int, dk, dv []float32, ldk int, cov keyRange) keyRange {
	d, kern := &c.d, c.kern
	G, D, ldkv := d.Group(), d.HeadDim, d.KVHeads*d.HeadDim
	i0, i1, lo, hi := c.block(b, t)
	m, n := (i1-i0)*G, hi-lo
	qa, lda := c.blockRows(c.q, w.qp, b, g, i0, i1)
	da, ldd := c.blockRows(c.dout, w.dop, b, g, i0, i1)
	kb, vb := c.k[c.kRow(b, lo, g):], c.v[c.kRow(b, lo, g):]
	s, pm, dp := w.s[:m*n], w.p[:m*n], w.dp[:m*n]
	w.e.Sgemm(false, true, m, n, D, c.alpha, qa, lda, kb, ldkv, 0, s, n)
	src := s
	if c.softcap {
		kern.Tanh(pm, s) // s keeps tanh's argument for its derivative
		src = pm
	}
	w.e.Sgemm(false, true, m, n, D, 1, da, ldd, vb, ldkv, 0, dp, n)
	for r := range m {
		i, h := i0+r/G, g*G+r%G
		a, e := c.rowKeys(b, i)
		a, e = a-lo, e-lo
		prow, dprow := pm[r*n:(r+1)*n], dp[r*n:(r+1)*n]
		kern.ExpShift(prow[a:e], src[r*n+a:r*n+e], c.scale, c.lse[c.lseAt(b, i, h)])
		clear(prow[:a])
		clear(prow[e:])
		o := c.qRow(b, i, h)
		delta := kern.Dot(c.dout[o:o+D], c.out[o:o+D])
		kern.SoftmaxGrad(dprow[a:e], prow[a:e], dprow[a:e], c.gradScale, delta)
		if c.softcap {
			kern.TanhGrad(dprow[a:e], s[r*n+a:r*n+e], dprow[a:e])
		}
		clear(dprow[:a])
		clear(dprow[e:])
	}
	// dq = dS·k, in place for one head per group, else placed row by row.
	if G == 1 {
		w.e.Sgemm(false, false, m, D, n, 1, dp, n, kb, ldkv, 0, c.dq[c.qRow(b, i0, g):], d.Heads*D)
	} else {
		o := w.o[:m*D]
		w.e.Sgemm(false, false, m, D, n, 1, dp, n, kb, ldkv, 0, o, D)
		for i := i0; i < i1; i++ {
			off := c.qRow(b, i, g*G)
			copy(c.dq[off:off+G*D], o[(i-i0)*G*D:(i-i0+1)*G*D])
		}
	}
	c.addKeyGrads(w.e, dk, ldk, dp, qa, lda, m, lo, hi, cov)
	return c.addKeyGrads(w.e, dv, ldk, pm, da, ldd, m, lo, hi, cov)
}

// reduceSplits adds the dk and dv copies of splits 1 to splits−1 of
// every item into dk and dv (the rows the item owns), in split order,
// spread over the key rows.
func (c *attnCall) reduceSplits(b *Backend, items, splits int, parts []float32) {
	d := &c.d
	D, n := d.HeadDim, d.Keys*d.HeadDim
	b.parallelFor(items*d.Keys, 2*D*(splits-1), func(lo, hi int) {
		for x := lo; x < hi; x++ {
			it, j := x/d.Keys, x%d.Keys
			item := c.gradItem(it)
			if j < item.own0 || j >= item.own1 {
				continue
			}
			o := c.kRow(item.b, j, item.g)
			dk, dv := c.dk[o:o+D], c.dv[o:o+D]
			for s := 1; s < splits; s++ {
				po := (it*(splits-1)+s-1)*2*n + j*D
				c.kern.Add(dk, dk, parts[po:po+D])
				c.kern.Add(dv, dv, parts[po+n:po+n+D])
			}
		}
	})
}
