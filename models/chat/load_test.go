package chat

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const probe = "{{ bos_token }}|{{ eos_token }}|{{ unk_token is defined }}|{{ additional_special_tokens }}|"

func TestLoadDir(t *testing.T) {
	cfgList := `{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "unk_token": null,
		"chat_template": [{"name": "default", "template": "D` + probe + `"}, {"name": "tool_use", "template": "T"}]}`
	for _, c := range []struct {
		name    string
		files   map[string]string
		tmpl    string // template name to load
		want    string // rendering
		wantErr string
	}{
		{name: "jinja file wins", files: map[string]string{
			"chat_template.jinja":   "J" + probe,
			"chat_template.json":    `{"chat_template": "C"}`,
			"tokenizer_config.json": `{"chat_template": "K", "bos_token": "<b>", "eos_token": {"content": "<e>"}}`,
		}, want: "J<b>|<e>|False||"},
		{name: "json file next", files: map[string]string{
			"chat_template.json":    `{"chat_template": "C"}`,
			"tokenizer_config.json": `{"chat_template": "K"}`,
		}, want: "C"},
		{name: "tokenizer config string", files: map[string]string{
			"tokenizer_config.json":   `{"chat_template": "K` + probe + `", "bos_token": null}`,
			"special_tokens_map.json": `{"bos_token": "<mb>", "eos_token": "<me>", "additional_special_tokens": ["<x>", {"content": "<y>"}]}`,
		}, want: "K<mb>|<me>|False|['<x>', '<y>']|"},
		{name: "named default", files: map[string]string{"tokenizer_config.json": cfgList}, want: "D<s>|</s>|False||"},
		{name: "named by name", files: map[string]string{"tokenizer_config.json": cfgList}, tmpl: "tool_use", want: "T"},
		{name: "additional file", files: map[string]string{
			"chat_template.jinja":                 "J",
			"additional_chat_templates/rag.jinja": "R",
		}, tmpl: "rag", want: "R"},
		{name: "unknown name", files: map[string]string{"tokenizer_config.json": cfgList}, tmpl: "nope", wantErr: `named "nope"`},
		{name: "no default", files: map[string]string{"tokenizer_config.json": `{"chat_template": [{"name": "a", "template": "A"}, {"name": "b", "template": "B"}]}`}, wantErr: "none is named \"default\""},
		{name: "no template", files: map[string]string{"tokenizer_config.json": `{"bos_token": "<s>"}`}, wantErr: "no chat template"},
		{name: "bad json", files: map[string]string{"tokenizer_config.json": `{"chat_template": `}, wantErr: "tokenizer_config.json"},
		{name: "bad template type", files: map[string]string{"tokenizer_config.json": `{"chat_template": 3}`}, wantErr: "must be a string or a list"},
		{name: "bad token", files: map[string]string{"tokenizer_config.json": `{"chat_template": "x", "eos_token": 5}`}, wantErr: "eos_token"},
		{name: "syntax error names file and line", files: map[string]string{"chat_template.jinja": "line one\n{% if x %}\n{{ 1 + }}"}, wantErr: "chat_template.jinja:3:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeFiles(t, c.files)
			tmpl, err := LoadDirNamed(dir, c.tmpl)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				if c.name == "no template" && !errors.Is(err, ErrNoTemplate) {
					t.Fatalf("error %v does not wrap ErrNoTemplate", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := tmpl.Render(nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("rendered %q, want %q", got, c.want)
			}
		})
	}
}

// TestRenderErrors: a raised exception and a runtime error name the
// template's source and line.
func TestRenderErrors(t *testing.T) {
	tmpl, err := Parse("t.jinja", "ok\n{% if messages[0].role != 'user' %}{{ raise_exception('roles must alternate') }}{% endif %}{{ messages[0].content + 1 }}", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tmpl.Render([]Message{{Role: "system", Content: "s"}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "t.jinja") || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "roles must alternate") {
		t.Fatalf("error %v", err)
	}
	_, err = tmpl.Render([]Message{{Role: "user", Content: "s"}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "t.jinja:2:") || !strings.Contains(err.Error(), "can only concatenate str") {
		t.Fatalf("error %v", err)
	}
	_, err = tmpl.Render([]Message{{Role: "user", Content: make(chan int)}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "message 0") {
		t.Fatalf("error %v", err)
	}
}

// TestLoadDirRealTokenizers loads the chat templates of the real tokenizer
// folders that scripts/fetch-tokenizers.sh puts in SORA_TOKENIZER_DIR
// (their tokenizer_config.json's chat_template and special tokens) and
// renders every case of the reference corpus written for them, comparing
// with Python's Jinja2.
func TestLoadDirRealTokenizers(t *testing.T) {
	root := os.Getenv("SORA_TOKENIZER_DIR")
	if root == "" {
		t.Skip("SORA_TOKENIZER_DIR is not set (scripts/fetch-tokenizers.sh fills a folder for it)")
	}
	cases := loadCases(t)
	for _, name := range []string{"llama3", "llama3.1", "llama3.2", "qwen3", "qwen2.5", "mistral-nemo"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(root, name)
			if _, err := os.Stat(dir); err != nil {
				t.Skipf("%v (run scripts/fetch-tokenizers.sh)", err)
			}
			tmpl, err := LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.Now = func() time.Time { return refClock }
			n := 0
			for _, c := range cases {
				if c.TemplateName != name {
					continue
				}
				got, err := tmpl.Render(c.Messages, c.options())
				switch {
				case c.Python == nil && err == nil:
					t.Errorf("%s: rendered %q; Python raised %s", c.Name, got, c.PythonErr)
				case c.Python != nil && (err != nil || got != *c.Python):
					t.Errorf("%s: %q, %v; want %q", c.Name, got, err, *c.Python)
				}
				n++
			}
			if n < 18 {
				t.Errorf("only %d cases", n)
			}
		})
	}
}
