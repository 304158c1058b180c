package devpool

import "github.com/sora-go/sora/backend"

// Buffer is the backend.Buffer of the device backends: float32 elements in
// one block of a Pool. B is the backend's type; each backend names
// Buffer[itself] as its buffer type, so the buffers of the two backends are
// distinct types and neither backend's type assertion accepts the other's.
//
// Owner lets an op refuse a tensor that another backend instance
// allocated, whose address means nothing on this one's device. Freed is set
// when the block goes back to the pool, so that a later use or a second
// free is reported instead of touching a block that may already belong to
// another tensor.
type Buffer[B any] struct {
	Owner *B
	Ptr   uintptr // device address of element 0
	N     int     // elements
	Class int64   // bytes of the pool block, to give it back with Put
	Freed bool
}

// Len returns the number of elements.
func (x *Buffer[B]) Len() int { return x.N }

// DType returns backend.Float32, the only type the device backends hold.
func (x *Buffer[B]) DType() backend.DType { return backend.Float32 }

var _ backend.Buffer = (*Buffer[struct{}])(nil)
