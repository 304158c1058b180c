package conformance

import (
	"math"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
)

func TestNMSE(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	tests := []struct {
		name string
		got  []float32
		ref  []float64
		want float64
	}{
		{"exact", []float32{1, -2, 3}, []float64{1, -2, 3}, 0},
		{"relative 1e-3 everywhere", []float32{1.001, -2.002}, []float64{1, -2}, 1e-6},
		{"one of four off by one", []float32{1, 1, 1, 2}, []float64{1, 1, 1, 1}, 0.25},
		{"zero reference uses the squared error", []float32{0.5, 0}, []float64{0, 0}, 0.25},
		{"NaN never passes", []float32{1, nan}, []float64{1, 1}, math.Inf(1)},
		{"Inf never passes", []float32{inf}, []float64{1}, math.Inf(1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NMSE(tc.got, tc.ref)
			if math.Abs(got-tc.want) > 1e-9*math.Max(1, tc.want) && got != tc.want {
				t.Errorf("NMSE = %g, want %g", got, tc.want)
			}
		})
	}
}

func TestLayout(t *testing.T) {
	tests := []struct {
		name    string
		off     int
		shape   backend.Shape
		strides []int
		index   []int
		end     int
	}{
		{"contiguous", 3, backend.Shape{2, 3}, []int{3, 1}, []int{3, 4, 5, 6, 7, 8}, 9},
		{"transposed", 0, backend.Shape{3, 2}, []int{1, 3}, []int{0, 3, 1, 4, 2, 5}, 6},
		{"window with gaps", 1, backend.Shape{2, 2}, []int{5, 1}, []int{1, 2, 6, 7}, 8},
		{"broadcast", 2, backend.Shape{2, 3}, []int{0, 1}, []int{2, 3, 4, 2, 3, 4}, 5},
		{"empty", 4, backend.Shape{0, 3}, []int{3, 1}, []int{}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			index, end := layout(tc.off, tc.shape, tc.strides)
			if end != tc.end || len(index) != len(tc.index) {
				t.Fatalf("layout = %v, end %d; want %v, end %d", index, end, tc.index, tc.end)
			}
			for i := range index {
				if index[i] != tc.index[i] {
					t.Fatalf("layout = %v, want %v", index, tc.index)
				}
			}
		})
	}
}

// TestCheckGuards checks the guard check on a host-only guarded region:
// a change inside the view is fine, one before, after or in a gap is
// reported with where it happened.
func TestCheckGuards(t *testing.T) {
	index, _ := layout(2, backend.Shape{2, 2}, []int{4, 1}) // positions 2,3,6,7
	before := make([]float32, 11)
	for i := range before {
		before[i] = sentinel(i)
	}
	tests := []struct {
		name  string
		write int
		want  string
	}{
		{"inside the view", 3, ""},
		{"before", 1, "1 before the first element"},
		{"after", 9, "2 after the last element"},
		{"gap", 4, "in a gap of the strided view"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			full := append([]float32(nil), before...)
			full[tc.write] = 0.5
			e := &Env{}
			ok := e.checkGuards(&guarded{name: "out", before: before, index: index}, full)
			if tc.want == "" {
				if !ok || e.Failed() {
					t.Fatalf("write inside the view reported: %v", e.failures)
				}
				return
			}
			if ok || len(e.failures) != 1 {
				t.Fatalf("write at %d not reported (failures %v)", tc.write, e.failures)
			}
			if got := e.failures[0]; !strings.Contains(got, tc.want) {
				t.Errorf("report %q does not say %q", got, tc.want)
			}
		})
	}
}

func TestRegisterRejectsBadCases(t *testing.T) {
	run := func(*Env) {}
	tests := []struct {
		name string
		c    Case
	}{
		{"no name", Case{Run: run}},
		{"no run", Case{Name: "x/no_run"}},
		{"space in name", Case{Name: "x/a b", Run: run}},
		{"duplicate", Case{Name: Cases()[0].Name, Run: run}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%+v) did not panic", tc.c.Name)
				}
			}()
			Register(tc.c)
		})
	}
}

func TestThresholdsCatchARelativeError(t *testing.T) {
	// Every limit must fail an output that is off by a relative 1e-3
	// everywhere (NMSE 1e-6), with a factor of ten to spare.
	for key, v := range thresholds {
		if v > 1e-7 {
			t.Errorf("threshold %s = %g lets a relative error of 1e-3 pass", key, v)
		}
	}
}

// TestRoundBF16 checks the reference rounding on values whose bfloat16
// is known by hand.
func TestRoundBF16(t *testing.T) {
	tests := []struct {
		in   uint32 // float32 bits
		want uint32
	}{
		{0x3f800000, 0x3f800000},
		{0x3f808000, 0x3f800000}, // tie, even below
		{0x3f818000, 0x3f820000}, // tie, even above
		{0xbf818000, 0xbf820000},
		{0x3f807fff, 0x3f800000},
		{0x3f808001, 0x3f810000},
		{0x3f80ffff, 0x3f810000},
		{0x3fffffff, 0x40000000}, // carries into the exponent
		{0x7f7f7fff, 0x7f7f0000},
		{0x7f7f8000, 0x7f800000}, // halfway to 2^128: infinity
		{0xff7fffff, 0xff800000},
		{0x00000001, 0x00000000},
		{0x80000001, 0x80000000},
		{0x00008000, 0x00000000}, // subnormal tie, even below
		{0x00018000, 0x00020000}, // subnormal tie, even above
		{0x007fffff, 0x00800000}, // the largest subnormal rounds up to the smallest normal
		{0x7f800000, 0x7f800000},
	}
	for _, tt := range tests {
		got := math.Float32bits(RoundBF16(math.Float32frombits(tt.in)))
		if got != tt.want {
			t.Errorf("RoundBF16(%#08x) = %#08x, want %#08x", tt.in, got, tt.want)
		}
	}
	if !math.IsNaN(float64(RoundBF16(float32(math.NaN())))) {
		t.Error("RoundBF16(NaN) is not NaN")
	}
}
