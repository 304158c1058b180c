package cpu

import (
	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/blas"
	"github.com/sora-go/sora/backend/cpu/internal/gemm"
)

// gemmMinFlops is the least work (2·m·n·k) that package gemm hands to a
// thread of its own; a product smaller than threads·gemmMinFlops does not
// keep every thread of one Engine busy. The two packages agree on it so
// that small batched products (attention's per-head ones) are spread over
// the batch exactly when the engine would leave threads idle. Tests lower
// a backend's copy of it (Backend.gemmGrain) to reach that path with small
// shapes.
const gemmMinFlops = 2 * 64 * 64 * 64

// MatMul computes C = alpha·op(A)·op(B) + beta·C for each matrix of the
// batch with the blocked matrix multiply of package gemm, which also
// handles k = 0 (C = beta·C, C unread when beta is 0), or with the BLAS of
// Options.BLAS, one cblas_sgemm call per matrix.
func (b *Backend) MatMul(c, a, bm backend.Tensor, p backend.MatMulParams) {
	if b.skip(backend.OpMatMul) {
		return
	}
	d, err := backend.CheckMatMul(c, a, bm, p)
	if err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(backend.OpMatMul, c, a, bm)
	if !ok {
		return
	}
	cs, as, bs := v[0], v[1], v[2]
	if d.M == 0 || d.N == 0 || d.Batch == 0 {
		return
	}
	lda, ldb := d.K, d.N
	if p.TransA {
		lda = d.M
	}
	if p.TransB {
		ldb = d.K
	}
	sizeA, sizeB, sizeC := d.M*d.K, d.K*d.N, d.M*d.N
	// Every operand is dense (CheckMatMul), so a BLAS takes any product
	// whose sizes it can express; k = 0 and alpha = 0 only scale C, which
	// the package's kernels do without a library call.
	if lib := b.opts.BLAS; lib != nil && p.Alpha != 0 && blas.Fits(d.M, d.N, d.K, lda, ldb, d.N) {
		for i := range d.Batch {
			ai, bi, ci := i*d.StrideA, i*d.StrideB, i*d.StrideC
			lib.lib.Sgemm(p.TransA, p.TransB, d.M, d.N, d.K, p.Alpha,
				as[ai:ai+sizeA], lda, bs[bi:bi+sizeB], ldb, p.Beta, cs[ci:ci+sizeC], d.N)
		}
		return
	}
	one := func(e *gemm.Engine, i int) {
		ai, bi, ci := i*d.StrideA, i*d.StrideB, i*d.StrideC
		e.Sgemm(p.TransA, p.TransB, d.M, d.N, d.K, p.Alpha,
			as[ai:ai+sizeA], lda, bs[bi:bi+sizeB], ldb, p.Beta, cs[ci:ci+sizeC], d.N)
	}
	if chunks := b.batchChunks(d); chunks > 1 {
		for len(b.batch) < chunks {
			b.batch = append(b.batch, gemm.NewEngine(gemm.Config{Portable: b.opts.Portable, Threads: 1}))
		}
		b.parallelChunks(d.Batch, chunks, func(ch, lo, hi int) {
			for i := lo; i < hi; i++ {
				one(b.batch[ch], i)
			}
		})
		return
	}
	for i := 0; i < d.Batch; i++ {
		one(b.gemm, i)
	}
}

// batchChunks returns how many goroutines should each multiply a share of
// the batch's matrices with a single-threaded engine: more than one only
// when one matrix is too small to occupy every thread of the engine and
// the batch as a whole gives each goroutine at least gemmMinFlops.
func (b *Backend) batchChunks(d backend.MatMulDims) int {
	t := b.threads()
	flops := 2 * d.M * d.N * d.K
	if d.Batch < 2 || t < 2 || flops >= t*b.gemmGrain {
		return 1
	}
	return max(min(t, d.Batch, d.Batch*flops/b.gemmGrain), 1)
}
