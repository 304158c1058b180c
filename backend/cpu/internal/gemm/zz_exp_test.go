package gemm

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func bestGemm(e *Engine, tr string, n, reps int) float64 {
	a, b, c := randMatrices(n)
	ta, tb := tr[0] == 'T', tr[1] == 'T'
	e.Sgemm(ta, tb, n, n, n, 1, a, n, b, n, 0, c, n)
	best := 0.0
	calls := max(1, (1<<27)/(n*n*n))
	for r := 0; r < reps; r++ {
		t := time.Now()
		for i := 0; i < calls; i++ {
			e.Sgemm(ta, tb, n, n, n, 1, a, n, b, n, 0, c, n)
		}
		best = max(best, 2*float64(n*n*n)*float64(calls)/time.Since(t).Seconds()/1e9)
	}
	return best
}

// ZZ="portable threads kc mc nc sizes trans"
func TestZZTune(t *testing.T) {
	spec := os.Getenv("ZZ")
	if spec == "" {
		t.Skip()
	}
	var configs [][]int
	for _, cfg := range strings.Split(spec, ";") {
		var v []int
		for _, f := range strings.Fields(cfg) {
			x, _ := strconv.Atoi(f)
			v = append(v, x)
		}
		configs = append(configs, v)
	}
	sizes := []int{256, 1024}
	if s := os.Getenv("ZZN"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			x, _ := strconv.Atoi(f)
			sizes = append(sizes, x)
		}
	}
	trs := []string{"NN", "NT", "TN"}
	if s := os.Getenv("ZZT"); s != "" {
		trs = strings.Split(s, ",")
	}
	for _, n := range sizes {
		for _, tr := range trs {
			fmt.Printf("n=%d %s:", n, tr)
			for _, cfg := range configs {
				e := NewEngine(Config{Portable: cfg[0] == 1, Threads: cfg[1]})
				k := *e.k
				if cfg[2] > 0 {
					k.kc = cfg[2]
				}
				if cfg[3] > 0 {
					k.mc = cfg[3]
				}
				if cfg[4] > 0 {
					k.nc = cfg[4]
				}
				e.k = &k
				fmt.Printf("  [%v] %.1f", cfg, bestGemm(e, tr, n, 5))
			}
			fmt.Println()
		}
	}
}

func BenchmarkZZPackB(b *testing.B) {
	n := 1024
	_, bm, _ := randMatrices(n)
	dst := make([]float32, 256*n)
	for _, tr := range []bool{false, true} {
		b.Run(fmt.Sprint(tr), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				packB(tr, bm, n, 0, 0, 256, n, 16, dst)
			}
			b.ReportMetric(float64(256*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}

func BenchmarkZZPackA(b *testing.B) {
	n := 1024
	a, _, _ := randMatrices(n)
	dst := make([]float32, 256*144)
	for _, tr := range []bool{false, true} {
		b.Run(fmt.Sprint(tr), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				packA(tr, a, n, 0, 0, 144, 256, 6, 1, dst)
			}
			b.ReportMetric(float64(256*144)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}

func packBT4(b []float32, ldb, p0, j0, kc, nc, nr int, dst []float32) {
	for s0 := 0; s0 < nc; s0 += nr {
		cols := min(nr, nc-s0)
		d := dst[s0*kc : s0*kc+nr*kc]
		jj := 0
		for ; jj+4 <= cols; jj += 4 {
			base := (j0+s0+jj)*ldb + p0
			r0 := b[base : base+kc]
			r1 := b[base+ldb : base+ldb+kc]
			r2 := b[base+2*ldb : base+2*ldb+kc]
			r3 := b[base+3*ldb : base+3*ldb+kc]
			dd := d[jj:]
			for p := range r0 {
				q := dd[p*nr : p*nr+4]
				q[0], q[1], q[2], q[3] = r0[p], r1[p], r2[p], r3[p]
			}
		}
		for ; jj < cols; jj++ {
			src := b[(j0+s0+jj)*ldb+p0:]
			src = src[:kc]
			dd := d[jj:]
			for p, v := range src {
				dd[p*nr] = v
			}
		}
		if cols < nr {
			for p := 0; p < kc; p++ {
				clear(d[p*nr+cols : p*nr+nr])
			}
		}
	}
}

func BenchmarkZZPackBT4(b *testing.B) {
	n := 1024
	_, bm, _ := randMatrices(n)
	dst := make([]float32, 256*n)
	for i := 0; i < b.N; i++ {
		packBT4(bm, n, 0, 0, 256, n, 16, dst)
	}
	b.ReportMetric(float64(256*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
}
