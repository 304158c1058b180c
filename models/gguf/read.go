package gguf

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/sora-go/sora/internal/float16"
)

// TensorInfo describes a tensor of a file: its name, shape (outermost
// first: GGUF's dimensions reversed), type, and where its data is.
type TensorInfo struct {
	Name  string
	Shape []int
	Type  Type
	// Offset is the position of the data from the start of the file's
	// data section (as the file stores it); Size is its length in bytes.
	Offset, Size int64
}

// NumElements returns the number of values of the tensor.
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// File is a GGUF file's header, metadata and tensor infos, read by Open or
// Read; File.ReadFloat32 reads tensor data on demand.
type File struct {
	// Name is the path (or name) the file was read as, for messages.
	Name    string
	Version uint32
	// KV is the metadata in file order.
	KV      []KV
	Tensors []TensorInfo
	// Alignment is the file's alignment (general.alignment, or
	// DefaultAlignment), DataOffset where its data section starts.
	Alignment  int64
	DataOffset int64

	r      io.ReaderAt
	size   int64
	closer io.Closer
	kv     map[string]int
	byName map[string]int
}

// Open reads the header, metadata and tensor infos of the GGUF file at path
// (see Read) and keeps the file open for ReadFloat32; Close it when done.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("gguf: %w", err)
	}
	g, err := Read(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	g.closer = f
	return g, nil
}

// Close closes the file Open opened (a no-op for a File from Read).
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	// Reading tensors from here on says the file is closed.
	f.closer, f.r = nil, nil
	return err
}

// Read reads the header, metadata and tensor infos of a GGUF file of size
// bytes from r; name is used in errors. Every count and length is checked
// against the bytes that remain before anything is allocated for it, so a
// damaged or hostile file gets an error, never a huge allocation or a
// panic. It refuses a version other than 3, a duplicate key or tensor name,
// an unknown value type, a nested array, a bool other than 0 or 1, an
// alignment that is not a power of two, a tensor with more than MaxDims
// dimensions, of a type other than F32, F16, BF16 and Q8_0, whose size
// overflows, whose offset is not aligned, whose data lies beyond the end
// of the file, or whose data overlaps another tensor's. Errors name the
// file, the field and its byte offset.
func Read(r io.ReaderAt, size int64, name string) (*File, error) {
	d := &decoder{r: r, size: size, name: name}
	f := &File{Name: name, r: r, size: size, kv: map[string]int{}, byName: map[string]int{}}
	magic := d.fixed("magic", 4)
	if d.err == nil && string(magic) != Magic {
		return nil, d.fail(0, "magic", "%q is not %q: not a GGUF file", magic, Magic)
	}
	f.Version = d.u32("version")
	if d.err == nil && f.Version != Version {
		return nil, d.fail(4, "version", "%d; only version %d is supported", f.Version, Version)
	}
	at := d.off
	nTensors := d.u64("tensor_count")
	nKV := d.u64("metadata_kv_count")
	if d.err != nil {
		return nil, d.err
	}
	// Each entry takes at least 8+4+1 bytes (a key length, a type and
	// the smallest value), each tensor info 8+4+8+4+8.
	if nKV > uint64(d.left()/13) {
		return nil, d.fail(at+8, "metadata_kv_count", "%d entries cannot fit in the %d bytes that follow", nKV, d.left())
	}
	for i := uint64(0); i < nKV; i++ {
		keyAt := d.off
		key := d.str(fmt.Sprintf("metadata[%d].key", i))
		if d.err != nil {
			return nil, d.err
		}
		if _, dup := f.kv[key]; dup {
			return nil, d.fail(keyAt, fmt.Sprintf("metadata[%d].key", i), "key %q appears twice", key)
		}
		v := d.value(key)
		if d.err != nil {
			return nil, d.err
		}
		f.kv[key] = len(f.KV)
		f.KV = append(f.KV, KV{key, v})
	}
	if nTensors > uint64(d.left()/32) {
		return nil, d.fail(at, "tensor_count", "%d tensors cannot fit in the %d bytes that follow the metadata", nTensors, d.left())
	}
	f.Alignment = DefaultAlignment
	if i, ok := f.kv[KeyAlignment]; ok {
		v := f.KV[i].Value
		a, isInt := v.Int()
		if v.Type() != TypeUint32 || !isInt || a == 0 || a&(a-1) != 0 {
			return nil, d.fail(-1, KeyAlignment, "%s %s; expected a uint32 power of two", v.Type(), v)
		}
		f.Alignment = a
	}
	for i := uint64(0); i < nTensors; i++ {
		ti := d.tensorInfo(int(i), f.Alignment)
		if d.err != nil {
			return nil, d.err
		}
		if _, dup := f.byName[ti.Name]; dup {
			return nil, d.fail(-1, fmt.Sprintf("tensor[%d].name", i), "two tensors are named %q", ti.Name)
		}
		f.byName[ti.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, ti)
	}
	f.DataOffset = alignUp(d.off, f.Alignment)
	for i, t := range f.Tensors {
		if t.Offset > size-f.DataOffset || t.Size > size-f.DataOffset-t.Offset {
			return nil, d.fail(-1, fmt.Sprintf("tensor[%d] %s", i, t.Name), "data [%d, %d) past the data section's start at %d lies beyond the end of the file (%d bytes)", t.Offset, t.Offset+t.Size, f.DataOffset, size)
		}
	}
	if err := f.checkOverlap(d); err != nil {
		return nil, err
	}
	return f, nil
}

// checkOverlap refuses tensors whose data ranges share a byte (a tensor of
// no bytes shares none). Sorted by offset (by index where offsets tie),
// the tensors are checked in turn against the one before: as long as none
// overlaps the one before it, each ends beyond every earlier one, so the
// first overlap of any two shows as a tensor overlapping the one before.
func (f *File) checkOverlap(d *decoder) error {
	order := make([]int, 0, len(f.Tensors))
	for i, t := range f.Tensors {
		if t.Size > 0 {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(f.Tensors[a].Offset, f.Tensors[b].Offset), cmp.Compare(a, b))
	})
	for k := 1; k < len(order); k++ {
		i, j := order[k], order[k-1]
		t, p := f.Tensors[i], f.Tensors[j]
		if t.Offset < p.Offset+p.Size {
			return d.fail(-1, fmt.Sprintf("tensor[%d] %s", i, t.Name), "data [%d, %d) past the data section's start overlaps the data [%d, %d) of tensor[%d] %s", t.Offset, t.Offset+t.Size, p.Offset, p.Offset+p.Size, j, p.Name)
		}
	}
	return nil
}

// Get returns the metadata value of key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.kv[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// Tensor returns the info of the tensor named name.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}

// ReadFloat32 reads the tensor named name and returns its values as
// float32, in row-major order (outermost dimension first).
func (f *File) ReadFloat32(name string) ([]float32, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("gguf: %s has no tensor %q", f.Name, name)
	}
	if f.r == nil {
		return nil, fmt.Errorf("gguf: %s: reading tensor %s: the file is closed", f.Name, name)
	}
	n := t.NumElements()
	// Read checked that the data lies within the file, which bounds
	// both allocations by the file's size.
	if n > math.MaxInt || t.Size > math.MaxInt {
		return nil, fmt.Errorf("gguf: %s: tensor %s has %d values; too many for this platform", f.Name, name, n)
	}
	raw := make([]byte, t.Size)
	at := f.DataOffset + t.Offset
	// An io.ReaderAt may return io.EOF with a complete read that ends at
	// the end of the file.
	if got, err := f.r.ReadAt(raw, at); err != nil && !(errors.Is(err, io.EOF) && got == len(raw)) {
		return nil, fmt.Errorf("gguf: %s: reading tensor %s at offset %d: %w", f.Name, name, at, err)
	}
	out := make([]float32, n)
	switch t.Type {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = float16.HalfToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = float16.BF16ToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case Q8_0:
		if err := DequantizeQ8_0(out, raw); err != nil {
			return nil, fmt.Errorf("gguf: %s: tensor %s: %w", f.Name, name, err)
		}
	}
	return out, nil
}

// decoder reads little-endian fields in order, remembering the first
// error.
type decoder struct {
	r    io.ReaderAt
	size int64
	name string
	off  int64
	err  error
	buf  [8]byte
}

func (d *decoder) left() int64 { return d.size - d.off }

// fail records and returns an error about field at byte offset at (-1 for
// none).
func (d *decoder) fail(at int64, field, format string, args ...any) error {
	where := ""
	if at >= 0 {
		where = fmt.Sprintf(" at offset %d", at)
	}
	err := fmt.Errorf("gguf: %s: %s%s: %s", d.name, field, where, fmt.Sprintf(format, args...))
	if d.err == nil {
		d.err = err
	}
	return err
}

// fixed reads n bytes (n ≤ 8 or checked against the file by the caller).
func (d *decoder) fixed(field string, n int64) []byte {
	if d.err != nil {
		return nil
	}
	if n > d.left() {
		d.fail(d.off, field, "needs %d bytes, %d remain (the file is truncated)", n, max(d.left(), 0))
		return nil
	}
	var b []byte
	if n <= 8 {
		b = d.buf[:n]
	} else {
		b = make([]byte, n)
	}
	if _, err := d.r.ReadAt(b, d.off); err != nil && !(errors.Is(err, io.EOF) && d.off+n == d.size) {
		d.fail(d.off, field, "%v", err)
		return nil
	}
	d.off += n
	return b
}

func (d *decoder) u32(field string) uint32 {
	b := d.fixed(field, 4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (d *decoder) u64(field string) uint64 {
	b := d.fixed(field, 8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func (d *decoder) str(field string) string {
	at := d.off
	n := d.u64(field + " length")
	if d.err != nil {
		return ""
	}
	if n > uint64(d.left()) {
		d.fail(at, field, "string of %d bytes; only %d remain in the file", n, d.left())
		return ""
	}
	return string(d.fixed(field, int64(n)))
}

// scalar reads one value of the fixed-size type t, as Value's num holds it.
func (d *decoder) scalar(field string, t ValueType) uint64 {
	at := d.off
	b := d.fixed(field, int64(t.size()))
	if b == nil {
		return 0
	}
	switch t {
	case TypeUint8:
		return uint64(b[0])
	case TypeInt8:
		return uint64(int64(int8(b[0])))
	case TypeBool:
		if b[0] > 1 {
			d.fail(at, field, "bool byte %d; expected 0 or 1", b[0])
		}
		return uint64(b[0])
	case TypeUint16:
		return uint64(binary.LittleEndian.Uint16(b))
	case TypeInt16:
		return uint64(int64(int16(binary.LittleEndian.Uint16(b))))
	case TypeUint32:
		return uint64(binary.LittleEndian.Uint32(b))
	case TypeInt32:
		return uint64(int64(int32(binary.LittleEndian.Uint32(b))))
	case TypeFloat32:
		return math.Float64bits(float64(math.Float32frombits(binary.LittleEndian.Uint32(b))))
	}
	return binary.LittleEndian.Uint64(b) // uint64, int64, float64
}

func (d *decoder) value(key string) Value {
	at := d.off
	t := ValueType(d.u32(key + " type"))
	if d.err != nil {
		return Value{}
	}
	switch {
	case t == TypeString:
		return String(d.str(key))
	case t == TypeArray:
		return d.array(key)
	case t.size() == 0:
		d.fail(at, key+" type", "unknown value type %d", uint32(t))
		return Value{}
	}
	return Value{typ: t, num: d.scalar(key, t)}
}

func (d *decoder) array(key string) Value {
	at := d.off
	elem := ValueType(d.u32(key + " element type"))
	n := d.u64(key + " array length")
	if d.err != nil {
		return Value{}
	}
	v := Value{typ: TypeArray, elem: elem}
	switch {
	case elem == TypeArray:
		d.fail(at, key, "array of arrays, which llama.cpp does not read either")
		return Value{}
	case elem == TypeString:
		if n > uint64(d.left()/8) {
			d.fail(at+4, key+" array length", "%d strings cannot fit in the %d bytes that remain", n, d.left())
			return Value{}
		}
		v.strs = make([]string, n)
		for i := range v.strs {
			v.strs[i] = d.str(fmt.Sprintf("%s[%d]", key, i))
			if d.err != nil {
				return Value{}
			}
		}
		return v
	case elem.size() == 0:
		d.fail(at, key+" element type", "unknown value type %d", uint32(elem))
		return Value{}
	}
	if n > uint64(d.left()/int64(elem.size())) {
		d.fail(at+4, key+" array length", "%d %s values cannot fit in the %d bytes that remain", n, elem, d.left())
		return Value{}
	}
	v.nums = make([]uint64, n)
	for i := range v.nums {
		v.nums[i] = d.scalar(key, elem)
		if d.err != nil {
			return Value{}
		}
	}
	return v
}

func (d *decoder) tensorInfo(i int, align int64) TensorInfo {
	field := fmt.Sprintf("tensor[%d]", i)
	var t TensorInfo
	at := d.off
	t.Name = d.str(field + ".name")
	if d.err != nil {
		return t
	}
	if len(t.Name) > MaxNameLen {
		d.fail(at, field+".name", "name %.80q of %d bytes; at most %d", t.Name, len(t.Name), MaxNameLen)
		return t
	}
	field = fmt.Sprintf("tensor[%d] %s", i, t.Name)
	at = d.off
	nd := d.u32(field + " n_dimensions")
	if d.err != nil {
		return t
	}
	if nd < 1 || nd > MaxDims {
		d.fail(at, field+" n_dimensions", "%d; expected 1 to %d", nd, MaxDims)
		return t
	}
	dims := make([]uint64, nd)
	count := int64(1)
	for j := range dims {
		at := d.off
		dims[j] = d.u64(fmt.Sprintf("%s dimension %d", field, j))
		if d.err != nil {
			return t
		}
		if dims[j] > math.MaxInt32*1024 || uint64(dims[j]) > math.MaxInt || (dims[j] > 0 && count > math.MaxInt64/int64(dims[j])) {
			d.fail(at, fmt.Sprintf("%s dimension %d", field, j), "%d makes the tensor's size overflow", dims[j])
			return t
		}
		count *= int64(dims[j])
	}
	t.Shape = make([]int, nd)
	for j := range dims {
		t.Shape[int(nd)-1-j] = int(dims[j])
	}
	at = d.off
	t.Type = Type(d.u32(field + " type"))
	if d.err != nil {
		return t
	}
	if !t.Type.known() {
		d.fail(at, field+" type", "ggml type %d; this reader handles f32 (0), f16 (1), q8_0 (8) and bf16 (30)", uint32(t.Type))
		return t
	}
	rowBytes, err := t.Type.RowBytes(int64(dims[0]))
	if err != nil {
		d.fail(at, field+" type", "%v", err)
		return t
	}
	if dims[0] == 0 {
		t.Size = 0
	} else if rows := count / int64(dims[0]); rowBytes > 0 && rows > math.MaxInt64/rowBytes {
		d.fail(at, field, "size overflows")
		return t
	} else {
		t.Size = rows * rowBytes
	}
	at = d.off
	off := d.u64(field + " offset")
	if d.err != nil {
		return t
	}
	if off > math.MaxInt64/2 || int64(off)%align != 0 {
		d.fail(at, field+" offset", "%d is not a multiple of the alignment %d", off, align)
		return t
	}
	t.Offset = int64(off)
	return t
}
