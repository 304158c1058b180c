package tokenizer

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// The hostile corpus (testdata/corpus-nasty.json, written by
// scripts/tokenizer-ref/nastycorpus.mjs): 10 000-character whitespace runs,
// words and digit runs thousands long, NUL and control characters, U+FFFD,
// mixed scripts, texts that are only special tokens or glue them to words,
// near misses of "<|eot_id|>", "▁" in the text, and whitespace beside
// added tokens with lstrip and rstrip. The references in testdata/nasty are
// gen.mjs --compact outputs (ids and decodings only), gzip-compressed since
// the long texts make them large:
//
//	T=models/tokenizer/testdata
//	node scripts/tokenizer-ref/nastycorpus.mjs > $T/corpus-nasty.json
//	for n in bl-llama3-mini bl-gpt2-mini bl-digits-mini bl-strip-mini sp-tok512 sp-strip sp-metaspace \
//	  bl-qwen3-mini bl-nfd-mini bl-nfkc-mini bl-nfkd-mini bl-tekken-mini; do
//	  node scripts/tokenizer-ref/gen.mjs --engine hf --compact $T/$n $T/corpus-nasty.json | gzip -9n > $T/nasty/$n.ref.json.gz
//	done
//	node scripts/tokenizer-ref/gen.mjs --engine sp --compact $T/sp-tok512 $T/corpus-nasty.json | gzip -9n > $T/nasty/sp-tok512.ref-sp.json.gz
//	for n in llama3 llama3.1 llama3.2 gpt2 qwen3 qwen2.5 mistral mistral-nemo gemma2 gemma3; do
//	  node scripts/tokenizer-ref/gen.mjs --compact .tokenizers/$n $T/corpus-nasty.json | gzip -9n > $T/nasty/$n.ref.json.gz
//	done
//	node scripts/tokenizer-ref/gen.mjs --engine sp --compact .tokenizers/llama2-sp $T/corpus-nasty.json | gzip -9n > $T/nasty/llama2-sp.ref-sp.json.gz
//
// The strip fixtures are bl-llama3-mini and sp-tok512 with added tokens
// given lstrip/rstrip, a normalized one and new special ones
// (scripts/tokenizer-ref/addedtokens.mjs; the edits are in its README).

// readCompactRef reads a compressed compact reference and fills in each
// result's text from the corpus (a file in testdata), by name.
func readCompactRef(t testing.TB, path, corpusFile string) jsRef {
	t.Helper()
	var corpus []struct{ Name, Text string }
	if err := json.Unmarshal(readFile(t, filepath.Join("testdata", corpusFile)), &corpus); err != nil {
		t.Fatal(err)
	}
	texts := map[string]string{}
	for _, c := range corpus {
		texts[c.Name] = c.Text
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var ref jsRef
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(ref.Results) != len(corpus) {
		t.Fatalf("%s has %d results for the %d texts of %s: regenerate it", path, len(ref.Results), len(corpus), corpusFile)
	}
	for i := range ref.Results {
		text, ok := texts[ref.Results[i].Name]
		if !ok {
			t.Fatalf("%s: result %q is not in %s", path, ref.Results[i].Name, corpusFile)
		}
		ref.Results[i].Text = text
	}
	return ref
}

// nastyCase is one tokenizer checked against one reference. skipIDs leaves
// out texts where the reference is known to differ from the Rust crate (see
// scripts/tokenizer-ref/README.md), skipDecode texts where only its
// decoding does.
type nastyCase struct {
	name, tok, ref      string
	skipIDs, skipDecode func(string) bool
}

// hasBOM reports whether s has U+FEFF, which the JS library's ByteFallback
// decoder drops at the start of each run of byte tokens (a TextDecoder
// that strips byte order marks), where the Rust crate keeps it.
func hasBOM(s string) bool { return strings.ContainsRune(s, '\ufeff') }

func checkNasty(t *testing.T, c nastyCase) {
	checkCompact(t, c, "corpus-nasty.json")
}

// checkCompact is checkNasty over the compact reference c.ref of any corpus
// in testdata. It returns the number of texts compared.
func checkCompact(t *testing.T, c nastyCase, corpusFile string) (compared int) {
	tok, err := Load(c.tok)
	if err != nil {
		t.Fatal(err)
	}
	ref := readCompactRef(t, c.ref, corpusFile)
	for _, r := range ref.Results {
		if c.skipIDs != nil && c.skipIDs(r.Text) {
			continue
		}
		if ref.Engine == "sp" && hasSpecial(tok, r.Text) {
			// SentencePiece spells out "<s>" where LlamaTokenizer
			// splits it out; the hf references cover that.
			continue
		}
		compared++
		got := tok.Encode(r.Text, false, false)
		if !same(got, r.IDsNoSpecial) {
			t.Errorf("%s: %q: Encode gives %d ids, the reference %d\n got %v\nwant %v", c.name, r.Name, len(got), len(r.IDsNoSpecial), head(got), head(r.IDsNoSpecial))
			continue
		}
		ids, want := r.IDs, r.DecodedSkipSpecial
		switch {
		case ref.Engine == "sp":
			ids, want = r.IDsNoSpecial, r.Decoded
		case len(r.IDs) == len(r.IDsNoSpecial)+1:
			if with := tok.Encode(r.Text, true, false); !reflect.DeepEqual(with, r.IDs) {
				t.Errorf("%s: %q: Encode with BOS = %v, want %v", c.name, r.Name, head(with), head(r.IDs))
			}
		case !same(r.IDs, r.IDsNoSpecial):
			t.Fatalf("%s: %q: the reference adds special tokens other than one BOS", c.name, r.Name)
		}
		if c.skipDecode != nil && c.skipDecode(r.Text) {
			continue
		}
		if d := tok.DecodeAll(ids); d != want {
			t.Errorf("%s: %q: DecodeAll = %q, want %q", c.name, r.Name, head([]byte(d)), head([]byte(want)))
		}
	}
	if compared < len(ref.Results)-10 {
		t.Errorf("%s: only %d of %d texts compared", c.name, compared, len(ref.Results))
	}
	return compared
}

// head shortens a long list for a message.
func head[T any](s []T) []T {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

func byteLevelRegexSkip(s string) bool { return hasJSOnlySpace(s) }

// TestNastyCorpus checks the committed fixtures (byte-level BPE from Llama 3,
// GPT-2 and Qwen3, the last also with NFD, NFKC and NFKD for its NFC,
// Llama's SentencePiece layout as tokenizer.json and tokenizer.model, and
// the two with lstrip/rstrip/normalized added tokens) against Hugging
// Face's JS tokenizers and SentencePiece on the hostile corpus.
func TestNastyCorpus(t *testing.T) {
	T := "testdata"
	for _, c := range []nastyCase{
		{"bl-llama3-mini", T + "/bl-llama3-mini/tokenizer.json", T + "/nasty/bl-llama3-mini.ref.json.gz", nil, nil},
		{"bl-strip-mini", T + "/bl-strip-mini/tokenizer.json", T + "/nasty/bl-strip-mini.ref.json.gz", hasJSOnlySpace, nil},
		{"bl-gpt2-mini", T + "/bl-gpt2-mini/tokenizer.json", T + "/nasty/bl-gpt2-mini.ref.json.gz", byteLevelRegexSkip, nil},
		{"bl-digits-mini", T + "/bl-digits-mini/tokenizer.json", T + "/nasty/bl-digits-mini.ref.json.gz",
			func(s string) bool { return hasJSOnlySpace(s) || hasNonASCIINumber(s) }, nil},
		{"bl-qwen3-mini", T + "/bl-qwen3-mini/tokenizer.json", T + "/nasty/bl-qwen3-mini.ref.json.gz", nil, nil},
		{"bl-tekken-mini", T + "/bl-tekken-mini/tokenizer.json", T + "/nasty/bl-tekken-mini.ref.json.gz", nil, nil},
		{"bl-nfd-mini", T + "/bl-nfd-mini/tokenizer.json", T + "/nasty/bl-nfd-mini.ref.json.gz", nil, nil},
		{"bl-nfkc-mini", T + "/bl-nfkc-mini/tokenizer.json", T + "/nasty/bl-nfkc-mini.ref.json.gz", nil, nil},
		{"bl-nfkd-mini", T + "/bl-nfkd-mini/tokenizer.json", T + "/nasty/bl-nfkd-mini.ref.json.gz", nil, nil},
		{"sp-tok512 json", T + "/sp-tok512/tokenizer.json", T + "/nasty/sp-tok512.ref.json.gz", nil, hasBOM},
		{"sp-strip", T + "/sp-strip/tokenizer.json", T + "/nasty/sp-strip.ref.json.gz", hasJSOnlySpace, hasBOM},
		{"sp-metaspace", T + "/sp-metaspace/tokenizer.json", T + "/nasty/sp-metaspace.ref.json.gz", nil, hasBOM},
		{"sp-tok512 model", T + "/sp-tok512/tokenizer.model", T + "/nasty/sp-tok512.ref-sp.json.gz", nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) { checkNasty(t, c) })
	}
}

// TestNastyCorpusRealFiles is TestNastyCorpus over the real files that
// scripts/fetch-tokenizers.sh puts in SORA_TOKENIZER_DIR.
func TestNastyCorpusRealFiles(t *testing.T) {
	root := os.Getenv("SORA_TOKENIZER_DIR")
	if root == "" {
		t.Skip("SORA_TOKENIZER_DIR is not set (scripts/fetch-tokenizers.sh fills a folder for it)")
	}
	T := "testdata/nasty/"
	for _, c := range []nastyCase{
		{"llama3", filepath.Join(root, "llama3", "tokenizer.json"), T + "llama3.ref.json.gz", nil, nil},
		{"llama3.1", filepath.Join(root, "llama3.1", "tokenizer.json"), T + "llama3.1.ref.json.gz", nil, nil},
		{"gpt2", filepath.Join(root, "gpt2", "tokenizer.json"), T + "gpt2.ref.json.gz", byteLevelRegexSkip, nil},
		{"qwen3", filepath.Join(root, "qwen3", "tokenizer.json"), T + "qwen3.ref.json.gz", nil, nil},
		{"mistral", filepath.Join(root, "mistral", "tokenizer.json"), T + "mistral.ref.json.gz", nil, hasBOM},
		{"llama2-sp", filepath.Join(root, "llama2-sp", "tokenizer.model"), T + "llama2-sp.ref-sp.json.gz", nil, nil},
		{"llama3.2", filepath.Join(root, "llama3.2", "tokenizer.json"), T + "llama3.2.ref.json.gz", nil, nil},
		{"qwen2.5", filepath.Join(root, "qwen2.5", "tokenizer.json"), T + "qwen2.5.ref.json.gz", nil, nil},
		{"mistral-nemo", filepath.Join(root, "mistral-nemo", "tokenizer.json"), T + "mistral-nemo.ref.json.gz", nil, nil},
		{"gemma2", filepath.Join(root, "gemma2", "tokenizer.json"), T + "gemma2.ref.json.gz", nil, hasBOM},
		{"gemma3", filepath.Join(root, "gemma3", "tokenizer.json"), T + "gemma3.ref.json.gz", nil, hasBOM},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := os.Stat(c.tok); err != nil {
				t.Skipf("%v (run scripts/fetch-tokenizers.sh)", err)
			}
			checkNasty(t, c)
		})
	}
}

// TestRandomCorpusRealFiles checks the real files added after the first
// ones (Gemma 2 and 3, Llama 3.2, Qwen2.5, Mistral Nemo) on the 300 random
// texts of testdata/corpus-random.json, against compact references made by
//
//	for n in gemma2 gemma3 llama3.2 qwen2.5 mistral-nemo; do
//	  node scripts/tokenizer-ref/gen.mjs --compact .tokenizers/$n $T/corpus-random.json | gzip -9n > $T/random/$n.ref.json.gz
//	done
func TestRandomCorpusRealFiles(t *testing.T) {
	root := os.Getenv("SORA_TOKENIZER_DIR")
	if root == "" {
		t.Skip("SORA_TOKENIZER_DIR is not set (scripts/fetch-tokenizers.sh fills a folder for it)")
	}
	for _, c := range []struct {
		name       string
		skipDecode func(string) bool
	}{
		{"gemma2", hasBOM}, {"gemma3", hasBOM}, {"llama3.2", nil}, {"qwen2.5", nil}, {"mistral-nemo", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(root, c.name, "tokenizer.json")
			if _, err := os.Stat(path); err != nil {
				t.Skipf("%v (run scripts/fetch-tokenizers.sh)", err)
			}
			ref := filepath.Join("testdata", "random", c.name+".ref.json.gz")
			if n := checkCompact(t, nastyCase{c.name, path, ref, nil, c.skipDecode}, "corpus-random.json"); n < 300 {
				t.Errorf("only %d texts compared", n)
			}
		})
	}
}

// TestStripFixtures checks the fixtures with lstrip/rstrip/normalized added
// tokens, and sp-metaspace (sp-tok512 in the layout transformers writes for
// LLaMA with legacy false, as Mistral v0.3 ships: no normalizer, a
// Metaspace pre-tokenizer with prepend_scheme "first" and split false), on
// the shared corpus too.
func TestStripFixtures(t *testing.T) {
	ms, err := LoadHF("testdata/sp-metaspace/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	checkHFRef(t, ms, readRef(t, "testdata/sp-metaspace/ref.json"))
	bl, err := LoadHF("testdata/bl-strip-mini/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	if n := checkIDs(t, bl, readJSRef(t, "testdata/bl-strip-mini/ref.json")); n == 0 {
		t.Error("no text was encoded with a BOS")
	}
	sp, err := LoadHF("testdata/sp-strip/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	checkHFRef(t, sp, readRef(t, "testdata/sp-strip/ref.json"))
}

// FuzzEncode encodes arbitrary bytes with fixtures of every kind read from
// Hugging Face files (byte-level BPE with lstrip/rstrip tokens, Llama's
// layout in tokenizer.json with such tokens and with a Metaspace
// pre-tokenizer, tokenizer.model, and byte-level BPE with NFC and with
// NFKD): no panic, every id in the vocabulary, a Printer that takes every
// token, and DecodeAll giving the text back wherever no added token is in
// it (invalid UTF-8 included, whose bytes go through byte tokens; with a
// Unicode normalizer, the text normalized, which normalizing again leaves
// alone) and, for Llama's
// layout (either form), no "▁", which encodes as a space, and with the
// Metaspace form no leading space, which Hugging Face loses as well.
func FuzzEncode(f *testing.F) {
	var toks []*Tokenizer
	for _, p := range []string{"testdata/bl-strip-mini/tokenizer.json", "testdata/sp-strip/tokenizer.json", "testdata/sp-metaspace/tokenizer.json", "testdata/sp-tok512/tokenizer.model",
		"testdata/bl-qwen3-added/tokenizer.json", "testdata/bl-nfkd-mini/tokenizer.json"} {
		tok, err := Load(p)
		if err != nil {
			f.Fatal(err)
		}
		toks = append(toks, tok)
	}
	for _, s := range []string{"", "Hello world", "a\xffb\xe6\x97", "  <|eot_id|>  x", "[INST] hi [/INST]", "▁x ▁", "\x00\r\n\t 123456",
		"cafe\u0301 <cafe\u0301> \ufb01\u1100\u1161", "a" + strings.Repeat("\u0301\u0316", 20) + "\xff\u0301", "A\u09be\u0316\u0302\U00010041\u0301"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range toks {
			ids := tok.Encode(s, true, true)
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("%s: Encode(%q) gave id %d outside the vocabulary of %d", tok.Name(), s, id, tok.VocabSize())
				}
			}
			p := tok.NewPrinter(-1)
			for _, id := range ids {
				p.Next(id)
			}
			if hasAddedToken(tok, s) || tok.kind != kindHF {
				continue
			}
			if spLayout := tok.hf.bpe.byteFallback; spLayout && (strings.Contains(s, "▁") ||
				tok.hf.pre != nil && strings.HasPrefix(s, " ")) {
				// With Metaspace, a leading space is taken for the one
				// that prepend_scheme adds, and the decoder strips it.
				continue
			}
			want := s
			if tok.hf.unicodeNormalizer() {
				// The ids are those of the normalized text, which a
				// second normalization leaves alone.
				want = applyNormalizer(tok.hf.normalizer, s)
				if again := applyNormalizer(tok.hf.normalizer, want); again != want {
					t.Fatalf("%s: normalizing %+q gives %+q, and again %+q", tok.Name(), s, want, again)
				}
			}
			if got := tok.DecodeAll(ids); got != want {
				t.Fatalf("%s: DecodeAll(Encode(%q)) = %q, want %q", tok.Name(), s, got, want)
			}
		}
	})
}

// hasAddedToken reports whether encoding s splits an added token out of it.
func hasAddedToken(tok *Tokenizer, s string) bool {
	m := tok.hf
	if m == nil {
		return hasSpecial(tok, s)
	}
	for _, sec := range m.raw.split(s) {
		if sec.token != nil {
			return true
		}
		for _, sub := range m.normed.split(applyNormalizer(m.normalizer, sec.text)) {
			if sub.token != nil {
				return true
			}
		}
	}
	return false
}

// printedForm is what a Printer should print of decoded text: the text less
// invalid UTF-8, C0 control bytes other than \t..\r, DEL and C1 controls.
func printedForm(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == utf8.RuneError && n == 1:
		case r < utf8.RuneSelf:
			if IsPrintable(string(r)) {
				b.WriteRune(r)
			}
		case !unicode.IsControl(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestPrinterMatchesDecodeAll feeds the tokens of every text of the three
// corpora (and some invalid UTF-8) one at a time to a Printer, as generate
// prints them, and checks that the pieces printed make DecodeAll's text, less
// what a Printer drops: characters whose bytes are split across byte-level
// or byte-fallback tokens must come out whole. Texts holding special added
// tokens are kept: a Printer prints nothing for them, as DecodeAll skips them.
func TestPrinterMatchesDecodeAll(t *testing.T) {
	var texts []string
	for _, f := range []string{"corpus.json", "corpus-nasty.json", "corpus-random.json", "corpus-norm.json"} {
		var c []struct{ Text string }
		if err := json.Unmarshal(readFile(t, filepath.Join("testdata", f)), &c); err != nil {
			t.Fatal(err)
		}
		for _, x := range c {
			texts = append(texts, x.Text)
		}
	}
	texts = append(texts, "a\xffb", "\xe6\x97 x", "日本語😀👨‍👩‍👧", "caf\xc3", "\x1b[31m\u0085\u009fz")
	paths := []string{"testdata/bl-strip-mini/tokenizer.json", "testdata/bl-gpt2-mini/tokenizer.json", "testdata/bl-qwen3-mini/tokenizer.json",
		"testdata/sp-strip/tokenizer.json", "testdata/sp-metaspace/tokenizer.json", "testdata/sp-tok512/tokenizer.model"}
	if root := os.Getenv("SORA_TOKENIZER_DIR"); root != "" {
		for _, p := range []string{"llama3.1/tokenizer.json", "gpt2/tokenizer.json", "qwen3/tokenizer.json", "mistral/tokenizer.json", "llama2-sp/tokenizer.model",
			"llama3.2/tokenizer.json", "qwen2.5/tokenizer.json", "mistral-nemo/tokenizer.json", "gemma2/tokenizer.json", "gemma3/tokenizer.json"} {
			if _, err := os.Stat(filepath.Join(root, p)); err == nil {
				paths = append(paths, filepath.Join(root, p))
			}
		}
	}
	for _, path := range paths {
		tok, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range texts {
			n++
			ids := tok.Encode(s, true, false)
			p, rest := tok.NewPrinter(-1), ids
			if tok.BOS() >= 0 {
				p, rest = tok.NewPrinter(ids[0]), ids[1:]
			}
			var out strings.Builder
			for _, id := range rest {
				out.WriteString(p.Next(id))
			}
			if want := printedForm(tok.DecodeAll(ids)); out.String() != want {
				t.Errorf("%s: %q: printed %q, want %q", path, head([]byte(s)), head([]byte(out.String())), head([]byte(want)))
			}
		}
		if n < 300 {
			t.Errorf("%s: only %d texts printed", path, n)
		}
	}
}
