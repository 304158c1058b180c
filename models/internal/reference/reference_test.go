package reference

import (
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/sora-go/sora/models/internal/stories"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
)

// knownText is what llama2.c's run.c prints for stories260K at temperature
// 0 from the prompt "Once upon a time" (the data README and the issue).
const knownText = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."

// generate decodes the sequence as run.c prints it: piece by piece, each
// decoded after its predecessor, skipping unprintable single bytes.
func generate(t *testing.T, w *llama.Weights, tok *tokenizer.Tokenizer, prompt string, steps int) string {
	t.Helper()
	m, err := New(w)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := Greedy(m, tok.Encode(prompt, true, false), steps)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for i := 1; i < len(seq); i++ {
		if p := tok.Decode(seq[i-1], seq[i]); tokenizer.IsPrintable(p) {
			sb.WriteString(p)
		}
	}
	return sb.String()
}

func loadStories(t *testing.T) (*llama.Weights, *tokenizer.Tokenizer) {
	t.Helper()
	return stories.Load(t)
}

func TestStories260KGreedy(t *testing.T) {
	w, tok := loadStories(t)
	got := generate(t, w, tok, "Once upon a time", 60)
	t.Logf("60 steps: %q", got)
	if !strings.HasPrefix(got, knownText) {
		t.Fatalf("greedy text differs from llama2.c's:\n got %q\nwant %q...", got, knownText)
	}
	// Greedy decoding from BOS picks " Once upon a time" by itself, so the
	// prompted run follows the same path as llama2.c's 200-step fixture.
	if !strings.HasPrefix(runcFixture, got) {
		t.Fatalf("60-step text is not a prefix of llama2.c's 200-step output:\n got %q", got)
	}
}

// runcFixture is the exact output that llama2.c's own test (test_all.py,
// test_runc) expects from "./run stories260K.bin -z tok512.bin -t 0.0 -n 200"
// with no prompt, minus the final newline run.c adds.
const runcFixture = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"\nLily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\nLily didn't want to help her mom, so she"

func TestLlama2cFixture(t *testing.T) {
	w, tok := loadStories(t)
	if got := generate(t, w, tok, "", 200); got != runcFixture {
		t.Fatalf("200 greedy steps from BOS differ from llama2.c's test fixture:\n got %q\nwant %q", got, runcFixture)
	}
}

// TestHalfSplitLayout converts stories260K to Hugging Face's rotary layout
// and checks that the reference, rotating half-split pairs, generates the
// same text — the permutation and both rotations agree on a real model.
func TestHalfSplitLayout(t *testing.T) {
	w, tok := loadStories(t)
	if err := w.ToLayout(llama.RopeHalfSplit); err != nil {
		t.Fatal(err)
	}
	if got := generate(t, w, tok, "Once upon a time", 60); !strings.HasPrefix(got, knownText) {
		t.Fatalf("half-split text differs:\n got %q\nwant %q...", got, knownText)
	}
	// Rotating in the wrong layout must break it (the check is not vacuous).
	w.Config.RopeLayout = llama.RopeInterleaved
	if got := generate(t, w, tok, "Once upon a time", 60); strings.HasPrefix(got, knownText) {
		t.Fatal("mismatched rotary layout still generates the known text")
	}
}

// TestForwardAgainstFloat64 checks one forward pass on a small random model
// with grouped-query attention and a separate classifier against a direct
// float64 evaluation of the same equations over the whole sequence (no
// cache), at every position.
func TestForwardAgainstFloat64(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	// Llama 3.1's scaling over a context of 64: of the two pairs of a
	// head, the first (wavelength 2π) keeps its frequency and the second
	// (wavelength 140) is slowed by 8.
	llama3 := llama.RopeScaling{Type: llama.RopeScalingLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 64}
	for _, c := range []struct {
		layout  llama.RopeLayout
		scaling llama.RopeScaling
		bias    llama.AttentionBias
	}{{llama.RopeInterleaved, llama.RopeScaling{}, llama.NoBias}, {llama.RopeHalfSplit, llama.RopeScaling{}, llama.NoBias},
		{llama.RopeHalfSplit, llama3, llama.NoBias}, {llama.RopeInterleaved, llama.RopeScaling{}, llama.BiasQKV},
		{llama.RopeHalfSplit, llama.RopeScaling{}, llama.BiasQKVO}} {
		layout := c.layout
		cfg := llama.Config{Dim: 12, HiddenDim: 20, NumLayers: 2, NumHeads: 3, NumKVHeads: 1, VocabSize: 17, MaxSeqLen: 7,
			NormEps: 1e-5, RopeTheta: 500, RopeLayout: layout, RopeScaling: c.scaling, AttentionBias: c.bias}
		w, err := llama.NewWeights(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range w.Params() {
			for i := range p.Data {
				p.Data[i] = float32(rng.NormFloat64() * 0.5)
			}
		}
		tokens := []int{1, 5, 16, 3, 3, 0, 9}
		want := float64Forward(w, tokens)
		m, err := New(w)
		if err != nil {
			t.Fatal(err)
		}
		for pos, tk := range tokens {
			got, err := m.Forward(tk, pos)
			if err != nil {
				t.Fatal(err)
			}
			var num, den float64
			for i := range got {
				d := float64(got[i]) - want[pos][i]
				num += d * d
				den += want[pos][i] * want[pos][i]
			}
			if nmse := num / den; !(nmse < 1e-10) {
				t.Errorf("%v %+v bias %v position %d: NMSE %g against float64", layout, c.scaling, c.bias, pos, nmse)
			}
		}
	}
	m, _ := New(mustTiny(t))
	if _, err := m.Forward(99, 0); err == nil {
		t.Error("out-of-vocabulary token accepted")
	}
	if _, err := m.Forward(0, 99); err == nil {
		t.Error("out-of-range position accepted")
	}
}

func mustTiny(t *testing.T) *llama.Weights {
	w, err := llama.NewWeights(llama.Config{Dim: 4, HiddenDim: 4, NumLayers: 1, NumHeads: 1, NumKVHeads: 1,
		VocabSize: 5, MaxSeqLen: 3, NormEps: 1e-5, RopeTheta: 1e4, TiedEmbeddings: true})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// float64Forward evaluates the decoder on a whole token sequence in float64
// with explicit causal attention (full-sequence matrices, no cache) and
// returns the logits at every position.
func float64Forward(w *llama.Weights, tokens []int) [][]float64 {
	c := w.Config
	d, hd, kvd, T := c.Dim, c.HeadDim(), c.KVDim(), len(tokens)
	mv := func(wt []float32, x []float64, rows int) []float64 {
		out := make([]float64, rows)
		for r := range out {
			for j, xv := range x {
				out[r] += float64(wt[r*len(x)+j]) * xv
			}
		}
		return out
	}
	norm := func(x []float64, g []float32) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(len(x))+c.NormEps)
		out := make([]float64, len(x))
		for i := range x {
			out[i] = float64(g[i]) * x[i] * inv
		}
		return out
	}
	add := func(x []float64, b []float32) { // a bias, nil where there is none
		for i, v := range b {
			x[i] += float64(v)
		}
	}
	rope := func(v []float64, pos int) {
		for h := 0; h < len(v)/hd; h++ {
			for i := 0; i < hd/2; i++ {
				a, b := h*hd+2*i, h*hd+2*i+1
				if c.RopeLayout == llama.RopeHalfSplit {
					a, b = h*hd+i, h*hd+i+hd/2
				}
				f := math.Pow(c.RopeTheta, -2*float64(i)/float64(hd))
				if c.RopeScaling.Type == llama.RopeScalingLlama3 && i == 1 {
					f /= c.RopeScaling.Factor // the second pair's wavelength is beyond the context
				}
				ang := float64(pos) * f
				v[a], v[b] = v[a]*math.Cos(ang)-v[b]*math.Sin(ang), v[a]*math.Sin(ang)+v[b]*math.Cos(ang)
			}
		}
	}
	xs := make([][]float64, T)
	for p, tk := range tokens {
		xs[p] = make([]float64, d)
		for i := range xs[p] {
			xs[p][i] = float64(w.TokenEmbedding[tk*d+i])
		}
	}
	for _, ly := range w.Layers {
		qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for p := range xs {
			h := norm(xs[p], ly.AttnNorm)
			qs[p], ks[p], vs[p] = mv(ly.Wq, h, d), mv(ly.Wk, h, kvd), mv(ly.Wv, h, kvd)
			add(qs[p], ly.Bq)
			add(ks[p], ly.Bk)
			add(vs[p], ly.Bv)
			rope(qs[p], p)
			rope(ks[p], p)
		}
		for p := range xs {
			att := make([]float64, d)
			for h := 0; h < c.NumHeads; h++ {
				g := h / (c.NumHeads / c.NumKVHeads)
				scores := make([]float64, p+1)
				mx := math.Inf(-1)
				for t := 0; t <= p; t++ {
					for i := 0; i < hd; i++ {
						scores[t] += qs[p][h*hd+i] * ks[t][g*hd+i]
					}
					scores[t] /= math.Sqrt(float64(hd))
					mx = math.Max(mx, scores[t])
				}
				var z float64
				for t := range scores {
					scores[t] = math.Exp(scores[t] - mx)
					z += scores[t]
				}
				for t := range scores {
					for i := 0; i < hd; i++ {
						att[h*hd+i] += scores[t] / z * vs[t][g*hd+i]
					}
				}
			}
			o := mv(ly.Wo, att, d)
			add(o, ly.Bo)
			for i := range o {
				xs[p][i] += o[i]
			}
			h := norm(xs[p], ly.FFNNorm)
			gate, up := mv(ly.W1, h, c.HiddenDim), mv(ly.W3, h, c.HiddenDim)
			for i := range gate {
				gate[i] = gate[i] / (1 + math.Exp(-gate[i])) * up[i]
			}
			down := mv(ly.W2, gate, d)
			for i := range down {
				xs[p][i] += down[i]
			}
		}
	}
	cls := w.Output
	if c.TiedEmbeddings {
		cls = w.TokenEmbedding
	}
	out := make([][]float64, T)
	for p := range xs {
		out[p] = mv(cls, norm(xs[p], w.FinalNorm), c.VocabSize)
	}
	return out
}
