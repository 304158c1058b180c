// Package llama holds the LLaMA decoder: its configuration, the host-side
// weights container that checkpoint loaders fill, and the rotary-embedding
// row layouts.
//
// # Tensor names
//
// Weights are named as Hugging Face's LlamaForCausalLM names them, so that
// PEFT adapter files (whose keys are these names with a prefix and a
// lora_A/lora_B suffix) map onto them directly:
//
//	model.embed_tokens.weight                     [vocab, dim]
//	model.layers.N.input_layernorm.weight         [dim]
//	model.layers.N.self_attn.q_proj.weight        [q_dim, dim]
//	model.layers.N.self_attn.q_proj.bias          [q_dim] (only with a bias, see below)
//	model.layers.N.self_attn.k_proj.weight        [kv_dim, dim]
//	model.layers.N.self_attn.k_proj.bias          [kv_dim]
//	model.layers.N.self_attn.v_proj.weight        [kv_dim, dim]
//	model.layers.N.self_attn.v_proj.bias          [kv_dim]
//	model.layers.N.self_attn.o_proj.weight        [dim, q_dim]
//	model.layers.N.self_attn.o_proj.bias          [dim] (BiasQKVO only)
//	model.layers.N.self_attn.q_norm.weight        [head_dim] (QKNorm only)
//	model.layers.N.self_attn.k_norm.weight        [head_dim] (QKNorm only)
//	model.layers.N.post_attention_layernorm.weight [dim]
//	model.layers.N.pre_feedforward_layernorm.weight [dim] (Gemma only)
//	model.layers.N.post_feedforward_layernorm.weight [dim] (Gemma only)
//	model.layers.N.mlp.gate_proj.weight           [hidden, dim]
//	model.layers.N.mlp.up_proj.weight             [hidden, dim]
//	model.layers.N.mlp.down_proj.weight           [dim, hidden]
//	model.norm.weight                             [dim]
//	lm_head.weight                                [vocab, dim] (absent when tied)
//
// Here head_dim is [Config.HeadDim], q_dim = n_heads·head_dim
// ([Config.QDim]) and kv_dim = n_kv_heads·head_dim ([Config.KVDim]). In
// LLaMA 2 head_dim is dim / n_heads, so q_dim is dim; Qwen3 and Mistral
// Nemo set a head width of their own ([Config.HeadWidth]), which makes
// q_proj and o_proj rectangular.
//
// llama2.c and Meta call the linear layers wq, wk, wv, wo, w1 (gate), w3
// (up) and w2 (down); [CanonicalModule] maps those names to the ones above.
// Every linear weight is stored [out, in], row-major, as y = x·Wᵀ + b.
//
// # Attention biases
//
// The same decoder runs Qwen2 (and Qwen2.5), which is LLaMA with a bias on
// q_proj, k_proj and v_proj, and LLaMA checkpoints whose attention_bias is
// true, which have one on o_proj as well: [Config.AttentionBias] says
// which. The bias is added before the rotary embedding, as transformers
// adds it. The feed-forward layers never have one.
//
// # Query/key normalisation
//
// Qwen3 normalises each head's query and key vector with an RMSNorm of
// its own ([Config.QKNorm]): q_norm and k_norm, one weight per dimension
// of a head, shared by all heads, with the model's epsilon, applied after
// the projection (and its bias) and before the rotary embedding, as
// transformers' Qwen3Attention applies them.
//
// # Gemma 3
//
// The same decoder runs Gemma 3's text models (Gemma3ForCausalLM: Gemma 3
// 270M and 1B, and text-only configurations of the larger ones), with
// [Config.Family] [FamilyGemma3]. What differs from LLaMA is computed in a
// few places, each decided once per model: the embedding is multiplied by
// √dim ([Config.EmbedScale]); every RMSNorm, q_norm and k_norm included,
// multiplies by 1 + w, its weight stored as the offset w
// ([Config.NormOffset]; weights are kept and written as stored); each layer
// normalises the attention's output (post_attention_layernorm, which in
// LLaMA is the feed-forward's input norm) and the feed-forward's output
// (post_feedforward_layernorm) before adding them to the residual stream,
// its feed-forward input norm being pre_feedforward_layernorm
// ([Config.PostNorms]); the gate's activation is GELU's tanh approximation
// ([GELUTanh]); attention logits are scaled by query_pre_attn_scalar^(−1/2)
// ([Config.AttentionScale]); and the layers alternate between sliding
// attention, which sees the last sliding_window positions and rotates with
// the local base rope_local_base_freq, and full attention with rope_theta
// and any rope_scaling ([Config.LayerKinds]). Each layer's rotary
// parameters and window are worked out when the model is made. Gemma is
// trained with <bos> in front of every text, which its tokenizer adds.
//
// # Gemma 2
//
// Gemma 2's text models (Gemma2ForCausalLM: gemma-2-2b, 9b and 27b and
// their -it versions) run on the same decoder with [Config.Family]
// [FamilyGemma2]. They share Gemma 3's √dim embedding scale, 1 + w norms,
// four norms a layer, GeGLU, query_pre_attn_scalar and alternating
// sliding and full layers, but have no QK-norm and rotate every layer
// with the one base rope_theta (LocalRopeTheta equals RopeTheta). What is
// theirs alone is logit soft-capping, x ↦ c·tanh(x/c), which bounds x to
// (−c, c) smoothly: of the attention logits, after their scaling by
// query_pre_attn_scalar^(−1/2) and before the mask and the softmax
// ([Config.AttnLogitSoftcap], attn_logit_softcapping, 50 in the released
// models), and of the output head's logits
// ([Config.FinalLogitSoftcap], final_logit_softcapping, 30), as
// transformers' Gemma2 eager attention and Gemma2ForCausalLM compute them.
// Both are written with the backend's Scale and Tanh ops (the attention
// softmax's own scale multiplying by c), in the training forward and in
// cached decoding alike, so every backend runs them without kernels of
// their own. The sequence-classification head reads the hidden states,
// which are not capped (Gemma2ForSequenceClassification caps nothing).
//
// # Rotary layouts
//
// llama2.c (and Meta's original checkpoints) rotate consecutive pairs
// (2i, 2i+1) of each head; Hugging Face rotates (i, i+d/2) and stores
// q_proj and k_proj with their rows permuted to match. The two are the same
// model. [Config.RopeLayout] records which layout a [Weights] is in, loaders
// keep the layout of their file, and [Weights.ToLayout] converts between
// them (permuting q_norm and k_norm within the head like the rows of a
// head). A model must apply the rotation that matches the layout. A PEFT
// adapter on q_proj/k_proj has its output rows in the model's layout in
// memory and in Hugging Face's in its files, whatever the base's format:
// [HFRowOrder] gives the permutation that package peft/adapter applies.
//
// # Loading
//
// [New] and [NewWithOptions] upload host [Weights], which a loader filled
// with every tensor in float32. [NewFromSource] reads a [Source] instead,
// a slab of one tensor's rows at a time, uploading each before reading
// the next: the host then holds at most [LoadSlabBytes] in float32 while
// the model loads, whatever the vocabulary, which with bfloat16 base
// weights ([Options]) is what keeps a large model's load within the
// memory the model takes on the backend. Package hf's Source reads a
// Hugging Face folder so.
package llama

import (
	"fmt"
	"math"
	"strings"
)

// RopeLayout says which pairs of a head's dimensions rotary embedding
// rotates together, and hence how the rows of q_proj and k_proj are ordered.
type RopeLayout uint8

const (
	// RopeInterleaved rotates pairs (2i, 2i+1) of each head by angle
	// pos·θ^(−2i/d): llama2.c's and Meta's layout.
	RopeInterleaved RopeLayout = iota
	// RopeHalfSplit rotates pairs (i, i+d/2) by the same angle: Hugging
	// Face's layout.
	RopeHalfSplit
)

// String returns "interleaved" or "half-split".
func (l RopeLayout) String() string {
	switch l {
	case RopeInterleaved:
		return "interleaved"
	case RopeHalfSplit:
		return "half-split"
	}
	return fmt.Sprintf("RopeLayout(%d)", uint8(l))
}

// Config is the shape and hyper-parameters of a LLaMA decoder.
type Config struct {
	Dim        int // model width (hidden_size)
	HiddenDim  int // feed-forward width (intermediate_size)
	NumLayers  int
	NumHeads   int // query heads
	NumKVHeads int // key/value heads; NumHeads must be a multiple (grouped-query attention)
	VocabSize  int
	MaxSeqLen  int // longest sequence the model was trained for (max_position_embeddings)

	// HeadWidth is the width of one attention head (head_dim) where it
	// is not Dim / NumHeads (Qwen3, Mistral Nemo); 0 means Dim /
	// NumHeads, which Dim must then be a multiple of. Read the width
	// through HeadDim, which resolves the 0.
	HeadWidth int

	NormEps   float64 // RMSNorm epsilon (llama2.c: 1e-5)
	RopeTheta float64 // rotary base (10000 for LLaMA 2)

	// TiedEmbeddings means the output classifier is the token embedding
	// matrix, and Weights.Output is nil.
	TiedEmbeddings bool
	// RopeLayout is the row layout of q_proj and k_proj in the weights.
	RopeLayout RopeLayout
	// RopeScaling rescales the rotary frequencies (Llama 3.1 and 3.2); the
	// zero value leaves them θ^(−2i/d).
	RopeScaling RopeScaling
	// QKNorm gives each attention head's query and key an RMSNorm of
	// their own, weights q_norm and k_norm of HeadDim values, after the
	// projections and before the rotary embedding: Qwen3's attention.
	QKNorm bool
	// AttentionBias says which attention projections add a bias: none
	// (LLaMA, llama2.c), q/k/v (Qwen2) or all four (LLaMA with
	// attention_bias).
	AttentionBias AttentionBias
	// Family is "", FamilyMistral, FamilyGemma2 or FamilyGemma3: the
	// published architecture the weights belong to where the fields
	// above cannot tell, so that a writer can label a checkpoint as the
	// model it came from. Mistral's decoder is LLaMA's (no biases, no
	// QK-norm), and the decoder ignores the label. Gemma's differs in
	// fixed ways the family alone decides (see FamilyGemma3 and
	// FamilyGemma2): the fields below are the ones its configurations
	// vary.
	Family string

	// Activation is the feed-forward gate's activation: SiLU (LLaMA,
	// SwiGLU) or the tanh approximation of GELU (Gemma, GeGLU). Only
	// Gemma 2 and 3 may set GELUTanh.
	Activation Activation
	// QueryPreAttnScalar, where not 0, scales the attention logits by
	// QueryPreAttnScalar^(−1/2) instead of HeadDim()^(−1/2): Gemma's
	// query_pre_attn_scalar. See AttentionScale.
	QueryPreAttnScalar float64
	// LayerKinds gives, one byte per decoder layer, the attention of each
	// layer where layers differ (Gemma 2 and 3), or every layer sliding
	// (Mistral 7B v0.1's window, with LocalRopeTheta = RopeTheta): LayerFull ('f', transformers'
	// "full_attention") attends to every earlier position with the rotary
	// base RopeTheta and RopeScaling; LayerSliding ('s',
	// "sliding_attention") attends to the last SlidingWindow positions
	// (itself included) with the unscaled rotary base LocalRopeTheta.
	// "" means every layer is LayerFull. (A string keeps Config
	// comparable.)
	LayerKinds string
	// SlidingWindow is the number of positions a LayerSliding layer sees
	// (sliding_window); 0 without sliding layers.
	SlidingWindow int
	// LocalRopeTheta is the rotary base of the LayerSliding layers
	// (rope_local_base_freq); 0 without sliding layers. Gemma 2 and
	// Mistral have one base, so theirs is RopeTheta.
	LocalRopeTheta float64

	// AttnLogitSoftcap, where not 0, caps every attention logit s (q·k
	// already scaled, see AttentionScale) to c·tanh(s/c) before the mask
	// and the softmax: Gemma 2's attn_logit_softcapping. Only FamilyGemma2
	// may set it.
	AttnLogitSoftcap float64
	// FinalLogitSoftcap, where not 0, caps the output head's logits z
	// (not the classification head's) to c·tanh(z/c): Gemma 2's
	// final_logit_softcapping. Only FamilyGemma2 may set it.
	FinalLogitSoftcap float64
}

// FamilyMistral is the Config.Family of Mistral checkpoints
// (MistralForCausalLM), which must keep no attention biases and no
// QK-norm, and may slide a window over every layer (see LayerKinds).
const FamilyMistral = "mistral"

// FamilyGemma3 is the Config.Family of Gemma 3 text models
// (Gemma3ForCausalLM). Its decoder differs from LLaMA's in ways the family
// fixes: the token embedding is multiplied by √dim on the way in (not on
// the tied output head); every RMSNorm multiplies by 1 + w, its weight w
// stored as an offset from one (see NormOffset); each layer normalises the
// attention's and the feed-forward's outputs too before adding them to the
// residual stream (four norms a layer, see PostNorms); and it always has
// QK-norm. Its configurations also set Activation GELUTanh,
// QueryPreAttnScalar and the sliding-window layers (LayerKinds).
const FamilyGemma3 = "gemma3"

// FamilyGemma2 is the Config.Family of Gemma 2 text models
// (Gemma2ForCausalLM). Its decoder is Gemma 3's (the √dim embedding scale,
// norms of 1 + w, four norms a layer, see FamilyGemma3) without QK-norm,
// with one rotary base for all layers (LocalRopeTheta = RopeTheta where
// some layer slides) and no rope scaling, and with the logit soft-capping
// that AttnLogitSoftcap and FinalLogitSoftcap set.
const FamilyGemma2 = "gemma2"

// gemma reports whether c is of a Gemma family, whose decoder scales the
// embedding, offsets the norms and normalises the blocks' outputs.
func (c Config) gemma() bool { return c.Family == FamilyGemma3 || c.Family == FamilyGemma2 }

// The bytes of Config.LayerKinds.
const (
	LayerFull    = 'f'
	LayerSliding = 's'
)

// Activation is the activation of the feed-forward gate.
type Activation uint8

const (
	// SiLU is x·σ(x): LLaMA's SwiGLU.
	SiLU Activation = iota
	// GELUTanh is the tanh approximation of GELU,
	// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): Gemma's GeGLU
	// (transformers' "gelu_pytorch_tanh").
	GELUTanh
)

// String returns "silu" or "gelu_pytorch_tanh", transformers' names.
func (a Activation) String() string {
	switch a {
	case SiLU:
		return "silu"
	case GELUTanh:
		return "gelu_pytorch_tanh"
	}
	return fmt.Sprintf("Activation(%d)", uint8(a))
}

// NormOffset reports whether the model's RMSNorm weights are offsets from
// one, the norm multiplying by 1 + w (Gemma), rather than by w. An
// identity norm then has weight 0.
func (c Config) NormOffset() bool { return c.gemma() }

// PostNorms reports whether each decoder layer normalises the outputs of
// its attention and feed-forward blocks before the residual additions
// (Gemma's post_attention_layernorm and post_feedforward_layernorm), so
// that it has four norms where LLaMA has two.
func (c Config) PostNorms() bool { return c.gemma() }

// EmbedScale returns the factor the token embedding is multiplied by on
// the way into the first layer: float32(√dim) for Gemma, 1 otherwise.
// transformers multiplies by √hidden_size cast to the activations' dtype;
// the model computes in float32, so that is float32(√dim) (a bfloat16 run
// of transformers rounds it further, e.g. √1152 = 33.94 to 34).
func (c Config) EmbedScale() float32 {
	if c.gemma() {
		return float32(math.Sqrt(float64(c.Dim)))
	}
	return 1
}

// AttentionScale returns the factor of the attention logits q·k:
// QueryPreAttnScalar^(−1/2) where it is set (Gemma), HeadDim()^(−1/2)
// otherwise.
func (c Config) AttentionScale() float64 {
	if c.QueryPreAttnScalar != 0 {
		return 1 / math.Sqrt(c.QueryPreAttnScalar)
	}
	return 1 / math.Sqrt(float64(c.HeadDim()))
}

// Sliding reports whether decoder layer l attends through the sliding
// window (LayerKinds).
func (c Config) Sliding(l int) bool {
	return l >= 0 && l < len(c.LayerKinds) && c.LayerKinds[l] == LayerSliding
}

// hasSliding reports whether any layer is LayerSliding.
func (c Config) hasSliding() bool {
	for i := range len(c.LayerKinds) {
		if c.LayerKinds[i] == LayerSliding {
			return true
		}
	}
	return false
}

// AttentionBias says which attention projections of a decoder layer carry
// a bias vector.
type AttentionBias uint8

const (
	// NoBias is LLaMA's attention: no projection has a bias.
	NoBias AttentionBias = iota
	// BiasQKV adds a bias to q_proj, k_proj and v_proj but not o_proj:
	// Qwen2's and Qwen2.5's attention.
	BiasQKV
	// BiasQKVO adds a bias to all four projections: Hugging Face's LLaMA
	// with attention_bias true.
	BiasQKVO
)

// String returns "none", "q/k/v" or "q/k/v/o".
func (a AttentionBias) String() string {
	switch a {
	case NoBias:
		return "none"
	case BiasQKV:
		return "q/k/v"
	case BiasQKVO:
		return "q/k/v/o"
	}
	return fmt.Sprintf("AttentionBias(%d)", uint8(a))
}

// HasBias reports whether module (one of the Mod* constants) carries a
// bias in a model with configuration c.
func (c Config) HasBias(module string) bool {
	switch module {
	case ModQ, ModK, ModV:
		return c.AttentionBias == BiasQKV || c.AttentionBias == BiasQKVO
	case ModO:
		return c.AttentionBias == BiasQKVO
	}
	return false
}

// RopeScalingLlama3 is the Type of Llama 3.1's frequency scaling (Hugging
// Face's rope_type "llama3").
const RopeScalingLlama3 = "llama3"

// RopeScalingLinear is the Type of linear position interpolation (Hugging
// Face's rope_type "linear"): every frequency divided by Factor. Gemma 3's
// 4B, 12B and 27B scale their full-attention layers so, by 8.
const RopeScalingLinear = "linear"

// RopeScaling describes how a model's rotary frequencies differ from the
// plain θ^(−2i/d). The zero value is no scaling. With Type
// [RopeScalingLlama3], a pair whose wavelength λ = 2π/f is shorter than
// OriginalMaxPos/HighFreqFactor keeps its frequency f, one whose wavelength
// is longer than OriginalMaxPos/LowFreqFactor turns Factor times slower,
// and those between are interpolated: with
// s = (OriginalMaxPos/λ − LowFreqFactor)/(HighFreqFactor − LowFreqFactor),
// f' = (1−s)·f/Factor + s·f, which meets both neighbours at the band's
// ends. Field names follow Hugging Face's rope_scaling.
//
// With Type [RopeScalingLinear] every frequency is f/Factor, and the
// other fields are 0.
type RopeScaling struct {
	// Type is "" (none), RopeScalingLlama3 or RopeScalingLinear.
	Type string
	// Factor divides the lowest frequencies (8 for Llama 3.1, 32 for
	// 3.2), or all of them (linear).
	Factor float64
	// LowFreqFactor and HighFreqFactor set the band of wavelengths,
	// OriginalMaxPos/LowFreqFactor down to OriginalMaxPos/HighFreqFactor,
	// over which the scaling fades out (1 and 4 for Llama 3.1).
	LowFreqFactor, HighFreqFactor float64
	// OriginalMaxPos is the context length the model was first trained
	// for (original_max_position_embeddings, 8192 for Llama 3.1).
	OriginalMaxPos int
}

// IsZero reports whether s is no scaling.
func (s RopeScaling) IsZero() bool { return s == RopeScaling{} }

// Validate checks that s is the zero value, a complete llama3 scaling (a
// positive finite factor, positive finite low and high frequency factors
// with low below high, and a positive original context length) or a
// linear one (a positive finite factor and nothing else). Errors name the
// field as rope_scaling spells it.
func (s RopeScaling) Validate() error {
	switch s.Type {
	case "":
		if !s.IsZero() {
			return fmt.Errorf("llama: config rope scaling has no type but sets %+v; expected type %q or %q, or no fields", s, RopeScalingLlama3, RopeScalingLinear)
		}
		return nil
	case RopeScalingLinear:
		if !(s.Factor > 0) || math.IsInf(s.Factor, 0) {
			return fmt.Errorf("llama: config rope scaling factor = %v; expected a positive finite number", s.Factor)
		}
		if s != (RopeScaling{Type: s.Type, Factor: s.Factor}) {
			return fmt.Errorf("llama: config rope scaling %q sets %+v; a linear scaling has a factor only", s.Type, s)
		}
		return nil
	case RopeScalingLlama3:
	default:
		return fmt.Errorf("llama: config rope scaling type %q; only %q and %q are supported", s.Type, RopeScalingLlama3, RopeScalingLinear)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"factor", s.Factor}, {"low_freq_factor", s.LowFreqFactor}, {"high_freq_factor", s.HighFreqFactor}} {
		if !(f.v > 0) || math.IsInf(f.v, 0) {
			return fmt.Errorf("llama: config rope scaling %s = %v; expected a positive finite number", f.name, f.v)
		}
	}
	if s.LowFreqFactor >= s.HighFreqFactor {
		return fmt.Errorf("llama: config rope scaling low_freq_factor %v must be less than high_freq_factor %v", s.LowFreqFactor, s.HighFreqFactor)
	}
	if s.OriginalMaxPos <= 0 || s.OriginalMaxPos > maxExtent {
		return fmt.Errorf("llama: config rope scaling original_max_position_embeddings = %d; expected 1 to %d", s.OriginalMaxPos, maxExtent)
	}
	return nil
}

// RopeFreqs returns the inverse frequencies of the HeadDim()/2 rotary
// pairs under c.RopeScaling, for backend.RoPEParams.Freqs, or nil when
// there is no scaling (the backend then uses RopeTheta itself). It assumes
// a valid configuration. The unscaled frequencies are computed as the
// backends compute θ^(−2i/d), from θ rounded to float32 as the model
// passes it, so a scaling that changes none of them (say Factor 1) rotates
// exactly as no scaling does. In a model with sliding layers the scaling
// applies to the LayerFull layers only (Gemma 3).
func (c Config) RopeFreqs() []float64 {
	s := c.RopeScaling
	if s.Type != RopeScalingLlama3 && s.Type != RopeScalingLinear {
		return nil
	}
	hd := c.HeadDim()
	// The model hands the backends θ as a float32 (RoPEParams.Theta).
	theta := float64(float32(c.RopeTheta))
	f := make([]float64, hd/2)
	if s.Type == RopeScalingLinear {
		for i := range f {
			f[i] = math.Pow(theta, -float64(2*i)/float64(hd)) / s.Factor
		}
		return f
	}
	orig := float64(s.OriginalMaxPos)
	longest, shortest := orig/s.LowFreqFactor, orig/s.HighFreqFactor // the band's wavelengths
	for i := range f {
		base := math.Pow(theta, -float64(2*i)/float64(hd))
		slow := base / s.Factor
		switch wl := 2 * math.Pi / base; {
		case wl < shortest:
			f[i] = base
		case wl > longest:
			f[i] = slow
		default:
			// (1−s)·slow + s·base, written so that base == slow gives
			// base exactly.
			sm := (orig/wl - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
			f[i] = slow + sm*(base-slow)
		}
	}
	return f
}

// Defaults of llama2.c, whose checkpoints do not record them.
const (
	DefaultNormEps   = 1e-5
	DefaultRopeTheta = 10000.0
)

// maxExtent bounds every single dimension so that products of two or three
// of them cannot overflow int64, whatever a corrupt file claims.
const maxExtent = 1 << 28

// HeadDim returns the width of one attention head: HeadWidth, or Dim /
// NumHeads where HeadWidth is 0. It is the one accessor of the head width;
// code must not divide Dim itself.
func (c Config) HeadDim() int {
	if c.HeadWidth != 0 {
		return c.HeadWidth
	}
	if c.NumHeads <= 0 {
		return 0 // an invalid config; Validate refuses it
	}
	return c.Dim / c.NumHeads
}

// QDim returns the width of the query projection and of the attention's
// output before o_proj, NumHeads · HeadDim: Dim in LLaMA 2, not in Qwen3.
func (c Config) QDim() int { return c.NumHeads * c.HeadDim() }

// KVDim returns the width of the key and value projections,
// NumKVHeads · HeadDim.
func (c Config) KVDim() int { return c.NumKVHeads * c.HeadDim() }

// Validate checks that the configuration describes a model the code can
// run: positive sizes, a head width that is even (for the rotary pairs)
// and either given (HeadWidth) or dividing the model width, query heads a
// multiple of key/value heads, and sane epsilon and theta. Errors name the
// field.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"dim", c.Dim}, {"hidden_dim", c.HiddenDim}, {"n_layers", c.NumLayers},
		{"n_heads", c.NumHeads}, {"n_kv_heads", c.NumKVHeads},
		{"vocab_size", c.VocabSize}, {"seq_len", c.MaxSeqLen},
	} {
		if f.v <= 0 || f.v > maxExtent {
			return fmt.Errorf("llama: config %s = %d; expected 1 to %d", f.name, f.v, maxExtent)
		}
	}
	switch {
	case c.HeadWidth < 0 || c.HeadWidth > maxExtent:
		return fmt.Errorf("llama: config head_dim = %d; expected 1 to %d, or 0 for dim / n_heads", c.HeadWidth, maxExtent)
	case c.HeadWidth == 0 && c.Dim%c.NumHeads != 0:
		return fmt.Errorf("llama: config dim %d is not a multiple of n_heads %d (and no head_dim is given)", c.Dim, c.NumHeads)
	case c.HeadWidth == 0 && c.HeadDim()%2 != 0:
		return fmt.Errorf("llama: config head_dim %d (dim %d / n_heads %d) must be even for rotary embeddings", c.HeadDim(), c.Dim, c.NumHeads)
	case c.HeadDim()%2 != 0:
		return fmt.Errorf("llama: config head_dim %d must be even for rotary embeddings", c.HeadDim())
	case int64(c.NumHeads)*int64(c.HeadDim()) > maxExtent:
		// Bounded like every other width, so that the products below
		// cannot overflow.
		return fmt.Errorf("llama: config n_heads %d × head_dim %d = %d; expected at most %d", c.NumHeads, c.HeadDim(), int64(c.NumHeads)*int64(c.HeadDim()), maxExtent)
	}
	if c.NumKVHeads > c.NumHeads || c.NumHeads%c.NumKVHeads != 0 {
		return fmt.Errorf("llama: config n_heads %d is not a multiple of n_kv_heads %d", c.NumHeads, c.NumKVHeads)
	}
	if !(c.NormEps > 0) || math.IsInf(c.NormEps, 0) {
		return fmt.Errorf("llama: config norm eps %v; expected a positive finite number", c.NormEps)
	}
	if !(c.RopeTheta > 0) || math.IsInf(c.RopeTheta, 0) {
		return fmt.Errorf("llama: config rope theta %v; expected a positive finite number", c.RopeTheta)
	}
	if c.RopeLayout > RopeHalfSplit {
		return fmt.Errorf("llama: config has unknown rope layout %d", c.RopeLayout)
	}
	if c.AttentionBias > BiasQKVO {
		return fmt.Errorf("llama: config has unknown attention bias kind %d", c.AttentionBias)
	}
	switch c.Family {
	case "":
	case FamilyMistral:
		if c.AttentionBias != NoBias {
			return fmt.Errorf("llama: config family %q has attention biases (%s); Mistral has none", c.Family, c.AttentionBias)
		}
		if c.QKNorm {
			return fmt.Errorf("llama: config family %q has QK-norm; Mistral has none", c.Family)
		}
		if err := c.validateMistralWindow(); err != nil {
			return err
		}
	case FamilyGemma3:
		if !c.QKNorm {
			return fmt.Errorf("llama: config family %q has no QK-norm; Gemma 3 always normalises queries and keys", c.Family)
		}
		if c.AttentionBias == BiasQKV {
			return fmt.Errorf("llama: config family %q has biases on q/k/v only; Gemma 3's attention_bias puts one on all four projections", c.Family)
		}
		if err := c.validateGemma(); err != nil {
			return err
		}
	case FamilyGemma2:
		if c.QKNorm {
			return fmt.Errorf("llama: config family %q has QK-norm; Gemma 2 has none", c.Family)
		}
		if c.AttentionBias == BiasQKV {
			return fmt.Errorf("llama: config family %q has biases on q/k/v only; Gemma 2's attention_bias puts one on all four projections", c.Family)
		}
		if err := c.validateGemma(); err != nil {
			return err
		}
		if err := c.validateGemma2(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("llama: config family %q; expected \"\", %q, %q or %q", c.Family, FamilyMistral, FamilyGemma2, FamilyGemma3)
	}
	if !c.gemma() {
		// Gemma's settings: no other family's checkpoint can say them.
		switch {
		case c.Activation != SiLU:
			return fmt.Errorf("llama: config activation %s in family %q; only Gemma 2 and 3 (families %q, %q) use another than silu", c.Activation, c.Family, FamilyGemma2, FamilyGemma3)
		case c.QueryPreAttnScalar != 0:
			return fmt.Errorf("llama: config query_pre_attn_scalar %v in family %q; only Gemma 2 and 3 (families %q, %q) have one", c.QueryPreAttnScalar, c.Family, FamilyGemma2, FamilyGemma3)
		case c.Family != FamilyMistral && (c.LayerKinds != "" || c.SlidingWindow != 0 || c.LocalRopeTheta != 0):
			return fmt.Errorf("llama: config has per-layer attention kinds or a sliding window in family %q; only Gemma 2 and 3 (families %q, %q) and Mistral (family %q) have them", c.Family, FamilyGemma2, FamilyGemma3, FamilyMistral)
		}
	}
	if c.Family != FamilyGemma2 && (c.AttnLogitSoftcap != 0 || c.FinalLogitSoftcap != 0) {
		return fmt.Errorf("llama: config has logit soft-capping (attention %v, final %v) in family %q; only Gemma 2 (family %q) has it", c.AttnLogitSoftcap, c.FinalLogitSoftcap, c.Family, FamilyGemma2)
	}
	if err := c.RopeScaling.Validate(); err != nil {
		return err
	}
	// Counted in float64 first so that NumParams, in int64, cannot overflow.
	var n float64
	for _, s := range c.shapes() {
		n += float64(s.shape[0]) * float64(s.shape[1])
	}
	if n > maxParams {
		return fmt.Errorf("llama: config describes %.3g parameters; at most %.3g are supported", n, float64(maxParams))
	}
	return nil
}

// validateMistralWindow checks Mistral's sliding window, which every
// layer has or none: all layers sliding, with the model's own rotary base
// (LocalRopeTheta = RopeTheta) and no rope scaling, since sliding layers
// rotate with LocalRopeTheta unscaled.
func (c Config) validateMistralWindow() error {
	if c.LayerKinds == "" && c.SlidingWindow == 0 && c.LocalRopeTheta == 0 {
		return nil
	}
	switch {
	case c.LayerKinds != strings.Repeat(string(LayerSliding), c.NumLayers):
		return fmt.Errorf("llama: config family %q has layer kinds %q; Mistral's sliding window applies to all %d layers or none", c.Family, c.LayerKinds, c.NumLayers)
	case c.SlidingWindow < 1 || c.SlidingWindow > maxExtent:
		return fmt.Errorf("llama: config sliding_window = %d; expected 1 to %d", c.SlidingWindow, maxExtent)
	case c.LocalRopeTheta != c.RopeTheta:
		return fmt.Errorf("llama: config family %q has a local rope theta %v other than rope_theta %v; Mistral has one", c.Family, c.LocalRopeTheta, c.RopeTheta)
	case !c.RopeScaling.IsZero():
		return fmt.Errorf("llama: config family %q has both a sliding window and rope_scaling, which this decoder does not combine", c.Family)
	}
	return nil
}

// validateGemma2 checks what Gemma 2 adds to validateGemma: soft-caps
// that are 0 (none) or positive and finite, one rotary base for every
// layer, and no rope scaling (no Gemma 2 model has one, and sliding
// layers rotate unscaled here).
func (c Config) validateGemma2() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"attn_logit_softcapping", c.AttnLogitSoftcap}, {"final_logit_softcapping", c.FinalLogitSoftcap}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("llama: config %s %v; expected a positive finite number (or 0 for no capping)", f.name, f.v)
		}
	}
	if c.hasSliding() && c.LocalRopeTheta != c.RopeTheta {
		return fmt.Errorf("llama: config family %q has a local rope theta %v other than rope_theta %v; Gemma 2 rotates every layer with rope_theta", c.Family, c.LocalRopeTheta, c.RopeTheta)
	}
	if !c.RopeScaling.IsZero() {
		return fmt.Errorf("llama: config family %q has rope scaling %q; Gemma 2's rotary embedding is unscaled", c.Family, c.RopeScaling.Type)
	}
	return nil
}

// validateGemma checks the fields that Gemma 2 and 3 configurations vary: the
// activation, a positive finite query_pre_attn_scalar (or 0), and layer
// kinds that are empty or one 'f' or 's' per layer, with a positive
// window and rotary base where some layer is sliding and neither where
// none is.
func (c Config) validateGemma() error {
	if c.Activation > GELUTanh {
		return fmt.Errorf("llama: config has unknown activation %d", c.Activation)
	}
	if c.QueryPreAttnScalar < 0 || math.IsNaN(c.QueryPreAttnScalar) || math.IsInf(c.QueryPreAttnScalar, 0) {
		return fmt.Errorf("llama: config query_pre_attn_scalar %v; expected a positive finite number (or 0 for head_dim)", c.QueryPreAttnScalar)
	}
	if c.LayerKinds != "" && len(c.LayerKinds) != c.NumLayers {
		return fmt.Errorf("llama: config gives the attention kinds of %d layers (layer_types); n_layers is %d", len(c.LayerKinds), c.NumLayers)
	}
	for i := range len(c.LayerKinds) {
		if k := c.LayerKinds[i]; k != LayerFull && k != LayerSliding {
			return fmt.Errorf("llama: config layer %d has attention kind %q; expected %q (full) or %q (sliding)", i, k, LayerFull, LayerSliding)
		}
	}
	if !c.hasSliding() {
		if c.SlidingWindow != 0 || c.LocalRopeTheta != 0 {
			return fmt.Errorf("llama: config sets a sliding window (%d) or local rope theta (%v) but no layer is sliding", c.SlidingWindow, c.LocalRopeTheta)
		}
		return nil
	}
	if c.SlidingWindow < 1 || c.SlidingWindow > maxExtent {
		return fmt.Errorf("llama: config sliding_window = %d with sliding layers; expected 1 to %d", c.SlidingWindow, maxExtent)
	}
	if !(c.LocalRopeTheta > 0) || math.IsInf(c.LocalRopeTheta, 0) {
		return fmt.Errorf("llama: config local rope theta (rope_local_base_freq) %v with sliding layers; expected a positive finite number", c.LocalRopeTheta)
	}
	return nil
}

// maxParams bounds the parameter count (2^48, about 2.8e14, a petabyte of
// float32) so that sizes derived from it stay far from int64 overflow.
const maxParams = 1 << 48

// NumParams returns the number of float32 parameters of the model,
// counting a tied classifier once. It assumes a valid configuration (on
// any configuration that passes Validate it cannot overflow).
func (c Config) NumParams() int64 {
	var n int64
	for _, s := range c.shapes() {
		n += int64(s.shape[0]) * int64(s.shape[1])
	}
	return n
}

// LayerParams returns the number of float32 parameters in one decoder
// layer, biases and QK-norm weights included.
func (c Config) LayerParams() int64 {
	d, h, q, kv := int64(c.Dim), int64(c.HiddenDim), int64(c.QDim()), int64(c.KVDim())
	n := int64(c.layerNorms())*d + 2*q*d + 2*kv*d + 3*h*d + c.layerBiases()
	if c.QKNorm {
		n += 2 * int64(c.HeadDim())
	}
	return n
}

// layerNorms returns the number of RMSNorms of width dim in one decoder
// layer: two, or four with PostNorms.
func (c Config) layerNorms() int {
	if c.PostNorms() {
		return 4
	}
	return 2
}

// layerBiases returns the number of bias values in one decoder layer.
func (c Config) layerBiases() int64 {
	var n int64
	for _, m := range []string{ModQ, ModK, ModV, ModO} {
		if c.HasBias(m) {
			n += int64(ModuleShape(c, m)[0])
		}
	}
	return n
}

type shapeEntry struct {
	name  string
	shape [2]int // a vector has shape[0] == 1
}

// shapes lists whole-model tensor groups (summed over layers) for NumParams.
func (c Config) shapes() []shapeEntry {
	L := c.NumLayers
	s := []shapeEntry{
		{"embed", [2]int{c.VocabSize, c.Dim}},
		{"norms", [2]int{c.layerNorms()*L + 1, c.Dim}},
		{"wq+wo", [2]int{2 * L * c.QDim(), c.Dim}},
		{"wk+wv", [2]int{2 * L * c.KVDim(), c.Dim}},
		{"ffn", [2]int{3 * L * c.HiddenDim, c.Dim}},
	}
	if c.QKNorm {
		s = append(s, shapeEntry{"q_norm+k_norm", [2]int{2 * L, c.HeadDim()}})
	}
	if n := c.layerBiases(); n > 0 {
		// At most dim + q_dim + 2·kv_dim per layer: far below the sizes above.
		s = append(s, shapeEntry{"biases", [2]int{L, int(n)}})
	}
	if !c.TiedEmbeddings {
		s = append(s, shapeEntry{"output", [2]int{c.VocabSize, c.Dim}})
	}
	return s
}

// CanonicalModule maps llama2.c/Meta linear-layer names (wq, wk, wv, wo,
// w1, w2, w3) to their Hugging Face names (q_proj, k_proj, v_proj, o_proj,
// gate_proj, down_proj, up_proj), so that PEFT target patterns written
// either way select the same layers. Other names are returned unchanged.
func CanonicalModule(name string) string {
	switch name {
	case "wq":
		return "q_proj"
	case "wk":
		return "k_proj"
	case "wv":
		return "v_proj"
	case "wo":
		return "o_proj"
	case "w1":
		return "gate_proj"
	case "w2":
		return "down_proj"
	case "w3":
		return "up_proj"
	}
	return name
}
