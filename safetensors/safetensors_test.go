package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// rawFile assembles a safetensors file from a header string and data bytes,
// so tests can build files the writer would refuse to produce.
func rawFile(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func open(t *testing.T, b []byte) (*File, error) {
	t.Helper()
	return NewFile(bytes.NewReader(b), int64(len(b)), "test.safetensors")
}

func randTensor(rng *rand.Rand, name string, shape ...int) Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(rng.NormFloat64())
	}
	return Tensor{Name: name, Shape: shape, Data: data}
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	tensors := []Tensor{
		randTensor(rng, "model.embed_tokens.weight", 7, 5),
		randTensor(rng, "scalar"),
		randTensor(rng, "empty", 0, 3),
		randTensor(rng, "vec", 13),
		randTensor(rng, "a.b.c", 2, 3, 4),
	}
	tensors[3].Data[0] = float32(math.Inf(-1))
	tensors[3].Data[1] = float32(math.Copysign(0, -1))
	md := map[string]string{"format": "pt", "note": "ü \"quoted\""}
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := Write(path, tensors, md); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Metadata(); !reflect.DeepEqual(got, md) {
		t.Errorf("metadata = %v, want %v", got, md)
	}
	if len(f.Tensors()) != len(tensors) {
		t.Fatalf("%d tensors, want %d", len(f.Tensors()), len(tensors))
	}
	for _, want := range tensors {
		info, ok := f.Info(want.Name)
		if !ok {
			t.Fatalf("tensor %q missing", want.Name)
		}
		if info.DType != F32 || !reflect.DeepEqual(info.Shape, append([]int{}, want.Shape...)) {
			t.Errorf("%s: dtype %s shape %v, want F32 %v", want.Name, info.DType, info.Shape, want.Shape)
		}
		got, err := f.Float32(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want.Data) {
			t.Fatalf("%s: %d elements, want %d", want.Name, len(got), len(want.Data))
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want.Data[i]) {
				t.Fatalf("%s[%d] = %v, want %v", want.Name, i, got[i], want.Data[i])
			}
		}
	}
	// The data section starts 8-byte aligned, as the reference writer does.
	raw, _ := os.ReadFile(path)
	if hl := binary.LittleEndian.Uint64(raw); hl%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", hl)
	}
	if _, err := f.Float32("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tensor: err = %v, want ErrNotFound", err)
	}
}

// TestLargeTensor reads a tensor of some hundred kilobytes, not a round
// size, behind another.
func TestLargeTensor(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	big := randTensor(rng, "big", 3, 40001) // 480012 bytes
	var buf bytes.Buffer
	if err := Encode(&buf, []Tensor{randTensor(rng, "pre", 3), big}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := open(t, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Float32("big")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, big.Data) {
		t.Fatal("large tensor differs after round trip")
	}
}

func TestReadHalfTypes(t *testing.T) {
	// F16 1.0, -2.0, 65504; BF16 1.0, 3.140625, -0.5.
	data := []byte{0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x80, 0x3f, 0x49, 0x40, 0x00, 0xbf}
	hdr := `{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[6,12]}}`
	f, err := open(t, rawFile(hdr, data))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]float32{"h": {1, -2, 65504}, "b": {1, 3.140625, -0.5}} {
		got, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestReadHalfTypesInPlace reads long F16 and BF16 tensors, which
// ReadFloat32 widens in place inside the destination, and checks every
// value against the conversion of its own bytes, so that a value
// overwritten before it was read shows.
func TestReadHalfTypesInPlace(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	const n = 10007
	data := make([]byte, 4*n)
	rng.Read(data)
	hdr := fmt.Sprintf(`{"h":{"dtype":"F16","shape":[%d],"data_offsets":[0,%d]},"b":{"dtype":"BF16","shape":[%d],"data_offsets":[%d,%d]}}`, n, 2*n, n, 2*n, 4*n)
	f, err := open(t, rawFile(hdr, data))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		raw  []byte
		conv func(uint16) float32
	}{
		{"h", data[:2*n], HalfToFloat32},
		{"b", data[2*n:], func(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }},
	} {
		got, err := f.Float32(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		for i, g := range got {
			want := tc.conv(binary.LittleEndian.Uint16(tc.raw[2*i:]))
			if math.Float32bits(g) != math.Float32bits(want) {
				t.Fatalf("%s[%d] = %v, want %v", tc.name, i, g, want)
			}
		}
	}
}

func TestInvalidFiles(t *testing.T) {
	f32 := func(n int) []byte { return make([]byte, 4*n) }
	hugeLen := make([]byte, 16)
	binary.LittleEndian.PutUint64(hugeLen, 1<<62)
	cases := []struct {
		name string
		file []byte
		want string // substring of the error
	}{
		{"short", []byte{1, 2, 3}, "too short"},
		{"header past end", hugeLen, "exceeds the 8 bytes that follow"},
		{"not json", rawFile("{nope", nil), "not valid JSON"},
		{"array", rawFile("[1, 2]", nil), "must be a JSON object"},
		{"trailing", rawFile(`{} x`, nil), "trailing data"},
		{"unknown dtype", rawFile(`{"a":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}`, f32(1)), `tensor "a": unknown dtype "F7"`},
		{"missing field", rawFile(`{"a":{"dtype":"F32","shape":[1]}}`, f32(1)), "must have dtype, shape and data_offsets"},
		// Keys in another case are other keys, as in the reference reader
		// (encoding/json would match them), and none may repeat.
		{"key case", rawFile(`{"a":{"DType":"F32","Shape":[1],"Data_Offsets":[0,4]}}`, f32(1)), "must have dtype, shape and data_offsets"},
		{"repeated key", rawFile(`{"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4],"dtype":"F32"}}`, f32(1)), `tensor "a": entry must be an object with dtype, shape and data_offsets: key "dtype" appears twice`},
		{"entry not an object", rawFile(`{"a":[1]}`, f32(1)), `tensor "a": entry must be an object`},
		{"bad dtype value", rawFile(`{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`, f32(1)), `tensor "a": entry must be an object with dtype, shape and data_offsets: dtype:`},
		{"bad offsets", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}`, f32(1)), "invalid data_offsets"},
		{"three offsets", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, f32(1)), "found 3 numbers"},
		{"negative extent", rawFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, f32(1)), "negative extent"},
		{"float extent", rawFile(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, f32(1)), `tensor "a": entry must be`},
		{"size mismatch", rawFile(`{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}`, f32(5)), "needs 24 bytes"},
		{"huge shape", rawFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, f32(1)), "too large"},
		{"duplicate", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32(2)), `names "a" twice`},
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, f32(3)), "overlap"},
		{"gap", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, f32(3)), "leave a gap"},
		{"past end", rawFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, f32(3)), "run past the end"},
		{"uncovered tail", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, f32(2)), "cover 4 bytes but the data section holds 8"},
		{"bad metadata", rawFile(`{"__metadata__":{"a":1}}`, nil), "__metadata__ must be"},
		{"empty name", rawFile(`{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, f32(1)), "empty tensor name"},
		// encoding/json would read the name as "a\uFFFD".
		{"invalid utf-8", rawFile("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", f32(1)), "not valid UTF-8 (at byte 3 of the header)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := open(t, c.file)
			if err == nil {
				t.Fatalf("accepted invalid file")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "test.safetensors") {
				t.Fatalf("error %q does not name the file and contain %q", err, c.want)
			}
		})
	}
}

// bigFile is an io.ReaderAt over a file of any size that holds the
// 8-byte header length n and zeros after it.
type bigFile struct{ n uint64 }

func (r bigFile) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], r.n)
	if off < 8 {
		copy(p, b[off:])
	}
	return len(p), nil
}

// TestHeaderSizeLimit: a header length within the file but above
// MaxHeaderSize is refused before the header is allocated or read, as the
// reference reader refuses it.
func TestHeaderSizeLimit(t *testing.T) {
	_, err := NewFile(bigFile{MaxHeaderSize + 1}, 1<<40, "big.safetensors")
	if err == nil || !strings.Contains(err.Error(), "exceeds the limit of 100000000 bytes") {
		t.Fatalf("header of %d bytes in a 1 TiB file: %v; want the limit named", MaxHeaderSize+1, err)
	}
}

// TestHeaderOrder reads a file whose header lists its tensors in another
// order than their data (as writers other than this package's may, e.g.
// names sorted apart from the data's order), with an empty tensor at the
// offset where another begins: each tensor reads its own bytes, and
// Tensors lists them in data-offset order.
func TestHeaderOrder(t *testing.T) {
	hdr := `{"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[8,8]}}`
	var data bytes.Buffer
	binary.Write(&data, binary.LittleEndian, []float32{1, 2, 3, 4})
	f, err := open(t, rawFile(hdr, data.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]float32{"a": {1, 2}, "b": {3, 4}, "e": {}} {
		if got, err := f.Float32(name); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, %v; want %v", name, got, err, want)
		}
	}
	var names []string
	for _, info := range f.Tensors() {
		names = append(names, info.Name)
	}
	if want := []string{"a", "e", "b"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Tensors() in the order %v, want %v", names, want)
	}
}

// TestEntryOtherKeys checks that keys of an entry other than dtype, shape
// and data_offsets are skipped, as the reference reader skips them.
func TestEntryOtherKeys(t *testing.T) {
	f, err := open(t, rawFile(`{"a":{"note":{"x":[1]},"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":null}}`, []byte{0, 0, 0x80, 0x3f}))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := f.Float32("a"); err != nil || !reflect.DeepEqual(v, []float32{1}) {
		t.Fatalf("a = %v, %v; want [1]", v, err)
	}
}

func TestReadErrors(t *testing.T) {
	hdr := `{"i":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"f":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`
	f, err := open(t, rawFile(hdr, make([]byte, 16)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Float32("i"); err == nil || !strings.Contains(err.Error(), "dtype I32") {
		t.Errorf("reading I32 as float32: err = %v", err)
	}
	if err := f.ReadFloat32("f", make([]float32, 3)); err == nil || !strings.Contains(err.Error(), "destination holds 3") {
		t.Errorf("wrong destination length: err = %v", err)
	}
}

func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]Tensor{
		"duplicate":  {{Name: "a", Shape: []int{1}, Data: []float32{1}}, {Name: "a", Shape: []int{1}, Data: []float32{1}}},
		"length":     {{Name: "a", Shape: []int{2}, Data: []float32{1}}},
		"empty name": {{Name: "", Shape: []int{1}, Data: []float32{1}}},
		// 2^32 · 2^32 (2^16 · 2^16 where int has 32 bits) wraps to 0
		// elements, which would match the empty data.
		"overflow": {{Name: "a", Shape: []int{1 << (strconv.IntSize / 2), 1 << (strconv.IntSize / 2)}, Data: nil}},
		// Written as JSON, both names would become "a\uFFFD".
		"invalid utf-8": {{Name: "a\xff", Shape: []int{1}, Data: []float32{1}}, {Name: "a\xfe", Shape: []int{1}, Data: []float32{1}}},
	}
	for name, ts := range cases {
		path := filepath.Join(dir, name)
		if err := Write(path, ts, nil); err == nil {
			t.Errorf("%s: Write accepted invalid tensors", name)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s: a file was left behind at %s", name, path)
		}
	}
	for _, md := range []map[string]string{{"k\xff": "v"}, {"k": "v\xff"}} {
		path := filepath.Join(dir, "metadata")
		if err := Write(path, nil, md); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
			t.Errorf("metadata %q: Write error %v, want one saying it is not valid UTF-8", md, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("metadata %q: a file was left behind at %s", md, path)
		}
	}
	// A folder that cannot be made (its parent is a file; missing folders
	// are made, as atomicfile makes them): error, and nothing written.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(file, "such", "x.safetensors"), nil, nil); err == nil {
		t.Error("Write under a file succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "file" {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

// TestWriteReplacesAtomically overwrites an existing file and checks that
// no temporary file remains beside it.
func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.safetensors")
	for i := range 2 {
		ts := []Tensor{{Name: "v", Shape: []int{1}, Data: []float32{float32(i)}}}
		if err := Write(path, ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if v, _ := f.Float32("v"); len(v) != 1 || v[0] != 1 {
		t.Errorf("v = %v after overwrite, want [1]", v)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(entries))
	}
}

// FuzzRead checks that arbitrary bytes never panic the reader, and that
// whatever it accepts can be read in full and re-encoded losslessly.
func FuzzRead(f *testing.F) {
	var seed bytes.Buffer
	Encode(&seed, []Tensor{{Name: "w", Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}}, {Name: "b", Shape: []int{2}, Data: []float32{5, 6}}}, map[string]string{"k": "v"})
	f.Add(seed.Bytes())
	f.Add(rawFile(`{"h":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},"i":{"dtype":"I8","shape":[2],"data_offsets":[2,4]}}`, make([]byte, 4)))
	f.Add(rawFile(`{}`, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := NewFile(bytes.NewReader(b), int64(len(b)), "fuzz")
		if err != nil {
			return
		}
		var out []Tensor
		for _, info := range file.Tensors() {
			if info.End > int64(len(b)) {
				t.Fatalf("accepted tensor %q ending past the file", info.Name)
			}
			if info.DType != F32 {
				continue
			}
			v, err := file.Float32(info.Name)
			if err != nil {
				t.Fatalf("validated tensor %q unreadable: %v", info.Name, err)
			}
			out = append(out, Tensor{Name: info.Name, Shape: info.Shape, Data: v})
		}
		var enc bytes.Buffer
		if err := Encode(&enc, out, file.Metadata()); err != nil {
			t.Fatalf("re-encoding accepted tensors: %v", err)
		}
		again, err := NewFile(bytes.NewReader(enc.Bytes()), int64(enc.Len()), "again")
		if err != nil {
			t.Fatalf("re-encoded file rejected: %v", err)
		}
		for _, o := range out {
			v, err := again.Float32(o.Name)
			if err != nil || len(v) != len(o.Data) {
				t.Fatalf("re-read %q: %v", o.Name, err)
			}
			for i := range v {
				if math.Float32bits(v[i]) != math.Float32bits(o.Data[i]) {
					t.Fatalf("re-read %q[%d] changed", o.Name, i)
				}
			}
		}
	})
}

// eofAtEnd is an io.ReaderAt that, as the interface allows, reports io.EOF
// together with a complete read that reaches the end of its data.
type eofAtEnd struct{ b []byte }

func (r eofAtEnd) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	if off+int64(n) == int64(len(r.b)) {
		return n, io.EOF
	}
	return n, nil
}

func TestReaderAtEOFWithFullRead(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, []Tensor{{Name: "last", Shape: []int{3}, Data: []float32{1, 2, 3}}}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := NewFile(eofAtEnd{buf.Bytes()}, int64(buf.Len()), "eof")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := f.Float32("last"); err != nil || !reflect.DeepEqual(v, []float32{1, 2, 3}) {
		t.Fatalf("last tensor = %v, %v", v, err)
	}
	// A short read is still an error.
	short := buf.Bytes()[:buf.Len()-2]
	g, err := NewFile(eofAtEnd{short}, int64(buf.Len()), "short")
	if err != nil {
		t.Fatal(err) // the header is intact; only the data is short
	}
	if _, err := g.Float32("last"); err == nil {
		t.Fatal("short read accepted")
	}
}
