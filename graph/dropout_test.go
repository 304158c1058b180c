package graph

import (
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/internal/testbackend"
)

// TestDropoutMaskStatistics checks the mask's values, its drop rate against
// the binomial spread, and that neighbours (the two halves of one 64-bit
// draw) and elements one row apart are dropped independently.
func TestDropoutMaskStatistics(t *testing.T) {
	const n = 1 << 20
	for _, p := range []float64{0.05, 0.3, 0.9} {
		mask := make([]float32, n)
		DropoutMask(mask, p, 12345)
		keep := float32(1 / (1 - p))
		dropped, pairs, strided := 0, 0, 0
		for i, v := range mask {
			if v != 0 && v != keep {
				t.Fatalf("p=%g: mask[%d] = %g, want 0 or %g", p, i, v, keep)
			}
			if v == 0 {
				dropped++
				if i%2 == 0 && mask[i+1] == 0 {
					pairs++
				}
				if i+512 < n && mask[i+512] == 0 {
					strided++
				}
			}
		}
		within := func(name string, got, trials int, prob float64) {
			mean := float64(trials) * prob
			sd := math.Sqrt(mean * (1 - prob))
			if math.Abs(float64(got)-mean) > 6*sd {
				t.Errorf("p=%g: %s = %d, want %.0f ± %.0f (6σ)", p, name, got, mean, 6*sd)
			}
		}
		within("dropped", dropped, n, p)
		within("dropped pairs (2i, 2i+1)", pairs, n/2, p*p)
		within("dropped pairs (i, i+512)", strided, n-512, p*p)
	}
}

// TestDropoutMaskSplit checks that the parallel fill gives the serial
// fill's mask for lengths around the chunk size, odd ones included, and
// that the mask depends on the seed.
func TestDropoutMaskSplit(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	for _, n := range []int{1, 2, 3, 1<<16 + 1, 3<<16 + 7, 1 << 18} {
		got := make([]float32, n)
		DropoutMask(got, 0.5, 99)
		want := make([]float32, n)
		fillDropoutMask(want, 0, uint64(math.Ldexp(0.5, 32)), 2, 99)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("n=%d: parallel mask[%d] = %g, serial %g", n, i, got[i], want[i])
			}
		}
		// A piece filled on its own from an even offset matches too.
		if n > 10 {
			part := make([]float32, n-4)
			fillDropoutMask(part, 4, uint64(math.Ldexp(0.5, 32)), 2, 99)
			for i := range part {
				if part[i] != want[i+4] {
					t.Fatalf("n=%d: mask filled from 4, element %d = %g, want %g", n, i+4, part[i], want[i+4])
				}
			}
		}
	}
	a, b := make([]float32, 256), make([]float32, 256)
	DropoutMask(a, 0.5, 1)
	DropoutMask(b, 0.5, 2)
	same := 0
	for i := range a {
		if a[i] == b[i] {
			same++
		}
	}
	if same > 192 { // expected 128 ± 8
		t.Errorf("seeds 1 and 2 agree on %d of 256 elements", same)
	}
}

func TestDropoutMaskBadProbability(t *testing.T) {
	for _, p := range []float64{-0.1, 1, math.NaN()} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("DropoutMask(p=%g) did not panic", p)
				}
			}()
			DropoutMask(make([]float32, 4), p, 0)
		}()
	}
}

// TestMixSeed checks the mixer against the reference SplitMix64 generator
// seeded with 0, whose k-th output is the finaliser of k·γ (Vigna's
// splitmix64.c: e220a8397b1dcdaf, 6e789e6aa1b965f4, 06c45d188009454f),
// and MixSeed through those outputs.
func TestMixSeed(t *testing.T) {
	for k, want := range []uint64{0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f} {
		if got := splitMix64(uint64(k+1) * MixGamma); got != want {
			t.Errorf("SplitMix64 output %d = %#x, want %#x", k+1, got, want)
		}
	}
	// MixSeed(s, n) is the finaliser of s ^ finaliser(n + γ), and
	// finaliser(n + γ) is output k+1 for n = k·γ.
	for k, out := range []uint64{0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f} {
		n := uint64(k) * MixGamma
		for _, seed := range []uint64{0, 0xabc} {
			if got, want := MixSeed(seed, n), splitMix64(seed^out); got != want {
				t.Errorf("MixSeed(%#x, %d·γ) = %#x, want %#x", seed, k, got, want)
			}
		}
	}
}

// TestDropoutSeed checks that Dropout multiplies by the mask of the one
// seed it draws (DropoutSeed with rng.Uint64()), that it draws nothing when
// there is nothing to drop, and the probability checks of both forms.
func TestDropoutSeed(t *testing.T) {
	b := testbackend.Open(t, "cpu")
	x := make([]float32, 37)
	for i := range x {
		x[i] = float32(i) - 11.5
	}
	const p = 0.4
	tests := []struct {
		name string
		drop func(g *Tape, x *Value) *Value
		seed uint64 // the mask's seed
	}{
		{"DropoutSeed", func(g *Tape, x *Value) *Value { return g.DropoutSeed(x, p, 0xfeed) }, 0xfeed},
		{"Dropout", func(g *Tape, x *Value) *Value { return g.Dropout(x, p, rand.New(rand.NewPCG(3, 4))) },
			rand.New(rand.NewPCG(3, 4)).Uint64()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(b)
			defer g.Close()
			got, err := tt.drop(g, g.Input(x, len(x))).Download()
			if err != nil {
				t.Fatal(err)
			}
			mask := make([]float32, len(x))
			DropoutMask(mask, p, tt.seed)
			dropped := 0
			for i := range x {
				if want := x[i] * mask[i]; got[i] != want {
					t.Fatalf("element %d = %g, want %g·%g = %g", i, got[i], x[i], mask[i], want)
				}
				if mask[i] == 0 {
					dropped++
				}
			}
			if dropped == 0 || dropped == len(x) {
				t.Fatalf("mask drops %d of %d elements: the check above proves little", dropped, len(x))
			}
		})
	}

	g := New(b)
	defer g.Close()
	in := g.Input(x, len(x))
	rng := rand.New(rand.NewPCG(5, 6))
	if g.Dropout(in, 0, rng) != in || g.DropoutSeed(in, 0, 9) != in || g.Dropout(in, p, nil) != in {
		t.Error("p = 0 or a nil rng did not return x itself")
	}
	if got, want := rng.Uint64(), rand.New(rand.NewPCG(5, 6)).Uint64(); got != want {
		t.Errorf("Dropout with p = 0 drew from rng: next draw %#x, want %#x", got, want)
	}
	for _, bad := range []func(x *Value){
		func(x *Value) { g.DropoutSeed(x, 1, 0) },
		func(x *Value) { g.Dropout(x, -0.1, nil) },
	} {
		g.Reset()
		bad(g.Input(x, len(x)))
		if err := g.Err(); err == nil || !strings.Contains(err.Error(), "outside [0, 1)") {
			t.Errorf("bad probability: tape error %v, want one naming the range", err)
		}
	}
}

// BenchmarkDropoutMask compares the counter-based mask with one
// rng.Float64 per element (how Dropout drew its mask before), on a
// [2048, 512] activation; x_float64 is this mask's time over that one's,
// measured alternately in the same run.
func BenchmarkDropoutMask(b *testing.B) {
	const n = 2048 * 512
	mask := make([]float32, n)
	rng := rand.New(rand.NewPCG(1, 2))
	var ours, base float64
	for b.Loop() {
		start := nanotime()
		DropoutMask(mask, 0.05, rng.Uint64())
		mid := nanotime()
		for i := range mask {
			if rng.Float64() >= 0.05 {
				mask[i] = 1 / 0.95
			} else {
				mask[i] = 0
			}
		}
		ours += float64(mid - start)
		base += float64(nanotime() - mid)
	}
	b.ReportMetric(ours/float64(b.N)/1e6, "ms/mask")
	b.ReportMetric(base/float64(b.N)/1e6, "float64_ms/mask")
	b.ReportMetric(ours/base, "x_float64")
}

func nanotime() int64 { return time.Now().UnixNano() }
