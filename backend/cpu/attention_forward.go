package cpu

import (
	"math"
	"sync/atomic"

	"github.com/sora-go/sora/backend"
)

// Attention computes fused scaled dot-product attention, block by block
// of query rows (see the comment at the top of attention.go): per block, the
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
		b.noteEngines()
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
	b.noteEngines()
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
