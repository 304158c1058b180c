package peft

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// bf16Pair returns two dense layers [out, in] with a bias: one whose W0
// is stored in bfloat16, and a float32 one holding the same (stored)
// values.
func bf16Pair(t testing.TB, b backend.Backend, out, in int, seed uint64) (base16, base32 *graph.Dense) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	w16, err := graph.UploadParamAs(b, "w0", randn(rng, out*in, 0.5), backend.BFloat16, graph.Frozen, out, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w16.Free)
	stored, err := w16.Download()
	if err != nil {
		t.Fatal(err)
	}
	bias := randn(rng, out, 0.5)
	base16 = &graph.Dense{W: w16, B: upload(t, b, "b0", bias, graph.Frozen, out)}
	base32 = &graph.Dense{W: upload(t, b, "w0", stored, graph.Frozen, out, in), B: upload(t, b, "b0", bias, graph.Frozen, out)}
	return base16, base32
}

// maxRel32 returns max|a − b| / max|b| over two float32 slices.
func maxRel32(a, b []float32) float64 { return relMax(a, to64(b)) }

// TestBF16BaseLayers checks every adapter method on a base layer whose W0
// is stored in bfloat16 against the same method on a float32 W0 holding
// the stored values: at initialisation the layer computes the frozen
// layer's output bit for bit; after its parameters move, the output, the
// input's and every trainable tensor's gradient (with fewer and with more
// rows than inputs, which take different backward paths), the effective
// weight and the host's float64 update agree to float32 rounding.
func TestBF16BaseLayers(t *testing.T) {
	b := openCPU(t)
	const out, in = 6, 8
	cases := []Config{
		{Method: LoRA, R: 3},
		{Method: LoRA, R: 3, Dropout: 0.25},
		{Method: LoRAPlus, R: 3},
		{Method: DoRA, R: 3},
		{Method: DoRAPEFT, R: 3},
		{Method: DoRAPEFT, R: 3, Dropout: 0.25},
		{Method: PreDiag, R: 3},
		{Method: SORA, R: 3, RotationRank: 2},
		{Method: SORA, R: 3, RotationRank: 2, ExactRotation: true, Dropout: 0.25},
		{Method: PreOrtho, R: 3, RotationRank: 2},
		{Method: PostOrtho, R: 3, RotationRank: 2},
		{Method: OFT, R: 2},
	}
	for i, cfg := range cases {
		name := fmt.Sprintf("%s dropout %g exact %v", cfg.Method, cfg.Dropout, cfg.ExactRotation)
		t.Run(name, func(t *testing.T) {
			cfg.Seed = 5
			base16, base32 := bf16Pair(t, b, out, in, uint64(i))
			l16, err := NewLayer("layers.0.proj", base16, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l16.Free)
			l32, err := NewLayer("layers.0.proj", base32, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l32.Free)

			rng := rand.New(rand.NewPCG(uint64(i), 3))
			x := randn(rng, 4*in, 1)
			if got, want := forward(t, l16, b, x, 4, in), forward(t, base16, b, x, 4, in); !slices.Equal(got, want) {
				t.Errorf("at initialisation the layer differs from its frozen bfloat16 layer by %.3g", maxRel32(got, want))
			}

			perturb(t, l16, 8)
			perturb(t, l32, 8)
			for _, n := range []int{5, 12} { // fewer, then more rows than inputs
				xs := randn(rng, n*in, 1)
				r := randn(rng, n*out, 1)
				step := func(l *Layer) (y, dx []float32, grads [][]float32) {
					g := graph.New(b)
					defer g.Close()
					xv := upload(t, b, "x", xs, graph.Trainable, n, in)
					for _, p := range l.Trainable() {
						p.ZeroGrad()
					}
					l.SetDropoutStep(1, 0)
					yv := l.Forward(g, xv)
					if err := g.Backward(g.Sum(g.Mul(yv, g.Input(r, n, out)))); err != nil {
						t.Fatal(err)
					}
					y, _ = yv.Download()
					dx, _ = xv.DownloadGrad()
					for _, p := range l.Trainable() {
						gp, err := p.DownloadGrad()
						if err != nil {
							t.Fatalf("%s: %v", p.Name(), err)
						}
						grads = append(grads, gp)
					}
					return y, dx, grads
				}
				y16, dx16, g16 := step(l16)
				y32, dx32, g32 := step(l32)
				if d := maxRel32(y16, y32); d > 1e-5 {
					t.Errorf("%d rows: output differs by %.3g", n, d)
				}
				if d := maxRel32(dx16, dx32); d > 1e-5 {
					t.Errorf("%d rows: input gradient differs by %.3g", n, d)
				}
				for j, p := range l32.Trainable() {
					if d := maxRel32(g16[j], g32[j]); d > 1e-5 || math.IsNaN(d) {
						t.Errorf("%d rows: gradient of %s differs by %.3g", n, p.Name(), d)
					}
				}
			}

			w16, bias16, err := l16.EffectiveWeight()
			if err != nil {
				t.Fatal(err)
			}
			w32, bias32, err := l32.EffectiveWeight()
			if err != nil {
				t.Fatal(err)
			}
			if d := maxRel32(w16, w32); d > 1e-6 {
				t.Errorf("effective weight differs by %.3g", d)
			}
			if d := maxRel32(bias16, bias32); d > 1e-6 {
				t.Errorf("effective bias differs by %.3g", d)
			}
			u16, err := l16.Update64()
			if err != nil {
				t.Fatal(err)
			}
			u32, err := l32.Update64()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(u16.W0, u32.W0) {
				t.Error("the host's W0 differs from the stored values")
			}
			if d := relMax(to32(u16.Delta), u32.Delta); d > 1e-6 {
				t.Errorf("host update differs by %.3g", d)
			}
		})
	}
}

// TestBF16BaseMerge checks merging a layer over a bfloat16 W0: the merged
// layer computes what the adapter computes, and folding it into the base
// (MergeAndUnload's step) makes W0 itself (the same parameter, so that a
// tied embedding sharing it follows) a float32 weight holding W', the
// bfloat16 buffer freed.
func TestBF16BaseMerge(t *testing.T) {
	b := openCPU(t)
	const out, in = 6, 8
	for i, m := range []Method{LoRA, SORA, DoRA, OFT} {
		cfg := Config{Method: m, R: 3, RotationRank: 2}
		if m == OFT {
			cfg.R = 2
		}
		base16, _ := bf16Pair(t, b, out, in, uint64(20+i))
		l, err := NewLayer("layers.0.proj", base16, cfg)
		if err != nil {
			t.Fatal(err)
		}
		perturb(t, l, 9)
		x := randn(rand.New(rand.NewPCG(uint64(i), 4)), 3*in, 1)
		want := forward(t, l, b, x, 3, in)
		w, _, err := l.EffectiveWeight()
		if err != nil {
			t.Fatal(err)
		}
		w0 := base16.W
		before := b.BytesInUse()
		if err := l.fold(); err != nil {
			t.Fatal(err)
		}
		if base16.W != w0 || base16.W.DType() != backend.Float32 || base16.W.Name() != "w0" {
			t.Errorf("%s: after folding the base weight is %v named %q (the same parameter: %v), want W0 itself in float32", m, base16.W.DType(), base16.W.Name(), base16.W == w0)
		}
		got, err := base16.W.Download()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, w) {
			t.Errorf("%s: the folded weight differs from the effective weight by %.3g", m, maxRel32(got, w))
		}
		// Folding made W' (4 bytes an element) and b' and freed W0 (2).
		if d := b.BytesInUse() - before; d != int64(4*out*in+4*out-2*out*in) {
			t.Errorf("%s: folding changed the bytes in use by %d, want %d", m, d, 4*out*in+4*out-2*out*in)
		}
		l.Free() // the merged bias and the adapter; the base keeps W'
		if y := forward(t, base16, b, x, 3, in); maxRel32(y, want) > 1e-5 {
			t.Errorf("%s: the folded base layer differs from the adapter by %.3g", m, maxRel32(y, want))
		}
		base16.W.Free()
	}
}

// TestBF16BaseFullRefused checks that full fine-tuning refuses a base
// weight stored in bfloat16, naming the way out.
func TestBF16BaseFullRefused(t *testing.T) {
	b := openCPU(t)
	base16, _ := bf16Pair(t, b, 4, 4, 1)
	_, err := NewLayer("layers.0.proj", base16, Config{Method: Full})
	if err == nil || !strings.Contains(err.Error(), "bfloat16") || !strings.Contains(err.Error(), "float32") {
		t.Errorf("full fine-tuning of a bfloat16 base: %v", err)
	}
	if base16.W.Trainable() || base16.B.Trainable() {
		t.Error("the refused layer left the base trainable")
	}
}
