package backend

import (
	"fmt"
	"math"
	"strings"
)

// DType is the element type of a buffer.
type DType uint8

const (
	// Float32 is IEEE-754 binary32, the compute type of every op.
	Float32 DType = iota + 1
	// BFloat16 is bfloat16: binary32's sign, exponent and top 7 fraction
	// bits. It is a storage type only, for frozen weights at half the
	// memory: a backend that reports [OpMatMulBF16] allocates it, uploads
	// float32 into it rounding to nearest even, downloads it exactly, copies
	// it into float32 tensors, and takes it as MatMul's B operand and as
	// Gather's table; no other op accepts it.
	BFloat16
)

// Size returns the number of bytes of one element.
func (d DType) Size() int {
	switch d {
	case Float32:
		return 4
	case BFloat16:
		return 2
	}
	return 0
}

func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case BFloat16:
		return "bfloat16"
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Shape lists the extent of each axis, outermost first.
type Shape []int

// NumElements returns the product of the extents (1 for a scalar shape).
func (s Shape) NumElements() int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Equal reports whether s and t have the same rank and extents.
func (s Shape) Equal(t Shape) bool {
	if len(s) != len(t) {
		return false
	}
	for i := range s {
		if s[i] != t[i] {
			return false
		}
	}
	return true
}

// Rows returns the number of rows (the product of all axes but the last)
// and the row length (the last axis). A scalar shape is one row of one.
func (s Shape) Rows() (rows, cols int) {
	if len(s) == 0 {
		return 1, 1
	}
	cols = s[len(s)-1]
	return s[:len(s)-1].NumElements(), cols
}

// ContiguousStrides returns the row-major element strides of s.
func (s Shape) ContiguousStrides() []int {
	st := make([]int, len(s))
	n := 1
	for i := len(s) - 1; i >= 0; i-- {
		st[i] = n
		n *= s[i]
	}
	return st
}

func (s Shape) String() string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, d)
	}
	b.WriteByte(']')
	return b.String()
}

// Buffer is a block of device memory owned by one backend. Only the backend
// that allocated a buffer may read or write it; a backend given a foreign
// buffer records an error.
type Buffer interface {
	// Len returns the number of elements the buffer holds.
	Len() int
	// DType returns the element type.
	DType() DType
}

// Tensor is a view of a [Buffer]: an element offset, a shape and, for
// non-contiguous views, element strides. Tensors are small values; copying
// one copies the view, not the data. The zero Tensor is "no tensor" and is
// accepted where an op documents an optional argument.
type Tensor struct {
	buf     Buffer
	off     int
	shape   Shape
	strides []int // nil means contiguous row-major
}

// NewTensor returns a contiguous view of buf with the given shape, starting
// at element off. It returns an error if the view does not fit in buf.
// Backends call it from Alloc; model code uses Alloc, View and Reshape.
func NewTensor(buf Buffer, off int, shape ...int) (Tensor, error) {
	s := Shape(append([]int(nil), shape...))
	n, overflow, empty := 1, false, false
	for _, d := range s {
		if d < 0 {
			return Tensor{}, fmt.Errorf("backend: negative extent in shape %v", s)
		}
		if d > 0 && n > math.MaxInt/d {
			overflow = true
		}
		n *= d
		empty = empty || d == 0
	}
	// An element count that overflows int wraps (to 0, say) and could pass
	// the bounds check below; a zero extent makes the true count 0.
	if overflow && !empty {
		return Tensor{}, fmt.Errorf("backend: shape %v has more elements than an int can count", s)
	}
	if buf == nil {
		return Tensor{}, fmt.Errorf("backend: nil buffer")
	}
	if off < 0 || off+s.NumElements() > buf.Len() {
		return Tensor{}, fmt.Errorf("backend: view of %d elements at offset %d exceeds buffer of %d", s.NumElements(), off, buf.Len())
	}
	return Tensor{buf: buf, off: off, shape: s}, nil
}

// IsZero reports whether t is the zero Tensor (no buffer).
func (t Tensor) IsZero() bool { return t.buf == nil }

// Buffer returns the device buffer t views.
func (t Tensor) Buffer() Buffer { return t.buf }

// Offset returns the element offset of t's first element in its buffer.
func (t Tensor) Offset() int { return t.off }

// Shape returns t's shape. The caller must not modify it.
func (t Tensor) Shape() Shape { return t.shape }

// Rank returns the number of axes.
func (t Tensor) Rank() int { return len(t.shape) }

// Dim returns the extent of axis i; negative i counts from the end. Like
// indexing, it panics when i is out of range.
func (t Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// Len returns the number of elements in the view.
func (t Tensor) Len() int { return t.shape.NumElements() }

// DType returns the element type of the underlying buffer.
func (t Tensor) DType() DType {
	if t.buf == nil {
		return 0
	}
	return t.buf.DType()
}

// Strides returns the element strides of each axis.
func (t Tensor) Strides() []int {
	if t.strides == nil {
		return t.shape.ContiguousStrides()
	}
	return t.strides
}

// Contiguous reports whether t's elements are laid out densely in row-major
// order, as every op but Copy requires.
func (t Tensor) Contiguous() bool {
	if t.strides == nil {
		return true
	}
	// Every op checks its arguments with this, so it computes the row-major
	// strides as it goes rather than allocating them.
	want := 1
	for i := len(t.shape) - 1; i >= 0; i-- {
		if t.shape[i] != 1 && t.strides[i] != want {
			return false
		}
		want *= t.shape[i]
	}
	return true
}

// Rows returns t's number of rows and row length (see [Shape.Rows]).
func (t Tensor) Rows() (rows, cols int) { return t.shape.Rows() }

// Reshape returns a view of the same contiguous elements with a new shape of
// the same number of elements. One extent may be -1, inferred from the rest.
//
// Reshape allocates nothing when the shape does not change, and otherwise
// keeps shape itself, without copying it, unless it has to infer an
// extent. A caller that passes a slice (t.Reshape(s...)) must therefore
// not modify s afterwards, the rule that already holds for the slice
// [Tensor.Shape] returns: shapes are read-only once a view holds them.
// Listing the extents (t.Reshape(rows, cols)) makes a fresh slice each
// call, so it needs no care.
func (t Tensor) Reshape(shape ...int) (Tensor, error) {
	if !t.Contiguous() {
		return Tensor{}, fmt.Errorf("backend: reshape of non-contiguous view %v", t.shape)
	}
	infer := -1
	known := 1
	for i, d := range shape {
		switch {
		case d == -1 && infer < 0:
			infer = i
		case d < 0:
			return Tensor{}, fmt.Errorf("backend: bad extent %d in reshape to %v", d, Shape(shape))
		default:
			known *= d
		}
	}
	n := t.Len()
	inferred := 0
	if infer >= 0 {
		if known == 0 || n%known != 0 {
			return Tensor{}, fmt.Errorf("backend: cannot infer axis %d reshaping %v to %v", infer, t.shape, Shape(shape))
		}
		inferred = n / known
	} else if known != n {
		return Tensor{}, fmt.Errorf("backend: reshape %v (%d elements) to %v (%d elements)", t.shape, n, Shape(shape), known)
	}
	if sameShape(t.shape, shape, infer, inferred) {
		return Tensor{buf: t.buf, off: t.off, shape: t.shape}, nil
	}
	s := Shape(shape)
	if infer >= 0 {
		// The caller's slice must not be written: copy it.
		s = append(Shape(nil), shape...)
		s[infer] = inferred
	}
	return Tensor{buf: t.buf, off: t.off, shape: s}, nil
}

// sameShape reports whether shape, with the extent at index infer (if
// any) replaced by inferred, equals s.
func sameShape(s Shape, shape []int, infer, inferred int) bool {
	if len(s) != len(shape) {
		return false
	}
	for i, d := range shape {
		if i == infer {
			d = inferred
		}
		if s[i] != d {
			return false
		}
	}
	return true
}

// MustReshape is Reshape for shapes the caller has already checked; it
// panics on a mismatch, which is a programming error.
func (t Tensor) MustReshape(shape ...int) Tensor {
	r, err := t.Reshape(shape...)
	if err != nil {
		panic(err)
	}
	return r
}

// Slice returns the contiguous view of rows [from, to) along axis 0. The
// whole axis is t itself, and allocates nothing.
func (t Tensor) Slice(from, to int) (Tensor, error) {
	if !t.Contiguous() || len(t.shape) == 0 {
		return Tensor{}, fmt.Errorf("backend: slice of non-contiguous or scalar view %v", t.shape)
	}
	if from < 0 || to < from || to > t.shape[0] {
		return Tensor{}, fmt.Errorf("backend: slice [%d:%d] of axis 0 with extent %d", from, to, t.shape[0])
	}
	if from == 0 && to == t.shape[0] {
		return Tensor{buf: t.buf, off: t.off, shape: t.shape}, nil
	}
	inner := t.shape[1:].NumElements()
	s := append(Shape{to - from}, t.shape[1:]...)
	return Tensor{buf: t.buf, off: t.off + from*inner, shape: s}, nil
}

// MustSlice is Slice for ranges the caller has already checked; it panics on
// a bad range, which is a programming error.
func (t Tensor) MustSlice(from, to int) Tensor {
	r, err := t.Slice(from, to)
	if err != nil {
		panic(err)
	}
	return r
}

// Strided returns a general view of t's buffer: shape and element strides
// relative to the element offset off (itself relative to t's offset). It is
// how permutations, broadcasts (stride 0), column slices and KV-cache
// windows are expressed for [Backend.Copy]. It returns an error if any
// element of the view falls outside the buffer.
func (t Tensor) Strided(off int, shape Shape, strides []int) (Tensor, error) {
	if len(shape) != len(strides) {
		return Tensor{}, fmt.Errorf("backend: %d strides for shape %v", len(strides), shape)
	}
	outside := func() error {
		return fmt.Errorf("backend: strided view %v/%v at offset %d outside buffer", shape, strides, off)
	}
	if t.buf == nil {
		return Tensor{}, outside()
	}
	empty := false
	for _, d := range shape {
		if d < 0 {
			return Tensor{}, fmt.Errorf("backend: negative extent in shape %v", shape)
		}
		empty = empty || d == 0
	}
	if !empty {
		// Each bound is checked as it moves, and a span is formed only
		// once it is known to be shorter than the buffer, so that no sum
		// or product can wrap around int to land back inside.
		n := t.buf.Len()
		if off < -t.off || off >= n-t.off {
			return Tensor{}, outside()
		}
		lo, hi := t.off+off, t.off+off
		for i, d := range shape {
			st := strides[i]
			if d == 1 || st == 0 {
				continue
			}
			if st < -n || st > n || d-1 > n/max(st, -st) {
				return Tensor{}, outside()
			}
			if span := (d - 1) * st; span < 0 {
				lo += span
			} else {
				hi += span
			}
			if lo < 0 || hi >= n {
				return Tensor{}, outside()
			}
		}
	}
	return Tensor{buf: t.buf, off: t.off + off, shape: append(Shape(nil), shape...), strides: append([]int(nil), strides...)}, nil
}

// Permute returns a strided view of t with its axes reordered:
// axis i of the result is axis perm[i] of t. Materialise it with Copy.
func (t Tensor) Permute(perm ...int) (Tensor, error) {
	if len(perm) != len(t.shape) {
		return Tensor{}, fmt.Errorf("backend: permutation %v for rank %d", perm, len(t.shape))
	}
	src := t.Strides()
	seen := make([]bool, len(perm))
	shape := make(Shape, len(perm))
	strides := make([]int, len(perm))
	for i, p := range perm {
		if p < 0 || p >= len(perm) || seen[p] {
			return Tensor{}, fmt.Errorf("backend: %v is not a permutation", perm)
		}
		seen[p] = true
		shape[i] = t.shape[p]
		strides[i] = src[p]
	}
	return Tensor{buf: t.buf, off: t.off, shape: shape, strides: strides}, nil
}

func (t Tensor) String() string {
	if t.buf == nil {
		return "Tensor(nil)"
	}
	if t.strides != nil {
		return fmt.Sprintf("Tensor(%s%v@%d strides %v)", t.DType(), t.shape, t.off, t.strides)
	}
	return fmt.Sprintf("Tensor(%s%v@%d)", t.DType(), t.shape, t.off)
}
