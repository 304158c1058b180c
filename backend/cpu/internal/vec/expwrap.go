//go:build (amd64 || arm64) && !noasm

package vec

import "math"

// expAsm is an assembly set's exponential kernels in their pointer and
// length form; install turns them into the Kernels entries, with the
// checks, empty rows and far-off shifts (expShiftSumSlow) that every set
// handles alike.
type expAsm struct {
	// expShift stores exp(scale·x − shift) over n elements and returns
	// their sum.
	expShift func(dst, x *float32, scale, shift float32, n int) float64
	// expShiftNextMax is expShift with scale 1 that also returns the
	// largest element of next.
	expShiftNextMax func(dst, x, next *float32, shift float32, n int) (float64, float32)
	// expShiftSum returns the sum of 2^(x·log2e − c) over n elements, c
	// and the sum's factor from sumShift.
	expShiftSum func(x *float32, c float32, n int) float64
	// expSumNextMax is expShiftSum that also returns the largest element
	// of next.
	expSumNextMax func(x, next *float32, c float32, n int) (float64, float32)
	// expSumRows, where the set has it, is expShiftSum over rows rows of
	// cols elements, each row's maximum from maxes, where the caller
	// stored the first two and the pass over each row stores that of the
	// row two after it (which must be in memory): it stores each row's
	// sum without sumShift's fix, stops before a row whose shift
	// sumShift refuses and returns the rows done (gen_amd64.go's
	// expSumRows); AVX-512 prefetches ahead bytes beyond that row two
	// after (expSumRowsPrefetch).
	expSumRows func(x *float32, sums, maxes *float64, cols, rows, ahead int) int
}

// install sets k's ExpShift, ExpShiftNextMax, ExpShiftSum, ExpSumNextMax
// and ExpSumRows from a (ExpSumRows a loop of ExpSumNextMax calls where a
// has no expSumRows).
func (a expAsm) install(k *Kernels) {
	negInf := float32(math.Inf(-1))
	k.ExpShift = func(dst, x []float32, scale, shift float32) float64 {
		if len(dst) == 0 {
			return 0
		}
		x = x[:len(dst)]
		return a.expShift(&dst[0], &x[0], scale, shift, len(dst))
	}
	k.ExpShiftNextMax = func(dst, x, next []float32, shift float32) (float64, float32) {
		switch {
		case len(next) != 0 && len(next) != len(dst):
			panic("vec: next row and row differ in length")
		case len(dst) == 0:
			return 0, negInf
		}
		x = x[:len(dst)]
		if len(next) == 0 {
			return a.expShift(&dst[0], &x[0], 1, shift, len(dst)), negInf
		}
		return a.expShiftNextMax(&dst[0], &x[0], &next[0], shift, len(dst))
	}
	k.ExpShiftSum = func(x []float32, shift float32) float64 {
		c, fix, ok := sumShift(shift)
		switch {
		case len(x) == 0:
			return 0
		case !ok:
			return expShiftSumSlow(x, shift)
		}
		return a.expShiftSum(&x[0], c, len(x)) * fix
	}
	k.ExpSumNextMax = func(x, next []float32, shift float32) (float64, float32) {
		c, fix, ok := sumShift(shift)
		switch {
		case len(next) != 0 && len(next) != len(x):
			panic("vec: next row and row differ in length")
		case len(x) == 0:
			return 0, negInf
		case !ok:
			return expShiftSumSlow(x, shift), nextMax(next, len(x))
		case len(next) == 0:
			return a.expShiftSum(&x[0], c, len(x)) * fix, negInf
		}
		sum, m := a.expSumNextMax(&x[0], &next[0], c, len(x))
		return sum * fix, m
	}
	rowByRow := expSumRowsOf(k)
	if a.expSumRows == nil {
		k.ExpSumRows = rowByRow
		return
	}
	k.ExpSumRows = func(x []float32, cols, known int, sums, maxes []float64) {
		held := expSumRowsShape(x, cols, known, sums, maxes)
		if cols == 0 {
			rowByRow(x, cols, known, sums, maxes)
			return
		}
		for r := 0; r < len(sums); r++ {
			// The kernel takes the rows with two after them, the last
			// one (and where it stops, the row after) a pass of its own.
			if last := min(len(sums), held-2); r < last {
				k.rowMaxima(x, cols, maxes, &known, r+1)
				done := a.expSumRows(&x[r*cols], &sums[r], &maxes[r], cols, last-r, expSumRowsPrefetch(cols))
				for i := r; i < r+done; i++ {
					_, fix, _ := sumShift(float32(maxes[i]))
					sums[i] *= fix
				}
				if done > 0 {
					r += done
					known = max(known, r+2)
				}
				if r == len(sums) {
					break
				}
			}
			k.rowMaxima(x, cols, maxes, &known, r)
			sums[r] = k.ExpShiftSum(x[r*cols:(r+1)*cols], float32(maxes[r]))
		}
		k.rowMaxima(x, cols, maxes, &known, held-1)
	}
}

// expSumRowsAhead is how far ahead of the row whose exponentials it sums
// AVX-512's expSumRows asks for lines (PREFETCHT0), in bytes: that row's
// next, two rows on, is loaded anyway, so the prefetch reaches beyond it
// by what is left, but at least expSumRowsBeyond (16 KB for rows of 1024
// floats, 8 KB from 2048). On Zen 5, rows from L3, one thread, the
// kernel over blocks as CrossEntropy calls it: 16 KB beyond the next row
// made rows of 1024 floats 3–8% faster than none, and rows of 4096 to
// 32768 15–20% slower (79 against 66–72 ns per 1024 floats); with none
// beyond, those wide rows measured 5–10% slower through the op than with
// 8 KB, ExpSumNextMax's distance (cross_entropy at 4096 floats a row:
// 48.8–50.7 against 52.8–56.7 GB/s).
const (
	expSumRowsAhead  = 24 << 10
	expSumRowsBeyond = 8 << 10
)

// expSumRowsPrefetch returns expSumRows' prefetch distance beyond the
// next row for rows of cols floats (see expSumRowsAhead).
func expSumRowsPrefetch(cols int) int { return max(expSumRowsBeyond, expSumRowsAhead-2*4*cols) }
