package peft

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/gradcheck"
	"github.com/sora-go/sora/graph/optim"
)

// downloadAll returns the values of ps.
func downloadAll(t testing.TB, ps []*graph.Value) [][]float32 {
	t.Helper()
	out := make([][]float32, len(ps))
	for i, p := range ps {
		h, err := p.Download()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = h
	}
	return out
}

func sameBits32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestFullAllParameters: full fine-tuning with AllParameters trains every
// parameter of the module in place (the norm and the head too, which the
// other methods leave frozen), exempts the vectors from weight decay,
// leaves the slots' dense layers where they are, gives the spectra of
// ΔW = W − W0 for the linear layers, and Unload gives back the pretrained
// values bit for bit, MergeAndUnload keeps the trained ones, and after
// ForgetPretrained there is no W0 to analyse or restore.
func TestFullAllParameters(t *testing.T) {
	b := openCPU(t)
	for _, end := range []string{"unload", "merge-and-unload", "forget"} {
		t.Run(end, func(t *testing.T) {
			m := newToy(t, b, 21)
			own := m.Params()
			before := downloadAll(t, own)
			rng := rand.New(rand.NewPCG(21, 1))
			x := randn(rng, 16*m.dim, 1)
			target := randn(rng, 16*m.nout, 1)
			run := func() []float32 { return forward(t, m, b, x, 16, m.dim) }
			y0 := run()
			pm, err := Inject(m, Config{Method: Full, TargetModules: []string{AllParameters}})
			if err != nil {
				t.Fatal(err)
			}
			for _, slot := range []graph.Layer{m.q, m.v, m.up, m.head} {
				if _, ok := slot.(*graph.Dense); !ok {
					t.Fatalf("a slot holds %T: full fine-tuning trains the dense layers in place", slot)
				}
			}
			if !sameBits32(run(), y0) {
				t.Fatal("the injection changed the model's output")
			}
			tr := pm.Trainable()
			if len(tr) != len(own) {
				t.Errorf("%d trainable tensors, want the module's %d", len(tr), len(own))
			}
			for _, p := range own {
				if !p.Trainable() || !slices.Contains(tr, p) {
					t.Errorf("%s is not trained", p.Name())
				}
			}
			var names []string
			for _, l := range pm.Layers() {
				names = append(names, l.Name())
			}
			if strings.Join(names, ",") != "model.layers.0.self_attn.q_proj,model.layers.0.self_attn.v_proj,model.layers.0.mlp.up_proj" {
				t.Errorf("layers %v: want those all-linear selects", names)
			}
			groups := pm.ParamGroups(1e-2, 0.1)
			if len(groups) != 2 || groups[0].Name != "decay" || groups[0].WeightDecay != 0.1 || groups[1].Name != "no_decay" || groups[1].WeightDecay != 0 {
				t.Fatalf("groups %+v: want decay (0.1) and no_decay (0)", groups)
			}
			var decayed, exempt []string
			for _, p := range groups[0].Params {
				decayed = append(decayed, p.Name())
			}
			for _, p := range groups[1].Params {
				exempt = append(exempt, p.Name())
			}
			slices.Sort(decayed)
			slices.Sort(exempt)
			if got := strings.Join(decayed, ","); got != "lm_head.weight,model.layers.0.mlp.up_proj.weight,model.layers.0.self_attn.q_proj.weight,model.layers.0.self_attn.v_proj.weight" {
				t.Errorf("decayed: %s; want the four matrices", got)
			}
			if got := strings.Join(exempt, ","); got != "model.layers.0.mlp.up_proj.bias,model.layers.0.self_attn.v_proj.bias,model.norm.weight" {
				t.Errorf("exempt from decay: %s; want the norm and the biases", got)
			}

			opt, err := optim.NewAdamW(groups, optim.DefaultAdamWConfig(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer opt.Free()
			m.fit(t, b, opt, x, target, 30)
			trained := downloadAll(t, own)
			for i, p := range own {
				if sameBits32(trained[i], before[i]) {
					t.Errorf("%s did not move", p.Name())
				}
			}

			// The spectra are of W − W0, W0 the pretrained weight.
			if end == "forget" {
				pm.ForgetPretrained()
				if _, err := pm.Spectra(); err == nil || !strings.Contains(err.Error(), "ForgetPretrained") {
					t.Errorf("spectra without W0: %v", err)
				}
			} else {
				spectra, err := pm.Spectra()
				if err != nil {
					t.Fatal(err)
				}
				for i, s := range spectra {
					w := pm.Layers()[i].Base().W
					k := slices.Index(own, w)
					var f2 float64
					for j := range trained[k] {
						d := float64(trained[k][j]) - float64(before[k][j])
						f2 += d * d
					}
					if math.Abs(s.Frobenius-math.Sqrt(f2)) > 1e-9*math.Sqrt(f2) {
						t.Errorf("%s: ‖ΔW‖_F %g, want ‖W − W0‖_F = %g", s.Name, s.Frobenius, math.Sqrt(f2))
					}
				}
			}

			want := before
			switch end {
			case "unload":
				pm.Unload()
			case "merge-and-unload":
				if err := pm.MergeAndUnload(); err != nil {
					t.Fatal(err)
				}
				want = trained
			case "forget":
				pm.Unload() // nothing to restore from
				want = trained
			}
			after := downloadAll(t, own)
			for i, p := range own {
				if !sameBits32(after[i], want[i]) {
					t.Errorf("after %s %s does not hold the values it should", end, p.Name())
				}
				// The toy's parameters were trainable before Inject.
				if !p.Trainable() {
					t.Errorf("after %s %s is frozen; it was trainable before Inject", end, p.Name())
				}
			}
			if end == "unload" && !sameBits32(run(), y0) {
				t.Error("after Unload the model computes other outputs than before Inject")
			}
		})
	}
}

// TestFullTargetsRestrict: full fine-tuning with named targets trains
// those layers' weights and biases alone, in place; the rest, the norm
// and the head included, stays frozen, and Unload restores the layers.
func TestFullTargetsRestrict(t *testing.T) {
	b := openCPU(t)
	m := newToy(t, b, 22)
	own := m.Params()
	before := downloadAll(t, own)
	pm, err := Inject(m, Config{Method: Full, TargetModules: []string{"v_proj"}})
	if err != nil {
		t.Fatal(err)
	}
	var trainable []string
	for _, p := range own {
		if p.Trainable() {
			trainable = append(trainable, p.Name())
		}
	}
	if got := strings.Join(trainable, ","); got != "model.layers.0.self_attn.v_proj.weight,model.layers.0.self_attn.v_proj.bias" {
		t.Errorf("trainable: %s; want v_proj's weight and bias alone", got)
	}
	if tr := pm.Trainable(); len(tr) != 2 || tr[0] != m.dv.W || tr[1] != m.dv.B {
		t.Errorf("Trainable %v, want v's own W and b", tr)
	}
	if r := pm.Report(); r.Trainable != 8*8+8 || r.AllParameters {
		t.Errorf("report %+v: want 72 trainable of the layer", r)
	}
	perturb(t, pm.Layers()[0], 3)
	pm.Unload()
	after := downloadAll(t, own)
	for i, p := range own {
		if !sameBits32(after[i], before[i]) || !p.Trainable() {
			t.Errorf("after Unload %s is not as before Inject", p.Name())
		}
	}
}

// tiedToy is a small language model with tied embeddings, written against
// graph.Module: one table embeds the input tokens (a gather) and is the
// output head's weight (a product), one parameter with two uses; between
// them an RMSNorm and a residual linear layer with a bias.
type tiedToy struct {
	embed, norm *graph.Value
	q, head     graph.Layer
	dq          *graph.Dense
	vocab, dim  int
}

func newTiedToy(t testing.TB, b backend.Backend, seed uint64) *tiedToy {
	rng := rand.New(rand.NewPCG(seed, 5))
	const vocab, dim = 11, 6
	norm := randn(rng, dim, 0.3)
	for i := range norm { // near 1, as trained norm weights are
		norm[i]++
	}
	m := &tiedToy{
		embed: upload(t, b, "model.embed_tokens.weight", randn(rng, vocab*dim, 1), graph.Frozen, vocab, dim),
		norm:  upload(t, b, "model.norm.weight", norm, graph.Frozen, dim),
		dq: &graph.Dense{
			W: upload(t, b, "model.layers.0.self_attn.q_proj.weight", randn(rng, dim*dim, 0.4), graph.Frozen, dim, dim),
			B: upload(t, b, "model.layers.0.self_attn.q_proj.bias", randn(rng, dim, 0.2), graph.Frozen, dim),
		},
		vocab: vocab, dim: dim,
	}
	m.q, m.head = m.dq, &graph.Dense{W: m.embed}
	return m
}

func (m *tiedToy) Params() []*graph.Value {
	return []*graph.Value{m.embed, m.norm, m.dq.W, m.dq.B} // the head's weight is the embedding
}

func (m *tiedToy) Layers() []graph.LayerRef {
	return []graph.LayerRef{{Name: "model.layers.0.self_attn.q_proj", Slot: &m.q}, {Name: "lm_head", Slot: &m.head}}
}

// tiedLogits is the model's function of its parameters: logits [n, vocab]
// of the tokens ids.
func tiedLogits(g *graph.Tape, embed, norm *graph.Value, q, head graph.Layer, ids []int32) *graph.Value {
	x := g.Gather(embed, ids)
	x = g.Add(x, q.Forward(g, g.RMSNorm(x, norm, 1e-5)))
	return head.Forward(g, x)
}

func (m *tiedToy) loss(g *graph.Tape, ids, targets []int32) *graph.Value {
	return g.CrossEntropy(tiedLogits(g, m.embed, m.norm, m.q, m.head, ids), targets, graph.CrossEntropyOptions{})
}

// tiedLogits64 is tiedLogits in float64 on the host: the reference.
func tiedLogits64(embed, norm, w, bias []float64, vocab, dim int, ids []int32) []float64 {
	out := make([]float64, 0, len(ids)*vocab)
	for _, id := range ids {
		x := embed[int(id)*dim : int(id+1)*dim]
		var ms float64
		for _, v := range x {
			ms += v * v
		}
		r := 1 / math.Sqrt(ms/float64(dim)+1e-5)
		y := make([]float64, dim)
		for i := range dim {
			y[i] = x[i] + bias[i]
			for j := range dim {
				y[i] += w[i*dim+j] * x[j] * r * norm[j]
			}
		}
		for v := range vocab {
			var s float64
			for j := range dim {
				s += embed[v*dim+j] * y[j]
			}
			out = append(out, s)
		}
	}
	return out
}

// TestFullTiedEmbedding: with tied embeddings (the token table is the
// output head's weight), full fine-tuning trains that table as one
// parameter, in one optimizer group with one state, and its gradient is
// the sum of the gather's and the head's: checked against a float64
// reference of the function (graph/gradcheck) and, on the injected model
// itself, against central differences of its loss for the table, the norm
// and the layer's weight and bias; training lowers the loss.
func TestFullTiedEmbedding(t *testing.T) {
	b := openCPU(t)
	ids := []int32{3, 7, 3, 0, 10, 5, 7}
	targets := []int32{7, 3, 0, 10, 5, 7, 2}
	const vocab, dim = 11, 6

	// The function, against its float64 reference: the table's gradient
	// must gather both of its uses.
	checkGradients(t, b, gradcheck.Case{
		Name: "peft/full/tied-embedding",
		Inputs: []gradcheck.Input{
			{Name: "embed", Shape: []int{vocab, dim}}, {Name: "norm", Shape: []int{dim}, Lo: 0.5, Hi: 1.5},
			{Name: "q.W", Shape: []int{dim, dim}}, {Name: "q.b", Shape: []int{dim}},
		},
		Forward: func(g *graph.Tape, in []*graph.Value) *graph.Value {
			return tiedLogits(g, in[0], in[1], &graph.Dense{W: in[2], B: in[3]}, &graph.Dense{W: in[0]}, ids)
		},
		Reference: func(in [][]float64) []float64 { return tiedLogits64(in[0], in[1], in[2], in[3], vocab, dim, ids) },
	}, 31)

	m := newTiedToy(t, b, 23)
	pm, err := Inject(m, Config{Method: Full, TargetModules: []string{AllParameters}})
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Unload()
	if h, ok := m.head.(*graph.Dense); !ok || h.W != m.embed {
		t.Fatalf("the head slot holds %T; want the dense layer over the embedding", m.head)
	}
	tr := pm.Trainable()
	if len(tr) != 4 {
		t.Fatalf("trainable %v: want q's weight and bias, the embedding once and the norm", tr)
	}
	for _, p := range m.Params() {
		if !slices.Contains(tr, p) || !p.Trainable() {
			t.Errorf("%s does not train", p.Name())
		}
	}
	if r := pm.Report(); r.Trainable != vocab*dim+dim+dim*dim+dim || r.Total != r.Trainable {
		t.Errorf("report %+v: want every one of %d elements trainable, the table counted once", r, vocab*dim+dim+dim*dim+dim)
	}
	opt, err := optim.NewAdamW(pm.ParamGroups(5e-2, 0.01), optim.DefaultAdamWConfig(), nil) // refuses a parameter in two groups
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()

	// The injected model's gradients against central differences of its
	// loss: a gather row of an input token (3) gets both terms, a row of a
	// token never input (1) the head's alone.
	g := graph.New(b)
	defer g.Close()
	lossAt := func() float64 {
		g.Reset()
		prev := g.SetNoGrad(true)
		defer g.SetNoGrad(prev)
		l, err := m.loss(g, ids, targets).Item()
		if err != nil {
			t.Fatal(err)
		}
		return float64(l)
	}
	opt.ZeroGrad()
	g.Reset()
	if err := g.Backward(m.loss(g, ids, targets)); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(23, 2))
	for _, p := range tr {
		grad, err := p.DownloadGrad()
		if err != nil {
			t.Fatal(err)
		}
		data, err := p.Download()
		if err != nil {
			t.Fatal(err)
		}
		coords := []int{rng.IntN(len(data)), rng.IntN(len(data)), rng.IntN(len(data))}
		if p == m.embed {
			coords = append(coords, 3*dim, 3*dim+4, 1*dim+2)
		}
		for _, i := range coords {
			const h = 1e-2
			orig := data[i]
			at := func(v float32) float64 {
				data[i] = v
				b.Upload(p.Tensor(), data)
				return lossAt()
			}
			fd := (at(orig+h) - at(orig-h)) / (2 * h)
			at(orig)
			if an := float64(grad[i]); math.Abs(fd-an) > 2e-3+0.02*math.Abs(fd) {
				t.Errorf("%s[%d]: gradient %.6g, central difference %.6g", p.Name(), i, an, fd)
			}
		}
	}

	// Training: one state per parameter, the table's included once.
	opt.ZeroGrad()
	var losses []float32
	for range 40 {
		g.Reset()
		loss := m.loss(g, ids, targets)
		if err := g.Backward(loss); err != nil {
			t.Fatal(err)
		}
		l, err := loss.Item()
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, l)
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		opt.ZeroGrad()
	}
	if !(losses[len(losses)-1] < 0.5*losses[0]) {
		t.Errorf("loss %v → %v: did not halve", losses[0], losses[len(losses)-1])
	}
	st, err := opt.State()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Params) != 4 || st.Params[0].Steps != 40 {
		t.Errorf("optimizer state of %d parameters (first updated %d times); want 4, each 40 times", len(st.Params), st.Params[0].Steps)
	}
}

// TestFullForgetOutsideLayers: after ForgetPretrainedOutsideLayers full
// fine-tuning of every parameter keeps on the host the pretrained values
// of the layers alone (those the spectra need), not those of the other
// parameters, which only Unload used: the spectra are still those of
// W − W0, and Unload restores the layers' weights and biases and leaves
// the other parameters with their trained values.
func TestFullForgetOutsideLayers(t *testing.T) {
	b := openCPU(t)
	m := newToy(t, b, 23)
	own := m.Params()
	before := downloadAll(t, own)
	pm, err := Inject(m, Config{Method: Full, TargetModules: []string{AllParameters}})
	if err != nil {
		t.Fatal(err)
	}
	pm.ForgetPretrainedOutsideLayers()
	if pm.othersHost != nil {
		t.Error("the pretrained values outside the layers are still kept")
	}
	inLayers := map[*graph.Value]bool{}
	for _, l := range pm.Layers() {
		if l.w0Host == nil {
			t.Errorf("%s: W0 was let go", l.Name())
		}
		for _, p := range l.Trainable() {
			inLayers[p] = true
		}
	}
	// A step that moves every parameter.
	for _, p := range own {
		h, err := p.Download()
		if err != nil {
			t.Fatal(err)
		}
		for i := range h {
			h[i] += 0.01 * float32(i%7+1)
		}
		set(t, p, h)
	}
	trained := downloadAll(t, own)
	spectra, err := pm.Spectra()
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range spectra {
		k := slices.Index(own, pm.Layers()[i].Base().W)
		var f2 float64
		for j := range trained[k] {
			d := float64(trained[k][j]) - float64(before[k][j])
			f2 += d * d
		}
		if math.Abs(s.Frobenius-math.Sqrt(f2)) > 1e-9*math.Sqrt(f2) {
			t.Errorf("%s: ‖ΔW‖_F %g, want ‖W − W0‖_F = %g", s.Name, s.Frobenius, math.Sqrt(f2))
		}
	}
	pm.Unload()
	after := downloadAll(t, own)
	for i, p := range own {
		want := trained[i]
		if inLayers[p] {
			want = before[i]
		}
		if !sameBits32(after[i], want) {
			t.Errorf("after Unload %s holds neither its pretrained nor its trained values as it should (in a layer: %v)", p.Name(), inLayers[p])
		}
	}
}
