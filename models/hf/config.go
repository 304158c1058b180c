// Package hf reads and writes LLaMA, Qwen2, Qwen3, Mistral, Gemma 2 and
// Gemma 3 checkpoints in the Hugging Face layout: a folder holding
// config.json and the weights in model.safetensors, or in several shards
// listed by model.safetensors.index.json.
//
// Six architectures load, all into package llama's decoder: transformers'
// LlamaForCausalLM (model_type "llama", with or without attention_bias),
// Qwen2ForCausalLM (model_type "qwen2": Qwen2 and Qwen2.5, which is LLaMA
// with biases on q_proj, k_proj and v_proj; see
// llama.Config.AttentionBias), Qwen3ForCausalLM (model_type "qwen3": the
// dense Qwen3 models, LLaMA with a per-head RMSNorm of queries and keys,
// q_norm and k_norm, and heads of their own width; see llama.Config.QKNorm
// and llama.Config.HeadWidth), MistralForCausalLM (model_type "mistral":
// LLaMA's decoder, with a sliding window on every layer where one takes
// effect, as in Mistral 7B v0.1; see ParseConfig; llama.Config.Family
// remembers it), Gemma2ForCausalLM (model_type "gemma2": Gemma 2 2B, 9B
// and 27B; llama.FamilyGemma2, with its attention and final logit
// soft-capping and alternating sliding-window layers) and
// Gemma3ForCausalLM (model_type "gemma3_text": Gemma 3 270M and 1B, and
// text-only configs of the larger ones; llama.FamilyGemma3, with its
// sliding-window layers; the multimodal Gemma3ForConditionalGeneration,
// model_type "gemma3", and the first Gemma, model_type "gemma", are
// refused by name). Any of them may give a
// head_dim other than hidden_size / num_attention_heads (Mistral Nemo;
// Qwen3-0.6B, 4B and 32B). Tensor names are theirs (see package llama).
// F32, F16 and BF16 weights are read, converted to float32; the writer
// writes F32, with the model_type and architectures of the architecture the
// weights are, so that transformers reads a written folder as the same
// model. No lm_head.weight is written, or required, when
// tie_word_embeddings is true.
//
// Hugging Face stores q_proj and k_proj with their rows permuted for the
// half-split rotary layout, so loaded weights have Config.RopeLayout =
// llama.RopeHalfSplit; the writer permutes weights in llama2.c's
// interleaved layout on the way out (see llama.InterleavedToHalfSplit).
//
// The loader checks the config and every tensor's shape before allocating
// the model, and checks that the weight files are large enough to hold the
// parameters the config claims, so a corrupt config cannot trigger a huge
// allocation.
//
// [Load] returns every tensor at once in float32 host memory. [Open] makes
// the same checks and returns a [Source] that reads one tensor, or a run
// of its rows, at a time from the files, by offset: llama.NewFromSource
// uploads each slab of rows to a backend as it is read, so that loading a
// model holds at most llama.LoadSlabBytes of it in float32 on the host
// rather than all of it (for a 3B model, about 12 GB less at the peak of
// a load) or its largest tensor (a large vocabulary's embedding: 0.67 GB
// for Gemma 3).
package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"sort"
	"strings"

	"github.com/sora-go/sora/models/llama"
)

// File names inside a checkpoint folder.
const (
	ConfigFile      = "config.json"
	WeightsFile     = "model.safetensors"
	IndexFile       = "model.safetensors.index.json"
	defaultMaxPos   = 2048 // LlamaConfig's default max_position_embeddings
	defaultNormEps  = 1e-6 // LlamaConfig's (and Qwen2Config's) default rms_norm_eps
	defaultRopeBase = 10000.0

	defaultQwen2MaxPos  = 32768 // Qwen2Config's default max_position_embeddings
	defaultQwen2KVHeads = 32    // Qwen2Config's num_key_value_heads when the field is absent

	// MistralConfig's defaults where they differ from LlamaConfig's.
	defaultMistralMaxPos  = 4096 * 32
	defaultMistralKVHeads = 8
	defaultMistralWindow  = 4096 // sliding_window when the field is absent

	// Qwen3Config's defaults where they differ from LlamaConfig's
	// (rms_norm_eps and rope_theta are LlamaConfig's).
	defaultQwen3MaxPos  = 32768
	defaultQwen3KVHeads = 32  // num_key_value_heads when the field is absent
	defaultQwen3HeadDim = 128 // head_dim when the field is absent, whatever the width

	// Gemma3TextConfig's defaults (rms_norm_eps is LlamaConfig's).
	defaultGemma3MaxPos      = 131072
	defaultGemma3KVHeads     = 4
	defaultGemma3HeadDim     = 256
	defaultGemma3RopeTheta   = 1e6
	defaultGemma3LocalTheta  = 10000.0
	defaultGemma3Window      = 4096
	defaultGemma3Pattern     = 6 // sliding_window_pattern: every 6th layer is full
	defaultGemma3QueryScalar = 256
)

// The model types and architectures this package reads and writes.
const (
	ModelTypeLlama   = "llama"
	ModelTypeQwen2   = "qwen2"
	ModelTypeMistral = "mistral"
	ModelTypeQwen3   = "qwen3"
	// ModelTypeGemma3Text is Gemma 3's text model (Gemma3TextConfig);
	// "gemma3" is the multimodal Gemma3ForConditionalGeneration, which
	// is not read.
	ModelTypeGemma3Text = "gemma3_text"
	// ModelTypeGemma2 is Gemma 2's (Gemma2Config).
	ModelTypeGemma2 = "gemma2"
	ArchLlama       = "LlamaForCausalLM"
	ArchQwen2       = "Qwen2ForCausalLM"
	ArchMistral     = "MistralForCausalLM"
	ArchQwen3       = "Qwen3ForCausalLM"
	ArchGemma3      = "Gemma3ForCausalLM"
	ArchGemma2      = "Gemma2ForCausalLM"
)

// configJSON is the part of a LlamaConfig that this package reads. Pointers
// tell absent fields (which get LlamaConfig's defaults) from zero ones.
type configJSON struct {
	ModelType         *string `json:"model_type"`
	HiddenSize        *int    `json:"hidden_size"`
	IntermediateSize  *int    `json:"intermediate_size"`
	NumHiddenLayers   *int    `json:"num_hidden_layers"`
	NumAttentionHeads *int    `json:"num_attention_heads"`
	// NumKeyValueHeads is raw because absent and null differ: null is
	// num_attention_heads for every model type, absent is the model
	// type's default (LLaMA: num_attention_heads; Qwen2 and Qwen3: 32;
	// Mistral: 8).
	NumKeyValueHeads      json.RawMessage `json:"num_key_value_heads"`
	VocabSize             *int            `json:"vocab_size"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	// HeadDim is raw because absent and null differ for Qwen3: absent
	// is Qwen3Config's 128, null no head width transformers can run.
	HeadDim             json.RawMessage `json:"head_dim"`
	HiddenAct           *string         `json:"hidden_act"`
	RopeScaling         json.RawMessage `json:"rope_scaling"`
	RopeParameters      json.RawMessage `json:"rope_parameters"`
	PartialRotaryFactor *float64        `json:"partial_rotary_factor"`
	AttentionBias       *bool           `json:"attention_bias"`
	MLPBias             *bool           `json:"mlp_bias"`
	AttentionDropout    *float64        `json:"attention_dropout"`

	// Qwen2Config's and Qwen3Config's sliding-window attention: released
	// checkpoints set use_sliding_window false, which leaves sliding_window and
	// max_window_layers unused. layer_types (newer transformers) names
	// each layer's attention.
	UseSlidingWindow *bool           `json:"use_sliding_window"`
	LayerTypes       json.RawMessage `json:"layer_types"`
	// use_mrope is the multimodal rotary embedding of Qwen2-VL, which
	// Qwen2.5's text configs carry as false.
	UseMRoPE *bool `json:"use_mrope"`
	// SlidingWindow is read for Mistral and Gemma only (Qwen2's counts
	// only with use_sliding_window). Raw, to tell null (no window) from
	// absent (MistralConfig's default of 4096, Gemma2Config's and Gemma3TextConfig's 4096).
	SlidingWindow json.RawMessage `json:"sliding_window"`

	// Gemma3TextConfig's (and Gemma2Config's) own fields.
	HiddenActivation   *string  `json:"hidden_activation"`
	QueryPreAttnScalar *float64 `json:"query_pre_attn_scalar"`
	RopeLocalBaseFreq  *float64 `json:"rope_local_base_freq"`
	// sliding_window_pattern is the older spelling of layer_types (every
	// pattern-th layer full, the others sliding); transformers saves it
	// as _sliding_window_pattern since layer_types came in.
	SlidingWindowPattern        json.RawMessage `json:"sliding_window_pattern"`
	PrivateSlidingWindowPattern json.RawMessage `json:"_sliding_window_pattern"`
	// Gemma 2's soft-capping, null in Gemma 3. Raw, to tell null (no
	// capping) from absent (Gemma2Config's 50.0 and 30.0).
	AttnLogitSoftcapping  json.RawMessage `json:"attn_logit_softcapping"`
	FinalLogitSoftcapping json.RawMessage `json:"final_logit_softcapping"`
	// EmbeddingGemma's bidirectional attention.
	UseBidirectionalAttention *bool `json:"use_bidirectional_attention"`
}

// ParseConfig decodes a Hugging Face config.json of model_type "llama" (the
// default when absent), "qwen2", "qwen3", "mistral", "gemma2" (see
// parseGemma2 for Gemma 2's fields) or "gemma3_text" (see parseGemma3 for
// Gemma 3's) into a llama.Config
// (in the half-split rotary layout). A LLaMA config with attention_bias
// true gives llama.BiasQKVO; a Qwen2 config always gives llama.BiasQKV, as
// Qwen2's q/k/v projections always have a bias; a Qwen3 config gives
// QKNorm, and llama.BiasQKVO where its attention_bias is true (Qwen3 puts
// it on all four projections); a Mistral config never has biases and gives
// Family llama.FamilyMistral (transformers' Qwen2, Qwen3 and Mistral read
// no mlp_bias, and Qwen2 and Mistral no attention_bias; neither does
// ParseConfig for them). head_dim gives the head width
// (llama.Config.HeadWidth, kept 0 where it is hidden_size /
// num_attention_heads); absent or null it is hidden_size /
// num_attention_heads, except for Qwen3, whose absent head_dim is
// Qwen3Config's 128 and whose null one is refused. Mistral's sliding_window
// that takes effect (v0.1's 4096 with a 32768 context, or the default 4096
// when the field is absent) makes every layer sliding
// (llama.Config.LayerKinds); one that is null (Mistral 7B v0.2 and v0.3)
// or at least max_position_embeddings never masks anything and is left
// out. Absent optional fields get LlamaConfig's, Qwen2Config's,
// Qwen3Config's or MistralConfig's defaults; features this project's
// decoder does not implement (rotary scalings other than Llama 3.1's
// "llama3" and "linear", partial rotary embeddings, MLP biases, activations other than
// SiLU, attention dropout, Qwen2's and Qwen3's sliding-window attention,
// Qwen2-VL's multimodal rotary embedding) are reported as errors naming the
// field. Linear rope scaling (rope_type "linear", a factor) is read for
// every type. The rotary base comes from rope_theta at the top level (older
// transformers) or inside rope_parameters (newer ones); a config giving
// both must give the same value. A llama3 scaling (Llama 3.1 and 3.2) is
// read from rope_scaling (older transformers) or rope_parameters (newer
// ones), with its rope_type spelled "rope_type" or "type", into
// Config.RopeScaling; see parseRopeObject for what each may hold. name is
// used in error messages.
func ParseConfig(data []byte, name string) (llama.Config, error) {
	fail := func(format string, args ...any) (llama.Config, error) {
		return llama.Config{}, fmt.Errorf("hf: %s: %s", name, fmt.Sprintf(format, args...))
	}
	var c configJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		return fail("not a valid config: %v", err)
	}
	if dec.More() {
		return fail("trailing data after the JSON object")
	}
	modelType := ModelTypeLlama
	if c.ModelType != nil {
		modelType = *c.ModelType
	}
	switch modelType {
	case ModelTypeLlama, ModelTypeQwen2, ModelTypeQwen3, ModelTypeMistral:
	case ModelTypeGemma3Text, ModelTypeGemma2:
		parse := parseGemma3
		if modelType == ModelTypeGemma2 {
			parse = parseGemma2
		}
		cfg, err := parse(c)
		if err != nil {
			return fail("%v", err)
		}
		return cfg, nil
	case "gemma3":
		return fail("model_type is \"gemma3\": Gemma3ForConditionalGeneration, the multimodal Gemma 3 (4B, 12B, 27B: a SigLIP vision tower and the text decoder under text_config), is not supported; only the text models, model_type %q (Gemma3ForCausalLM: Gemma 3 270M and 1B), are", ModelTypeGemma3Text)
	case "gemma", "gemma3n", "gemma3n_text":
		return fail("model_type is %q, which is not supported; of the Gemma family only Gemma 2 (model_type %q) and Gemma 3's text models (model_type %q) are", modelType, ModelTypeGemma2, ModelTypeGemma3Text)
	default:
		return fail("model_type is %q; expected %q, %q, %q, %q, %q or %q", modelType, ModelTypeLlama, ModelTypeQwen2, ModelTypeQwen3, ModelTypeMistral, ModelTypeGemma2, ModelTypeGemma3Text)
	}
	qwen2, qwen3, mistral := modelType == ModelTypeQwen2, modelType == ModelTypeQwen3, modelType == ModelTypeMistral
	if err := c.checkShapeFields(); err != nil {
		return fail("%v", err)
	}
	if c.HiddenAct != nil && *c.HiddenAct != "silu" {
		return fail("hidden_act is %q; only \"silu\" is supported", *c.HiddenAct)
	}
	scaling, _, err := parseRopeObject("rope_scaling", c.RopeScaling)
	if err != nil {
		return fail("%v", err)
	}
	params, ropeTheta, err := parseRopeObject("rope_parameters", c.RopeParameters)
	if err != nil {
		return fail("%v", err)
	}
	if scaling != nil && params != nil && *scaling != *params {
		return fail("rope_scaling (%s) and rope_parameters (%s) describe different rotary embeddings; expected one, or the same in both",
			compactJSON(c.RopeScaling), compactJSON(c.RopeParameters))
	}
	if scaling == nil {
		scaling = params
	}
	if ropeTheta != nil && c.RopeTheta != nil && *ropeTheta != *c.RopeTheta {
		return fail("rope_theta is %v but rope_parameters.rope_theta is %v; expected one value", *c.RopeTheta, *ropeTheta)
	}
	if ropeTheta == nil {
		ropeTheta = c.RopeTheta
	}
	if c.PartialRotaryFactor != nil && *c.PartialRotaryFactor != 1 {
		return fail("partial_rotary_factor is %v; only rotary embeddings over the whole head (1.0) are supported", *c.PartialRotaryFactor)
	}
	bias := llama.NoBias
	switch {
	case qwen2:
		bias = llama.BiasQKV
		if err := checkQwenAttention(c, "Qwen2 and Qwen2.5"); err != nil {
			return fail("%v", err)
		}
	case qwen3:
		// Qwen3's attention_bias puts a bias on all four projections;
		// its MLP has none whatever mlp_bias says.
		if c.AttentionBias != nil && *c.AttentionBias {
			bias = llama.BiasQKVO
		}
		if err := checkQwenAttention(c, "Qwen3"); err != nil {
			return fail("%v", err)
		}
	case mistral:
		// MistralForCausalLM has no biases whatever the config says.
	default:
		if c.AttentionBias != nil && *c.AttentionBias {
			bias = llama.BiasQKVO
		}
		if c.MLPBias != nil && *c.MLPBias {
			return fail("mlp_bias is true; biases on the feed-forward layers are not supported")
		}
	}
	if c.AttentionDropout != nil && *c.AttentionDropout != 0 {
		return fail("attention_dropout is %v; attention dropout is not implemented (expected 0)", *c.AttentionDropout)
	}
	cfg := llama.Config{
		Dim: *c.HiddenSize, HiddenDim: *c.IntermediateSize, NumLayers: *c.NumHiddenLayers,
		NumHeads: *c.NumAttentionHeads, NumKVHeads: *c.NumAttentionHeads, VocabSize: *c.VocabSize,
		MaxSeqLen: defaultMaxPos, NormEps: defaultNormEps, RopeTheta: defaultRopeBase,
		RopeLayout: llama.RopeHalfSplit, AttentionBias: bias,
	}
	switch {
	case qwen2:
		cfg.MaxSeqLen = defaultQwen2MaxPos
		cfg.NumKVHeads = defaultQwen2KVHeads
	case qwen3:
		cfg.MaxSeqLen = defaultQwen3MaxPos
		cfg.NumKVHeads = defaultQwen3KVHeads
		cfg.QKNorm = true
	case mistral:
		cfg.MaxSeqLen = defaultMistralMaxPos
		cfg.NumKVHeads = defaultMistralKVHeads
		cfg.Family = llama.FamilyMistral
	}
	if cfg.NumKVHeads, err = parseKVHeads(c.NumKeyValueHeads, cfg.NumKVHeads, cfg.NumHeads); err != nil {
		return fail("%v", err)
	}
	if c.MaxPositionEmbeddings != nil {
		cfg.MaxSeqLen = *c.MaxPositionEmbeddings
	}
	if c.RMSNormEps != nil {
		cfg.NormEps = *c.RMSNormEps
	}
	if ropeTheta != nil {
		cfg.RopeTheta = *ropeTheta
	}
	if c.TieWordEmbeddings != nil {
		cfg.TiedEmbeddings = *c.TieWordEmbeddings
	}
	if scaling != nil {
		cfg.RopeScaling = *scaling
	}
	headDim, err := parseHeadDim(c.HeadDim, qwen3)
	if err != nil {
		return fail("%v", err)
	}
	// A head width that hidden_size / num_attention_heads gives anyway is
	// left implicit, so that one model has one Config.
	if headDim != 0 && (cfg.NumHeads <= 0 || cfg.Dim%cfg.NumHeads != 0 || cfg.Dim/cfg.NumHeads != headDim) {
		cfg.HeadWidth = headDim
	}
	if mistral {
		window, err := mistralWindow(c.SlidingWindow, cfg.MaxSeqLen)
		if err != nil {
			return fail("%v", err)
		}
		if window > 0 {
			if !cfg.RopeScaling.IsZero() {
				return fail("sliding_window %d together with rope_scaling is not supported", window)
			}
			if err := checkLayerCount(cfg.NumLayers); err != nil {
				return fail("%v", err)
			}
			cfg.LayerKinds = strings.Repeat(string(llama.LayerSliding), cfg.NumLayers)
			cfg.SlidingWindow, cfg.LocalRopeTheta = window, cfg.RopeTheta
		}
	}
	if err := cfg.Validate(); err != nil {
		return fail("%v", err)
	}
	return cfg, nil
}

// maxLayerKinds bounds num_hidden_layers where the configuration gives
// each layer an attention kind (Gemma, Mistral with a window), kept as
// one byte per layer: far beyond any real model (Gemma 3 27B has 62
// layers), and small enough that a corrupt count costs no large
// allocation.
const maxLayerKinds = 1 << 20

// checkShapeFields refuses a config without one of the fields that give
// the model's shape, which have no defaults here.
func (c configJSON) checkShapeFields() error {
	for _, f := range []struct {
		name string
		v    *int
	}{
		{"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers}, {"num_attention_heads", c.NumAttentionHeads},
		{"vocab_size", c.VocabSize},
	} {
		if f.v == nil {
			return fmt.Errorf("missing required field %s", f.name)
		}
	}
	return nil
}

// checkLayerCount checks num_hidden_layers before a string of one
// attention kind per layer is made from it.
func checkLayerCount(n int) error {
	if n < 1 || n > maxLayerKinds {
		return fmt.Errorf("num_hidden_layers is %d; expected 1 to %d", n, maxLayerKinds)
	}
	return nil
}

// parseKVHeads reads num_key_value_heads: absent it is def (the model
// type's default), null it is heads, else a positive whole number.
func parseKVHeads(raw json.RawMessage, def, heads int) (int, error) {
	switch string(bytes.TrimSpace(raw)) {
	case "":
		return def, nil
	case "null":
		return heads, nil
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err != nil || n != math.Trunc(n) || n < 1 || n > math.MaxInt32 {
		return 0, fmt.Errorf("num_key_value_heads is %s; expected null or a positive whole number", truncate(compactJSON(raw), 60))
	}
	return int(n), nil
}

// mistralWindow returns the sliding window of a Mistral config, 0 where it
// never takes effect. Mistral's attention lets position q see key k only
// where q − k < sliding_window: a window of at least maxPos never bites
// within the positions the model runs (this decoder refuses longer
// sequences), and then the model is LLaMA's. raw is the field's JSON:
// absent means MistralConfig's default of 4096, null means no window.
func mistralWindow(raw json.RawMessage, maxPos int) (int, error) {
	trimmed := string(bytes.TrimSpace(raw))
	if trimmed == "null" {
		return 0, nil
	}
	window := defaultMistralWindow
	if len(raw) > 0 {
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || f < 1 {
			return 0, fmt.Errorf("sliding_window is %s; expected null or a positive whole number", truncate(compactJSON(raw), 60))
		}
		if f >= float64(maxPos) {
			return 0, nil
		}
		window = int(f)
	}
	if window >= maxPos {
		return 0, nil
	}
	return window, nil
}

// parseHeadDim reads head_dim: 0 where it is absent or null (the head
// width is then hidden_size / num_attention_heads), except for Qwen3,
// whose absent head_dim is Qwen3Config's 128 and whose null one
// transformers cannot run; otherwise a positive whole number.
func parseHeadDim(raw json.RawMessage, qwen3 bool) (int, error) {
	switch string(bytes.TrimSpace(raw)) {
	case "":
		if qwen3 {
			return defaultQwen3HeadDim, nil
		}
		return 0, nil
	case "null":
		if qwen3 {
			return 0, fmt.Errorf("head_dim is null; Qwen3 needs the width of its attention heads (expected a positive whole number, or no field for Qwen3Config's default of %d)", defaultQwen3HeadDim)
		}
		return 0, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || f < 1 || f > math.MaxInt32 {
		return 0, fmt.Errorf("head_dim is %s; expected null or a positive whole number", truncate(compactJSON(raw), 60))
	}
	return int(f), nil
}

// checkQwenAttention refuses the attention variants of a Qwen2 or Qwen3
// config (released as models) that the decoder does not implement:
// sliding-window attention (use_sliding_window true, or a layer_types
// entry other than "full_attention") and Qwen2-VL's multimodal rotary
// embedding (use_mrope true). sliding_window and max_window_layers matter
// only with use_sliding_window true, so their values are not read.
func checkQwenAttention(c configJSON, models string) error {
	if c.UseSlidingWindow != nil && *c.UseSlidingWindow {
		return fmt.Errorf("use_sliding_window is true; sliding-window attention is not supported (expected false, as released %s checkpoints set it)", models)
	}
	if c.UseMRoPE != nil && *c.UseMRoPE {
		return fmt.Errorf("use_mrope is true; the multimodal rotary embedding of Qwen2-VL is not supported (expected false)")
	}
	if len(c.LayerTypes) > 0 && string(bytes.TrimSpace(c.LayerTypes)) != "null" {
		var types []string
		if err := json.Unmarshal(c.LayerTypes, &types); err != nil {
			return fmt.Errorf("layer_types is %s; expected a list of strings", truncate(compactJSON(c.LayerTypes), 60))
		}
		if c.NumHiddenLayers != nil && len(types) != *c.NumHiddenLayers {
			return fmt.Errorf("layer_types lists %d layers; num_hidden_layers is %d", len(types), *c.NumHiddenLayers)
		}
		for i, t := range types {
			if t != "full_attention" {
				return fmt.Errorf("layer_types[%d] is %q; only \"full_attention\" is supported", i, t)
			}
		}
	}
	return nil
}

// truncate shortens s to at most n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// parseRopeObject reads field (rope_scaling or rope_parameters), an
// object describing the rotary embedding, or null. It returns the scaling
// the object names (nil when it names no rope_type: an object of
// rope_theta alone; the zero value for rope_type "default") and, from
// rope_parameters only, its rope_theta (nil if absent).
//
// rope_type (or its older spelling "type"; both must agree) may be
// "default", which takes no scaling fields, "llama3", which needs
// factor, low_freq_factor, high_freq_factor and
// original_max_position_embeddings, or "linear", which needs factor
// alone. A partial_rotary_factor must be 1.
// Every other field (the scalings this model cannot honour: attention_factor,
// beta_fast, beta_slow, short_factor, long_factor, per-layer-type parameter
// sets) is refused rather than ignored. Fields set to null count as absent.
func parseRopeObject(field string, raw json.RawMessage) (*llama.RopeScaling, *float64, error) {
	if len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, nil, fmt.Errorf("%s must be an object (%s)", field, raw)
	}
	keys := make([]string, 0, len(fields))
	for k, v := range fields {
		if string(bytes.TrimSpace(v)) != "null" {
			keys = append(keys, k)
		}
	}
	// The rope type goes first, since it explains the scaling fields that
	// come with it; the rest are sorted so one run reports what another does.
	sort.Slice(keys, func(i, j int) bool {
		ti, tj := isRopeTypeKey(keys[i]), isRopeTypeKey(keys[j])
		if ti != tj {
			return ti
		}
		return keys[i] < keys[j]
	})
	var (
		theta   *float64
		typ     string
		typeKey string
		s       llama.RopeScaling
		set     = map[string]bool{}
	)
	number := func(k string) (float64, error) {
		var f float64
		if err := json.Unmarshal(fields[k], &f); err != nil {
			return 0, fmt.Errorf("%s.%s is %s; expected a number", field, k, fields[k])
		}
		return f, nil
	}
	for _, k := range keys {
		v := fields[k]
		switch k {
		case "rope_theta":
			if !strings.HasPrefix(field, "rope_parameters") {
				return nil, nil, fmt.Errorf("%s.rope_theta is set; the rotary base belongs in rope_theta or rope_parameters.rope_theta", field)
			}
			t, err := number(k)
			if err != nil {
				return nil, nil, err
			}
			theta = &t
		case "rope_type", "type": // "type" is the older spelling
			var t string
			if err := json.Unmarshal(v, &t); err != nil {
				return nil, nil, fmt.Errorf("%s.%s is %s; expected a string", field, k, v)
			}
			if typeKey != "" && t != typ {
				return nil, nil, fmt.Errorf("%s.%s is %q but %s.%s is %q; expected one rope type", field, typeKey, typ, field, k, t)
			}
			if t != "default" && t != llama.RopeScalingLlama3 && t != llama.RopeScalingLinear {
				return nil, nil, fmt.Errorf("%s.%s is %q (%s); only plain rotary embeddings (\"default\"), Llama 3.1's \"llama3\" and \"linear\" scaling are supported", field, k, t, compactJSON(raw))
			}
			typ, typeKey = t, k
		case "partial_rotary_factor":
			var f float64
			if err := json.Unmarshal(v, &f); err != nil || f != 1 {
				return nil, nil, fmt.Errorf("%s.partial_rotary_factor is %s; only rotary embeddings over the whole head (1.0) are supported", field, v)
			}
		case "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings":
			if typ != llama.RopeScalingLlama3 && !(typ == llama.RopeScalingLinear && k == "factor") {
				return nil, nil, fmt.Errorf("%s.%s is set (%s) without rope_type \"llama3\"; only plain rotary embeddings, Llama 3.1's \"llama3\" scaling and \"linear\" scaling (a factor alone) are supported", field, k, compactJSON(raw))
			}
			f, err := number(k)
			if err != nil {
				return nil, nil, err
			}
			set[k] = true
			switch k {
			case "factor":
				s.Factor = f
			case "low_freq_factor":
				s.LowFreqFactor = f
			case "high_freq_factor":
				s.HighFreqFactor = f
			default:
				if f != math.Trunc(f) || f < 1 || f > math.MaxInt32 {
					return nil, nil, fmt.Errorf("%s.original_max_position_embeddings is %s; expected a positive whole number", field, v)
				}
				s.OriginalMaxPos = int(f)
			}
		default:
			return nil, nil, fmt.Errorf("%s.%s is set (%s); only plain rotary embeddings and Llama 3.1's \"llama3\" scaling are supported", field, k, compactJSON(raw))
		}
	}
	switch typ {
	case "":
		return nil, theta, nil
	case "default":
		return &llama.RopeScaling{}, theta, nil
	case llama.RopeScalingLinear:
		if !set["factor"] {
			return nil, nil, fmt.Errorf("%s.factor is missing; rope_type \"linear\" needs one", field)
		}
		if !(s.Factor > 0) {
			return nil, nil, fmt.Errorf("%s.factor is %v; expected a positive number", field, s.Factor)
		}
		return &llama.RopeScaling{Type: llama.RopeScalingLinear, Factor: s.Factor}, theta, nil
	}
	s.Type = llama.RopeScalingLlama3
	for _, k := range []string{"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"} {
		if !set[k] {
			return nil, nil, fmt.Errorf("%s.%s is missing; rope_type \"llama3\" needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings", field, k)
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"factor", s.Factor}, {"low_freq_factor", s.LowFreqFactor}, {"high_freq_factor", s.HighFreqFactor}} {
		if !(f.v > 0) {
			return nil, nil, fmt.Errorf("%s.%s is %v; expected a positive number", field, f.name, f.v)
		}
	}
	if s.LowFreqFactor >= s.HighFreqFactor {
		return nil, nil, fmt.Errorf("%s.low_freq_factor %v is not below high_freq_factor %v; the scaling fades out between them", field, s.LowFreqFactor, s.HighFreqFactor)
	}
	return &s, theta, nil
}

// compactJSON returns raw without insignificant white space, so that an
// object quoted in an error message stays on one line.
func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

func isRopeTypeKey(k string) bool { return k == "rope_type" || k == "type" }

// Architecture returns the model_type and architecture under which
// transformers runs a model of configuration cfg: MistralForCausalLM for
// Family llama.FamilyMistral, Gemma2ForCausalLM for llama.FamilyGemma2,
// Gemma3ForCausalLM for llama.FamilyGemma3,
// Qwen3ForCausalLM for QK-norm, Qwen2ForCausalLM for biases on q/k/v
// alone, LlamaForCausalLM otherwise.
func Architecture(cfg llama.Config) (modelType, arch string) {
	switch cfg.Family {
	case llama.FamilyMistral:
		return ModelTypeMistral, ArchMistral
	case llama.FamilyGemma2:
		return ModelTypeGemma2, ArchGemma2
	case llama.FamilyGemma3:
		return ModelTypeGemma3Text, ArchGemma3
	}
	if cfg.QKNorm {
		return ModelTypeQwen3, ArchQwen3
	}
	if cfg.AttentionBias == llama.BiasQKV {
		return ModelTypeQwen2, ArchQwen2
	}
	return ModelTypeLlama, ArchLlama
}

// EncodeConfig returns the config.json that describes cfg for transformers:
// a LlamaConfig for LlamaForCausalLM (attention_bias true with
// llama.BiasQKVO), a Qwen2Config for Qwen2ForCausalLM when cfg has
// Qwen2's q/k/v biases, a Qwen3Config for Qwen3ForCausalLM when cfg has
// QK-norm (with no biases, or with llama.BiasQKVO as attention_bias true;
// Qwen2's q/k/v biases with QK-norm are no transformers model and an
// error), a MistralConfig with a null sliding_window for Family
// llama.FamilyMistral, a Gemma2Config for Family llama.FamilyGemma2 (see
// encodeGemma2), or a Gemma3TextConfig for Family llama.FamilyGemma3 (see
// [Architecture] and encodeGemma3). head_dim is
// written for every
// type but Qwen2 (whose config has no such field), and for Qwen2 where it
// differs from hidden_size / num_attention_heads. It names no bos_token_id
// or eos_token_id: cfg does not know them, and the tokenizer and
// generation_config.json written beside it do.
func EncodeConfig(cfg llama.Config) ([]byte, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.QKNorm && cfg.AttentionBias == llama.BiasQKV {
		return nil, fmt.Errorf("hf: a model with QK-norm and biases on q/k/v but not o_proj has no transformers architecture (Qwen3's attention_bias puts one on all four projections)")
	}
	modelType, arch := Architecture(cfg)
	switch modelType {
	case ModelTypeGemma3Text:
		return encodeGemma3(cfg)
	case ModelTypeGemma2:
		return encodeGemma2(cfg)
	}
	m := map[string]any{
		"architectures":           []string{arch},
		"model_type":              modelType,
		"hidden_act":              "silu",
		"hidden_size":             cfg.Dim,
		"intermediate_size":       cfg.HiddenDim,
		"num_hidden_layers":       cfg.NumLayers,
		"num_attention_heads":     cfg.NumHeads,
		"num_key_value_heads":     cfg.NumKVHeads,
		"vocab_size":              cfg.VocabSize,
		"max_position_embeddings": cfg.MaxSeqLen,
		"rms_norm_eps":            pyFloat(cfg.NormEps),
		"rope_theta":              pyFloat(cfg.RopeTheta), // 10000.0, as Python writes the float
		"rope_scaling":            encodeRopeScaling(cfg.RopeScaling),
		"tie_word_embeddings":     cfg.TiedEmbeddings,
		"attention_dropout":       pyFloat(0),
		"torch_dtype":             "float32",
	}
	switch modelType {
	case ModelTypeQwen2:
		// Qwen2Config has no head_dim, attention_bias or mlp_bias; its
		// biases are fixed. Sliding-window attention is off, as in the
		// released checkpoints. Qwen2Attention reads a head_dim that a
		// config gives, so a head width of its own is written.
		m["use_sliding_window"] = false
		m["sliding_window"] = nil
		m["max_window_layers"] = cfg.NumLayers
		if cfg.HeadWidth != 0 {
			m["head_dim"] = cfg.HeadDim()
		}
	case ModelTypeQwen3:
		// As Qwen3's released configs: head_dim always (its default is
		// 128, not the width over the heads), sliding-window attention
		// off; Qwen3Config has no mlp_bias.
		m["head_dim"] = cfg.HeadDim()
		m["attention_bias"] = cfg.AttentionBias == llama.BiasQKVO
		m["use_sliding_window"] = false
		m["sliding_window"] = nil
		m["max_window_layers"] = cfg.NumLayers
	case ModelTypeMistral:
		// MistralConfig has no attention_bias or mlp_bias. No window
		// must be written null: an absent one means 4096.
		m["head_dim"] = cfg.HeadDim()
		m["sliding_window"] = nil
		if cfg.SlidingWindow > 0 {
			m["sliding_window"] = cfg.SlidingWindow
		}
	default:
		m["head_dim"] = cfg.HeadDim()
		m["attention_bias"] = cfg.AttentionBias == llama.BiasQKVO
		m["mlp_bias"] = false
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// encodeRopeScaling returns the rope_scaling object of s as Llama 3.1's
// config.json writes it, or nil (JSON null) for no scaling.
func encodeRopeScaling(s llama.RopeScaling) any {
	if s.IsZero() {
		return nil
	}
	if s.Type == llama.RopeScalingLinear {
		return map[string]any{"rope_type": s.Type, "factor": pyFloat(s.Factor)}
	}
	return map[string]any{
		"rope_type":                        s.Type,
		"factor":                           pyFloat(s.Factor),
		"low_freq_factor":                  pyFloat(s.LowFreqFactor),
		"high_freq_factor":                 pyFloat(s.HighFreqFactor),
		"original_max_position_embeddings": s.OriginalMaxPos,
	}
}

// pyFloat is a float64 that marshals with a decimal point even when whole
// (8.0, not 8), as Python writes floats: transformers warns about a
// rope_scaling factor that reads back as an int.
type pyFloat float64

func (f pyFloat) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(float64(f))
	if err == nil && !bytes.ContainsAny(b, ".eE") {
		b = append(b, '.', '0')
	}
	return b, err
}

// ParseIndex decodes a model.safetensors.index.json and returns its
// weight_map (tensor name → shard file name). Shard names must be plain
// file names ending in ".safetensors" (no folders, so an index cannot point
// outside its checkpoint), and no tensor may be listed twice. name is used
// in error messages.
func ParseIndex(data []byte, name string) (map[string]string, error) {
	fail := func(format string, args ...any) (map[string]string, error) {
		return nil, fmt.Errorf("hf: %s: %s", name, fmt.Sprintf(format, args...))
	}
	var idx struct {
		WeightMap json.RawMessage `json:"weight_map"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&idx); err != nil {
		return fail("not a valid index: %v", err)
	}
	if dec.More() {
		return fail("trailing data after the JSON object")
	}
	if len(idx.WeightMap) == 0 {
		return fail("missing weight_map")
	}
	// Walk the map token by token: encoding/json would silently keep the
	// last of two entries for the same tensor.
	wd := json.NewDecoder(bytes.NewReader(idx.WeightMap))
	if tok, err := wd.Token(); err != nil || tok != json.Delim('{') {
		return fail("weight_map must be an object of tensor name to file name")
	}
	wm := map[string]string{}
	for wd.More() {
		tok, err := wd.Token()
		if err != nil {
			return fail("weight_map: %v", err)
		}
		tensor := tok.(string)
		var file string
		if err := wd.Decode(&file); err != nil {
			return fail("weight_map[%q] must be a file name string: %v", tensor, err)
		}
		if _, dup := wm[tensor]; dup {
			return fail("weight_map lists tensor %q twice", tensor)
		}
		if file != path.Base(file) || strings.ContainsAny(file, `/\`) || file == "." || file == ".." || !strings.HasSuffix(file, ".safetensors") {
			return fail("weight_map[%q] = %q; expected a plain file name ending in .safetensors in the same folder", tensor, file)
		}
		wm[tensor] = file
	}
	if len(wm) == 0 {
		return fail("weight_map is empty")
	}
	return wm, nil
}
