package chat

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// refClock is the instant scripts/chat-ref/pyref.py's strftime_now reads.
var refClock = time.Date(2024, 7, 26, 14, 5, 9, 0, time.Local)

// chatCase is one case of testdata/cases.json: a conversation and options
// rendered with a real template by Python's Jinja2 in transformers'
// environment (pyref.py) and by @huggingface/jinja (jsref.mjs).
type chatCase struct {
	Name                string                     `json:"name"`
	TemplateName        string                     `json:"template_name"`
	Special             map[string]any             `json:"special"`
	Messages            []Message                  `json:"messages"`
	Tools               []json.RawMessage          `json:"tools"`
	AddGenerationPrompt bool                       `json:"add_generation_prompt"`
	Kwargs              map[string]json.RawMessage `json:"kwargs"`
	Python              *string                    `json:"python"`
	PythonErr           string                     `json:"python_error"`
	PythonGeneration    [][2]int                   `json:"python_generation"`
}

func loadCases(t *testing.T) []chatCase {
	t.Helper()
	b, err := os.ReadFile("testdata/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []chatCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatalf("testdata/cases.json: %v", err)
	}
	return cases
}

// templates parses each template of testdata/templates once.
func templates(t *testing.T, cases []chatCase) map[string]*Template {
	t.Helper()
	out := map[string]*Template{}
	for _, c := range cases {
		if out[c.TemplateName] != nil {
			continue
		}
		path := filepath.Join("testdata", "templates", c.TemplateName+".jinja")
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := Parse(path, string(text), c.Special)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		tmpl.Now = func() time.Time { return refClock }
		out[c.TemplateName] = tmpl
	}
	return out
}

func (c chatCase) options() Options {
	opts := Options{AddGenerationPrompt: c.AddGenerationPrompt}
	for _, tool := range c.Tools {
		opts.Tools = append(opts.Tools, tool)
	}
	if len(c.Kwargs) > 0 {
		opts.Vars = map[string]any{}
		for k, v := range c.Kwargs {
			opts.Vars[k] = v
		}
	}
	return opts
}

// TestRealTemplatesAgainstPython renders every case of testdata/cases.json
// (real templates: Llama 3/3.1/3.2, Qwen2.5/3, SmolLM2/3, TinyLlama,
// Mistral, Phi-3/3.5/4, Gemma 2/3, DeepSeek-R1... times conversations and
// options) and requires Python's text exactly, or an error where Python
// raised one.
func TestRealTemplatesAgainstPython(t *testing.T) {
	cases := loadCases(t)
	tmpls := templates(t, cases)
	agree := 0
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			got, err := tmpls[c.TemplateName].Render(c.Messages, c.options())
			if c.PythonErr != "" {
				if err == nil {
					t.Fatalf("rendered %q; Python raised %s", got, c.PythonErr)
				}
				agree++
				return
			}
			if err != nil {
				t.Fatalf("error %v; Python rendered %q", err, *c.Python)
			}
			if got != *c.Python {
				t.Fatalf("rendered\n%q\nPython\n%q", got, *c.Python)
			}
			agree++
		})
	}
	t.Logf("%d of %d cases agree with Python", agree, len(cases))
	if len(cases) < 300 {
		t.Errorf("only %d cases in testdata/cases.json", len(cases))
	}
}
