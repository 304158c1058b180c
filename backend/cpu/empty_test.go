package cpu

import (
	"testing"

	"github.com/sora-go/sora/backend"
)

// TestEmptyTensors runs every op on tensors with no elements (no rows, or
// rows of length zero where the op allows them): nothing to compute, and
// nothing may panic or be recorded.
func TestEmptyTensors(t *testing.T) {
	eachConfig(t, func(t *testing.T, be *Backend) {
		alloc := func(shape ...int) backend.Tensor {
			x, err := be.Alloc(backend.Float32, shape...)
			if err != nil {
				t.Fatal(err)
			}
			return x
		}
		x, r, w := alloc(0, 5), alloc(0), alloc(5)
		z := alloc(3, 0) // rows of length zero
		zr := alloc(3)
		x4 := alloc(2, 0, 3, 4)
		m0 := alloc(0, 4)
		mc := alloc(0, 0)
		be.Fill(x, 1)
		be.Copy(x, x4.MustReshape(0, 5), true)
		be.MatMul(mc, m0, m0, backend.MatMulParams{TransB: true, Alpha: 1})
		be.MatMul(alloc(3, 3), alloc(3, 0), alloc(0, 3), backend.MatMulParams{Alpha: 1}) // k = 0
		be.Binary(backend.Mul, x, x, w)
		be.Scale(x, x, 2)
		be.Axpy(x, 2, x)
		be.Unary(backend.GELU, x, x)
		be.UnaryGrad(backend.GELU, x, x, x)
		be.ReduceRows(backend.Max, r, x)
		be.SumColumns(w, x)
		be.SumColumns(alloc(0), z)
		be.Softmax(x, x, backend.SoftmaxParams{Causal: true})
		be.SoftmaxGrad(x, x, x, backend.SoftmaxParams{})
		be.RMSNorm(x, x, w, 1e-5)
		be.RMSNormGrad(x, w, x, w, x, 1e-5)
		be.RMSNorm(z, z, alloc(0), 1e-5)
		be.LayerNorm(x, x, w, w, 1e-5)
		be.LayerNormGrad(x, w, w, x, w, x, 1e-5)
		be.LayerNormGrad(z, alloc(0), alloc(0), z, alloc(0), z, 1e-5)
		be.RoPE(x4, x4, backend.RoPEParams{Layout: backend.HalfSplit, Theta: 1e4})
		be.Gather(x, alloc(7, 5), nil)
		be.ScatterAdd(alloc(7, 5), x, nil)
		be.CrossEntropy(r, x, nil, backend.CrossEntropyParams{IgnoreIndex: -100})
		be.CrossEntropyGrad(x, x, nil, backend.CrossEntropyParams{IgnoreIndex: -100})
		be.AdamW(x, x, x, x, backend.AdamWParams{LR: 1, Beta1: 0.9, Beta2: 0.99, Step: 1})
		if err := be.Sync(); err != nil {
			t.Fatal(err)
		}
		// Sums over no rows are zero; dw is accumulated into, and stays.
		be.Fill(w, 3)
		be.SumColumns(w, x)
		assertClose(t, "sum over no rows", download(t, be, w), []float64{0, 0, 0, 0, 0}, 0, 0)
		// Rows of length zero are CrossEntropy's when every target is
		// ignored: a loss of 0 each.
		be.Fill(zr, 1)
		be.CrossEntropy(zr, z, []int32{-100, -100, -100}, backend.CrossEntropyParams{IgnoreIndex: -100})
		be.CrossEntropy(alloc(0), mc, nil, backend.CrossEntropyParams{IgnoreIndex: -100})
		assertClose(t, "cross-entropy of rows of length zero", download(t, be, zr), []float64{0, 0, 0}, 0, 0)
		be.Fill(zr, 1)
		be.ReduceRows(backend.Sum, zr, z) // rows of length zero are rejected
		if err := be.Sync(); err == nil {
			t.Error("ReduceRows over empty rows was accepted")
		}
	})
}
