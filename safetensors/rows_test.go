package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"strings"
	"testing"
)

// rangeReader is an io.ReaderAt over b that records the byte ranges read.
type rangeReader struct {
	b     []byte
	reads [][2]int64
}

func (r *rangeReader) ReadAt(p []byte, off int64) (int, error) {
	r.reads = append(r.reads, [2]int64{off, off + int64(len(p))})
	return bytes.NewReader(r.b).ReadAt(p, off)
}

// widen converts the little-endian element i of raw, of type dt, to
// float32 by the format's definition, independently of decode.
func widen(dt DType, raw []byte, i int) float32 {
	switch dt {
	case F32:
		return math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	case BF16:
		return math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16)
	case F16:
		return HalfToFloat32(binary.LittleEndian.Uint16(raw[2*i:])) // checked exhaustively in package float16
	}
	panic("widen: " + dt)
}

// TestReadFloat32Rows reads every run of whole rows of tensors of random
// bytes (so NaN payloads, infinities, subnormals and signed zeros
// included) in each float type and checks every value's bits against the
// conversion of its own bytes, and that only those rows' bytes were read.
func TestReadFloat32Rows(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	shapes := [][]int{{7, 5}, {3, 2, 4}, {13}, {4, 0}, {0, 3}, {1, 1}}
	for _, dt := range []DType{F32, BF16, F16} {
		var hdr strings.Builder
		var data []byte
		hdr.WriteString("{")
		for i, s := range shapes {
			n := 1
			for _, d := range s {
				n *= d
			}
			if i > 0 {
				hdr.WriteString(",")
			}
			sh := strings.ReplaceAll(fmt.Sprint(s), " ", ",")
			fmt.Fprintf(&hdr, `"t%d":{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}`, i, dt, sh, len(data), len(data)+n*dt.Size())
			raw := make([]byte, n*dt.Size())
			rng.Read(raw)
			data = append(data, raw...)
		}
		hdr.WriteString("}")
		file := rawFile(hdr.String(), data)
		r := &rangeReader{b: file}
		f, err := NewFile(r, int64(len(file)), "rows.safetensors")
		if err != nil {
			t.Fatal(err)
		}
		start := int64(8 + hdr.Len())
		for i, s := range shapes {
			name := fmt.Sprintf("t%d", i)
			info, _ := f.Info(name)
			rows, cols := s[0], int(info.NumElements())/max(s[0], 1)
			if s[0] == 0 {
				cols = 1
				for _, d := range s[1:] {
					cols *= d
				}
			}
			raw := data[info.Begin:info.End]
			for r0 := 0; r0 <= rows; r0++ {
				for r1 := r0; r1 <= rows; r1++ {
					dst := make([]float32, (r1-r0)*cols)
					for j := range dst {
						dst[j] = float32(math.NaN()) // what was there must not show
					}
					r.reads = r.reads[:0]
					if err := f.ReadFloat32Rows(name, r0, dst); err != nil {
						t.Fatalf("%s %s %v rows [%d, %d): %v", dt, name, s, r0, r1, err)
					}
					for j, g := range dst {
						want := widen(dt, raw, r0*cols+j)
						if math.Float32bits(g) != math.Float32bits(want) {
							t.Fatalf("%s %s %v rows [%d, %d): value %d = %#08x, want %#08x", dt, name, s, r0, r1, j, math.Float32bits(g), math.Float32bits(want))
						}
					}
					k := int64(dt.Size())
					var want [][2]int64
					if len(dst) > 0 {
						b := start + info.Begin + k*int64(r0*cols)
						want = [][2]int64{{b, b + k*int64(len(dst))}}
					}
					if fmt.Sprint(r.reads) != fmt.Sprint(want) {
						t.Fatalf("%s %s %v rows [%d, %d): read byte ranges %v, want %v", dt, name, s, r0, r1, r.reads, want)
					}
				}
			}
		}
	}
}

// TestReadFloat32RowsErrors checks that every bad request is refused with
// an error naming the file, the tensor and what was wrong, leaving the
// destination as it was, and that a file cut short after it was opened
// fails mid-tensor naming the rows.
func TestReadFloat32RowsErrors(t *testing.T) {
	hdr := `{"i":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"s":{"dtype":"F32","shape":[],"data_offsets":[8,12]},` +
		`"m":{"dtype":"BF16","shape":[4,3],"data_offsets":[12,36]},"e":{"dtype":"F16","shape":[2,0],"data_offsets":[36,36]}}`
	file := rawFile(hdr, make([]byte, 36))
	f, err := open(t, file)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		row0 int
		n    int
		want string
	}{
		{"x", 0, 3, "tensor not found"},
		{"i", 0, 1, "dtype I32"},
		{"s", 0, 1, "scalar"},
		{"m", -1, 3, "cannot read from row -1"},
		{"m", 5, 0, "cannot read from row 5"},
		{"m", 0, 4, "not a whole number of rows"},
		{"m", 2, 9, "rows [2, 5) run past them"},
		{"m", math.MaxInt, 3, "cannot read from row"},
		{"e", 0, 1, "empty rows"},
	} {
		dst := make([]float32, tc.n)
		for j := range dst {
			dst[j] = 42
		}
		err := f.ReadFloat32Rows(tc.name, tc.row0, dst)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "test.safetensors") || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.name)) {
			t.Errorf("ReadFloat32Rows(%s, %d, %d values): error %v, want one naming the file and the tensor and containing %q", tc.name, tc.row0, tc.n, err, tc.want)
		}
		for j, v := range dst {
			if v != 42 {
				t.Errorf("ReadFloat32Rows(%s, %d, %d values) refused but wrote dst[%d] = %v", tc.name, tc.row0, tc.n, j, v)
				break
			}
		}
	}
	for _, tc := range []struct {
		row0, n int
	}{{2, 6}, {3, 3}} {
		// The header is intact and claims the full size; the data stops
		// 4 bytes into m's last row (row 3).
		g, err := NewFile(eofAtEnd{file[:len(file)-2]}, int64(len(file)), "cut.safetensors")
		if err != nil {
			t.Fatal(err)
		}
		err = g.ReadFloat32Rows("m", tc.row0, make([]float32, tc.n))
		want := fmt.Sprintf("reading rows [%d, 4) of tensor \"m\"", tc.row0)
		if err == nil || !strings.Contains(err.Error(), "cut.safetensors") || !strings.Contains(err.Error(), want) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("rows [%d, 4) of a cut file: error %v, want one naming cut.safetensors and %q, wrapping io.ErrUnexpectedEOF", tc.row0, err, want)
		}
		// Rows before the cut still read.
		if err := g.ReadFloat32Rows("m", 0, make([]float32, 9)); err != nil {
			t.Errorf("rows [0, 3) before the cut: %v", err)
		}
	}
}

// FuzzReadRows checks that no file and no row request panics the row
// reader, and that whatever it reads equals the same rows of the whole
// tensor, bit for bit.
func FuzzReadRows(f *testing.F) {
	var seed bytes.Buffer
	Encode(&seed, []Tensor{{Name: "w", Shape: []int{3, 2}, Data: []float32{1, 2, 3, 4, 5, 6}}, {Name: "b", Shape: []int{2}, Data: []float32{5, 6}}}, nil)
	f.Add(seed.Bytes(), 1, 2)
	f.Add(rawFile(`{"h":{"dtype":"F16","shape":[2,1],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[4,8]}}`, []byte{0, 0x3c, 1, 0, 0x80, 0x3f, 0xc0, 0x7f}), 0, 2)
	f.Add(rawFile(`{"e":{"dtype":"F32","shape":[2,0,3],"data_offsets":[0,0]}}`, nil), 2, 0)
	f.Add(rawFile(`{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, make([]byte, 4)), 0, 1)
	f.Fuzz(func(t *testing.T, b []byte, row0, n int) {
		file, err := NewFile(bytes.NewReader(b), int64(len(b)), "fuzz")
		if err != nil {
			return
		}
		n = min(max(n, -1), 1<<16) // a negative length cannot be made
		for _, info := range file.Tensors() {
			var dst []float32
			if n >= 0 {
				dst = make([]float32, n)
			}
			err := file.ReadFloat32Rows(info.Name, row0, dst)
			if err != nil {
				continue
			}
			if len(info.Shape) == 0 {
				t.Fatalf("rows of scalar %q read", info.Name)
			}
			whole, err := file.Float32(info.Name)
			if err != nil {
				t.Fatalf("rows of %q read, but the whole tensor not: %v", info.Name, err)
			}
			cols := 1
			for _, d := range info.Shape[1:] {
				cols *= d
			}
			e0 := row0 * cols
			if row0 < 0 || row0 > info.Shape[0] || e0+len(dst) > len(whole) || (cols > 0 && len(dst)%cols != 0) {
				t.Fatalf("%q %v: rows from %d, %d values accepted", info.Name, info.Shape, row0, len(dst))
			}
			for i, v := range dst {
				if math.Float32bits(v) != math.Float32bits(whole[e0+i]) {
					t.Fatalf("%q row value %d (element %d) = %#08x, whole tensor %#08x", info.Name, i, e0+i, math.Float32bits(v), math.Float32bits(whole[e0+i]))
				}
			}
		}
	})
}
