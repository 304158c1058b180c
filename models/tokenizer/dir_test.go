package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeDir makes a model folder holding files (name → content).
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestLoadDir checks where BOS and EOS come from: the tokenizer file's
// template first, then tokenizer_config.json, special_tokens_map.json and
// config.json, then the guess from special added tokens.
func TestLoadDir(t *testing.T) {
	// Ids: 0 <unk>, 1 <s>, 2 </s>, 3 <eot>, then bytes and "a".
	vocab := append([]string{"<unk>", "<s>", "</s>", "<eot>"}, byteVocab("a")[3:]...)
	added := `[{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true},
 {"id": 2, "content": "</s>", "special": true}, {"id": 3, "content": "<eot>", "special": true}]`
	const template = `{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}`
	withBOS := string(hfJSON(vocab, nil, `"byte_fallback": true`, added, "", "", template, ""))
	plain := string(hfJSON(vocab, nil, `"byte_fallback": true`, added, "", "", "", ""))
	sp := string(spModelBytes(synthPieces(spPiece{"a", -1, spNormal}), 2, true))
	cases := []struct {
		name     string
		files    map[string]string
		bos, eos int
		kind     kind
	}{
		{"template, no config: EOS guessed", map[string]string{"tokenizer.json": withBOS}, 1, 2, kindHF},
		{"tokenizer_config string", map[string]string{"tokenizer.json": withBOS, "tokenizer_config.json": `{"eos_token": "<eot>"}`}, 1, 3, kindHF},
		{"tokenizer_config object", map[string]string{"tokenizer.json": plain, "tokenizer_config.json": `{"bos_token": {"content": "<eot>"}, "eos_token": null}`}, 3, 2, kindHF},
		{"template beats config", map[string]string{"tokenizer.json": withBOS, "tokenizer_config.json": `{"bos_token": "<eot>"}`}, 1, 2, kindHF},
		{"special_tokens_map", map[string]string{"tokenizer.json": plain, "special_tokens_map.json": `{"eos_token": {"content": "<eot>", "lstrip": false}}`}, 1, 3, kindHF},
		{"config.json list", map[string]string{"tokenizer.json": plain, "config.json": `{"bos_token_id": 3, "eos_token_id": [3, 2]}`}, 3, 3, kindHF},
		{"tokenizer.json first", map[string]string{"tokenizer.json": plain, "tokenizer.model": sp}, 1, 2, kindHF},
		{"tokenizer.model", map[string]string{"tokenizer.model": sp, "tokenizer_config.json": `{"eos_token": "<eot>"}`}, 1, 2, kindSentencePiece},
	}
	for _, c := range cases {
		dir := writeDir(t, c.files)
		for _, load := range []func(string) (*Tokenizer, error){LoadDir, Load} {
			tok, err := load(dir)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			if tok.BOS() != c.bos || tok.EOS() != c.eos || tok.kind != c.kind {
				t.Errorf("%s: BOS %d EOS %d kind %d, want %d %d %d", c.name, tok.BOS(), tok.EOS(), tok.kind, c.bos, c.eos, c.kind)
			}
		}
	}
}

func TestLoadDirErrors(t *testing.T) {
	vocab := append([]string{"<unk>", "<s>", "</s>"}, byteVocab("a")[3:]...)
	plain := string(hfJSON(vocab, nil, `"byte_fallback": true`, "", "", "", "", ""))
	cases := []struct {
		name  string
		files map[string]string
		want  string // after the folder's path
	}{
		{"empty folder", nil, "has neither tokenizer.json nor tokenizer.model"},
		{"bad tokenizer.json", map[string]string{"tokenizer.json": "{"}, "tokenizer.json: not a valid tokenizer.json"},
		{"bad tokenizer.model", map[string]string{"tokenizer.model": "\x0b"}, "tokenizer.model: not a valid SentencePiece model"},
		{"bad config JSON", map[string]string{"tokenizer.json": plain, "tokenizer_config.json": "{"}, "tokenizer_config.json: not valid JSON"},
		{"unknown eos", map[string]string{"tokenizer.json": plain, "tokenizer_config.json": `{"eos_token": "<end>"}`}, `tokenizer_config.json: eos_token: "<end>" is not in the vocabulary`},
		{"bad eos form", map[string]string{"tokenizer.json": plain, "special_tokens_map.json": `{"eos_token": 5}`}, `special_tokens_map.json: eos_token: 5; expected a token or {"content": token}`},
		{"eos id out of range", map[string]string{"tokenizer.json": plain, "config.json": `{"eos_token_id": 900}`}, "config.json: eos_token_id is 900, outside the tokenizer's 260 tokens"},
		{"eos id not a number", map[string]string{"tokenizer.json": plain, "config.json": `{"eos_token_id": "x"}`}, `config.json: eos_token_id is "x"; expected an id or a list of ids`},
	}
	for _, c := range cases {
		dir := writeDir(t, c.files)
		_, err := LoadDir(dir)
		if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %s and containing %q", c.name, err, dir, c.want)
		}
	}
}

// TestLoadKinds checks that Load tells the files apart by name.
func TestLoadKinds(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		"tok.bin":         build(7, entry{"a", -1}),
		"x.model":         spModelBytes(synthPieces(spPiece{"a", -1, spNormal}), 2, true),
		"tokenizer.json":  hfJSON(byteVocab("a"), nil, `"byte_fallback": true`, "", "", "", "", ""),
		"other.JSON":      hfJSON(byteVocab("a"), nil, `"byte_fallback": true`, "", "", "", "", ""),
		"tokenizer.model": spModelBytes(synthPieces(), 2, true),
	}
	want := map[string]kind{"tok.bin": kindLlama2c, "x.model": kindSentencePiece, "tokenizer.json": kindHF, "other.JSON": kindHF, "tokenizer.model": kindSentencePiece}
	for name, b := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		tok, err := Load(path)
		if err != nil {
			t.Errorf("Load(%s): %v", name, err)
			continue
		}
		if tok.kind != want[name] || tok.Name() != path {
			t.Errorf("Load(%s): kind %d name %q", name, tok.kind, tok.Name())
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.bin")); err == nil || !strings.Contains(err.Error(), "missing.bin") {
		t.Errorf("missing file: %v", err)
	}
	// A tokenizer.bin keeps llama2.c's ids.
	tok, err := Load(filepath.Join(dir, "tok.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.BOS() != BOS || tok.EOS() != EOS {
		t.Errorf("tokenizer.bin BOS %d EOS %d", tok.BOS(), tok.EOS())
	}
}
