package hf

import (
	"math"
	"math/rand"
	"strings"
	"testing"

	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
)

// llama31Config is the rotary part of Meta-Llama-3.1-8B's config.json
// around a small model.
const llama31Config = `{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 19,
  "max_position_embeddings": 131072,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false
}`

// TestParseRopeScaling reads Llama 3.1/3.2 rotary scalings in both layouts
// transformers writes (rope_scaling, and rope_parameters with the base
// inside) and both spellings of the type.
func TestParseRopeScaling(t *testing.T) {
	llama31 := llama.RopeScaling{Type: llama.RopeScalingLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192}
	base := `"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 19`
	fields := `"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192`
	llama32 := llama31
	llama32.Factor = 32
	for _, c := range []struct {
		name, json string
		want       llama.RopeScaling
		theta      float64
	}{
		{"Llama 3.1 config.json", llama31Config, llama31, 500000},
		{"older spelling type", `{` + base + `, "rope_theta": 500000.0, "rope_scaling": {"type": "llama3", ` + fields + `}}`, llama31, 500000},
		{"both spellings agreeing", `{` + base + `, "rope_scaling": {"type": "llama3", "rope_type": "llama3", ` + fields + `}}`, llama31, 10000},
		{"Llama 3.2 factor 32", `{` + base + `, "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}`, llama32, 500000},
		{"rope_parameters", `{` + base + `, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, ` + fields + `}}`, llama31, 500000},
		{"both layouts agreeing", `{` + base + `, "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", ` + fields + `}, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, ` + fields + `}}`, llama31, 500000},
		{"rope_parameters holding only the base", `{` + base + `, "rope_scaling": {"rope_type": "llama3", ` + fields + `}, "rope_parameters": {"rope_theta": 500000.0}}`, llama31, 500000},
		{"default type", `{` + base + `, "rope_scaling": {"rope_type": "default"}}`, llama.RopeScaling{}, 10000},
		{"null fields", `{` + base + `, "rope_scaling": {"rope_type": "llama3", "attention_factor": null, ` + fields + `}}`, llama31, 10000},
		{"whole numbers as ints", `{` + base + `, "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192.0}}`, llama31, 10000},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(c.json), "config.json")
			if err != nil {
				t.Fatal(err)
			}
			if cfg.RopeScaling != c.want || cfg.RopeTheta != c.theta {
				t.Fatalf("scaling %+v, theta %v; want %+v, %v", cfg.RopeScaling, cfg.RopeTheta, c.want, c.theta)
			}
		})
	}
}

// TestParseRopeScalingErrors checks that each bad or unsupported rotary
// description is refused with an error naming config.json and the field.
func TestParseRopeScalingErrors(t *testing.T) {
	base := `"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 19`
	scaling := func(body string) string { return `{` + base + `, "rope_scaling": {` + body + `}}` }
	rest := `"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192`
	for _, c := range []struct{ name, json, want string }{
		{"factor 0", scaling(`"rope_type": "llama3", "factor": 0, ` + rest), "rope_scaling.factor is 0; expected a positive number"},
		{"factor negative", scaling(`"rope_type": "llama3", "factor": -8.0, ` + rest), "rope_scaling.factor is -8"},
		{"factor a string", scaling(`"rope_type": "llama3", "factor": "8", ` + rest), `rope_scaling.factor is "8"; expected a number`},
		{"factor NaN", scaling(`"rope_type": "llama3", "factor": NaN, ` + rest), "not a valid config"},
		{"low = high", scaling(`"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192`),
			"rope_scaling.low_freq_factor 4 is not below high_freq_factor 4"},
		{"low > high", scaling(`"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0, "original_max_position_embeddings": 8192`),
			"rope_scaling.low_freq_factor 4 is not below high_freq_factor 1"},
		{"low 0", scaling(`"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192`),
			"rope_scaling.low_freq_factor is 0"},
		{"missing factor", scaling(`"rope_type": "llama3", ` + rest), "rope_scaling.factor is missing"},
		{"missing high", scaling(`"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192`), "rope_scaling.high_freq_factor is missing"},
		{"missing original", scaling(`"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0`), "rope_scaling.original_max_position_embeddings is missing"},
		{"null original", scaling(`"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": null`), "rope_scaling.original_max_position_embeddings is missing"},
		{"fractional original", scaling(`"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192.5`),
			"rope_scaling.original_max_position_embeddings is 8192.5; expected a positive whole number"},
		{"original 0", scaling(`"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 0`),
			"rope_scaling.original_max_position_embeddings is 0"},
		{"no type", scaling(`"factor": 8.0, ` + rest), `rope_scaling.factor is set ({"factor":8.0,` + strings.ReplaceAll(rest, " ", "") + `}) without rope_type "llama3"`},
		{"default type with a factor", scaling(`"rope_type": "default", "factor": 8.0`), `rope_scaling.factor is set`},
		{"yarn", scaling(`"rope_type": "yarn", "factor": 4.0`), `rope_scaling.rope_type is "yarn"`},
		{"dynamic", scaling(`"type": "dynamic", "factor": 2.0`), `rope_scaling.type is "dynamic"`},
		{"spellings disagree", scaling(`"rope_type": "llama3", "type": "linear", "factor": 8.0, ` + rest), `rope_scaling.rope_type is "llama3" but rope_scaling.type is "linear"`},
		{"extra field", scaling(`"rope_type": "llama3", "factor": 8.0, "attention_factor": 1.0, ` + rest), "rope_scaling.attention_factor is set"},
		{"theta inside rope_scaling", scaling(`"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, ` + rest), "rope_scaling.rope_theta is set"},
		{"not an object", `{` + base + `, "rope_scaling": 8}`, "rope_scaling must be an object"},
		{"layouts disagree", `{` + base + `, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, ` + rest + `}, "rope_parameters": {"rope_type": "llama3", "factor": 32.0, ` + rest + `}}`,
			"rope_scaling (" + `{"rope_type":"llama3","factor":8.0,` + strings.ReplaceAll(rest, " ", "") + "}) and rope_parameters"},
		{"scaled and default", `{` + base + `, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, ` + rest + `}, "rope_parameters": {"rope_type": "default"}}`,
			"describe different rotary embeddings"},
		{"missing in rope_parameters", `{` + base + `, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}}`, "rope_parameters.low_freq_factor is missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.json), "config.json")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "config.json") {
				t.Fatalf("error %v; want one naming config.json and saying %q", err, c.want)
			}
		})
	}
}

// TestEncodeRopeScaling checks that EncodeConfig writes a scaling as Llama
// 3.1's config.json does (floats with a decimal point, as transformers
// expects) and that it reads back to the same config, as merge and
// convert rely on; without scaling, rope_scaling stays null.
func TestEncodeRopeScaling(t *testing.T) {
	cfg, err := ParseConfig([]byte(llama31Config), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	enc, err := EncodeConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"rope_type": "llama3"`, `"factor": 8.0`, `"low_freq_factor": 1.0`, `"high_freq_factor": 4.0`, `"original_max_position_embeddings": 8192`, `"rope_theta": 500000`} {
		if !strings.Contains(string(enc), want) {
			t.Errorf("encoded config lacks %s:\n%s", want, enc)
		}
	}
	again, err := ParseConfig(enc, "again.json")
	if err != nil || again != cfg {
		t.Fatalf("round trip: %+v, %v; want %+v", again, err, cfg)
	}
	// A factor that is not whole keeps its digits.
	cfg.RopeScaling.Factor = 2.5
	enc, _ = EncodeConfig(cfg)
	if again, err := ParseConfig(enc, "again.json"); err != nil || again != cfg || !strings.Contains(string(enc), `"factor": 2.5,`) {
		t.Fatalf("factor 2.5: %+v, %v:\n%s", again.RopeScaling, err, enc)
	}
	cfg.RopeScaling = llama.RopeScaling{}
	enc, _ = EncodeConfig(cfg)
	if !strings.Contains(string(enc), `"rope_scaling": null`) {
		t.Errorf("unscaled config: %s", enc)
	}
}

// TestWriteLoadRopeScaling writes a scaled model as a Hugging Face folder
// and loads it back: same config, same weights, and the model built from
// the folder computes the source's logits, which differ from those of the
// same weights unscaled (so losing the scaling would show).
func TestWriteLoadRopeScaling(t *testing.T) {
	cfg := tinyConfig(false, 2)
	cfg.MaxSeqLen = 40
	// Head width 4: frequencies 1 and 0.01, wavelengths 6.3 and 628; over
	// an original context of 16 the second is slowed by the factor.
	cfg.RopeScaling = llama.RopeScaling{Type: llama.RopeScalingLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 16}
	src := randomWeights(t, rand.New(rand.NewSource(31)), cfg)
	_, got := writeLoad(t, src, nil)
	unscaled, _ := src.Clone()
	unscaled.Config.RopeScaling = llama.RopeScaling{}
	b := testbackend.Open(t, "cpu")
	tokens := make([]int32, 40)
	for i := range tokens {
		tokens[i] = int32(i*7) % 19
	}
	a, c, u := forwardLogits(t, b, src, tokens), forwardLogits(t, b, got, tokens), forwardLogits(t, b, unscaled, tokens)
	sameLogits(t, c, a)
	var moved float64
	for i := range a {
		moved = max(moved, math.Abs(float64(a[i]-u[i])))
	}
	if moved < 1e-2 {
		t.Errorf("the scaling moved no logit by more than %.2g: the round trip would not notice losing it", moved)
	}
}
