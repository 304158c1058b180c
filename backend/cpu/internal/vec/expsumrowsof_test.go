package vec

import (
	"fmt"
	"testing"
)

// TestExpSumRowsOfTakesEachMaxOnce checks expSumRowsOf, the row-at-a-time
// ExpSumRows, over every small shape (len(sums) 0 to 5, 0 to 2 rows more,
// 0 to 2 maxima known) with each set's kernels: each row's maximum not
// known is taken exactly once, by MaxScaled or as the next row of an
// ExpSumNextMax pass over a row at most two before it, the known maxima
// are never taken and are kept (they are planted a quarter above the
// rows' own, so a recomputed one shows), and every sum is ExpShiftSum
// about the row's entry in maxes, bit for bit.
func TestExpSumRowsOfTakesEachMaxOnce(t *testing.T) {
	for _, k := range withTwins(All()) {
		for _, cols := range []int{1, 2, 17} {
			for n := range 6 {
				for held := n; held <= n+2; held++ {
					for known := range min(held, 2) + 1 {
						where := fmt.Sprintf("%s cols=%d rows=%d held=%d known=%d", setName(k), cols, n, held, known)
						checkExpSumRowsOf(t, k, where, cols, n, held, known)
					}
				}
			}
		}
	}
}

// checkExpSumRowsOf runs expSumRowsOf over n sums of held rows of cols
// elements, known maxima given, with k's kernels counting whose maxima
// they take, then k's own ExpSumRows over the same rows.
func checkExpSumRowsOf(t *testing.T, k *Kernels, where string, cols, n, held, known int) {
	t.Helper()
	// Row r's elements lie in (1.5r − 0.5, 1.5r + 0.5], the largest
	// first: every row's maximum differs from the others'.
	x := make([]float32, held*cols)
	for i := range x {
		r, j := i/cols, i%cols
		x[i] = float32(r)*1.5 + 0.5 - float32(j)/float32(cols)
	}
	rowOf := func(p []float32) int {
		if len(p) != cols {
			t.Fatalf("%s: a row of %d elements, want %d", where, len(p), cols)
		}
		for r := range held {
			if &p[0] == &x[r*cols] {
				return r
			}
		}
		t.Fatalf("%s: a row not in x", where)
		return -1
	}
	taken := make([]int, held)
	kk := *k
	kk.MaxScaled = func(row []float32, scale float32) float32 {
		taken[rowOf(row)]++
		return k.MaxScaled(row, scale)
	}
	kk.ExpSumNextMax = func(row, next []float32, shift float32) (float64, float32) {
		r, u := rowOf(row), rowOf(next)
		if u <= r || u > r+2 {
			t.Errorf("%s: the pass over row %d takes row %d's maximum", where, r, u)
		}
		taken[u]++
		return k.ExpSumNextMax(row, next, shift)
	}
	maxes := make([]float64, held)
	for r := range maxes {
		maxes[r] = -7
	}
	want := func(r int) float64 {
		m := float64(k.MaxScaled(x[r*cols:(r+1)*cols], 1))
		if r < known {
			m += 0.25
		}
		return m
	}
	for r := range known {
		maxes[r] = want(r)
	}
	sums := make([]float64, n)
	expSumRowsOf(&kk)(x, cols, known, sums, maxes)
	for r := range held {
		if want := btoi(r >= known); taken[r] != want {
			t.Errorf("%s: row %d's maximum taken %d times, want %d (%d known)", where, r, taken[r], want, known)
		}
	}
	checkExpSumRows(t, k, where, x, cols, sums, maxes, want)
	// The set's own ExpSumRows, with the same planted maxima.
	for r := range maxes {
		maxes[r] = -7
	}
	for r := range known {
		maxes[r] = want(r)
	}
	clear(sums)
	k.ExpSumRows(x, cols, known, sums, maxes)
	checkExpSumRows(t, k, where+" ExpSumRows", x, cols, sums, maxes, want)
}

// btoi is 1 for true and 0 for false.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
