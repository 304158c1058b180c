package gradcheck

import (
	"math"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// GraphCases returns whole small graphs, the building blocks of the models
// and PEFT layers, checked against central finite differences run on the
// backend: an MLP with a cross-entropy loss, a causal self-attention block
// with RoPE and grouped-query heads (composed from products and a softmax,
// and fused where the backend has the op, with a window and a soft-cap),
// an RMSNorm + SwiGLU block, a SORA
// layer (diagonal, LoRA and the rotation with its differentiated scale),
// an embedding + LayerNorm regression with MSE, and two RMSNorm + SwiGLU
// blocks with dropout as checkpointed segments (graph.Tape.Checkpoint),
// whose gradients come from recomputing each block. Every input, frozen
// weights included, is differentiated, so that every backward path is
// covered.
func GraphCases() []Case {
	return []Case{
		{
			Name: "grad/graph/mlp_cross_entropy",
			Op:   backend.OpCrossEntropyGrad,
			Inputs: []Input{in("x", 5, 6), in("w1", 8, 6), in("b1", 8),
				in("w2", 4, 8), in("b2", 4)},
			Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value {
				h := g.GELU(g.Linear(v[0], v[1], v[2]))
				logits := g.Linear(h, v[3], v[4])
				return g.CrossEntropy(logits, []int32{1, 3, graph.IgnoreIndex, 0, 2}, graph.CrossEntropyOptions{})
			},
		},
		{
			Name: "grad/graph/attention_rope_gqa",
			Op:   backend.OpSoftmaxGrad,
			Inputs: []Input{in("x", 2, 5, 8), in("wq", 8, 8), in("wk", 4, 8),
				in("wv", 4, 8), in("wo", 8, 8)},
			Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value {
				return attention(g, v[0], v[1], v[2], v[3], v[4], 2, 1, backend.HalfSplit)
			},
		},
		{
			Name: "grad/graph/attention_rope_interleaved",
			Op:   backend.OpSoftmaxGrad,
			Inputs: []Input{in("x", 1, 4, 8), in("wq", 8, 8), in("wk", 8, 8),
				in("wv", 8, 8), in("wo", 8, 8)},
			Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value {
				return attention(g, v[0], v[1], v[2], v[3], v[4], 2, 2, backend.Interleaved)
			},
		},
		{
			// Where the backend has the op, one fused Attention whose
			// backward is AttentionGrad.
			Name: "grad/graph/fused_attention_gqa_window_softcap",
			Op:   backend.OpAttentionGrad,
			Inputs: []Input{in("x", 2, 6, 8), in("wq", 8, 8), in("wk", 4, 8),
				in("wv", 4, 8), in("wo", 8, 8)},
			Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value {
				x := v[0]
				bsz, seq, dim := x.Dim(0), x.Dim(1), x.Dim(2)
				const heads, kvHeads, hd = 4, 2, 2
				rope := backend.RoPEParams{Layout: backend.HalfSplit, Theta: 10000}
				q := g.RoPE(g.Reshape(g.Linear(x, v[1], nil), bsz, seq, heads, hd), rope)
				k := g.RoPE(g.Reshape(g.Linear(x, v[2], nil), bsz, seq, kvHeads, hd), rope)
				val := g.Reshape(g.Linear(x, v[3], nil), bsz, seq, kvHeads, hd)
				o := g.Attention(q, k, val, backend.AttentionParams{Scale: 0.7, Softcap: 2, Causal: true, Window: 3})
				return g.Add(x, g.Linear(g.Reshape(o, bsz, seq, dim), v[4], nil))
			},
		},
		{
			Name: "grad/graph/rmsnorm_swiglu",
			Op:   backend.OpRMSNormGrad,
			Inputs: []Input{in("x", 6, 8), inRange("w", 0.5, 1.5, 8), in("w1", 12, 8),
				in("w3", 12, 8), in("w2", 8, 12)},
			Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value {
				h := g.RMSNorm(v[0], v[1], 1e-5)
				m := g.Mul(g.SiLU(g.Linear(h, v[2], nil)), g.Linear(h, v[3], nil))
				return g.Add(v[0], g.Linear(m, v[4], nil))
			},
		},
		{
			Name: "grad/graph/sora_layer",
			Op:   backend.OpMatMul,
			Inputs: []Input{in("x", 5, 6), in("w0", 7, 6), in("bias", 7), inRange("d", 0.5, 1.5, 7),
				in("a", 2, 6), in("b", 7, 2), in("c", 7, 3), in("dd", 7, 3)},
			Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value {
				x, w0, bias, d, a, b, c, dd := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
				// h = d ⊙ (x W0ᵀ + bias) + s·(x Aᵀ) Bᵀ
				h := g.ScaleColumns(g.Linear(x, w0, bias), d)
				h = g.Add(h, g.Scale(g.Linear(g.Linear(x, a, nil), b, nil), 0.5))
				// y = h + s_p·((h C) Dᵀ − (h D) Cᵀ)
				rot := g.Sub(g.MatMulNT(g.MatMul(h, c), dd), g.MatMulNT(g.MatMul(h, dd), c))
				return g.Add(h, g.Mul(rot, soraScale(g, c, dd)))
			},
		},
		{
			Name:   "grad/graph/embedding_layernorm_mse",
			Op:     backend.OpScatterAdd,
			Inputs: []Input{in("emb", 6, 5), inRange("gamma", 0.5, 1.5, 5), in("beta", 5), in("w", 3, 5), in("target", 4, 3)},
			Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value {
				h := g.LayerNorm(g.Gather(v[0], []int32{2, 5, 2, 0}), v[1], v[2], 1e-5)
				return g.MSE(g.Tanh(g.Linear(h, v[3], nil)), v[4])
			},
		},
		{
			Name: "grad/graph/checkpointed_blocks",
			Op:   backend.OpRMSNormGrad,
			Inputs: []Input{in("x", 4, 6), inRange("w", 0.5, 1.5, 6), in("w1", 8, 6),
				in("w3", 8, 6), in("w2", 6, 8)},
			Forward: func(g *graph.Tape, v []*graph.Value) *graph.Value {
				// The blocks share their weights (captured, not passed),
				// and each drops with its own fixed mask, which the
				// recomputation must draw again.
				blk := func(seed uint64) func(*graph.Tape, []*graph.Value) []*graph.Value {
					return func(g *graph.Tape, in []*graph.Value) []*graph.Value {
						h := g.RMSNorm(in[0], v[1], 1e-5)
						m := g.Mul(g.SiLU(g.Linear(h, v[2], nil)), g.DropoutSeed(g.Linear(h, v[3], nil), 0.25, seed))
						return []*graph.Value{g.Add(in[0], g.Linear(m, v[4], nil))}
					}
				}
				return g.Checkpoint(blk(2), g.Checkpoint(blk(1), v[0])...)[0]
			},
		},
	}
}

// attention is a pre-norm-free causal self-attention block with RoPE on
// queries and keys and kvHeads key/value heads shared by heads query heads,
// plus the residual, on x [batch, seq, dim].
func attention(g *graph.Tape, x, wq, wk, wv, wo *graph.Value, heads, kvHeads int, layout backend.RoPELayout) *graph.Value {
	bsz, seq, dim := x.Dim(0), x.Dim(1), x.Dim(2)
	hd := dim / heads
	rope := backend.RoPEParams{Layout: layout, Theta: 10000}
	q := g.RoPE(g.Reshape(g.Linear(x, wq, nil), bsz, seq, heads, hd), rope)
	k := g.RoPE(g.Reshape(g.Linear(x, wk, nil), bsz, seq, kvHeads, hd), rope)
	v := g.Reshape(g.Linear(x, wv, nil), bsz, seq, kvHeads, hd)
	k = g.RepeatInterleave(k, 2, heads/kvHeads)
	v = g.RepeatInterleave(v, 2, heads/kvHeads)
	// [batch, heads, seq, hd]
	q, k, v = g.Transpose(q, 1, 2), g.Transpose(k, 1, 2), g.Transpose(v, 1, 2)
	p := g.Softmax(g.MatMulNT(q, k), backend.SoftmaxParams{Causal: true, Scale: float32(1 / math.Sqrt(float64(hd)))})
	o := g.Reshape(g.Transpose(g.MatMul(p, v), 1, 2), bsz, seq, dim)
	return g.Add(x, g.Linear(o, wo, nil))
}
