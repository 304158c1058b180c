package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/sora-go/sora/backend"
)

// gemmCall is one cuBLAS column-major GEMM, C = α·op(A)·op(B) + β·C with
// C m×n, in cuBLAS's own terms.
type gemmCall struct {
	transa, transb int // cublasOpN or cublasOpT
	m, n, k        int
	lda, ldb, ldc  int
	// strideA, strideB and strideC are the element distances between the
	// matrices of a batch (0 for an operand shared by the whole batch).
	strideA, strideB, strideC int64
	batch                     int
}

// gemmMapping turns a row-major MatMul into cuBLAS's column-major terms.
// A row-major matrix X [r, c] is, read column-major, Xᵀ [c, r] with
// leading dimension c. So row-major C = op(A)·op(B) is column-major
// Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLAS's first operand is our B and its second our
// A, with the same transpose flags (B [k, n] stored row-major already is
// Bᵀ [n, k] column-major, which is what op(B)ᵀ needs when B is not
// transposed). The output is Cᵀ, n×m column-major with leading dimension
// n, which is C row-major. Leading dimensions are at least 1, as cuBLAS
// requires even for empty operands.
func gemmMapping(d backend.MatMulDims, p backend.MatMulParams) gemmCall {
	g := gemmCall{
		m: d.N, n: d.M, k: d.K,
		transa: cublasOpN, transb: cublasOpN,
		lda: d.N, ldb: d.K, ldc: d.N,
		strideA: int64(d.StrideB), strideB: int64(d.StrideA), strideC: int64(d.StrideC),
		batch: d.Batch,
	}
	if p.TransB { // B stored [n, k]: column-major [k, n], transposed to n×k
		g.transa, g.lda = cublasOpT, d.K
	}
	if p.TransA { // A stored [k, m]: column-major [m, k], transposed to k×m
		g.transb, g.ldb = cublasOpT, d.M
	}
	g.lda, g.ldb, g.ldc = max(g.lda, 1), max(g.ldb, 1), max(g.ldc, 1)
	return g
}

// fits reports whether every int parameter fits cuBLAS's 32-bit int.
func (g gemmCall) fits() bool {
	for _, v := range []int{g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.batch} {
		if v > math.MaxInt32 {
			return false
		}
	}
	return true
}

// MatMul computes C = alpha·op(A)·op(B) + beta·C for each matrix of the
// batch with cublasSgemm_v2 (batch of one) or cublasSgemmStridedBatched,
// a shared operand having stride 0. An empty inner dimension (k = 0)
// gives C = beta·C without cuBLAS, C unread when beta is 0. A bfloat16 B
// (backend.OpMatMulBF16) is widened into a float32 scratch block of the
// pool first, a large one in slabs of rows (see gemmBF16), and the block
// goes back to the pool once the GEMMs are enqueued.
func (b *Backend) MatMul(c, a, bm backend.Tensor, p backend.MatMulParams) {
	if b.skip(backend.OpMatMul) {
		return
	}
	d, err := backend.CheckMatMulDType(c, a, bm, p, true)
	if err != nil {
		b.Record(err)
		return
	}
	if d.M == 0 || d.N == 0 || d.Batch == 0 {
		return
	}
	b.run(backend.OpMatMul, []backend.Tensor{c, a, bm}, func() error {
		ptrs, err := b.dptrs(c, a, bm)
		if err != nil {
			return err
		}
		if d.K == 0 {
			return b.scaleOutput(ptrs[0], int64(c.Len()), p.Beta)
		}
		pc, pa, pb := ptrs[0], ptrs[1], ptrs[2]
		if bm.DType() == backend.BFloat16 {
			return b.gemmBF16(d, p, int64(bm.Len()), pa, pb, pc)
		}
		return b.gemm(gemmMapping(d, p), p.Alpha, p.Beta, pa, pb, pc)
	})
}

// scaleOutput sets C = beta·C for a product with k = 0.
func (b *Backend) scaleOutput(c uintptr, n int64, beta float32) error {
	if beta == 0 {
		return b.api.cu("cuMemsetD32Async", call(b.api.cuMemsetD32Async, c, 0, uintptr(n), b.stream))
	}
	if beta == 1 {
		return nil
	}
	return b.scale(c, c, n, beta)
}

// gemm issues one cuBLAS call for our A (pa), B (pb) and C (pc): cuBLAS's
// A is our B. alpha and beta are read by cuBLAS from host memory during
// the call (CUBLAS_POINTER_MODE_HOST), pinned for it.
func (b *Backend) gemm(g gemmCall, alpha, beta float32, pa, pb, pc uintptr) error {
	if !g.fits() {
		return fmt.Errorf("matrix extents %d×%d×%d exceed cuBLAS's 32-bit int", g.m, g.n, g.k)
	}
	b.scalars[0], b.scalars[1] = alpha, beta
	pAlpha := uintptr(unsafe.Pointer(&b.scalars[0]))
	pBeta := uintptr(unsafe.Pointer(&b.scalars[1]))
	a := b.api
	b.pinner.Pin(b.scalars)
	defer b.pinner.Unpin()
	name := "cublasSgemm_v2"
	if g.batch != 1 {
		name = "cublasSgemmStridedBatched"
	}
	gemm := func() int {
		if g.batch == 1 {
			return call(a.cublasSgemm, b.blas,
				uintptr(g.transa), uintptr(g.transb), uintptr(g.m), uintptr(g.n), uintptr(g.k),
				pAlpha, pb, uintptr(g.lda), pa, uintptr(g.ldb), pBeta, pc, uintptr(g.ldc))
		}
		return call(a.cublasSgemmStridedBatched, b.blas,
			uintptr(g.transa), uintptr(g.transb), uintptr(g.m), uintptr(g.n), uintptr(g.k),
			pAlpha, pb, uintptr(g.lda), uintptr(g.strideA), pa, uintptr(g.ldb), uintptr(g.strideB),
			pBeta, pc, uintptr(g.ldc), uintptr(g.strideC), uintptr(g.batch))
	}
	status := gemm()
	if status == cublasSuccess {
		return nil
	}
	err := a.blasErr(name, status)
	if status != cublasStatusAllocFailed {
		return err
	}
	// cuBLAS allocates device memory of its own (its workspace, kernels
	// it loads for a new shape), which the pool may be caching.
	return b.reclaimAndRetry(err, func() error { return a.blasErr(name, gemm()) })
}

// VendorName names the library behind VendorMatMul in benchmark reports.
func (b *Backend) VendorName() string { return "cublas" }

// VendorMatMul issues the cuBLAS call that MatMul issues for the same
// arguments (cublasSgemm_v2, or cublasSgemmStridedBatched for a batch),
// leaving out MatMul's own per-call Go work: the closure and tensor list
// kept for error messages and the k = 0 case (cuBLAS's own handling
// applies there). It is the baseline against which benchmarks measure
// MatMul in the same run. Its arguments are checked as MatMul's are, and
// like an op it records any failure (bad shapes, foreign or freed tensors,
// a closed backend, a cuBLAS status) for the next Sync instead of
// panicking, and does nothing while an error is held. An empty output is
// a no-op.
func (b *Backend) VendorMatMul(c, a, bm backend.Tensor, p backend.MatMulParams) {
	if b.skip(backend.OpMatMul) {
		return
	}
	d, err := backend.CheckMatMul(c, a, bm, p)
	if err != nil {
		b.Record(err)
		return
	}
	if d.M == 0 || d.N == 0 || d.Batch == 0 {
		return
	}
	pc, err := b.dptr(c)
	var pa, pb uintptr
	if err == nil {
		pa, err = b.dptr(a)
	}
	if err == nil {
		pb, err = b.dptr(bm)
	}
	if err == nil {
		if err = b.enter(); err == nil {
			err = b.gemm(gemmMapping(d, p), p.Alpha, p.Beta, pa, pb, pc)
		}
		b.leave()
	}
	if err != nil {
		b.Record(opError("vendor matmul", []backend.Tensor{c, a, bm}, err))
	}
}

// DeviceCopy copies the contiguous tensor src into dst (same length) with
// cuMemcpyDtoDAsync, the driver's own device-to-device copy: the bandwidth
// reference for benchmarks of the element-wise and row kernels. Like an
// op it records failures and does nothing while an error is held or after
// Close.
func (b *Backend) DeviceCopy(dst, src backend.Tensor) {
	if b.skip(backend.OpCopy) {
		return
	}
	if _, err := backend.CheckElementwise(backend.OpCopy, dst, src); err != nil {
		b.Record(err)
		return
	}
	b.run(backend.OpCopy, []backend.Tensor{dst, src}, func() error {
		p, err := b.dptrs(dst, src)
		if err != nil || dst.Len() == 0 {
			return err
		}
		return b.api.cu("cuMemcpyDtoDAsync_v2", call(b.api.cuMemcpyDtoDAs, p[0], p[1], uintptr(dst.Len()*4), b.stream))
	})
}
