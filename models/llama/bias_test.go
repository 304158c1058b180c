package llama_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// biasConfig is the tiny model of tinyConfig with attention biases of kind
// bias. BiasQKV takes Qwen2's other settings too (rope theta 1e6, norm eps
// 1e-6, tied embeddings); BiasQKVO is LLaMA with attention_bias, untied.
func biasConfig(bias llama.AttentionBias, layout llama.RopeLayout) llama.Config {
	c := tinyConfig(bias != llama.BiasQKVO, layout)
	c.AttentionBias = bias
	if bias == llama.BiasQKV {
		c.RopeTheta, c.NormEps = 1e6, 1e-6
	}
	return c
}

// withoutBiases returns a copy of w with every attention bias dropped.
func withoutBiases(tb testing.TB, w *llama.Weights) *llama.Weights {
	tb.Helper()
	c := w.Config
	c.AttentionBias = llama.NoBias
	nw, err := llama.NewWeights(c)
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range nw.Params() {
		src, ok := w.Param(p.Name)
		if !ok {
			tb.Fatalf("no %s", p.Name)
		}
		copy(p.Data, src.Data)
	}
	return nw
}

var biasKinds = []llama.AttentionBias{llama.BiasQKV, llama.BiasQKVO}

func TestAttentionBiasConfig(t *testing.T) {
	for _, kind := range []llama.AttentionBias{llama.NoBias, llama.BiasQKV, llama.BiasQKVO} {
		c := biasConfig(kind, llama.RopeHalfSplit)
		plain := c
		plain.AttentionBias = llama.NoBias
		d, kv := int64(c.Dim), int64(c.KVDim())
		perLayer := map[llama.AttentionBias]int64{llama.NoBias: 0, llama.BiasQKV: d + 2*kv, llama.BiasQKVO: 2*d + 2*kv}[kind]
		checkParamCounts(t, c, plain.LayerParams()+perLayer, plain.NumParams()+int64(c.NumLayers)*perLayer, fmt.Sprintf("%v: ", kind))
		w, err := llama.NewWeights(c)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		var names []string
		for _, p := range w.Params() {
			n += int64(len(p.Data))
			if strings.HasPrefix(p.Name, "model.layers.1.self_attn.") {
				names = append(names, strings.TrimPrefix(p.Name, "model.layers.1.self_attn."))
			}
		}
		if n != c.NumParams() {
			t.Errorf("%v: Params hold %d values, NumParams says %d", kind, n, c.NumParams())
		}
		want := map[llama.AttentionBias][]string{
			llama.NoBias:   {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"},
			llama.BiasQKV:  {"q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias", "v_proj.weight", "v_proj.bias", "o_proj.weight"},
			llama.BiasQKVO: {"q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias", "v_proj.weight", "v_proj.bias", "o_proj.weight", "o_proj.bias"},
		}[kind]
		if !slices.Equal(names, want) {
			t.Errorf("%v: layer 1's attention tensors %v, want %v", kind, names, want)
		}
		if p, ok := w.Param("model.layers.0.self_attn.k_proj.bias"); ok != (kind != llama.NoBias) || (ok && !slices.Equal(p.Shape, []int{c.KVDim()})) {
			t.Errorf("%v: k_proj.bias present %v shape %v", kind, ok, p.Shape)
		}
		for _, m := range []string{llama.ModQ, llama.ModK, llama.ModV, llama.ModO, llama.ModGate, llama.ModUp, llama.ModDown, llama.ModInputNorm} {
			want := kind != llama.NoBias && m != llama.ModO && strings.HasPrefix(m, "self_attn.") || kind == llama.BiasQKVO && m == llama.ModO
			if got := c.HasBias(m); got != want {
				t.Errorf("%v: HasBias(%s) = %v, want %v", kind, m, got, want)
			}
		}
	}
	bad := biasConfig(llama.BiasQKV, llama.RopeHalfSplit)
	bad.AttentionBias = 7
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "attention bias") {
		t.Errorf("Validate of attention bias 7: %v", err)
	}
}

func TestAttentionBiasWeightsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind llama.AttentionBias
		edit func(*llama.Weights)
		want string
	}{
		{"missing q bias", llama.BiasQKV, func(w *llama.Weights) { w.Layers[1].Bq = nil }, "model.layers.1.self_attn.q_proj.bias has 0 elements"},
		{"short v bias", llama.BiasQKVO, func(w *llama.Weights) { w.Layers[0].Bv = w.Layers[0].Bv[:3] }, "model.layers.0.self_attn.v_proj.bias has 3 elements"},
		{"o bias on qwen2", llama.BiasQKV, func(w *llama.Weights) { w.Layers[0].Bo = make([]float32, 24) }, "layer 0 has a self_attn.o_proj bias but the config's attention bias is q/k/v"},
		{"bias without config", llama.NoBias, func(w *llama.Weights) { w.Layers[1].Bk = make([]float32, 12) }, "layer 1 has a self_attn.k_proj bias but the config's attention bias is none"},
	} {
		w, err := llama.NewWeights(biasConfig(tc.kind, llama.RopeHalfSplit))
		if err != nil {
			t.Fatal(err)
		}
		tc.edit(w)
		if err := w.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error containing %q", tc.name, err, tc.want)
		}
		if _, err := llama.New(openCPU(t), w); err == nil {
			t.Errorf("%s: New accepted the weights", tc.name)
		}
	}
}

// TestAttentionBiasForwardMatchesFloat64 checks the training forward of
// biased models (Qwen2's q/k/v, LLaMA's q/k/v/o) against the float64
// forward, and the float32 one-position reference against it too, in
// both rotary layouts: the interleaved model is the half-split
// one converted by ToLayout, and must compute the same logits, so ToLayout
// must permute the q and k biases with their rows. The biases must move
// the logits well beyond the tolerance, or the comparison would not test
// them.
func TestAttentionBiasForwardMatchesFloat64(t *testing.T) {
	b := openCPU(t)
	for _, kind := range biasKinds {
		w := randomWeights(t, biasConfig(kind, llama.RopeHalfSplit), 71)
		rng := rand.New(rand.NewPCG(5, 8))
		const B, T = 2, 9
		ids := randomTokens(rng, B*T, w.Config.VocabSize)
		want := forwardRows64(w, ids, B)
		if d := maxRelDiff(forwardRows64(withoutBiases(t, w), ids, B), want); d < 1e-2 {
			t.Fatalf("%v: the biases move the float64 logits by only %.3g", kind, d)
		}
		label := fmt.Sprintf("%v ", kind)
		checkForward64(t, b, w, ids, B, want, forwardRows64, 1e-5, label)
		// ToLayout and back is the identity, biases included.
		checkLayoutRoundTrip(t, w, label)
		lw := inLayout(t, w, llama.RopeInterleaved)
		if slices.Equal(lw.Layers[0].Bq, w.Layers[0].Bq) || slices.Equal(lw.Layers[0].Bk, w.Layers[0].Bk) {
			t.Errorf("%v: ToLayout left the q/k biases in place", kind)
		}
		if !slices.Equal(lw.Layers[0].Bv, w.Layers[0].Bv) {
			t.Errorf("%v: ToLayout moved the v bias, whose rows no rotation touches", kind)
		}
	}
}

// TestAttentionBiasDecodeMatchesFloat64 checks generation through the KV
// cache of a biased model, a token at a time and in chunks, both ways the
// cache attends, against the float64 forward.
func TestAttentionBiasDecodeMatchesFloat64(t *testing.T) {
	b := openCPU(t)
	for _, kind := range biasKinds {
		for _, layout := range bothLayouts {
			w := randomWeights(t, biasConfig(kind, layout), 81)
			checkDecode64(t, b, w, forwardRows64, [][]int{{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {4, 1, 1, 5}}, false, fmt.Sprintf("%v %v", kind, layout))
		}
	}
}

// TestAttentionBiasGradients checks the backward of biased models: with
// every parameter trainable (full fine-tuning) each bias gets the central
// difference of the loss as its gradient; with the biases frozen they get
// none and the other gradients do not change.
func TestAttentionBiasGradients(t *testing.T) {
	b := openCPU(t)
	for _, kind := range biasKinds {
		cfg := biasConfig(kind, llama.RopeHalfSplit)
		cfg.NumLayers = 1
		rng := rand.New(rand.NewPCG(12, 13))
		m, f, full := paddedProbe(t, b, randomWeights(t, cfg, 91), 6, rng)
		var biases []*graph.Value
		for _, p := range m.Params() {
			if strings.HasSuffix(p.Name(), ".bias") {
				biases = append(biases, p)
			}
		}
		if want := 3 + map[llama.AttentionBias]int{llama.BiasQKV: 0, llama.BiasQKVO: 1}[kind]; len(biases) != want {
			t.Fatalf("%v: %d bias parameters, want %d", kind, len(biases), want)
		}
		f.nonzero(kind.String(), biases, full)
		f.check(kind.String(), biases, full, 6, rng)
		for _, p := range biases {
			if err := p.SetTrainable(false); err != nil {
				t.Fatal(err)
			}
		}
		frozen := f.grads()
		for _, p := range biases {
			if !p.Grad().IsZero() {
				t.Errorf("%v: frozen %s has a gradient", kind, p.Name())
			}
		}
		for name, gr := range frozen {
			if d := maxRelDiff(gr, full[name]); d > 1e-6 {
				t.Errorf("%v: %s's gradient changed by %.3g when the biases were frozen", kind, name, d)
			}
		}
	}
}

// TestAttentionBiasModelWeights checks that a biased model holds each
// parameter once on the backend, puts the biases in the attention slots
// (and only there), and gives them back from Weights unchanged.
func TestAttentionBiasModelWeights(t *testing.T) {
	b := openCPU(t)
	for _, kind := range biasKinds {
		cfg := biasConfig(kind, llama.RopeHalfSplit)
		w := randomWeights(t, cfg, 101)
		before := b.BytesInUse()
		m, err := llama.New(b, w)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := b.BytesInUse()-before, 4*cfg.NumParams(); got != want {
			t.Errorf("%v: loading took %d backend bytes, want the parameters' %d", kind, got, want)
		}
		var count int64
		for _, p := range m.Params() {
			count += int64(p.Len())
		}
		if count != cfg.NumParams() {
			t.Errorf("%v: the model's parameters hold %d values, the config says %d", kind, count, cfg.NumParams())
		}
		for _, ref := range m.Layers() {
			d := (*ref.Slot).(*graph.Dense)
			parts := strings.SplitN(ref.Name, ".", 4) // model, layers, N, module
			if want := len(parts) == 4 && cfg.HasBias(parts[3]); (d.B != nil) != want {
				t.Errorf("%v: slot %s has bias %v, want %v", kind, ref.Name, d.B != nil, want)
			}
		}
		hw, err := m.Weights()
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range hw.Params() {
			if !slices.Equal(p.Data, w.Params()[i].Data) {
				t.Errorf("%v: Weights: %s differs from the uploaded tensor", kind, p.Name)
			}
		}
		// A slot whose bias the configuration does not allow is refused.
		blk := m.Blocks[0]
		if kind == llama.BiasQKV {
			o := blk.O.(*graph.Dense)
			o.B = blk.Q.(*graph.Dense).B
			if _, err := m.Weights(); err == nil || !strings.Contains(err.Error(), "o_proj has a bias") {
				t.Errorf("Weights with a bias on o_proj of a q/k/v model: %v", err)
			}
			o.B = nil
		}
		m.Free()
		if got := b.BytesInUse(); got != before {
			t.Errorf("%v: %d bytes in use after Free, %d before loading", kind, got, before)
		}
	}
}

// TestAdapterOnBiasedModel checks LoRA and DoRA on the attention
// projections of a Qwen2-shaped model: the adapted model computes the
// float64 forward of the effective weights W' (W0 + s·B·A, and for DoRA
// each row scaled to the magnitude m) with the base biases kept as they
// are (y = W'·x + b), and merging folds the update into the weights and
// keeps the biases, so the merged model's Weights compute the same.
func TestAdapterOnBiasedModel(t *testing.T) {
	b := openCPU(t)
	for _, method := range []peft.Method{peft.LoRA, peft.DoRA, peft.DoRAPEFT} {
		cfg := biasConfig(llama.BiasQKV, llama.RopeHalfSplit)
		w := randomWeights(t, cfg, 111)
		m := newModel(t, b, w)
		pc := peft.Config{Method: method, R: 2, Alpha: 4, TargetModules: []string{"q_proj", "k_proj", "v_proj", "o_proj"}, Seed: 3}
		pm, err := peft.Inject(m, pc)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(14, 15))
		// B = 0 and m = ‖W0ᵢ‖ at initialisation; move both so that the
		// update is not the identity.
		eff, err := w.Clone()
		if err != nil {
			t.Fatal(err)
		}
		s := pc.Scaling()
		for _, l := range pm.Layers() {
			in, out := l.Dims()
			var a, bm, mag []float32
			for _, nt := range l.Tensors() {
				data := download(t, nt.Value)
				switch nt.Key {
				case "lora_B.weight":
					for i := range data {
						data[i] = float32(0.3 * rng.NormFloat64())
					}
					bm = data
				case "lora_magnitude_vector":
					for i := range data {
						data[i] *= float32(1 + 0.2*rng.NormFloat64())
					}
					mag = data
				case "lora_A.weight":
					a = data
				default:
					t.Fatalf("%s: unexpected tensor %s", l.Name(), nt.Key)
				}
				b.Upload(nt.Value.Tensor(), data)
			}
			p, ok := eff.Param(l.Name() + ".weight")
			if !ok {
				t.Fatalf("no weight for %s", l.Name())
			}
			for i := range out {
				row := make([]float64, in)
				var n2 float64
				for j := range in {
					row[j] = float64(p.Data[i*in+j])
					for k := range pc.R {
						row[j] += s * float64(bm[i*pc.R+k]) * float64(a[k*in+j])
					}
					n2 += row[j] * row[j]
				}
				scale := 1.0
				if mag != nil {
					scale = float64(mag[i]) / math.Sqrt(n2)
				}
				for j := range in {
					p.Data[i*in+j] = float32(scale * row[j])
				}
			}
		}
		ids := randomTokens(rng, 2*7, cfg.VocabSize)
		bt := llama.Batch{Tokens: ids, Size: 2, Len: 7}
		want := forwardRows64(eff, ids, 2)
		if d := maxRelDiff(forwardRows64(withoutBiases(t, eff), ids, 2), want); d < 1e-2 {
			t.Fatalf("%s: the biases move the float64 logits by only %.3g", method, d)
		}
		if d := maxRelDiff(forwardRows64(w, ids, 2), want); d < 1e-2 {
			t.Fatalf("%s: the adapters move the float64 logits by only %.3g", method, d)
		}
		logits := func(what string) {
			t.Helper()
			g := graph.New(b)
			defer g.Close()
			g.SetNoGrad(true)
			lv, err := m.Forward(g, bt)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxRelDiff(download(t, lv), want); d > 1e-5 {
				t.Errorf("%s %s: logits differ from the float64 forward of W'·x + b by %.3g", method, what, d)
			}
		}
		logits("adapted")
		if err := pm.Merge(); err != nil {
			t.Fatal(err)
		}
		logits("merged")
		if err := pm.MergeAndUnload(); err != nil {
			t.Fatal(err)
		}
		logits("merged and unloaded")
		mw, err := m.Weights()
		if err != nil {
			t.Fatal(err)
		}
		for l := range cfg.NumLayers {
			for _, mod := range []string{llama.ModQ, llama.ModK, llama.ModV} {
				name := llama.LayerBiasName(l, mod)
				got, _ := mw.Param(name)
				orig, _ := w.Param(name)
				if !slices.Equal(got.Data, orig.Data) {
					t.Errorf("%s: merging changed %s", method, name)
				}
			}
		}
		if d := maxRelDiff(forwardRows64(mw, ids, 2), want); d > 1e-5 {
			t.Errorf("%s: the merged weights' float64 forward differs by %.3g", method, d)
		}
	}
}

func ExampleConfig_HasBias() {
	qwen2 := llama.Config{AttentionBias: llama.BiasQKV}
	for _, m := range []string{llama.ModQ, llama.ModO, llama.ModUp} {
		fmt.Printf("%s: %v\n", m, qwen2.HasBias(m))
	}
	// Output:
	// self_attn.q_proj: true
	// self_attn.o_proj: false
	// mlp.up_proj: false
}
