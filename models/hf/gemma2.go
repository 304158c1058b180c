package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"github.com/sora-go/sora/models/llama"
)

// Gemma2Config's defaults (transformers' configuration_gemma2.py), where
// they differ from Gemma 3's or are Gemma 2's alone.
const (
	defaultGemma2MaxPos      = 8192
	defaultGemma2KVHeads     = 4
	defaultGemma2HeadDim     = 256
	defaultGemma2RopeTheta   = 10000.0
	defaultGemma2Window      = 4096
	defaultGemma2QueryScalar = 256
	defaultGemma2AttnCap     = 50.0 // attn_logit_softcapping
	defaultGemma2FinalCap    = 30.0 // final_logit_softcapping
)

// parseGemma2 reads a Gemma2Config (model_type "gemma2",
// Gemma2ForCausalLM: gemma-2-2b, 9b, 27b and their -it versions) into a
// llama.Config of family llama.FamilyGemma2, with Gemma2Config's defaults
// for absent fields (except the five that every config must give, as for
// the other types). attn_logit_softcapping and final_logit_softcapping
// are positive numbers, or null for no capping; absent they are
// Gemma2Config's 50.0 and 30.0, which cap. The layers' kinds come from
// layer_types where it is given (newer transformers), else Gemma 2's
// alternation: even-indexed layers (0, 2, …) slide, odd ones attend to
// every position, as Gemma2Config derives layer_types (and older
// transformers' Gemma2Attention decided from layer_idx % 2). Every layer
// rotates with rope_theta (or rope_parameters.rope_theta; both must agree
// where both are given); a rotary scaling is refused. Refused by name: bidirectional attention, activations other than
// gelu_pytorch_tanh and silu, attention dropout, partial rotary
// embeddings, a null head_dim and a null sliding_window where some layer
// slides. hidden_act (which the published configs carry beside
// hidden_activation), sliding_window_pattern and rope_local_base_freq
// are not read, as Gemma2Config reads none of them.
func parseGemma2(c configJSON) (llama.Config, error) {
	if err := c.checkShapeFields(); err != nil {
		return llama.Config{}, err
	}
	attnCap, err := parseSoftcap("attn_logit_softcapping", c.AttnLogitSoftcapping, defaultGemma2AttnCap)
	if err != nil {
		return llama.Config{}, err
	}
	finalCap, err := parseSoftcap("final_logit_softcapping", c.FinalLogitSoftcapping, defaultGemma2FinalCap)
	if err != nil {
		return llama.Config{}, err
	}
	cfg := llama.Config{
		MaxSeqLen: defaultGemma2MaxPos, RopeTheta: defaultGemma2RopeTheta, Family: llama.FamilyGemma2,
		QueryPreAttnScalar: defaultGemma2QueryScalar, AttnLogitSoftcap: attnCap, FinalLogitSoftcap: finalCap,
	}
	if err := gemmaCommon(c, &cfg, "", "Gemma 2", "Gemma2Config", defaultGemma2HeadDim, defaultGemma2KVHeads); err != nil {
		return llama.Config{}, err
	}
	if err := gemma2Rope(c, &cfg); err != nil {
		return llama.Config{}, err
	}
	if err := checkLayerCount(cfg.NumLayers); err != nil {
		return llama.Config{}, err
	}
	kinds, given, err := layerTypes(c.LayerTypes, cfg.NumLayers)
	if err != nil {
		return llama.Config{}, err
	}
	if !given {
		k := make([]byte, cfg.NumLayers)
		for i := range k {
			k[i] = llama.LayerSliding
			if i%2 == 1 {
				k[i] = llama.LayerFull
			}
		}
		kinds = string(k)
	}
	if cfg.SlidingWindow, err = gemmaWindow(c.SlidingWindow, kinds, defaultGemma2Window); err != nil {
		return llama.Config{}, err
	}
	if cfg.SlidingWindow > 0 {
		// Gemma 2 has one rotary embedding, whose base the sliding layers
		// share; with no layer sliding the kinds are left out (every
		// layer full), so that one model has one Config.
		cfg.LayerKinds, cfg.LocalRopeTheta = kinds, cfg.RopeTheta
	}
	if err := cfg.Validate(); err != nil {
		return llama.Config{}, err
	}
	return cfg, nil
}

// parseSoftcap reads a soft-capping field: def where it is absent, 0 (no
// capping) where it is null, else a positive number.
func parseSoftcap(field string, raw json.RawMessage, def float64) (float64, error) {
	switch string(bytes.TrimSpace(raw)) {
	case "":
		return def, nil
	case "null":
		return 0, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || !(f > 0) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%s is %s; expected a positive number, or null for no soft-capping", field, truncate(compactJSON(raw), 40))
	}
	return f, nil
}

// gemma2Rope sets cfg's rotary base from rope_theta and rope_parameters
// (a flat object, as Gemma2RotaryEmbedding reads it) and refuses any
// rotary scaling in them or in rope_scaling.
func gemma2Rope(c configJSON, cfg *llama.Config) error {
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"rope_scaling", c.RopeScaling}, {"rope_parameters", c.RopeParameters}} {
		s, theta, err := parseRopeObject(f.name, f.raw)
		if err != nil {
			return err
		}
		if s != nil && !s.IsZero() {
			return fmt.Errorf("%s is %s; Gemma 2's rotary embedding is unscaled (expected no scaling, rope_type \"default\")", f.name, truncate(compactJSON(f.raw), 80))
		}
		if theta != nil {
			if c.RopeTheta != nil && *c.RopeTheta != *theta {
				return fmt.Errorf("rope_theta is %v but rope_parameters.rope_theta is %v; expected one value", *c.RopeTheta, *theta)
			}
			cfg.RopeTheta = *theta
		}
	}
	if c.RopeTheta != nil {
		cfg.RopeTheta = *c.RopeTheta
	}
	return nil
}

// encodeGemma2 returns the config.json of a Gemma 2 model as Gemma2Config
// writes it: layer_types (which older transformers did not read,
// sliding the even-indexed layers whatever it says: the alternation
// Gemma 2's models have), and the soft-caps as numbers or null for none;
// sliding_window is Gemma2Config's default when no layer slides, and
// query_pre_attn_scalar head_dim where the config leaves it 0.
func encodeGemma2(cfg llama.Config) ([]byte, error) {
	window := cfg.SlidingWindow
	if window == 0 {
		window = defaultGemma2Window
	}
	softcap := func(v float64) any {
		if v == 0 {
			return nil
		}
		return pyFloat(v)
	}
	m := gemmaConfigJSON(cfg, ArchGemma2, ModelTypeGemma2, window)
	m["attn_logit_softcapping"] = softcap(cfg.AttnLogitSoftcap)
	m["final_logit_softcapping"] = softcap(cfg.FinalLogitSoftcap)
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
