package backend

import (
	"strconv"
	"strings"
	"testing"
)

// testBuf is a Buffer of n float32 elements with no storage: views only
// need its length.
type testBuf int

func (b testBuf) Len() int     { return int(b) }
func (b testBuf) DType() DType { return Float32 }

func TestReshape(t *testing.T) {
	base, err := NewTensor(testBuf(64), 4, 3, 4, 5)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		shape []int
		want  Shape
		err   string
	}{
		{"same", []int{3, 4, 5}, Shape{3, 4, 5}, ""},
		{"flatten", []int{12, 5}, Shape{12, 5}, ""},
		{"infer last", []int{3, -1}, Shape{3, 20}, ""},
		{"infer to same", []int{3, -1, 5}, Shape{3, 4, 5}, ""},
		{"infer first", []int{-1, 10}, Shape{6, 10}, ""},
		{"rank 1", []int{60}, Shape{60}, ""},
		{"wrong count", []int{7, 8}, nil, "60 elements"},
		{"two inferred", []int{-1, -1}, nil, "bad extent"},
		{"negative", []int{-2, -30}, nil, "bad extent"},
		{"indivisible", []int{-1, 7}, nil, "cannot infer"},
		{"infer beside zero", []int{0, -1}, nil, "cannot infer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			arg := append([]int(nil), tc.shape...)
			got, err := base.Reshape(arg...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Reshape(%v) error %v, want one containing %q", tc.shape, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Reshape(%v): %v", tc.shape, err)
			}
			if !got.Shape().Equal(tc.want) || got.Offset() != 4 || got.Buffer() != base.Buffer() || !got.Contiguous() {
				t.Fatalf("Reshape(%v) = %v, want shape %v at offset 4 of the same buffer", tc.shape, got, tc.want)
			}
			for i := range arg {
				if arg[i] != tc.shape[i] {
					t.Fatalf("Reshape(%v) changed its argument to %v", tc.shape, arg)
				}
			}
		})
	}
	if _, err := base.Reshape(60); err != nil {
		t.Fatal(err)
	}
	perm, err := base.Permute(2, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := perm.Reshape(60); err == nil {
		t.Fatal("Reshape of a permuted view succeeded")
	}
}

// TestViewsAllocateNothing checks the cases that views on the hot path of
// generation rely on: an unchanged shape or one passed as a slice, and the
// whole of axis 0. (Extents listed as arguments cost one allocation, made
// by the caller: the view keeps the slice.)
func TestViewsAllocateNothing(t *testing.T) {
	base, err := NewTensor(testBuf(60), 0, 3, 4, 5)
	if err != nil {
		t.Fatal(err)
	}
	flat := Shape{12, 5}
	var sink Tensor
	cases := map[string]func(){
		"same shape":   func() { sink = base.MustReshape(base.Shape()...) },
		"shape slice":  func() { sink = base.MustReshape(flat...) },
		"whole axis 0": func() { sink = base.MustSlice(0, 3) },
	}
	for name, f := range cases {
		if n := testing.AllocsPerRun(10, f); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
	}
	_ = sink
}

func TestSlice(t *testing.T) {
	base, err := NewTensor(testBuf(40), 2, 3, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		from, to int
		want     Shape
		off      int
		ok       bool
	}{
		{0, 3, Shape{3, 2, 5}, 2, true},
		{1, 3, Shape{2, 2, 5}, 12, true},
		{2, 2, Shape{0, 2, 5}, 22, true},
		{-1, 2, nil, 0, false},
		{2, 1, nil, 0, false},
		{0, 4, nil, 0, false},
	}
	for _, tc := range tests {
		got, err := base.Slice(tc.from, tc.to)
		if !tc.ok {
			if err == nil {
				t.Errorf("Slice(%d, %d) = %v, want an error", tc.from, tc.to, got)
			}
			continue
		}
		if err != nil || !got.Shape().Equal(tc.want) || got.Offset() != tc.off {
			t.Errorf("Slice(%d, %d) = %v, %v; want shape %v at offset %d", tc.from, tc.to, got, err, tc.want, tc.off)
		}
	}
}

// TestContiguous checks strided views against the definition: every axis
// longer than 1 has its row-major stride. Strided views must be told apart
// without allocating, since every op's argument check asks.
func TestContiguous(t *testing.T) {
	base, err := NewTensor(testBuf(120), 0, 2, 3, 4, 5)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		shape   Shape
		strides []int
		want    bool
	}{
		{"row-major", Shape{2, 3, 4, 5}, []int{60, 20, 5, 1}, true},
		{"unit axes may have any stride", Shape{1, 3, 1, 5}, []int{999, 5, 7, 1}, true},
		{"transposed", Shape{5, 4}, []int{1, 5}, false},
		{"broadcast", Shape{3, 5}, []int{0, 1}, false},
		{"column slice", Shape{6, 2}, []int{5, 1}, false},
		{"every other row", Shape{3, 5}, []int{10, 1}, false},
		{"scalar", Shape{}, []int{}, true},
		{"empty", Shape{0, 5}, []int{5, 1}, true},
	}
	for _, tt := range tests {
		v, err := base.Strided(0, tt.shape, tt.strides)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := v.Contiguous(); got != tt.want {
			t.Errorf("%s: Contiguous() = %v, want %v", tt.name, got, tt.want)
		}
		if n := testing.AllocsPerRun(10, func() { _ = v.Contiguous() }); n != 0 {
			t.Errorf("%s: Contiguous allocates %v times", tt.name, n)
		}
	}
}

// TestStridedBounds checks that Strided accepts exactly the views whose
// every element lies in the buffer, including where the extent of a view,
// computed naively, wraps around int back into it.
func TestStridedBounds(t *testing.T) {
	base, err := NewTensor(testBuf(10), 2, 8) // elements 2..9 of 10
	if err != nil {
		t.Fatal(err)
	}
	// huge·4 is exactly 2^IntSize, which wraps to 0.
	huge := 1 << (strconv.IntSize - 2)
	tests := []struct {
		name    string
		off     int
		shape   Shape
		strides []int
		ok      bool
	}{
		{"whole", 0, Shape{8}, []int{1}, true},
		{"last element", 7, Shape{1}, []int{1}, true},
		{"one past the end", 8, Shape{1}, []int{1}, false},
		{"reaches the end", 0, Shape{2, 4}, []int{4, 1}, true},
		{"one too long", 0, Shape{3, 3}, []int{4, 1}, false},
		{"backwards to the start", 7, Shape{10}, []int{-1}, true},
		{"backwards past the start", 7, Shape{11}, []int{-1}, false},
		{"before t's offset, inside the buffer", -2, Shape{2}, []int{1}, true},
		{"before the buffer", -3, Shape{1}, []int{1}, false},
		{"broadcast", 3, Shape{1000, 2}, []int{0, 1}, true},
		{"stride past the buffer", 0, Shape{2}, []int{10}, false},
		{"span wrapping to 0", 0, Shape{5}, []int{huge}, false},
		{"negative span wrapping to 0", 0, Shape{5}, []int{-huge}, false},
		{"most negative stride", 0, Shape{2}, []int{-huge * 2}, false},
		{"offset the most negative int", huge * -2, Shape{1}, []int{1}, false},
		{"empty anywhere", 1000, Shape{0, 3}, []int{huge, 1}, true},
		{"scalar", 1, Shape{}, []int{}, true},
	}
	for _, tt := range tests {
		v, err := base.Strided(tt.off, tt.shape, tt.strides)
		if (err == nil) != tt.ok {
			t.Errorf("%s: Strided(%d, %v, %v) = %v, %v; want ok %v", tt.name, tt.off, tt.shape, tt.strides, v, err, tt.ok)
		}
	}
}

// TestNewTensorRejectsOverflow checks that a shape whose element count
// overflows int is an error rather than a view that wraps past the
// buffer's bounds check.
func TestNewTensorRejectsOverflow(t *testing.T) {
	// big·big is exactly 2^IntSize, which wraps to 0 (2^32 on 64-bit).
	big := 1 << (strconv.IntSize / 2)
	for _, shape := range [][]int{{big, big}, {3, big, big}, {big, big, 5}} {
		_, err := NewTensor(testBuf(16), 0, shape...)
		if err == nil {
			t.Errorf("NewTensor(%v) accepted a shape of more elements than an int holds", shape)
		}
	}
	for _, shape := range [][]int{{0, big, big}, {big, big, 0}} {
		// A zero extent makes the view empty, however large the others.
		if _, err := NewTensor(testBuf(0), 0, shape...); err != nil {
			t.Errorf("NewTensor(%v): %v", shape, err)
		}
	}
}
