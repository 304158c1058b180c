package cpu

import (
	"sync"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// ReduceRows reduces each row of src to one element of dst. Sums
// accumulate in float64; Max propagates NaN.
func (b *Backend) ReduceRows(op backend.ReduceOp, dst, src backend.Tensor) {
	if b.skip(backend.OpReduceRows) {
		return
	}
	rows, cols, err := backend.CheckReduceRows(op, dst, src)
	if err != nil {
		b.Record(err)
		return
	}
	var f func([]float32) float32
	k := b.kern
	switch op {
	case backend.Sum:
		f = func(r []float32) float32 { return float32(k.Sum(r)) }
	case backend.SumSquares:
		f = func(r []float32) float32 { return float32(k.SumSquares(r)) }
	case backend.Max:
		f = k.Max
	default:
		b.Record(backend.Errorf(backend.OpReduceRows, []backend.Tensor{dst, src}, "unknown reduction %v", op))
		return
	}
	v, ok := b.views(backend.OpReduceRows, dst, src)
	if !ok {
		return
	}
	d, s := v[0], v[1]
	b.parallelFor(rows, cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			d[r] = f(s[r*cols : (r+1)*cols])
		}
	})
}

// SumColumns computes dst[j] = Σ_rows src[row, j]: each piece of rows
// (see pieces) sums into float64 partials, which are then added in piece
// order, so the result depends neither on the threads nor on scheduling.
func (b *Backend) SumColumns(dst, src backend.Tensor) {
	if b.skip(backend.OpSumColumns) {
		return
	}
	rows, cols, err := backend.CheckSumColumns(dst, src)
	if err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(backend.OpSumColumns, dst, src)
	if !ok {
		return
	}
	d, s := v[0], v[1]
	acc := b.columnSums(b.kern, rows, cols, cols, func(r int, acc []float64) {
		b.kern.Accumulate(acc, s[r*cols:(r+1)*cols])
	})
	for j, a := range acc {
		d[j] = float32(a)
	}
}

// columnSums runs add(row, acc) for every row, with acc a float64 vector of
// length cols private to the row's piece (see pieces), and returns the sum
// of the pieces' vectors, added pairwise (see pieceSums). It is the
// pattern of every "sum over rows" gradient (bias, norm weights). cost is
// the work of one add call; each piece ends with k.Fence() for the
// streaming stores add may have made. The vectors are the backend's
// scratch space: the result is valid until the next op.
func (b *Backend) columnSums(k *vec.Kernels, rows, cols, cost int, add func(row int, acc []float64)) []float64 {
	c := b.pieces(rows, cost, cols)
	sums := b.pieceSums(c, cols)
	b.forPieces(rows, cost, c, 1, func(_, p, lo, hi int) {
		acc := sums.start(p)
		for r := lo; r < hi; r++ {
			add(r, acc)
		}
		k.Fence()
		sums.finish(p)
	})
	return sums.total()
}

// flushRows is how many rows flushedColumnSums lets its float32
// partials cover before adding them to the float64 ones. Each flush
// clears the partials and adds them, widened, into float64 sums twice
// their size, which the rows between evict from the L1 cache: at 16 rows
// that cost the norm gradients 3–6% (4M floats in rows of 1024, one
// thread, alternated runs: layernorm_grad 42.7–47.6 → 45.6–49.4 GB/s,
// rmsnorm_grad 49.3–57.0 → 53.3–59.7). A float32 sum of 64 terms still
// errs by at most 64 units of rounding of the sum of its terms'
// magnitudes. The blocks are counted from each piece's first row, so
// that pieces need not start on their boundaries: they start on
// multiples of pieceRows, as evenly cut as before.
const flushRows = 64

// flushedColumnSums is columnSums for row steps that add into float32
// accumulators (sets of cols values each, laid end to end in acc32) in
// the same pass as their other work, which costs far less than float64
// accumulators read and written on every row. The float32 partials cover
// the rows of one block of flushRows (blocks counted from the piece's
// first row, so that the sums depend on the shape alone, as the pieces
// do) before they are added into the piece's float64 sums, so that their
// rounding error stays that of a short float32 sum. add(lo, hi, acc32)
// runs the rows [lo, hi) of one block, in order, with the block's
// cleared partials. It returns the sets' float64 column sums, end to end.
func (b *Backend) flushedColumnSums(k *vec.Kernels, rows, cols, cost, sets int, add func(lo, hi int, acc32 []float32)) []float64 {
	c := b.pieces(rows, cost, sets*cols) // at most one per pieceRows rows
	sums := b.pieceSums(c, sets*cols)
	// The float32 partials last one block, so one set per goroutine,
	// taken by worker number. There are c sets, the most workers
	// forPieces can run, not as many as the threads allow now: forPieces
	// reads the threads again, and with Options.Threads 0 they are
	// GOMAXPROCS, which the runtime may raise in between (it follows the
	// CPUs the process may use), and a worker beyond the sets would panic.
	parts32 := b.sumScratch32(c, sets*cols)
	b.forPieces(rows, cost, c, pieceRows, func(w, p, lo, hi int) {
		acc, acc32 := sums.start(p), parts32[w]
		for r0 := lo; r0 < hi; r0 += flushRows {
			clear(acc32)
			add(r0, min(r0+flushRows, hi), acc32)
			k.Accumulate(acc, acc32)
		}
		k.Fence()
		sums.finish(p)
	})
	return sums.total()
}

// pieceSums holds the float64 partial sums of a reduction's pieces, one
// vector each, and adds them pairwise in a tree fixed by the number of
// pieces alone: the pieces [lo, hi) sum to those of [lo, mid) plus those
// of [mid, hi), mid = ⌊(lo+hi)/2⌋, each range's sum kept in the vector of
// its first piece. The two halves of a range are added as soon as both
// are done, by the worker that finished the later one, so the result
// depends neither on the threads nor on scheduling (every bit of it the
// same on one thread or sixty-four), and with each worker on a run of
// pieces of its own (see forPieces) the additions within a run are its
// own, made while the vectors are still in its cache, in parallel with
// the other runs': only the top few of the tree wait for the runs' ends.
// Adding each piece into the first in piece order instead left the
// vectors of the second thread's run to be added one after the other at
// the end (LayerNormGrad, 4M floats in rows of 1024, two threads: 108
// GB/s, against 115 with the tree and 121 without any additions, medians
// of 31–38 samples where the copy ran at 125–160). The tree also errs
// less: each value passes through at most ⌈log₂ c⌉ additions, not up to
// c−1.
type pieceSums struct {
	parts [][]float64
	mu    sync.Mutex
	// done marks the finished nodes of the tree, numbered as in a heap:
	// 1 is [0, c), and node i's halves are 2i and 2i+1 (a tree of at most
	// maxPieces leaves is at most pieceLevels deep, so i < 2·maxPieces).
	done [2 * maxPieces]bool
}

// pieceSums returns the backend's pieceSums, reset for c pieces of n
// sums each (its vectors are scratch space, valid until the next op).
func (b *Backend) pieceSums(c, n int) *pieceSums {
	if c > maxPieces {
		panic("cpu: pieceSums of more than maxPieces pieces")
	}
	parts, grown := scratch(&b.rows64, c, n)
	b.reserved.add(8 * grown)
	s := &b.sums
	s.parts, s.done = parts, [2 * maxPieces]bool{}
	return s
}

// start returns piece p's vector, cleared.
func (s *pieceSums) start(p int) []float64 {
	clear(s.parts[p])
	return s.parts[p]
}

// finish records that piece p is done and adds, up the tree, every range
// whose other half is done too.
func (s *pieceSums) finish(p int) {
	// The path from the root down to p's leaf: each level's node, the
	// first piece of its range and the first of its second half (where
	// the two halves' sums are kept).
	type level struct{ node, lo, mid int }
	var path [pieceLevels]level
	depth, node, lo, hi := 0, 1, 0, len(s.parts)
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		path[depth] = level{node, lo, mid}
		depth++
		if p < mid {
			node, hi = 2*node, mid
		} else {
			node, lo = 2*node+1, mid
		}
	}
	for depth > 0 {
		s.mu.Lock()
		if !s.done[node^1] {
			s.done[node] = true
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		depth--
		up := path[depth]
		total, half := s.parts[up.lo], s.parts[up.mid]
		for j, x := range half {
			total[j] += x
		}
		node = up.node
	}
	s.mu.Lock()
	s.done[1] = true
	s.mu.Unlock()
}

// total returns the sum of every piece's vector, once all are finished.
func (s *pieceSums) total() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done[1] {
		panic("cpu: pieceSums read before every piece finished")
	}
	return s.parts[0]
}
