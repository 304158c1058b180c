package strided

import (
	"slices"
	"testing"
)

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shape  []int
		ds, ss []int
		want   []Axis
		empty  bool
	}{
		{"contiguous", []int{2, 3, 4}, []int{12, 4, 1}, []int{12, 4, 1}, []Axis{{24, 1, 1}}, false},
		{"transpose", []int{3, 4}, []int{4, 1}, []int{1, 3}, []Axis{{3, 4, 1}, {4, 1, 3}}, false},
		{"transposed inner", []int{2, 3, 4}, []int{12, 4, 1}, []int{12, 1, 3}, []Axis{{2, 12, 12}, {3, 4, 1}, {4, 1, 3}}, false},
		{"broadcast row", []int{5, 7}, []int{7, 1}, []int{0, 1}, []Axis{{5, 7, 0}, {7, 1, 1}}, false},
		{"broadcast all", []int{5, 7}, []int{7, 1}, []int{0, 0}, []Axis{{35, 1, 0}}, false},
		{"unit axes dropped", []int{1, 6, 1}, []int{99, 1, 77}, []int{5, 2, 3}, []Axis{{6, 1, 2}}, false},
		{"scalar", nil, nil, nil, []Axis{{1, 1, 1}}, false},
		{"empty", []int{3, 0}, []int{0, 1}, []int{0, 1}, nil, true},
		{"negative", []int{4}, []int{1}, []int{-1}, []Axis{{4, 1, -1}}, false},
	} {
		got, ok := Merge(tc.shape, tc.ds, tc.ss)
		if ok == tc.empty || !slices.Equal(got, tc.want) {
			t.Errorf("%s: Merge = %v, %v; want %v, %v", tc.name, got, ok, tc.want, !tc.empty)
		}
	}
}
