package graph

import (
	"fmt"

	"github.com/sora-go/sora/backend"
)

// Value is a tensor in a computation: a parameter, an input, or the result
// of an op recorded on a [Tape]. It holds a device tensor and, when it
// requires a gradient, the gradient of the loss with respect to it.
//
// Every Value's data is a contiguous tensor. Values made by a Tape belong to
// it and become invalid when the Tape is Reset; parameters (see [NewParam])
// outlive tapes and may be used on any tape of their backend.
type Value struct {
	data  backend.Tensor
	grad  backend.Tensor
	shape backend.Shape
	b     backend.Backend
	tape  *Tape // the tape that made the value; nil for parameters
	name  string

	param     bool // made by NewParam
	needsGrad bool // gradients flow into this value
	hasGrad   bool // parameters: grad holds a gradient since the last ZeroGrad
	seed      bool // the loss of a Backward: its gradient is exactly 1
	dead      bool // its tape was Reset
	dropped   bool // dead: an intermediate of a checkpointed segment
}

// Trainability says whether a parameter receives gradients.
type Trainability bool

const (
	// Frozen parameters get no gradient buffer and stop gradients.
	Frozen Trainability = false
	// Trainable parameters own a gradient buffer that Backward accumulates
	// into until ZeroGrad.
	Trainable Trainability = true
)

// NewParam makes a parameter named name from t, a contiguous float32 tensor
// of b. The parameter takes ownership of t: [Value.Free] releases it. A
// trainable parameter also allocates a gradient buffer of t's shape; a
// frozen one allocates nothing.
//
// t may also be a contiguous [backend.BFloat16] tensor, for a frozen
// weight stored at half the memory (see [UploadParamAs]): such a
// parameter is Frozen and stays so (its gradient and any optimizer would
// be float32, and an update would be lost to the rounding of the
// storage), and only the matrix products and Gather's table take it (see
// [Tape.MatMul], [Tape.Gather]).
//
// Parameters are shared by every tape that uses them. Their gradients
// accumulate across Backward calls (gradient accumulation over
// micro-batches) until [Value.ZeroGrad].
func NewParam(b backend.Backend, name string, t backend.Tensor, train Trainability) (*Value, error) {
	if b == nil {
		return nil, fmt.Errorf("graph: NewParam %q: nil backend", name)
	}
	if t.IsZero() || (t.DType() != backend.Float32 && t.DType() != backend.BFloat16) || !t.Contiguous() {
		return nil, fmt.Errorf("graph: NewParam %q: want a contiguous float32 (or bfloat16) tensor, got %v", name, t)
	}
	if t.DType() == backend.BFloat16 && train == Trainable {
		return nil, fmt.Errorf("graph: NewParam %q: %s", name, bf16Frozen)
	}
	v := &Value{data: t, shape: append(backend.Shape(nil), t.Shape()...), b: b, name: name, param: true}
	if err := v.SetTrainable(bool(train)); err != nil {
		return nil, err
	}
	return v, nil
}

// bf16Frozen is why a bfloat16 parameter cannot train.
const bf16Frozen = "a parameter stored in bfloat16 is frozen storage and cannot be trained (gradients and optimizer states are float32, and an update would be lost to the storage's rounding); keep it in float32 to train it"

// UploadParam allocates a float32 tensor of the given shape on b, uploads
// data into it and makes it a parameter (see [NewParam]).
func UploadParam(b backend.Backend, name string, data []float32, train Trainability, shape ...int) (*Value, error) {
	return UploadParamAs(b, name, data, backend.Float32, train, shape...)
}

// UploadParamAs is [UploadParam] with the storage type dt: Float32, or
// BFloat16 for a Frozen weight at half the memory, which the backend
// rounds data into (to nearest even) and which needs a backend that
// supports [backend.OpMatMulBF16].
func UploadParamAs(b backend.Backend, name string, data []float32, dt backend.DType, train Trainability, shape ...int) (*Value, error) {
	if b == nil {
		return nil, fmt.Errorf("graph: UploadParam %q: nil backend", name)
	}
	if n := backend.Shape(shape).NumElements(); n != len(data) {
		return nil, fmt.Errorf("graph: UploadParam %q: %d values for shape %v (%d elements)", name, len(data), backend.Shape(shape), n)
	}
	switch {
	case dt == backend.BFloat16 && train == Trainable:
		return nil, fmt.Errorf("graph: UploadParam %q: %s", name, bf16Frozen)
	case dt == backend.BFloat16 && !b.Supports(backend.OpMatMulBF16):
		return nil, fmt.Errorf("graph: UploadParam %q in bfloat16: backend %s does not support bfloat16 storage (it lacks the optional op %s)", name, b.Name(), backend.OpMatMulBF16)
	case dt != backend.Float32 && dt != backend.BFloat16:
		return nil, fmt.Errorf("graph: UploadParam %q: dtype %s; want float32 or bfloat16", name, dt)
	}
	t, err := b.Alloc(dt, shape...)
	if err != nil {
		return nil, fmt.Errorf("graph: UploadParam %q: %w", name, err)
	}
	b.Upload(t, data)
	if err := b.Sync(); err != nil {
		b.Free(t)
		return nil, fmt.Errorf("graph: UploadParam %q: %w", name, err)
	}
	v, err := NewParam(b, name, t, train)
	if err != nil {
		b.Free(t)
		return nil, err
	}
	return v, nil
}

// SetTrainable makes a parameter trainable (allocating its gradient buffer,
// which starts empty) or frozen (freeing it). It fails for values that are
// not parameters and when the allocation fails.
func (v *Value) SetTrainable(train bool) error {
	if !v.param {
		return fmt.Errorf("graph: SetTrainable on a value that is not a parameter")
	}
	if train && v.data.DType() == backend.BFloat16 {
		return fmt.Errorf("graph: SetTrainable %q: %s", v.name, bf16Frozen)
	}
	switch {
	case train && v.grad.IsZero():
		g, err := v.b.Alloc(backend.Float32, v.shape...)
		if err != nil {
			return fmt.Errorf("graph: gradient of parameter %q: %w", v.name, err)
		}
		v.grad = g
	case !train && !v.grad.IsZero():
		v.b.Free(v.grad)
		v.grad = backend.Tensor{}
	}
	v.needsGrad = train
	v.hasGrad = false
	return nil
}

// Free releases a parameter's data and gradient buffers. The parameter must
// not be used afterwards. Do not call it for parameters whose tensors are
// views into a buffer shared with others; free that buffer instead.
func (v *Value) Free() {
	if !v.param {
		return
	}
	v.b.Free(v.grad)
	v.b.Free(v.data)
	v.grad, v.data = backend.Tensor{}, backend.Tensor{}
	v.needsGrad, v.hasGrad = false, false
}

// Replace gives a frozen parameter new data of the same shape, t (whose
// buffer the parameter then owns, as NewParam's), and frees its old
// buffer; t may have another dtype. Everything holding the parameter
// sees the new data: this is how a weight shared by two parts of a model
// (a tied embedding and output head) changes for both at once, for
// example when a bfloat16 weight takes a merged float32 one that
// bfloat16 could hold only rounded. t must be what [NewParam] takes (a
// contiguous float32 or bfloat16 tensor), not a view of the buffer it
// replaces. Anything else, a trainable parameter or a t of another shape
// among them, is an error and changes nothing.
func (v *Value) Replace(t backend.Tensor) error {
	switch {
	case !v.param:
		return fmt.Errorf("graph: Replace on a value that is not a parameter")
	case v.needsGrad:
		return fmt.Errorf("graph: Replace %q: the parameter is trainable (its gradient and optimizer state belong to its data)", v.name)
	case t.IsZero():
		return fmt.Errorf("graph: Replace %q: no new data", v.name)
	case (t.DType() != backend.Float32 && t.DType() != backend.BFloat16) || !t.Contiguous():
		return fmt.Errorf("graph: Replace %q: want a contiguous float32 (or bfloat16) tensor, got %v", v.name, t)
	case !t.Shape().Equal(v.shape):
		return fmt.Errorf("graph: Replace %q: new data %v for a parameter of shape %v", v.name, t.Shape(), v.shape)
	case !v.data.IsZero() && t.Buffer() == v.data.Buffer():
		return fmt.Errorf("graph: Replace %q: the new data is a view of the parameter's own buffer, which Replace frees", v.name)
	}
	v.b.Free(v.data)
	v.data = t
	return nil
}

// ZeroGrad empties a parameter's gradient: the next Backward overwrites the
// buffer instead of adding to it, and until then [Value.Grad] is the zero
// Tensor (optimizers skip such parameters, as PyTorch skips a None grad).
// It writes nothing to the device.
func (v *Value) ZeroGrad() { v.hasGrad = false }

// Name returns the parameter's name ("" for other values).
func (v *Value) Name() string { return v.name }

// IsParam reports whether v was made by [NewParam] or [UploadParam].
func (v *Value) IsParam() bool { return v.param }

// Trainable reports whether v is a trainable parameter.
func (v *Value) Trainable() bool { return v.param && v.needsGrad }

// RequiresGrad reports whether gradients flow into v: v is a trainable
// parameter or was computed from one while gradients were recorded.
func (v *Value) RequiresGrad() bool { return v.needsGrad }

// Backend returns the backend that holds v.
func (v *Value) Backend() backend.Backend { return v.b }

// Shape returns v's shape. The caller must not modify it.
func (v *Value) Shape() backend.Shape { return v.shape }

// Rank returns the number of axes.
func (v *Value) Rank() int { return len(v.shape) }

// Dim returns the extent of axis i; negative i counts from the end. It
// returns 0 for an axis v does not have, rather than panicking, so that
// model code computing shapes from a failed op's placeholder keeps going
// until the error is reported.
func (v *Value) Dim(i int) int {
	if i < 0 {
		i += len(v.shape)
	}
	if i < 0 || i >= len(v.shape) {
		return 0
	}
	return v.shape[i]
}

// Len returns the number of elements.
func (v *Value) Len() int { return v.shape.NumElements() }

// DType returns the storage type of v's data: [backend.Float32], or
// [backend.BFloat16] for a frozen weight stored at half the memory (see
// [UploadParamAs]; only the matrix products, [Tape.Gather]'s table and
// [Tape.ToFloat32] take those). It is 0 for a value without data.
func (v *Value) DType() backend.DType { return v.data.DType() }

// Tensor returns v's data. It is the zero Tensor for the placeholder an op
// returns after an error, and after v's tape was Reset.
func (v *Value) Tensor() backend.Tensor { return v.data }

// Grad returns v's gradient: for a parameter, the gradient accumulated
// since the last ZeroGrad; for other values, the gradient while Backward is
// computing it (intermediate gradients are released as soon as they have
// been propagated). It is the zero Tensor when there is none.
func (v *Value) Grad() backend.Tensor {
	if v.param && !v.hasGrad {
		return backend.Tensor{}
	}
	return v.grad
}

// Download copies v's data to the host. It waits for pending work and
// returns the first error recorded so far (see the package documentation).
func (v *Value) Download() ([]float32, error) {
	return v.download(v.data, "data")
}

// DownloadGrad copies v's gradient to the host; it fails when v has none.
func (v *Value) DownloadGrad() ([]float32, error) {
	return v.download(v.Grad(), "gradient")
}

// Item returns the single element of a one-element value, such as a loss.
func (v *Value) Item() (float32, error) {
	if v.Len() != 1 {
		return 0, fmt.Errorf("graph: Item of a value of shape %v, want one element", v.shape)
	}
	h, err := v.Download()
	if err != nil {
		return 0, err
	}
	return h[0], nil
}

func (v *Value) download(t backend.Tensor, what string) ([]float32, error) {
	if v.tape != nil {
		if err := v.tape.Err(); err != nil {
			return nil, err
		}
	}
	if t.IsZero() {
		switch {
		case v.dropped:
			return nil, fmt.Errorf("graph: download of %s: the value is an intermediate of a checkpointed segment, released when the segment ended", what)
		case v.dead:
			return nil, fmt.Errorf("graph: download of %s: the value's tape was Reset", what)
		default:
			return nil, fmt.Errorf("graph: download of %s %v: there is none", what, v.shape)
		}
	}
	h := make([]float32, t.Len())
	err := v.b.Download(h, t)
	if err != nil && v.tape != nil {
		v.tape.fail(err)
	}
	if err != nil {
		return nil, err
	}
	return h, nil
}

// String describes v for messages: its kind, name and shape.
func (v *Value) String() string {
	kind := "value"
	switch {
	case v.param && v.needsGrad:
		kind = "trainable " + v.name
	case v.param:
		kind = "frozen " + v.name
	case v.needsGrad:
		kind = "value (requires grad)"
	}
	if v.data.DType() == backend.BFloat16 {
		kind += " bfloat16"
	}
	return fmt.Sprintf("%s%v", kind, v.shape)
}
