package peft

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sora-go/sora/peft/spectral"
)

// qwen3Block is one Qwen3-0.6B decoder block's adapted projections
// [out, in]: q, k, v, o, gate, up, down (hidden 1024, 16 query heads and 8
// key-value heads of 128, intermediate 3072). The model has 28 blocks, 196
// layers.
var qwen3Block = [][2]int{{2048, 1024}, {1024, 1024}, {1024, 1024}, {1024, 2048}, {3072, 1024}, {3072, 1024}, {1024, 3072}}

// oldSpectra is Model.Spectra as it was before the factored and concurrent
// paths: each layer's ΔW formed in float64 and given a full SVD (with
// spectral.Analyze's copy), one layer after another.
func oldSpectra(pm *Model) ([]spectral.Stats, error) {
	var out []spectral.Stats
	for _, l := range pm.Layers() {
		u, err := l.Update64()
		if err != nil {
			return nil, err
		}
		st, err := spectral.Analyze(u.Rows, u.Cols, u.Delta)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// BenchmarkSpectra times Model.Spectra against the old path on Qwen3-0.6B's
// layer shapes, for LoRA (factored) and SORA (dense, on GOMAXPROCS
// workers), and reports the median over iterations of new/old time (each
// new run follows an old one on the same layers). By default one of the 28
// blocks (7 layers): the old path takes seconds per block;
// SORA_SPECTRA_BLOCKS=28 runs the whole model's layer set. It also checks
// that both paths agree.
func BenchmarkSpectra(b *testing.B) {
	blocks := 1
	if s := os.Getenv("SORA_SPECTRA_BLOCKS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("SORA_SPECTRA_BLOCKS=%q: want a positive number of blocks", s)
		}
		blocks = n
	}
	var shapes [][2]int
	for range blocks {
		shapes = append(shapes, qwen3Block...)
	}
	be := openCPU(b)
	for _, method := range []Method{LoRA, SORA} {
		b.Run(fmt.Sprintf("%s/layers=%d/procs=%d", method, len(shapes), runtime.GOMAXPROCS(0)), func(b *testing.B) {
			pm, err := Inject(newStack(b, be, shapes, 8), Config{Method: method, TargetModules: []string{"proj"}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(pm.Unload)
			for i, l := range pm.Layers() {
				perturb(b, l, uint64(50+i))
			}
			runtime.GC()
			var ratios, olds []float64
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				t0 := time.Now()
				want, err := oldSpectra(pm)
				if err != nil {
					b.Fatal(err)
				}
				told := time.Since(t0)
				runtime.GC() // the old path's garbage is not the new one's to collect
				b.StartTimer()
				t1 := time.Now()
				got, err := pm.Spectra()
				if err != nil {
					b.Fatal(err)
				}
				tnew := time.Since(t1)
				b.StopTimer()
				for i := range got {
					if got[i].NonZero != want[i].NonZero || !closeTo(got[i].Entropy, want[i].Entropy) ||
						!closeTo(got[i].StableRank, want[i].StableRank) || !closeTo(got[i].Spectral, want[i].Spectral) {
						b.Fatalf("layer %d: new H=%.12g rank %d, old H=%.12g rank %d", i, got[i].Entropy, got[i].NonZero, want[i].Entropy, want[i].NonZero)
					}
				}
				ratios = append(ratios, float64(tnew)/float64(told))
				olds = append(olds, told.Seconds())
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(median(ratios), "new/old")
			b.ReportMetric(median(olds), "old-s/op")
		})
	}
}

func closeTo(a, b float64) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	return d <= 1e-10*max(1, b, -b)
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
