package devpool

import (
	"testing"

	"github.com/sora-go/sora/backend"
)

// TestBufferTensor checks that a Buffer backs tensors as the backends use
// it: NewTensor takes its length from Len (refusing a shape it cannot
// hold), and the element type is float32.
func TestBufferTensor(t *testing.T) {
	type owner struct{}
	for _, tc := range []struct {
		n     int
		shape []int
		ok    bool
	}{
		{6, []int{2, 3}, true},
		{6, []int{6}, true},
		{0, []int{0, 4}, true},
		{5, []int{2, 3}, false},
	} {
		buf := &Buffer[owner]{Owner: &owner{}, Ptr: 0x1000, N: tc.n, Class: MinClass}
		if buf.Len() != tc.n || buf.DType() != backend.Float32 {
			t.Errorf("Buffer{N: %d}: Len %d, DType %v", tc.n, buf.Len(), buf.DType())
		}
		x, err := backend.NewTensor(buf, 0, tc.shape...)
		if (err == nil) != tc.ok {
			t.Errorf("NewTensor(Buffer{N: %d}, %v): err %v, want ok=%v", tc.n, tc.shape, err, tc.ok)
			continue
		}
		if tc.ok && (x.Buffer() != backend.Buffer(buf) || x.DType() != backend.Float32) {
			t.Errorf("NewTensor(Buffer{N: %d}, %v) = %v does not view the buffer as float32", tc.n, tc.shape, x)
		}
	}
}
