// Package gemm is the CPU backend's single-precision matrix multiply.
package gemm

// Config selects how an Engine computes.
type Config struct {
	// Portable forces the pure-Go kernels even where SIMD ones exist.
	Portable bool
	// Threads caps the goroutines one call uses; 0 means GOMAXPROCS.
	Threads int
}

// Engine multiplies matrices, reusing its packing buffers between calls.
// An Engine is not safe for concurrent use.
type Engine struct {
	cfg Config
}

// NewEngine returns an Engine for cfg.
func NewEngine(cfg Config) *Engine { return &Engine{cfg: cfg} }

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices,
// where op(A) is m×k and op(B) is k×n; lda, ldb and ldc are the row strides.
// When beta is 0, C is not read.
//
// This placeholder is a plain loop; the packed, blocked and vectorised
// implementation replaces it.
func (e *Engine) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				av := a[i*lda+p]
				if transA {
					av = a[p*lda+i]
				}
				bv := b[p*ldb+j]
				if transB {
					bv = b[j*ldb+p]
				}
				s += av * bv
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * s
			} else {
				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
	}
}
