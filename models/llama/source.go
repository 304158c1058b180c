package llama

import (
	"fmt"
	"math"

	"github.com/sora-go/sora/backend"
)

// Source is a model's weights read one tensor at a time, as
// [NewFromSource] builds a model from it: a checkpoint on disk, say
// (package hf's Source is one), so that loading never holds the whole
// model in float32 on the host.
type Source interface {
	// Config returns the model's configuration; the tensors are in its
	// RopeLayout.
	Config() Config
	// ReadTensor fills dst, which has exactly the tensor's element count,
	// with the tensor of the canonical name name (those [Weights.Params]
	// lists, in row-major order with the shapes it gives). dst is the
	// caller's and reused after the call. Errors should say where the
	// tensor was read from: NewFromSource returns them as they are.
	ReadTensor(name string, dst []float32) error
}

// NewFromSource builds the model that src holds on b with the options o,
// as [NewWithOptions] builds it from host weights holding the same values
// (the same model, bit for bit), but reading each tensor from src only
// when it is uploaded: besides what the backend holds, the host holds
// one float32 buffer the size of the largest tensor (the embedding or the
// output head, in most models) for as long as the load takes. With
// o.BaseDType BFloat16 the backend rounds the linear layers' weights and
// the embedding as it uploads them, which keeps their values exactly
// where src read them from bfloat16 (the float32 buffer is still the size
// of the largest tensor). On failure, a read error from src included, everything
// uploaded is freed before it returns. src is not closed.
func NewFromSource(b backend.Backend, src Source, o Options) (*Model, error) {
	if b == nil {
		return nil, fmt.Errorf("llama: NewFromSource: nil backend")
	}
	if src == nil {
		return nil, fmt.Errorf("llama: NewFromSource: nil source")
	}
	c := src.Config()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if n := c.NumParams(); n > math.MaxInt {
		return nil, fmt.Errorf("llama: model of %d parameters does not fit in memory", n)
	}
	// The largest tensor sizes the one buffer, made when the first
	// tensor is read (after the options are checked): growing it tensor
	// by tensor could leave several of them to the garbage collector.
	largest := 0
	for _, s := range paramShapes(c) {
		largest = max(largest, backend.Shape(s).NumElements())
	}
	var buf []float32
	return build(b, c, o, func(name string, n int) ([]float32, error) {
		if buf == nil {
			buf = make([]float32, largest)
		}
		if n > len(buf) {
			return nil, fmt.Errorf("llama: NewFromSource: internal error: tensor %s of %d elements exceeds the largest, %d", name, n, len(buf))
		}
		dst := buf[:n]
		if err := src.ReadTensor(name, dst); err != nil {
			return nil, err
		}
		return dst, nil
	})
}

// paramShapes returns the shape of every tensor of a model of
// configuration c, in no particular order.
func paramShapes(c Config) [][]int {
	shapes := [][]int{{c.VocabSize, c.Dim}, {c.Dim}}
	for _, m := range c.Modules() {
		shapes = append(shapes, ModuleShape(c, m))
	}
	for _, m := range BiasModules(c) {
		shapes = append(shapes, ModuleShape(c, m)[:1])
	}
	return shapes
}
