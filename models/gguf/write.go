package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/sora-go/sora/internal/atomicfile"
	"github.com/sora-go/sora/internal/float16"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the GGUF version this package writes (and the only one it
// reads).
const Version = 3

// DefaultAlignment is the alignment of tensor data where a file has no
// general.alignment entry.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that sets the alignment.
const KeyAlignment = "general.alignment"

// MaxNameLen is the longest tensor name ggml accepts, in bytes (its
// GGML_MAX_NAME, 64, less the terminating zero).
const MaxNameLen = 63

// MaxDims is the most dimensions a tensor may have (GGML_MAX_DIMS).
const MaxDims = 4

// Tensor is a tensor to write: its name, shape (outermost first, as Go and
// PyTorch give it: a [out, in] weight is written with GGUF dimensions in,
// out), the type to store it as, and where its values come from.
type Tensor struct {
	Name  string
	Shape []int
	Type  Type
	// Read fills dst with the float32 values of rows [row0,
	// row0+len(dst)/cols) of the tensor, in row-major order, where a row
	// is the values for one index of the outermost dimension and cols
	// their number (the product of the other extents; 1 for a vector,
	// whose rows are its elements). dst always holds a whole number of
	// rows and is reused after the call.
	Read func(row0 int, dst []float32) error
}

// slabBytes bounds the float32 buffer Write reads tensors through, as
// llama.LoadSlabBytes bounds a model's load: a tensor is read in runs of
// whole rows of at most this many bytes in float32 (one row where a row is
// longer).
const slabBytes = 32 << 20

// slab is slabBytes in values, which tests lower.
var slab = slabBytes / 4

// layout is a tensor's place in a file.
type layout struct {
	rows, cols int
	bytes      int64 // its data's size
	offset     int64 // from the start of the data section
}

// plan checks tensors and computes where each goes, given the alignment.
func plan(tensors []Tensor, align int64) ([]layout, error) {
	out := make([]layout, len(tensors))
	names := make(map[string]bool, len(tensors))
	var off int64
	for i, t := range tensors {
		switch {
		case t.Name == "" || len(t.Name) > MaxNameLen:
			return nil, fmt.Errorf("tensor %d has a name of %d bytes; expected 1 to %d", i, len(t.Name), MaxNameLen)
		case names[t.Name]:
			return nil, fmt.Errorf("two tensors are named %q", t.Name)
		case len(t.Shape) < 1 || len(t.Shape) > MaxDims:
			return nil, fmt.Errorf("tensor %s has %d dimensions; expected 1 to %d", t.Name, len(t.Shape), MaxDims)
		case t.Read == nil:
			return nil, fmt.Errorf("tensor %s has no Read function", t.Name)
		}
		names[t.Name] = true
		n := int64(1)
		for _, d := range t.Shape {
			if d < 1 || int64(d) > 1<<40 || n > math.MaxInt64/int64(d) {
				return nil, fmt.Errorf("tensor %s has shape %v; expected positive extents whose product fits in int64", t.Name, t.Shape)
			}
			n *= int64(d)
		}
		inner := int64(t.Shape[len(t.Shape)-1])
		rowBytes, err := t.Type.RowBytes(inner)
		if err != nil {
			return nil, fmt.Errorf("tensor %s %v: %w", t.Name, t.Shape, err)
		}
		if n > math.MaxInt {
			return nil, fmt.Errorf("tensor %s has %d values, too many for this platform", t.Name, n)
		}
		l := layout{rows: t.Shape[0], cols: int(n / int64(t.Shape[0])), bytes: n / inner * rowBytes, offset: off}
		out[i] = l
		off = alignUp(off+l.bytes, align)
	}
	return out, nil
}

func alignUp(n, align int64) int64 { return (n + align - 1) / align * align }

// alignmentOf returns the alignment that kv sets (general.alignment, which
// must be a uint32 power of two of at least 8), or DefaultAlignment.
func alignmentOf(kv []KV) (int64, error) {
	for _, e := range kv {
		if e.Key != KeyAlignment {
			continue
		}
		if e.Value.Type() != TypeUint32 {
			return 0, fmt.Errorf("%s is a %s; expected a uint32", KeyAlignment, e.Value.Type())
		}
		a, _ := e.Value.Int()
		if a < 8 || a&(a-1) != 0 {
			return 0, fmt.Errorf("%s = %d; expected a power of two of at least 8", KeyAlignment, a)
		}
		return a, nil
	}
	return DefaultAlignment, nil
}

// Write writes a GGUF file holding the metadata kv (in order) and the
// tensors (in order) to path, through a temporary file in the same folder
// renamed into place once complete (missing parent folders are created; on
// error path is left as it was). Each tensor's values are read with its
// Read function a slab of rows at a time and converted to its type; Q8_0
// needs an innermost extent that is a multiple of QK8_0. Keys must be
// unique printable ASCII, tensor names unique and at most MaxNameLen bytes,
// and shapes of 1 to MaxDims positive extents; general.alignment, where
// given, must be a uint32 power of two of at least 8.
func Write(path string, kv []KV, tensors []Tensor) error {
	if err := checkWrite(kv); err != nil {
		return fmt.Errorf("gguf: %s: %w", path, err)
	}
	align, err := alignmentOf(kv)
	if err != nil {
		return fmt.Errorf("gguf: %s: %w", path, err)
	}
	lays, err := plan(tensors, align)
	if err != nil {
		return fmt.Errorf("gguf: %s: %w", path, err)
	}
	err = atomicfile.Write(path, func(w *bufio.Writer) error {
		return write(w, kv, tensors, lays, align)
	})
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	return nil
}

// checkWrite checks the metadata: valid, unique keys and values of the
// types this package writes, arrays not nested.
func checkWrite(kv []KV) error {
	seen := make(map[string]bool, len(kv))
	for _, e := range kv {
		if err := checkKey(e.Key); err != nil {
			return err
		}
		if seen[e.Key] {
			return fmt.Errorf("metadata key %q appears twice", e.Key)
		}
		seen[e.Key] = true
		t := e.Value.Type()
		if t == TypeArray {
			t = e.Value.ElemType()
			if t == TypeArray {
				return fmt.Errorf("metadata %s is an array of arrays, which this package does not write", e.Key)
			}
		}
		if t != TypeString && t.size() == 0 {
			return fmt.Errorf("metadata %s has invalid type %s", e.Key, t)
		}
	}
	return nil
}

// encoder writes little-endian values and counts the bytes.
type encoder struct {
	w   io.Writer
	n   int64
	buf [8]byte
	err error
}

func (e *encoder) bytes(b []byte) {
	if e.err != nil {
		return
	}
	var n int
	n, e.err = e.w.Write(b)
	e.n += int64(n)
}

func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:4], v)
	e.bytes(e.buf[:4])
}

func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:8], v)
	e.bytes(e.buf[:8])
}

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		var n int
		n, e.err = io.WriteString(e.w, s)
		e.n += int64(n)
	}
}

// scalar writes one value of fixed-size type t held as num.
func (e *encoder) scalar(t ValueType, num uint64) {
	switch t.size() {
	case 1:
		e.bytes([]byte{byte(num)})
	case 2:
		binary.LittleEndian.PutUint16(e.buf[:2], uint16(num))
		e.bytes(e.buf[:2])
	case 4:
		if t == TypeFloat32 {
			num = uint64(math.Float32bits(float32(math.Float64frombits(num))))
		}
		e.u32(uint32(num))
	case 8:
		e.u64(num)
	}
}

func (e *encoder) value(v Value) {
	switch v.typ {
	case TypeString:
		e.str(v.str)
	case TypeArray:
		e.u32(uint32(v.elem))
		e.u64(uint64(v.Len()))
		if v.elem == TypeString {
			for _, s := range v.strs {
				e.str(s)
			}
			return
		}
		for _, n := range v.nums {
			e.scalar(v.elem, n)
		}
	default:
		e.scalar(v.typ, v.num)
	}
}

func (e *encoder) pad(align int64) {
	if n := alignUp(e.n, align) - e.n; n > 0 {
		e.bytes(make([]byte, n))
	}
}

func write(w io.Writer, kv []KV, tensors []Tensor, lays []layout, align int64) error {
	e := &encoder{w: w}
	e.bytes([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kv)))
	for _, x := range kv {
		e.str(x.Key)
		e.u32(uint32(x.Value.typ))
		e.value(x.Value)
	}
	for i, t := range tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Shape)))
		for d := len(t.Shape) - 1; d >= 0; d-- {
			e.u64(uint64(t.Shape[d]))
		}
		e.u32(uint32(t.Type))
		e.u64(uint64(lays[i].offset))
	}
	e.pad(align)
	if e.err != nil {
		return e.err
	}
	start := e.n
	var buf []float32
	var out []byte
	for i, t := range tensors {
		l := lays[i]
		if e.n-start != l.offset {
			return fmt.Errorf("tensor %s: at data offset %d, planned %d", t.Name, e.n-start, l.offset)
		}
		per := max(1, slab/max(l.cols, 1))
		for r0 := 0; r0 < l.rows; r0 += per {
			r1 := min(l.rows, r0+per)
			n := (r1 - r0) * l.cols
			if cap(buf) < n {
				buf = make([]float32, n)
			}
			if err := t.Read(r0, buf[:n]); err != nil {
				return fmt.Errorf("tensor %s, rows [%d, %d): %w", t.Name, r0, r1, err)
			}
			var err error
			if out, err = encode(out, t.Type, buf[:n]); err != nil {
				return fmt.Errorf("tensor %s: %w", t.Name, err)
			}
			e.bytes(out)
		}
		e.pad(align)
		if e.err != nil {
			return e.err
		}
	}
	return e.err
}

// encode converts x to type t, into out (grown as needed); x is whole rows,
// so for Q8_0 a multiple of QK8_0 values.
func encode(out []byte, t Type, x []float32) ([]byte, error) {
	n, err := t.RowBytes(int64(len(x)))
	if err != nil {
		return nil, err
	}
	if int64(cap(out)) < n {
		out = make([]byte, n)
	}
	out = out[:n]
	switch t {
	case F32:
		for i, v := range x {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range x {
			binary.LittleEndian.PutUint16(out[2*i:], float16.HalfBits(v))
		}
	case BF16:
		for i, v := range x {
			binary.LittleEndian.PutUint16(out[2*i:], float16.BF16Bits(v))
		}
	case Q8_0:
		if err := QuantizeQ8_0(out, x); err != nil {
			return nil, err
		}
	}
	return out, nil
}
