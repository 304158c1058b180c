package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/sora-go/sora/models/llama"
)

// The attention kinds of Gemma 3's layer_types.
const (
	fullAttention    = "full_attention"
	slidingAttention = "sliding_attention"
)

// parseGemma3 reads a Gemma3TextConfig (model_type "gemma3_text",
// Gemma3ForCausalLM) into a llama.Config of family llama.FamilyGemma3,
// with Gemma3TextConfig's defaults for absent fields (except the five that
// every config must give, as for the other types). The layers' kinds come
// from layer_types, or from the older sliding_window_pattern (also saved
// as _sliding_window_pattern; default 6: every sixth layer full, the rest
// sliding) where layer_types is absent or null, as transformers derives
// them. The full layers' rotary embedding is rope_theta with rope_scaling
// ("linear" in the 4B–27B models' text configs); the sliding ones' is
// rope_local_base_freq, unscaled. Newer transformers may give both as
// rope_parameters keyed by layer type, which must then agree with the
// top-level fields where both are present. Refused by name: logit
// soft-capping (attn_logit_softcapping, final_logit_softcapping not null:
// Gemma 2's, model_type "gemma2", see parseGemma2; no Gemma 3 model has it),
// bidirectional attention (use_bidirectional_attention, EmbeddingGemma),
// activations other than gelu_pytorch_tanh and silu, attention dropout,
// partial rotary embeddings, a null head_dim, a null sliding_window where
// some layer slides, and scalings of the sliding layers. hidden_act is not
// read (Gemma3TextConfig reads hidden_activation).
func parseGemma3(c configJSON) (llama.Config, error) {
	if err := c.checkShapeFields(); err != nil {
		return llama.Config{}, err
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"attn_logit_softcapping", c.AttnLogitSoftcapping}, {"final_logit_softcapping", c.FinalLogitSoftcapping}} {
		if v := string(bytes.TrimSpace(f.raw)); v != "" && v != "null" {
			return llama.Config{}, fmt.Errorf("%s is %s; logit soft-capping is not supported in a Gemma 3 config (expected null, as Gemma 3 sets it; Gemma 2's configs, model_type %q, have it)", f.name, truncate(compactJSON(f.raw), 40), ModelTypeGemma2)
		}
	}
	cfg := llama.Config{
		MaxSeqLen: defaultGemma3MaxPos, RopeTheta: defaultGemma3RopeTheta, QKNorm: true,
		Family: llama.FamilyGemma3, QueryPreAttnScalar: defaultGemma3QueryScalar,
	}
	if err := gemmaCommon(c, &cfg, " (EmbeddingGemma's encoder)", "Gemma 3", "Gemma3TextConfig", defaultGemma3HeadDim, defaultGemma3KVHeads); err != nil {
		return llama.Config{}, err
	}
	var err error
	if err := checkLayerCount(cfg.NumLayers); err != nil {
		return llama.Config{}, err
	}
	kinds, err := gemma3LayerKinds(c, cfg.NumLayers)
	if err != nil {
		return llama.Config{}, err
	}
	if err := gemma3Rope(c, &cfg); err != nil {
		return llama.Config{}, err
	}
	if cfg.SlidingWindow, err = gemmaWindow(c.SlidingWindow, kinds, defaultGemma3Window); err != nil {
		return llama.Config{}, err
	}
	if cfg.SlidingWindow > 0 {
		// Some layer slides: it needs the window and the local base.
		cfg.LayerKinds = kinds
	} else {
		// No layer slides: the window and the local base go unused,
		// and are left out (LayerKinds "" is every layer full) so that
		// one model has one Config.
		cfg.LocalRopeTheta = 0
	}
	if err := cfg.Validate(); err != nil {
		return llama.Config{}, err
	}
	return cfg, nil
}

// gemmaCommon reads into cfg what Gemma 2's and Gemma 3's configs share
// (cfg holds the family, its defaults and what the caller read): the
// shape, the activation (GeGLU with tanh GELU unless hidden_activation says
// silu), norms, tied embeddings, attention bias, key/value heads,
// query_pre_attn_scalar and head_dim, whose defaults are the model's
// (model names it in errors, class is its transformers config class), and
// refuses what neither supports: bidirectional attention (bidirectional
// says where it comes from), attention dropout, partial rotary embeddings.
func gemmaCommon(c configJSON, cfg *llama.Config, bidirectional, model, class string, defHeadDim, defKVHeads int) error {
	if c.UseBidirectionalAttention != nil && *c.UseBidirectionalAttention {
		return fmt.Errorf("use_bidirectional_attention is true%s; only causal attention is supported", bidirectional)
	}
	cfg.Activation = llama.GELUTanh
	if c.HiddenActivation != nil {
		switch *c.HiddenActivation {
		case "gelu_pytorch_tanh":
		case "silu":
			cfg.Activation = llama.SiLU
		default:
			return fmt.Errorf("hidden_activation is %q; only \"gelu_pytorch_tanh\" (Gemma's) and \"silu\" are supported", *c.HiddenActivation)
		}
	}
	if c.AttentionDropout != nil && *c.AttentionDropout != 0 {
		return fmt.Errorf("attention_dropout is %v; attention dropout is not implemented (expected 0)", *c.AttentionDropout)
	}
	if c.PartialRotaryFactor != nil && *c.PartialRotaryFactor != 1 {
		return fmt.Errorf("partial_rotary_factor is %v; only rotary embeddings over the whole head (1.0) are supported", *c.PartialRotaryFactor)
	}
	cfg.Dim, cfg.HiddenDim, cfg.NumLayers = *c.HiddenSize, *c.IntermediateSize, *c.NumHiddenLayers
	cfg.NumHeads, cfg.VocabSize = *c.NumAttentionHeads, *c.VocabSize
	cfg.NormEps, cfg.TiedEmbeddings, cfg.RopeLayout = defaultNormEps, true, llama.RopeHalfSplit
	if c.AttentionBias != nil && *c.AttentionBias {
		cfg.AttentionBias = llama.BiasQKVO
	}
	var err error
	if cfg.NumKVHeads, err = parseKVHeads(c.NumKeyValueHeads, defKVHeads, cfg.NumHeads); err != nil {
		return err
	}
	if c.MaxPositionEmbeddings != nil {
		cfg.MaxSeqLen = *c.MaxPositionEmbeddings
	}
	if c.RMSNormEps != nil {
		cfg.NormEps = *c.RMSNormEps
	}
	if c.TieWordEmbeddings != nil {
		cfg.TiedEmbeddings = *c.TieWordEmbeddings
	}
	if c.QueryPreAttnScalar != nil {
		if v := *c.QueryPreAttnScalar; !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("query_pre_attn_scalar is %v; expected a positive number", v)
		}
		cfg.QueryPreAttnScalar = *c.QueryPreAttnScalar
	}
	headDim := defHeadDim
	switch string(bytes.TrimSpace(c.HeadDim)) {
	case "":
	case "null":
		return fmt.Errorf("head_dim is null; %s needs the width of its attention heads (expected a positive whole number, or no field for %s's default of %d)", model, class, defHeadDim)
	default:
		if headDim, err = parseHeadDim(c.HeadDim, false); err != nil {
			return err
		}
	}
	if cfg.NumHeads <= 0 || cfg.Dim%cfg.NumHeads != 0 || cfg.Dim/cfg.NumHeads != headDim {
		cfg.HeadWidth = headDim
	}
	return nil
}

// gemmaWindow returns the sliding window of a Gemma model whose layers'
// kinds are kinds: 0 where no layer slides (sliding_window is then not
// read), else sliding_window, def where the field is absent. A null
// window with sliding layers is refused.
func gemmaWindow(raw json.RawMessage, kinds string, def int) (int, error) {
	i := strings.IndexByte(kinds, llama.LayerSliding)
	if i < 0 {
		return 0, nil
	}
	switch string(bytes.TrimSpace(raw)) {
	case "":
		return def, nil
	case "null":
		return 0, fmt.Errorf("sliding_window is null but layer %d is %s; expected the window's width", i, slidingAttention)
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || f < 1 || f > math.MaxInt32 {
		return 0, fmt.Errorf("sliding_window is %s; expected a whole number from 1 to %d", truncate(compactJSON(raw), 60), math.MaxInt32)
	}
	return int(f), nil
}

// layerTypes returns the layers' kinds as llama.Config.LayerKinds spells
// them from layer_types (raw), one "full_attention" or
// "sliding_attention" per layer, and whether the field gives them (not
// where it is absent or null).
func layerTypes(raw json.RawMessage, layers int) (string, bool, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, nil
	}
	var types []string
	if err := json.Unmarshal(raw, &types); err != nil {
		return "", false, fmt.Errorf("layer_types is %s; expected a list of strings", truncate(compactJSON(raw), 60))
	}
	if len(types) != layers {
		return "", false, fmt.Errorf("layer_types lists %d layers; num_hidden_layers is %d", len(types), layers)
	}
	kinds := make([]byte, len(types))
	for i, t := range types {
		switch t {
		case fullAttention:
			kinds[i] = llama.LayerFull
		case slidingAttention:
			kinds[i] = llama.LayerSliding
		default:
			return "", false, fmt.Errorf("layer_types[%d] is %q; expected %q or %q", i, t, fullAttention, slidingAttention)
		}
	}
	return string(kinds), true, nil
}

// gemma3LayerKinds returns the layers' kinds as llama.Config.LayerKinds
// spells them, from layer_types or from the sliding-window pattern.
func gemma3LayerKinds(c configJSON, layers int) (string, error) {
	if kinds, ok, err := layerTypes(c.LayerTypes, layers); ok || err != nil {
		return kinds, err
	}
	pattern := 0
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"sliding_window_pattern", c.SlidingWindowPattern}, {"_sliding_window_pattern", c.PrivateSlidingWindowPattern}} {
		if v := string(bytes.TrimSpace(f.raw)); v == "" || v == "null" {
			continue
		}
		var p float64
		if err := json.Unmarshal(f.raw, &p); err != nil || p != math.Trunc(p) || p < 1 || p > math.MaxInt32 {
			return "", fmt.Errorf("%s is %s; expected a whole number from 1 to %d", f.name, truncate(compactJSON(f.raw), 60), math.MaxInt32)
		}
		if pattern != 0 && int(p) != pattern {
			return "", fmt.Errorf("sliding_window_pattern is %d but _sliding_window_pattern is %v; expected one pattern", pattern, p)
		}
		pattern = int(p)
	}
	if pattern == 0 {
		pattern = defaultGemma3Pattern
	}
	kinds := make([]byte, layers)
	for i := range kinds {
		kinds[i] = llama.LayerSliding
		if (i+1)%pattern == 0 {
			kinds[i] = llama.LayerFull
		}
	}
	return string(kinds), nil
}

// gemma3Rope sets the rotary bases and the full layers' scaling of cfg
// from rope_theta, rope_local_base_freq, rope_scaling and rope_parameters.
func gemma3Rope(c configJSON, cfg *llama.Config) error {
	full, _, err := parseRopeObject("rope_scaling", c.RopeScaling)
	if err != nil {
		return err
	}
	theta, local := c.RopeTheta, c.RopeLocalBaseFreq
	if raw := bytes.TrimSpace(c.RopeParameters); len(raw) > 0 && string(raw) != "null" {
		var byKind map[string]json.RawMessage
		if err := json.Unmarshal(raw, &byKind); err != nil {
			return fmt.Errorf("rope_parameters must be an object keyed by layer type (%s)", truncate(compactJSON(c.RopeParameters), 60))
		}
		keys := make([]string, 0, len(byKind))
		for k := range byKind {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			field := "rope_parameters." + k
			if k != fullAttention && k != slidingAttention {
				return fmt.Errorf("%s is set; Gemma 3's rope_parameters are keyed by layer type (%q, %q)", field, fullAttention, slidingAttention)
			}
			s, t, err := parseRopeObject(field, byKind[k])
			if err != nil {
				return err
			}
			switch k {
			case fullAttention:
				if s != nil && full != nil && *s != *full {
					return fmt.Errorf("rope_scaling (%s) and %s (%s) describe different rotary embeddings; expected one, or the same in both",
						compactJSON(c.RopeScaling), field, compactJSON(byKind[k]))
				}
				if full == nil {
					full = s
				}
				if t != nil && theta != nil && *t != *theta {
					return fmt.Errorf("rope_theta is %v but %s.rope_theta is %v; expected one value", *theta, field, *t)
				}
				if theta == nil {
					theta = t
				}
			case slidingAttention:
				if s != nil && !s.IsZero() {
					return fmt.Errorf("%s scales the sliding layers' rotary embedding (%s); Gemma 3's sliding layers rotate unscaled", field, compactJSON(byKind[k]))
				}
				if t != nil && local != nil && *t != *local {
					return fmt.Errorf("rope_local_base_freq is %v but %s.rope_theta is %v; expected one value", *local, field, *t)
				}
				if local == nil {
					local = t
				}
			}
		}
	}
	if theta != nil {
		cfg.RopeTheta = *theta
	}
	cfg.LocalRopeTheta = defaultGemma3LocalTheta
	if local != nil {
		cfg.LocalRopeTheta = *local
	}
	if full != nil {
		cfg.RopeScaling = *full
	}
	return nil
}

// encodeLayerTypes returns cfg's layers' kinds as layer_types spells them.
func encodeLayerTypes(cfg llama.Config) []string {
	types := make([]string, cfg.NumLayers)
	for i := range types {
		types[i] = fullAttention
		if cfg.Sliding(i) {
			types[i] = slidingAttention
		}
	}
	return types
}

// gemmaConfigJSON returns the fields of a Gemma config.json that Gemma 2's
// and Gemma 3's share, for architecture arch and model_type modelType,
// with the sliding window given and query_pre_attn_scalar head_dim where
// the config leaves it 0.
func gemmaConfigJSON(cfg llama.Config, arch, modelType string, window int) map[string]any {
	scalar := cfg.QueryPreAttnScalar
	if scalar == 0 {
		scalar = float64(cfg.HeadDim())
	}
	return map[string]any{
		"architectures":           []string{arch},
		"model_type":              modelType,
		"hidden_activation":       cfg.Activation.String(),
		"hidden_size":             cfg.Dim,
		"intermediate_size":       cfg.HiddenDim,
		"num_hidden_layers":       cfg.NumLayers,
		"num_attention_heads":     cfg.NumHeads,
		"num_key_value_heads":     cfg.NumKVHeads,
		"head_dim":                cfg.HeadDim(),
		"vocab_size":              cfg.VocabSize,
		"max_position_embeddings": cfg.MaxSeqLen,
		"rms_norm_eps":            pyFloat(cfg.NormEps),
		"rope_theta":              pyFloat(cfg.RopeTheta),
		"tie_word_embeddings":     cfg.TiedEmbeddings,
		"attention_bias":          cfg.AttentionBias == llama.BiasQKVO,
		"attention_dropout":       pyFloat(0),
		"query_pre_attn_scalar":   scalar,
		"sliding_window":          window,
		"layer_types":             encodeLayerTypes(cfg),
		"torch_dtype":             "float32",
	}
}

// encodeGemma3 returns the config.json of a Gemma 3 text model as
// Gemma3TextConfig writes it: layer_types, and sliding_window_pattern too
// where a pattern gives the same layers (the key that transformers 4.50 to
// 4.52 read instead); sliding_window and rope_local_base_freq are
// Gemma3TextConfig's defaults when no layer slides.
func encodeGemma3(cfg llama.Config) ([]byte, error) {
	window, local := cfg.SlidingWindow, cfg.LocalRopeTheta
	if window == 0 {
		window, local = defaultGemma3Window, defaultGemma3LocalTheta
	}
	m := gemmaConfigJSON(cfg, ArchGemma3, ModelTypeGemma3Text, window)
	m["rope_local_base_freq"] = pyFloat(local)
	m["rope_scaling"] = encodeRopeScaling(cfg.RopeScaling)
	m["attn_logit_softcapping"] = nil
	m["final_logit_softcapping"] = nil
	for p := 1; p <= cfg.NumLayers+1; p++ {
		same := true
		for i := range cfg.NumLayers {
			if cfg.Sliding(i) != ((i+1)%p != 0) {
				same = false
				break
			}
		}
		if same {
			m["sliding_window_pattern"] = p
			break
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
