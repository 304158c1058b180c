package cpu

import (
	"sync"

	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// defaultGrain is the least work, in element-operations, worth handing to
// a goroutine of its own. Starting and joining a goroutine costs on the
// order of a microsecond, in which a core does a few thousand simple float
// operations; a chunk an order of magnitude bigger keeps that overhead
// small. Tests lower a backend's grain to exercise the parallel paths on
// small shapes.
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
	c := min(b.threads(), work/b.grain, n)
	return max(c, 1)
}

// parallelFor runs fn over [0, n) split into contiguous ranges, one
// goroutine per range, and returns when all are done. Small jobs run inline
// on the caller's goroutine.
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
	var wg sync.WaitGroup
	for i := 1; i < c; i++ {
		wg.Go(func() { fn(i, i*n/c, (i+1)*n/c) })
	}
	fn(0, 0, n/c) // the caller works too instead of only waiting
	wg.Wait()
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
// needing a temporary row allocate nothing once warm.
func (b *Backend) scratch32(c, n int) [][]float32 { return scratch(&b.rows32, c, n) }

// scratch64 returns c zeroed float64 buffers of length n, one per parallel
// chunk, reused across ops like scratch32's.
func (b *Backend) scratch64(c, n int) [][]float64 {
	parts := scratch(&b.rows64, c, n)
	for _, p := range parts {
		clear(p)
	}
	return parts
}

// scratch grows *pool to at least c buffers of capacity n and returns the
// first c of them resliced to length n, with whatever they last held.
func scratch[T any](pool *[][]T, c, n int) [][]T {
	for len(*pool) < c {
		*pool = append(*pool, nil)
	}
	bufs := (*pool)[:c]
	for i := range bufs {
		if cap(bufs[i]) < n {
			bufs[i] = make([]T, n)
		}
		bufs[i] = bufs[i][:n]
	}
	return bufs
}
