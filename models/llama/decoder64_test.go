package llama_test

import (
	"math"

	"github.com/sora-go/sora/models/llama"
)

// arch64 is what decoder64 needs beyond the weights: each choice in which
// Gemma 2's and 3's decoders differ from LLaMA's, spelled out here rather
// than read from the config's methods, so that the reference does not
// share the model's reading of the config and an ablation can drop one
// choice.
type arch64 struct {
	freqs      func(layer int) []float64 // the rotary frequencies of the layer's heads, pair by pair
	window     func(layer int) int       // nil or 0: the layer attends to every earlier position; else to keys with pos − key < window
	normOffset bool                      // every RMSNorm multiplies by 1 + w (Gemma), not w
	embedScale float64                   // the embedding is multiplied by it
	postNorms  bool                      // RMSNorms on the attention and feed-forward outputs
	qkNorm     bool                      // each head of the queries and keys normalised (q_norm, k_norm)
	scale      float64                   // attention scores are q·k·scale
	act        func(float64) float64     // the gate's activation in the feed-forward
	attnCap    float64                   // where not 0, scores s (already scaled) become attnCap·tanh(s/attnCap) before the mask
	capFirst   bool                      // an ablation: cap q·k before the scaling instead of after
	finalCap   float64                   // where not 0, logits z become finalCap·tanh(z/finalCap)
}

// llama64 is LLaMA's decoder (Qwen2's, Qwen3's, Mistral's) rotating by
// freqs on every layer: no window, norms multiplying by w, no embedding
// scale or output norms, QK-norm where c has it, scores scaled by
// head_dim^−1/2, and SwiGLU.
func llama64(c llama.Config, freqs []float64) arch64 {
	return arch64{
		freqs:      func(int) []float64 { return freqs },
		embedScale: 1,
		qkNorm:     c.QKNorm,
		scale:      1 / math.Sqrt(float64(c.HeadDim())),
		act:        func(x float64) float64 { return x / (1 + math.Exp(-x)) },
	}
}

// plainFreqs64 returns θ^(−2i/d) for the d/2 rotary pairs of a head.
func plainFreqs64(theta float64, d int) []float64 {
	f := make([]float64, d/2)
	for i := range f {
		f[i] = math.Pow(theta, -float64(2*i)/float64(d))
	}
	return f
}

// forward64 is the model's forward over one sequence in float64 (llama64:
// RMSNorm, projections plus their biases where the layer has them, with
// QK-norm each head of the queries and keys normalised by its own RMSNorm,
// rotated queries and keys turned by pos·freqs[i], causal grouped-query
// attention over heads of the config's width, which need not be dim /
// heads, SwiGLU, and the output head, tied or not). It returns the logits
// [len(ids), vocab].
func forward64(w *llama.Weights, ids []int32, freqs []float64) []float64 {
	return decoder64(w, ids, llama64(w.Config, freqs))
}

// forwardRows64 is forward64 over each of the B rows of ids ([B·T]) with
// the config's unscaled frequencies, concatenated: [B, T, vocab].
func forwardRows64(w *llama.Weights, ids []int32, B int) []float64 {
	return decoderRows64(w, ids, B, llama64(w.Config, plainFreqs64(w.Config.RopeTheta, w.Config.HeadDim())))
}

// decoderRows64 runs decoder64 over each of the B rows of ids and
// concatenates the logits, [B, T, vocab].
func decoderRows64(w *llama.Weights, ids []int32, B int, a arch64) []float64 {
	T := len(ids) / B
	var out []float64
	for row := range B {
		out = append(out, decoder64(w, ids[row*T:(row+1)*T], a)...)
	}
	return out
}

// decoder64 is the decoder's forward over one sequence in float64, from
// the definitions: the embedding times a.embedScale; per layer h = norm(x)
// (RMSNorm multiplying by w, or by 1 + w with a.normOffset); q, k, v
// projections plus their biases where the layer has them; with a.qkNorm
// each head's query and key normalised (q_norm, k_norm); rotation of pair
// i of each head by pos·f_i, f = a.freqs(layer), in the weights' layout
// (the rotation after the bias and the norm); scores s = q·k·a.scale,
// with a.attnCap capped to a.attnCap·tanh(s/a.attnCap), causal,
// grouped-query, and where a.window gives the layer a window W only keys
// with pos − key < W; o_proj (plus its bias), with a.postNorms normed by
// the post-attention norm, added to x; the feed-forward
// down(act(gate(h))·up(h)) of h = norm(x) by the feed-forward norm, with
// a.postNorms normed by the post-feed-forward norm, added to x; the final
// norm and the output head (the embedding, unscaled, where tied), its
// logits z capped to a.finalCap·tanh(z/a.finalCap) where a.finalCap is
// set. It returns the logits [len(ids), vocab].
func decoder64(w *llama.Weights, ids []int32, a arch64) []float64 {
	c := w.Config
	T, d, hd, kv := len(ids), c.Dim, c.HeadDim(), c.KVDim()
	qd := c.NumHeads * hd
	group := c.NumHeads / c.NumKVHeads
	matVec := func(m []float32, x []float64, rows int) []float64 {
		y := make([]float64, rows)
		for r := range rows {
			for j, val := range x {
				y[r] += float64(m[r*len(x)+j]) * val
			}
		}
		return y
	}
	// plus adds bias b (nil: none) to y.
	plus := func(y []float64, b []float32) []float64 {
		for i := range b {
			y[i] += float64(b[i])
		}
		return y
	}
	norm := func(x []float64, wt []float32) []float64 {
		var ss float64
		for _, val := range x {
			ss += val * val
		}
		r := 1 / math.Sqrt(ss/float64(len(x))+c.NormEps)
		y := make([]float64, len(x))
		for i, val := range x {
			scale := float64(wt[i])
			if a.normOffset {
				scale++
			}
			y[i] = val * r * scale
		}
		return y
	}
	rotate := func(x []float64, pos int, f []float64) {
		for h := 0; h < len(x)/hd; h++ {
			for i := range hd / 2 {
				p, q := h*hd+2*i, h*hd+2*i+1
				if c.RopeLayout == llama.RopeHalfSplit {
					p, q = h*hd+i, h*hd+i+hd/2
				}
				s, co := math.Sincos(float64(pos) * f[i])
				x[p], x[q] = x[p]*co-x[q]*s, x[p]*s+x[q]*co
			}
		}
	}
	xs := make([][]float64, T)
	for t, id := range ids {
		xs[t] = make([]float64, d)
		for j := range d {
			xs[t][j] = float64(w.TokenEmbedding[int(id)*d+j]) * a.embedScale
		}
	}
	for l, ly := range w.Layers {
		f := a.freqs(l)
		window := T + 1
		if a.window != nil && a.window(l) > 0 {
			window = a.window(l)
		}
		qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range T {
			h := norm(xs[t], ly.AttnNorm)
			qs[t], ks[t], vs[t] = plus(matVec(ly.Wq, h, qd), ly.Bq), plus(matVec(ly.Wk, h, kv), ly.Bk), plus(matVec(ly.Wv, h, kv), ly.Bv)
			if a.qkNorm {
				for j := 0; j < qd; j += hd {
					copy(qs[t][j:j+hd], norm(qs[t][j:j+hd], ly.QNorm))
				}
				for j := 0; j < kv; j += hd {
					copy(ks[t][j:j+hd], norm(ks[t][j:j+hd], ly.KNorm))
				}
			}
			rotate(qs[t], t, f)
			rotate(ks[t], t, f)
		}
		for t := range T {
			att := make([]float64, qd)
			for h := range c.NumHeads {
				kh := h / group
				q := qs[t][h*hd : (h+1)*hd]
				var keys []int
				for u := 0; u <= t; u++ {
					if t-u < window {
						keys = append(keys, u)
					}
				}
				scores := make([]float64, len(keys))
				mx := math.Inf(-1)
				for i, u := range keys {
					for j := range hd {
						scores[i] += q[j] * ks[u][kh*hd+j]
					}
					switch {
					case a.attnCap == 0:
						scores[i] *= a.scale
					case a.capFirst:
						scores[i] = a.attnCap * math.Tanh(scores[i]/a.attnCap) * a.scale
					default:
						scores[i] = a.attnCap * math.Tanh(scores[i]*a.scale/a.attnCap)
					}
					mx = max(mx, scores[i])
				}
				var sum float64
				for i := range scores {
					scores[i] = math.Exp(scores[i] - mx)
					sum += scores[i]
				}
				for i, u := range keys {
					for j := range hd {
						att[h*hd+j] += scores[i] / sum * vs[u][kh*hd+j]
					}
				}
			}
			o := plus(matVec(ly.Wo, att, d), ly.Bo)
			if a.postNorms {
				o = norm(o, ly.PostAttnNorm)
			}
			for j := range d {
				xs[t][j] += o[j]
			}
			h := norm(xs[t], ly.FFNNorm)
			gate, up := matVec(ly.W1, h, c.HiddenDim), matVec(ly.W3, h, c.HiddenDim)
			for j := range gate {
				gate[j] = a.act(gate[j]) * up[j]
			}
			down := matVec(ly.W2, gate, d)
			if a.postNorms {
				down = norm(down, ly.PostFFNNorm)
			}
			for j := range d {
				xs[t][j] += down[j]
			}
		}
	}
	out := w.Output
	if c.TiedEmbeddings {
		out = w.TokenEmbedding
	}
	logits := make([]float64, 0, T*c.VocabSize)
	for t := range T {
		logits = append(logits, matVec(out, norm(xs[t], w.FinalNorm), c.VocabSize)...)
	}
	if a.finalCap != 0 {
		for i, z := range logits {
			logits[i] = a.finalCap * math.Tanh(z/a.finalCap)
		}
	}
	return logits
}
