package rowperm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPermuteKnown checks hand-worked cases: each element is 10·row +
// column of its source row, so the expected results can be read off.
func TestPermuteKnown(t *testing.T) {
	for _, tc := range []struct {
		name          string
		data          []float32
		perm          []int
		gather, scatt []float32
	}{
		{"empty", []float32{}, nil, []float32{}, []float32{}},
		{"no columns", []float32{}, []int{1, 0}, []float32{}, []float32{}},
		{"one row", []float32{0, 1, 2}, []int{0}, []float32{0, 1, 2}, []float32{0, 1, 2}},
		{"swap", []float32{0, 1, 10, 11}, []int{1, 0}, []float32{10, 11, 0, 1}, []float32{10, 11, 0, 1}},
		// A 3-cycle is not its own inverse, so it tells the two directions
		// apart: gathering takes rows 2, 0, 1; scattering sends row 0 to 2,
		// row 1 to 0 and row 2 to 1.
		{"cycle", []float32{0, 10, 20}, []int{2, 0, 1}, []float32{20, 0, 10}, []float32{10, 20, 0}},
		{"cycle, 2 columns", []float32{0, 1, 10, 11, 20, 21}, []int{2, 0, 1},
			[]float32{20, 21, 0, 1, 10, 11}, []float32{10, 11, 20, 21, 0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := slices.Clone(tc.data)
			if got := Permute(tc.data, tc.perm, false); !slices.Equal(got, tc.gather) {
				t.Errorf("Permute(%v, %v, false) = %v, want %v", tc.data, tc.perm, got, tc.gather)
			}
			if got := Permute(tc.data, tc.perm, true); !slices.Equal(got, tc.scatt) {
				t.Errorf("Permute(%v, %v, true) = %v, want %v", tc.data, tc.perm, got, tc.scatt)
			}
			if !slices.Equal(tc.data, orig) {
				t.Errorf("Permute changed its input to %v", tc.data)
			}
		})
	}
}

// TestPermuteRandom checks random permutations against the definition,
// element by element, and that the two directions undo each other.
func TestPermuteRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		rows, cols := rng.IntN(9)+1, rng.IntN(5)
		perm := rng.Perm(rows)
		data := make([]float32, rows*cols)
		for i := range data {
			data[i] = rng.Float32()
		}
		g, s := Permute(data, perm, false), Permute(data, perm, true)
		for i, p := range perm {
			for c := range cols {
				if g[i*cols+c] != data[p*cols+c] || s[p*cols+c] != data[i*cols+c] {
					t.Fatalf("perm %v, %d columns: row %d misplaced", perm, cols, i)
				}
			}
		}
		if !slices.Equal(Permute(g, perm, true), data) || !slices.Equal(Permute(s, perm, false), data) {
			t.Fatalf("perm %v, %d columns: the directions do not undo each other", perm, cols)
		}
	}
}

func TestPermutePanics(t *testing.T) {
	for _, tc := range []struct {
		n    int
		perm []int
	}{
		{5, []int{0, 1}},
		{3, nil},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Permute of %d values by %d rows did not panic", tc.n, len(tc.perm))
				}
			}()
			Permute(make([]float32, tc.n), tc.perm, false)
		}()
	}
}

func ExamplePermute() {
	m := []float32{
		0, 1, // row 0
		10, 11, // row 1
		20, 21, // row 2
	}
	perm := []int{2, 0, 1}
	g := Permute(m, perm, false)
	fmt.Println(g)
	fmt.Println(Permute(g, perm, true))
	// Output:
	// [20 21 0 1 10 11]
	// [0 1 10 11 20 21]
}
