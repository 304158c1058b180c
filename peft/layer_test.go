package peft

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/gradcheck"
)

// methodCases are the configurations every per-method test runs.
var methodCases = []struct {
	name string
	cfg  Config
}{
	{"lora", Config{Method: LoRA, R: 2, Alpha: 4}},
	{"lora+", Config{Method: LoRAPlus, R: 2, Alpha: 4}},
	{"dora", Config{Method: DoRA, R: 2, Alpha: 4}},
	{"dora-peft", Config{Method: DoRAPEFT, R: 2, Alpha: 4}},
	{"prediag", Config{Method: PreDiag, R: 2, Alpha: 4}},
	{"sora", Config{Method: SORA, R: 2, Alpha: 4, RotationRank: 3}},
	{"sora/exact", Config{Method: SORA, R: 2, Alpha: 4, RotationRank: 3, ExactRotation: true}},
	{"preortho", Config{Method: PreOrtho, R: 2, Alpha: 4, RotationRank: 2}},
	{"preortho/exact", Config{Method: PreOrtho, R: 2, Alpha: 4, RotationRank: 2, ExactRotation: true}},
	{"postortho", Config{Method: PostOrtho, R: 2, Alpha: 4, RotationRank: 2}},
	{"postortho/exact", Config{Method: PostOrtho, R: 2, Alpha: 4, RotationRank: 2, ExactRotation: true}},
	{"oft", Config{Method: OFT, OFTBlockSize: 3}},
	{"oft/r2/terms7", Config{Method: OFT, R: 2, OFTNeumannTerms: 7}},
	{"full", Config{Method: Full}},
}

// TestInitSpectrumIsZero: at initialisation every method's update
// ΔW = W' − W0, as Spectrum analyses it, is exactly zero, as the forward's
// is (TestInitIsFrozenLayer): DoRA's k = m ⊘ n must be taken from the
// norms the forward uses, since n recomputed in float64 leaves k − 1 of
// about 1e−8 and a full-rank (k − 1)·W0.
func TestInitSpectrumIsZero(t *testing.T) {
	b := openCPU(t)
	for i, c := range methodCases {
		t.Run(c.name, func(t *testing.T) {
			l := testLayer(t, b, c.cfg, 16, 12, uint64(i))
			s, err := l.Spectrum()
			if err != nil {
				t.Fatal(err)
			}
			if s.Stats.NonZero != 0 || s.Stats.Frobenius != 0 {
				t.Errorf("spectrum at initialisation: %d nonzero singular values, Frobenius norm %g; want a zero update", s.Stats.NonZero, s.Stats.Frobenius)
			}
		})
	}
}

// TestInitIsFrozenLayer: at initialisation every method computes exactly
// (bit for bit) the frozen layer, for inputs of rank 1, 2 and 3, in
// training mode (dropout on) and evaluation mode.
func TestInitIsFrozenLayer(t *testing.T) {
	b := openCPU(t)
	rng := rand.New(rand.NewPCG(3, 4))
	const out, in = 7, 6
	shapes := [][]int{{in}, {5, in}, {2, 3, in}}
	for i, c := range methodCases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			if cfg.Method.Spec().LowRank {
				cfg.Dropout = 0.3
			}
			l := testLayer(t, b, cfg, out, in, uint64(i))
			for _, shape := range shapes {
				n := 1
				for _, d := range shape {
					n *= d
				}
				x := randn(rng, n, 1)
				for _, train := range []bool{false, true} {
					g := graph.New(b)
					g.SetNoGrad(!train)
					xv := g.Input(x, shape...)
					want, err := l.base.Forward(g, xv).Download()
					if err != nil {
						t.Fatal(err)
					}
					yv := l.Forward(g, xv)
					got, err := yv.Download()
					if err != nil {
						t.Fatal(err)
					}
					if wantShape := append(append([]int(nil), shape[:len(shape)-1]...), out); !yv.Shape().Equal(wantShape) {
						t.Errorf("shape %v → %v, want %v", shape, yv.Shape(), wantShape)
					}
					for k := range want {
						if math.Float32bits(got[k]) != math.Float32bits(want[k]) {
							t.Fatalf("input %v (train %v): element %d is %v, frozen layer gives %v", shape, train, k, got[k], want[k])
						}
					}
					g.Close()
				}
			}
		})
	}
}

// gradInputs describes, per method, the gradient-check inputs besides x
// and how to plug them into a layer and into host parameters.
type gradInput struct {
	in   gradcheck.Input
	slot func(l *Layer) **graph.Value
	host func(p *hostParams) *[]float64
}

func gradInputsOf(l *Layer) []gradInput {
	out, in := l.out, l.in
	var gi []gradInput
	add := func(name string, lo, hi float64, shape []int, slot func(l *Layer) **graph.Value, host func(p *hostParams) *[]float64) {
		gi = append(gi, gradInput{gradcheck.Input{Name: name, Shape: shape, Lo: lo, Hi: hi}, slot, host})
	}
	switch l.method {
	case Full:
		add("W", 0, 0, []int{out, in}, func(l *Layer) **graph.Value { return &l.w }, func(p *hostParams) *[]float64 { return &p.w })
		add("b", 0, 0, []int{out}, func(l *Layer) **graph.Value { return &l.wb }, func(p *hostParams) *[]float64 { return &p.wb })
		return gi
	case OFT:
		add("oft_R", -0.4, 0.4, []int{l.oft.nb, l.oft.bs * (l.oft.bs - 1) / 2}, func(l *Layer) **graph.Value { return &l.oftR }, func(p *hostParams) *[]float64 { return &p.oft })
		return gi
	}
	r := l.cfg.R
	add("A", 0, 0, []int{r, in}, func(l *Layer) **graph.Value { return &l.a }, func(p *hostParams) *[]float64 { return &p.a })
	add("B", 0, 0, []int{out, r}, func(l *Layer) **graph.Value { return &l.bm }, func(p *hostParams) *[]float64 { return &p.bm })
	if l.diag != nil {
		add("d", 0.5, 1.5, []int{out}, func(l *Layer) **graph.Value { return &l.diag }, func(p *hostParams) *[]float64 { return &p.diag })
	}
	if l.mag != nil {
		add("m", 0.5, 1.5, []int{out}, func(l *Layer) **graph.Value { return &l.mag }, func(p *hostParams) *[]float64 { return &p.mag })
	}
	if l.c != nil {
		rp := l.cfg.RotationRank
		add("C", 0, 0, []int{out, rp}, func(l *Layer) **graph.Value { return &l.c }, func(p *hostParams) *[]float64 { return &p.c })
		add("D", 0, 0, []int{out, rp}, func(l *Layer) **graph.Value { return &l.d }, func(p *hostParams) *[]float64 { return &p.d })
	}
	return gi
}

// TestGradients checks the gradient of every trainable tensor, and of the
// input, with graph/gradcheck: against central differences of a float64
// host reference (the layer's update64, an independent dense evaluation of
// the formulas), and, for every method but DoRA (whose detached norm makes
// its gradient differ from the derivative of its forward by design),
// against finite differences of the layer itself on the backend.
func TestGradients(t *testing.T) {
	const out, in, n = 7, 6, 5
	cases := append([]struct {
		name string
		cfg  Config
	}{}, methodCases...)
	// s_p = 1 when ‖C‖ + ‖D‖ < 1: the min's other branch.
	cases = append(cases, struct {
		name string
		cfg  Config
	}{"sora/small-rotation", Config{Method: SORA, R: 2, Alpha: 4, RotationRank: 2}})
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkLayerGradients(t, c.name, c.cfg, out, in, n, uint64(100+i), c.name == "sora/small-rotation", false)
		})
	}
}

// checkLayerGradients runs the two gradient checks of TestGradients on a
// layer of cfg over a random [out, in] base, for an input of n rows;
// smallRotation draws C and D in [−0.1, 0.1] (s_p = 1), and trainableBase
// makes the base weight W0 one of the checked inputs.
func checkLayerGradients(t *testing.T, name string, cfg Config, out, in, n int, seed uint64, smallRotation, trainableBase bool) {
	b := openCPU(t)
	l := testLayer(t, b, cfg, out, in, seed)
	gi := gradInputsOf(l)
	if trainableBase {
		gi = append(gi, gradInput{gradcheck.Input{Name: "W0", Shape: []int{out, in}},
			func(l *Layer) **graph.Value { return &l.base.W }, func(p *hostParams) *[]float64 { return &p.w0 }})
	}
	if smallRotation {
		for k := range gi {
			if gi[k].in.Name == "C" || gi[k].in.Name == "D" {
				gi[k].in.Lo, gi[k].in.Hi = -0.1, 0.1
			}
		}
	}
	w0, err := download64(l.base.W)
	if err != nil {
		t.Fatal(err)
	}
	b0, err := download64(l.base.B)
	if err != nil {
		t.Fatal(err)
	}
	// The layer's own parameters make way for the checker's.
	for _, g := range gi {
		(*g.slot(l)).Free()
	}
	defer func() {
		for _, g := range gi {
			*g.slot(l) = nil
		}
	}()
	inputs := []gradcheck.Input{{Name: "x", Shape: []int{n, in}}}
	for _, g := range gi {
		inputs = append(inputs, g.in)
	}
	fwd := func(g *graph.Tape, v []*graph.Value) *graph.Value {
		for k, gin := range gi {
			*gin.slot(l) = v[k+1]
		}
		return l.Forward(g, v[0])
	}
	var doraN []float64
	ref := func(x [][]float64) []float64 {
		p := hostParams{w0: w0, b0: b0}
		for k, gin := range gi {
			*gin.host(&p) = x[k+1]
		}
		if l.spec.Post == NormDiagonal {
			// n is detached: hold it at its value for the
			// unperturbed inputs (the first call).
			if doraN == nil {
				doraN = l.doraNorms64(p)
			}
			p.doraN = doraN
		}
		u := l.update64(p)
		var y mat.Dense
		y.Mul(mat.NewDense(n, in, x[0]), mat.NewDense(out, in, u.Weight()).T())
		for r := range n {
			for j := range out {
				y.Set(r, j, y.At(r, j)+u.Bias[j])
			}
		}
		return y.RawMatrix().Data
	}
	check := func(gc gradcheck.Case, seed uint64) {
		t.Helper()
		checkGradients(t, b, gc, seed)
	}
	check(gradcheck.Case{Name: "peft/" + name, Inputs: inputs, Forward: fwd, Reference: ref}, 11)
	if l.spec.Post == NormDiagonal {
		return
	}
	check(gradcheck.Case{Name: "peft/" + name, Inputs: inputs, Forward: fwd}, 12)
}

// TestMergeUnmerge: the merged layer computes the unmerged function within
// 1e-5 relative, device and host effective weights agree, W0 is never
// written, and unmerging gives back the unmerged outputs bit for bit.
func TestMergeUnmerge(t *testing.T) {
	b := openCPU(t)
	const out, in, n = 12, 9, 6
	rng := rand.New(rand.NewPCG(5, 6))
	for i, c := range methodCases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			if cfg.Method == OFT && cfg.OFTBlockSize != 0 {
				cfg.OFTBlockSize = 3
			}
			if cfg.Method == OFT && cfg.R != 0 {
				cfg.R = 3
			}
			l := testLayer(t, b, cfg, out, in, uint64(200+i))
			perturb(t, l, uint64(i))
			x := randn(rng, n*in, 1)
			w0Before, _ := l.base.W.Download()
			y0 := forward(t, l, b, x, n, in)

			dev, devB, err := l.EffectiveWeight()
			if err != nil {
				t.Fatal(err)
			}
			u, err := l.Update64()
			if err != nil {
				t.Fatal(err)
			}
			if e := relMax(dev, u.Weight()); e > 1e-5 {
				t.Errorf("device W' vs host float64: relative error %.3g", e)
			}
			if e := relMax(devB, u.Bias); e > 1e-5 {
				t.Errorf("device b' vs host float64: relative error %.3g", e)
			}

			if err := l.Merge(); err != nil {
				t.Fatal(err)
			}
			if !l.Merged() {
				t.Fatal("Merged() false after Merge")
			}
			ym := forward(t, l, b, x, n, in)
			if e := relMax(ym, to64(y0)); e > 1e-5 {
				t.Errorf("merged forward: relative error %.3g against unmerged", e)
			}
			t.Logf("merged vs unmerged: relative error %.2g", relMax(ym, to64(y0)))
			l.Unmerge()
			y1 := forward(t, l, b, x, n, in)
			for k := range y0 {
				if math.Float32bits(y1[k]) != math.Float32bits(y0[k]) {
					t.Fatalf("after Unmerge element %d is %v, was %v", k, y1[k], y0[k])
				}
			}
			w0After, _ := l.base.W.Download()
			for k := range w0Before {
				if math.Float32bits(w0After[k]) != math.Float32bits(w0Before[k]) {
					t.Fatalf("W0 element %d changed from %v to %v", k, w0Before[k], w0After[k])
				}
			}
		})
	}
}

// TestDoRATwoWays: the weight-conditioning DoRA (no [out, in] temporary)
// and the PEFT way agree in forward and in every gradient to float32
// precision.
func TestDoRATwoWays(t *testing.T) {
	b := openCPU(t)
	const out, in, n, r = 48, 40, 16, 4
	rng := rand.New(rand.NewPCG(8, 9))
	wc := testLayer(t, b, Config{Method: DoRA, R: r, Alpha: 8}, out, in, 1)
	pe, err := NewLayer("peft", wc.base, Config{Method: DoRAPEFT, R: r, Alpha: 8, TargetModules: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer pe.Free()
	perturb(t, wc, 3)
	for i, p := range wc.Trainable() {
		h, _ := p.Download()
		set(t, pe.Trainable()[i], h)
	}
	x := randn(rng, n*in, 1)
	wts := randn(rng, n*out, 1)
	run := func(l *Layer) ([]float32, [][]float32) {
		g := graph.New(b)
		defer g.Close()
		y := l.Forward(g, g.Input(x, n, in))
		loss := g.Sum(g.Mul(y, g.Input(wts, n, out)))
		if err := g.Backward(loss); err != nil {
			t.Fatal(err)
		}
		yh, _ := y.Download()
		var grads [][]float32
		for _, p := range l.Trainable() {
			gh, err := p.DownloadGrad()
			if err != nil {
				t.Fatal(err)
			}
			grads = append(grads, gh)
			p.ZeroGrad()
		}
		return yh, grads
	}
	y1, g1 := run(wc)
	y2, g2 := run(pe)
	if e := relMax(y1, to64(y2)); e > 2e-6 {
		t.Errorf("forward: relative difference %.3g", e)
	}
	for i, p := range wc.Trainable() {
		e := relMax(g1[i], to64(g2[i]))
		if e > 1e-5 {
			t.Errorf("gradient of %s: relative difference %.3g", p.Name(), e)
		}
		t.Logf("d%s: relative difference %.2g", p.Name(), e)
	}
}

// TestDropoutOnlyOnLoRAInput: in training the output differs from the
// frozen layer only within the column space of B (dropout touches the LoRA
// input, nothing else), and evaluation is deterministic.
func TestDropoutOnlyOnLoRAInput(t *testing.T) {
	b := openCPU(t)
	const out, in, n, r = 9, 8, 20, 2
	rng := rand.New(rand.NewPCG(1, 1))
	l := testLayer(t, b, Config{Method: LoRA, R: r, Alpha: 2, Dropout: 0.5}, out, in, 5)
	perturb(t, l, 1)
	x := randn(rng, n*in, 1)
	base := forward(t, l.base, b, x, n, in)
	eval1 := forward(t, l, b, x, n, in)
	eval2 := forward(t, l, b, x, n, in)
	g := graph.New(b)
	defer g.Close()
	train, err := l.Forward(g, g.Input(x, n, in)).Download()
	if err != nil {
		t.Fatal(err)
	}
	bh, _ := l.bm.Download()
	// Projector onto the orthogonal complement of range(B).
	var qr mat.QR
	qr.Factorize(mat.NewDense(out, r, to64(bh)))
	var q mat.Dense
	qr.QTo(&q)
	basis := q.Slice(0, out, 0, r)
	resid := mat.NewDense(n, out, nil)
	diffTrainEval := 0.0
	for i := range n {
		for j := range out {
			resid.Set(i, j, float64(train[i*out+j])-float64(base[i*out+j]))
			diffTrainEval = math.Max(diffTrainEval, math.Abs(float64(train[i*out+j]-eval1[i*out+j])))
			if eval1[i*out+j] != eval2[i*out+j] {
				t.Fatal("evaluation forward is not deterministic")
			}
		}
	}
	var coef, proj mat.Dense
	coef.Mul(resid, basis)
	proj.Mul(&coef, basis.T())
	proj.Sub(resid, &proj)
	if off := mat.Norm(&proj, 2) / mat.Norm(resid, 2); off > 1e-5 {
		t.Errorf("training output leaves range(B): relative component %.3g (dropout reached the frozen path?)", off)
	}
	if diffTrainEval < 1e-3 {
		t.Errorf("training and evaluation outputs agree (max diff %.3g): no dropout applied", diffTrainEval)
	}
}

func TestParseMethod(t *testing.T) {
	for in, want := range map[string]Method{"SORA": SORA, "pre-diag": PreDiag, "lora_plus": LoRAPlus, "fft": Full, " Dora-PEFT ": DoRAPEFT, "post_ortho": PostOrtho} {
		got, err := ParseMethod(in)
		if err != nil || got != want {
			t.Errorf("ParseMethod(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseMethod("adalora"); err == nil || !strings.Contains(err.Error(), "known: full, lora") {
		t.Errorf("unknown method: %v", err)
	}
	for _, m := range Methods {
		if got, err := ParseMethod(string(m)); err != nil || got != m {
			t.Errorf("ParseMethod(%q) = %q, %v", m, got, err)
		}
	}
}

func TestNewLayerErrors(t *testing.T) {
	b := openCPU(t)
	w := upload(t, b, "w", make([]float32, 12), graph.Frozen, 3, 4)
	w3 := upload(t, b, "w3", make([]float32, 12), graph.Frozen, 2, 2, 3)
	bad := upload(t, b, "b", make([]float32, 4), graph.Frozen, 4)
	cases := []struct {
		base *graph.Dense
		cfg  Config
		want string
	}{
		{nil, Config{Method: LoRA}, "no base weight"},
		{&graph.Dense{W: w3}, Config{Method: LoRA}, "want [out, in]"},
		{&graph.Dense{W: w, B: bad}, Config{Method: LoRA}, "bias has shape [4], want [3]"},
		{&graph.Dense{W: w}, Config{Method: OFT, OFTBlockSize: 3}, "does not divide the 4 input features"},
		{&graph.Dense{W: w}, Config{Method: Full, Dropout: 0.1}, "full fine-tuning has no LoRA input"},
	}
	for _, c := range cases {
		if _, err := NewLayer("blocks[0].attn(q)", c.base, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
	// A name full of regular-expression syntax is fine on its own.
	l, err := NewLayer("blocks[0].attn(q)", &graph.Dense{W: w}, Config{Method: SORA})
	if err != nil {
		t.Fatal(err)
	}
	l.Free()
}
