// Package reference is a plain float32 host implementation of the LLaMA
// decoder's single-token forward pass with a key/value cache, written
// directly from the math (RMSNorm, attention biases, Qwen3's per-head
// query/key RMSNorm, rotary embedding in either row layout, grouped-query
// causal attention with any head width, SwiGLU feed-forward, tied or
// separate classifier) with no backend and no optimisation. It also runs
// Gemma 3 (llama.FamilyGemma3): the embedding times √dim, norms
// multiplying by 1 + w, the attention's and feed-forward's outputs
// normalised before the residual additions, GeGLU with GELU's tanh
// approximation, query_pre_attn_scalar, and sliding layers that see the
// last sliding_window positions and rotate with their own base, and
// Gemma 2 (llama.FamilyGemma2): Gemma 3's layer without the per-head
// norms, with its attention and output logits soft-capped, c·tanh(x/c).
//
// It is the yardstick for the rest of the project: tests use it to check
// the checkpoint loaders and the tokenizer end to end against llama2.c's
// known greedy output, and the backend-based model is checked against it.
// Sums run sequentially in float32, as llama2.c's run.c does, so the two
// agree token for token.
package reference

import (
	"fmt"
	"math"
	"strings"

	"github.com/sora-go/sora/models/llama"
)

// Model runs the forward pass over one position at a time, caching keys and
// values of earlier positions.
type Model struct {
	w   *llama.Weights
	cfg llama.Config

	keys, values [][]float32 // per layer, [MaxSeqLen, kv_dim]

	// x is the residual stream and xb, xb2 [dim] its normalised and
	// projected copies; q and ao [q_dim] are the queries and the
	// attention's output, which o_proj maps back to dim.
	x, xb, xb2, q, ao, att, hb, hb2, logits []float32
	cos, sin                                []float32 // per pair i of a head: cos/sin of the current angle

	// norms holds 1 + w of every norm weight of a Gemma model (in
	// float32, as transformers adds it), by the weight's first element;
	// nil for other models, whose norms multiply by w.
	norms map[*float32][]float32
}

// New returns a model over w (which must be valid; it is not copied, but
// a Gemma model's norm weights are read now, as 1 + w).
func New(w *llama.Weights) (*Model, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	c := w.Config
	m := &Model{w: w, cfg: c}
	m.keys = make([][]float32, c.NumLayers)
	m.values = make([][]float32, c.NumLayers)
	for l := range m.keys {
		m.keys[l] = make([]float32, c.MaxSeqLen*c.KVDim())
		m.values[l] = make([]float32, c.MaxSeqLen*c.KVDim())
	}
	m.x = make([]float32, c.Dim)
	m.xb = make([]float32, c.Dim)
	m.xb2 = make([]float32, c.Dim)
	m.q = make([]float32, c.QDim())
	m.ao = make([]float32, c.QDim())
	m.att = make([]float32, c.MaxSeqLen)
	m.hb = make([]float32, c.HiddenDim)
	m.hb2 = make([]float32, c.HiddenDim)
	m.logits = make([]float32, c.VocabSize)
	m.cos = make([]float32, c.HeadDim()/2)
	m.sin = make([]float32, c.HeadDim()/2)
	if c.NormOffset() {
		m.norms = map[*float32][]float32{}
		for _, p := range w.Params() {
			if len(p.Shape) == 1 && !strings.HasSuffix(p.Name, ".bias") {
				one := make([]float32, len(p.Data))
				for i, v := range p.Data {
					one[i] = 1 + v
				}
				m.norms[&p.Data[0]] = one
			}
		}
	}
	return m, nil
}

// norm sets out = RMSNorm(x) with weight w: w itself, or for Gemma 1 + w.
func (m *Model) norm(out, x, w []float32) {
	if m.norms != nil {
		w = m.norms[&w[0]]
	}
	rmsNorm(out, x, w, float32(m.cfg.NormEps))
}

// angles sets m.cos and m.sin to the rotation of position pos in layer l:
// θ^(−2i/d) with the layer's base (Gemma's sliding layers have their own,
// unscaled), or the scaled frequencies of a full layer.
func (m *Model) angles(l, pos int) {
	c := m.cfg
	hd := c.HeadDim()
	theta, scaled := c.RopeTheta, c.RopeFreqs() // nil without rope scaling
	if c.Sliding(l) {
		theta, scaled = c.LocalRopeTheta, nil
	}
	for i := 0; i < hd/2; i++ {
		freq := float32(1 / math.Pow(theta, float64(2*i)/float64(hd)))
		if scaled != nil {
			freq = float32(scaled[i])
		}
		ang := float64(float32(pos) * freq)
		m.cos[i], m.sin[i] = float32(math.Cos(ang)), float32(math.Sin(ang))
	}
}

// activate applies the feed-forward gate's activation to g: SiLU, or
// GELU's tanh approximation 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))).
func (m *Model) activate(g float32) float32 {
	if m.cfg.Activation == llama.GELUTanh {
		x := float64(g)
		return float32(0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x))))
	}
	return g * (1 / (1 + exp32(-g)))
}

// matVec sets out = W·x for W of shape [len(out), len(x)], summing each row
// left to right in float32.
func matVec(out, w, x []float32) {
	n := len(x)
	for i := range out {
		row := w[i*n : (i+1)*n]
		var s float32
		for j, v := range row {
			s += v * x[j]
		}
		out[i] = s
	}
}

// rmsNorm sets out = weight ⊙ x / sqrt(mean(x²) + eps).
func rmsNorm(out, x, weight []float32, eps float32) {
	var ss float32
	for _, v := range x {
		ss += v * v
	}
	ss /= float32(len(x))
	ss += eps
	inv := 1 / float32(math.Sqrt(float64(ss)))
	for i, v := range x {
		out[i] = weight[i] * (inv * v)
	}
}

func softmax(x []float32) {
	mx := x[0]
	for _, v := range x[1:] {
		mx = max(mx, v)
	}
	var sum float32
	for i, v := range x {
		x[i] = exp32(v - mx)
		sum += x[i]
	}
	for i := range x {
		x[i] /= sum
	}
}

func exp32(v float32) float32 { return float32(math.Exp(float64(v))) }

// rotate applies the rotary embedding, with the angles in m.cos/m.sin, to
// each head of v (heads·headDim values) in the given layout.
func (m *Model) rotate(v []float32, layout llama.RopeLayout) {
	hd := m.cfg.HeadDim()
	half := hd / 2
	for h := 0; h < len(v)/hd; h++ {
		x := v[h*hd : (h+1)*hd]
		for i := 0; i < half; i++ {
			a, b := 2*i, 2*i+1
			if layout == llama.RopeHalfSplit {
				a, b = i, i+half
			}
			c, s := m.cos[i], m.sin[i]
			x0, x1 := x[a], x[b]
			x[a] = x0*c - x1*s
			x[b] = x0*s + x1*c
		}
	}
}

// Forward runs token at position pos (positions must be fed in order from
// 0, as the cache assumes) and returns the logits over the vocabulary. The
// returned slice is reused by the next call.
func (m *Model) Forward(token, pos int) ([]float32, error) {
	c := m.cfg
	if token < 0 || token >= c.VocabSize {
		return nil, fmt.Errorf("reference: token %d outside the vocabulary of %d", token, c.VocabSize)
	}
	if pos < 0 || pos >= c.MaxSeqLen {
		return nil, fmt.Errorf("reference: position %d outside 0..%d", pos, c.MaxSeqLen-1)
	}
	d, hd, kvDim := c.Dim, c.HeadDim(), c.KVDim()
	group := c.NumHeads / c.NumKVHeads
	scale := float32(c.AttentionScale())
	w := m.w

	copy(m.x, w.TokenEmbedding[token*d:(token+1)*d])
	if s := c.EmbedScale(); s != 1 {
		for i := range m.x {
			m.x[i] *= s
		}
	}
	for l := range w.Layers {
		ly := &w.Layers[l]
		m.angles(l, pos)
		// The first position the query sees: 0, or the start of a
		// sliding layer's window.
		first := 0
		if c.Sliding(l) {
			first = max(0, pos-c.SlidingWindow+1)
		}
		// Attention block.
		m.norm(m.xb, m.x, ly.AttnNorm)
		k := m.keys[l][pos*kvDim : (pos+1)*kvDim]
		v := m.values[l][pos*kvDim : (pos+1)*kvDim]
		matVec(m.q, ly.Wq, m.xb)
		matVec(k, ly.Wk, m.xb)
		matVec(v, ly.Wv, m.xb)
		// Qwen2's biases (nil without them), before the rotation.
		addBias(m.q, ly.Bq)
		addBias(k, ly.Bk)
		addBias(v, ly.Bv)
		if c.QKNorm {
			// Qwen3: each head's query and key normalised on its own.
			for h := 0; h < c.NumHeads; h++ {
				m.norm(m.q[h*hd:(h+1)*hd], m.q[h*hd:(h+1)*hd], ly.QNorm)
			}
			for h := 0; h < c.NumKVHeads; h++ {
				m.norm(k[h*hd:(h+1)*hd], k[h*hd:(h+1)*hd], ly.KNorm)
			}
		}
		m.rotate(m.q, c.RopeLayout)
		m.rotate(k, c.RopeLayout)
		for h := 0; h < c.NumHeads; h++ {
			q := m.q[h*hd : (h+1)*hd]
			kvOff := (h / group) * hd
			att := m.att[first : pos+1]
			for i := range att {
				t := first + i
				kt := m.keys[l][t*kvDim+kvOff : t*kvDim+kvOff+hd]
				var s float32
				for i := range q {
					s += q[i] * kt[i]
				}
				att[i] = softcap(s*scale, c.AttnLogitSoftcap)
			}
			softmax(att)
			out := m.ao[h*hd : (h+1)*hd]
			clear(out)
			for i, a := range att {
				t := first + i
				vt := m.values[l][t*kvDim+kvOff : t*kvDim+kvOff+hd]
				for i := range out {
					out[i] += a * vt[i]
				}
			}
		}
		matVec(m.xb2, ly.Wo, m.ao)
		addBias(m.xb2, ly.Bo)
		if ly.PostAttnNorm != nil {
			m.norm(m.xb2, m.xb2, ly.PostAttnNorm)
		}
		for i := range m.x {
			m.x[i] += m.xb2[i]
		}
		// Feed-forward block: W2 (act(W1 x) ⊙ W3 x).
		m.norm(m.xb, m.x, ly.FFNNorm)
		matVec(m.hb, ly.W1, m.xb)
		matVec(m.hb2, ly.W3, m.xb)
		for i, g := range m.hb {
			m.hb[i] = m.activate(g) * m.hb2[i]
		}
		matVec(m.xb, ly.W2, m.hb)
		if ly.PostFFNNorm != nil {
			m.norm(m.xb, m.xb, ly.PostFFNNorm)
		}
		for i := range m.x {
			m.x[i] += m.xb[i]
		}
	}
	m.norm(m.x, m.x, w.FinalNorm)
	cls := w.Output
	if c.TiedEmbeddings {
		cls = w.TokenEmbedding
	}
	matVec(m.logits, cls, m.x)
	for i, v := range m.logits {
		m.logits[i] = softcap(v, c.FinalLogitSoftcap)
	}
	return m.logits, nil
}

// softcap returns Gemma 2's soft-capped logit c·tanh(x/c), or x where c is
// 0 (no capping).
func softcap(x float32, c float64) float32 {
	if c == 0 {
		return x
	}
	return float32(c * math.Tanh(float64(x)/c))
}

// addBias adds b to x, where the layer has a bias (b not nil).
func addBias(x, b []float32) {
	for i, v := range b {
		x[i] += v
	}
}

// Argmax returns the index of the largest value, the first on ties, as
// llama2.c's greedy sampler does.
func Argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// Greedy runs llama2.c's generation loop at temperature 0: it feeds the
// prompt (which must be non-empty and usually starts with BOS) and then the
// argmax of each step's logits, for at most steps positions (clamped to
// MaxSeqLen), stopping early if BOS (id 1) is produced. It returns the
// prompt's first token followed by every token fed or generated after it —
// the sequence run.c prints, piece by piece.
func Greedy(m *Model, prompt []int, steps int) ([]int, error) {
	const bos = 1
	if len(prompt) == 0 {
		return nil, fmt.Errorf("reference: empty prompt")
	}
	if steps <= 0 || steps > m.cfg.MaxSeqLen {
		steps = m.cfg.MaxSeqLen
	}
	out := []int{prompt[0]}
	token := prompt[0]
	for pos := 0; pos < steps; pos++ {
		logits, err := m.Forward(token, pos)
		if err != nil {
			return nil, err
		}
		next := Argmax(logits)
		if pos+1 < len(prompt) {
			next = prompt[pos+1]
		}
		if next == bos {
			break
		}
		out = append(out, next)
		token = next
	}
	return out, nil
}
