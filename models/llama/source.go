package llama

import (
	"fmt"
	"math"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// Source is a model's weights read a run of rows at a time, as
// [NewFromSource] builds a model from it: a checkpoint on disk, say
// (package hf's Source is one), so that loading never holds the whole
// model, nor even its largest tensor, in float32 on the host.
type Source interface {
	// Config returns the model's configuration; the tensors are in its
	// RopeLayout.
	Config() Config
	// ReadRows fills dst with rows [row0, row0+len(dst)/cols) of the
	// tensor of the canonical name name (those [Weights.Params] lists, in
	// row-major order with the shapes it gives), where a row is the
	// tensor's elements for one index of its first axis and cols their
	// number (the product of the other extents; 1 for a vector, whose
	// rows are its elements). dst holds a whole number of rows, all
	// within the tensor, and is the caller's, reused after the call.
	// Errors should say where the tensor was read from: NewFromSource
	// returns them as they are.
	ReadRows(name string, row0 int, dst []float32) error
}

// LoadSlabBytes bounds the float32 buffer [NewFromSource] reads tensors
// through: each tensor is read and uploaded in runs of whole rows of at
// most this many bytes in float32 (one row where a row is longer), so
// that the host memory a load takes beside the model does not grow with
// the vocabulary (a Gemma 3 embedding of 262,144 rows is 671 MB in
// float32; Qwen3-0.6B's, 622 MB). 32 MiB keeps the reads and uploads
// few (21 for Gemma 3's embedding) and large enough to run at the disk's
// and the bus's speed.
const LoadSlabBytes = 32 << 20

// loadSlabBytes is LoadSlabBytes, which tests lower to read small models
// in many slabs.
var loadSlabBytes = LoadSlabBytes

// NewFromSource builds the model that src holds on b with the options o,
// as [NewWithOptions] builds it from host weights holding the same values
// (the same model, bit for bit), but reading each tensor from src only
// when it is uploaded, a slab of rows at a time, each uploaded into its
// rows of the tensor: besides what the backend holds, the host holds one
// float32 buffer of at most [LoadSlabBytes] (or one row, if longer) for
// as long as the load takes. With o.BaseDType BFloat16 the backend rounds
// the linear layers' weights and the embedding as it uploads them, which
// keeps their values exactly where src read them from bfloat16. Nothing
// is transformed on the way (the model keeps src's rotary layout and
// norm weights as stored), so every tensor goes in slabs. A NaN or an
// infinity read is refused, naming the tensor and the element. On failure, a
// read error from src included, everything uploaded is freed before it
// returns. src is not closed.
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
	// The longest slab sizes the one buffer, made when the first tensor
	// is read (after the options are checked): growing it tensor by
	// tensor could leave several of them to the garbage collector.
	slab := max(1, loadSlabBytes/4)
	longest := 0
	for _, s := range paramShapes(c) {
		rows, cols := rowsOf(s)
		longest = max(longest, min(rows, slabRows(cols, slab))*cols)
	}
	var buf []float32
	return build(b, c, o, func(name string, dt backend.DType, shape []int) (*graph.Value, error) {
		if buf == nil {
			buf = make([]float32, longest)
		}
		return uploadSlabs(b, src, name, dt, shape, buf, slab)
	})
}

// rowsOf returns the rows of a tensor of shape s (its first extent) and
// their length (the product of the others).
func rowsOf(s []int) (rows, cols int) {
	return s[0], backend.Shape(s[1:]).NumElements()
}

// slabRows returns how many rows of cols elements a slab of slab
// elements holds: at least one.
func slabRows(cols, slab int) int {
	return max(1, slab/max(cols, 1))
}

// uploadSlabs allocates the parameter name of the given shape and
// storage type dt on b and fills it from src a slab of whole rows at a
// time (at most slab elements, or one row), each read into buf and
// uploaded into its rows of the tensor. On failure it frees the tensor.
func uploadSlabs(b backend.Backend, src Source, name string, dt backend.DType, shape []int, buf []float32, slab int) (*graph.Value, error) {
	t, err := b.Alloc(dt, shape...)
	if err != nil {
		return nil, fmt.Errorf("llama: uploading %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			b.Free(t)
		}
	}()
	rows, cols := rowsOf(shape)
	per := slabRows(cols, slab)
	for r0 := 0; r0 < rows; r0 += per {
		r1 := min(rows, r0+per)
		data := buf[:(r1-r0)*cols]
		if err := src.ReadRows(name, r0, data); err != nil {
			return nil, err
		}
		if err := checkFinite(name, shape, r0*cols, data); err != nil {
			return nil, err
		}
		view, err := t.Slice(r0, r1)
		if err != nil {
			return nil, fmt.Errorf("llama: uploading %s: %w", name, err)
		}
		b.Upload(view, data)
		// Synced slab by slab, so that a failed upload stops the read
		// at once and no error of it outlives a later read's failure.
		if err := b.Sync(); err != nil {
			return nil, fmt.Errorf("llama: uploading rows [%d, %d) of %s: %w", r0, r1, name, err)
		}
	}
	v, err := graph.NewParam(b, name, t, graph.Frozen)
	if err != nil {
		return nil, fmt.Errorf("llama: uploading %s: %w", name, err)
	}
	ok = true
	return v, nil
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

// checkFinite returns an error naming the tensor and the element where
// data, the elements of the tensor name of the given shape from offset
// on, holds a NaN or an infinity. Such a weight would make every output
// NaN, and the losses of training NaN at once, without a word about the
// file.
func checkFinite(name string, shape []int, offset int, data []float32) error {
	for i, v := range data {
		if v-v == 0 { // 0 for every finite v, NaN for NaN and ±Inf
			continue
		}
		at := fmt.Sprintf("element %d", offset+i)
		if len(shape) > 1 {
			_, cols := rowsOf(shape)
			at = fmt.Sprintf("row %d, column %d", (offset+i)/cols, (offset+i)%cols)
		}
		return fmt.Errorf("llama: %s holds %v at %s: a model's weights must be finite (a damaged file, or one saved after its training diverged)", name, v, at)
	}
	return nil
}
