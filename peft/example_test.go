package peft_test

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/optim"
	"github.com/sora-go/sora/peft"
)

// mlp is a tiny model written against graph.Module: two linear layers in
// named slots.
type mlp struct {
	up, down   graph.Layer
	upD, downD *graph.Dense
}

func newMLP(b backend.Backend) *mlp {
	rng := rand.New(rand.NewPCG(1, 2))
	dense := func(name string, out, in int) *graph.Dense {
		w := make([]float32, out*in)
		for i := range w {
			w[i] = float32(rng.NormFloat64() / math.Sqrt(float64(in)))
		}
		p, err := graph.UploadParam(b, name+".weight", w, graph.Trainable, out, in)
		if err != nil {
			panic(err)
		}
		return &graph.Dense{W: p}
	}
	m := &mlp{upD: dense("mlp.up_proj", 32, 16), downD: dense("mlp.down_proj", 16, 32)}
	m.up, m.down = m.upD, m.downD
	return m
}

// Params lists the parameters of what the slots hold now, as graph.Module
// asks: once adapted, a layer's Params are its base weight and its adapter.
func (m *mlp) Params() []*graph.Value {
	var ps []*graph.Value
	for _, l := range []graph.Layer{m.up, m.down} {
		switch l := l.(type) {
		case *graph.Dense:
			ps = append(ps, l.W)
		case *peft.Layer:
			ps = append(ps, l.Params()...)
		}
	}
	return ps
}

func (m *mlp) Layers() []graph.LayerRef {
	return []graph.LayerRef{{Name: "mlp.up_proj", Slot: &m.up}, {Name: "mlp.down_proj", Slot: &m.down}}
}

func (m *mlp) Forward(g *graph.Tape, x *graph.Value) *graph.Value {
	return m.down.Forward(g, g.SiLU(m.up.Forward(g, x)))
}

// Inject SORA into every linear layer of a model, train a few steps with
// AdamW, merge the adapters and check the merged model computes the same.
func ExampleInject() {
	b, err := backend.Open("cpu")
	if err != nil {
		panic(err)
	}
	defer b.Close()
	model := newMLP(b)

	pm, err := peft.Inject(model, peft.Config{
		Method:        peft.SORA,
		R:             4,
		Alpha:         8,
		RotationRank:  2,
		TargetModules: []string{"up_proj", "down_proj"},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(pm.Report())

	opt, err := optim.NewAdamW(pm.ParamGroups(1e-2, 0), optim.DefaultAdamWConfig(), nil)
	if err != nil {
		panic(err)
	}
	defer opt.Free()
	rng := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, 8*16)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	g := graph.New(b)
	defer g.Close()
	var first, last float32
	for step := range 20 {
		in := g.Input(x, 8, 16)
		loss := g.MSE(model.Forward(g, in), g.Scale(in, -1)) // learn y = −x
		if err := g.Backward(loss); err != nil {
			panic(err)
		}
		l, _ := loss.Item()
		if step == 0 {
			first = l
		}
		last = l
		g.Reset()
		if err := opt.Step(); err != nil {
			panic(err)
		}
		opt.ZeroGrad()
	}
	fmt.Println("loss fell:", last < first)

	g.SetNoGrad(true)
	before, _ := model.Forward(g, g.Input(x, 8, 16)).Download()
	g.Reset()
	if err := pm.Merge(); err != nil {
		panic(err)
	}
	after, _ := model.Forward(g, g.Input(x, 8, 16)).Download()
	worst := 0.0
	for i := range before {
		worst = math.Max(worst, math.Abs(float64(after[i]-before[i])))
	}
	fmt.Println("merged equals unmerged:", worst < 1e-5)
	// Output:
	// sora on 2 layers: trainable params: 624 || all params: 1,648 || trainable%: 37.8641 || of the base model's 1,024: 60.9375%
	// loss fell: true
	// merged equals unmerged: true
}

// Wrap one frozen linear layer in DoRA by hand and read its effective
// weight, which at initialisation is the frozen weight itself.
func ExampleNewLayer() {
	b, err := backend.Open("cpu")
	if err != nil {
		panic(err)
	}
	defer b.Close()
	w, _ := graph.UploadParam(b, "proj.weight", []float32{3, 4, 0, 1}, graph.Frozen, 2, 2)
	l, err := peft.NewLayer("proj", &graph.Dense{W: w}, peft.Config{Method: peft.DoRA, R: 1, Alpha: 1})
	if err != nil {
		panic(err)
	}
	defer l.Free()
	for _, p := range l.Params() {
		fmt.Println(p)
	}
	wp, _, _ := l.EffectiveWeight()
	fmt.Println(wp)
	// Output:
	// frozen proj.weight[2, 2]
	// trainable proj.lora_A[1, 2]
	// trainable proj.lora_B[2, 1]
	// trainable proj.lora_magnitude_vector[2]
	// [3 4 0 1]
}

// Analyse the spectrum of a layer's update ΔW = W' − W0.
func ExampleLayer_Spectrum() {
	b, err := backend.Open("cpu")
	if err != nil {
		panic(err)
	}
	defer b.Close()
	w, _ := graph.UploadParam(b, "proj.weight", make([]float32, 6*5), graph.Frozen, 6, 5)
	l, err := peft.NewLayer("proj", &graph.Dense{W: w}, peft.Config{Method: peft.LoRA, R: 2, Alpha: 2})
	if err != nil {
		panic(err)
	}
	defer l.Free()
	// Pretend training moved B: ΔW = s·B·A then has rank 2.
	bm := l.LoRAB()
	bm.Backend().Upload(bm.Tensor(), []float32{1, 0, 0, 1, 1, 1, 0, 2, 2, 0, 1, -1})
	s, err := l.Spectrum()
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s: %d×%d, rank %d\n", s.Name, s.Rows, s.Cols, s.NonZero)
	// Output:
	// proj: 6×5, rank 2
}

// A training loop with dropout calls SetDropoutStep before each
// micro-batch, so that the masks depend on the step and micro-batch and
// not on what the process ran before: a run resumed at step 1 drops what
// an uninterrupted run drops there.
func ExampleModel_SetDropoutStep() {
	b, err := backend.Open("cpu")
	if err != nil {
		panic(err)
	}
	defer b.Close()
	x := make([]float32, 4*16)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	// loss runs a training forward of micro-batch micro of step step.
	loss := func(pm *peft.Model, step, micro int) float32 {
		pm.SetDropoutStep(step, micro)
		g := graph.New(b)
		defer g.Close()
		y := pm.Module().(*mlp).Forward(g, g.Input(x, 4, 16))
		v, err := g.Mean(g.Mul(y, y)).Item()
		if err != nil {
			panic(err)
		}
		return v
	}
	inject := func() *peft.Model {
		pm, err := peft.Inject(newMLP(b), peft.Config{Method: peft.LoRA, R: 4, Alpha: 8, Dropout: 0.3,
			TargetModules: []string{"up_proj", "down_proj"}})
		if err != nil {
			panic(err)
		}
		for _, l := range pm.Layers() { // B ≠ 0, as after some training, so that dropout shows
			bm := l.LoRAB()
			h := make([]float32, bm.Len())
			for i := range h {
				h[i] = 0.1 * float32(i%5-2)
			}
			b.Upload(bm.Tensor(), h)
		}
		return pm
	}
	first, second := inject(), inject()
	loss(first, 0, 0) // step 0 runs in the first process only
	loss(first, 0, 1)
	a := loss(first, 1, 0)
	c := loss(second, 1, 0) // a fresh process resuming at step 1
	fmt.Println("same masks at step 1:", a == c)
	fmt.Println("other masks at step 0:", loss(second, 0, 0) != a)
	// Output:
	// same masks at step 1: true
	// other masks at step 0: true
}
