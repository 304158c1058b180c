package jinja

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzTemplate parses and renders arbitrary templates with chat-like
// variables under tight limits: no input may panic, hang or exceed the
// limits, and every failure must be an *Error with a position.
func FuzzTemplate(f *testing.F) {
	for _, c := range loadRefCasesF(f, "testdata/constructs.json") {
		f.Add(c.Template)
	}
	paths, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "templates", "*.jinja"))
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	vars, err := FromJSON([]byte(`{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
		{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
		{"role": "tool", "content": "r"}], "tools": [{"type": "function", "function": {"name": "f"}}],
		"add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"}`))
	if err != nil {
		f.Fatal(err)
	}
	d := vars.(*Dict)
	m := map[string]Value{}
	for i, k := range d.Keys() {
		m[k.(string)] = d.Values()[i]
	}
	lim := Limits{MaxOutput: 1 << 16, MaxSteps: 20000, MaxDepth: 20}
	f.Fuzz(func(t *testing.T, src string) {
		tmpl, err := Parse("fuzz", src)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Line < 1 {
				t.Fatalf("parse error without a position: %v", err)
			}
			return
		}
		out, err := tmpl.Render(m, refGlobals(), lim)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Line < 1 {
				t.Fatalf("render error without a position: %v", err)
			}
			return
		}
		if len(out.Text) > lim.MaxOutput {
			t.Fatalf("output of %d bytes passed the limit", len(out.Text))
		}
	})
}

func loadRefCasesF(f *testing.F, path string) []refCase {
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	var cases []refCase
	if err := json.Unmarshal(b, &cases); err != nil {
		f.Fatal(err)
	}
	return cases
}

// TestSelfReference: a namespace that holds itself prints and fails
// tojson without recursing forever.
func TestSelfReference(t *testing.T) {
	tmpl, err := Parse("self", "{% set ns = namespace() %}{% set ns.a = [ns] %}{{ ns }}")
	if err != nil {
		t.Fatal(err)
	}
	out, err := tmpl.Render(nil, nil, Limits{})
	if err != nil || len(out.Text) == 0 || len(out.Text) > 1<<16 {
		t.Fatalf("%d bytes, %v", len(out.Text), err)
	}
	tmpl, _ = Parse("self", "{% set ns = namespace() %}{% set ns.a = [ns] %}{{ ns.a | tojson }}")
	if _, err := tmpl.Render(nil, nil, Limits{}); err == nil {
		t.Fatal("tojson of a namespace should fail")
	}
}
