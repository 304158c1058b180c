package llama_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/refops"
	"github.com/sora-go/sora/models/llama"
)

// TestPaddingDoesNotReachRealPositions checks the right-padding
// convention: the logits of a row's real positions are those of the row
// alone, whatever ids fill its padding, and LMTargets ignores the padding.
func TestPaddingDoesNotReachRealPositions(t *testing.T) {
	b := openCPU(t)
	cfg := tinyConfig(false, llama.RopeInterleaved)
	m := newModel(t, b, randomWeights(t, cfg, 31))
	rng := rand.New(rand.NewPCG(1, 2))
	V := cfg.VocabSize
	const T = 8
	lengths := []int{8, 3, 5}
	rows := make([][]int32, len(lengths))
	for i, n := range lengths {
		rows[i] = randomTokens(rng, n, V)
	}
	g := graph.New(b)
	defer g.Close()
	alone := make([][]float32, len(rows))
	for i, r := range rows {
		lv, err := m.Forward(g, llama.Batch{Tokens: r, Size: 1, Len: len(r)})
		if err != nil {
			t.Fatal(err)
		}
		alone[i] = download(t, lv)
		g.Reset()
	}
	for _, pad := range []int32{0, int32(V - 1)} {
		tokens := make([]int32, 0, len(rows)*T)
		for _, r := range rows {
			tokens = append(tokens, r...)
			for range T - len(r) {
				tokens = append(tokens, pad)
			}
		}
		bt := llama.Batch{Tokens: tokens, Size: len(rows), Len: T, Lengths: lengths}
		lv, err := m.Forward(g, bt)
		if err != nil {
			t.Fatal(err)
		}
		got := download(t, lv)
		g.Reset()
		for i, n := range lengths {
			if d := maxRelDiff(got[i*T*V:(i*T+n)*V], alone[i]); d > 1e-5 {
				t.Errorf("pad id %d: row %d's real positions differ from the row alone by %.3g", pad, i, d)
			}
		}
		targets, err := llama.LMTargets(bt, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range lengths {
			for p := n - 1; p < T; p++ {
				if tg := targets[i*T+p]; tg != graph.IgnoreIndex {
					t.Errorf("row %d position %d (length %d): target %d, want ignored", i, p, n, tg)
				}
			}
		}
		// The loss over the padded batch is the mean over real next
		// tokens, so it equals the mean of the rows' own losses weighted
		// by their counts.
		loss, err := m.LMLoss(g, bt, targets, graph.CrossEntropyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got1, err := loss.Item()
		if err != nil {
			t.Fatal(err)
		}
		g.Reset()
		var sum float64
		var count int
		for i, r := range rows {
			for p := 0; p+1 < len(r); p++ {
				sum += crossEntropy(alone[i][p*V:(p+1)*V], int(r[p+1]))
				count++
			}
		}
		if want := sum / float64(count); math.Abs(float64(got1)-want) > 1e-4*max(1, want) {
			t.Errorf("pad id %d: padded loss %v, want %v from the rows alone", pad, got1, want)
		}
	}
}

// crossEntropy is −log softmax(logits)[target] in float64.
func crossEntropy(logits []float32, target int) float64 {
	row := make([]float64, len(logits))
	for i, v := range logits {
		row[i] = float64(v)
	}
	return -refops.LogSoftmax(row)[target]
}

func TestLMTargets(t *testing.T) {
	I := graph.IgnoreIndex
	for _, tc := range []struct {
		name    string
		bt      llama.Batch
		prompts []int
		want    []int32
	}{
		{"full", llama.Batch{Tokens: []int32{1, 5, 6, 7}, Size: 1, Len: 4}, nil, []int32{5, 6, 7, I}},
		{"padded", llama.Batch{Tokens: []int32{1, 5, 6, 1, 8, 0}, Size: 2, Len: 3, Lengths: []int{3, 2}}, nil,
			[]int32{5, 6, I, 8, I, I}},
		{"answer only", llama.Batch{Tokens: []int32{1, 5, 6, 7, 9, 1, 8, 4, 0, 0}, Size: 2, Len: 5, Lengths: []int{5, 3}},
			[]int{3, 1}, []int32{I, I, 7, 9, I, 8, 4, I, I, I}},
		{"prompt is everything", llama.Batch{Tokens: []int32{1, 5, 6}, Size: 1, Len: 3}, []int{3}, []int32{I, I, I}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := llama.LMTargets(tc.bt, tc.prompts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name    string
		bt      llama.Batch
		prompts []int
	}{
		{"prompt longer than sequence", llama.Batch{Tokens: []int32{1, 5}, Size: 1, Len: 2}, []int{3}},
		{"prompt lengths count", llama.Batch{Tokens: []int32{1, 5}, Size: 1, Len: 2}, []int{1, 1}},
		{"token count", llama.Batch{Tokens: []int32{1, 5, 6}, Size: 1, Len: 2}, nil},
		{"length beyond Len", llama.Batch{Tokens: []int32{1, 5}, Size: 1, Len: 2, Lengths: []int{3}}, nil},
	} {
		if _, err := llama.LMTargets(tc.bt, tc.prompts); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

// TestGradientsMatchFiniteDifferences checks the backward of the whole
// model (attention with grouped heads and the causal mask, both norms, the
// SwiGLU feed-forward, a padded batch) against central differences of the
// loss, for a few elements of several parameters.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	b := openCPU(t)
	for _, layout := range []llama.RopeLayout{llama.RopeInterleaved, llama.RopeHalfSplit} {
		cfg := tinyConfig(true, layout)
		cfg.NumLayers = 1
		m := newModel(t, b, randomWeights(t, cfg, 41))
		rng := rand.New(rand.NewPCG(8, 9))
		bt := llama.Batch{Tokens: randomTokens(rng, 2*6, cfg.VocabSize), Size: 2, Len: 6, Lengths: []int{6, 4}}
		f := newFDProbe(t, b, m, bt, []int{2, 1})
		f.check(layout.String(), m.Params(), f.grads(), 3, rng)
	}
}

// countingLayer wraps a layer and counts its calls: a stand-in for a PEFT
// layer swapped into a slot.
type countingLayer struct {
	inner graph.Layer
	calls int
}

func (c *countingLayer) Forward(g *graph.Tape, x *graph.Value) *graph.Value {
	c.calls++
	return c.inner.Forward(g, x)
}

func TestLayersAndParams(t *testing.T) {
	b := openCPU(t)
	for _, tied := range []bool{true, false} {
		cfg := tinyConfig(tied, llama.RopeInterleaved)
		m := newModel(t, b, randomWeights(t, cfg, 51))
		var names []string
		for _, r := range m.Layers() {
			names = append(names, r.Name)
		}
		want := []string{}
		for l := range cfg.NumLayers {
			for _, mod := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
				want = append(want, "model.layers."+strconv.Itoa(l)+"."+mod)
			}
		}
		want = append(want, "lm_head")
		if !slices.Equal(names, want) {
			t.Fatalf("tied=%v: layer names\n got %v\nwant %v", tied, names, want)
		}
		// Every llama2.c alias names the same modules as its HF name.
		for _, alias := range []string{"wq", "wk", "wv", "wo", "w1", "w2", "w3"} {
			suffix := "." + llama.CanonicalModule(alias)
			n := 0
			for _, name := range names {
				if strings.HasSuffix(name, suffix) {
					n++
				}
			}
			if n != cfg.NumLayers {
				t.Errorf("alias %s (%s) matches %d layers, want %d", alias, suffix, n, cfg.NumLayers)
			}
		}
		ps := m.Params()
		var count int64
		seen := map[string]bool{}
		for _, p := range ps {
			if seen[p.Name()] {
				t.Errorf("parameter %s listed twice", p.Name())
			}
			seen[p.Name()] = true
			count += int64(p.Len())
			if p.Trainable() {
				t.Errorf("parameter %s is trainable after loading", p.Name())
			}
		}
		if count != cfg.NumParams() {
			t.Errorf("tied=%v: parameters hold %d values, config says %d", tied, count, cfg.NumParams())
		}
		// A layer swapped into a slot is what the forward calls.
		w := &countingLayer{inner: *m.Layers()[2].Slot}
		*m.Layers()[2].Slot = w
		g := graph.New(b)
		if _, err := m.Forward(g, llama.Batch{Tokens: []int32{1, 2, 3}, Size: 1, Len: 3}); err != nil {
			t.Fatal(err)
		}
		if err := g.Err(); err != nil {
			t.Fatal(err)
		}
		g.Close()
		if w.calls != 1 || m.Blocks[0].V != graph.Layer(w) {
			t.Errorf("swapped v_proj layer called %d times, want 1", w.calls)
		}
		// Round trip to host weights.
		*m.Layers()[2].Slot = w.inner
		hw, err := m.Weights()
		if err != nil {
			t.Fatal(err)
		}
		orig := randomWeights(t, cfg, 51)
		for i, p := range hw.Params() {
			if !slices.Equal(p.Data, orig.Params()[i].Data) {
				t.Errorf("Weights: %s differs from the uploaded tensor", p.Name)
			}
		}
	}
}

// TestLoadingHoldsOneCopy checks that a model holds its parameters on the
// backend exactly once: uploading allocates the checkpoint's size and no
// more, and Free returns it.
func TestLoadingHoldsOneCopy(t *testing.T) {
	b := openCPU(t)
	for _, tied := range []bool{true, false} {
		cfg := tinyConfig(tied, llama.RopeInterleaved)
		w := randomWeights(t, cfg, 61)
		before := b.BytesInUse()
		m, err := llama.New(b, w)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := b.BytesInUse()-before, 4*cfg.NumParams(); got != want {
			t.Errorf("tied=%v: loading took %d backend bytes, want the parameters' %d", tied, got, want)
		}
		m.Free()
		if got := b.BytesInUse(); got != before {
			t.Errorf("tied=%v: %d bytes in use after Free, %d before loading", tied, got, before)
		}
	}
}

func TestInputErrors(t *testing.T) {
	b := openCPU(t)
	cfg := tinyConfig(true, llama.RopeInterleaved)
	m := newModel(t, b, randomWeights(t, cfg, 71))
	g := graph.New(b)
	defer g.Close()
	for _, tc := range []struct {
		name string
		bt   llama.Batch
		want string
	}{
		{"empty", llama.Batch{}, "at least 1"},
		{"ids count", llama.Batch{Tokens: []int32{1, 2}, Size: 1, Len: 3}, "want 1 sequences × 3"},
		{"id range", llama.Batch{Tokens: []int32{1, 29}, Size: 1, Len: 2}, "outside the vocabulary"},
		{"negative id", llama.Batch{Tokens: []int32{-1}, Size: 1, Len: 1}, "outside the vocabulary"},
		{"too long", llama.Batch{Tokens: make([]int32, 33), Size: 1, Len: 33}, "exceed the model's 32 positions"},
		{"lengths", llama.Batch{Tokens: []int32{1, 2}, Size: 1, Len: 2, Lengths: []int{0}}, "length 0"},
	} {
		_, err := m.Forward(g, tc.bt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	kc, err := m.NewCache(1, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Free()
	if _, err := m.Decode(g, kc, []int32{1, 2, 3, 4, 5}, 5, false); err == nil || !strings.Contains(err.Error(), "exceed the cache") {
		t.Errorf("decoding past the cache: %v", err)
	}
	if _, err := m.Decode(g, kc, []int32{1, 2}, 1, false); err == nil {
		t.Error("decoding 2 ids as 1 position of a batch of 1: no error")
	}
	if _, err := m.NewCache(1, 33); err == nil {
		t.Error("a cache longer than seq_len: no error")
	}
	gen, err := m.NewGenerator(8)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	if _, err := gen.Generate(nil, llama.GenerateOptions{}, nil); err == nil {
		t.Error("empty prompt: no error")
	}
	if _, err := gen.Generate([]int{1, 99}, llama.GenerateOptions{}, nil); err == nil {
		t.Error("prompt id outside the vocabulary: no error")
	}
	if _, err := llama.New(b, &llama.Weights{Config: cfg}); err == nil {
		t.Error("weights without tensors: no error")
	}
	// The model still works after the refused calls.
	if _, err := m.Forward(g, llama.Batch{Tokens: []int32{1, 2}, Size: 1, Len: 2}); err != nil {
		t.Fatal(err)
	}
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestGenerateSteps checks llama2.c's step accounting: Steps counts
// positions with the prompt, prompt tokens are emitted as they are fed, and
// a stop token ends the generation without being emitted.
func TestGenerateSteps(t *testing.T) {
	b := openCPU(t)
	cfg := tinyConfig(true, llama.RopeInterleaved)
	m := newModel(t, b, randomWeights(t, cfg, 81))
	gen, err := m.NewGenerator(0)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	prompt := []int{1, 5, 9, 4}
	full, err := gen.Generate(prompt, llama.GenerateOptions{Steps: 12}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(full) != 13 || !slices.Equal(full[:4], prompt) {
		t.Fatalf("12 steps from a 4-token prompt gave %v, want the prompt and 9 more", full)
	}
	for steps := 1; steps <= 12; steps++ {
		var emitted []int
		got, err := gen.Generate(prompt, llama.GenerateOptions{Steps: steps}, func(tok int) error {
			emitted = append(emitted, tok)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, full[:steps+1]) || !slices.Equal(emitted, got[1:]) {
			t.Fatalf("%d steps gave %v (emitted %v), want %v", steps, got, emitted, full[:steps+1])
		}
	}
	stop := full[6]
	got, err := gen.Generate(prompt, llama.GenerateOptions{Steps: 12, Stop: []int{stop}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := full[:slices.Index(full[4:], stop)+4]; !slices.Equal(got, want) {
		t.Fatalf("stopping at %d gave %v, want %v", stop, got, want)
	}
	// Steps beyond the generator's length are clamped to it.
	got, err = gen.Generate(prompt, llama.GenerateOptions{Steps: 1000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != cfg.MaxSeqLen+1 {
		t.Fatalf("1000 steps with %d positions gave %d tokens", cfg.MaxSeqLen, len(got))
	}
}

// TestSeededSamplingReproduces checks that a seed reproduces a sampled
// generation and that another seed (almost surely) changes it.
func TestSeededSamplingReproduces(t *testing.T) {
	b := openCPU(t)
	cfg := tinyConfig(false, llama.RopeHalfSplit)
	m := newModel(t, b, randomWeights(t, cfg, 91))
	gen, err := m.NewGenerator(0)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	run := func(seed uint64) []int {
		s, err := llama.NewSampler(1.0, 0.9, seed)
		if err != nil {
			t.Fatal(err)
		}
		seq, err := gen.Generate([]int{1}, llama.GenerateOptions{Steps: 30, Sampler: s}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	a, a2, c := run(7), run(7), run(8)
	if !slices.Equal(a, a2) {
		t.Fatalf("seed 7 gave %v then %v", a, a2)
	}
	if slices.Equal(a, c) {
		t.Fatalf("seeds 7 and 8 gave the same 30 sampled tokens %v", a)
	}
}
