package peft

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/gradcheck"
)

// lowRankDropout64 evaluates a low-rank method (not DoRA) in float64 from
// its definition, with dropout mask mask on the LoRA input:
//
//	y = Post·(Pre·W0·x + Pre·b + s·B·A·(mask ⊙ x))   (per row of x)
//
// Pre and Post are diag(d), the dense rotation R (rot64.dense) or I.
func lowRankDropout64(l *Layer, p hostParams, x, mask []float64, n int) []float64 {
	out, in, r := l.out, l.in, l.cfg.R
	cond := func(c Cond) *mat.Dense {
		m := mat.NewDense(out, out, nil)
		switch c {
		case Diagonal:
			for i := range out {
				m.Set(i, i, p.diag[i])
			}
		case Rotation:
			rp := l.cfg.RotationRank
			return newRot64(mat.NewDense(out, rp, p.c), mat.NewDense(out, rp, p.d), l.cfg.ExactRotation).dense()
		default:
			for i := range out {
				m.Set(i, i, 1)
			}
		}
		return m
	}
	pre, post := cond(l.spec.Pre), cond(l.spec.Post)
	X := mat.NewDense(n, in, x)
	Xd := mat.NewDense(n, in, nil)
	Xd.MulElem(X, mat.NewDense(n, in, mask))
	var w, h, t, lo mat.Dense
	w.Mul(pre, mat.NewDense(out, in, p.w0))
	h.Mul(X, w.T())
	bias := mat.NewVecDense(out, nil)
	bias.MulVec(pre, mat.NewVecDense(out, p.b0))
	for i := range n {
		for j := range out {
			h.Set(i, j, h.At(i, j)+bias.AtVec(j))
		}
	}
	t.Mul(Xd, mat.NewDense(r, in, p.a).T())
	lo.Mul(&t, mat.NewDense(out, r, p.bm).T())
	lo.Scale(l.cfg.Scaling(), &lo)
	h.Add(&h, &lo)
	var y mat.Dense
	y.Mul(&h, post.T())
	return y.RawMatrix().Data
}

// TestLowRankDropoutGradients: in training with dropout the LoRA path and
// the frozen path read different inputs (two skinny terms in the fused op,
// and two contributions to dx). Forward and gradients of every input agree
// with central differences of the float64 definition, same mask.
func TestLowRankDropoutGradients(t *testing.T) {
	b := openCPU(t)
	const out, in, n, p = 7, 6, 5, 0.3
	for i, c := range methodCases {
		if !c.cfg.Method.Spec().LowRank || c.cfg.Method.Spec().Post == NormDiagonal {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Dropout = p
			l := testLayer(t, b, cfg, out, in, uint64(300+i))
			gi := gradInputsOf(l)
			w0, _ := download64(l.base.W)
			b0, _ := download64(l.base.B)
			saved := make([]*graph.Value, len(gi))
			for k, g := range gi {
				saved[k] = *g.slot(l)
			}
			defer func() {
				for k, g := range gi {
					*g.slot(l) = saved[k]
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
				l.SetDropoutStep(0, 0)
				return l.Forward(g, v[0])
			}
			mask := doraPEFTMask(l, n, in, p) // the mask of every forward
			ref := func(v [][]float64) []float64 {
				hp := hostParams{w0: w0, b0: b0}
				for k, gin := range gi {
					*gin.host(&hp) = v[k+1]
				}
				return lowRankDropout64(l, hp, v[0], mask, n)
			}
			checkGradients(t, b, gradcheck.Case{Name: "peft/dropout/" + c.name, Inputs: inputs, Forward: fwd, Reference: ref}, 21)
		})
	}
}

// TestFusedGradientsAccumulate: a layer applied twice on one tape (weight
// sharing) gets, for every trainable tensor and both inputs, the sum of the
// gradients of two separate applications: the fused op adds to gradients
// that already hold a contribution instead of overwriting them.
func TestFusedGradientsAccumulate(t *testing.T) {
	b := openCPU(t)
	const out, in, n = 9, 8, 6
	rng := rand.New(rand.NewPCG(3, 5))
	for i, c := range methodCases {
		if !c.cfg.Method.Spec().LowRank {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			l := testLayer(t, b, c.cfg, out, in, uint64(400+i))
			perturb(t, l, uint64(i))
			x1 := upload(t, b, "x1", randn(rng, n*in, 1), graph.Trainable, n, in)
			x2 := upload(t, b, "x2", randn(rng, n*in, 1), graph.Trainable, n, in)
			w1, w2 := randn(rng, n*out, 1), randn(rng, n*out, 1)
			grads := func(xs ...*graph.Value) [][]float32 {
				g := graph.New(b)
				defer g.Close()
				ws := map[*graph.Value][]float32{x1: w1, x2: w2}
				var loss *graph.Value
				for _, x := range xs {
					li := g.Sum(g.Mul(l.Forward(g, x), g.Input(ws[x], n, out)))
					if loss == nil {
						loss = li
					} else {
						loss = g.Add(loss, li)
					}
				}
				if err := g.Backward(loss); err != nil {
					t.Fatal(err)
				}
				var gs [][]float32
				used := map[*graph.Value]bool{}
				for _, x := range xs {
					used[x] = true
				}
				for _, p := range append(l.Trainable(), x1, x2) {
					if (p == x1 || p == x2) && !used[p] {
						gs = append(gs, nil) // an input not applied has no gradient
						continue
					}
					h, err := p.DownloadGrad()
					if err != nil {
						t.Fatal(err)
					}
					gs = append(gs, h)
					p.ZeroGrad()
				}
				return gs
			}
			both := grads(x1, x2)
			one, two := grads(x1), grads(x2)
			names := []string{}
			for _, p := range l.Trainable() {
				names = append(names, p.Name())
			}
			names = append(names, "x1", "x2")
			for k := range both {
				want := make([]float64, len(both[k]))
				for e := range want {
					if one[k] != nil {
						want[e] += float64(one[k][e])
					}
					if two[k] != nil {
						want[e] += float64(two[k][e])
					}
				}
				if e := relMax(both[k], want); e > 1e-5 {
					t.Errorf("d%s: two applications on one tape differ from the sum of two runs by %.3g relative", names[k], e)
				}
			}
		})
	}
}

// TestGradientsManyRows runs TestGradients' checks with more input rows
// than input features, where the fused op forms diag(d)·W0 for the input
// gradient instead of scaling G (TestGradients has fewer rows than
// inputs), for the methods with a column scale (DoRA, Pre-Diag, SORA) and
// LoRA.
func TestGradientsManyRows(t *testing.T) {
	const out, in, n = 5, 4, 9
	for i, c := range []struct {
		name string
		cfg  Config
	}{
		{"lora", Config{Method: LoRA, R: 2, Alpha: 4}},
		{"dora", Config{Method: DoRA, R: 2, Alpha: 4}},
		{"prediag", Config{Method: PreDiag, R: 2, Alpha: 4}},
		{"sora", Config{Method: SORA, R: 2, Alpha: 4, RotationRank: 2}},
		{"sora/exact", Config{Method: SORA, R: 2, Alpha: 4, RotationRank: 2, ExactRotation: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkLayerGradients(t, c.name, c.cfg, out, in, n, uint64(500+i), false, false)
		})
	}
}

// TestGradientsTrainableBase checks every low-rank method's gradients
// with the base weight W0 trainable too (adapted layers usually freeze it,
// but nothing forbids training both): the fused op must hand W0 the
// frozen product's gradient as well as the rotation's, and DoRA's norm
// stays detached from W0 as PEFT detaches it.
func TestGradientsTrainableBase(t *testing.T) {
	for _, n := range []int{3, 9} { // fewer and more rows than inputs
		for i, c := range []struct {
			name string
			cfg  Config
		}{
			{"lora", Config{Method: LoRA, R: 2, Alpha: 4}},
			{"dora", Config{Method: DoRA, R: 2, Alpha: 4}},
			{"dora-peft", Config{Method: DoRAPEFT, R: 2, Alpha: 4}},
			{"prediag", Config{Method: PreDiag, R: 2, Alpha: 4}},
			{"sora", Config{Method: SORA, R: 2, Alpha: 4, RotationRank: 2}},
			{"preortho", Config{Method: PreOrtho, R: 2, Alpha: 4, RotationRank: 2}},
			{"postortho", Config{Method: PostOrtho, R: 2, Alpha: 4, RotationRank: 2, ExactRotation: true}},
		} {
			t.Run(fmt.Sprintf("%s/N%d", c.name, n), func(t *testing.T) {
				checkLayerGradients(t, c.name, c.cfg, 5, 4, n, uint64(700+i), false, true)
			})
		}
	}
}
