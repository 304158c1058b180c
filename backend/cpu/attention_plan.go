package cpu

import (
	"cmp"
	"slices"

	"github.com/sora-go/sora/backend"
)

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

// attnSegments sets c up for segments, in scratch of b's kept between
// calls.
func (b *Backend) attnSegments(c *attnCall, segments []int32) {
	c.planBlocks(segments, b.scratchInts(c.segLen()))
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
