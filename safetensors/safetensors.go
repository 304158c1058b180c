// Package safetensors reads and writes the safetensors tensor file format
// used by Hugging Face checkpoints and PEFT adapter files.
//
// A safetensors file is an 8-byte little-endian header length N, then N
// bytes of JSON header, then the tensor data. The header maps each tensor
// name to its dtype, shape and [begin, end) byte offsets relative to the
// start of the data section; an optional "__metadata__" entry maps strings
// to strings. Tensors are stored row-major and little-endian.
//
// Reading validates the whole header before any tensor memory is
// allocated: the header length against the file size, that the header is
// UTF-8, every dtype, shape and offset, that shape × dtype size equals the
// byte length, that names are unique, and that the tensors cover the data
// section contiguously with no gaps or overlaps (the same rules as the
// reference implementation).
// F32, F16 and BF16 tensors can be read as float32; the writer writes F32.
package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/sora-go/sora/internal/atomicfile"
	"github.com/sora-go/sora/internal/float16"
)

// MaxHeaderSize is the largest JSON header accepted, as in the reference
// implementation; it bounds what a hostile file can make a reader allocate.
const MaxHeaderSize = 100_000_000

// DType names a tensor element type as spelled in the header.
type DType string

// The element types of the safetensors format. Only F32, F16 and BF16 can be
// converted to float32; the others are recognised so that a file holding
// them (e.g. integer buffers) can still be opened and its float tensors read.
const (
	F64    DType = "F64"
	F32    DType = "F32"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I64    DType = "I64"
	I32    DType = "I32"
	I16    DType = "I16"
	I8     DType = "I8"
	U64    DType = "U64"
	U32    DType = "U32"
	U16    DType = "U16"
	U8     DType = "U8"
	Bool   DType = "BOOL"
	F8E4M3 DType = "F8_E4M3"
	F8E5M2 DType = "F8_E5M2"
)

// Size returns the number of bytes of one element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64, U64:
		return 8
	case F32, I32, U32:
		return 4
	case F16, BF16, I16, U16:
		return 2
	case I8, U8, Bool, F8E4M3, F8E5M2:
		return 1
	}
	return 0
}

// TensorInfo describes one tensor of a file as its header declares it.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are byte offsets relative to the start of the data
	// section; the tensor occupies [Begin, End).
	Begin, End int64
}

// NumElements returns the product of the shape's extents (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// File is an open safetensors file whose header has been validated. Tensor
// data is read on demand. A File is safe for concurrent reads when its
// underlying io.ReaderAt is (an *os.File is).
type File struct {
	name      string
	r         io.ReaderAt
	closer    io.Closer
	dataStart int64
	tensors   []TensorInfo // ordered by offset
	index     map[string]int
	metadata  map[string]string
}

// Open opens and validates the safetensors file at path. Close it when done.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := NewFile(fh, st.Size(), path)
	if err != nil {
		fh.Close()
		return nil, err
	}
	f.closer = fh
	return f, nil
}

// NewFile validates the safetensors data of the given size readable through
// r. name is used in error messages (typically the file path).
func NewFile(r io.ReaderAt, size int64, name string) (*File, error) {
	fail := func(format string, args ...any) (*File, error) {
		return nil, fmt.Errorf("safetensors: %s: %s", name, fmt.Sprintf(format, args...))
	}
	if size < 8 {
		return fail("file is %d bytes, too short for the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if err := readAt(r, lenBuf[:], 0); err != nil {
		return fail("reading header length: %v", err)
	}
	hlen := binary.LittleEndian.Uint64(lenBuf[:])
	// Checked before allocating the header buffer: a corrupt length must not
	// make us allocate more than the file holds.
	if hlen > uint64(size-8) {
		return fail("header length %d exceeds the %d bytes that follow it in the file", hlen, size-8)
	}
	if hlen > MaxHeaderSize {
		return fail("header length %d exceeds the limit of %d bytes", hlen, MaxHeaderSize)
	}
	if hlen < 2 {
		return fail("header length %d is too short for a JSON object", hlen)
	}
	header := make([]byte, hlen)
	if err := readAt(r, header, 8); err != nil {
		return fail("reading %d-byte header: %v", hlen, err)
	}
	// The header is UTF-8, as the reference reader requires; encoding/json
	// would turn invalid bytes in a name into U+FFFD and so rename it.
	if !utf8.Valid(header) {
		return fail("header is not valid UTF-8 (at byte %d of the header)", invalidUTF8At(header))
	}
	f := &File{name: name, r: r, dataStart: 8 + int64(hlen), index: map[string]int{}}
	if err := f.parseHeader(header, size-f.dataStart); err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", name, err)
	}
	return f, nil
}

// invalidUTF8At returns the offset of the first byte of b that does not
// begin a valid UTF-8 sequence (len(b) if there is none).
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

type headerEntry struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// parseHeader decodes the JSON header token by token (encoding/json would
// silently keep the last of duplicate keys) and validates it against the
// dataLen bytes of the data section.
func (f *File) parseHeader(header []byte, dataLen int64) error {
	dec := json.NewDecoder(bytes.NewReader(header))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("header is not valid JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("header must be a JSON object, found %v", tok)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("header is not valid JSON: %v", err)
		}
		key := tok.(string) // object keys are always strings
		if seen[key] {
			return fmt.Errorf("header names %q twice", key)
		}
		seen[key] = true
		if key == "__metadata__" {
			var md map[string]string
			if err := dec.Decode(&md); err != nil {
				return fmt.Errorf("__metadata__ must be an object of string values: %v", err)
			}
			f.metadata = md
			continue
		}
		e, err := decodeEntry(dec)
		if err != nil {
			return fmt.Errorf("tensor %q: entry must be an object with dtype, shape and data_offsets: %v", key, err)
		}
		info, err := checkEntry(key, e)
		if err != nil {
			return err
		}
		f.index[key] = len(f.tensors)
		f.tensors = append(f.tensors, info)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return fmt.Errorf("header is not valid JSON: %v", err)
	}
	rest := header[dec.InputOffset():]
	if len(bytes.TrimRight(rest, " \t\r\n")) != 0 {
		return fmt.Errorf("header has %d bytes of trailing data after the JSON object (only space padding is allowed)", len(rest))
	}

	// Contiguous, non-overlapping coverage of the data section.
	sort.SliceStable(f.tensors, func(i, j int) bool {
		a, b := f.tensors[i], f.tensors[j]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	for i, t := range f.tensors {
		f.index[t.Name] = i
	}
	var next int64
	for _, t := range f.tensors {
		if t.Begin != next {
			if t.Begin < next {
				return fmt.Errorf("tensor %q: data_offsets [%d, %d) overlap the previous tensor, which ends at %d", t.Name, t.Begin, t.End, next)
			}
			return fmt.Errorf("tensor %q: data_offsets [%d, %d) leave a gap: expected it to begin at %d", t.Name, t.Begin, t.End, next)
		}
		if t.End > dataLen {
			return fmt.Errorf("tensor %q: data_offsets [%d, %d) run past the end of the %d-byte data section (file truncated?)", t.Name, t.Begin, t.End, dataLen)
		}
		next = t.End
	}
	if next != dataLen {
		return fmt.Errorf("tensors cover %d bytes but the data section holds %d bytes", next, dataLen)
	}
	return nil
}

// decodeEntry reads a tensor's entry, an object, from dec. Its keys are
// matched exactly and each may appear once, as the reference reader
// matches them (encoding/json's Decode would take "DTYPE" for "dtype" and
// keep the last of a repeated key); other keys are skipped, as there.
func decodeEntry(dec *json.Decoder) (headerEntry, error) {
	var e headerEntry
	tok, err := dec.Token()
	if err != nil {
		return e, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return e, fmt.Errorf("found %v", tok)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return e, err
		}
		key := tok.(string) // object keys are always strings
		var dst any
		switch key {
		case "dtype":
			dst = &e.DType
		case "shape":
			dst = &e.Shape
		case "data_offsets":
			dst = &e.DataOffsets
		default:
			dst = new(json.RawMessage)
		}
		if seen[key] {
			return e, fmt.Errorf("key %q appears twice", key)
		}
		seen[key] = true
		if err := dec.Decode(dst); err != nil {
			return e, fmt.Errorf("%s: %v", key, err)
		}
	}
	_, err = dec.Token() // the closing '}'
	return e, err
}

func checkEntry(name string, e headerEntry) (TensorInfo, error) {
	bad := func(format string, args ...any) (TensorInfo, error) {
		return TensorInfo{}, fmt.Errorf("tensor %q: %s", name, fmt.Sprintf(format, args...))
	}
	if name == "" {
		return bad("empty tensor name")
	}
	if e.DType == nil || e.Shape == nil || e.DataOffsets == nil {
		return bad("entry must have dtype, shape and data_offsets")
	}
	dt := DType(*e.DType)
	if dt.Size() == 0 {
		return bad("unknown dtype %q", *e.DType)
	}
	if len(*e.DataOffsets) != 2 {
		return bad("data_offsets must be [begin, end], found %d numbers", len(*e.DataOffsets))
	}
	begin, end := (*e.DataOffsets)[0], (*e.DataOffsets)[1]
	if begin < 0 || end < begin {
		return bad("invalid data_offsets [%d, %d]", begin, end)
	}
	shape := make([]int, len(*e.Shape))
	n := int64(1)
	for i, d := range *e.Shape {
		if d < 0 {
			return bad("negative extent %d in shape %v", d, *e.Shape)
		}
		if d > math.MaxInt32 || (d > 0 && n > math.MaxInt64/8/d) {
			return bad("shape %v is too large", *e.Shape)
		}
		n *= d
		shape[i] = int(d)
	}
	if want := n * int64(dt.Size()); end-begin != want {
		return bad("shape %v of %s needs %d bytes but data_offsets [%d, %d] give %d", *e.Shape, dt, want, begin, end, end-begin)
	}
	return TensorInfo{Name: name, DType: dt, Shape: shape, Begin: begin, End: end}, nil
}

// Name returns the name the file was opened with (its path for Open).
func (f *File) Name() string { return f.name }

// Close closes the underlying file if Open opened it.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// Tensors returns the descriptions of all tensors, in data-offset order.
func (f *File) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(f.tensors))
	copy(out, f.tensors)
	return out
}

// Info returns the description of the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.tensors[i], true
}

// Metadata returns a copy of the header's __metadata__ map (nil if absent).
func (f *File) Metadata() map[string]string {
	if f.metadata == nil {
		return nil
	}
	m := make(map[string]string, len(f.metadata))
	for k, v := range f.metadata {
		m[k] = v
	}
	return m
}

// Float32 reads the named F32, F16 or BF16 tensor into a new float32 slice.
func (f *File) Float32(name string) ([]float32, error) {
	info, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: %w: %q", f.name, ErrNotFound, name)
	}
	if err := checkConvertible(f.name, info); err != nil {
		return nil, err
	}
	dst := make([]float32, info.NumElements())
	return dst, f.ReadFloat32(name, dst)
}

func checkConvertible(file string, info TensorInfo) error {
	switch info.DType {
	case F32, F16, BF16:
		return nil
	}
	return fmt.Errorf("safetensors: %s: tensor %q has dtype %s; expected F32, F16 or BF16", file, info.Name, info.DType)
}

// ReadFloat32 reads the named F32, F16 or BF16 tensor into dst, which must
// have exactly as many elements as the tensor.
func (f *File) ReadFloat32(name string, dst []float32) error {
	info, ok := f.Info(name)
	if !ok {
		return fmt.Errorf("safetensors: %s: %w: %q", f.name, ErrNotFound, name)
	}
	if err := checkConvertible(f.name, info); err != nil {
		return err
	}
	if int64(len(dst)) != info.NumElements() {
		return fmt.Errorf("safetensors: %s: tensor %q has %d elements (shape %v) but the destination holds %d", f.name, name, info.NumElements(), info.Shape, len(dst))
	}
	if err := f.readElems(info, 0, dst); err != nil {
		return fmt.Errorf("safetensors: %s: reading tensor %q: %w", f.name, name, err)
	}
	return nil
}

// ReadFloat32Rows reads rows [row0, row0+len(dst)/cols) of the named F32,
// F16 or BF16 tensor into dst, converted to float32 exactly as
// [File.ReadFloat32] converts them: a row is the tensor's elements for
// one index of its first axis, cols of them (the product of the other
// extents; 1 for a vector). len(dst) must be a whole number of rows, all
// within the tensor; a scalar has no rows. Only those rows' bytes are
// read, into dst itself, so that a caller reads a large tensor a slab at
// a time with a buffer of one slab.
func (f *File) ReadFloat32Rows(name string, row0 int, dst []float32) error {
	info, ok := f.Info(name)
	if !ok {
		return fmt.Errorf("safetensors: %s: %w: %q", f.name, ErrNotFound, name)
	}
	if err := checkConvertible(f.name, info); err != nil {
		return err
	}
	if len(info.Shape) == 0 {
		return fmt.Errorf("safetensors: %s: tensor %q is a scalar, which has no rows to read", f.name, name)
	}
	rows := int64(info.Shape[0])
	cols := int64(1)
	for _, d := range info.Shape[1:] {
		cols *= int64(d) // checkEntry bounds the product
	}
	n := int64(len(dst))
	switch {
	case row0 < 0 || int64(row0) > rows:
		return fmt.Errorf("safetensors: %s: tensor %q (shape %v) has %d rows; cannot read from row %d", f.name, name, info.Shape, rows, row0)
	case cols == 0 && n != 0:
		return fmt.Errorf("safetensors: %s: tensor %q (shape %v) has empty rows but the destination holds %d values", f.name, name, info.Shape, n)
	case cols != 0 && n%cols != 0:
		return fmt.Errorf("safetensors: %s: tensor %q (shape %v) has rows of %d values; the destination holds %d, not a whole number of rows", f.name, name, info.Shape, cols, n)
	case cols != 0 && int64(row0)+n/cols > rows:
		return fmt.Errorf("safetensors: %s: tensor %q (shape %v) has %d rows; rows [%d, %d) run past them", f.name, name, info.Shape, rows, row0, int64(row0)+n/cols)
	}
	if err := f.readElems(info, int64(row0)*cols, dst); err != nil {
		end := int64(row0)
		if cols != 0 {
			end += n / cols
		}
		return fmt.Errorf("safetensors: %s: reading rows [%d, %d) of tensor %q: %w", f.name, row0, end, name, err)
	}
	return nil
}

// readElems reads elements [e0, e0+len(dst)) of the tensor info, which
// the caller has checked hold them, into dst, widened to float32.
func (f *File) readElems(info TensorInfo, e0 int64, dst []float32) error {
	if len(dst) == 0 {
		return nil
	}
	// The raw values go straight into the tail of dst's own memory and are
	// widened in place, front to back: value i (at byte 4n-k·n+k·i, k its
	// size) is read before dst[i] (bytes 4i to 4i+3) is written, and no
	// later value lies below byte 4i+4. So a read needs no buffer of its
	// own, however often it is called (a streamed load calls it once a
	// slab).
	k := int64(info.DType.Size())
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(dst))), 4*len(dst))
	b := raw[int64(len(raw))-k*int64(len(dst)):]
	off := f.dataStart + info.Begin + k*e0
	if err := readAt(f.r, b, off); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%d bytes at offset %d: %w (file truncated?)", len(b), off, err)
		}
		return err
	}
	decode(dst, b, info.DType)
	return nil
}

// readAt fills p from r at off. io.ReaderAt may report io.EOF along with a
// complete read that ends at the end of the input; that is not an error.
func readAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func decode(dst []float32, b []byte, dt DType) {
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = float16.HalfToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = float16.BF16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	}
}

// HalfToFloat32 converts an IEEE-754 binary16 value to float32 exactly
// (every binary16 value, subnormals, infinities and NaNs included, is
// representable in binary32). It is float16.HalfToFloat32, the module's one
// copy of the conversion, kept here for callers of this package.
func HalfToFloat32(h uint16) float32 { return float16.HalfToFloat32(h) }

// Tensor is a named float32 tensor to be written.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// Encode writes tensors (as F32, in the given order) and metadata in the
// safetensors format to w. It checks that names are unique and non-empty
// and that each tensor's data length matches its shape.
func Encode(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	header, err := buildHeader(tensors, metadata)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
	bw.Write(lenBuf[:])
	bw.Write(header)
	var b [4]byte
	for _, t := range tensors {
		for _, v := range t.Data {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			bw.Write(b[:])
		}
	}
	return bw.Flush()
}

func buildHeader(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	var sb strings.Builder
	sb.WriteByte('{')
	first := true
	writeKey := func(k string) {
		if !first {
			sb.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		sb.Write(kb)
		sb.WriteByte(':')
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("safetensors: metadata entry %q: %q is not valid UTF-8", k, v)
		}
	}
	if len(metadata) > 0 {
		writeKey("__metadata__")
		mb, err := json.Marshal(metadata) // map keys come out sorted
		if err != nil {
			return nil, fmt.Errorf("safetensors: encoding metadata: %v", err)
		}
		sb.Write(mb)
	}
	seen := map[string]bool{}
	var off int64
	for _, t := range tensors {
		if t.Name == "" || t.Name == "__metadata__" {
			return nil, fmt.Errorf("safetensors: invalid tensor name %q", t.Name)
		}
		// encoding/json would write invalid bytes as U+FFFD: the file
		// would name another tensor, or the same one twice.
		if !utf8.ValidString(t.Name) {
			return nil, fmt.Errorf("safetensors: tensor name %q is not valid UTF-8", t.Name)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("safetensors: tensor %q given twice", t.Name)
		}
		seen[t.Name] = true
		n := 1
		for _, d := range t.Shape {
			if d < 0 {
				return nil, fmt.Errorf("safetensors: tensor %q: negative extent in shape %v", t.Name, t.Shape)
			}
			// A wrapped product could match the data's length (0, say)
			// and write a header that no reader accepts.
			if d > 0 && n > math.MaxInt/d && !slices.Contains(t.Shape, 0) {
				return nil, fmt.Errorf("safetensors: tensor %q: shape %v has more elements than an int can count", t.Name, t.Shape)
			}
			n *= d
		}
		if n != len(t.Data) {
			return nil, fmt.Errorf("safetensors: tensor %q: shape %v needs %d elements but data has %d", t.Name, t.Shape, n, len(t.Data))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		writeKey(t.Name)
		sb.WriteString(`{"dtype":"F32","shape":`)
		sh, _ := json.Marshal(shape)
		sb.Write(sh)
		fmt.Fprintf(&sb, `,"data_offsets":[%d,%d]}`, off, off+4*int64(n))
		off += 4 * int64(n)
	}
	sb.WriteByte('}')
	// Pad with spaces so the data section starts 8-byte aligned, as the
	// reference writer does.
	for (sb.Len())%8 != 0 {
		sb.WriteByte(' ')
	}
	return []byte(sb.String()), nil
}

// Write writes tensors and metadata to path as an F32 safetensors file. It
// writes a temporary file in the same directory and renames it over path,
// so path never holds a partial file.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	if _, err := buildHeader(tensors, metadata); err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	err := atomicfile.Write(path, func(w *bufio.Writer) error { return Encode(w, tensors, metadata) })
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

// ErrNotFound is wrapped by the errors of reads that name a tensor the
// file does not hold.
var ErrNotFound = errors.New("tensor not found")
