package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrNoTemplate is returned by LoadDir for a folder that has no chat
// template (a base model's, usually).
var ErrNoTemplate = errors.New("chat: no chat template")

// specialNames are the special tokens transformers passes to templates
// (its SPECIAL_TOKENS_ATTRIBUTES).
var specialNames = []string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "additional_special_tokens"}

// LoadDir reads the default chat template of a Hugging Face model folder,
// looking where transformers does: chat_template.jinja; else the
// "chat_template" of chat_template.json; else the "chat_template" of
// tokenizer_config.json, which is a string or a list of {"name",
// "template"} (then the one named "default", or the only one). The special
// tokens come from tokenizer_config.json, and special_tokens_map.json for
// those it leaves out; each is a string or an object with "content". A
// folder without a template gives an error wrapping ErrNoTemplate.
func LoadDir(dir string) (*Template, error) { return LoadDirNamed(dir, "") }

// LoadDirNamed is LoadDir choosing the template called name ("default",
// "tool_use", "rag"...) among named ones: those in tokenizer_config.json's
// list and the files additional_chat_templates/NAME.jinja. name "" is the
// default template.
func LoadDirNamed(dir, name string) (*Template, error) {
	special, err := readSpecial(dir)
	if err != nil {
		return nil, err
	}
	named, def, defSource, err := findTemplates(dir)
	if err != nil {
		return nil, err
	}
	var text, source string
	switch {
	case name == "" && def != "":
		text, source, name = def, defSource, "default"
	case name == "" && len(named) == 1:
		for n, t := range named {
			text, source, name = t.text, t.source, n
		}
	case name == "" && len(named) > 1:
		if t, ok := named["default"]; ok {
			text, source, name = t.text, t.source, "default"
		} else {
			return nil, fmt.Errorf("chat: %s has several chat templates (%s) and none is named \"default\": choose one by name", dir, strings.Join(templateNames(named), ", "))
		}
	case name == "":
		return nil, fmt.Errorf("%w in %s (looked for chat_template.jinja, chat_template.json and tokenizer_config.json's chat_template)", ErrNoTemplate, dir)
	default:
		t, ok := named[name]
		if !ok && name == "default" && def != "" {
			t, ok = namedTemplate{def, defSource}, true
		}
		if !ok {
			return nil, fmt.Errorf("%w named %q in %s (it has: %s)", ErrNoTemplate, name, dir, strings.Join(templateNames(named), ", "))
		}
		text, source = t.text, t.source
	}
	t, err := Parse(source, text, special)
	if err != nil {
		return nil, err
	}
	t.Name = name
	return t, nil
}

type namedTemplate struct{ text, source string }

func templateNames(named map[string]namedTemplate) []string {
	var names []string
	for n := range named {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return []string{"no named templates"}
	}
	return names
}

// readFile reads dir/name; ok is false when it does not exist.
func readFile(dir, name string) (b []byte, path string, ok bool, err error) {
	path = filepath.Join(dir, name)
	b, err = os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, path, false, nil
	}
	if err != nil {
		return nil, path, false, fmt.Errorf("chat: %w", err)
	}
	return b, path, true, nil
}

// findTemplates returns the folder's named templates and its default one
// (def is "" when there is none).
func findTemplates(dir string) (named map[string]namedTemplate, def, defSource string, err error) {
	named = map[string]namedTemplate{}
	if entries, err := os.ReadDir(filepath.Join(dir, "additional_chat_templates")); err == nil {
		for _, e := range entries {
			if n, ok := strings.CutSuffix(e.Name(), ".jinja"); ok && !e.IsDir() {
				b, path, _, err := readFile(filepath.Join(dir, "additional_chat_templates"), e.Name())
				if err != nil {
					return nil, "", "", err
				}
				named[n] = namedTemplate{string(b), path}
			}
		}
	}
	if b, path, ok, err := readFile(dir, "chat_template.jinja"); err != nil || ok {
		return named, string(b), path, err
	}
	if b, path, ok, err := readFile(dir, "chat_template.json"); err != nil {
		return nil, "", "", err
	} else if ok {
		var v struct {
			ChatTemplate json.RawMessage `json:"chat_template"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, "", "", fmt.Errorf("chat: %s: %v", path, err)
		}
		if len(v.ChatTemplate) > 0 && string(v.ChatTemplate) != "null" {
			var s string
			if err := json.Unmarshal(v.ChatTemplate, &s); err != nil {
				return nil, "", "", fmt.Errorf("chat: %s: chat_template must be a string", path)
			}
			return named, s, path + " (chat_template)", nil
		}
	}
	b, path, ok, err := readFile(dir, "tokenizer_config.json")
	if err != nil || !ok {
		return named, "", "", err
	}
	var cfg struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, "", "", fmt.Errorf("chat: %s: %v", path, err)
	}
	raw := cfg.ChatTemplate
	if len(raw) == 0 || string(raw) == "null" {
		return named, "", "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return named, s, path + " (chat_template)", nil
	}
	var list []struct {
		Name     *string `json:"name"`
		Template *string `json:"template"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, "", "", fmt.Errorf("chat: %s: chat_template must be a string or a list of {\"name\", \"template\"} objects", path)
	}
	for i, e := range list {
		if e.Name == nil || e.Template == nil {
			return nil, "", "", fmt.Errorf("chat: %s: chat_template[%d] needs a \"name\" and a \"template\" string", path, i)
		}
		named[*e.Name] = namedTemplate{*e.Template, fmt.Sprintf("%s (chat_template %q)", path, *e.Name)}
	}
	return named, "", "", nil
}

// readSpecial reads the special tokens from tokenizer_config.json, then
// special_tokens_map.json for those it leaves out or sets to null.
func readSpecial(dir string) (map[string]any, error) {
	special := map[string]any{}
	for _, f := range []string{"tokenizer_config.json", "special_tokens_map.json"} {
		b, path, ok, err := readFile(dir, f)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		var cfg map[string]json.RawMessage
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("chat: %s: %v", path, err)
		}
		for _, name := range specialNames {
			raw, ok := cfg[name]
			if _, done := special[name]; done || !ok || string(raw) == "null" {
				continue
			}
			v, err := tokenContent(raw, name == "additional_special_tokens")
			if err != nil {
				return nil, fmt.Errorf("chat: %s: %s: %v", path, name, err)
			}
			if v != nil {
				special[name] = v
			}
		}
	}
	return special, nil
}

// tokenContent reads a special token: a string, or an AddedToken object
// with "content"; a list of them when list is set.
func tokenContent(raw json.RawMessage, list bool) (any, error) {
	if list {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("expected a list of tokens")
		}
		out := make([]any, 0, len(items))
		for _, it := range items {
			v, err := tokenContent(it, false)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return nil, nil
		}
		return s, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
		return nil, fmt.Errorf("expected a string or an object with a \"content\" string, got %.60s", string(raw))
	}
	return *obj.Content, nil
}

// LoadFile reads a chat template from the file at path, whose whole text
// is the template (a chat_template.jinja, say), with the special tokens of
// the tokenizer folder specialDir as LoadDir reads them ("" passes none).
// A folder at path is read with LoadDir, its own special tokens included.
func LoadFile(path, specialDir string) (*Template, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("chat: %w", err)
	}
	if st.IsDir() {
		return LoadDir(path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("chat: %w", err)
	}
	var special map[string]any
	if specialDir != "" {
		if special, err = readSpecial(specialDir); err != nil {
			return nil, err
		}
	}
	return Parse(path, string(b), special)
}
