package optim_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/optim"
	"github.com/sora-go/sora/internal/testbackend"
)

func openCPU(t testing.TB) backend.Backend { return testbackend.Open(t, "cpu") }

func uniform(rng *rand.Rand, n int, lo, hi float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(lo + (hi-lo)*rng.Float64())
	}
	return x
}

func param(t testing.TB, b backend.Backend, name string, data []float32, shape ...int) *graph.Value {
	t.Helper()
	p, err := graph.UploadParam(b, name, data, graph.Trainable, shape...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Free)
	return p
}

// setGrad gives p the gradient grad through a Backward of Σ p ⊙ grad,
// after emptying p's gradient.
func setGrad(t testing.TB, g *graph.Tape, p *graph.Value, grad []float32) {
	t.Helper()
	p.ZeroGrad()
	if err := g.Backward(g.Sum(g.Mul(p, g.Input(grad, p.Shape()...)))); err != nil {
		t.Fatal(err)
	}
	g.Reset()
}

func download(t testing.TB, v *graph.Value) []float32 {
	t.Helper()
	h, err := v.Download()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// adamWRef is torch.optim.AdamW's update in float64, written from its
// documented algorithm.
type adamWRef struct {
	theta, m, v []float64
	t           int
}

func (r *adamWRef) step(g []float32, lr, b1, b2, eps, wd float64) {
	r.t++
	if r.m == nil {
		r.m, r.v = make([]float64, len(g)), make([]float64, len(g))
	}
	bc1 := 1 - math.Pow(b1, float64(r.t))
	bc2 := 1 - math.Pow(b2, float64(r.t))
	for i := range r.theta {
		gi := float64(g[i])
		r.theta[i] *= 1 - lr*wd
		r.m[i] = b1*r.m[i] + (1-b1)*gi
		r.v[i] = b2*r.v[i] + (1-b2)*gi*gi
		denom := math.Sqrt(r.v[i])/math.Sqrt(bc2) + eps
		r.theta[i] -= lr / bc1 * r.m[i] / denom
	}
}

func maxAbsDiff(a []float32, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-b[i]))
	}
	return d
}

func TestAdamWMatchesTorchRule(t *testing.T) {
	b := openCPU(t)
	// The second configuration's large eps makes its place matter (added
	// to the bias-corrected root, √(v/(1−β₂ᵗ)) + ε, not to √v): with
	// PyTorch's 1e-8, or the first's 1e-6, any placement passes.
	for _, cfg := range []optim.AdamWConfig{{Beta1: 0.8, Beta2: 0.95, Eps: 1e-6}, {Beta1: 0.9, Beta2: 0.999, Eps: 0.05}} {
		t.Run(fmt.Sprintf("eps=%g", cfg.Eps), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			const n = 37
			w := param(t, b, "w", uniform(rng, n, -1, 1), n)
			bias := param(t, b, "bias", uniform(rng, 5, -1, 1), 5)
			sched := optim.WarmupCosine{Warmup: 2, Total: 7}
			groups := []optim.Group{
				{Name: "decay", Params: []*graph.Value{w}, LR: 0.05, WeightDecay: 0.1},
				{Name: "no_decay", Params: []*graph.Value{bias}, LR: 0.02},
			}
			opt, err := optim.NewAdamW(groups, cfg, sched)
			if err != nil {
				t.Fatal(err)
			}
			defer opt.Free()
			refW := &adamWRef{theta: to64(download(t, w))}
			startW := append([]float64(nil), refW.theta...)
			refB := &adamWRef{theta: to64(download(t, bias))}
			g := graph.New(b)
			defer g.Close()
			for step := range 7 {
				f := sched.Factor(step)
				if got, want := opt.LR(0), 0.05*f; math.Abs(got-want) > 1e-15 {
					t.Fatalf("step %d: LR(0) = %g, want %g", step, got, want)
				}
				gw := uniform(rng, n, -2, 2)
				setGrad(t, g, w, gw)
				refW.step(gw, 0.05*f, cfg.Beta1, cfg.Beta2, cfg.Eps, 0.1)
				// The bias has no gradient at step 3: it is skipped and its own
				// step count, which drives its bias correction, does not advance.
				if step != 3 {
					gb := uniform(rng, 5, -2, 2)
					setGrad(t, g, bias, gb)
					refB.step(gb, 0.02*f, cfg.Beta1, cfg.Beta2, cfg.Eps, 0)
				} else {
					bias.ZeroGrad()
				}
				if err := opt.Step(); err != nil {
					t.Fatal(err)
				}
				if d := maxAbsDiff(download(t, w), refW.theta); d > 2e-6 {
					t.Errorf("step %d: w differs from the float64 rule by %g", step, d)
				}
				if d := maxAbsDiff(download(t, bias), refB.theta); d > 2e-6 {
					t.Errorf("step %d: bias differs from the float64 rule by %g", step, d)
				}
			}
			// The updates must be far larger than the tolerance, or the
			// comparison would prove nothing.
			if d := maxAbsDiff(toF32(startW), refW.theta); d < 0.05 {
				t.Errorf("w moved only %g in 7 steps", d)
			}
			st, err := opt.State()
			if err != nil {
				t.Fatal(err)
			}
			if st.Steps != 7 || st.Params[0].Steps != 7 || st.Params[1].Steps != 6 {
				t.Errorf("step counts %d, %d, %d; want 7, 7, 6", st.Steps, st.Params[0].Steps, st.Params[1].Steps)
			}
			if d := maxAbsDiff(st.Params[0].Slots["exp_avg"], refW.m); d > 1e-6 {
				t.Errorf("exp_avg differs by %g", d)
			}
			if d := maxAbsDiff(st.Params[0].Slots["exp_avg_sq"], refW.v); d > 1e-6 {
				t.Errorf("exp_avg_sq differs by %g", d)
			}
		})
	}
}

// TestAdamWFirstMoments: after one step from zero state the moments are
// (1−β₁)·g and (1−β₂)·g² to float32's rounding, with 1−β computed from
// the float64 betas, as torch computes 1 − beta2 in double before the
// kernel rounds it. Passed to the backend as float32, 0.999 became
// 0.99900001, which made every second moment 1.3e-5 too small relative
// (1−β₁ 3.6e-7): far beyond a float32 rounding, and far below the
// absolute tolerance TestAdamWMatchesTorchRule needs for whole steps.
func TestAdamWFirstMoments(t *testing.T) {
	b := openCPU(t)
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 64
	w := param(t, b, "w", uniform(rng, n, -1, 1), n)
	opt, err := optim.NewAdamW([]optim.Group{{Params: []*graph.Value{w}, LR: 1e-3}}, optim.DefaultAdamWConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()
	g := graph.New(b)
	defer g.Close()
	gw := uniform(rng, n, 1, 2)
	setGrad(t, g, w, gw)
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	st, err := opt.State()
	if err != nil {
		t.Fatal(err)
	}
	cfg := optim.DefaultAdamWConfig()
	for i, gi := range gw {
		g64 := float64(gi)
		for _, c := range []struct {
			slot string
			want float64
		}{{"exp_avg", (1 - cfg.Beta1) * g64}, {"exp_avg_sq", (1 - cfg.Beta2) * g64 * g64}} {
			got := float64(st.Params[0].Slots[c.slot][i])
			if rel := math.Abs(got-c.want) / c.want; rel > 1.2e-7 {
				t.Fatalf("%s[%d] = %g, want %g (relative error %.3g)", c.slot, i, got, c.want, rel)
			}
		}
	}
}

func TestAdamWMovesParams(t *testing.T) {
	// Guards TestAdamWMatchesTorchRule against passing vacuously: the
	// same run moves every weight by much more than its tolerance.
	b := openCPU(t)
	rng := rand.New(rand.NewPCG(1, 2))
	w := param(t, b, "w", uniform(rng, 8, -1, 1), 8)
	before := download(t, w)
	opt, err := optim.NewAdamW([]optim.Group{{Params: []*graph.Value{w}, LR: 0.05}}, optim.DefaultAdamWConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()
	g := graph.New(b)
	defer g.Close()
	setGrad(t, g, w, uniform(rng, 8, -2, 2))
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	after := download(t, w)
	for i := range after {
		// Adam's first step moves each weight by lr·sign(g) (up to eps).
		if d := math.Abs(float64(after[i] - before[i])); math.Abs(d-0.05) > 1e-5 {
			t.Errorf("weight %d moved by %g, want 0.05", i, d)
		}
	}
}

// sgdRef is torch.optim.SGD's update in float64.
type sgdRef struct {
	theta, buf []float64
}

func (r *sgdRef) step(g []float32, lr, wd, mu, damp float64, nesterov bool) {
	first := r.buf == nil
	if first && mu != 0 {
		r.buf = make([]float64, len(g))
	}
	for i := range r.theta {
		d := float64(g[i]) + wd*r.theta[i]
		if mu != 0 {
			if first {
				r.buf[i] = d
			} else {
				r.buf[i] = mu*r.buf[i] + (1-damp)*d
			}
			if nesterov {
				d += mu * r.buf[i]
			} else {
				d = r.buf[i]
			}
		}
		r.theta[i] -= lr * d
	}
}

func TestSGDMatchesTorchRule(t *testing.T) {
	b := openCPU(t)
	tests := []struct {
		name string
		cfg  optim.SGDConfig
		wd   float64
	}{
		{"plain", optim.SGDConfig{}, 0},
		{"weight_decay", optim.SGDConfig{}, 0.1},
		{"momentum", optim.SGDConfig{Momentum: 0.9}, 0},
		{"momentum_dampening_decay", optim.SGDConfig{Momentum: 0.9, Dampening: 0.3}, 0.05},
		{"nesterov_decay", optim.SGDConfig{Momentum: 0.8, Nesterov: true}, 0.05},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			w := param(t, b, "w", uniform(rng, 23, -1, 1), 23)
			sched := optim.WarmupLinear{Warmup: 1, Total: 6}
			opt, err := optim.NewSGD([]optim.Group{{Params: []*graph.Value{w}, LR: 0.1, WeightDecay: tc.wd}}, tc.cfg, sched)
			if err != nil {
				t.Fatal(err)
			}
			defer opt.Free()
			ref := &sgdRef{theta: to64(download(t, w))}
			start := append([]float64(nil), ref.theta...)
			g := graph.New(b)
			defer g.Close()
			for step := range 5 {
				gr := uniform(rng, 23, -1, 1)
				setGrad(t, g, w, gr)
				ref.step(gr, 0.1*sched.Factor(step), tc.wd, tc.cfg.Momentum, tc.cfg.Dampening, tc.cfg.Nesterov)
				if err := opt.Step(); err != nil {
					t.Fatal(err)
				}
				if d := maxAbsDiff(download(t, w), ref.theta); d > 1e-6 {
					t.Errorf("step %d: differs from the float64 rule by %g", step, d)
				}
			}
			if d := maxAbsDiff(toF32(start), ref.theta); d < 0.05 {
				t.Errorf("the reference barely moved (%g): the comparison is vacuous", d)
			}
		})
	}
}

func toF32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

func TestSchedules(t *testing.T) {
	tests := []struct {
		name  string
		s     optim.Schedule
		steps []int
		want  []float64
	}{
		{"constant", optim.Constant{}, []int{0, 5, 1000}, []float64{1, 1, 1}},
		{"constant_warmup", optim.Constant{Warmup: 4}, []int{0, 1, 3, 4, 99}, []float64{0, 0.25, 0.75, 1, 1}},
		{"linear", optim.WarmupLinear{Warmup: 2, Total: 10}, []int{0, 1, 2, 6, 10, 12}, []float64{0, 0.5, 1, 0.5, 0, 0}},
		{"linear_no_warmup", optim.WarmupLinear{Total: 4}, []int{0, 1, 4}, []float64{1, 0.75, 0}},
		{"cosine", optim.WarmupCosine{Warmup: 2, Total: 10}, []int{0, 1, 2, 4, 6, 10, 11},
			[]float64{0, 0.5, 1, 0.5 * (1 + math.Cos(math.Pi/4)), 0.5, 0, 0.5 * (1 + math.Cos(math.Pi*9/8))}},
		{"func", optim.ScheduleFunc(func(s int) float64 { return 1 / float64(s+1) }), []int{0, 3}, []float64{1, 0.25}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, s := range tc.steps {
				if got := tc.s.Factor(s); math.Abs(got-tc.want[i]) > 1e-12 {
					t.Errorf("Factor(%d) = %g, want %g", s, got, tc.want[i])
				}
			}
		})
	}
}

func TestClipGradNorm(t *testing.T) {
	b := openCPU(t)
	g := graph.New(b)
	defer g.Close()
	a := param(t, b, "a", []float32{1, 2, 3}, 3)
	c := param(t, b, "c", []float32{0, 0}, 2)
	frozen := param(t, b, "frozen", []float32{5}, 1)
	if err := frozen.SetTrainable(false); err != nil {
		t.Fatal(err)
	}
	// ‖(3,0,−4,12,0)‖ = 13, times the case's scale. The coefficient is
	// torch's min(1, max/(norm + 1e-6)): at a norm of 1.3e-6 its 1e-6
	// halves it nearly, which a rule without it (or with it elsewhere)
	// would miss.
	for _, tc := range []struct {
		scale, max float64
	}{{1, 26}, {1, 6.5}, {1e-7, 1e-5}, {1e-7, 1.3e-6}, {1e-7, 2e-7}} {
		sc := func(x []float32) []float32 {
			y := make([]float32, len(x))
			for i, v := range x {
				y[i] = float32(float64(v) * tc.scale)
			}
			return y
		}
		ga, gc := sc([]float32{3, 0, -4}), sc([]float32{12, 0})
		setGrad(t, g, a, ga)
		setGrad(t, g, c, gc)
		norm, err := optim.ClipGradNorm([]*graph.Value{a, c, frozen, a}, tc.max)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(norm-13*tc.scale) > 1e-6*13*tc.scale {
			t.Errorf("scale %g, max %g: norm %g, want %g", tc.scale, tc.max, norm, 13*tc.scale)
		}
		coef := math.Min(1, tc.max/(13*tc.scale+1e-6))
		for _, p := range []struct {
			v    *graph.Value
			want []float32
		}{{a, ga}, {c, gc}} {
			got, err := p.v.DownloadGrad()
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if w := float64(p.want[i]) * coef; math.Abs(float64(got[i])-w) > 1e-6*12*tc.scale {
					t.Errorf("scale %g, max %g: grad of %s[%d] = %g, want %g (coefficient %g)", tc.scale, tc.max, p.v.Name(), i, got[i], w, coef)
				}
			}
		}
	}
	setGrad(t, g, a, []float32{float32(math.Inf(1)), 0, 0})
	if _, err := optim.ClipGradNorm([]*graph.Value{a}, 1); err == nil {
		t.Error("an infinite gradient norm gave no error")
	}
	// The error leaves the gradient as it was.
	if got, err := a.DownloadGrad(); err != nil {
		t.Fatal(err)
	} else if !math.IsInf(float64(got[0]), 1) || got[1] != 0 || got[2] != 0 {
		t.Errorf("an infinite norm changed the gradient to %v", got)
	}
	if _, err := optim.ClipGradNorm([]*graph.Value{a}, 0); err == nil {
		t.Error("max norm 0 gave no error")
	}
}

// TestStateResumesExactly trains a model for some steps, exports the
// optimizer state and the parameters, and checks that a fresh optimizer
// over fresh parameters, restored from them, continues bit for bit like
// the original.
func TestStateResumesExactly(t *testing.T) {
	b := openCPU(t)
	for _, kind := range []string{"adamw", "sgd"} {
		t.Run(kind, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 6))
			init := [][]float32{uniform(rng, 12, -1, 1), uniform(rng, 3, -1, 1)}
			grads := make([][][]float32, 6)
			for s := range grads {
				grads[s] = [][]float32{uniform(rng, 12, -1, 1), uniform(rng, 3, -1, 1)}
			}
			newModel := func() ([]*graph.Value, optim.Optimizer) {
				ps := []*graph.Value{param(t, b, "w", init[0], 4, 3), param(t, b, "b", init[1], 3)}
				groups := []optim.Group{{Params: ps[:1], LR: 0.1, WeightDecay: 0.01}, {Params: ps[1:], LR: 0.3}}
				var opt optim.Optimizer
				var err error
				if kind == "adamw" {
					opt, err = optim.NewAdamW(groups, optim.DefaultAdamWConfig(), optim.WarmupCosine{Warmup: 2, Total: 6})
				} else {
					opt, err = optim.NewSGD(groups, optim.SGDConfig{Momentum: 0.9}, optim.WarmupCosine{Warmup: 2, Total: 6})
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(opt.Free)
				return ps, opt
			}
			g := graph.New(b)
			defer g.Close()
			run := func(ps []*graph.Value, opt optim.Optimizer, from, to int) {
				for s := from; s < to; s++ {
					for i, p := range ps {
						setGrad(t, g, p, grads[s][i])
					}
					if err := opt.Step(); err != nil {
						t.Fatal(err)
					}
				}
			}
			ps1, opt1 := newModel()
			run(ps1, opt1, 0, 3)
			st, err := opt1.State()
			if err != nil {
				t.Fatal(err)
			}
			ps2, opt2 := newModel()
			for i := range ps2 {
				b.Upload(ps2[i].Tensor(), download(t, ps1[i]))
			}
			if err := opt2.SetState(st); err != nil {
				t.Fatal(err)
			}
			run(ps1, opt1, 3, 6)
			run(ps2, opt2, 3, 6)
			for i := range ps1 {
				a, c := download(t, ps1[i]), download(t, ps2[i])
				for j := range a {
					if a[j] != c[j] {
						t.Fatalf("parameter %d element %d: %g after resuming, %g without", i, j, c[j], a[j])
					}
				}
			}
		})
	}
}

func TestConstructorAndStateErrors(t *testing.T) {
	b := openCPU(t)
	w := param(t, b, "w", []float32{1, 2}, 2)
	v := param(t, b, "v", []float32{1, 2, 3}, 3)
	g := graph.New(b)
	defer g.Close()
	notParam := g.Input([]float32{1}, 1)
	cases := []struct {
		name   string
		make   func() error
		phrase string
	}{
		{"zero config", func() error {
			_, err := optim.NewAdamW([]optim.Group{{Params: []*graph.Value{w}, LR: 1}}, optim.AdamWConfig{}, nil)
			return err
		}, "eps"},
		{"bad beta", func() error {
			_, err := optim.NewAdamW([]optim.Group{{Params: []*graph.Value{w}, LR: 1}}, optim.AdamWConfig{Beta1: 1, Beta2: 0.9, Eps: 1e-8}, nil)
			return err
		}, "betas"},
		{"duplicate", func() error {
			_, err := optim.NewSGD([]optim.Group{{Params: []*graph.Value{w}}, {Params: []*graph.Value{w}}}, optim.SGDConfig{}, nil)
			return err
		}, "more than one group"},
		{"not a parameter", func() error {
			_, err := optim.NewSGD([]optim.Group{{Params: []*graph.Value{notParam}}}, optim.SGDConfig{}, nil)
			return err
		}, "not a parameter"},
		{"empty", func() error { _, err := optim.NewSGD(nil, optim.SGDConfig{}, nil); return err }, "no parameters"},
		{"negative lr", func() error {
			_, err := optim.NewSGD([]optim.Group{{Params: []*graph.Value{w}, LR: -1}}, optim.SGDConfig{}, nil)
			return err
		}, "negative"},
		{"nesterov without momentum", func() error {
			_, err := optim.NewSGD([]optim.Group{{Params: []*graph.Value{w}}}, optim.SGDConfig{Nesterov: true}, nil)
			return err
		}, "Nesterov"},
	}
	for _, c := range cases {
		err := c.make()
		if err == nil || !strings.Contains(err.Error(), c.phrase) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.phrase)
		}
	}

	opt, err := optim.NewAdamW([]optim.Group{{Params: []*graph.Value{w, v}, LR: 0.1}}, optim.DefaultAdamWConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()
	setGrad(t, g, w, []float32{1, 1})
	setGrad(t, g, v, []float32{1, 1, 1})
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	good, err := opt.State()
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name   string
		edit   func(s *optim.State)
		phrase string
	}{
		{"kind", func(s *optim.State) { s.Kind = "sgd" }, `"sgd"`},
		{"count", func(s *optim.State) { s.Params = s.Params[:1] }, "1 parameters"},
		{"name", func(s *optim.State) { s.Params[1].Name = "u" }, `"u"`},
		{"length", func(s *optim.State) { s.Params[1].Slots["exp_avg"] = []float32{1} }, "exp_avg"},
		{"missing slot", func(s *optim.State) { delete(s.Params[0].Slots, "exp_avg_sq") }, "exp_avg_sq"},
		{"negative steps", func(s *optim.State) { s.Params[0].Steps = -1 }, "negative"},
	}
	for _, c := range bad {
		s, _ := opt.State()
		c.edit(s)
		err := opt.SetState(s)
		if err == nil || !strings.Contains(err.Error(), c.phrase) {
			t.Errorf("%s: error %v, want one mentioning %s", c.name, err, c.phrase)
		}
	}
	// A failed import leaves the state alone.
	after, err := opt.State()
	if err != nil {
		t.Fatal(err)
	}
	if after.Params[0].Steps != good.Params[0].Steps || after.Params[0].Slots["exp_avg"][0] != good.Params[0].Slots["exp_avg"][0] {
		t.Error("a rejected state changed the optimizer")
	}
}

func TestDecayGroups(t *testing.T) {
	b := openCPU(t)
	w1 := param(t, b, "w1", make([]float32, 6), 2, 3)
	bias := param(t, b, "bias", make([]float32, 2), 2)
	w2 := param(t, b, "w2", make([]float32, 8), 2, 2, 2)
	norm := param(t, b, "norm", make([]float32, 3), 3)
	names := func(gs []optim.Group) []string {
		var out []string
		for _, g := range gs {
			s := fmt.Sprintf("%s lr=%g wd=%g:", g.Name, g.LR, g.WeightDecay)
			for _, p := range g.Params {
				s += " " + p.Name()
			}
			out = append(out, s)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		params []*graph.Value
		want   []string
	}{
		{"mixed", []*graph.Value{w1, bias, w2, norm}, []string{"decay lr=0.1 wd=0.01: w1 w2", "no_decay lr=0.1 wd=0: bias norm"}},
		{"matrices only", []*graph.Value{w2, w1}, []string{"decay lr=0.1 wd=0.01: w2 w1"}},
		{"vectors only", []*graph.Value{norm}, []string{"no_decay lr=0.1 wd=0: norm"}},
		{"none", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := names(optim.DecayGroups(tc.params, 0.1, 0.01))
			if !slices.Equal(got, tc.want) {
				t.Errorf("DecayGroups = %q, want %q", got, tc.want)
			}
		})
	}
}
