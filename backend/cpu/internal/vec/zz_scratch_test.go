package vec

import (
	"fmt"
	"math"
	"testing"
	"time"
)

func TestScratchFused2(t *testing.T) {
	ks := All()[len(All())-1]
	k := ks.Streaming()
	const cols = 1024
	for _, rows := range []int{64, 4096} {
		x := make([]float32, (rows+2)*cols)
		for i := range x {
			x[i] = float32(i%1000)/125 - 4
		}
		y := make([]float32, rows*cols)
		w := make([]float32, cols)
		for i := range w {
			w[i] = 1 + float32(i%7)/10
		}
		reps := max(4096/rows*2, 1)
		timeIt := func(name string, f func()) {
			best := time.Duration(1 << 62)
			for range 5 {
				t0 := time.Now()
				for range reps {
					f()
				}
				best = min(best, time.Since(t0))
			}
			fmt.Printf("%-10s rows=%4d %6.1f ps/elem %5.1f GB/s\n", name, rows, float64(best.Nanoseconds())*1000/float64(reps*rows*cols), 8*float64(reps*rows*cols)/float64(best.Nanoseconds()))
		}
		row := func(s []float32, r int) []float32 { return s[r*cols : (r+1)*cols] }
		for _, pf := range []int{0, 1, 2} {
			timeIt(fmt.Sprintf("ln2p/pf%d", pf), func() {
				for r := range rows {
					xr := row(x, r)
					c := float64(xr[0])
					sd, ssd := k.SumsAbout(xr, c)
					if pf == 1 {
						k.Prefetch(row(x, r+1))
					}
					k.Normalize(row(y, r), xr, w, w, sd*1e-3, 1/math.Sqrt(ssd*1e-3+1))
				}
				k.Fence()
			})
			timeIt(fmt.Sprintf("lnfu/pf%d", pf), func() {
				c := float64(x[0])
				sd, ssd := k.SumsAbout(row(x, 0), c)
				for r := range rows {
					xr := row(x, r)
					nx := row(x, r+1)
					if pf == 1 {
						k.Prefetch(row(x, r+2))
					}
					if pf == 2 {
						k.Prefetch(row(x, r+2)[:256])
					}
					sd, ssd = k.NormalizeNext(row(y, r), xr, w, w, sd*1e-3, 1/math.Sqrt(ssd*1e-3+1), nx, float64(nx[0]))
				}
				k.Fence()
			})
			timeIt(fmt.Sprintf("rms2p/pf%d", pf), func() {
				for r := range rows {
					xr := row(x, r)
					ss := k.SumSquares(xr)
					if pf == 1 {
						k.Prefetch(row(x, r+1))
					}
					k.ScaleMul(row(y, r), xr, w, 1/math.Sqrt(ss/cols+1e-5))
				}
				k.Fence()
			})
			timeIt(fmt.Sprintf("rmsfu/pf%d", pf), func() {
				ss := k.SumSquares(row(x, 0))
				for r := range rows {
					xr := row(x, r)
					if pf == 1 {
						k.Prefetch(row(x, r+2))
					}
					if pf == 2 {
						k.Prefetch(row(x, r+2)[:256])
					}
					ss = k.ScaleMulNext(row(y, r), xr, w, 1/math.Sqrt(ss/cols+1e-5), row(x, r+1))
				}
				k.Fence()
			})
		}
	}
}
