package peft

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
)

// Method names a PEFT method: one configuration of the conditioning layer.
type Method string

// The methods. Each is a configuration of [Layer]: what conditions the
// frozen weight before the low-rank update (Pre) and what conditions the sum
// after it (Post).
const (
	// LoRA: W0 + s·B·A.
	LoRA Method = "lora"
	// LoRAPlus is LoRA trained with B's learning rate λ times A's
	// ([Config.LoRAPlusRatio], default 16): the layer is LoRA's, the
	// difference is in [Model.ParamGroups].
	LoRAPlus Method = "lora+"
	// DoRA: diag(m ⊘ n)·(W0 + s·B·A) with n the row norms of W0 + s·B·A,
	// detached. The norms come from a closed form that never builds an
	// [out, in] temporary.
	DoRA Method = "dora"
	// DoRAPEFT is DoRA computed the way Hugging Face PEFT 0.14 does: B·A
	// is materialised every step to take the row norms. Without dropout,
	// and in evaluation (a tape with NoGrad set), it is DoRA's function
	// and gradients, y = k ⊙ (x·W0ᵀ + s·x·Aᵀ·Bᵀ) + b with k = m ⊘ n, and
	// serves as DoRA's reference. With dropout p > 0 in training it is
	// PEFT's own function there, which is not DoRA's:
	//
	//	DoRAPEFT  y = x·W0ᵀ + b + (k − 1) ⊙ (drop(x)·W0ᵀ) + k ⊙ (s·drop(x)·Aᵀ·Bᵀ)
	//	DoRA      y = x·W0ᵀ + b + (k − 1) ⊙ (x·W0ᵀ)       + k ⊙ (s·drop(x)·Aᵀ·Bᵀ)
	//
	// (PEFT hands the dropped input to its DoRA layer, which recomputes
	// the frozen product from it; DoRA here, like every other method,
	// drops the LoRA input only). The two differ by
	// (k − 1) ⊙ ((drop(x) − x)·W0ᵀ), zero in expectation over the mask
	// and zero while m = n, and DoRAPEFT pays a second full-size product
	// forward and backward for it, as PEFT does. Merged weights are the
	// same for both (merging is for evaluation, where dropout is off).
	DoRAPEFT Method = "dora-peft"
	// PreDiag: diag(d)·W0 + s·B·A.
	PreDiag Method = "prediag"
	// SORA: R·(diag(d)·W0 + s·B·A) with the low-rank rotation R.
	SORA Method = "sora"
	// PreOrtho (ablation): R·W0 + s·B·A.
	PreOrtho Method = "preortho"
	// PostOrtho (ablation): R·(W0 + s·B·A).
	PostOrtho Method = "postortho"
	// OFT is orthogonal fine-tuning as in Hugging Face PEFT: W0·Rᵀ for a
	// block-diagonal R from the Cayley–Neumann series of skew-symmetric
	// blocks, applied to the input (y = (x·R)·W0ᵀ + b).
	OFT Method = "oft"
	// Full is full fine-tuning: the model's own parameters train in
	// place, from their pretrained values, as Hugging Face's Trainer
	// trains a model without PEFT. With the target [AllParameters] every
	// parameter the module lists trains (embeddings, norms, the output
	// head, tied or not, biases and every linear layer); with other
	// targets only the selected linear layers' weights and biases do.
	Full Method = "full"
)

// Methods lists every method in the order tables show them.
var Methods = []Method{Full, LoRA, LoRAPlus, DoRA, DoRAPEFT, PreDiag, SORA, PreOrtho, PostOrtho, OFT}

var methodAliases = map[string]Method{
	"lora": LoRA, "lora+": LoRAPlus, "loraplus": LoRAPlus, "lora_plus": LoRAPlus, "lora-plus": LoRAPlus,
	"dora": DoRA, "dora-peft": DoRAPEFT, "dora_peft": DoRAPEFT, "dorapeft": DoRAPEFT,
	"prediag": PreDiag, "pre-diag": PreDiag, "pre_diag": PreDiag,
	"sora":     SORA,
	"preortho": PreOrtho, "pre-ortho": PreOrtho, "pre_ortho": PreOrtho,
	"postortho": PostOrtho, "post-ortho": PostOrtho, "post_ortho": PostOrtho,
	"oft":  OFT,
	"full": Full, "fft": Full, "full-ft": Full, "full_ft": Full,
}

// ParseMethod returns the method named s (case-insensitive; "pre-diag",
// "lora_plus", "fft" and similar spellings are accepted).
func ParseMethod(s string) (Method, error) {
	if m, ok := methodAliases[strings.ToLower(strings.TrimSpace(s))]; ok {
		return m, nil
	}
	names := make([]string, len(Methods))
	for i, m := range Methods {
		names[i] = string(m)
	}
	return "", fmt.Errorf("peft: unknown method %q (known: %s)", s, strings.Join(names, ", "))
}

// Cond is what conditions a weight: the identity, a free diagonal, DoRA's
// norm diagonal m ⊘ n, or a low-rank rotation R = I + S.
type Cond uint8

// The conditioners.
const (
	Identity Cond = iota
	Diagonal
	NormDiagonal
	Rotation
)

// String returns the conditioner's name, e.g. "norm-diagonal".
func (c Cond) String() string {
	switch c {
	case Identity:
		return "identity"
	case Diagonal:
		return "diagonal"
	case NormDiagonal:
		return "norm-diagonal"
	case Rotation:
		return "rotation"
	}
	return fmt.Sprintf("Cond(%d)", uint8(c))
}

// Spec says how a method conditions the layer: the effective weight is
// Post·(Pre·W0 + s·B·A), with LoRA factors when LowRank is set.
type Spec struct {
	Pre, Post Cond
	LowRank   bool
}

// Spec returns the weight-conditioning form of m. OFT and Full are not of
// that form and return the zero Spec.
func (m Method) Spec() Spec {
	switch m {
	case LoRA, LoRAPlus:
		return Spec{LowRank: true}
	case DoRA, DoRAPEFT:
		return Spec{Post: NormDiagonal, LowRank: true}
	case PreDiag:
		return Spec{Pre: Diagonal, LowRank: true}
	case SORA:
		return Spec{Pre: Diagonal, Post: Rotation, LowRank: true}
	case PreOrtho:
		return Spec{Pre: Rotation, LowRank: true}
	case PostOrtho:
		return Spec{Post: Rotation, LowRank: true}
	}
	return Spec{}
}

// Config configures a method and the layers it adapts. The zero values of
// the numeric fields mean the defaults listed with them.
type Config struct {
	// Method is the PEFT method.
	Method Method
	// R is the LoRA rank r (default 8, as Hugging Face PEFT). For OFT it is
	// the number of blocks per layer when OFTBlockSize is 0.
	R int
	// Alpha is lora_alpha; the update is scaled by s = Alpha / R (default
	// 8, as Hugging Face PEFT), or Alpha / √R with RSLoRA.
	Alpha float64
	// RSLoRA scales the low-rank update by Alpha / √R instead of Alpha / R:
	// rank-stabilized LoRA (Kalajdzievski, 2023; Hugging Face PEFT's
	// use_rslora), under which the update's scale no longer shrinks as the
	// rank grows, so that larger ranks keep learning at the same learning
	// rate. It applies to every method with a low-rank update B·A and to
	// nothing else: the rotation's own scale s_p and DoRA's magnitude
	// are unchanged.
	RSLoRA bool
	// RotationRank is r_p, the rank of the rotation's factors C and D
	// (default 4, the reference's GLUE setting; it uses 2 for math).
	RotationRank int
	// ExactRotation replaces the first-order rotation I + S by the
	// orthogonal exp(S), computed in low rank (see the package
	// documentation). The paper uses the first-order form.
	ExactRotation bool
	// Dropout is the dropout probability on the input of the LoRA path
	// (only there), applied while the tape records gradients. DoRAPEFT
	// follows Hugging Face PEFT instead and drops the input of its frozen
	// correction term too (see [DoRAPEFT]).
	Dropout float64
	// TargetModules selects the layers to adapt by name (see [Match]);
	// for [Full], [AllParameters] trains the whole module instead.
	TargetModules []string
	// LoRAPlusRatio is LoRA+'s λ: B matrices (and, as PEFT groups them,
	// the vectors DoRA, Pre-Diag and SORA train) train with λ times the
	// learning rate of the rest (see [Model.ParamGroups]). Default 16 for
	// the lora+ method; 0 (one learning rate) for the others unless set.
	LoRAPlusRatio float64
	// OFTBlockSize is OFT's block size (default 32 when R is 0, as Hugging
	// Face PEFT); in must be a multiple of it.
	OFTBlockSize int
	// OFTNeumannTerms is the number of Cayley–Neumann terms of OFT
	// (default 5, as Hugging Face PEFT).
	OFTNeumannTerms int
	// Seed seeds the random initialisation and the dropout masks (which
	// also follow the step: see [Model.SetDropoutStep]).
	Seed uint64
}

// Defaults of Config.
const (
	DefaultR               = 8
	DefaultAlpha           = 8
	DefaultRotationRank    = 4
	DefaultLoRAPlusRatio   = 16
	DefaultOFTBlockSize    = 32
	DefaultOFTNeumannTerms = 5
)

// WithDefaults returns c with every zero field that has a default set to it.
func (c Config) WithDefaults() Config {
	if c.Method == OFT {
		if c.R == 0 && c.OFTBlockSize == 0 {
			c.OFTBlockSize = DefaultOFTBlockSize
		}
		c.OFTNeumannTerms = cmp.Or(c.OFTNeumannTerms, DefaultOFTNeumannTerms)
		return c
	}
	c.R = cmp.Or(c.R, DefaultR)
	c.Alpha = cmp.Or(c.Alpha, DefaultAlpha)
	c.RotationRank = cmp.Or(c.RotationRank, DefaultRotationRank)
	if c.Method == LoRAPlus && c.LoRAPlusRatio == 0 {
		c.LoRAPlusRatio = DefaultLoRAPlusRatio
	}
	return c
}

// Scaling returns the low-rank update's scale s: Alpha / R, or
// Alpha / √R with RSLoRA.
func (c Config) Scaling() float64 {
	if c.RSLoRA {
		return c.Alpha / math.Sqrt(float64(c.R))
	}
	return c.Alpha / float64(c.R)
}

// ConfigError is the error [Config.Validate] returns for a field whose
// value the method refuses, so that a caller can say it in its own words
// (a command line names its flags).
type ConfigError struct {
	Method Method
	// Field names the field of Config, or two joined by "/" when their
	// combination is wrong ("R/OFTBlockSize").
	Field string
	// Value is the field's value, as Error prints it.
	Value any
	// Reason says what is wrong or what is wanted.
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("peft: Config.%s = %v: %s (method %s)", e.Field, e.Value, e.Reason, e.Method)
}

// Validate checks c (after [Config.WithDefaults]) and says which field is
// wrong and why: a [*ConfigError] where a field's value is refused.
func (c Config) Validate() error {
	if _, err := ParseMethod(string(c.Method)); err != nil || c.Method == "" {
		return fmt.Errorf("peft: Config.Method %q: want one of %v", c.Method, Methods)
	}
	bad := func(field string, v any, want string) error {
		return &ConfigError{Method: c.Method, Field: field, Value: v, Reason: want}
	}
	if !(c.Dropout >= 0 && c.Dropout < 1) {
		return bad("Dropout", c.Dropout, "want a probability in [0, 1)")
	}
	if !(c.LoRAPlusRatio >= 0) || math.IsInf(c.LoRAPlusRatio, 0) {
		return bad("LoRAPlusRatio", c.LoRAPlusRatio, "want a finite ratio ≥ 0")
	}
	if len(c.TargetModules) == 0 {
		return fmt.Errorf("peft: Config.TargetModules is empty: name the layers to adapt (e.g. q_proj, v_proj), give regular expressions, or %q", AllLinear)
	}
	if _, err := compileTargets(c.TargetModules); err != nil {
		return err
	}
	if c.Method != Full && slices.Contains(c.TargetModules, AllParameters) {
		// Before the methods' own checks, OFT's included: any adapter
		// would wrap the output head too.
		return bad("TargetModules", c.TargetModules, fmt.Sprintf("%q (every parameter) is full fine-tuning's target; an adapter adapts linear layers (%q)", AllParameters, AllLinear))
	}
	if c.RSLoRA && !c.Method.Spec().LowRank {
		return bad("RSLoRA", true, "only the methods with a low-rank update B·A have its scale to change")
	}
	if spec := c.Method.Spec(); c.ExactRotation && spec.Pre != Rotation && spec.Post != Rotation {
		return bad("ExactRotation", true, "only the rotation methods (sora, preortho, postortho) have a rotation")
	}
	switch c.Method {
	case OFT:
		if c.R < 0 || c.OFTBlockSize < 0 {
			return bad("R/OFTBlockSize", fmt.Sprintf("%d/%d", c.R, c.OFTBlockSize), "must not be negative")
		}
		if (c.R == 0) == (c.OFTBlockSize == 0) {
			return bad("R/OFTBlockSize", fmt.Sprintf("%d/%d", c.R, c.OFTBlockSize), "set exactly one of them (r × block size = in), as Hugging Face PEFT requires")
		}
		if c.OFTNeumannTerms < 1 {
			return bad("OFTNeumannTerms", c.OFTNeumannTerms, "want at least 1")
		}
		if c.Dropout != 0 {
			return bad("Dropout", c.Dropout, "OFT has no input dropout (Hugging Face's block dropout is not implemented); use 0")
		}
		return nil
	case Full:
		if c.Dropout != 0 {
			return bad("Dropout", c.Dropout, "full fine-tuning has no LoRA input to drop; use 0")
		}
		if slices.Contains(c.TargetModules, AllParameters) && len(c.TargetModules) != 1 {
			return bad("TargetModules", c.TargetModules, fmt.Sprintf("%q selects every parameter; give it alone", AllParameters))
		}
		return nil
	}
	if c.R < 1 {
		return bad("R", c.R, "want a rank ≥ 1")
	}
	if !(c.Alpha > 0) || math.IsInf(c.Alpha, 0) {
		return bad("Alpha", c.Alpha, "want a finite lora_alpha > 0")
	}
	if c.Method.Spec().Pre == Rotation || c.Method.Spec().Post == Rotation {
		if c.RotationRank < 1 {
			return bad("RotationRank", c.RotationRank, "want a rank ≥ 1")
		}
	}
	return nil
}

// AllLinear, as a target, selects every layer slot except the output head
// (a slot whose last name component is lm_head, output, score or
// classifier), as Hugging Face PEFT's "all-linear" does.
const AllLinear = "all-linear"

// AllParameters, as the target of [Full], trains every parameter of the
// module: the layers [AllLinear] selects, as [Layer]s (whose updates
// [Model.Spectra] analyses), and every other parameter the module lists
// (embeddings, norms, the output and classification heads, biases) as it
// is. As a pattern ([Match]) it selects every layer. No other method takes
// it.
const AllParameters = "all"

var plainName = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)

// target is one compiled TargetModules entry.
type target struct {
	name string         // suffix match when re is nil
	re   *regexp.Regexp // whole-name match
	all  bool           // all-linear
	any  bool           // AllParameters: every layer
}

func compileTargets(entries []string) ([]target, error) {
	ts := make([]target, 0, len(entries))
	for i, e := range entries {
		switch {
		case e == AllLinear:
			ts = append(ts, target{all: true})
		case e == AllParameters:
			ts = append(ts, target{any: true})
		case strings.HasPrefix(e, "re:"):
			re, err := regexp.Compile(`^(?:` + e[3:] + `)$`)
			if err != nil {
				return nil, fmt.Errorf("peft: Config.TargetModules[%d] %q: bad regular expression: %v", i, e, err)
			}
			ts = append(ts, target{re: re})
		case plainName.MatchString(e):
			ts = append(ts, target{name: e})
		case e == "":
			return nil, fmt.Errorf("peft: Config.TargetModules[%d] is empty", i)
		default:
			re, err := regexp.Compile(`^(?:` + e + `)$`)
			if err != nil {
				return nil, fmt.Errorf("peft: Config.TargetModules[%d] %q: bad regular expression: %v", i, e, err)
			}
			ts = append(ts, target{re: re})
		}
	}
	return ts, nil
}

func (t target) match(name string) bool {
	switch {
	case t.any:
		return true
	case t.all:
		last := name[strings.LastIndexByte(name, '.')+1:]
		switch last {
		case "lm_head", "output", "score", "classifier":
			return false
		}
		return true
	case t.re != nil:
		return t.re.MatchString(name)
	}
	return name == t.name || strings.HasSuffix(name, "."+t.name)
}

// Match reports whether the layer called name is selected by the
// TargetModules entries, as Hugging Face PEFT matches a list of names: an
// entry of letters, digits, '_', '.' and '-' selects the layer of that name
// or any layer whose name ends in '.' followed by it ("q_proj" selects
// "model.layers.0.self_attn.q_proj"); any other entry, or one written
// "re:<expression>", is a regular expression that must match the whole
// name; [AllLinear] selects every layer but the output head, and
// [AllParameters] every layer.
func Match(targets []string, name string) (bool, error) {
	ts, err := compileTargets(targets)
	if err != nil {
		return false, err
	}
	for _, t := range ts {
		if t.match(name) {
			return true, nil
		}
	}
	return false, nil
}

// HFTargetModules returns the entries in the form of Hugging Face PEFT's
// target_modules: the list itself when every entry is a plain name (PEFT
// matches those exactly or as a dotted suffix, as [Match] does), the string
// "all-linear" for that entry alone, and otherwise one regular expression
// (valid in Python and Go) that PEFT applies with re.fullmatch and that
// matches the same names.
func HFTargetModules(entries []string) (any, error) {
	if _, err := compileTargets(entries); err != nil {
		return nil, err
	}
	plain := true
	parts := make([]string, 0, len(entries))
	for _, e := range entries {
		switch {
		case e == AllParameters:
			return nil, fmt.Errorf("peft: target modules %q: %q is full fine-tuning's, which writes no adapter file", entries, AllParameters)
		case e == AllLinear:
			if len(entries) != 1 {
				return nil, fmt.Errorf("peft: target modules %q: %q cannot be written together with other entries in Hugging Face's target_modules", entries, AllLinear)
			}
			return AllLinear, nil
		case strings.HasPrefix(e, "re:"):
			plain = false
			parts = append(parts, "(?:"+e[3:]+")")
		case plainName.MatchString(e):
			parts = append(parts, `(?:.*\.)?`+regexp.QuoteMeta(e))
		default:
			plain = false
			parts = append(parts, "(?:"+e+")")
		}
	}
	if plain {
		return append([]string(nil), entries...), nil
	}
	return strings.Join(parts, "|"), nil
}
