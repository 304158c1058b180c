package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/internal/bf16"
)

// matmulRef computes one C = alpha·op(A)·op(B) + beta·C in float64.
func matmulRef(c []float64, a, b []float32, m, n, k int, ta, tb bool, alpha, beta float64) {
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				av := a[i*k+p]
				if ta {
					av = a[p*m+i]
				}
				bv := b[p*n+j]
				if tb {
					bv = b[j*k+p]
				}
				s += float64(av) * float64(bv)
			}
			if beta == 0 {
				c[i*n+j] = alpha * s
			} else {
				c[i*n+j] = alpha*s + beta*c[i*n+j]
			}
		}
	}
}

// matmulCases are the MatMul tests' shapes, run with every transpose.
var matmulCases = []struct {
	batchA, batchB, batchC int // 0: rank 2
	m, n, k                int
	alpha, beta            float32
}{
	{0, 0, 0, 1, 1, 1, 1, 0},
	{0, 0, 0, 3, 5, 7, 1, 0},
	{0, 0, 0, 13, 1, 127, 0.5, 0},
	{0, 0, 0, 1, 13, 3, -2, 1},
	{0, 0, 0, 17, 19, 23, 1, 0.5},
	{0, 0, 0, 2, 3, 0, 1, 0.5}, // k = 0: C = beta·C
	{0, 0, 0, 0, 3, 4, 1, 0},   // empty C
	{4, 4, 4, 3, 5, 2, 1, 0},
	{1, 6, 6, 4, 3, 5, 1, 0},    // A shared across the batch
	{5, 1, 5, 7, 2, 3, 1, 1},    // B shared (rank 3, batch 1)
	{3, 0, 3, 2, 4, 6, 1, 0},    // B rank 2, shared
	{8, 8, 8, 16, 16, 16, 1, 0}, // enough work to go batch-parallel
}

func TestMatMul(t *testing.T) {
	for _, tt := range matmulCases {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				name := fmt.Sprintf("b%d,%d,%d_m%d_n%d_k%d_a%g_b%g_ta%v_tb%v", tt.batchA, tt.batchB, tt.batchC, tt.m, tt.n, tt.k, tt.alpha, tt.beta, ta, tb)
				t.Run(name, func(t *testing.T) {
					eachConfig(t, func(t *testing.T, be *Backend) {
						testMatMul(t, be, tt.batchA, tt.batchB, tt.batchC, tt.m, tt.n, tt.k, ta, tb, tt.alpha, tt.beta)
					})
				})
			}
		}
	}
}

func testMatMul(t *testing.T, be *Backend, batchA, batchB, batchC, m, n, k int, ta, tb bool, alpha, beta float32) {
	testMatMulDType(t, be, backend.Float32, batchA, batchB, batchC, m, n, k, ta, tb, alpha, beta)
}

// testMatMulDType checks one MatMul whose B operand has dtype bdt against
// the float64 product; a bfloat16 B is compared on its rounded values.
func testMatMulDType(t *testing.T, be *Backend, bdt backend.DType, batchA, batchB, batchC, m, n, k int, ta, tb bool, alpha, beta float32) {
	rng := newRNG(uint64(m*1000 + n*10 + k))
	shape := func(batch, r, c int) []int {
		if batch == 0 {
			return []int{r, c}
		}
		return []int{batch, r, c}
	}
	ar, ac := m, k
	if ta {
		ar, ac = k, m
	}
	br, bc := k, n
	if tb {
		br, bc = n, k
	}
	nA, nB, nC := max(batchA, 1), max(batchB, 1), max(batchC, 1)
	aData := uniform(rng, nA*ar*ac, -1, 1)
	bData := uniform(rng, nB*br*bc, -1, 1)
	cData := uniform(rng, nC*m*n, -1, 1)
	if beta == 0 {
		for i := range cData {
			cData[i] = float32(math.NaN()) // must not propagate
		}
	}
	a := upload(t, be, aData, shape(batchA, ar, ac)...)
	b := uploadDType(t, be, bdt, bData, shape(batchB, br, bc)...)
	if bdt == backend.BFloat16 {
		for i, v := range bData {
			bData[i] = bf16.Widen(bf16.Round(v))
		}
	}
	c := upload(t, be, cData, shape(batchC, m, n)...)
	be.MatMul(c, a, b, backend.MatMulParams{TransA: ta, TransB: tb, Alpha: alpha, Beta: beta})

	want := f64(cData)
	for i := range nC {
		ai, bi := 0, 0
		if nA > 1 {
			ai = i * m * k
		}
		if nB > 1 {
			bi = i * k * n
		}
		matmulRef(want[i*m*n:(i+1)*m*n], aData[ai:ai+m*k], bData[bi:bi+k*n], m, n, k, ta, tb, float64(alpha), float64(beta))
	}
	// Each output is a float32 dot product of k terms of magnitude ≤ 1.
	assertClose(t, "C", download(t, be, c), want, 1e-5, 1e-6*float64(k+1))
}

func TestBatchChunks(t *testing.T) {
	be := New(Options{Threads: 4})
	tests := []struct {
		batch, m, n, k int
		want           int
	}{
		{1, 64, 64, 64, 1},     // no batch to split
		{32, 8, 8, 8, 1},       // all 32 together are less than one share
		{32, 64, 64, 64, 4},    // one matrix is one share: split the batch
		{3, 64, 64, 64, 3},     // no more goroutines than matrices
		{4, 32, 32, 64, 1},     // 4·2·32·32·64 flops: one share in all
		{8, 32, 32, 64, 2},     // two shares
		{64, 128, 128, 128, 1}, // big enough for the engine's own threads
	}
	for _, tt := range tests {
		d := backend.MatMulDims{Batch: tt.batch, M: tt.m, N: tt.n, K: tt.k}
		if got := be.batchChunks(d); got != tt.want {
			t.Errorf("batchChunks(batch %d, %dx%dx%d) = %d, want %d", tt.batch, tt.m, tt.n, tt.k, got, tt.want)
		}
	}
	if got := New(Options{Threads: 1}).batchChunks(backend.MatMulDims{Batch: 64, M: 64, N: 64, K: 64}); got != 1 {
		t.Errorf("one thread: batchChunks = %d, want 1", got)
	}
}
