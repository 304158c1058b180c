package tokenizer

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

// LoadDir reads the tokenizer of a Hugging Face model folder: its
// tokenizer.json (LoadHF) if there is one, else its tokenizer.model
// (LoadSentencePiece). Where the tokenizer file leaves BOS or EOS open (a
// tokenizer.json whose post_processor adds no EOS, say), they are taken
// from the folder's tokenizer_config.json ("bos_token", "eos_token"), then
// special_tokens_map.json, then config.json ("bos_token_id",
// "eos_token_id"; the first of a list), and only then guessed as LoadHF
// does. A tokenizer_config.json with "add_bos_token": false (Qwen's, for
// one) means that the model's text starts without BOS, as transformers
// encodes it: BOS is then -1 whatever the files name. So does one with
// "bos_token": null where tokenizer.json adds no BOS itself (Qwen2's, which
// has no add_bos_token, yet whose config.json names a bos_token_id that
// transformers never adds).
//
// Models whose generation ends at more than one token list them all as
// eos_token_id in generation_config.json or config.json (Llama 3 Instruct:
// <|end_of_text|>, <|eom_id|> and <|eot_id|>); Stops returns them with EOS.
func LoadDir(dir string) (*Tokenizer, error) {
	path, ok := DirFile(dir)
	if !ok {
		return nil, fmt.Errorf("tokenizer: %s has neither tokenizer.json nor tokenizer.model", dir)
	}
	var t *Tokenizer
	var err error
	if filepath.Base(path) == "tokenizer.json" {
		var b []byte
		if b, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		if t, err = parseHF(b, path); err != nil {
			return nil, err
		}
	} else if t, err = LoadSentencePiece(path); err != nil {
		return nil, err
	}
	cfg, err := readDirConfig(dir, t)
	if err != nil {
		return nil, err
	}
	if t.kind == kindHF {
		// Where tokenizer.json's post_processor adds no BOS, only the
		// tokenizer classes that rebuild it from add_bos_token add one.
		configBOS := !cfg.bosNull && (cfg.class == "" || addsConfigBOS(cfg.class))
		if t.bos < 0 && configBOS {
			t.bos = cfg.bos
		}
		if t.eos < 0 {
			t.eos = cfg.eos
		}
		if t.bos < 0 && configBOS {
			t.bos = guessSpecial(t, bosNames)
		}
		if t.eos < 0 {
			t.eos = guessSpecial(t, eosNames)
		}
	}
	if cfg.addBOS != nil && !*cfg.addBOS {
		t.bos = -1
	}
	t.stops = cfg.stops
	return t, nil
}

// addsConfigBOS reports whether transformers' tokenizer class (the
// tokenizer_class of tokenizer_config.json) adds the configured BOS to a
// text whatever tokenizer.json's post_processor says: the LLaMA-style
// classes rebuild the post_processor from add_bos_token (true by default)
// when they load. Every other class adds only what the post_processor
// adds, so that a GPT-2 or SmolLM2 folder, whose bos_token is named but
// whose post_processor adds none, encodes its text without it.
func addsConfigBOS(class string) bool {
	switch strings.TrimSuffix(class, "Fast") {
	case "LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer", "CohereTokenizer":
		return true
	}
	return false
}

// DirFile returns the file of the Hugging Face model folder dir that
// LoadDir reads the tokenizer from: its tokenizer.json if there is one,
// else its tokenizer.model; ok is false when it has neither.
func DirFile(dir string) (path string, ok bool) {
	for _, name := range []string{"tokenizer.json", "tokenizer.model"} {
		if path = filepath.Join(dir, name); exists(path) {
			return path, true
		}
	}
	return "", false
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// dirConfig is what a folder's config files say of BOS and EOS (-1 where
// they say nothing), whether BOS starts the text (nil where they do not
// say), and every id that ends a generation.
type dirConfig struct {
	bos, eos int
	addBOS   *bool
	bosNull  bool   // tokenizer_config.json says "bos_token": null
	class    string // tokenizer_config.json's tokenizer_class, "" where absent
	stops    []int
}

// readDirConfig reads BOS and EOS from tokenizer_config.json,
// special_tokens_map.json and config.json, the first that names each, and
// the ids that end a generation from generation_config.json and
// config.json.
func readDirConfig(dir string, t *Tokenizer) (dirConfig, error) {
	cfg := dirConfig{bos: -1, eos: -1}
	for _, f := range []string{"tokenizer_config.json", "special_tokens_map.json"} {
		path := filepath.Join(dir, f)
		var v struct {
			BOS    json.RawMessage `json:"bos_token"`
			EOS    json.RawMessage `json:"eos_token"`
			AddBOS json.RawMessage `json:"add_bos_token"`
			Class  string          `json:"tokenizer_class"`
		}
		if ok, err := readJSON(path, &v); err != nil || !ok {
			if err != nil {
				return cfg, err
			}
			continue
		}
		if f == "tokenizer_config.json" {
			cfg.class = v.Class
		}
		if f == "tokenizer_config.json" && !isNull(v.AddBOS) {
			var add bool
			if err := json.Unmarshal(v.AddBOS, &add); err != nil {
				return cfg, fmt.Errorf("tokenizer: %s: add_bos_token is %s; expected true or false", path, truncate(string(v.AddBOS), 40))
			}
			cfg.addBOS = &add
		}
		// An absent field is nil; a null one is the JSON text null.
		if f == "tokenizer_config.json" && v.BOS != nil && isNull(v.BOS) {
			cfg.bosNull = true
		}
		for _, c := range []struct {
			field string
			raw   json.RawMessage
			id    *int
		}{{"bos_token", v.BOS, &cfg.bos}, {"eos_token", v.EOS, &cfg.eos}} {
			// A tokenizer.model names its own BOS and EOS.
			if t.kind != kindHF || *c.id >= 0 || isNull(c.raw) {
				continue
			}
			id, err := tokenField(c.raw, t)
			if err != nil {
				return cfg, fmt.Errorf("tokenizer: %s: %s: %v", path, c.field, err)
			}
			*c.id = id
		}
	}
	for _, f := range []string{"config.json", "generation_config.json"} {
		path := filepath.Join(dir, f)
		var v struct {
			BOS json.RawMessage `json:"bos_token_id"`
			EOS json.RawMessage `json:"eos_token_id"`
		}
		ok, err := readJSON(path, &v)
		if err != nil {
			return cfg, err
		}
		if !ok {
			continue
		}
		bos, err := idList(v.BOS, path, "bos_token_id", t)
		if err != nil {
			return cfg, err
		}
		eos, err := idList(v.EOS, path, "eos_token_id", t)
		if err != nil {
			return cfg, err
		}
		// config.json names BOS and EOS where the tokenizer's files do not.
		if f == "config.json" && t.kind == kindHF {
			if cfg.bos < 0 && len(bos) > 0 {
				cfg.bos = bos[0]
			}
			if cfg.eos < 0 && len(eos) > 0 {
				cfg.eos = eos[0]
			}
		}
		for _, id := range eos {
			if !slices.Contains(cfg.stops, id) {
				cfg.stops = append(cfg.stops, id)
			}
		}
	}
	return cfg, nil
}

// idList reads a field of config.json or generation_config.json holding a
// token id or a list of them (nil for null or a missing field), each of
// which must be one of t's.
func idList(raw json.RawMessage, path, field string, t *Tokenizer) ([]int, error) {
	if isNull(raw) {
		return nil, nil
	}
	var one int
	var list []int
	switch {
	case json.Unmarshal(raw, &one) == nil:
		list = []int{one}
	case json.Unmarshal(raw, &list) == nil:
	default:
		return nil, fmt.Errorf("tokenizer: %s: %s is %s; expected an id or a list of ids", path, field, truncate(string(raw), 40))
	}
	for _, id := range list {
		if id < 0 || id >= t.VocabSize() {
			return nil, fmt.Errorf("tokenizer: %s: %s is %d, outside the tokenizer's %d tokens", path, field, id, t.VocabSize())
		}
	}
	return list, nil
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
