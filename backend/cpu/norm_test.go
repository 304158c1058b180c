package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/backend"
)

// rmsNormRef normalises one row in float64.
func rmsNormRef(x, w []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	r := 1 / math.Sqrt(ss/float64(len(x))+eps)
	y := make([]float64, len(x))
	for j := range x {
		y[j] = x[j] * r * w[j]
	}
	return y
}

// layerNormRef normalises one row in float64; b may be nil.
func layerNormRef(x, g, b []float64, eps float64) []float64 {
	n := float64(len(x))
	var mean, v float64
	for _, xv := range x {
		mean += xv
	}
	mean /= n
	for _, xv := range x {
		v += (xv - mean) * (xv - mean)
	}
	v /= n
	y := make([]float64, len(x))
	for j := range x {
		y[j] = (x[j] - mean) / math.Sqrt(v+eps) * g[j]
		if b != nil {
			y[j] += b[j]
		}
	}
	return y
}

var normShapes = [][]int{{1, 1}, {1, 7}, {5, 13}, {2, 3, 8}, {300, 64}}

func TestRMSNorm(t *testing.T) {
	const eps = 1e-5
	for i, shape := range normShapes {
		t.Run(shapeName(shape...), func(t *testing.T) {
			eachConfig(t, func(t *testing.T, be *Backend) {
				rows, cols := backend.Shape(shape).Rows()
				rng := newRNG(uint64(i))
				xData, wData := uniform(rng, rows*cols, -2, 2), uniform(rng, cols, 0.5, 1.5)
				x, w := upload(t, be, xData, shape...), upload(t, be, wData, cols)
				y := poisoned(t, be, shape...)
				be.RMSNorm(y, x, w, eps)
				want := make([]float64, rows*cols)
				for r := range rows {
					copy(want[r*cols:], rmsNormRef(f64(xData[r*cols:(r+1)*cols]), f64(wData), eps))
				}
				assertClose(t, "y", download(t, be, y), want, 3e-7, 1e-30)
				be.RMSNorm(x, x, w, eps) // in place
				assertClose(t, "y in place", download(t, be, x), want, 3e-7, 1e-30)
			})
		})
	}
}

func TestRMSNormGrad(t *testing.T) {
	const eps = 1e-5
	for i, shape := range normShapes {
		for _, withDW := range []bool{true, false} {
			name := shapeName(shape...)
			if !withDW {
				name += "_no_dw"
			}
			t.Run(name, func(t *testing.T) {
				eachConfig(t, func(t *testing.T, be *Backend) {
					rows, cols := backend.Shape(shape).Rows()
					rng := newRNG(uint64(i))
					xData, wData := uniform(rng, rows*cols, -2, 2), uniform(rng, cols, 0.5, 1.5)
					dyData, dwData := uniform(rng, rows*cols, -1, 1), uniform(rng, cols, -1, 1)
					x, w, dy := upload(t, be, xData, shape...), upload(t, be, wData, cols), upload(t, be, dyData, shape...)
					dx := poisoned(t, be, shape...)
					var dw backend.Tensor
					if withDW {
						dw = upload(t, be, dwData, cols)
					}
					be.RMSNormGrad(dx, dw, x, w, dy, eps)

					// Gradients of L = Σ dy⊙y by central differences of
					// the reference, row by row for x and whole for w.
					wantDX := make([]float64, rows*cols)
					for r := range rows {
						g := f64(dyData[r*cols : (r+1)*cols])
						loss := func(xr []float64) float64 { return dot(g, rmsNormRef(xr, f64(wData), eps)) }
						copy(wantDX[r*cols:], numGrad(loss, f64(xData[r*cols:(r+1)*cols])))
					}
					assertClose(t, "dx", download(t, be, dx), wantDX, 2e-5, 2e-6)
					if !withDW {
						return
					}
					loss := func(wv []float64) float64 {
						var s float64
						for r := range rows {
							s += dot(f64(dyData[r*cols:(r+1)*cols]), rmsNormRef(f64(xData[r*cols:(r+1)*cols]), wv, eps))
						}
						return s
					}
					wantDW := numGrad(loss, f64(wData))
					for j := range wantDW {
						wantDW[j] += float64(dwData[j]) // accumulated, not overwritten
					}
					assertClose(t, "dw", download(t, be, dw), wantDW, 2e-5, 2e-6)
				})
			})
		}
	}
}

func TestLayerNorm(t *testing.T) {
	const eps = 1e-5
	for i, shape := range normShapes {
		for _, withBeta := range []bool{true, false} {
			name := shapeName(shape...)
			if !withBeta {
				name += "_no_beta"
			}
			t.Run(name, func(t *testing.T) {
				eachConfig(t, func(t *testing.T, be *Backend) {
					rows, cols := backend.Shape(shape).Rows()
					rng := newRNG(uint64(i))
					// A mean far from zero: one-pass variance would cancel.
					xData := uniform(rng, rows*cols, 99, 101)
					gData, bData := uniform(rng, cols, 0.5, 1.5), uniform(rng, cols, -1, 1)
					x, g := upload(t, be, xData, shape...), upload(t, be, gData, cols)
					var b backend.Tensor
					var bRef []float64
					if withBeta {
						b, bRef = upload(t, be, bData, cols), f64(bData)
					}
					y := poisoned(t, be, shape...)
					be.LayerNorm(y, x, g, b, eps)
					want := make([]float64, rows*cols)
					for r := range rows {
						copy(want[r*cols:], layerNormRef(f64(xData[r*cols:(r+1)*cols]), f64(gData), bRef, eps))
					}
					assertClose(t, "y", download(t, be, y), want, 1e-6, 1e-6)
				})
			})
		}
	}
}

func TestLayerNormGrad(t *testing.T) {
	const eps = 1e-5
	for i, shape := range normShapes {
		for _, params := range []string{"both", "dgamma", "dbeta", "none"} {
			t.Run(shapeName(shape...)+"_"+params, func(t *testing.T) {
				eachConfig(t, func(t *testing.T, be *Backend) {
					rows, cols := backend.Shape(shape).Rows()
					rng := newRNG(uint64(i))
					xData, gData := uniform(rng, rows*cols, -2, 2), uniform(rng, cols, 0.5, 1.5)
					dyData := uniform(rng, rows*cols, -1, 1)
					dgData, dbData := uniform(rng, cols, -1, 1), uniform(rng, cols, -1, 1)
					x, g, dy := upload(t, be, xData, shape...), upload(t, be, gData, cols), upload(t, be, dyData, shape...)
					dx := poisoned(t, be, shape...)
					var dg, db backend.Tensor
					if params == "both" || params == "dgamma" {
						dg = upload(t, be, dgData, cols)
					}
					if params == "both" || params == "dbeta" {
						db = upload(t, be, dbData, cols)
					}
					be.LayerNormGrad(dx, dg, db, x, g, dy, eps)

					zeros := make([]float64, cols)
					wantDX := make([]float64, rows*cols)
					for r := range rows {
						dyr := f64(dyData[r*cols : (r+1)*cols])
						loss := func(xr []float64) float64 { return dot(dyr, layerNormRef(xr, f64(gData), zeros, eps)) }
						copy(wantDX[r*cols:], numGrad(loss, f64(xData[r*cols:(r+1)*cols])))
					}
					// A row of one element normalises to 0 whatever x is:
					// its gradient is 0, which the differences agree with.
					assertClose(t, "dx", download(t, be, dx), wantDX, 2e-5, 2e-6)

					total := func(gv, bv []float64) float64 {
						var s float64
						for r := range rows {
							s += dot(f64(dyData[r*cols:(r+1)*cols]), layerNormRef(f64(xData[r*cols:(r+1)*cols]), gv, bv, eps))
						}
						return s
					}
					if !dg.IsZero() {
						want := numGrad(func(gv []float64) float64 { return total(gv, zeros) }, f64(gData))
						for j := range want {
							want[j] += float64(dgData[j])
						}
						assertClose(t, "dgamma", download(t, be, dg), want, 2e-5, 2e-6)
					}
					if !db.IsZero() {
						want := numGrad(func(bv []float64) float64 { return total(f64(gData), bv) }, zeros)
						for j := range want {
							want[j] += float64(dbData[j])
						}
						assertClose(t, "dbeta", download(t, be, db), want, 2e-5, 2e-6)
					}
				})
			})
		}
	}
}

// TestNormGradFlush checks that the norm gradients' parameter sums, taken
// in float32 over a block of flushRows rows at a time (see
// flushedColumnSums), err by no more than such a block's float32 sum
// may. Every row adds the same terms (dy = 0.1; x = (0, 1), so x̂ = (−1, 1)
// and x·r = (0, √2)), so every float32 addition rounds the same way and
// the errors add up instead of cancelling. The serial configurations
// take the rows as one piece (below two grains), where the flush alone
// bounds the float32 sums: without it they erred by 4·10⁻⁵ (relative),
// with it by 6·10⁻⁷.
func TestNormGradFlush(t *testing.T) {
	const rows, cols = 4000, 2
	xData, dyData := make([]float32, rows*cols), make([]float32, rows*cols)
	for r := range rows {
		xData[r*cols+1] = 1
		dyData[r*cols], dyData[r*cols+1] = 0.1, 0.1
	}
	sum := rows * float64(float32(0.1))
	// A float32 sum of flushRows terms errs by at most flushRows−1 units
	// of rounding (2⁻²⁴) of their magnitudes' sum; RMSNorm's terms'
	// roundings (r, dy·x·r) and the result's add three.
	rtol := float64(flushRows+4) * 0x1p-24
	eachConfig(t, func(t *testing.T, be *Backend) {
		if be.grain == defaultGrain {
			if c, d := be.pieces(rows, cols*8, 2*cols), be.pieces(rows, cols*6, cols); c != 1 || d != 1 {
				t.Fatalf("%d and %d pieces, want one: the flush is not what bounds the sums", c, d)
			}
		}
		x, dy := upload(t, be, xData, rows, cols), upload(t, be, dyData, rows, cols)
		ones := upload(t, be, []float32{1, 1}, cols)
		dg, db, dw := upload(t, be, make([]float32, cols), cols), upload(t, be, make([]float32, cols), cols), upload(t, be, make([]float32, cols), cols)
		dx := poisoned(t, be, rows, cols)
		be.LayerNormGrad(dx, dg, db, x, ones, dy, 0)
		be.RMSNormGrad(dx, dw, x, ones, dy, 0)
		assertClose(t, "dgamma", download(t, be, dg), []float64{-sum, sum}, rtol, 0)
		assertClose(t, "dbeta", download(t, be, db), []float64{sum, sum}, rtol, 0)
		assertClose(t, "dw", download(t, be, dw), []float64{0, sum * math.Sqrt2}, rtol, 0)
	})
}

// dot returns Σ a⊙b.
func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// hardStatsRows returns rows where one-pass statistics could lose digits:
// rows with a mean far from zero (one whose sums about zero would cancel
// even in float64), and rows whose first element, about which the
// backend takes its sums, is far from the rest.
func hardStatsRows(rng *rand.Rand, rows, cols int) []float32 {
	xData := make([]float32, 0, rows*cols)
	for r := range rows {
		row := uniform(rng, cols, -1, 1)
		switch r % 4 {
		case 0: // mean 1000, spread 1
			for j := range row {
				row[j] += 1000
			}
		case 1: // first element 10⁴ spreads away
			row[0] = 1e4
		case 2: // a narrow row about 100 with the first element far below
			for j := range row {
				row[j] = 100 + row[j]*1e-3
			}
			row[0] = -50
		case 3: // mean 3·10⁵, spread 1: sums about 0 would cancel
			for j := range row {
				row[j] = 3e5 + row[j]/2
			}
		}
		xData = append(xData, row...)
	}
	return xData
}

// TestLayerNormOnePassStats checks LayerNorm's one-pass row statistics
// (sums about the row's first element) on hardStatsRows against the
// float64 reference, whose statistics take two passes.
func TestLayerNormOnePassStats(t *testing.T) {
	const eps = 1e-5
	const rows, cols = 8, 300
	rng := newRNG(22)
	xData := hardStatsRows(rng, rows, cols)
	gData, bData := uniform(rng, cols, 0.5, 1.5), uniform(rng, cols, -1, 1)
	want := make([]float64, rows*cols)
	for r := range rows {
		copy(want[r*cols:], layerNormRef(f64(xData[r*cols:(r+1)*cols]), f64(gData), f64(bData), eps))
	}
	eachConfig(t, func(t *testing.T, be *Backend) {
		x, g, b := upload(t, be, xData, rows, cols), upload(t, be, gData, cols), upload(t, be, bData, cols)
		y := poisoned(t, be, rows, cols)
		be.LayerNorm(y, x, g, b, eps)
		assertClose(t, "y", download(t, be, y), want, 1e-5, 1e-5)
	})
}

// TestLayerNormGradOnePassStats checks LayerNormGrad's one-pass row
// statistics (sums about the row's first element) where they could lose
// digits: rows with a mean far from zero, and rows whose first element is
// far from the rest. The reference is the analytic gradient in float64,
// with its statistics from two passes.
func TestLayerNormGradOnePassStats(t *testing.T) {
	const eps = 1e-5
	const rows, cols = 8, 300
	rng := newRNG(21)
	xData := hardStatsRows(rng, rows, cols)
	gData, dyData := uniform(rng, cols, 0.5, 1.5), uniform(rng, rows*cols, -1, 1)
	want := make([]float64, rows*cols)
	for r := range rows {
		x := f64(xData[r*cols : (r+1)*cols])
		n := float64(cols)
		var mean, ssd float64
		for _, v := range x {
			mean += v / n
		}
		for _, v := range x {
			ssd += (v - mean) * (v - mean)
		}
		rstd := 1 / math.Sqrt(ssd/n+eps)
		var mg, mgx float64
		for j, v := range x {
			g := float64(gData[j]) * float64(dyData[r*cols+j])
			mg += g / n
			mgx += g * (v - mean) * rstd / n
		}
		for j, v := range x {
			g := float64(gData[j]) * float64(dyData[r*cols+j])
			want[r*cols+j] = rstd * (g - mg - (v-mean)*rstd*mgx)
		}
	}
	eachConfig(t, func(t *testing.T, be *Backend) {
		x, g, dy := upload(t, be, xData, rows, cols), upload(t, be, gData, cols), upload(t, be, dyData, rows, cols)
		dx := poisoned(t, be, rows, cols)
		be.LayerNormGrad(dx, backend.Tensor{}, backend.Tensor{}, x, g, dy, eps)
		got := download(t, be, dx)
		// Each row is checked against its own scale: the rows' gradients
		// differ by orders of magnitude (rstd is 1 to 1000).
		for r := range rows {
			var scale float64
			for _, v := range want[r*cols : (r+1)*cols] {
				scale = max(scale, math.Abs(v))
			}
			assertClose(t, fmt.Sprintf("dx row %d", r), got[r*cols:(r+1)*cols], want[r*cols:(r+1)*cols], 1e-5, 1e-5*scale)
		}
	})
}
