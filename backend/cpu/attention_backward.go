package cpu

import (
	"sync/atomic"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/gemm"
)

// AttentionGrad computes Attention's backward, FlashAttention's way: per
// block of query rows it recomputes the scores and, from lse, the
// probabilities P (exactly 0 where masked), then with δ_i = dout_i·out_i
// (which equals Σ_j P_ij·dP_ij) the scores' gradient dS = Scale·P⊙(dP − δ)
// (times 1 − tanh² under a cap), and from them dq = dS·k, dk += dSᵀ·q and
// dv += Pᵀ·dout. A worker owns the dk and dv rows of one batch element
// and key/value head at a time (with segments, of one unit of blocks and
// key/value head: see attnCall), so that no two write the same rows; when
// there are too few of those to keep several threads evenly busy (fewer
// than attnTasks, as at batch 1 with a few key/value heads), each one's
// blocks are split into parts that sum into private dk and dv copies,
// added into dk and dv in a fixed order at the end. The splits follow
// from the shape, never from the threads (see attnSplits), so dk and dv
// come out the same, bit for bit, on any number of them. dk and dv rows
// that no query sees are written as zeros. Once warm, a single-threaded
// call allocates nothing of its own.
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
	// Split s > 0 sums into copies of dk and dv of its own, one per
	// batch element and split, laid out as the batch element's rows of
	// dk and dv (each item writes its own key/value head's columns and
	// its own key rows, every one of them); split 0 sums into dk and dv
	// themselves. The copies are added in at the end, in split order.
	need := c.scratchLen(true)
	buf := b.scratch32(1, workers*need+c.copiesLen(splits))[0]
	parts := buf[workers*need:]
	b.batchEngines(workers)
	if workers == 1 {
		w := c.carve(buf, b.batch[0], true)
		for t := range tasks {
			c.backwardTask(&w, t, splits, parts)
		}
		if splits > 1 {
			c.reduceSplits(splits, parts, 0, len(c.dk))
		}
		b.noteEngines()
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
		b.parallelFor(len(c.dk), 2*(splits-1), func(lo, hi int) { pc.reduceSplits(splits, parts, lo, hi) })
	}
	b.noteEngines()
}

// gradPlan returns how many workers AttentionGrad uses for c and into
// how many splits it cuts each item (see gradItem). The splits follow
// from the shape alone (attnSplits), never from the workers, so that dk
// and dv come out the same on any number of threads.
func (b *Backend) gradPlan(c *attnCall) (workers, splits int) {
	items := c.gradItems()
	// A block's backward is five products to the forward's two, plus the
	// exponentials again.
	if !c.segs {
		n, cost := items*c.nb, c.rows()*c.d.Keys*c.d.HeadDim*10
		return b.chunks(n, cost), attnSplits(items, b.tasksFor(n, cost), c.nb)
	}
	n, cost := c.segTasks(10)
	most := 0
	for it := 0; it < items; it += c.d.KVHeads {
		x := c.gradItem(it)
		most = max(most, x.t1-x.t0)
	}
	return b.chunks(n, cost), attnSplits(items, b.tasksFor(n, cost), most)
}

// attnTasks is how many tasks AttentionGrad's backward aims at, when its
// work is big enough (see tasksFor): items (batch element and key/value
// head, or unit) are split until there are at least that many. Of 16
// equal tasks, 1, 2, 4, 8 and 16 threads get equal shares, 3, 5, 6, 9
// and 10 keep busy four fifths of the time or more, 7 and 11 about three
// quarters, 12 to 15 from two thirds down to a half; where there are
// fewer items than that (batch 1, a few key/value heads), no more than
// items·⌈16/items⌉ threads (16 to 30) take part, however many there are.
// More splits cost more copies of dk and dv to write and add.
const attnTasks = 16

// tasksFor returns the tasks to cut n blocks of the given cost into for
// the backward: attnTasks, or fewer where the whole work is less than a
// grain for each (one below two grains, where it runs on one thread).
// It depends on the shape (and the grain), never on the threads.
func (b *Backend) tasksFor(n, cost int) int {
	work := n * max(cost, 1)
	if work < 2*b.grain {
		return 1
	}
	return min(attnTasks, work/b.grain)
}

// attnSplits returns how many splits the blocks of each of items share in
// the backward, for tasks tasks in all: 1 when the items are that many
// already, else enough that items·splits reaches tasks, but never more
// than the blocks there are.
func attnSplits(items, tasks, blocks int) int {
	if items >= tasks {
		return 1
	}
	return max(min((tasks+items-1)/items, blocks), 1)
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
	o := c.kRow(b, 0, g)
	dk, dv := c.dk[o:], c.dv[o:]
	if s > 0 {
		o += c.copyAt(b, s, splits)
		dk, dv = parts[o:], parts[o+len(c.dk)/d.Batch:]
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

// copiesLen returns the floats of the dk and dv copies of splits 1 to
// splits−1 (see AttentionGrad): for each batch element and split, a copy
// of the element's rows of dk, then one of dv's.
func (c *attnCall) copiesLen(splits int) int { return 2 * (splits - 1) * len(c.dk) }

// copyAt returns where in the copies the dk copy of batch element b and
// split s > 0 would start if it held the rows of all batch elements
// before b too: an offset to add to dk's, kRow(b, …).
func (c *attnCall) copyAt(b, s, splits int) int {
	n := len(c.dk) / c.d.Batch // one batch element's floats
	return (b*(splits-1)+s-1)*2*n - b*n
}

// reduceSplits adds the dk and dv copies of splits 1 to splits−1 into dk
// and dv, in split order, over the elements [lo, hi) of dk and dv.
func (c *attnCall) reduceSplits(splits int, parts []float32, lo, hi int) {
	n := len(c.dk) / c.d.Batch
	for lo < hi {
		b := lo / n
		e := min(hi, (b+1)*n) // the end of batch element b's part
		for s := 1; s < splits; s++ {
			o := c.copyAt(b, s, splits)
			c.kern.Add(c.dk[lo:e], c.dk[lo:e], parts[o+lo:o+e])
			c.kern.Add(c.dv[lo:e], c.dv[lo:e], parts[o+n+lo:o+n+e])
		}
		lo = e
	}
}
