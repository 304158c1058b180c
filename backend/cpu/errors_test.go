package cpu

import (
	"errors"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
)

// TestStickyErrors checks the convention of package backend: the first
// invalid call is recorded as an *OpError naming the op, later ops do
// nothing, and Sync returns the error once and clears it.
func TestStickyErrors(t *testing.T) {
	be := New(Options{})
	a := upload(t, be, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	b := upload(t, be, []float32{1, 2, 3, 4, 5, 6}, 3, 2)
	c := upload(t, be, []float32{7, 7, 7, 7}, 2, 2)

	// Invalid: inner dimensions 3 and 2 disagree without transposes.
	be.MatMul(c, a, a.MustReshape(2, 3), backend.MatMulParams{Alpha: 1})
	// A second invalid call must not replace the first error.
	be.Binary(backend.Add, a, a, c)
	// A valid call after the error must be skipped.
	be.MatMul(c, a, b, backend.MatMulParams{Alpha: 1})
	be.Fill(a, 0)

	err := be.Sync()
	var oe *backend.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("Sync = %v, want an *OpError", err)
	}
	if oe.Op != string(backend.OpMatMul) || len(oe.Shapes) != 3 || !strings.Contains(err.Error(), "matmul [2, 2],[2, 3],[2, 3]") {
		t.Errorf("error %q: want the matmul call with its three shapes", err)
	}
	if got := download(t, be, c); got[0] != 7 {
		t.Errorf("MatMul after the error ran: c = %v", got)
	}
	if got := download(t, be, a); got[0] != 1 {
		t.Errorf("Fill after the error ran: a = %v", got)
	}

	if err := be.Sync(); err != nil {
		t.Fatalf("second Sync = %v, want nil (cleared)", err)
	}
	be.MatMul(c, a, b, backend.MatMulParams{Alpha: 1})
	// [1 2 3; 4 5 6]·[1 2; 3 4; 5 6] = [22 28; 49 64]
	assertClose(t, "matmul after Sync", download(t, be, c), []float64{22, 28, 49, 64}, 0, 0)
}

// TestDownloadReturnsRecordedError checks that Download reports an
// earlier op's failure, clearing it as Sync does.
func TestDownloadReturnsRecordedError(t *testing.T) {
	be := New(Options{})
	x := upload(t, be, []float32{1, 2}, 2)
	be.Softmax(x, x.MustReshape(1, 2), backend.SoftmaxParams{}) // shapes differ
	err := be.Download(make([]float32, 2), x)
	var oe *backend.OpError
	if !errors.As(err, &oe) || oe.Op != string(backend.OpSoftmax) {
		t.Fatalf("Download = %v, want the softmax *OpError", err)
	}
	if err := be.Sync(); err != nil {
		t.Errorf("Sync after Download = %v, want nil", err)
	}
}

// TestEveryOpValidates feeds each op one invalid call and checks that it
// is recorded under the op's name.
func TestEveryOpValidates(t *testing.T) {
	be := New(Options{})
	x := upload(t, be, make([]float32, 6), 2, 3)
	y := upload(t, be, make([]float32, 6), 3, 2)
	r := upload(t, be, make([]float32, 2), 2)
	r4 := upload(t, be, make([]float32, 6), 1, 1, 2, 3) // odd head dim
	strided, err := x.Strided(0, backend.Shape{3, 2}, []int{1, 3})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		op   backend.Op
		call func()
	}{
		{backend.OpCopy, func() { be.Copy(x, y, false) }},
		{backend.OpFill, func() { be.Fill(strided, 0) }},
		{backend.OpMatMul, func() { be.MatMul(x, x, x, backend.MatMulParams{}) }},
		{backend.OpBinary, func() { be.Binary(backend.Add, x, x, r) }}, // r is [2], rows have 3
		{backend.OpBinary, func() { be.Binary(backend.BinaryOp(99), x, x, x) }},
		{backend.OpScale, func() { be.Scale(x, r, 2) }},
		{backend.OpAxpy, func() { be.Axpy(x, 2, r) }},
		{backend.OpUnary, func() { be.Unary(backend.Exp, x, strided) }},
		{backend.OpUnary, func() { be.Unary(backend.UnaryOp(99), x, x) }},
		{backend.OpUnaryGrad, func() { be.UnaryGrad(backend.Tanh, x, x, r) }},
		{backend.OpReduceRows, func() { be.ReduceRows(backend.Sum, x, x) }},
		{backend.OpReduceRows, func() { be.ReduceRows(backend.ReduceOp(99), r, x) }},
		{backend.OpSumColumns, func() { be.SumColumns(r, x) }},
		{backend.OpSoftmax, func() { be.Softmax(x, y, backend.SoftmaxParams{}) }},
		{backend.OpSoftmax, func() { be.Softmax(x, x, backend.SoftmaxParams{Causal: true, QueryOffset: -1}) }},
		{backend.OpSoftmaxGrad, func() { be.SoftmaxGrad(x, x, y, backend.SoftmaxParams{}) }},
		{backend.OpRMSNorm, func() { be.RMSNorm(x, x, r, 1e-5) }},
		{backend.OpRMSNorm, func() { be.RMSNorm(x, x, backend.Tensor{}, 1e-5) }},
		{backend.OpRMSNormGrad, func() { be.RMSNormGrad(x, backend.Tensor{}, x, r, x, 1e-5) }},
		{backend.OpRMSNormGrad, func() { be.RMSNormGrad(x, backend.Tensor{}, x, x.MustSlice(0, 1).MustReshape(3), y, 1e-5) }},
		{backend.OpLayerNorm, func() { be.LayerNorm(x, x, backend.Tensor{}, backend.Tensor{}, 1e-5) }},
		{backend.OpLayerNormGrad, func() { be.LayerNormGrad(x, r, backend.Tensor{}, x, x.MustSlice(0, 1).MustReshape(3), x, 1e-5) }},
		{backend.OpRoPE, func() { be.RoPE(r4, r4, backend.RoPEParams{Layout: backend.Interleaved, Theta: 1e4}) }},
		{backend.OpGather, func() { be.Gather(x.MustSlice(0, 1), y, []int32{3}) }},
		{backend.OpScatterAdd, func() { be.ScatterAdd(y, r, []int32{-1}) }},
		{backend.OpCrossEntropy, func() { be.CrossEntropy(r, x, []int32{0, 3}, backend.CrossEntropyParams{IgnoreIndex: -100}) }},
		{backend.OpCrossEntropyGrad, func() { be.CrossEntropyGrad(x, x, []int32{0}, backend.CrossEntropyParams{IgnoreIndex: -100}) }},
		{backend.OpAdamW, func() { be.AdamW(x, x, x, r, backend.AdamWParams{}) }},
	}
	for _, tt := range tests {
		tt.call()
		err := be.Sync()
		var oe *backend.OpError
		if !errors.As(err, &oe) || oe.Op != string(tt.op) {
			t.Errorf("invalid %s call: Sync = %v, want a %s *OpError", tt.op, err, tt.op)
		}
	}
}
