package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// LoadDir reads the tokenizer of a Hugging Face model folder: its
// tokenizer.json (LoadHF) if there is one, else its tokenizer.model
// (LoadSentencePiece). Where the tokenizer file leaves BOS or EOS open (a
// tokenizer.json whose post_processor adds no EOS, say), they are taken
// from the folder's tokenizer_config.json ("bos_token", "eos_token"), then
// special_tokens_map.json, then config.json ("bos_token_id",
// "eos_token_id"; the first of a list), and only then guessed as LoadHF
// does.
func LoadDir(dir string) (*Tokenizer, error) {
	jsonPath := filepath.Join(dir, "tokenizer.json")
	modelPath := filepath.Join(dir, "tokenizer.model")
	var t *Tokenizer
	var err error
	switch {
	case exists(jsonPath):
		var b []byte
		if b, err = os.ReadFile(jsonPath); err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		if t, err = parseHF(b, jsonPath); err != nil {
			return nil, err
		}
	case exists(modelPath):
		if t, err = LoadSentencePiece(modelPath); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("tokenizer: %s has neither tokenizer.json nor tokenizer.model", dir)
	}
	if t.kind == kindHF {
		cfg, err := readDirConfig(dir, t)
		if err != nil {
			return nil, err
		}
		if t.bos < 0 {
			t.bos = cfg.bos
		}
		if t.eos < 0 {
			t.eos = cfg.eos
		}
		if t.bos < 0 {
			t.bos = guessSpecial(t, bosNames)
		}
		if t.eos < 0 {
			t.eos = guessSpecial(t, eosNames)
		}
	}
	return t, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// dirConfig is what a folder's config files say of BOS and EOS (-1 where
// they say nothing).
type dirConfig struct{ bos, eos int }

// readDirConfig reads BOS and EOS from tokenizer_config.json,
// special_tokens_map.json and config.json, the first that names each.
func readDirConfig(dir string, t *Tokenizer) (dirConfig, error) {
	cfg := dirConfig{-1, -1}
	for _, f := range []string{"tokenizer_config.json", "special_tokens_map.json"} {
		path := filepath.Join(dir, f)
		var v struct {
			BOS json.RawMessage `json:"bos_token"`
			EOS json.RawMessage `json:"eos_token"`
		}
		if ok, err := readJSON(path, &v); err != nil || !ok {
			if err != nil {
				return cfg, err
			}
			continue
		}
		for _, c := range []struct {
			field string
			raw   json.RawMessage
			id    *int
		}{{"bos_token", v.BOS, &cfg.bos}, {"eos_token", v.EOS, &cfg.eos}} {
			if *c.id >= 0 || isNull(c.raw) {
				continue
			}
			id, err := tokenField(c.raw, t)
			if err != nil {
				return cfg, fmt.Errorf("tokenizer: %s: %s: %v", path, c.field, err)
			}
			*c.id = id
		}
	}
	path := filepath.Join(dir, "config.json")
	var v struct {
		BOS json.RawMessage `json:"bos_token_id"`
		EOS json.RawMessage `json:"eos_token_id"`
	}
	ok, err := readJSON(path, &v)
	if err != nil || !ok {
		return cfg, err
	}
	for _, c := range []struct {
		field string
		raw   json.RawMessage
		id    *int
	}{{"bos_token_id", v.BOS, &cfg.bos}, {"eos_token_id", v.EOS, &cfg.eos}} {
		if *c.id >= 0 || isNull(c.raw) {
			continue
		}
		var one int
		var list []int
		switch {
		case json.Unmarshal(c.raw, &one) == nil:
		case json.Unmarshal(c.raw, &list) == nil && len(list) > 0:
			one = list[0]
		default:
			return cfg, fmt.Errorf("tokenizer: %s: %s is %s; expected an id or a list of ids", path, c.field, truncate(string(c.raw), 40))
		}
		if one < 0 || one >= t.VocabSize() {
			return cfg, fmt.Errorf("tokenizer: %s: %s is %d, outside the tokenizer's %d tokens", path, c.field, one, t.VocabSize())
		}
		*c.id = one
	}
	return cfg, nil
}

// readJSON decodes path into v; a missing file is ok false and no error.
func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tokenizer: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("tokenizer: %s: not valid JSON for the fields read: %v", path, err)
	}
	return true, nil
}

// tokenField reads a token named in a config file, either as its content
// or as an object {"content": ...}, and returns its id.
func tokenField(raw json.RawMessage, t *Tokenizer) (int, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var obj struct {
			Content *string `json:"content"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
			return -1, fmt.Errorf("%s; expected a token or {\"content\": token}", truncate(string(raw), 40))
		}
		s = *obj.Content
	}
	id, ok := t.Lookup(s)
	if !ok {
		return -1, fmt.Errorf("%q is not in the vocabulary", s)
	}
	return id, nil
}
