package llama_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// bf16Opts are the options of a model with bfloat16 base weights.
var bf16Opts = llama.Options{BaseDType: backend.BFloat16}

// noBF16 is the CPU backend reporting no bfloat16 support, as a backend
// without the optional op does.
type noBF16 struct{ backend.Backend }

func (b noBF16) Supports(op backend.Op) bool {
	return op != backend.OpMatMulBF16 && b.Backend.Supports(op)
}

// roundBF16 rounds x to the nearest bfloat16, ties to even, returned in
// float32: the host's reference of what the backend's Upload stores.
func roundBF16(x float32) float32 {
	u := math.Float32bits(x)
	if u&0x7f800000 == 0x7f800000 && u&0x007fffff != 0 {
		return x // NaN
	}
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u &^ 0xffff)
}

// linearNames returns the names of the tensors a bfloat16 base stores in
// bfloat16: every layer's projections, the embedding (which a tied head
// shares) and an untied output head.
func linearNames(c llama.Config) map[string]bool {
	names := map[string]bool{llama.EmbedName: true}
	for l := range c.NumLayers {
		for _, mod := range []string{llama.ModQ, llama.ModK, llama.ModV, llama.ModO, llama.ModGate, llama.ModUp, llama.ModDown} {
			names[llama.LayerParamName(l, mod)] = true
		}
	}
	if !c.TiedEmbeddings {
		names[llama.OutputName] = true
	}
	return names
}

// roundedLinear returns a copy of w whose linear-layer weights and
// embedding are rounded to bfloat16 on the host, and the number of
// elements rounded: the float32 model a bfloat16 base should compute as.
func roundedLinear(tb testing.TB, w *llama.Weights) (*llama.Weights, int) {
	tb.Helper()
	rw, err := llama.NewWeights(w.Config)
	if err != nil {
		tb.Fatal(err)
	}
	lin, n := linearNames(w.Config), 0
	for _, p := range rw.Params() {
		src, _ := w.Param(p.Name)
		copy(p.Data, src.Data)
		if lin[p.Name] {
			for i, v := range p.Data {
				p.Data[i] = roundBF16(v)
			}
			n += len(p.Data)
		}
	}
	return rw, n
}

func newBF16Model(tb testing.TB, b backend.Backend, w *llama.Weights) *llama.Model {
	tb.Helper()
	m, err := llama.NewWithOptions(b, w, bf16Opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Free)
	return m
}

// bf16Configs are the tiny models the bfloat16 tests run: a tied head
// (the bfloat16 embedding), an untied one (bfloat16 too), and one with
// attention biases on every projection (float32 beside bfloat16 weights).
var bf16Configs = []struct {
	name string
	cfg  llama.Config
}{
	{"tied", tinyConfig(true, llama.RopeHalfSplit)},
	{"untied", tinyConfig(false, llama.RopeInterleaved)},
	{"biases", biasConfig(llama.BiasQKVO, llama.RopeHalfSplit)},
}

// paddedBatch is a batch of three rows of 9 positions, two of them padded.
func paddedBatch(vocab int, seed uint64) llama.Batch {
	const B, T = 3, 9
	return llama.Batch{Tokens: randomTokens(rand.New(rand.NewPCG(seed, 3)), B*T, vocab), Size: B, Len: T, Lengths: []int{9, 6, 3}}
}

// TestBF16BaseLogits checks that a model built with bfloat16 base weights
// stores its linear layers' weights as the host's round-to-nearest-even
// gives them (and nothing else in bfloat16), and computes the logits of a
// float32 model built from those rounded weights, to float32 rounding.
func TestBF16BaseLogits(t *testing.T) {
	b := openCPU(t)
	for i, tc := range bf16Configs {
		t.Run(tc.name, func(t *testing.T) {
			w := randomWeights(t, tc.cfg, uint64(40+i))
			rw, _ := roundedLinear(t, w)
			m16, m32 := newBF16Model(t, b, w), newModel(t, b, rw)
			if m16.BaseDType() != backend.BFloat16 || m32.BaseDType() != backend.Float32 {
				t.Fatalf("BaseDType %v and %v, want bfloat16 and float32", m16.BaseDType(), m32.BaseDType())
			}
			lin := linearNames(tc.cfg)
			for _, p := range m16.Params() {
				want := backend.Float32
				if lin[p.Name()] {
					want = backend.BFloat16
				}
				if p.DType() != want {
					t.Errorf("%s is %v, want %v", p.Name(), p.DType(), want)
				}
			}
			// The stored values, downloaded exactly, are the host's rounding.
			got, err := m16.Weights()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range got.Params() {
				ref, _ := rw.Param(p.Name)
				if !slices.Equal(p.Data, ref.Data) {
					t.Fatalf("%s downloads other values than the host's rounding to bfloat16", p.Name)
				}
			}
			bt := paddedBatch(tc.cfg.VocabSize, 5)
			l16, l32 := batchLogits(t, m16, bt), batchLogits(t, m32, bt)
			V := tc.cfg.VocabSize
			for row := range bt.Size {
				n := bt.Length(row) * V
				off := row * bt.Len * V
				if d := maxRelDiff(l16[off:off+n], l32[off:off+n]); d > 1e-5 {
					t.Errorf("row %d: bfloat16 base's logits differ from the rounded float32 model's by %.3g", row, d)
				}
			}
			// And the rounding matters: the unrounded model differs.
			if d := maxRelDiff(l16, batchLogits(t, newModel(t, b, w), bt)); d < 1e-4 {
				t.Errorf("logits of the unrounded model differ by only %.3g: the test cannot tell rounded weights from exact ones", d)
			}
		})
	}
}

func batchLogits(tb testing.TB, m *llama.Model, bt llama.Batch) []float32 {
	tb.Helper()
	g := graph.New(m.Backend())
	defer g.Close()
	g.SetNoGrad(true)
	lv, err := m.Forward(g, bt)
	if err != nil {
		tb.Fatal(err)
	}
	return download(tb, lv)
}

// TestBF16BaseDecode checks cached decoding with bfloat16 base weights:
// the logits of every position, decoded in chunks through the KV cache on
// both attention paths, are the rounded float32 model's forward logits,
// and greedy generation through the cache picks what the full forward
// picks.
func TestBF16BaseDecode(t *testing.T) {
	b := openCPU(t)
	tc := bf16Configs[1]
	w := randomWeights(t, tc.cfg, 50)
	rw, _ := roundedLinear(t, w)
	const B, T = 2, 11
	ids := randomTokens(rand.New(rand.NewPCG(9, 10)), B*T, tc.cfg.VocabSize)
	want := forwardLogits(t, newModel(t, b, rw), ids, B)
	for _, perHead := range []bool{false, true} {
		m := newBF16Model(t, b, w)
		llama.SetPerHeadAttention(m, perHead)
		g := graph.New(b)
		for _, chunks := range [][]int{{T}, {4, 1, 6}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}} {
			got := decodeChunks(t, m, g, ids, B, T, chunks)
			samePositions(t, got, want, B, T, tc.cfg.VocabSize, 1e-5, fmt.Sprintf("per-head=%v chunks %v: bfloat16 base's cached logits", perHead, chunks), "the rounded float32 model's forward")
		}
		checkGreedy(t, m, g, fmt.Sprintf("bfloat16 base, per-head=%v", perHead))
		g.Close()
	}
}

// TestBF16BaseMemory checks that the backend holds the linear layers'
// weights and the embedding at two bytes an element: the bfloat16 model
// takes exactly 2 bytes × their elements less than the float32 one.
func TestBF16BaseMemory(t *testing.T) {
	b := openCPU(t)
	for i, tc := range bf16Configs {
		w := randomWeights(t, tc.cfg, uint64(60+i))
		_, nLinear := roundedLinear(t, w)
		held := func(o llama.Options) int64 {
			before := b.BytesInUse()
			m, err := llama.NewWithOptions(b, w, o)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			return b.BytesInUse() - before
		}
		f32, bf16 := held(llama.Options{}), held(bf16Opts)
		if want := 4 * tc.cfg.NumParams(); f32 != want {
			t.Errorf("%s: the float32 model holds %d bytes, want 4 × %d parameters = %d", tc.name, f32, tc.cfg.NumParams(), want)
		}
		if want := f32 - 2*int64(nLinear); bf16 != want {
			t.Errorf("%s: the bfloat16 base holds %d bytes, want %d (float32's %d less 2 × %d bfloat16 elements)", tc.name, bf16, want, f32, nLinear)
		}
		t.Logf("%s: float32 %d bytes, bfloat16 base %d bytes (%d bfloat16 elements of %d)", tc.name, f32, bf16, nLinear, tc.cfg.NumParams())
	}
}

// TestBF16BaseErrors checks the refusals: a backend without bfloat16
// products, an unknown storage type, training the stored weights, and
// full fine-tuning.
func TestBF16BaseErrors(t *testing.T) {
	b := openCPU(t)
	w := randomWeights(t, bf16Configs[1].cfg, 70)
	for _, tc := range []struct {
		name string
		b    backend.Backend
		o    llama.Options
		want []string
	}{
		{"no bfloat16 products", noBF16{b}, bf16Opts, []string{"bfloat16", "BaseDType", "backend cpu", string(backend.OpMatMulBF16), "float32"}},
		{"unknown dtype", b, llama.Options{BaseDType: backend.DType(9)}, []string{"BaseDType", "DType(9)", "float32 or bfloat16"}},
	} {
		before := b.BytesInUse()
		m, err := llama.NewWithOptions(tc.b, w, tc.o)
		if err == nil {
			m.Free()
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, s)
			}
		}
		if after := b.BytesInUse(); after != before {
			t.Errorf("%s: the refusal leaves %d bytes allocated", tc.name, after-before)
		}
	}

	m := newBF16Model(t, b, w)
	q := m.Blocks[0].Q.(*graph.Dense).W
	if err := q.SetTrainable(true); err == nil || !strings.Contains(err.Error(), "bfloat16") {
		t.Errorf("making a bfloat16 weight trainable: error %v, want one naming bfloat16", err)
	}
	if q.Trainable() {
		t.Error("the bfloat16 weight became trainable")
	}
	for _, target := range []string{peft.AllParameters, "q_proj"} {
		_, err := peft.Inject(m, peft.Config{Method: peft.Full, TargetModules: []string{target}})
		if err == nil || !strings.Contains(err.Error(), "full fine-tuning") || !strings.Contains(err.Error(), "float32") {
			t.Errorf("full fine-tuning (%s) of a bfloat16 base: error %v, want one naming full fine-tuning and float32", target, err)
		}
	}
	for _, p := range m.Params() {
		if p.Trainable() {
			t.Errorf("after the refused full fine-tuning %s is trainable", p.Name())
		}
	}
}

// TestBF16BaseAdapterGradients trains adapters on a bfloat16 base: the
// loss and every trainable tensor's gradient of one step equal those on
// the rounded float32 model (to float32 rounding; the products' order of
// summation may differ), with and without gradient checkpointing; then
// merging gives float32 weights computing the same logits as the float32
// model merged, a tied head's merge reaching the embedding it shares in
// both.
func TestBF16BaseAdapterGradients(t *testing.T) {
	b := openCPU(t)
	for _, tc := range []struct {
		method     peft.Method
		target     []string
		checkpoint bool
		tied       bool // a tied head: merging it changes the embedding too
	}{
		{peft.LoRA, []string{peft.AllLinear, llama.OutputModule}, false, false},
		{peft.DoRA, []string{peft.AllLinear}, true, false},
		{peft.SORA, []string{peft.AllLinear, llama.OutputModule}, false, false},
		{peft.OFT, []string{"q_proj", "o_proj"}, false, false},
		{peft.LoRA, []string{"q_proj", llama.OutputModule}, false, true},
	} {
		cfg := bf16Configs[2].cfg // untied, with biases
		name := string(tc.method)
		if tc.tied {
			cfg, name = bf16Configs[0].cfg, name+"/tied"
		}
		w := randomWeights(t, cfg, 80)
		rw, _ := roundedLinear(t, w)
		bt := paddedBatch(cfg.VocabSize, 6)
		targets, err := llama.LMTargets(bt, []int{2, 1, 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			pc := peft.Config{Method: tc.method, R: 4, RotationRank: 2, TargetModules: tc.target, Seed: 3}
			if tc.method == peft.OFT {
				pc.R, pc.OFTBlockSize = 0, 4
			}
			type run struct {
				loss   float32
				grads  map[string][]float32
				l      []float32
				merged map[string]backend.DType // the slots' weights after MergeAndUnload
			}
			step := func(m *llama.Model) run {
				m.SetGradientCheckpointing(tc.checkpoint)
				pm, err := peft.Inject(m, pc)
				if err != nil {
					t.Fatal(err)
				}
				var r run
				r.loss, r.grads = adapterStep(t, m, pm, bt, targets, 11)
				if err := pm.MergeAndUnload(); err != nil {
					t.Fatal(err)
				}
				r.merged = map[string]backend.DType{}
				for _, ref := range m.Layers() {
					r.merged[ref.Name] = (*ref.Slot).(*graph.Dense).W.DType()
				}
				r.l = batchLogits(t, m, bt)
				return r
			}
			r16, r32 := step(newBF16Model(t, b, w)), step(newModel(t, b, rw))
			// Merged layers hold float32 weights (W0 + ΔW), the others
			// keep their bfloat16 ones.
			for name, dt := range r16.merged {
				hit, err := peft.Match(tc.target, name)
				if err != nil {
					t.Fatal(err)
				}
				want := backend.BFloat16
				if hit {
					want = backend.Float32
				}
				if dt != want {
					t.Errorf("after merging, %s's weight is %v, want %v", name, dt, want)
				}
			}
			if d := math.Abs(float64(r16.loss - r32.loss)); d > 1e-5*math.Abs(float64(r32.loss)) {
				t.Errorf("loss %v on the bfloat16 base, %v on the rounded float32 model", r16.loss, r32.loss)
			}
			if len(r16.grads) == 0 || len(r16.grads) != len(r32.grads) {
				t.Fatalf("%d and %d trainable tensors", len(r16.grads), len(r32.grads))
			}
			for name, g32 := range r32.grads {
				if d := maxRelDiff(r16.grads[name], g32); d > 1e-4 || math.IsNaN(d) {
					t.Errorf("gradient of %s differs by %.3g (relative to its largest element)", name, d)
				}
			}
			if d := maxRelDiff(r16.l, r32.l); d > 1e-5 {
				t.Errorf("merged logits differ by %.3g", d)
			}
		})
	}
}

// adapterStep gives pm's trainable tensors values of scale 0.2 drawn
// from a generator seeded with seed, runs m's LM loss on bt and its
// backward, and returns the loss and every trainable tensor's gradient by
// name.
func adapterStep(t *testing.T, m *llama.Model, pm *peft.Model, bt llama.Batch, targets []int32, seed uint64) (float32, map[string][]float32) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	for _, p := range pm.Trainable() {
		data := make([]float32, p.Len())
		for i := range data {
			data[i] = float32(0.2 * rng.NormFloat64())
		}
		m.Backend().Upload(p.Tensor(), data)
	}
	g := graph.New(m.Backend())
	defer g.Close()
	loss, err := m.LMLoss(g, bt, targets, graph.CrossEntropyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Backward(loss); err != nil {
		t.Fatal(err)
	}
	l, err := loss.Item()
	if err != nil {
		t.Fatal(err)
	}
	grads := map[string][]float32{}
	for _, p := range pm.Trainable() {
		if grads[p.Name()], err = p.DownloadGrad(); err != nil {
			t.Fatal(err)
		}
	}
	return l, grads
}

// withFloat32Embedding returns the model w builds with bfloat16 base
// weights, except that its embedding (and so a tied head) is a float32
// tensor holding the same rounded values: the model a bfloat16 base built
// before the embedding took the base dtype.
func withFloat32Embedding(tb testing.TB, b backend.Backend, w *llama.Weights) *llama.Model {
	tb.Helper()
	rw, _ := roundedLinear(tb, w)
	m := newBF16Model(tb, b, rw)
	ep, _ := rw.Param(llama.EmbedName)
	e, err := graph.UploadParam(b, llama.EmbedName, ep.Data, graph.Frozen, ep.Shape...)
	if err != nil {
		tb.Fatal(err)
	}
	m.Embed.Free()
	m.Embed = e
	if w.Config.TiedEmbeddings {
		m.Output = &graph.Dense{W: e}
	}
	return m
}

// TestBF16Embedding checks the embedding of a bfloat16 base: it is stored
// in bfloat16 (a tied head being the same tensor), takes 2 bytes an
// element, and the model computes what it computes with a float32
// embedding holding the rounded values: the loss and the adapters'
// gradients of a LoRA step bit for bit where the head is untied (the
// lookup widens exactly), and to float32 rounding where it is tied (the
// head's product then reads a bfloat16 B, which the CPU's kernels may
// sum in another order than a float32 one).
func TestBF16Embedding(t *testing.T) {
	b := openCPU(t)
	for i, tc := range []struct {
		name string
		cfg  llama.Config
		w    func(testing.TB, llama.Config, uint64) *llama.Weights
	}{
		{"tied", tinyConfig(true, llama.RopeHalfSplit), randomWeights},
		{"untied", tinyConfig(false, llama.RopeInterleaved), randomWeights},
		{"gemma3", gemmaConfig(llama.RopeHalfSplit), gemmaWeights}, // tied, with the √dim embedding scale
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.w(t, tc.cfg, uint64(90+i))
			before := b.BytesInUse()
			m16 := newBF16Model(t, b, w)
			held16 := b.BytesInUse() - before
			m32 := withFloat32Embedding(t, b, w)
			held32 := b.BytesInUse() - before - held16
			if m16.Embed.DType() != backend.BFloat16 || m32.Embed.DType() != backend.Float32 {
				t.Fatalf("embeddings %v and %v, want bfloat16 and float32", m16.Embed.DType(), m32.Embed.DType())
			}
			if d, ok := m16.Output.(*graph.Dense); !ok || (d.W == m16.Embed) != tc.cfg.TiedEmbeddings {
				t.Fatalf("output head %T: shares the embedding %v, want %v", m16.Output, ok && d.W == m16.Embed, tc.cfg.TiedEmbeddings)
			}
			if want := 2 * int64(tc.cfg.VocabSize*tc.cfg.Dim); held32-held16 != want {
				t.Errorf("the bfloat16 embedding saves %d bytes, want 2 × %d elements = %d", held32-held16, tc.cfg.VocabSize*tc.cfg.Dim, want)
			}
			bt := paddedBatch(tc.cfg.VocabSize, 8)
			targets, err := llama.LMTargets(bt, []int{1, 2, 0})
			if err != nil {
				t.Fatal(err)
			}
			step := func(m *llama.Model) (float32, map[string][]float32) {
				pm, err := peft.Inject(m, peft.Config{Method: peft.LoRA, R: 4, TargetModules: []string{peft.AllLinear, llama.OutputModule}, Seed: 5})
				if err != nil {
					t.Fatal(err)
				}
				defer pm.Unload()
				return adapterStep(t, m, pm, bt, targets, 13)
			}
			l16, g16 := step(m16)
			l32, g32 := step(m32)
			t.Logf("loss %.9g with the bfloat16 embedding, %.9g with the float32 one (%d bytes less held)", l16, l32, held32-held16)
			if len(g16) == 0 || len(g16) != len(g32) {
				t.Fatalf("%d and %d trainable tensors", len(g16), len(g32))
			}
			if !tc.cfg.TiedEmbeddings {
				if math.Float32bits(l16) != math.Float32bits(l32) {
					t.Errorf("loss %.9g with the bfloat16 embedding, %.9g with the float32 one: want the same bits", l16, l32)
				}
				for name, g := range g32 {
					if !slices.Equal(g16[name], g) {
						t.Errorf("gradient of %s differs from the float32 embedding's", name)
					}
				}
				return
			}
			if d := math.Abs(float64(l16 - l32)); d > 1e-6*math.Abs(float64(l32)) {
				t.Errorf("loss %.9g with the bfloat16 embedding, %.9g with the float32 one", l16, l32)
			}
			for name, g := range g32 {
				if d := maxRelDiff(g16[name], g); d > 1e-5 || math.IsNaN(d) {
					t.Errorf("gradient of %s differs by %.3g (relative to its largest element)", name, d)
				}
			}
		})
	}
}
