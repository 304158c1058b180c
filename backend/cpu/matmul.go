package cpu

import (
	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/gemm"
)

// batchParallelMaxWork is the largest per-matrix work (m·n·k) for which a
// batched MatMul runs whole matrices on separate goroutines instead of
// letting the engine split each matrix: attention's many small per-head
// products are cheaper side by side than each cut in pieces.
const batchParallelMaxWork = 1 << 21

// MatMul computes C = alpha·op(A)·op(B) + beta·C for each matrix of the
// batch with the blocked matrix multiply of package gemm, which also
// handles k = 0 (C = beta·C, C unread when beta is 0).
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
	one := func(e *gemm.Engine, i int) {
		ai, bi, ci := i*d.StrideA, i*d.StrideB, i*d.StrideC
		e.Sgemm(p.TransA, p.TransB, d.M, d.N, d.K, p.Alpha,
			as[ai:ai+sizeA], lda, bs[bi:bi+sizeB], ldb, p.Beta, cs[ci:ci+sizeC], d.N)
	}
	work := d.M * d.N * d.K
	if t := b.threads(); d.Batch > 1 && t > 1 && work <= batchParallelMaxWork && b.chunks(d.Batch, work) > 1 {
		chunks := b.chunks(d.Batch, work)
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
