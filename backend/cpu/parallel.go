package cpu

import (
	"sync/atomic"
	"unsafe"

	"github.com/sora-go/sora/backend/cpu/internal/vec"
	"github.com/sora-go/sora/internal/workpool"
)

// defaultGrain is the least work, in element-operations, worth handing to
// another goroutine. Handing a chunk to a worker of package workpool that
// is polling for work, and learning that it is done, costs on the order of
// a microsecond (a sleeping one takes far longer to wake), in which a core
// does a few thousand simple float operations; a chunk an order of
// magnitude bigger keeps that overhead small. Tests lower a backend's
// grain to exercise the parallel paths on small shapes.
const defaultGrain = 32 << 10

// chunks returns how many pieces to split n items of the given cost (work
// per item, in element-operations) into: 1 when the whole job is below two
// grains, otherwise at most one per thread and never more than n.
func (b *Backend) chunks(n, cost int) int {
	if n <= 1 {
		return 1
	}
	work := n * max(cost, 1)
	if work < 2*b.grain {
		return 1
	}
	c := min(b.Threads(), work/b.grain, n)
	return max(c, 1)
}

// parallelFor runs fn over [0, n) split into contiguous ranges, on the
// caller's goroutine and workpool's workers (at most one range each at a
// time), and returns when all are done. Small jobs run inline on the
// caller's goroutine.
func (b *Backend) parallelFor(n, cost int, fn func(lo, hi int)) {
	b.parallelChunks(n, b.chunks(n, cost), func(_, lo, hi int) { fn(lo, hi) })
}

// parallelChunks runs fn(chunk, lo, hi) for each of c near-equal ranges of
// [0, n), concurrently when c > 1. The chunk index lets callers keep
// per-chunk partial results (column sums, parameter gradients) that they
// combine afterwards in chunk order, so results do not depend on scheduling.
func (b *Backend) parallelChunks(n, c int, fn func(chunk, lo, hi int)) {
	if n <= 0 {
		return
	}
	c = max(min(c, n), 1)
	if c == 1 {
		fn(0, 0, n)
		return
	}
	workpool.Run(c, c, func(i int) { fn(i, i*n/c, (i+1)*n/c) })
}

// A reduction (a sum over rows, or over the blocks of a product) is cut
// into pieces by its shape alone, never by the thread count: each piece
// sums its part into partials of its own, and the pieces' partials are
// added in an order fixed by their number (see pieceSums). The rounding,
// and so every bit of the result, is then the same on one thread or
// sixty-four, however the pieces were scheduled, so that a run gives the
// same weights on a laptop and on a server and resumes on either bit for
// bit. The threads only decide how many goroutines take the pieces.

// maxPieces caps the pieces of a reduction: up to this many threads get
// a piece each at once. A power of two, 2^pieceLevels, so that pieceSums'
// tree of them is pieceLevels deep; at most 64, as forPieces claims the
// pieces in the bits of one word (the constant below checks it).
const (
	pieceLevels = 6
	maxPieces   = 1 << pieceLevels
)

const _ uint64 = 1 << (maxPieces - 1) // maxPieces ≤ 64

// pieceWork is the least work, in element-operations, a piece does per
// element of its partials, whose clearing and adding into the total cost
// more than their count of additions suggests (caches and all). Measured
// at one thread on an AVX-512 AMD EPYC, against one piece: SumColumns on
// 4096×1024 in 64 pieces took about 20% longer, RMSNormGrad's dw on
// 2048×768 in 48 pieces (pieceWork 256) about 5%; at 512 (8 and 24
// pieces) both came out within a few per cent, in the noise of a shared
// machine.
const pieceWork = 512

// pieceRows is the fewest items (rows) a piece of a reduction has, and
// the multiple of rows flushedColumnSums' pieces start on.
const pieceRows = 16

// pieces returns how many pieces to cut a reduction over n items of the
// given cost (work per item, in element-operations) into, each summing
// into partials of the given length, from the shape alone (see above):
// one when the whole is below two grains (such a job runs inline, as
// chunks keeps it), else about one per quarter grain, so that any number
// of threads gets near-equal shares (each piece a small part of a
// thread's share), but no more than lets each piece do pieceWork per
// partial element, with at least pieceRows items each, and at most
// maxPieces.
func (b *Backend) pieces(n, cost, partial int) int {
	work := n * max(cost, 1)
	if n <= 1 || work < 2*b.grain {
		return 1
	}
	c := min(work/max(b.grain/4, 1), work/(pieceWork*max(partial, 1)), n/pieceRows, maxPieces)
	return max(c, 1)
}

// forPieces runs fn(worker, piece, lo, hi) for each of the c pieces of
// [0, n): piece i covers [at(i), at(i+1)) with at(i) = ⌊i·u/c⌋·align
// (at most n) for u = ⌈n/align⌉, so pieces start on multiples of align,
// which c must not outnumber (nor maxPieces). The pieces are split into
// as many runs as there are workers (see chunks), numbered from 0 and
// each handed to a goroutine as a part of workpool.Run, which takes its
// run's pieces in order, so that it streams through one contiguous part
// of the data, and then, from the end, any piece no one has taken yet: a
// worker that starts late, or on a core that other processes slow,
// leaves its pieces to the others rather than holding them up (once
// inside a piece it does hold the op up, as in any parallel loop).
// Handing the pieces out in turn instead (0 and 1, then 2 and 3, ...)
// cost LayerNormGrad's two threads about a tenth of their speed from
// memory (4M floats in rows of 1024: 106 against 116 GB/s, medians of 64
// samples where the copy ran at 125–160). A piece's result must depend
// only on its range, never on the worker; the worker picks scratch that
// lives for one piece.
func (b *Backend) forPieces(n, cost, c, align int, fn func(worker, piece, lo, hi int)) {
	if c > maxPieces {
		panic("cpu: forPieces with more than maxPieces pieces")
	}
	units := (n + align - 1) / align
	at := func(i int) int { return min(i*units/c*align, n) }
	workers := min(b.chunks(n, cost), c)
	if workers <= 1 {
		for i := range c {
			fn(0, i, at(i), at(i+1))
		}
		return
	}
	var taken atomic.Uint64 // bit i: piece i is someone's
	take := func(w, i int) {
		// The load spares the shared word a write for pieces taken.
		if bit := uint64(1) << i; taken.Load()&bit == 0 && taken.Or(bit)&bit == 0 {
			fn(w, i, at(i), at(i+1))
		}
	}
	b.parallelChunks(workers, workers, func(w, _, _ int) {
		for i := w * c / workers; i < (w+1)*c/workers; i++ {
			take(w, i)
		}
		for i := c - 1; i >= 0; i-- {
			take(w, i)
		}
	})
}

// streamFor is parallelFor for an op running kernels k, which may be
// streaming ones: each chunk ends with k.Fence(), so that its
// non-temporal stores are in order before the op returns.
func (b *Backend) streamFor(k *vec.Kernels, n, cost int, fn func(lo, hi int)) {
	b.parallelFor(n, cost, func(lo, hi int) {
		fn(lo, hi)
		k.Fence()
	})
}

// scratch32 returns c float32 buffers of length n, one per parallel chunk,
// reused across ops (a Backend runs one op at a time), so that row ops
// needing a temporary row allocate nothing once warm. Their growth counts
// in MemoryUsage's Reserved.
func (b *Backend) scratch32(c, n int) [][]float32 {
	bufs, grown := scratch(&b.rows32, c, n)
	b.reserved.add(4 * grown)
	return bufs
}

// sumScratch32 is scratch32 for flushedColumnSums' float32 partials, from
// a pool of their own. Taken from scratch32's, where they were the buffers
// the row ops keep rows in (Softmax's and CrossEntropyGrad's
// exponentials), they made LayerNormGrad run about a tenth slower on two
// threads after a Softmax than on its own (4M floats in rows of 1024,
// sora bench ops in the copy's fast state, one process per run: medians
// of 97 GB/s after a Softmax over nine runs against 113 alone over seven;
// with a pool of their own 111 after a Softmax over fifteen). Why, we did
// not find out; fresh buffers for the partials were enough. scratchPad,
// which came later, may be enough alone (not measured).
func (b *Backend) sumScratch32(c, n int) [][]float32 {
	bufs, grown := scratch(&b.sums32, c, n)
	b.reserved.add(4 * grown)
	return bufs
}

// scratch64 returns c zeroed float64 buffers of length n, reused across
// ops like scratch32's: one per parallel chunk or piece, or one that the
// chunks share, each using its own range of it.
func (b *Backend) scratch64(c, n int) [][]float64 {
	parts, grown := scratch(&b.rows64, c, n)
	b.reserved.add(8 * grown)
	for _, p := range parts {
		clear(p)
	}
	return parts
}

// scratchInts returns n int32s of scratch reused across ops like
// scratch32's, with whatever they last held.
func (b *Backend) scratchInts(n int) []int32 {
	if c := cap(b.ints); c < n {
		b.ints = make([]int32, n)
		b.reserved.add(4 * int64(n-c))
	}
	return b.ints[:n]
}

// scratch grows *pool to at least c buffers of capacity n (plus
// scratchPad bytes) and returns the first c of them resliced to length n,
// with whatever they last held, and by how many elements the buffers'
// capacities grew in all, their padding included (a buffer replaced by a
// bigger one counts the difference: the old one is dropped).
func scratch[T any](pool *[][]T, c, n int) (bufs [][]T, grown int64) {
	for len(*pool) < c {
		*pool = append(*pool, nil)
	}
	bufs = (*pool)[:c]
	pad := scratchPad / int(unsafe.Sizeof(*new(T)))
	for i := range bufs {
		if old := cap(bufs[i]); old < n+pad {
			bufs[i] = make([]T, n+pad)
			grown += int64(n + pad - old)
		}
		bufs[i] = bufs[i][:n]
	}
	return bufs, grown
}

// scratchPad is how many bytes each scratch buffer has past its end that
// nothing uses, so that the buffers of two chunks, which different cores
// write, never share a 4 KB page, however the allocator places them.
// CrossEntropy's two 528-byte buffers, side by side, made the op about
// 15% slower on two threads in the copy's fast state (4M floats in rows
// of 1024, sora bench ops: medians of 89 GB/s against 107 with 8 KB of
// padding, 6 fast-state runs each); 128 bytes, enough to keep them off
// each other's cache lines, left it at 96 (5 runs), 4 KB made it 112 (8
// runs). Why a page matters was not found (a prefetcher that stops at
// page boundaries, fetching the other core's lines, would explain it).
const scratchPad = 4096
