package peft

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/gradcheck"
)

// doraPEFTMask returns the multipliers of l's first dropout on an [n, in]
// input after l.SetDropoutStep(0, 0), which the tests call before every
// forward so that each uses this mask: graph.DropoutMask's for the seed of
// (l, step 0, micro-batch 0, forward 0).
func doraPEFTMask(l *Layer, n, in int, p float64) []float64 {
	mask := make([]float32, n*in)
	graph.DropoutMask(mask, p, l.maskSeed(0, 0, 0))
	m := make([]float64, n*in)
	for i, v := range mask {
		m[i] = float64(v)
	}
	return m
}

// doraPEFT64 evaluates, in float64 with gonum, the forward Hugging Face
// PEFT 0.14 computes for a DoRA layer in training with dropout (written
// out from lora.Linear.forward and DoraLinearLayer.forward):
//
//	result      = x·W0ᵀ + b                      (the base layer)
//	x'          = mask ⊙ x                       (lora_dropout)
//	base_result = x'·W0ᵀ                         (recomputed: base_result is None)
//	k           = m ⊘ n,  n = ‖W0 + s·B·A‖ per row (given: detached)
//	y           = result + (k − 1) ⊙ base_result + k ⊙ (x'·Aᵀ·Bᵀ) · s
//
// and, with a nil mask, DoRA without dropout (PEFT's evaluation path,
// base_result = result − b).
func doraPEFT64(x, mask, w0, b0, a, bm, mag, norm []float64, n, in, out, r int, s float64) []float64 {
	X := mat.NewDense(n, in, x)
	Xd := mat.DenseCopyOf(X)
	if mask != nil {
		Xd.MulElem(X, mat.NewDense(n, in, mask))
	}
	W0 := mat.NewDense(out, in, w0)
	var res, base, t, lora mat.Dense
	res.Mul(X, W0.T())
	base.Mul(Xd, W0.T())
	t.Mul(Xd, mat.NewDense(r, in, a).T())
	lora.Mul(&t, mat.NewDense(out, r, bm).T())
	y := make([]float64, n*out)
	for i := range n {
		for j := range out {
			k := mag[j] / norm[j]
			y[i*out+j] = res.At(i, j) + b0[j] + (k-1)*base.At(i, j) + k*lora.At(i, j)*s
		}
	}
	return y
}

// rowNorms64 returns the row norms of W0 + s·B·A in float64.
func rowNorms64(w0, a, bm []float64, out, in, r int, s float64) []float64 {
	var w mat.Dense
	w.Mul(mat.NewDense(out, r, bm), mat.NewDense(r, in, a))
	w.Scale(s, &w)
	w.Add(&w, mat.NewDense(out, in, w0))
	n := make([]float64, out)
	for i := range n {
		n[i] = mat.Norm(w.RowView(i), 2)
	}
	return n
}

// TestDoRAPEFTDropout: with dropout in training, DoRA-PEFT computes PEFT's
// function. Its forward and the gradients of x, A, B and m agree with
// central differences of an independent float64 evaluation of PEFT's
// formula (same mask, n held at its value as PEFT detaches it), and the
// gradients of x and m (on which n does not depend) agree with finite
// differences of the layer itself on the backend.
func TestDoRAPEFTDropout(t *testing.T) {
	b := openCPU(t)
	const out, in, n, r = 7, 6, 5, 2
	for _, p := range []float64{0.05, 0.3} {
		t.Run("p="+strconv.FormatFloat(p, 'g', -1, 64), func(t *testing.T) {
			cfg := Config{Method: DoRAPEFT, R: r, Alpha: 4, Dropout: p}
			l := testLayer(t, b, cfg, out, in, 31)
			perturb(t, l, 5)
			s := cfg.Scaling()
			w0, _ := download64(l.base.W)
			b0, _ := download64(l.base.B)
			mask := doraPEFTMask(l, n, in, p)
			dropped := 0
			for _, v := range mask {
				if v == 0 {
					dropped++
				}
			}
			if p == 0.3 && (dropped == 0 || dropped == len(mask)) {
				t.Fatalf("mask drops %d of %d elements: the test needs a mixed mask", dropped, len(mask))
			}

			// Reference check: every input the forward differentiates.
			slots := []**graph.Value{&l.a, &l.bm, &l.mag}
			saved := []*graph.Value{l.a, l.bm, l.mag}
			defer func() {
				for i, sl := range slots {
					*sl = saved[i]
				}
			}()
			inputs := []gradcheck.Input{
				{Name: "x", Shape: []int{n, in}},
				{Name: "A", Shape: []int{r, in}},
				{Name: "B", Shape: []int{out, r}},
				{Name: "m", Shape: []int{out}, Lo: 0.5, Hi: 1.5},
			}
			fwd := func(g *graph.Tape, v []*graph.Value) *graph.Value {
				for i, sl := range slots {
					*sl = v[i+1]
				}
				l.SetDropoutStep(0, 0) // the same mask every call
				return l.Forward(g, v[0])
			}
			var norm []float64
			ref := func(v [][]float64) []float64 {
				if norm == nil { // n at the unperturbed inputs, then held (detached)
					norm = rowNorms64(w0, v[1], v[2], out, in, r, s)
				}
				return doraPEFT64(v[0], mask, w0, b0, v[1], v[2], v[3], norm, n, in, out, r, s)
			}
			checkGradients(t, b, gradcheck.Case{Name: "peft/dora-peft/dropout", Inputs: inputs, Forward: fwd, Reference: ref}, 3)

			// Finite differences of the layer itself, for x and m.
			for i, sl := range slots {
				*sl = saved[i]
			}
			fdDropoutCheck(t, l, n, in, out)
		})
	}
}

// TestDoRAPEFTDropoutVersusDoRA: with the same mask, DoRA-PEFT and DoRA in
// training differ by exactly (k − 1) ⊙ ((drop(x) − x)·W0ᵀ), as the
// documentation of DoRAPEFT says; in evaluation (NoGrad) DoRA-PEFT with
// dropout configured is DoRA to float32 precision and matches PEFT's
// evaluation formula; and at initialisation (m = n) the two agree in
// training too.
func TestDoRAPEFTDropoutVersusDoRA(t *testing.T) {
	b := openCPU(t)
	const out, in, n, r, p = 24, 20, 16, 4, 0.3
	rng := rand.New(rand.NewPCG(12, 13))
	x := randn(rng, n*in, 1)
	mk := func(m Method) *Layer {
		return testLayer(t, b, Config{Method: m, R: r, Alpha: 8, Dropout: p}, out, in, 77)
	}
	pe, wc := mk(DoRAPEFT), mk(DoRA)
	// The same base values (same seed), and the same adapter values.
	perturb(t, wc, 9)
	for i, q := range wc.Trainable() {
		h, _ := q.Download()
		set(t, pe.Trainable()[i], h)
	}
	train := func(l *Layer) []float32 {
		g := graph.New(b)
		defer g.Close()
		l.SetDropoutStep(0, 0)
		y, err := l.Forward(g, g.Input(x, n, in)).Download()
		if err != nil {
			t.Fatal(err)
		}
		return y
	}
	yPE, yWC := train(pe), train(wc)

	w0, _ := download64(pe.base.W)
	b0, _ := download64(pe.base.B)
	a, _ := download64(pe.a)
	bm, _ := download64(pe.bm)
	mag, _ := download64(pe.mag)
	s := pe.cfg.Scaling()
	norm := rowNorms64(w0, a, bm, out, in, r, s)
	mask := doraPEFTMask(pe, n, in, p)
	x64 := to64(x)
	wantPE := doraPEFT64(x64, mask, w0, b0, a, bm, mag, norm, n, in, out, r, s)
	if e := relMax(yPE, wantPE); e > 1e-5 {
		t.Errorf("DoRA-PEFT training forward: relative error %.3g against PEFT's formula", e)
	}
	// DoRA = DoRA-PEFT − (k − 1) ⊙ ((drop(x) − x)·W0ᵀ).
	diff := make([]float64, n*in)
	for i := range diff {
		diff[i] = (mask[i] - 1) * x64[i]
	}
	var dw mat.Dense
	dw.Mul(mat.NewDense(n, in, diff), mat.NewDense(out, in, w0).T())
	wantWC := make([]float64, n*out)
	gap := 0.0
	for i := range n {
		for j := range out {
			c := (mag[j]/norm[j] - 1) * dw.At(i, j)
			wantWC[i*out+j] = wantPE[i*out+j] - c
			gap = math.Max(gap, math.Abs(c))
		}
	}
	if e := relMax(yWC, wantWC); e > 1e-5 {
		t.Errorf("DoRA training forward: relative error %.3g against PEFT's minus the documented difference", e)
	}
	if gap < 1e-2 {
		t.Errorf("the two functions differ by at most %.3g here: the test does not tell them apart", gap)
	}

	// Evaluation: dropout off, DoRA-PEFT is DoRA and PEFT's eval formula.
	evPE, evWC := forward(t, pe, b, x, n, in), forward(t, wc, b, x, n, in)
	if e := relMax(evPE, to64(evWC)); e > 2e-6 {
		t.Errorf("evaluation: DoRA-PEFT and DoRA differ by %.3g relative", e)
	}
	if e := relMax(evPE, doraPEFT64(x64, nil, w0, b0, a, bm, mag, norm, n, in, out, r, s)); e > 1e-5 {
		t.Errorf("evaluation: DoRA-PEFT relative error %.3g against PEFT's formula", e)
	}
	if e := relMax(evPE, to64(yPE)); e < 1e-3 {
		t.Errorf("training and evaluation outputs agree to %.3g: no dropout applied in training", e)
	}

	// At initialisation k = 1, so both are the frozen layer plus
	// s·drop(x)·Aᵀ·Bᵀ, which B = 0 makes zero: the same bits.
	pe0, wc0 := mk(DoRAPEFT), mk(DoRA)
	y0, y1 := train(pe0), train(wc0)
	for i := range y0 {
		if math.Float32bits(y0[i]) != math.Float32bits(y1[i]) {
			t.Fatalf("at initialisation element %d: DoRA-PEFT %v, DoRA %v", i, y0[i], y1[i])
		}
	}
}

// fdDropoutCheck compares the gradients of x and m that backward gives for
// the loss Σ w ⊙ y with fourth-order central differences of that loss, the
// layer run on the backend in training mode (so that dropout applies, with
// the mask reset to the same draw every call). n does not depend on x or m,
// so its detachment plays no part. (graph/gradcheck evaluates its finite
// differences with recording off, where dropout is off too.)
func fdDropoutCheck(t *testing.T, l *Layer, n, in, out int) {
	t.Helper()
	b := l.b
	rng := rand.New(rand.NewPCG(17, 19))
	x := randn(rng, n*in, 1)
	w := randn(rng, n*out, 1)
	loss := func(x []float32) float64 {
		g := graph.New(b)
		defer g.Close()
		l.SetDropoutStep(0, 0)
		y, err := l.Forward(g, g.Input(x, n, in)).Download()
		if err != nil {
			t.Fatal(err)
		}
		s := 0.0
		for i := range y {
			s += float64(w[i]) * float64(y[i])
		}
		return s
	}
	// Analytic gradients.
	xv := upload(t, b, "x", x, graph.Trainable, n, in)
	g := graph.New(b)
	l.SetDropoutStep(0, 0)
	if err := g.Backward(g.Sum(g.Mul(l.Forward(g, xv), g.Input(w, n, out)))); err != nil {
		t.Fatal(err)
	}
	g.Close()
	dx, err := xv.DownloadGrad()
	if err != nil {
		t.Fatal(err)
	}
	dm, err := l.mag.DownloadGrad()
	if err != nil {
		t.Fatal(err)
	}
	l.mag.ZeroGrad()
	const h = 1.0 / 64
	stencil := func(f func(d float32) float64) float64 {
		return (-f(2*h) + 8*f(h) - 8*f(-h) + f(-2*h)) / (12 * h)
	}
	normErr := func(name string, got []float32, want []float64) {
		num, den := 0.0, 0.0
		for i := range want {
			num += (float64(got[i]) - want[i]) * (float64(got[i]) - want[i])
			den += want[i] * want[i]
		}
		e := math.Sqrt(num) / (math.Sqrt(den) + 1e-12)
		if e > 1e-3 || math.IsNaN(e) {
			t.Errorf("finite differences of the layer in training: d%s relative error %.3g (tol 1e-3)", name, e)
		} else {
			t.Logf("finite differences of the layer in training: d%s relative error %.2g", name, e)
		}
	}
	fx := make([]float64, len(x))
	for i := range x {
		fx[i] = stencil(func(d float32) float64 {
			xp := append([]float32(nil), x...)
			xp[i] += d
			return loss(xp)
		})
	}
	normErr("x", dx, fx)
	m0, err := l.mag.Download()
	if err != nil {
		t.Fatal(err)
	}
	fm := make([]float64, len(m0))
	for i := range m0 {
		fm[i] = stencil(func(d float32) float64 {
			mp := append([]float32(nil), m0...)
			mp[i] += d
			set(t, l.mag, mp)
			return loss(x)
		})
	}
	set(t, l.mag, m0)
	normErr("m", dm, fm)
}
