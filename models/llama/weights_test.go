package llama

import (
	"math"
	"math/rand"
	"strings"
	"testing"
)

// stories260K is the configuration the data README documents for the
// shared stories260K checkpoint.
var stories260K = Config{
	Dim: 64, HiddenDim: 172, NumLayers: 5, NumHeads: 8, NumKVHeads: 4,
	VocabSize: 512, MaxSeqLen: 512, NormEps: DefaultNormEps, RopeTheta: DefaultRopeTheta,
	TiedEmbeddings: true,
}

func TestNumParams(t *testing.T) {
	// The data README gives 260,032 parameters for stories260K.
	if got := stories260K.NumParams(); got != 260032 {
		t.Errorf("NumParams = %d, want 260032", got)
	}
	untied := stories260K
	untied.TiedEmbeddings = false
	if got := untied.NumParams(); got != 260032+512*64 {
		t.Errorf("untied NumParams = %d, want %d", got, 260032+512*64)
	}
	if got := stories260K.LayerParams(); got != 45440 {
		t.Errorf("LayerParams = %d, want 45440", got)
	}
	w, err := NewWeights(untied)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range w.Params() {
		n += int64(len(p.Data))
	}
	if n != untied.NumParams() {
		t.Errorf("Params hold %d elements, NumParams says %d", n, untied.NumParams())
	}
}

func TestConfigValidate(t *testing.T) {
	mod := func(f func(*Config)) Config { c := stories260K; f(&c); return c }
	cases := []struct {
		name string
		cfg  Config
		want string // "" means valid
	}{
		{"stories260K", stories260K, ""},
		{"mha", mod(func(c *Config) { c.NumKVHeads = 8 }), ""},
		{"zero dim", mod(func(c *Config) { c.Dim = 0 }), "dim = 0"},
		{"negative vocab", mod(func(c *Config) { c.VocabSize = -3 }), "vocab_size = -3"},
		{"huge", mod(func(c *Config) { c.HiddenDim = min(1<<40, math.MaxInt) }), "hidden_dim"},
		{"heads", mod(func(c *Config) { c.NumHeads = 7 }), "not a multiple of n_heads"},
		{"odd head", mod(func(c *Config) { c.Dim = 24 }), "must be even"},
		{"gqa", mod(func(c *Config) { c.NumKVHeads = 3 }), "n_kv_heads 3"},
		{"more kv heads", mod(func(c *Config) { c.NumKVHeads = 16 }), "n_kv_heads 16"},
		{"eps", mod(func(c *Config) { c.NormEps = 0 }), "norm eps"},
		{"theta", mod(func(c *Config) { c.RopeTheta = math.NaN() }), "rope theta"},
		{"layout", mod(func(c *Config) { c.RopeLayout = 7 }), "rope layout"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestParamNames(t *testing.T) {
	w, err := NewWeights(stories260K)
	if err != nil {
		t.Fatal(err)
	}
	ps := w.Params()
	if len(ps) != 2+9*5 {
		t.Fatalf("%d params, want %d", len(ps), 2+9*5)
	}
	want := map[string][]int{
		"model.embed_tokens.weight":                      {512, 64},
		"model.layers.0.self_attn.q_proj.weight":         {64, 64},
		"model.layers.4.self_attn.k_proj.weight":         {32, 64},
		"model.layers.2.self_attn.v_proj.weight":         {32, 64},
		"model.layers.1.mlp.down_proj.weight":            {64, 172},
		"model.layers.3.mlp.gate_proj.weight":            {172, 64},
		"model.layers.3.post_attention_layernorm.weight": {64},
		"model.norm.weight":                              {64},
	}
	for name, shape := range want {
		p, ok := w.Param(name)
		if !ok {
			t.Errorf("no param %s", name)
			continue
		}
		if len(p.Shape) != len(shape) || p.Shape[0] != shape[0] || p.Shape[len(shape)-1] != shape[len(shape)-1] {
			t.Errorf("%s: shape %v, want %v", name, p.Shape, shape)
		}
	}
	if _, ok := w.Param(OutputName); ok {
		t.Error("tied weights list lm_head.weight")
	}
	// Params alias the weights: writing through one is visible in the other.
	p, _ := w.Param("model.layers.2.self_attn.o_proj.weight")
	p.Data[5] = 42
	if w.Layers[2].Wo[5] != 42 {
		t.Error("Param data does not alias the weights")
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	w.Layers[1].W2 = w.Layers[1].W2[:10]
	if err := w.Validate(); err == nil || !strings.Contains(err.Error(), "model.layers.1.mlp.down_proj.weight") {
		t.Errorf("Validate of a short tensor: %v", err)
	}
}

func TestCanonicalModule(t *testing.T) {
	for in, want := range map[string]string{
		"wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "o_proj",
		"w1": "gate_proj", "w2": "down_proj", "w3": "up_proj", "q_proj": "q_proj", "lm_head": "lm_head",
	} {
		if got := CanonicalModule(in); got != want {
			t.Errorf("CanonicalModule(%q) = %q, want %q", in, got, want)
		}
	}
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

func TestPermutationInverse(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, c := range []struct{ heads, hd, cols int }{{1, 2, 1}, {3, 4, 5}, {8, 8, 64}, {2, 16, 3}} {
		w := randSlice(rng, c.heads*c.hd*c.cols)
		p := InterleavedToHalfSplit(w, c.heads, c.hd, c.cols)
		back := HalfSplitToInterleaved(p, c.heads, c.hd, c.cols)
		for i := range w {
			if back[i] != w[i] {
				t.Fatalf("%+v: round trip differs at %d", c, i)
			}
		}
		// Spot-check the definition: row 2i+j of head h lands at j·hd/2+i.
		h, i, j := c.heads-1, c.hd/2-1, 0
		src, dst := h*c.hd+2*i+j, h*c.hd+j*c.hd/2+i
		if p[dst*c.cols] != w[src*c.cols] {
			t.Errorf("%+v: row %d did not move to %d", c, src, dst)
		}
	}
}

// rope rotates each head of v (heads·hd values) in place for position pos,
// in float64, in the given layout.
func rope(v []float64, hd int, pos int, theta float64, layout RopeLayout) {
	for h := 0; h < len(v)/hd; h++ {
		x := v[h*hd : (h+1)*hd]
		for i := 0; i < hd/2; i++ {
			ang := float64(pos) * math.Pow(theta, -2*float64(i)/float64(hd))
			a, b := 2*i, 2*i+1
			if layout == RopeHalfSplit {
				a, b = i, i+hd/2
			}
			x0, x1 := x[a], x[b]
			x[a] = x0*math.Cos(ang) - x1*math.Sin(ang)
			x[b] = x0*math.Sin(ang) + x1*math.Cos(ang)
		}
	}
}

func matVec(w []float32, x []float64, rows int) []float64 {
	cols := len(x)
	out := make([]float64, rows)
	for r := range out {
		for c := 0; c < cols; c++ {
			out[r] += float64(w[r*cols+c]) * x[c]
		}
	}
	return out
}

// attentionScores returns q_h·k_g for every query head h and its key head
// g = h / (heads/kvHeads), with rotary embedding at positions m and n.
func attentionScores(wq, wk []float32, x, y []float64, cfg Config, m, n int) []float64 {
	hd := cfg.HeadDim()
	q := matVec(wq, x, cfg.Dim)
	k := matVec(wk, y, cfg.KVDim())
	rope(q, hd, m, cfg.RopeTheta, cfg.RopeLayout)
	rope(k, hd, n, cfg.RopeTheta, cfg.RopeLayout)
	group := cfg.NumHeads / cfg.NumKVHeads
	s := make([]float64, cfg.NumHeads)
	for h := range s {
		g := h / group
		for d := 0; d < hd; d++ {
			s[h] += q[h*hd+d] * k[g*hd+d]
		}
	}
	return s
}

// TestPermutationPreservesAttention checks that half-split RoPE on the
// permuted weights gives the attention scores that interleaved RoPE gives
// on the originals, and that mixing layouts does not (so the check can fail).
func TestPermutationPreservesAttention(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	cfg := Config{Dim: 48, HiddenDim: 8, NumLayers: 1, NumHeads: 6, NumKVHeads: 2, VocabSize: 4, MaxSeqLen: 64,
		NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true}
	w, err := NewWeights(cfg)
	if err != nil {
		t.Fatal(err)
	}
	copy(w.Layers[0].Wq, randSlice(rng, len(w.Layers[0].Wq)))
	copy(w.Layers[0].Wk, randSlice(rng, len(w.Layers[0].Wk)))
	orig, err := w.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.ToLayout(RopeHalfSplit); err != nil {
		t.Fatal(err)
	}
	if w.Config.RopeLayout != RopeHalfSplit {
		t.Fatal("ToLayout did not record the layout")
	}
	x := make([]float64, cfg.Dim)
	y := make([]float64, cfg.Dim)
	for i := range x {
		x[i], y[i] = rng.NormFloat64(), rng.NormFloat64()
	}
	wrongLayout := w.Config
	wrongLayout.RopeLayout = RopeInterleaved
	for _, pos := range [][2]int{{0, 0}, {5, 2}, {17, 17}, {63, 1}} {
		want := attentionScores(orig.Layers[0].Wq, orig.Layers[0].Wk, x, y, orig.Config, pos[0], pos[1])
		got := attentionScores(w.Layers[0].Wq, w.Layers[0].Wk, x, y, w.Config, pos[0], pos[1])
		wrong := attentionScores(w.Layers[0].Wq, w.Layers[0].Wk, x, y, wrongLayout, pos[0], pos[1])
		maxWrong := 0.0
		for h := range want {
			if d := math.Abs(got[h] - want[h]); d > 1e-9*(1+math.Abs(want[h])) {
				t.Errorf("positions %v head %d: score %v with half-split, %v with interleaved", pos, h, got[h], want[h])
			}
			maxWrong = math.Max(maxWrong, math.Abs(wrong[h]-want[h]))
		}
		if pos[0] != pos[1] && maxWrong < 1e-3 {
			t.Errorf("positions %v: wrong layout gives the same scores; the check is vacuous", pos)
		}
	}
	if err := w.ToLayout(RopeInterleaved); err != nil {
		t.Fatal(err)
	}
	for i, v := range orig.Layers[0].Wk {
		if w.Layers[0].Wk[i] != v {
			t.Fatalf("ToLayout round trip changed wk[%d]", i)
		}
	}
}
