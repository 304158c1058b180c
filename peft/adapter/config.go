package adapter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/sora-go/sora/peft"
)

// ConfigFile and WeightsFile are the names of an adapter folder's files,
// as Hugging Face PEFT names them.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
)

// Meta is what an adapter config records besides the method: where the
// adapter came from.
type Meta struct {
	// BaseModel is base_model_name_or_path.
	BaseModel string
	// TaskType is task_type, e.g. "CAUSAL_LM" or "SEQ_CLS".
	TaskType string
	// ModulesToSave is modules_to_save: layers that were trained whole
	// beside the adapter (a classifier's head, "score") and are stored in
	// the weights file under their own names, as Hugging Face PEFT stores
	// them: base_model.model.<layer>.weight (and .bias). An entry names a
	// layer or the last components of its name ("score" selects "score"
	// and "x.score"); Hugging Face PEFT's sequence classifiers list
	// "classifier" and "score", whichever the model has.
	ModulesToSave []string
	// ModuleRowOrder is set for files written by this package before it
	// marked its files' row order (sora_row_order): those hold the rows of
	// q/k projections in the order of the model they were trained on,
	// not Hugging Face's, and [Load] leaves them as they are. Files that
	// carry the mark, and Hugging Face PEFT's own, hold Hugging Face's
	// order.
	ModuleRowOrder bool
}

// rowOrderHF is the value of sora_row_order that [Save] writes: the file
// holds Hugging Face's row order (see [RowOrderer]).
const rowOrderHF = "huggingface"

// fileConfig is adapter_config.json as Hugging Face PEFT writes it for
// LoRA/DoRA and OFT, plus this project's fields for the other methods.
// Fields PEFT has that change the computation but that this package does
// not implement are read so that a config using them is refused, not
// silently misread.
type fileConfig struct {
	PeftType      string          `json:"peft_type"`
	TaskType      *string         `json:"task_type"`
	BaseModel     *string         `json:"base_model_name_or_path"`
	R             *int            `json:"r"`
	LoraAlpha     *float64        `json:"lora_alpha"`
	LoraDropout   *float64        `json:"lora_dropout"`
	TargetModules json.RawMessage `json:"target_modules"`
	Bias          *string         `json:"bias"`
	UseDora       *bool           `json:"use_dora"`

	UseRSLoRA         *bool                      `json:"use_rslora"`
	FanInFanOut       *bool                      `json:"fan_in_fan_out"`
	ModulesToSave     json.RawMessage            `json:"modules_to_save"`
	LayersToTransform json.RawMessage            `json:"layers_to_transform"`
	ExcludeModules    json.RawMessage            `json:"exclude_modules"`
	RankPattern       map[string]json.RawMessage `json:"rank_pattern"`
	AlphaPattern      map[string]json.RawMessage `json:"alpha_pattern"`
	LoraBias          *bool                      `json:"lora_bias"`
	LayerReplication  json.RawMessage            `json:"layer_replication"`
	InitLoraWeights   json.RawMessage            `json:"init_lora_weights"`
	AloraTokens       json.RawMessage            `json:"alora_invocation_tokens"`

	OFTBlockSize          *int     `json:"oft_block_size"`
	ModuleDropout         *float64 `json:"module_dropout"`
	UseCayleyNeumann      *bool    `json:"use_cayley_neumann"`
	NumCayleyNeumannTerms *int     `json:"num_cayley_neumann_terms"`
	Coft                  *bool    `json:"coft"`
	BlockShare            *bool    `json:"block_share"`

	// This project's fields.
	Method        *string  `json:"sora_method"`
	RotationRank  *int     `json:"rotation_rank"`
	RP            *int     `json:"r_p"` // the reference's spelling, read only
	ExactRotation *bool    `json:"exact_rotation"`
	LoRAPlusRatio *float64 `json:"loraplus_lr_ratio"`
	RowOrder      *string  `json:"sora_row_order"`
}

// ParseConfig reads an adapter_config.json (its bytes; name is used in
// errors) into a method configuration and its metadata. It accepts the
// configs Hugging Face PEFT writes for LoRA, DoRA and OFT and those [Save]
// writes; a config that asks for something this package does not compute
// (rank patterns, trainable biases, initialisations that rewrite the base
// weights such as PiSSA, activated LoRA, exact Cayley OFT, …) is refused
// with the field named.
func ParseConfig(data []byte, name string) (peft.Config, Meta, error) {
	fail := func(format string, args ...any) (peft.Config, Meta, error) {
		return peft.Config{}, Meta{}, fmt.Errorf("adapter: %s: %s", name, fmt.Sprintf(format, args...))
	}
	var fc fileConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&fc); err != nil {
		return fail("not a valid adapter config: %v", err)
	}
	if dec.More() {
		return fail("trailing data after the JSON object")
	}
	var meta Meta
	if fc.BaseModel != nil {
		meta.BaseModel = *fc.BaseModel
	}
	if fc.TaskType != nil {
		meta.TaskType = *fc.TaskType
	}
	switch {
	case fc.RowOrder != nil && *fc.RowOrder != rowOrderHF:
		return fail("sora_row_order %q: want %q", *fc.RowOrder, rowOrderHF)
	case fc.RowOrder == nil && fc.Method != nil:
		// Written by this package before the mark existed.
		meta.ModuleRowOrder = true
	}
	modules, err := parseModulesToSave(fc.ModulesToSave)
	if err != nil {
		return fail("modules_to_save: %v", err)
	}
	meta.ModulesToSave = modules
	targets, err := parseTargets(fc.TargetModules)
	if err != nil {
		return fail("target_modules: %v", err)
	}
	cfg := peft.Config{TargetModules: targets}

	// Features that would change the function.
	unsupported := func(field string, set bool, why string) error {
		if set {
			return fmt.Errorf("adapter: %s: %s: %s", name, field, why)
		}
		return nil
	}
	isSet := func(raw json.RawMessage) bool {
		s := strings.TrimSpace(string(raw))
		return s != "" && s != "null" && s != "[]" && s != "{}"
	}
	checks := []error{
		unsupported("bias", fc.Bias != nil && *fc.Bias != "none", fmt.Sprintf("%q: only \"none\" (frozen biases) is supported", deref(fc.Bias))),
		unsupported("fan_in_fan_out", fc.FanInFanOut != nil && *fc.FanInFanOut, "true (Conv1D weights) is not supported"),
		unsupported("layers_to_transform", isSet(fc.LayersToTransform), "layer selection by index is not supported; name the layers in target_modules"),
		unsupported("exclude_modules", isSet(fc.ExcludeModules), "not supported; name the layers in target_modules"),
		unsupported("rank_pattern", len(fc.RankPattern) > 0, "per-layer ranks are not supported"),
		unsupported("alpha_pattern", len(fc.AlphaPattern) > 0, "per-layer alphas are not supported"),
		unsupported("layer_replication", isSet(fc.LayerReplication), "not supported"),
	}
	for _, err := range checks {
		if err != nil {
			return peft.Config{}, Meta{}, err
		}
	}

	switch fc.PeftType {
	case "LORA":
		if fc.LoraBias != nil && *fc.LoraBias {
			return fail("lora_bias: true (a bias on lora_B) is not supported")
		}
		if init, ok := residualInit(fc.InitLoraWeights); ok {
			return fail("init_lora_weights %q: PEFT's PiSSA, CorDA, OLoRA and LoftQ initialisations also rewrite the base weights (W0 − s·B₀·A₀, or a quantised W0), so this adapter applies to that residual model, not to the pretrained one; save it from PEFT with path_initial_model_for_weight_conversion, which writes a plain LoRA adapter of the pretrained model (PiSSA, CorDA, OLoRA), and load that", init)
		}
		if isSet(fc.AloraTokens) {
			return fail("alora_invocation_tokens: activated LoRA (the adapter applied only from the invocation tokens on) is not supported")
		}
		cfg.Method = peft.LoRA
		if fc.UseDora != nil && *fc.UseDora {
			cfg.Method = peft.DoRA
		}
		if fc.Method != nil {
			m, err := peft.ParseMethod(*fc.Method)
			if err != nil {
				return fail("sora_method: %v", err)
			}
			if m == peft.OFT || m == peft.Full {
				return fail("sora_method %q does not go with peft_type \"LORA\"", m)
			}
			isDoRA := m == peft.DoRA || m == peft.DoRAPEFT
			if fc.UseDora != nil && *fc.UseDora != isDoRA {
				return fail("use_dora %v contradicts sora_method %q", *fc.UseDora, m)
			}
			cfg.Method = m
		}
		if fc.R == nil {
			return fail("r is missing")
		}
		cfg.R = *fc.R
		if cfg.R < 1 {
			return fail("r %d: want a rank ≥ 1", cfg.R)
		}
		if fc.LoraAlpha == nil {
			return fail("lora_alpha is missing")
		}
		cfg.Alpha = *fc.LoraAlpha
		if !(cfg.Alpha > 0) {
			return fail("lora_alpha %g: want a positive number", cfg.Alpha)
		}
		cfg.RSLoRA = fc.UseRSLoRA != nil && *fc.UseRSLoRA
		if fc.LoraDropout != nil {
			cfg.Dropout = *fc.LoraDropout
		}
		if fc.ExactRotation != nil {
			cfg.ExactRotation = *fc.ExactRotation
		}
		if fc.LoRAPlusRatio != nil {
			cfg.LoRAPlusRatio = *fc.LoRAPlusRatio
		}
		// The rotation rank means something only to the rotation methods;
		// elsewhere it is ignored, as PEFT ignores fields it does not know.
		if spec := cfg.Method.Spec(); spec.Pre == peft.Rotation || spec.Post == peft.Rotation {
			switch {
			case fc.RotationRank != nil:
				cfg.RotationRank = *fc.RotationRank
			case fc.RP != nil:
				cfg.RotationRank = *fc.RP
			default:
				return fail("rotation_rank is missing for method %q (the reference's default was 4)", cfg.Method)
			}
			if cfg.RotationRank < 1 {
				return fail("rotation_rank %d: want a rank ≥ 1", cfg.RotationRank)
			}
		}
	case "OFT":
		cfg.Method = peft.OFT
		if fc.R != nil {
			cfg.R = *fc.R
		}
		if fc.OFTBlockSize != nil {
			cfg.OFTBlockSize = *fc.OFTBlockSize
		}
		if cfg.R == 0 && cfg.OFTBlockSize == 0 {
			return fail("neither r nor oft_block_size is given (one must be positive)")
		}
		if fc.UseCayleyNeumann != nil && !*fc.UseCayleyNeumann {
			return fail("use_cayley_neumann: false (the exact Cayley transform) is not supported")
		}
		if fc.NumCayleyNeumannTerms != nil {
			cfg.OFTNeumannTerms = *fc.NumCayleyNeumannTerms
			if cfg.OFTNeumannTerms < 1 {
				return fail("num_cayley_neumann_terms %d: want at least 1", cfg.OFTNeumannTerms)
			}
		}
		if fc.Coft != nil && *fc.Coft {
			return fail("coft: true (constrained OFT) is not supported")
		}
		if fc.BlockShare != nil && *fc.BlockShare {
			return fail("block_share: true is not supported")
		}
		if fc.ModuleDropout != nil && *fc.ModuleDropout != 0 {
			return fail("module_dropout %g: OFT's block dropout is not supported (use 0)", *fc.ModuleDropout)
		}
	case "":
		return fail("peft_type is missing")
	default:
		return fail("peft_type %q: only \"LORA\" (LoRA, DoRA and this project's methods) and \"OFT\" are supported", fc.PeftType)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fail("%v", err)
	}
	return cfg, meta, nil
}

// residualInit reports whether init_lora_weights (raw JSON) names one of
// PEFT's initialisations that also change the base layer's weight: PiSSA
// ("pissa", "pissa_niter_<n>") and CorDA subtract s·B₀·A₀ from it, OLoRA
// too, and LoftQ replaces it by a quantised one. PEFT's other values
// (true, false, "gaussian", "eva", "orthogonal") start from B·A = 0 or
// set A and B alone, and leave the base as it was.
func residualInit(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	l := strings.ToLower(s)
	return s, strings.HasPrefix(l, "pissa") || strings.HasPrefix(l, "corda") || l == "olora" || l == "loftq"
}

// parseModulesToSave reads modules_to_save: null or a list of layer names.
func parseModulesToSave(raw json.RawMessage) ([]string, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("want a list of layer names, found %s", clip(s))
	}
	for i, e := range list {
		if !plainName(e) {
			return nil, fmt.Errorf("entry %d %q: want a layer name such as \"score\"", i, e)
		}
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// parseTargets reads target_modules: a list of names (matched exactly or
// as dotted suffixes) or one string, which Hugging Face PEFT applies as a
// regular expression with re.fullmatch ("all-linear" is special).
func parseTargets(raw json.RawMessage) ([]string, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return nil, fmt.Errorf("missing: name the adapted layers")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == peft.AllLinear {
			return []string{peft.AllLinear}, nil
		}
		return []string{"re:" + one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("want a list of names or one regular expression, found %s", clip(s))
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("empty list")
	}
	for i, e := range list {
		if e == peft.AllLinear || strings.HasPrefix(e, "re:") {
			continue
		}
		// In a list, PEFT matches names literally: keep them literal.
		if !plainName(e) {
			return nil, fmt.Errorf("entry %d %q: list entries are module names; give a regular expression as the whole target_modules string", i, e)
		}
	}
	return list, nil
}

func plainName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c == '.' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// encodeConfig returns the adapter_config.json for cfg, in Hugging Face
// PEFT's layout (keys sorted, as PEFT writes them).
func encodeConfig(cfg peft.Config, meta Meta) ([]byte, error) {
	targets, err := peft.HFTargetModules(cfg.TargetModules)
	if err != nil {
		return nil, err
	}
	for _, tm := range cfg.TargetModules {
		if strings.HasPrefix(tm, "re:") && len(cfg.TargetModules) == 1 {
			targets = tm[3:] // one expression: PEFT's own form
		}
	}
	modules := any(nil)
	if len(meta.ModulesToSave) > 0 {
		for i, e := range meta.ModulesToSave {
			if !plainName(e) {
				return nil, fmt.Errorf("Meta.ModulesToSave[%d] %q: want a layer name such as \"score\"", i, e)
			}
		}
		modules = meta.ModulesToSave
	}
	taskType := any(nil)
	if meta.TaskType != "" {
		taskType = meta.TaskType
	}
	base := any(nil)
	if meta.BaseModel != "" {
		base = meta.BaseModel
	}
	m := map[string]any{
		"base_model_name_or_path": base,
		"bias":                    "none",
		"exclude_modules":         nil,
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"layers_pattern":          nil,
		"layers_to_transform":     nil,
		"modules_to_save":         modules,
		"revision":                nil,
		"target_modules":          targets,
		"task_type":               taskType,
	}
	switch cfg.Method {
	case peft.OFT:
		m["peft_type"] = "OFT"
		m["r"] = cfg.R
		m["oft_block_size"] = cfg.OFTBlockSize
		m["module_dropout"] = 0.0
		m["init_weights"] = true
		m["coft"] = false
		m["eps"] = 6e-5
		m["block_share"] = false
		m["use_cayley_neumann"] = true
		m["num_cayley_neumann_terms"] = cfg.OFTNeumannTerms
	case peft.Full:
		return nil, fmt.Errorf("full fine-tuning has no adapter file: merge it into the model (Model.MergeAndUnload) and save the model's weights")
	default:
		m["peft_type"] = "LORA"
		m["r"] = cfg.R
		m["lora_alpha"] = jsonNumber(cfg.Alpha)
		m["lora_dropout"] = cfg.Dropout
		m["use_dora"] = cfg.Method == peft.DoRA || cfg.Method == peft.DoRAPEFT
		m["use_rslora"] = cfg.RSLoRA
		m["init_lora_weights"] = true
		m["lora_bias"] = false
		m["rank_pattern"] = map[string]any{}
		m["alpha_pattern"] = map[string]any{}
		m["sora_method"] = string(cfg.Method)
		if !meta.ModuleRowOrder {
			m["sora_row_order"] = rowOrderHF
		}
		if spec := cfg.Method.Spec(); spec.Pre == peft.Rotation || spec.Post == peft.Rotation {
			m["rotation_rank"] = cfg.RotationRank
			m["exact_rotation"] = cfg.ExactRotation
		}
		if cfg.LoRAPlusRatio > 0 {
			m["loraplus_lr_ratio"] = cfg.LoRAPlusRatio
		}
	}
	return json.MarshalIndent(m, "", "  ")
}

// jsonNumber writes an integral alpha as an integer, as PEFT configs hold
// it (lora_alpha: 16), and any other value as it is.
func jsonNumber(v float64) any {
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		return int64(v)
	}
	return v
}
