package peft

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/optim"
)

// toyModel is a small model written against graph.Module: one attention-
// like block (q, v), an MLP up projection, a norm weight outside any layer
// and an output head.
type toyModel struct {
	norm              *graph.Value
	q, v, up, head    graph.Layer
	dq, dv, dup, dhd  *graph.Dense
	dim, hidden, nout int
}

// fit takes steps optimizer steps of the toy model on b towards target
// (16 rows) from x, by mean squared error, and returns the losses, after
// checking that they fell by a fifth.
func (m *toyModel) fit(t *testing.T, b backend.Backend, opt *optim.AdamW, x, target []float32, steps int) []float32 {
	t.Helper()
	g := graph.New(b)
	defer g.Close()
	var losses []float32
	for range steps {
		loss := g.MSE(m.Forward(g, g.Input(x, 16, m.dim)), g.Input(target, 16, m.nout))
		if err := g.Backward(loss); err != nil {
			t.Fatal(err)
		}
		l, err := loss.Item()
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, l)
		g.Reset()
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		opt.ZeroGrad()
	}
	if !(losses[len(losses)-1] < 0.8*losses[0]) {
		t.Errorf("loss %v → %v: did not fall by 20%%", losses[0], losses[len(losses)-1])
	}
	return losses
}

func newToy(t testing.TB, b backend.Backend, seed uint64) *toyModel {
	rng := rand.New(rand.NewPCG(seed, 1))
	const dim, hidden, nout = 8, 12, 5
	dense := func(name string, out, in int, bias bool) *graph.Dense {
		d := &graph.Dense{W: upload(t, b, name+".weight", randn(rng, out*in, 1/math.Sqrt(float64(in))), graph.Trainable, out, in)}
		if bias {
			d.B = upload(t, b, name+".bias", randn(rng, out, 0.1), graph.Trainable, out)
		}
		return d
	}
	m := &toyModel{
		norm: upload(t, b, "model.norm.weight", randn(rng, dim, 0.1), graph.Trainable, dim),
		dq:   dense("model.layers.0.self_attn.q_proj", dim, dim, false),
		dv:   dense("model.layers.0.self_attn.v_proj", dim, dim, true),
		dup:  dense("model.layers.0.mlp.up_proj", hidden, dim, true),
		dhd:  dense("lm_head", nout, hidden, false),
		dim:  dim, hidden: hidden, nout: nout,
	}
	m.q, m.v, m.up, m.head = m.dq, m.dv, m.dup, m.dhd
	return m
}

func (m *toyModel) Params() []*graph.Value {
	return []*graph.Value{m.norm, m.dq.W, m.dv.W, m.dv.B, m.dup.W, m.dup.B, m.dhd.W}
}

func (m *toyModel) Layers() []graph.LayerRef {
	return []graph.LayerRef{
		{Name: "model.layers.0.self_attn.q_proj", Slot: &m.q},
		{Name: "model.layers.0.self_attn.v_proj", Slot: &m.v},
		{Name: "model.layers.0.mlp.up_proj", Slot: &m.up},
		{Name: "lm_head", Slot: &m.head},
	}
}

func (m *toyModel) Forward(g *graph.Tape, x *graph.Value) *graph.Value {
	h := g.RMSNorm(x, m.norm, 1e-5)
	h = g.Add(x, g.Mul(m.q.Forward(g, h), m.v.Forward(g, h)))
	return m.head.Forward(g, g.SiLU(m.up.Forward(g, h)))
}

func TestMatch(t *testing.T) {
	cases := []struct {
		targets []string
		name    string
		want    bool
	}{
		{[]string{"q_proj"}, "model.layers.0.self_attn.q_proj", true},
		{[]string{"q_proj"}, "q_proj", true},
		{[]string{"q_proj"}, "model.layers.0.self_attn.xq_proj", false},
		{[]string{"self_attn.q_proj"}, "model.layers.3.self_attn.q_proj", true},
		{[]string{"wq"}, "layers.2.attention.wq", true},
		{[]string{"wq"}, "layers.2.attention.wqkv", false},
		{[]string{`.*\.(q|v)_proj`}, "model.layers.0.self_attn.v_proj", true},
		{[]string{`.*\.(q|v)_proj`}, "model.layers.0.self_attn.k_proj", false},
		{[]string{`layers\.1\..*`}, "model.layers.1.mlp.up_proj", false}, // whole-name match
		{[]string{`re:q_proj`}, "model.layers.0.self_attn.q_proj", false},
		{[]string{`re:.*q_proj`}, "model.layers.0.self_attn.q_proj", true},
		{[]string{AllLinear}, "model.layers.0.mlp.down_proj", true},
		{[]string{AllLinear}, "lm_head", false},
		{[]string{AllLinear}, "output", false},
		{[]string{"k_proj", "v_proj"}, "a.v_proj", true},
	}
	for _, c := range cases {
		got, err := Match(c.targets, c.name)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.targets, c.name, got, c.want)
		}
	}
	if _, err := Match([]string{"q_proj", "(unclosed"}, "x"); err == nil || !strings.Contains(err.Error(), "TargetModules[1]") {
		t.Errorf("bad regular expression: error %v, want one naming TargetModules[1]", err)
	}
}

func TestHFTargetModules(t *testing.T) {
	v, err := HFTargetModules([]string{"q_proj", "v_proj"})
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := v.([]string); !ok || len(l) != 2 {
		t.Errorf("plain names: %v, want the list", v)
	}
	if v, _ := HFTargetModules([]string{AllLinear}); v != AllLinear {
		t.Errorf("all-linear: %v", v)
	}
	if _, err := HFTargetModules([]string{AllLinear, "q_proj"}); err == nil {
		t.Error("all-linear mixed with names: no error")
	}
	// A mixed list becomes one expression that selects the same names.
	entries := []string{"q_proj", `.*mlp\.up_proj`}
	v, err = HFTargetModules(entries)
	if err != nil {
		t.Fatal(err)
	}
	expr, ok := v.(string)
	if !ok {
		t.Fatalf("mixed entries: %v, want a string", v)
	}
	for _, name := range []string{"model.layers.0.self_attn.q_proj", "q_proj", "model.layers.0.mlp.up_proj", "model.layers.0.self_attn.k_proj", "xq_proj"} {
		want, _ := Match(entries, name)
		got, _ := Match([]string{"re:" + expr}, name)
		if got != want {
			t.Errorf("%q: expression %q selects %v, entries select %v", name, expr, got, want)
		}
	}
}

func TestInject(t *testing.T) {
	b := openCPU(t)
	rng := rand.New(rand.NewPCG(2, 2))
	m := newToy(t, b, 1)
	x := randn(rng, 3*m.dim, 1)
	runToy := func() []float32 {
		g := graph.New(b)
		defer g.Close()
		y, err := m.Forward(g, g.Input(x, 3, m.dim)).Download()
		if err != nil {
			t.Fatal(err)
		}
		return y
	}
	before := runToy()
	cfg := Config{Method: SORA, R: 2, Alpha: 4, RotationRank: 2, TargetModules: []string{"q_proj", "v_proj"}}
	pm, err := Inject(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.q.(*Layer); !ok {
		t.Fatalf("q slot holds %T", m.q)
	}
	if _, ok := m.up.(*graph.Dense); !ok {
		t.Fatalf("up slot holds %T, should be untouched", m.up)
	}
	for _, p := range m.Params() {
		if p.Trainable() {
			t.Errorf("module parameter %s still trainable", p.Name())
		}
	}
	after := runToy()
	for i := range before {
		if math.Float32bits(after[i]) != math.Float32bits(before[i]) {
			t.Fatalf("output %d changed by injection: %v → %v", i, before[i], after[i])
		}
	}
	// Report: per layer A [2, 8] + B [8, 2] + d [8] + C, D [8, 2].
	per := int64(2*8 + 8*2 + 8 + 2*8*2)
	base := int64(8 + 64 + 64 + 8 + 12*8 + 12 + 5*12)
	rep := pm.Report()
	if rep.Trainable != 2*per || rep.Total != base+2*per || rep.Base != base || rep.Layers != 2 {
		t.Errorf("report %+v, want trainable %d of %d (base %d) on 2 layers", rep, 2*per, base+2*per, base)
	}
	// 144/456 and 144/312.
	if s := rep.String(); s != "sora on 2 layers: trainable params: 144 || all params: 456 || trainable%: 31.5789 || of the base model's 312: 46.1538%" {
		t.Errorf("report string %q", s)
	}
	if n := len(pm.Trainable()); n != 2*5 {
		t.Errorf("%d trainable tensors, want 10", n)
	}

	// A second injection into the same slots is refused.
	if _, err := Inject(m, cfg); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("double injection: %v", err)
	}
	pm.Unload()
	if _, ok := m.q.(*graph.Dense); !ok {
		t.Fatalf("after Unload q slot holds %T", m.q)
	}
	for _, p := range m.Params() {
		if !p.Trainable() {
			t.Errorf("after Unload %s is still frozen", p.Name())
		}
	}
}

// slotToy is toyModel as graph.Module asks a model to be: its Params lists
// what its slots hold now (an adapted layer's Params), not the original
// dense layers. Report must count both alike.
type slotToy struct{ *toyModel }

func (m slotToy) Params() []*graph.Value {
	ps := []*graph.Value{m.norm}
	for _, l := range []graph.Layer{m.q, m.v, m.up, m.head} {
		switch l := l.(type) {
		case *graph.Dense:
			ps = append(ps, l.W)
			if l.B != nil {
				ps = append(ps, l.B)
			}
		case *Layer:
			ps = append(ps, l.Params()...)
		}
	}
	return ps
}

// TestReport checks the parameter counts of every kind of method against
// the toy model's shapes, for a module that lists its slots' parameters and
// for one that lists only its original weights.
func TestReport(t *testing.T) {
	// norm [8]; q [8, 8]; v [8, 8] + [8]; up [12, 8] + [12]; lm_head [5, 12].
	const base = 8 + 8*8 + 8*8 + 8 + 12*8 + 12 + 5*12
	targets := []string{"q_proj", "v_proj"} // both [8, 8], v with a bias
	cases := []struct {
		cfg          Config
		perLayer     int64 // adapter elements per adapted layer
		trainable    int64
		trainNorm    bool // make the norm trainable after Inject, as a new head is
		wantTotalAdd int64
	}{
		{cfg: Config{Method: LoRA, R: 2, Alpha: 4}, perLayer: 2*8 + 8*2},
		{cfg: Config{Method: DoRA, R: 2, Alpha: 4}, perLayer: 2*8 + 8*2 + 8},
		{cfg: Config{Method: PreDiag, R: 3, Alpha: 4}, perLayer: 3*8 + 8*3 + 8},
		{cfg: Config{Method: SORA, R: 2, Alpha: 4, RotationRank: 1}, perLayer: 2*8 + 8*2 + 8 + 2*8*1},
		{cfg: Config{Method: PostOrtho, R: 2, Alpha: 4, RotationRank: 2}, perLayer: 2*8 + 8*2 + 2*8*2},
		{cfg: Config{Method: OFT, OFTBlockSize: 4}, perLayer: 2 * (4 * 3 / 2)}, // 2 blocks of 4
		{cfg: Config{Method: LoRA, R: 1, Alpha: 1}, perLayer: 8 + 8, trainNorm: true},
	}
	for _, c := range cases {
		for _, listSlots := range []bool{false, true} {
			b := openCPU(t)
			toy := newToy(t, b, 5)
			var mod graph.Module = toy
			if listSlots {
				mod = slotToy{toy}
			}
			cfg := c.cfg
			cfg.TargetModules = targets
			pm, err := Inject(mod, cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := Report{Method: cfg.Method, Layers: 2, Trainable: 2 * c.perLayer, Total: base + 2*c.perLayer, Base: base}
			if c.trainNorm {
				if err := toy.norm.SetTrainable(true); err != nil {
					t.Fatal(err)
				}
				want.Trainable += 8
			}
			if got := pm.Report(); got != want {
				t.Errorf("%s (slots listed %v): report %+v, want %+v", cfg.Method, listSlots, got, want)
			}
			pm.Unload()
		}
	}
	// Full fine-tuning trains the targeted weights themselves: q's W and
	// v's W and b; the model's size does not change. With AllParameters
	// everything trains, 100%.
	for _, listSlots := range []bool{false, true} {
		b := openCPU(t)
		toy := newToy(t, b, 6)
		var mod graph.Module = toy
		if listSlots {
			mod = slotToy{toy}
		}
		pm, err := Inject(mod, Config{Method: Full, TargetModules: targets})
		if err != nil {
			t.Fatal(err)
		}
		want := Report{Method: Full, Layers: 2, Trainable: 8*8 + 8*8 + 8, Total: base, Base: base}
		if got := pm.Report(); got != want {
			t.Errorf("full: report %+v, want %+v", got, want)
		}
		if got, want := pm.Report().PercentOfBase(), 100*float64(136)/312; math.Abs(got-want) > 1e-12 {
			t.Errorf("full: %g%% of the base model, want %g", got, want)
		}
		pm.Unload()
		pm, err = Inject(mod, Config{Method: Full, TargetModules: []string{AllParameters}})
		if err != nil {
			t.Fatal(err)
		}
		// The layers are those all-linear selects: q, v, up (not lm_head).
		want = Report{Method: Full, Layers: 3, AllParameters: true, Trainable: base, Total: base, Base: base}
		if got := pm.Report(); got != want {
			t.Errorf("full, all parameters: report %+v, want %+v", got, want)
		}
		if got, want := pm.Report().String(), "full of every parameter (3 linear layers and the rest): trainable params: 312 || all params: 312 || trainable%: 100.0000 || of the base model's 312: 100.0000%"; got != want {
			t.Errorf("report string %q, want %q", got, want)
		}
		pm.Unload()
	}
}

// TestUnloadFreesAdapters: Inject then Unload leaves the backend holding
// what it held before, whether the module's tensors are freed before
// Unload or after; Params of an adapted layer include the base weights,
// Trainable only the adapter's.
func TestUnloadFreesAdapters(t *testing.T) {
	for _, method := range []Method{LoRA, DoRA, SORA, OFT, Full} {
		for _, moduleFirst := range []bool{false, true} {
			b := openCPU(t)
			start := b.BytesInUse()
			toy := newToy(t, b, 7)
			own := toy.Params() // the module's own tensors
			cfg := Config{Method: method, R: 2, Alpha: 4, RotationRank: 2, OFTBlockSize: 4, TargetModules: []string{"v_proj"}}
			if method == OFT || method == Full {
				cfg.R = 0
			}
			pm, err := Inject(toy, cfg)
			if err != nil {
				t.Fatal(err)
			}
			l := pm.Layers()[0]
			ps := l.Params()
			if method == Full {
				// Trained in place: v's own W and b, trainable.
				if len(ps) != 2 || ps[0] != toy.dv.W || ps[1] != toy.dv.B || !ps[0].Trainable() || !ps[1].Trainable() {
					t.Errorf("full: Params should be v's own W and b, trainable, got %v", ps)
				}
			} else if len(ps) < 3 || ps[0] != toy.dv.W || ps[1] != toy.dv.B || len(ps) != 2+len(l.Trainable()) {
				t.Errorf("%s: Params %v, want v's W and b, then %v", method, ps, l.Trainable())
			}
			// Merged weights are the adapter's too.
			if err := pm.Merge(); err != nil {
				t.Fatal(err)
			}
			freeModule := func() {
				for _, p := range own {
					p.Free()
				}
			}
			if moduleFirst {
				freeModule()
				pm.Unload()
			} else {
				pm.Unload()
				freeModule()
			}
			if err := b.Sync(); err != nil {
				t.Errorf("%s: %v", method, err)
			}
			if got := b.BytesInUse(); got != start {
				t.Errorf("%s (module freed first %v): %d bytes still in use, want %d", method, moduleFirst, got, start)
			}
		}
	}
}

func TestInjectErrors(t *testing.T) {
	b := openCPU(t)
	m := newToy(t, b, 2)
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Method: LoRA, TargetModules: []string{"k_proj"}}, "select none of the model's 4 layers (model.layers.0.self_attn.q_proj"},
		{Config{Method: LoRA}, "TargetModules is empty"},
		{Config{Method: "lora2", TargetModules: []string{"q_proj"}}, "Config.Method"},
		{Config{Method: LoRA, R: -1, TargetModules: []string{"q_proj"}}, "Config.R = -1"},
		{Config{Method: LoRA, Dropout: 1, TargetModules: []string{"q_proj"}}, "Config.Dropout"},
		{Config{Method: LoRA, ExactRotation: true, TargetModules: []string{"q_proj"}}, "ExactRotation"},
		{Config{Method: Full, ExactRotation: true, TargetModules: []string{"q_proj"}}, "ExactRotation"},
		{Config{Method: OFT, OFTBlockSize: 4, ExactRotation: true, TargetModules: []string{"q_proj"}}, "ExactRotation"},
		{Config{Method: OFT, OFTBlockSize: 3, TargetModules: []string{"q_proj"}}, "block size 3 does not divide the 8 input features"},
		{Config{Method: OFT, R: 2, OFTBlockSize: 4, TargetModules: []string{"q_proj"}}, "set exactly one"},
		{Config{Method: LoRA, TargetModules: []string{"q_proj", "[bad"}}, "TargetModules[1]"},
		{Config{Method: LoRA, TargetModules: []string{AllParameters}}, `"all" (every parameter) is full fine-tuning's target`},
		// OFT validates on its own path; "all" would wrap the output head too
		// and leave an adapter that no adapter file can name.
		{Config{Method: OFT, OFTBlockSize: 4, TargetModules: []string{AllParameters}}, `"all" (every parameter) is full fine-tuning's target`},
		{Config{Method: Full, TargetModules: []string{AllParameters, "q_proj"}}, "give it alone"},
		{Config{Method: Full, TargetModules: []string{"k_proj"}}, "select none of the model's 4 layers"},
	}
	for _, c := range cases {
		_, err := Inject(m, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one containing %q", c.cfg, err, c.want)
		}
		if none := strings.Contains(c.want, "select none"); errors.Is(err, ErrNoTargetMatch) != none {
			t.Errorf("%+v: errors.Is(%v, ErrNoTargetMatch) = %v, want %v", c.cfg, err, !none, none)
		}
		if _, ok := m.q.(*graph.Dense); !ok {
			t.Fatalf("a failed Inject left %T in the q slot", m.q)
		}
		for _, p := range m.Params() {
			if !p.Trainable() {
				t.Fatalf("a failed Inject (%v) left %s frozen", err, p.Name())
			}
		}
	}
	// A slot holding something other than a Dense.
	m.head = otherLayer{}
	if _, err := Inject(m, Config{Method: LoRA, TargetModules: []string{"lm_head"}}); err == nil || !strings.Contains(err.Error(), "only *graph.Dense") {
		t.Errorf("non-Dense slot: %v", err)
	}
}

type otherLayer struct{}

func (otherLayer) Forward(g *graph.Tape, x *graph.Value) *graph.Value { return x }

// TestLoRAPlusGroups: with a LoRA+ ratio, the fast group holds the B
// matrices and every trained vector (DoRA's m, Pre-Diag's and SORA's d),
// as PEFT's create_loraplus_optimizer groups them; A, C and D keep the
// base rate. Every trainable parameter is in exactly one group.
func TestLoRAPlusGroups(t *testing.T) {
	b := openCPU(t)
	for _, c := range []struct {
		method     Method
		fast, slow []string // suffixes of the parameters' names
	}{
		{LoRA, []string{".lora_B"}, []string{".lora_A"}},
		{DoRA, []string{".lora_B", ".lora_magnitude_vector"}, []string{".lora_A"}},
		{PreDiag, []string{".lora_B", ".lora_Diag"}, []string{".lora_A"}},
		{SORA, []string{".lora_B", ".lora_Diag"}, []string{".lora_A", ".lora_C", ".lora_D"}},
	} {
		t.Run(string(c.method), func(t *testing.T) {
			pm, err := Inject(newToy(t, b, 3), Config{Method: c.method, R: 4, Alpha: 8, RotationRank: 2, LoRAPlusRatio: 4, TargetModules: []string{AllLinear}})
			if err != nil {
				t.Fatal(err)
			}
			defer pm.Unload()
			groups := pm.ParamGroups(1e-2, 0.1)
			if len(groups) != 2 || groups[0].Name != "adapter" || groups[1].Name != "lora_B" || groups[1].LR != 4*groups[0].LR {
				t.Fatalf("groups %+v: want adapter and lora_B at 4× its rate", groups)
			}
			in := func(p *graph.Value, suffixes []string) bool {
				return slices.ContainsFunc(suffixes, func(s string) bool { return strings.HasSuffix(p.Name(), s) })
			}
			for i, want := range [][]string{c.slow, c.fast} {
				for _, p := range groups[i].Params {
					if !in(p, want) {
						t.Errorf("group %s holds %s", groups[i].Name, p.Name())
					}
				}
			}
			if n := len(groups[0].Params) + len(groups[1].Params); n != len(pm.Trainable()) {
				t.Errorf("%d parameters in the groups, %d trainable", n, len(pm.Trainable()))
			}
		})
	}
}

// TestTrainStep trains a few AdamW steps through the injected model for
// each method: the loss falls, only adapter parameters move, and LoRA+
// gives B its own learning rate.
func TestTrainStep(t *testing.T) {
	b := openCPU(t)
	for _, method := range []Method{LoRA, LoRAPlus, DoRA, PreDiag, SORA, OFT, Full} {
		t.Run(string(method), func(t *testing.T) {
			m := newToy(t, b, 3)
			rng := rand.New(rand.NewPCG(4, 4))
			x := randn(rng, 16*m.dim, 1)
			target := randn(rng, 16*m.nout, 1)
			cfg := Config{Method: method, R: 4, Alpha: 8, RotationRank: 2, OFTBlockSize: 4, TargetModules: []string{AllLinear}, Seed: 1}
			if method == OFT {
				cfg.R = 0 // r and the block size are exclusive
			}
			pm, err := Inject(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer pm.Unload()
			groups := pm.ParamGroups(1e-2, 0)
			switch method {
			case LoRAPlus:
				if len(groups) != 2 || groups[1].Name != "lora_B" || groups[1].LR != 16*groups[0].LR {
					t.Fatalf("LoRA+ groups %+v: want lora_B at 16× the rate", groups)
				}
				for _, p := range groups[1].Params {
					if !strings.HasSuffix(p.Name(), ".lora_B") {
						t.Errorf("lora_B group holds %s", p.Name())
					}
				}
			case Full:
				// The matrices decay, the biases do not.
				if len(groups) != 2 || groups[0].Name != "decay" || groups[1].Name != "no_decay" || len(groups[0].Params) != 3 || len(groups[1].Params) != 2 {
					t.Fatalf("full groups %+v: want 3 weights to decay and 2 biases not", groups)
				}
			default:
				if len(groups) != 1 {
					t.Fatalf("%d groups, want 1", len(groups))
				}
			}
			opt, err := optim.NewAdamW(groups, optim.DefaultAdamWConfig(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer opt.Free()
			// Full trains q's own weight; the norm stays frozen under
			// every method but Full with AllParameters.
			frozen := m.dq.W
			if method == Full {
				frozen = m.norm
			}
			frozenBefore, _ := frozen.Download()
			losses := m.fit(t, b, opt, x, target, 30)
			t.Logf("loss %.4f → %.4f", losses[0], losses[len(losses)-1])
			frozenAfter, _ := frozen.Download()
			for i := range frozenBefore {
				if frozenBefore[i] != frozenAfter[i] {
					t.Fatal("a frozen base weight moved")
				}
			}
		})
	}
}

// TestMergeAndUnload: folding the adapters into the base layers gives a
// plain model that computes the adapted function; spectra of the update
// show LoRA's rank bound and a full-rank SORA update.
func TestMergeAndUnload(t *testing.T) {
	b := openCPU(t)
	rng := rand.New(rand.NewPCG(6, 6))
	for _, method := range []Method{LoRA, SORA, DoRA, OFT} {
		t.Run(string(method), func(t *testing.T) {
			m := newToy(t, b, 5)
			cfg := Config{Method: method, R: 2, Alpha: 4, RotationRank: 2, TargetModules: []string{"q_proj", "up_proj"}}
			if method == OFT {
				cfg = Config{Method: OFT, OFTBlockSize: 4, TargetModules: cfg.TargetModules}
			}
			pm, err := Inject(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, l := range pm.Layers() {
				perturb(t, l, uint64(i+1))
			}
			spectra, err := pm.Spectra()
			if err != nil {
				t.Fatal(err)
			}
			if len(spectra) != 2 || spectra[0].Name != "model.layers.0.self_attn.q_proj" || spectra[1].Rows != 12 || spectra[1].Cols != 8 {
				t.Fatalf("spectra %+v", spectra)
			}
			for _, s := range spectra {
				switch method {
				case LoRA:
					if s.NonZero != 2 {
						t.Errorf("%s: LoRA update of rank %d, want r = 2 (σ = %v)", s.Name, s.NonZero, s.Singular)
					}
				case SORA, DoRA:
					if s.NonZero != 8 {
						t.Errorf("%s: %s update of rank %d, want full rank 8", s.Name, method, s.NonZero)
					}
				}
			}
			x := randn(rng, 4*m.dim, 1)
			run := func() []float32 { return forward(t, m, b, x, 4, m.dim) }
			adapted := run()
			if err := pm.MergeAndUnload(); err != nil {
				t.Fatal(err)
			}
			if _, ok := m.q.(*graph.Dense); !ok {
				t.Fatalf("q slot holds %T after MergeAndUnload", m.q)
			}
			if e := relMax(run(), to64(adapted)); e > 1e-5 {
				t.Errorf("merged model: relative error %.3g against the adapted one", e)
			}
		})
	}
}

// TestMergeAndUnloadFailure: where one layer cannot be merged (here a
// freed parameter), MergeAndUnload returns its error before writing any
// base tensor: the layers before it keep their adapters, unmerged, and
// their base weights and biases as they were, so that the model still
// computes the adapted function rather than one with some updates applied
// twice.
func TestMergeAndUnloadFailure(t *testing.T) {
	b := openCPU(t)
	for _, method := range []Method{LoRA, SORA, DoRA} {
		t.Run(string(method), func(t *testing.T) {
			s := newStack(t, b, stackShapes[:4], 8)
			before := downloadAll(t, s.Params())
			pm, err := Inject(s, Config{Method: method, R: 2, RotationRank: 2, TargetModules: []string{"proj"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pm.Unload)
			ls := pm.Layers()
			for i, l := range ls {
				perturb(t, l, uint64(60+i))
			}
			ls[2].a.Free()
			err = pm.MergeAndUnload()
			if err == nil || !strings.Contains(err.Error(), `"layers.2.proj"`) {
				t.Fatalf("MergeAndUnload: error %v, want layers.2.proj's", err)
			}
			for i, l := range ls {
				if s.slots[i] != graph.Layer(l) {
					t.Errorf("slot %d holds %T after the failed merge, want its adapter", i, s.slots[i])
				}
				if l.merged != nil {
					t.Errorf("layer %d left merged", i)
				}
			}
			for i, got := range downloadAll(t, s.Params()) {
				if !sameBits32(got, before[i]) {
					t.Errorf("base %s changed by the failed merge", s.Params()[i].Name())
				}
			}
		})
	}
}
