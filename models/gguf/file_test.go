package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/float16"
)

// rowsOf returns a Read function serving the row-major values x of a tensor
// whose rows hold cols values.
func rowsOf(x []float32, cols int) func(int, []float32) error {
	return func(row0 int, dst []float32) error {
		copy(dst, x[row0*cols:])
		return nil
	}
}

func randomValues(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// allValueKinds is metadata of every value type, with extremes.
func allValueKinds() []KV {
	return []KV{
		{"general.architecture", String("llama")},
		{"test.u8", Uint8(255)},
		{"test.i8", Int8(-128)},
		{"test.u16", Uint16(65535)},
		{"test.i16", Int16(-32768)},
		{"test.u32", Uint32(math.MaxUint32)},
		{"test.i32", Int32(math.MinInt32)},
		{"test.u64", Uint64(math.MaxUint64)},
		{"test.i64", Int64(math.MinInt64)},
		{"test.f32", Float32(-1.5e-7)},
		{"test.f64", Float64(math.Pi)},
		{"test.true", Bool(true)},
		{"test.false", Bool(false)},
		{"test.empty", String("")},
		{"test.utf8", String("héllo ▁wörld\n<s>")},
		{"test.strings", Strings([]string{"a", "", "▁the", "<0x0A>"})},
		{"test.floats", Float32s([]float32{0, -2.5, 1e30})},
		{"test.ints", Int32s([]int32{1, -1, math.MaxInt32})},
		{"test.uints", Uint32s([]uint32{7, math.MaxUint32})},
		{"test.no_strings", Strings(nil)},
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	defer func(s int) { slab = s }(slab)
	slab = 64 // several slabs per tensor
	r := rand.New(rand.NewPCG(7, 8))
	vec := randomValues(r, 5)
	mat := randomValues(r, 7*64)
	q := randomValues(r, 9*96)
	cube := randomValues(r, 2*3*32)
	big := randomValues(r, 3*100)
	tensors := []Tensor{
		{"vec", []int{5}, F32, rowsOf(vec, 1)},
		{"mat.f16", []int{7, 64}, F16, rowsOf(mat, 64)},
		{"mat.bf16", []int{7, 64}, BF16, rowsOf(mat, 64)},
		{"q", []int{9, 96}, Q8_0, rowsOf(q, 96)},
		{"cube", []int{2, 3, 32}, Q8_0, rowsOf(cube, 96)},
		{"wide", []int{3, 100}, F32, rowsOf(big, 100)}, // a row longer than a slab
	}
	for _, align := range []uint32{0, 8, 64, 4096} {
		kv := allValueKinds()
		if align != 0 {
			kv = append(kv, KV{KeyAlignment, Uint32(align)})
		}
		path := filepath.Join(t.TempDir(), "m.gguf")
		if err := Write(path, kv, tensors); err != nil {
			t.Fatal(err)
		}
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		wantAlign := int64(DefaultAlignment)
		if align != 0 {
			wantAlign = int64(align)
		}
		if f.Alignment != wantAlign || f.DataOffset%wantAlign != 0 {
			t.Errorf("alignment %d, data offset %d; want alignment %d", f.Alignment, f.DataOffset, wantAlign)
		}
		if len(f.KV) != len(kv) {
			t.Fatalf("%d metadata entries read, %d written", len(f.KV), len(kv))
		}
		for i, e := range kv {
			if f.KV[i].Key != e.Key || !f.KV[i].Value.equal(e.Value) {
				t.Errorf("metadata %d: read %s = %v (%s), wrote %s = %v (%s)", i, f.KV[i].Key, f.KV[i].Value, f.KV[i].Value.Type(), e.Key, e.Value, e.Value.Type())
			}
		}
		// The data sections follow each other at aligned offsets, as
		// llama.cpp's reader requires, and the file ends with the last.
		var next int64
		for i, ti := range f.Tensors {
			if ti.Name != tensors[i].Name || !slices.Equal(ti.Shape, tensors[i].Shape) || ti.Type != tensors[i].Type {
				t.Errorf("tensor %d: read %s %v %s, wrote %s %v %s", i, ti.Name, ti.Shape, ti.Type, tensors[i].Name, tensors[i].Shape, tensors[i].Type)
			}
			if ti.Offset != next {
				t.Errorf("tensor %s at data offset %d, want %d", ti.Name, ti.Offset, next)
			}
			next = alignUp(ti.Offset+ti.Size, wantAlign)
		}
		st, _ := os.Stat(path)
		if st.Size() != f.DataOffset+next {
			t.Errorf("file of %d bytes; data ends at %d", st.Size(), f.DataOffset+next)
		}
		check := func(name string, want []float32, conv func(float32) float32) {
			t.Helper()
			got, err := f.ReadFloat32(name)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
			}
			for i := range want {
				if w := conv(want[i]); math.Float32bits(got[i]) != math.Float32bits(w) {
					t.Fatalf("%s[%d] = %v, want %v (from %v)", name, i, got[i], w, want[i])
				}
			}
		}
		same := func(v float32) float32 { return v }
		check("vec", vec, same)
		check("wide", big, same)
		check("mat.f16", mat, func(v float32) float32 { return float16.HalfToFloat32(float16.HalfBits(v)) })
		check("mat.bf16", mat, func(v float32) float32 { return float16.BF16ToFloat32(float16.BF16Bits(v)) })
		for _, c := range []struct {
			name string
			x    []float32
		}{{"q", q}, {"cube", cube}} {
			want := q8RoundTrip(t, c.x)
			i := 0
			check(c.name, want, func(float32) float32 { i++; return want[i-1] })
		}
		if _, err := f.ReadFloat32("nope"); err == nil {
			t.Error("reading a missing tensor succeeded")
		}
		f.Close()
		if _, err := f.ReadFloat32("vec"); err == nil {
			t.Error("reading from a closed file succeeded")
		}
	}
}

func TestWriteRefuses(t *testing.T) {
	ok := func(int, []float32) error { return nil }
	long := strings.Repeat("x", MaxNameLen+1)
	for _, c := range []struct {
		name    string
		kv      []KV
		tensors []Tensor
		want    string
	}{
		{"duplicate key", []KV{{"a", Uint32(1)}, {"a", Uint32(2)}}, nil, "appears twice"},
		{"empty key", []KV{{"", Uint32(1)}}, nil, "metadata key"},
		{"non-ASCII key", []KV{{"clé", Uint32(1)}}, nil, "printable ASCII"},
		{"alignment type", []KV{{KeyAlignment, Uint64(32)}}, nil, "expected a uint32"},
		{"alignment not a power of two", []KV{{KeyAlignment, Uint32(48)}}, nil, "power of two"},
		{"alignment below 8", []KV{{KeyAlignment, Uint32(4)}}, nil, "power of two"},
		{"duplicate tensor", nil, []Tensor{{"a", []int{1}, F32, ok}, {"a", []int{1}, F32, ok}}, "two tensors"},
		{"long name", nil, []Tensor{{long, []int{1}, F32, ok}}, "name of 64 bytes"},
		{"no dims", nil, []Tensor{{"a", nil, F32, ok}}, "0 dimensions"},
		{"five dims", nil, []Tensor{{"a", []int{1, 1, 1, 1, 1}, F32, ok}}, "5 dimensions"},
		{"zero extent", nil, []Tensor{{"a", []int{2, 0}, F32, ok}}, "positive extents"},
		{"q8_0 row", nil, []Tensor{{"a", []int{2, 48}, Q8_0, ok}}, "blocks of 32"},
		{"unknown type", nil, []Tensor{{"a", []int{2}, Type(2), ok}}, "not supported"},
		{"no reader", nil, []Tensor{{"a", []int{2}, F32, nil}}, "no Read"},
		{"read error", nil, []Tensor{{"a", []int{2}, F32, func(int, []float32) error { return errors.New("disk on fire") }}}, "disk on fire"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "m.gguf")
			err := Write(path, c.kv, c.tensors)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Write: %v; want an error naming %s and containing %q", err, path, c.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("the failed write left %v behind", ents)
			}
		})
	}
}

// validFile returns the bytes of a small valid file with every value kind
// and a tensor of each type.
func validFile(t testing.TB) []byte {
	r := rand.New(rand.NewPCG(9, 10))
	x := randomValues(r, 64)
	path := filepath.Join(t.TempDir(), "v.gguf")
	err := Write(path, allValueKinds(), []Tensor{
		{"a", []int{2, 32}, F32, rowsOf(x, 32)},
		{"b", []int{64}, F16, rowsOf(x, 1)},
		{"c", []int{2, 32}, BF16, rowsOf(x, 32)},
		{"d", []int{2, 32}, Q8_0, rowsOf(x, 32)},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadTruncated(t *testing.T) {
	b := validFile(t)
	f, err := Read(bytes.NewReader(b), int64(len(b)), "v.gguf")
	if err != nil {
		t.Fatal(err)
	}
	last := f.Tensors[len(f.Tensors)-1]
	end := f.DataOffset + last.Offset + last.Size
	// Every prefix that cuts the header or a tensor's data is refused,
	// with an error naming the file.
	for n := 0; n < int(end); n++ {
		_, err := Read(bytes.NewReader(b[:n]), int64(n), "v.gguf")
		if err == nil {
			t.Fatalf("a file cut to %d of %d bytes was read without an error", n, len(b))
		}
		if !strings.HasPrefix(err.Error(), "gguf: v.gguf: ") {
			t.Fatalf("cut to %d bytes: error %q does not name the file", n, err)
		}
	}
}

// put returns a copy of b with v written little-endian at offset at.
func put(b []byte, at int, v any) []byte {
	c := append([]byte{}, b...)
	var w bytes.Buffer
	binary.Write(&w, binary.LittleEndian, v)
	copy(c[at:], w.Bytes())
	return c
}

func TestReadRefuses(t *testing.T) {
	b := validFile(t)
	// Offsets in the valid file: the first key's length is at 24, its
	// bytes at 32 ("general.architecture", 20 bytes), its type at 52.
	keyType := 32 + len("general.architecture")
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"magic", put(b, 0, []byte("GGUX")), "magic at offset 0"},
		{"version", put(b, 4, uint32(2)), "version at offset 4: 2"},
		{"kv count", put(b, 16, uint64(1)<<60), "metadata_kv_count"},
		{"tensor count", put(b, 8, uint64(1)<<60), "tensor_count"},
		{"key length", put(b, 24, uint64(1)<<62), "metadata[0].key at offset 24"},
		{"value type", put(b, keyType, uint32(99)), "unknown value type 99"},
		{"nested array", nestedArray(t), "array of arrays"},
		{"bool byte", badBool(t), "bool byte 2"},
		{"duplicate key", duplicateKey(t), "appears twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(c.data), int64(len(c.data)), "x.gguf")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "x.gguf") {
				t.Fatalf("Read: %v; want an error naming x.gguf and containing %q", err, c.want)
			}
		})
	}
}

// header returns a file header for the given counts followed by body.
func header(tensors, kvs uint64, body ...[]byte) []byte {
	var w bytes.Buffer
	w.WriteString(Magic)
	binary.Write(&w, binary.LittleEndian, uint32(Version))
	binary.Write(&w, binary.LittleEndian, tensors)
	binary.Write(&w, binary.LittleEndian, kvs)
	for _, b := range body {
		w.Write(b)
	}
	return w.Bytes()
}

func le(vs ...any) []byte {
	var w bytes.Buffer
	for _, v := range vs {
		if s, ok := v.(string); ok {
			binary.Write(&w, binary.LittleEndian, uint64(len(s)))
			w.WriteString(s)
			continue
		}
		binary.Write(&w, binary.LittleEndian, v)
	}
	return w.Bytes()
}

func nestedArray(t *testing.T) []byte {
	return header(0, 1, le("k", uint32(TypeArray), uint32(TypeArray), uint64(1), make([]byte, 64)))
}

func badBool(t *testing.T) []byte {
	return header(0, 1, le("k", uint32(TypeBool), uint8(2)), make([]byte, 32))
}

func duplicateKey(t *testing.T) []byte {
	return header(0, 2, le("k", uint32(TypeUint8), uint8(1), "k", uint32(TypeUint8), uint8(1)), make([]byte, 32))
}

// tensor is the bytes of a tensor info: name, dimensions (innermost
// first), ggml type and data offset.
func tensor(name string, dims []uint64, typ uint32, off uint64) []byte {
	b := le(name, uint32(len(dims)))
	for _, d := range dims {
		b = append(b, le(d)...)
	}
	return append(b, le(typ, off)...)
}

func TestReadRefusesTensorInfos(t *testing.T) {
	pad := make([]byte, 256)
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"dims", header(1, 0, tensor("a", []uint64{1, 1, 1, 1, 1}, 0, 0), pad), "n_dimensions at offset 33: 5"},
		{"no dims", header(1, 0, tensor("a", nil, 0, 0), pad), "n_dimensions at offset 33: 0"},
		{"type", header(1, 0, tensor("a", []uint64{4}, 2, 0), pad), "ggml type 2"},
		{"q8_0 extent", header(1, 0, tensor("a", []uint64{48}, 8, 0), pad), "blocks of 32"},
		{"overflow", header(1, 0, tensor("a", []uint64{1 << 40, 1 << 40}, 0, 0), pad), "overflow"},
		{"unaligned", header(1, 0, tensor("a", []uint64{4}, 0, 3), pad), "not a multiple of the alignment 32"},
		{"past the end", header(1, 0, tensor("a", []uint64{1024}, 0, 0), pad), "beyond the end of the file"},
		{"long name", header(1, 0, tensor(strings.Repeat("n", 64), []uint64{4}, 0, 0), pad), "at most 63"},
		{"duplicate", header(2, 0, tensor("a", []uint64{4}, 0, 0), tensor("a", []uint64{4}, 0, 32), pad), "two tensors are named \"a\""},
		{"alignment", header(0, 1, le(KeyAlignment, uint32(TypeUint32), uint32(24)), pad), "power of two"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(c.data), int64(len(c.data)), "x.gguf")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Read: %v; want an error containing %q", err, c.want)
			}
		})
	}
}

// TestReadTensorOverlap checks that Read refuses tensors whose data
// ranges share a byte, naming both tensors and their ranges (offsets from
// the data section's start), whatever the order of their infos, and
// accepts ranges that only touch and tensors of no bytes, which share none.
func TestReadTensorOverlap(t *testing.T) {
	const f32 = uint32(F32)
	pad := make([]byte, 512)
	for _, c := range []struct {
		name  string
		infos [][]byte
		want  string // the error's text after the file's name; "" to accept
	}{
		{"adjacent", [][]byte{tensor("a", []uint64{16}, f32, 0), tensor("b", []uint64{8}, f32, 64)}, ""},
		{"apart, listed out of order", [][]byte{tensor("b", []uint64{8}, f32, 64), tensor("a", []uint64{8}, f32, 0)}, ""},
		{"empty, inside another", [][]byte{tensor("a", []uint64{16}, f32, 0), tensor("e", []uint64{0}, f32, 32)}, ""},
		{"partly", [][]byte{tensor("a", []uint64{16}, f32, 0), tensor("b", []uint64{16}, f32, 32)},
			"tensor[1] b: data [32, 96) past the data section's start overlaps the data [0, 64) of tensor[0] a"},
		{"same offset", [][]byte{tensor("a", []uint64{16}, f32, 0), tensor("b", []uint64{8}, f32, 0)},
			"tensor[1] b: data [0, 32) past the data section's start overlaps the data [0, 64) of tensor[0] a"},
		{"listed out of order", [][]byte{tensor("b", []uint64{16}, f32, 32), tensor("a", []uint64{16}, f32, 0)},
			"tensor[0] b: data [32, 96) past the data section's start overlaps the data [0, 64) of tensor[1] a"},
		{"inside, past an empty one", [][]byte{tensor("a", []uint64{32}, f32, 0), tensor("e", []uint64{0}, f32, 32), tensor("c", []uint64{8}, f32, 64)},
			"tensor[2] c: data [64, 96) past the data section's start overlaps the data [0, 128) of tensor[0] a"},
		{"a q8_0 tensor's blocks", [][]byte{tensor("q", []uint64{64}, uint32(Q8_0), 0), tensor("b", []uint64{8}, f32, 64)},
			"tensor[1] b: data [64, 96) past the data section's start overlaps the data [0, 68) of tensor[0] q"},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := header(uint64(len(c.infos)), 0, append(append([][]byte(nil), c.infos...), pad)...)
			f, err := Read(bytes.NewReader(data), int64(len(data)), "x.gguf")
			if c.want == "" {
				if err != nil {
					t.Fatalf("Read: %v; want the file accepted", err)
				}
				for _, ti := range f.Tensors {
					if _, err := f.ReadFloat32(ti.Name); err != nil {
						t.Errorf("ReadFloat32(%s): %v", ti.Name, err)
					}
				}
				return
			}
			if want := "gguf: x.gguf: " + c.want; err == nil || err.Error() != want {
				t.Fatalf("Read: %v\nwant %s", err, want)
			}
		})
	}
}

// FuzzRead feeds Read arbitrary bytes (seeded with a valid file and
// damaged copies): it must return a File or an error, never panic or
// allocate far beyond the input, and every tensor it accepts must read,
// its data shared with no other tensor.
func FuzzRead(f *testing.F) {
	b := validFile(f)
	f.Add(b)
	f.Add(b[:100])
	f.Add(put(b, 16, uint64(3)))
	f.Add(header(0, 0))
	f.Add(header(2, 0, tensor("a", []uint64{16}, uint32(F32), 0), tensor("b", []uint64{16}, uint32(F32), 32), make([]byte, 128)))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Read(bytes.NewReader(data), int64(len(data)), "fuzz.gguf")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "gguf: fuzz.gguf: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, ti := range g.Tensors {
			if ti.Size > int64(len(data)) {
				t.Fatalf("tensor %s of %d bytes accepted in a file of %d", ti.Name, ti.Size, len(data))
			}
			if _, err := g.ReadFloat32(ti.Name); err != nil {
				t.Fatalf("tensor %s accepted but not readable: %v", ti.Name, err)
			}
		}
		for i, a := range g.Tensors {
			for _, b := range g.Tensors[:i] {
				if a.Size > 0 && b.Size > 0 && a.Offset < b.Offset+b.Size && b.Offset < a.Offset+a.Size {
					t.Fatalf("tensors %s [%d, %d) and %s [%d, %d) accepted with overlapping data", a.Name, a.Offset, a.Offset+a.Size, b.Name, b.Offset, b.Offset+b.Size)
				}
			}
		}
	})
}

// eofAtEnd is an io.ReaderAt that returns io.EOF with a complete read
// that ends at the end of its data, as io.ReaderAt allows.
type eofAtEnd struct{ b []byte }

func (r eofAtEnd) ReadAt(p []byte, off int64) (int, error) {
	n, err := bytes.NewReader(r.b).ReadAt(p, off)
	if err == nil && off+int64(n) == int64(len(r.b)) {
		err = io.EOF
	}
	return n, err
}

// TestReadEOFAtEnd checks that a tensor whose data ends the file reads
// through a reader that says io.EOF with the last bytes.
func TestReadEOFAtEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "last.gguf")
	x := []float32{1, -2, 3.5, 4, 5, 6, 7, 8} // 32 bytes: no padding after them
	err := Write(path, []KV{{Key: "general.architecture", Value: String("llama")}},
		[]Tensor{{Name: "x", Shape: []int{8}, Type: F32, Read: func(_ int, dst []float32) error { copy(dst, x); return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Read(eofAtEnd{b}, int64(len(b)), path)
	if err != nil {
		t.Fatal(err)
	}
	if ti, _ := f.Tensor("x"); f.DataOffset+ti.Offset+ti.Size != int64(len(b)) {
		t.Fatalf("tensor x ends at %d of %d bytes; the test needs it to end the file", f.DataOffset+ti.Offset+ti.Size, len(b))
	}
	got, err := f.ReadFloat32("x")
	if err != nil || !slices.Equal(got, x) {
		t.Errorf("ReadFloat32 = %v, %v; want %v", got, err, x)
	}
}
