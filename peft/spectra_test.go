package peft

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/peft/spectral"
)

// denseSpectrum is the spectrum as it was computed before the factored
// path: ΔW formed in float64 by update64 and given gonum's full SVD.
func denseSpectrum(t testing.TB, l *Layer) spectral.Stats {
	t.Helper()
	u, err := l.Update64()
	if err != nil {
		t.Fatal(err)
	}
	st, err := spectral.Analyze(u.Rows, u.Cols, u.Delta)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// statsGap returns the largest difference of a's and b's singular values
// relative to b's σ₁, and the largest relative difference of the derived
// statistics; it fails the test when the number of values or NonZero
// differ.
func statsGap(t *testing.T, a, b spectral.Stats) (sigma, fields float64) {
	t.Helper()
	if len(a.Singular) != len(b.Singular) {
		t.Fatalf("%d singular values against %d", len(a.Singular), len(b.Singular))
	}
	if a.NonZero != b.NonZero {
		t.Errorf("NonZero %d against %d (σ %.3g against %.3g)", a.NonZero, b.NonZero, a.Singular, b.Singular)
	}
	for i := range a.Singular {
		d := math.Abs(a.Singular[i] - b.Singular[i])
		if b.Spectral > 0 {
			d /= b.Spectral
		}
		sigma = max(sigma, d)
	}
	for _, f := range [][2]float64{
		{a.Entropy, b.Entropy}, {a.NormalizedEntropy, b.NormalizedEntropy}, {a.StableRank, b.StableRank},
		{a.Frobenius, b.Frobenius}, {a.Spectral, b.Spectral},
	} {
		fields = max(fields, math.Abs(f[0]-f[1])/max(math.Abs(f[1]), 1e-300))
	}
	return sigma, fields
}

// TestSpectrumFactoredAgainstDense: for every method, Layer.Spectrum
// (factored where the update is low-rank by construction) agrees with the
// full SVD of ΔW formed densely, on all min(out, in) singular values, the
// zeros included, and on every statistic; the factored path is the one
// taken for exactly LoRA, LoRA+, Pre-Ortho and Post-Ortho.
func TestSpectrumFactoredAgainstDense(t *testing.T) {
	b := openCPU(t)
	factoredMethods := map[Method]bool{LoRA: true, LoRAPlus: true, PreOrtho: true, PostOrtho: true}
	shapes := [][2]int{{40, 24}, {24, 40}, {32, 32}, {10, 8}}
	worst := map[string][2]float64{}
	for _, method := range Methods {
		for _, exact := range []bool{false, true} {
			if exact && method.Spec().Pre != Rotation && method.Spec().Post != Rotation {
				continue
			}
			for _, state := range []string{"init", "trained", "rank-deficient B"} {
				if state == "rank-deficient B" && !method.Spec().LowRank {
					continue
				}
				for si, sh := range shapes {
					name := fmt.Sprintf("%s/exact=%v/%s/%dx%d", method, exact, state, sh[0], sh[1])
					t.Run(name, func(t *testing.T) {
						cfg := Config{Method: method, R: 4, Alpha: 8, RotationRank: 3, ExactRotation: exact}
						if method == OFT {
							cfg = Config{Method: OFT, OFTBlockSize: 4}
						}
						l := testLayer(t, b, cfg, sh[0], sh[1], uint64(10+si))
						if got := factoredUpdate(l.spec); got != factoredMethods[method] {
							t.Fatalf("factoredUpdate = %v for %s", got, method)
						}
						if state != "init" {
							perturb(t, l, uint64(20+si))
						}
						if state == "rank-deficient B" {
							// B's last column repeats its first: ΔW loses a
							// rank for LoRA (s·B·A), the LoRA part of it for
							// the others.
							bm, err := l.bm.Download()
							if err != nil {
								t.Fatal(err)
							}
							for i := range sh[0] {
								bm[i*4+3] = bm[i*4]
							}
							set(t, l.bm, bm)
						}
						got, err := l.Spectrum()
						if err != nil {
							t.Fatal(err)
						}
						if got.Name != l.name || got.Rows != sh[0] || got.Cols != sh[1] {
							t.Errorf("spectrum of %q %d×%d", got.Name, got.Rows, got.Cols)
						}
						want := denseSpectrum(t, l)
						sigma, fields := statsGap(t, got.Stats, want)
						if sigma > 1e-10 || fields > 1e-10 {
							t.Errorf("against the dense SVD: singular values differ by %.3g of σ₁, statistics by %.3g relative", sigma, fields)
						}
						k := cfg.R
						if method.Spec().Pre == Rotation || method.Spec().Post == Rotation {
							k += 2 * cfg.RotationRank
						}
						switch {
						case state == "init" && want.Spectral != 0:
							// Every method starts at W' = W0, exactly.
							t.Errorf("ΔW at initialisation has σ₁ = %g", want.Spectral)
						case factoredMethods[method] && k < min(sh[0], sh[1]):
							if got.NonZero > k {
								t.Errorf("factored update of rank %d > k = %d", got.NonZero, k)
							}
							for i, v := range got.Singular[k:] {
								if v != 0 {
									t.Errorf("σ[%d] = %g beyond k = %d, want an exact zero", k+i, v, k)
								}
							}
						}
						if method == LoRA && state == "rank-deficient B" && got.NonZero != cfg.R-1 {
							t.Errorf("LoRA with a repeated column of B: rank %d, want %d", got.NonZero, cfg.R-1)
						}
						key := fmt.Sprintf("%s exact=%v", method, exact)
						w := worst[key]
						worst[key] = [2]float64{max(w[0], sigma), max(w[1], fields)}
					})
				}
			}
		}
	}
	for _, m := range Methods {
		for _, exact := range []bool{false, true} {
			if w, ok := worst[fmt.Sprintf("%s exact=%v", m, exact)]; ok {
				path := "dense"
				if factoredMethods[m] {
					path = "factored"
				}
				t.Logf("%-10s exact=%-5v %-8s: singular values within %.2g of σ₁, statistics within %.2g of the dense SVD", m, exact, path, w[0], w[1])
			}
		}
	}
}

// stack is a graph.Module of dense layers of the given shapes, named
// layers.i.proj.
type stack struct {
	dense []*graph.Dense
	slots []graph.Layer
}

func newStack(t testing.TB, b backend.Backend, shapes [][2]int, seed uint64) *stack {
	rng := rand.New(rand.NewPCG(seed, 3))
	s := &stack{}
	for i, sh := range shapes {
		name := fmt.Sprintf("layers.%d.proj", i)
		d := &graph.Dense{
			W: upload(t, b, name+".weight", randn(rng, sh[0]*sh[1], 0.3), graph.Trainable, sh[0], sh[1]),
			B: upload(t, b, name+".bias", randn(rng, sh[0], 0.1), graph.Trainable, sh[0]),
		}
		s.dense = append(s.dense, d)
		s.slots = append(s.slots, d)
	}
	return s
}

func (s *stack) Params() []*graph.Value {
	var ps []*graph.Value
	for _, d := range s.dense {
		ps = append(ps, d.W, d.B)
	}
	return ps
}

func (s *stack) Layers() []graph.LayerRef {
	refs := make([]graph.LayerRef, len(s.slots))
	for i := range s.slots {
		refs[i] = graph.LayerRef{Name: fmt.Sprintf("layers.%d.proj", i), Slot: &s.slots[i]}
	}
	return refs
}

var stackShapes = [][2]int{{24, 16}, {16, 24}, {32, 32}, {8, 40}, {40, 8}, {20, 20}, {36, 12}, {12, 12}, {28, 16}}

// TestSpectraConcurrent: whatever the number of workers and the memory
// bound, Model.SpectraWith gives every layer's Layer.Spectrum, in the
// layers' order, for a factored and a dense method.
func TestSpectraConcurrent(t *testing.T) {
	b := openCPU(t)
	for _, method := range []Method{LoRA, PostOrtho, SORA, DoRA} {
		t.Run(string(method), func(t *testing.T) {
			pm, err := Inject(newStack(t, b, stackShapes, 4), Config{Method: method, R: 3, RotationRank: 2, TargetModules: []string{"proj"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pm.Unload)
			var want []LayerSpectrum
			for i, l := range pm.Layers() {
				perturb(t, l, uint64(30+i))
				s, err := l.Spectrum()
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, s)
			}
			for _, o := range []SpectraOptions{{}, {Workers: 1}, {Workers: 2}, {Workers: 5}, {Workers: 3, MemoryBytes: 1}, {Workers: 40}} {
				got, err := pm.SpectraWith(o)
				if err != nil {
					t.Fatalf("%+v: %v", o, err)
				}
				if len(got) != len(want) {
					t.Fatalf("%+v: %d spectra for %d layers", o, len(got), len(want))
				}
				for i := range got {
					g, w := got[i], want[i]
					if g.Name != w.Name || g.Rows != w.Rows || g.Cols != w.Cols || g.NonZero != w.NonZero ||
						g.Entropy != w.Entropy || g.StableRank != w.StableRank || len(g.Singular) != len(w.Singular) {
						t.Errorf("%+v: layer %d is %s %d×%d H=%g, want %s %d×%d H=%g", o, i, g.Name, g.Rows, g.Cols, g.Entropy, w.Name, w.Rows, w.Cols, w.Entropy)
						continue
					}
					for j := range g.Singular {
						if g.Singular[j] != w.Singular[j] {
							t.Errorf("%+v: %s σ[%d] = %g, alone %g", o, g.Name, j, g.Singular[j], w.Singular[j])
							break
						}
					}
				}
			}
		})
	}
}

// TestSpectraFirstError: with several failing layers, the error is the
// first failing layer's in the model's order, whether it failed in the
// analysis (a NaN) or in the download (a freed parameter), and whatever
// the number of workers.
func TestSpectraFirstError(t *testing.T) {
	b := openCPU(t)
	cases := []struct {
		name      string
		nan, free []int
		want      string
	}{
		{"NaNs in 1 and 3", []int{1, 3}, nil, `"layers.1.proj": spectral: element`},
		{"NaN in 7, freed 2", []int{7}, []int{2}, `"layers.2.proj": graph: download`},
		{"NaN in 0, freed 2", []int{0}, []int{2}, `"layers.0.proj": spectral: element`},
		{"NaN in the last", []int{8}, nil, `"layers.8.proj": spectral: element`},
	}
	for _, method := range []Method{LoRA, SORA} {
		for _, c := range cases {
			for _, workers := range []int{1, 4} {
				t.Run(fmt.Sprintf("%s/%s/workers=%d", method, c.name, workers), func(t *testing.T) {
					pm, err := Inject(newStack(t, b, stackShapes, 5), Config{Method: method, R: 3, RotationRank: 2, TargetModules: []string{"proj"}})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(pm.Unload)
					ls := pm.Layers()
					for i, l := range ls {
						perturb(t, l, uint64(40+i))
					}
					for _, i := range c.nan {
						bm, err := ls[i].bm.Download()
						if err != nil {
							t.Fatal(err)
						}
						bm[5] = float32(math.NaN())
						set(t, ls[i].bm, bm)
					}
					for _, i := range c.free {
						ls[i].a.Free()
					}
					_, err = pm.SpectraWith(SpectraOptions{Workers: workers})
					if err == nil || !strings.Contains(err.Error(), c.want) {
						t.Errorf("error %v, want one containing %q", err, c.want)
					}
				})
			}
		}
	}
}

// TestBudget: a request that does not fit beside what is held waits for a
// release; one larger than the whole budget runs once nothing is held.
func TestBudget(t *testing.T) {
	m := newBudget(4)
	m.acquire(3)
	done := make(chan struct{})
	go func() {
		m.acquire(2)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("acquired 2 beside 3 held of 4")
	case <-time.After(20 * time.Millisecond):
	}
	m.release(3)
	<-done
	m.release(2)
	m.acquire(100) // over the budget, alone: must not block
	m.release(100)
	if m.used != 0 {
		t.Errorf("%d bytes held after every release", m.used)
	}
}

// TestDefaultSpectraMemory: the default budget is positive, from the
// host's memory or the fixed fallback (hostmem's tests cover the parsing).
func TestDefaultSpectraMemory(t *testing.T) {
	if n := defaultSpectraMemory(); n <= 0 {
		t.Errorf("defaultSpectraMemory() = %d", n)
	}
}
