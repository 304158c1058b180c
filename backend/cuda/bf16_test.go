package cuda

import (
	"errors"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
)

// hostBF16 is a Buffer of n bfloat16 elements, as another backend's.
type hostBF16 int

func (h hostBF16) Len() int             { return int(h) }
func (h hostBF16) DType() backend.DType { return backend.BFloat16 }

// TestBF16Refused checks that this backend, which lacks the optional op
// matmul_bf16, refuses bfloat16 cleanly: Alloc returns an error, and
// Upload, Download, Copy and MatMul given a bfloat16 tensor record an
// *OpError saying so, without a panic, after which the backend works.
func TestBF16Refused(t *testing.T) {
	b := openFake(t, Options{})
	if b.Supports(backend.OpMatMulBF16) {
		t.Fatalf("Supports(%s) = true", backend.OpMatMulBF16)
	}
	if x, err := b.Alloc(backend.BFloat16, 4, 8); err == nil || !strings.Contains(err.Error(), "matmul_bf16") {
		t.Errorf("Alloc(bfloat16) = %v, %v; want an error naming the missing op", x, err)
	}
	h, err := backend.NewTensor(hostBF16(32), 0, 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	alloc := func(shape ...int) backend.Tensor {
		x, err := b.Alloc(backend.Float32, shape...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Free(x) })
		return x
	}
	f, a, c := alloc(4, 8), alloc(4, 4), alloc(4, 8)
	calls := []struct {
		op   backend.Op
		call func() error
	}{
		{"upload", func() error { b.Upload(h, make([]float32, 32)); return b.Sync() }},
		{"download", func() error { return b.Download(make([]float32, 32), h) }},
		{backend.OpCopy, func() error { b.Copy(f, h, false); return b.Sync() }},
		{backend.OpCopy, func() error { b.Copy(h, f, true); return b.Sync() }},
		{backend.OpMatMul, func() error { b.MatMul(c, a, h, backend.MatMulParams{Alpha: 1}); return b.Sync() }},
		{backend.OpMatMul, func() error {
			b.MatMul(c, a, h.MustReshape(8, 4), backend.MatMulParams{TransB: true, Alpha: 1})
			return b.Sync()
		}},
		{backend.OpScale, func() error { b.Scale(f, h, 2); return b.Sync() }},
	}
	for i, c := range calls {
		err := c.call()
		var oe *backend.OpError
		if !errors.As(err, &oe) || oe.Op != string(c.op) || !strings.Contains(err.Error(), "bfloat16") {
			t.Errorf("call %d (%s) with a bfloat16 tensor: %v, want an *OpError of %s refusing bfloat16", i, c.op, err, c.op)
		}
	}
	b.Upload(f, make([]float32, 32))
	if err := b.Sync(); err != nil {
		t.Errorf("after the refusals: %v", err)
	}
}
