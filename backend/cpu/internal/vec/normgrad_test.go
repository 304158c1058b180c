package vec

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// normGradRowByRow is what the norm gradients' rows kernels must equal bit
// for bit: each row's statistics by the set's statistics kernel, then its
// step, one row after the other, the accumulators taking each row in turn.
func normGradRowByRow(k *Kernels, layer bool, dx, x, w, dy, accG, accB []float32, cols int, eps float64) {
	n := float64(cols)
	for r := range len(dx) / cols {
		dr, xr, gr := dx[r*cols:(r+1)*cols], x[r*cols:(r+1)*cols], dy[r*cols:(r+1)*cols]
		if !layer {
			ss, dot := k.SumSquaresDot3(xr, w, gr)
			rs, c := rmsNormGradScalars(ss, dot, n, eps)
			if accG != nil {
				k.RMSNormGradAcc(dr, xr, w, gr, accG, rs, c)
			} else {
				k.RMSNormGrad(dr, xr, w, gr, rs, c)
			}
			continue
		}
		sd, ssd, sg, sgd := k.LayerNormGradStats(xr, w, gr, Pivot(xr))
		mean, rstd, mg, mgx := layerNormGradScalars(xr, sd, ssd, sg, sgd, n, eps)
		if accG != nil {
			k.LayerNormGradAcc(dr, xr, w, gr, accG, accB, mean, rstd, mg, mgx)
		} else {
			k.LayerNormGrad(dr, xr, w, gr, mean, rstd, mg, mgx)
		}
	}
	k.Fence()
}

// TestNormGradRowsAreRowByRow checks RMSNormGradRows and LayerNormGradRows
// of every set and its streaming twin against normGradRowByRow, with and
// without the parameters' accumulators: rows whose length is a multiple
// of the vector (the AVX-512 loops' non-temporal stores) or not, or
// shorter than one, outputs on a cache line boundary or off it, dx
// overlapping x (in place), x and dy a row longer than dx (whose extra
// row no statistics pass may take, nor add to accB), and wild values.
func TestNormGradRowsAreRowByRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 19))
	g := gen{rng}
	const eps = 1e-5
	for _, k := range withTwins(All()) {
		for _, layer := range []bool{false, true} {
			for _, shape := range [][2]int{{1, 1}, {4, 7}, {3, 16}, {5, 33}, {4, 64}, {2, 1000}, {7, 1024}} {
				for _, acc := range []bool{false, true} {
					for _, place := range []string{"aligned", "offset", "in place", "long inputs"} {
						for _, wild := range []bool{false, true} {
							rows, cols := shape[0], shape[1]
							draw := func(n int) []float32 {
								if wild {
									return g.wild(n)
								}
								return g.uniform(n, -2, 2)
							}
							x, dy, w := draw(rows*cols), draw(rows*cols), draw(cols)
							if place == "long inputs" {
								x, dy = append(x, draw(cols)...), append(dy, draw(cols)...)
							}
							var accG, accB []float32
							if acc {
								accG, accB = draw(cols), draw(cols)
							}
							want := aligned64(make([]float32, rows*cols))
							xw, accGw, accBw := slices.Clone(x), slices.Clone(accG), slices.Clone(accB)
							got := aligned64(make([]float32, rows*cols+3))
							xg := slices.Clone(x)
							switch place {
							case "aligned", "long inputs":
								got = got[:rows*cols]
							case "offset":
								got = got[3:]
							case "in place":
								got, want = xg, xw
							}
							normGradRowByRow(k, layer, want, xw, w, dy, accGw, accBw, cols, eps)
							accGg, accBg := slices.Clone(accG), slices.Clone(accB)
							if layer {
								k.LayerNormGradRows(got, xg, w, dy, accGg, accBg, cols, eps)
							} else {
								k.RMSNormGradRows(got, xg, w, dy, accGg, cols, eps)
							}
							k.Fence()
							where := fmt.Sprintf("%s layer=%v %dx%d acc=%v %s wild=%v", k.Name, layer, rows, cols, acc, place, wild)
							for _, c := range []struct {
								name      string
								got, want []float32
							}{{"dx", got, want}, {"accG", accGg, accGw}, {"accB", accBg, accBw}} {
								for j := range c.want {
									if !sameFloat(c.got[j], c.want[j]) {
										t.Fatalf("%s: %s[%d] = %v, row by row %v", where, c.name, j, c.got[j], c.want[j])
									}
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestNormGradRowsShapes checks the rows kernels' argument checks: no
// rows for cols 0, and a panic for an output not whole rows or inputs
// too short, never a read past them.
func TestNormGradRowsShapes(t *testing.T) {
	long, short := make([]float32, 8), make([]float32, 7)
	for _, k := range All() {
		k.LayerNormGradRows(nil, nil, nil, nil, nil, nil, 0, 1e-5)
		k.RMSNormGradRows(nil, nil, nil, nil, nil, 0, 1e-5)
		for _, c := range []struct {
			name string
			f    func()
		}{
			{"layer, not whole rows", func() { k.LayerNormGradRows(short, long, long, long, nil, nil, 4, 1e-5) }},
			{"layer, x short", func() { k.LayerNormGradRows(long, short, long, long, nil, nil, 4, 1e-5) }},
			{"layer, dy short", func() { k.LayerNormGradRows(long, long, long, short, nil, nil, 8, 1e-5) }},
			{"layer, w short", func() { k.LayerNormGradRows(long, long, short, long, nil, nil, 8, 1e-5) }},
			{"layer, accB short", func() { k.LayerNormGradRows(long, long, long, long, long, short, 8, 1e-5) }},
			{"layer, accB nil", func() { k.LayerNormGradRows(long, long, long, long, long, nil, 8, 1e-5) }},
			{"rms, not whole rows", func() { k.RMSNormGradRows(long, long, long, long, nil, 3, 1e-5) }},
			{"rms, acc short", func() { k.RMSNormGradRows(long, long, long, long, short, 8, 1e-5) }},
			{"rows of no length", func() { k.RMSNormGradRows(long, long, long, long, nil, 0, 1e-5) }},
		} {
			if !panics(c.f) {
				t.Errorf("%s: %s did not panic", k.Name, c.name)
			}
		}
	}
	if Pivot(nil) != 0 {
		t.Errorf("Pivot of an empty row = %v, want 0", Pivot(nil))
	}
}
