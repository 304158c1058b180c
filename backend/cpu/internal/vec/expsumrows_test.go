package vec

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// expSumRowsInput draws rows rows of cols elements: most from a spread
// a softmax's logits have, and at random special ones that make the AVX
// kernels leave a row to the slow path (a NaN, +Inf, all −Inf, a maximum
// whose shift sumShift refuses) or wild ones (every magnitude and
// special value).
func expSumRowsInput(g gen, rows, cols int) []float32 {
	x := make([]float32, 0, rows*cols)
	for range rows {
		row := g.uniform(cols, -20, 20)
		if cols > 0 {
			switch g.rng.IntN(12) {
			case 0:
				row[g.rng.IntN(cols)] = float32(math.NaN())
			case 1:
				row[g.rng.IntN(cols)] = float32(math.Inf(1))
			case 2:
				for i := range row {
					row[i] = float32(math.Inf(-1))
				}
			case 3:
				row[g.rng.IntN(cols)] = 1e5 // shift·log2e ≥ 2¹⁶
			case 4:
				row = g.wild(cols)
			}
		}
		x = append(x, row...)
	}
	return x
}

// TestExpSumRowsIsExpShiftSum checks every set's ExpSumRows against what
// it is documented to be: each row's maximum as MaxScaled takes it and
// ExpShiftSum about it, bit for bit, with the known maxima left as they
// were and, for rows holding a NaN, a NaN sum.
func TestExpSumRowsIsExpShiftSum(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(18, 1))}
	for _, k := range withTwins(All()) {
		// 2051: rows whose prefetch reaches 8 KB beyond the next (expSumRowsPrefetch).
		for _, cols := range []int{0, 1, 2, 15, 16, 17, 31, 33, 64, 67, 100, 255, 256, 257, 1000, 1024, 2051} {
			for _, rows := range []int{0, 1, 2, 3, 4, 9} {
				for extra := range 3 {
					for known := range min(extra+rows, 2) + 1 {
						held := rows + extra
						x := expSumRowsInput(g, held, cols)
						orig := slices.Clone(x)
						maxes := make([]float64, held)
						for r := range maxes {
							maxes[r] = -7 // neither a row's maximum nor NaN
						}
						rowMax := func(r int) float64 {
							if cols == 0 {
								return math.Inf(-1)
							}
							return float64(Go.MaxScaled(x[r*cols:(r+1)*cols], 1))
						}
						for r := range known {
							maxes[r] = rowMax(r)
						}
						sums := make([]float64, rows)
						k.ExpSumRows(x, cols, known, sums, maxes)
						where := fmt.Sprintf("%s cols=%d rows=%d extra=%d known=%d", setName(k), cols, rows, extra, known)
						checkExpSumRows(t, k, where, x, cols, sums, maxes, rowMax)
						if !slices.Equal(math32Bits(x), math32Bits(orig)) {
							t.Errorf("%s: x changed", where)
						}
					}
				}
			}
		}
	}
}

// TestExpSumRowsInBlocks checks that rows taken in blocks, each call
// holding the next block's first two rows and passing their maxima on,
// give what one call gives, bit for bit.
func TestExpSumRowsInBlocks(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(18, 3))}
	const rows, cols = 23, 100
	x := expSumRowsInput(g, rows, cols)
	for _, k := range withTwins(All()) {
		wantSums, wantMaxes := make([]float64, rows), make([]float64, rows)
		k.ExpSumRows(x, cols, 0, wantSums, wantMaxes)
		for _, block := range []int{1, 2, 3, 5, 8} {
			sums, maxes := make([]float64, rows), make([]float64, rows)
			known := 0
			for a := 0; a < rows; a += block {
				b := min(a+block, rows)
				end := min(b+2, rows)
				k.ExpSumRows(x[a*cols:end*cols], cols, known, sums[a:b], maxes[a:end])
				known = end - b
			}
			same := func(a, b []float64) bool {
				return slices.EqualFunc(a, b, func(u, v float64) bool { return math.Float64bits(u) == math.Float64bits(v) })
			}
			if !same(sums, wantSums) || !same(maxes, wantMaxes) {
				t.Errorf("%s, blocks of %d: sums %v maxes %v, one call %v and %v", setName(k), block, sums, maxes, wantSums, wantMaxes)
			}
		}
	}
}

// checkExpSumRows checks what ExpSumRows left in sums and maxes for the
// rows of x against what it is documented to be: every row's maximum
// rowMax(r) (unspecified for rows holding a NaN), and each of the first
// len(sums) rows' sum ExpShiftSum about it, bit for bit (NaN for rows
// holding one).
func checkExpSumRows(t *testing.T, k *Kernels, where string, x []float32, cols int, sums, maxes []float64, rowMax func(r int) float64) {
	t.Helper()
	for r := range maxes {
		row := x[r*cols : (r+1)*cols]
		nan := slices.ContainsFunc(row, func(v float32) bool { return v != v })
		if m := rowMax(r); !nan && maxes[r] != m {
			t.Errorf("%s row %d: max %v, want %v", where, r, maxes[r], m)
		}
		if r >= len(sums) {
			continue
		}
		want := k.ExpShiftSum(row, float32(maxes[r]))
		if nan && !math.IsNaN(sums[r]) || !nan && math.Float64bits(sums[r]) != math.Float64bits(want) {
			t.Errorf("%s row %d: sum %v, want %v", where, r, sums[r], want)
		}
	}
}

// math32Bits returns x's bit patterns, to compare slices holding NaNs.
func math32Bits(x []float32) []uint32 {
	b := make([]uint32, len(x))
	for i, v := range x {
		b[i] = math.Float32bits(v)
	}
	return b
}

// TestExpSumRowsAgainstFloat64 checks ExpSumRows' sums and maxima
// against float64 log-sum-exp parts computed directly: maxes[r] the
// row's largest element and sums[r] Σ exp(x − maxes[r]) within 4e−7
// relative (the terms' error, ExpShiftSum's doc, plus the float32
// grouping's).
func TestExpSumRowsAgainstFloat64(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(18, 2))}
	const rows, cols = 7, 1000
	x := g.uniform(rows*cols, -30, 30)
	for _, k := range withTwins(All()) {
		sums, maxes := make([]float64, rows), make([]float64, rows)
		k.ExpSumRows(x, cols, 0, sums, maxes)
		for r := range rows {
			row := x[r*cols : (r+1)*cols]
			want := math.Inf(-1)
			for _, v := range row {
				want = math.Max(want, float64(v))
			}
			var sum float64
			for _, v := range row {
				sum += math.Exp(float64(v) - want)
			}
			if maxes[r] != want || math.Abs(sums[r]-sum) > 4e-7*sum {
				t.Errorf("%s row %d: max %v sum %v, want %v and %v", setName(k), r, maxes[r], sums[r], want, sum)
			}
		}
	}
}

func TestExpSumRowsPanicsOnBadShapes(t *testing.T) {
	x := make([]float32, 12)
	f64 := func(n int) []float64 { return make([]float64, n) }
	for _, k := range All() {
		for name, f := range map[string]func(){
			"maxes not one a row":   func() { k.ExpSumRows(x, 4, 0, f64(2), f64(2)) },
			"x not whole rows":      func() { k.ExpSumRows(x, 5, 0, f64(2), f64(2)) },
			"x three rows too many": func() { k.ExpSumRows(x, 3, 0, f64(1), f64(4)) },
			"x fewer rows":          func() { k.ExpSumRows(x, 4, 0, f64(4), f64(4)) },
			"negative cols":         func() { k.ExpSumRows(x, -1, 0, f64(2), f64(2)) },
			"known beyond x":        func() { k.ExpSumRows(x, 4, 4, f64(3), f64(3)) },
			"negative known":        func() { k.ExpSumRows(x, 4, -1, f64(3), f64(3)) },
			"three known":           func() { k.ExpSumRows(x, 4, 3, f64(3), f64(3)) },
		} {
			if !panics(f) {
				t.Errorf("%s: %s: no panic", setName(k), name)
			}
		}
	}
}

// TestExpSumRowsLeavesSlowRows places rows that the AVX kernels leave to
// ExpShiftSum (a maximum whose shift sumShift refuses: NaN, ±Inf, ±1e5,
// the first float32 at 2¹⁶/log2e; rows all −Inf; a NaN below a finite
// maximum) at every subset of the positions of up to five rows, so that
// the kernel stops at the first, a middle and the last row, at rows one
// after another and at the rows only held for their maxima, and checks
// each sum and maximum against ExpShiftSum and MaxScaled as
// TestExpSumRowsIsExpShiftSum does. sums and maxes lie between guard
// entries, which must stay as they are, and x is followed by rows of
// +Inf, which a read beyond it would take into a maximum.
func TestExpSumRowsLeavesSlowRows(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(18, 4))}
	// edge is the least float32 whose shift is 2¹⁶ (sumShift refuses it);
	// the one below it is still the kernels'.
	edge := float32(45000)
	for float32(edge*log2e) < 0x1p16 {
		edge = math.Nextafter32(edge, 1e6)
	}
	below := math.Nextafter32(edge, 0)
	if _, _, ok := sumShift(below); !ok {
		t.Fatalf("sumShift refuses %v, below the edge %v", below, edge)
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	slow := []func(row []float32){
		func(row []float32) { row[len(row)-1] = nan },
		func(row []float32) { row[0] = inf },
		func(row []float32) { row[len(row)/2] = 1e5 },
		func(row []float32) {
			for i := range row {
				row[i] -= 1e5
			}
		},
		func(row []float32) { row[len(row)-1] = edge },
		func(row []float32) {
			for i := range row {
				row[i] = -inf
			}
		},
		func(row []float32) { row[len(row)-1] = below }, // not slow
		func(row []float32) { row[0], row[len(row)-1] = 1e3, nan },
	}
	const guard = -12345.5
	for _, k := range withTwins(All()) {
		for _, cols := range []int{1, 17, 300} {
			for held := range 6 {
				for rows := max(0, held-2); rows <= held; rows++ {
					for mask := range 1 << held {
						known := mask % (min(held, 2) + 1)
						back := g.uniform((held+3)*cols, -20, 20)
						for i := held * cols; i < len(back); i++ {
							back[i] = inf
						}
						x := back[:held*cols]
						for r := range held {
							if mask>>r&1 != 0 {
								slow[(mask+r)%len(slow)](x[r*cols : (r+1)*cols])
							}
						}
						rowMax := func(r int) float64 { return float64(Go.MaxScaled(x[r*cols:(r+1)*cols], 1)) }
						mbuf := make([]float64, held+2)
						sbuf := make([]float64, rows+2)
						for i := range mbuf {
							mbuf[i] = guard
						}
						for i := range sbuf {
							sbuf[i] = guard
						}
						maxes, sums := mbuf[1:held+1], sbuf[1:rows+1]
						for r := range known {
							maxes[r] = rowMax(r)
						}
						k.ExpSumRows(x, cols, known, sums, maxes)
						where := fmt.Sprintf("%s cols=%d rows=%d held=%d slow rows %b known=%d", setName(k), cols, rows, held, mask, known)
						if mbuf[0] != guard || mbuf[held+1] != guard || sbuf[0] != guard || sbuf[rows+1] != guard {
							t.Errorf("%s: wrote beyond sums or maxes: %v %v", where, sbuf, mbuf)
						}
						checkExpSumRows(t, k, where, x, cols, sums, maxes, rowMax)
					}
				}
			}
		}
	}
}
