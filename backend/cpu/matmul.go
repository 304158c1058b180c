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
// Options.BLAS, one cblas_sgemm call per matrix. B may be bfloat16
// (backend.OpMatMulBF16): package gemm widens it, exactly, as it packs or
// streams it, never into a float32 copy of the whole of B.
func (b *Backend) MatMul(c, a, bm backend.Tensor, p backend.MatMulParams) {
	if b.skip(backend.OpMatMul) {
		return
	}
	d, err := backend.CheckMatMulDType(c, a, bm, p, true)
	if err != nil {
		b.Record(err)
		return
	}
	var (
		v  [maxViews][]float32
		hs []uint16 // B when it is bfloat16
		ok bool
	)
	if bm.DType() == backend.BFloat16 {
		if v, ok = b.views(backend.OpMatMul, c, a); ok {
			if hs, err = b.viewBF16(bm); err != nil {
				b.Record(backend.Errorf(backend.OpMatMul, []backend.Tensor{c, a, bm}, "tensor argument 2: %w", err))
				return
			}
		}
	} else {
		v, ok = b.views(backend.OpMatMul, c, a, bm)
	}
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
	// Every operand is dense (CheckMatMul), so a BLAS takes any float32
	// product whose sizes it can express; k = 0 and alpha = 0 only scale
	// C, which the package's kernels do without a library call. A
	// bfloat16 B stays with the package's kernels, which widen it as they
	// pack it (cblas_sgemm would need a float32 copy of it).
	if lib := b.opts.BLAS; lib != nil && hs == nil && p.Alpha != 0 && blas.Fits(d.M, d.N, d.K, lda, ldb, d.N) {
		for i := range d.Batch {
			ai, bi, ci := i*d.StrideA, i*d.StrideB, i*d.StrideC
			lib.lib.Sgemm(p.TransA, p.TransB, d.M, d.N, d.K, p.Alpha,
				as[ai:ai+sizeA], lda, bs[bi:bi+sizeB], ldb, p.Beta, cs[ci:ci+sizeC], d.N)
		}
		return
	}
	mm := mmCall{d: d, p: p, lda: lda, ldb: ldb, c: cs, a: as, b: bs, h: hs}
	if chunks := b.batchChunks(d); chunks > 1 {
		b.batchEngines(chunks)
		// Only this branch hands the call to goroutines, so only here
		// does it escape (and cost an allocation).
		par := mm
		b.parallelChunks(d.Batch, chunks, func(ch, lo, hi int) {
			for i := lo; i < hi; i++ {
				par.one(b.batch[ch], i)
			}
		})
		b.noteEngines()
		return
	}
	for i := 0; i < d.Batch; i++ {
		mm.one(b.gemm, i)
	}
	b.noteEngines()
}

// batchEngines makes sure b.batch holds at least n single-threaded
// engines, one per worker of an op that runs products side by side
// (batched MatMul, the attention ops). The op calls noteEngines when its
// products are done, which counts new engines too.
func (b *Backend) batchEngines(n int) {
	for len(b.batch) < n {
		b.batch = append(b.batch, gemm.NewEngine(gemm.Config{Portable: b.opts.Portable, Threads: 1}))
	}
}

// noteEngines adds to Reserved (see MemoryUsage) what the matrix-multiply
// engines' workspaces grew by since it was last called. An op that
// multiplies calls it once its products are done, on its own goroutine
// after the workers have joined: the engines' threads grow their buffers
// while a product runs, and the workspaces only grow, so the peak it
// leaves is the op's. It allocates nothing.
func (b *Backend) noteEngines() {
	n := b.engineBytes()
	b.reserved.add(n - b.gemmBytes)
	b.gemmBytes = n
}

// engineBytes returns the bytes of all the matrix-multiply engines'
// packing workspaces.
func (b *Backend) engineBytes() int64 {
	n := b.gemm.WorkspaceBytes()
	for _, e := range b.batch {
		n += e.WorkspaceBytes()
	}
	return n
}

// mmCall is one validated MatMul on resolved operands.
type mmCall struct {
	d        backend.MatMulDims
	p        backend.MatMulParams
	lda, ldb int
	c, a, b  []float32
	h        []uint16 // B when it is bfloat16 (b is then nil)
}

// one computes matrix i of the batch with e.
func (m *mmCall) one(e *gemm.Engine, i int) {
	d, p := &m.d, &m.p
	sizeA, sizeB, sizeC := d.M*d.K, d.K*d.N, d.M*d.N
	ai, bi, ci := i*d.StrideA, i*d.StrideB, i*d.StrideC
	if m.h != nil {
		e.SgemmBF16(p.TransA, p.TransB, d.M, d.N, d.K, p.Alpha,
			m.a[ai:ai+sizeA], m.lda, m.h[bi:bi+sizeB], m.ldb, p.Beta, m.c[ci:ci+sizeC], d.N)
		return
	}
	e.Sgemm(p.TransA, p.TransB, d.M, d.N, d.K, p.Alpha,
		m.a[ai:ai+sizeA], m.lda, m.b[bi:bi+sizeB], m.ldb, p.Beta, m.c[ci:ci+sizeC], d.N)
}

// batchChunks returns how many goroutines should each multiply a share of
// the batch's matrices with a single-threaded engine: more than one only
// when one matrix is too small to occupy every thread of the engine and
// the batch as a whole gives each goroutine at least gemmMinFlops.
func (b *Backend) batchChunks(d backend.MatMulDims) int {
	t := b.Threads()
	flops := 2 * d.M * d.N * d.K
	if d.Batch < 2 || t < 2 || flops >= t*b.gemmGrain {
		return 1
	}
	return max(min(t, d.Batch, d.Batch*flops/b.gemmGrain), 1)
}
