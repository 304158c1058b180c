package tokenizer

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/unicode/rangetable"
)

// The references over testdata/corpus-norm.json (texts that the Unicode
// normalizers change, or must not, and 300 random ones built from such
// fragments) are gen.mjs outputs in compact form with the normalizer's own
// output kept, gzip-compressed:
//
//	T=models/tokenizer/testdata
//	node scripts/tokenizer-ref/normcorpus.mjs 300 1 > $T/corpus-norm.json
//	for n in bl-qwen3-mini bl-qwen3-added bl-nfd-mini bl-nfkc-mini bl-nfkd-mini; do
//	  node scripts/tokenizer-ref/gen.mjs --compact --keep normalized $T/$n $T/corpus-norm.json | gzip -9n > $T/norm/$n.ref.json.gz
//	done
//	for n in qwen3 qwen2.5; do
//	  node scripts/tokenizer-ref/gen.mjs --compact --keep normalized .tokenizers/$n $T/corpus-norm.json | gzip -9n > $T/norm/$n.ref.json.gz
//	done
//
// The fixtures are described in scripts/tokenizer-ref/README.md.

// assignedXText holds the characters assigned in the Unicode version of
// x/text's tables.
var assignedXText = rangetable.Assigned(norm.Version)

// newSince9 reports whether s holds a character that Unicode 9.0 leaves
// unassigned and whose normalization may differ in the JS reference
// (Unicode 17.0): one that x/text's tables give a decomposition, a
// combining class or a composition, or one that they leave unassigned too
// (Unicode 16.0 and 17.0 may give it one). The Rust crate and this package
// treat such a character as unassigned; the JS reference does not.
func newSince9(s string) bool {
	for _, r := range s {
		if r < utf8.RuneSelf || unicode.Is(assignedHF, r) {
			continue
		}
		if !unicode.Is(assignedXText, r) || !norm.NFKD.PropertiesString(string(r)).BoundaryAfter() ||
			!norm.NFC.PropertiesString(string(r)).BoundaryAfter() {
			return true
		}
	}
	return false
}

// TestUnicodeNormalizeCases pins the four forms on hand-made texts, each
// noting whether x/text's own normalization gets it wrong: composition,
// reordering and blocking, Hangul, compatibility characters, runs of more
// than 30 marks, characters unassigned in Unicode 9.0, invalid UTF-8.
func TestUnicodeNormalizeCases(t *testing.T) {
	r := strings.Repeat
	cases := []struct {
		name, form, in, want string
		// xtextDiffers: x/text's own normalization gives another text,
		// which this package corrects (Unicode 9.0, or the Stream-Safe
		// limit).
		xtextDiffers bool
	}{
		{"empty", "NFC", "", "", false},
		{"ascii", "NFKD", "Hello, world", "Hello, world", false},
		{"compose acute", "NFC", "cafe\u0301", "caf\u00e9", false},
		{"decompose acute", "NFD", "caf\u00e9", "cafe\u0301", false},
		{"reorder then compose", "NFC", "a\u0302\u0323", "\u1ead", false},
		{"compose in order", "NFC", "a\u0323\u0302", "\u1ead", false},
		{"reorder only", "NFC", "q\u0307\u0323", "q\u0323\u0307", false},
		{"mark not blocked by a lower class", "NFC", "e\u0316\u0301", "\u00e9\u0316", false},
		{"same class blocks", "NFC", "a\u0301\u0301", "\u00e1\u0301", false},
		{"cgj blocks", "NFC", "a\u034f\u0301", "a\u034f\u0301", false},
		{"hangul jamo", "NFC", "\u1100\u1161\u11a8", "\uac01", false},
		{"hangul LV plus T", "NFC", "\uac00\u11a8", "\uac01", false},
		{"hangul decompose", "NFD", "\uac01", "\u1100\u1161\u11a8", false},
		{"compatibility jamo", "NFKC", "\u3131\u314f", "\uac00", false},
		{"compatibility jamo kept by NFC", "NFC", "\u3131\u314f", "\u3131\u314f", false},
		{"ligature and full width kept by NFC", "NFC", "\ufb01 \uff21 \u00bd", "\ufb01 \uff21 \u00bd", false},
		{"ligature and full width NFKC", "NFKC", "\ufb01 \uff21 \u00bd", "fi A 1\u20442", false},
		{"NFKD", "NFKD", "\u01d6\ufb01", "u\u0308\u0304fi", false},
		{"singletons", "NFC", "\u212b\u2126\u212a", "\u00c5\u03a9K", false},
		{"composition exclusion", "NFC", "\u0958", "\u0915\u093c", false},
		{"mark at start", "NFC", "\u0301e\u0301", "\u0301\u00e9", false},
		// x/text's mistakes: a mark composed across a starter that can
		// combine backward, a supplementary-plane letter taken for "A".
		{"starter combining backward blocks", "NFC", "A\u09be\u0316\u0302", "A\u09be\u0316\u0302", true},
		{"compatibility jamo blocks", "NFC", "A\u314f\u0f71\u0302", "A\u314f\u0f71\u0302", true},
		{"linear b is not A", "NFC", "\U00010041\u0301", "\U00010041\u0301", true},
		{"linear b is not A, NFKC", "NFKC", "x\U00010041\u0301", "x\U00010041\u0301", true},
		{"kaithi composes", "NFC", "\U00011099\U000110ba", "\U0001109a", false},
		// Runs of more than 30 marks, where x/text inserts U+034F.
		{"long run", "NFC", "a" + r("\u0301", 35) + "\u0323", "\u1ea1" + r("\u0301", 35), true},
		{"long run NFD", "NFD", "a" + r("\u0301", 35) + "\u0323", "a\u0323" + r("\u0301", 35), true},
		{"long mixed run", "NFC", "e" + r("\u0301\u0316", 20), "\u00e9" + r("\u0316", 20) + r("\u0301", 19), true},
		{"long run NFKC", "NFKC", "\ufb01" + r("\u0308", 32), "f\u00ef" + r("\u0308", 31), true},
		{"long run NFKD", "NFKD", "\ufb01" + r("\u0308", 32), "fi" + r("\u0308", 32), true},
		{"long run of hangul T after LV", "NFC", "\uac00" + r("\u0301", 31) + "\u11a8", "\uac00" + r("\u0301", 31) + "\u11a8", true},
		{"text's own cgj is no overflow", "NFC", "a" + r("\u0301", 20) + "\u034f" + r("\u0301", 20), "\u00e1" + r("\u0301", 19) + "\u034f" + r("\u0301", 20), false},
		// Characters Unicode 9.0 leaves unassigned: no class, no
		// decomposition, no composition, as in the Rust crate.
		{"kavyka (10.0, class 232) not reordered", "NFC", "a\u1df6\u0316", "a\u1df6\u0316", true},
		{"kavyka cuts the text", "NFC", "e\u1df6\u0301 e\u0301", "e\u1df6\u0301 \u00e9", true},
		{"dives akuru (13.0) not composed", "NFC", "\U00011935\U00011930", "\U00011935\U00011930", true},
		{"new emoji between", "NFC", "e\u0301\U0001f970e\u0301", "\u00e9\U0001f970\u00e9", false},
		{"unassigned code point", "NFD", "\u0378\u00e9", "\u0378e\u0301", false},
		// Invalid UTF-8 is kept byte for byte.
		{"invalid byte", "NFC", "e\u0301\xffe\u0301", "\u00e9\xff\u00e9", false},
		{"truncated sequence", "NFD", "\xe6\x97\u00e9", "\xe6\x97e\u0301", false},
	}
	for _, c := range cases {
		f := unicodeForms[c.form]
		if got := normalizeUnicode(f, c.in); got != c.want {
			t.Errorf("%s: %s(%+q) = %+q, want %+q", c.name, c.form, c.in, got, c.want)
		}
		if differs := f.String(c.in) != c.want; differs != c.xtextDiffers {
			t.Errorf("%s: x/text's %s gives %+q; the case says it differs: %v", c.name, c.form, f.String(c.in), c.xtextDiffers)
		}
	}
}

// TestUnicodeNormalizeICU compares the four forms with ICU's (node's
// String.prototype.normalize; testdata/norm/unicode.txt.gz, written by
// scripts/tokenizer-ref/normref.mjs) on every character that some form
// changes (Hangul syllables sampled) and on 3000 random sequences of
// characters chosen to test composition, as Unicode's NormalizationTest.txt
// does: c2 = NFC(c1) = NFC(c2) = NFC(c3), c3 = NFD(c1..c3), c4 = NFKC(c1..c5)
// and c5 = NFKD(c1..c5). Lines with a character unassigned in Unicode 9.0
// are left out (ICU's Unicode is newer).
func TestUnicodeNormalizeICU(t *testing.T) {
	f, err := os.Open("testdata/norm/unicode.txt.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(field string) string {
		var sb strings.Builder
		for _, h := range strings.Fields(field) {
			r, err := strconv.ParseUint(h, 16, 32)
			if err != nil {
				t.Fatalf("bad code point %q", h)
			}
			sb.WriteRune(rune(r))
		}
		return sb.String()
	}
	checked, xtextWrong := 0, 0
	for n, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fields := strings.Split(line, ";")
		if len(fields) != 5 {
			t.Fatalf("line %d: %q: want 5 fields", n+1, line)
		}
		var c [6]string
		for i, fl := range fields {
			c[i+1] = parse(fl)
		}
		if !allAssignedHF(c[1]) {
			continue
		}
		checked++
		for _, k := range []struct {
			form string
			in   []int
			want int
		}{{"NFC", []int{1, 2, 3}, 2}, {"NFD", []int{1, 2, 3}, 3}, {"NFKC", []int{1, 2, 3, 4, 5}, 4}, {"NFKD", []int{1, 2, 3, 4, 5}, 5}} {
			f := unicodeForms[k.form]
			for _, in := range k.in {
				if got := normalizeUnicode(f, c[in]); got != c[k.want] {
					t.Errorf("line %d: %s(c%d %+q) = %+q, want c%d %+q", n+1, k.form, in, c[in], got, k.want, c[k.want])
				}
				if f.String(c[in]) != c[k.want] {
					xtextWrong++
				}
			}
		}
	}
	if checked < 8000 {
		t.Errorf("only %d lines checked", checked)
	}
	// The sequences are chosen to meet x/text's mistakes (see
	// unicodenorm.go); that they do shows the test can tell.
	if xtextWrong == 0 {
		t.Error("x/text's own normalization agrees with every line; expected some of its known mistakes")
	}
	t.Logf("%d lines; x/text alone gets %d normalizations wrong", checked, xtextWrong)
}

// allAssignedHF reports whether every character of s is assigned in
// Unicode 9.0.
func allAssignedHF(s string) bool {
	for _, r := range s {
		if !unicode.Is(assignedHF, r) {
			return false
		}
	}
	return true
}

// normCases are the fixtures checked over corpus-norm.json: Qwen3 (NFC)
// truncated, the same with normalized and raw added tokens whose contents
// NFC changes or would, and small ones with NFD, NFKC and NFKD.
var normCases = []string{"bl-qwen3-mini", "bl-qwen3-added", "bl-nfd-mini", "bl-nfkc-mini", "bl-nfkd-mini"}

// checkNormRef compares the normalizer of tok with the JS reference's
// output on every text of corpus-norm.json, then the ids and decodings
// (checkCompact). Texts with characters new since Unicode 9.0 are left out
// (none are in the corpus, which the count checks).
func checkNormRef(t *testing.T, name, tokPath, refPath string) {
	tok, err := Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	ref := readCompactRef(t, refPath, "corpus-norm.json")
	changed := 0
	for _, r := range ref.Results {
		if newSince9(r.Text) {
			continue
		}
		if r.Normalized == nil {
			t.Fatalf("%s: %q: the reference has no normalized text (made without --keep normalized?)", name, r.Name)
		}
		if got := applyNormalizer(tok.hf.normalizer, r.Text); got != *r.Normalized {
			t.Errorf("%s: %q: normalized %+q, want %+q", name, r.Name, got, *r.Normalized)
		}
		if *r.Normalized != r.Text {
			changed++
		}
	}
	if changed < len(ref.Results)/2 {
		t.Errorf("%s: the normalizer changes only %d of %d texts", name, changed, len(ref.Results))
	}
	if n := checkCompact(t, nastyCase{name, tokPath, refPath, newSince9, nil}, "corpus-norm.json"); n != len(ref.Results) {
		t.Errorf("%s: %d of %d texts compared", name, n, len(ref.Results))
	}
}

func TestUnicodeNormalizerReference(t *testing.T) {
	for _, n := range normCases {
		t.Run(n, func(t *testing.T) {
			checkNormRef(t, n, filepath.Join("testdata", n, "tokenizer.json"), filepath.Join("testdata", "norm", n+".ref.json.gz"))
		})
	}
}

// TestUnicodeNormalizerRealFile is TestUnicodeNormalizerReference for the
// real Qwen3 and Qwen2.5 tokenizer.json files (NFC) that
// scripts/fetch-tokenizers.sh puts in SORA_TOKENIZER_DIR.
func TestUnicodeNormalizerRealFile(t *testing.T) {
	root := os.Getenv("SORA_TOKENIZER_DIR")
	if root == "" {
		t.Skip("SORA_TOKENIZER_DIR is not set (scripts/fetch-tokenizers.sh fills a folder for it)")
	}
	for _, n := range []string{"qwen3", "qwen2.5"} {
		t.Run(n, func(t *testing.T) {
			path := filepath.Join(root, n, "tokenizer.json")
			if _, err := os.Stat(path); err != nil {
				t.Skipf("%v (run scripts/fetch-tokenizers.sh)", err)
			}
			checkNormRef(t, n, path, filepath.Join("testdata", "norm", n+".ref.json.gz"))
		})
	}
}

// TestNormalizedAddedTokens pins how added tokens meet NFC, as the Rust
// crate does it: tokens with normalized false are split out of the raw
// text before it is normalized, so another spelling of one
// ("<nai\u0308ve>" for "<naïve>") is not found though NFC makes it the
// same, and the pieces between them are normalized apart; tokens with
// normalized true are matched in the normalized text against their own
// normalized content, so "<e\u0301>" is found as "<é>" in either spelling.
func TestNormalizedAddedTokens(t *testing.T) {
	tok, err := LoadHF("testdata/bl-qwen3-added/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	id := func(s string) int {
		t.Helper()
		i, ok := tok.Lookup(s)
		if !ok {
			t.Fatalf("%q is not a token", s)
		}
		return i
	}
	enc := func(s string) []int { return tok.Encode(s, false, false) }
	cafe, eAcute, naive, imEnd := id("<café>"), id("<e\u0301>"), id("<naïve>"), id("<|im_end|>")
	// A raw token is not found in the text NFC makes of another spelling:
	// that text is pre-tokenized and encoded by the model.
	naivePieces := tok.hf.bpeOnly(t, "<naïve>")
	if len(naivePieces) < 2 {
		t.Fatalf("the pieces of <naïve> are %v", naivePieces)
	}
	for _, c := range []struct {
		text string
		want []int
	}{
		{"<cafe\u0301>", []int{cafe}},
		{"<café>", []int{cafe}},
		{"<e\u0301>", []int{eAcute}},
		{"<é>", []int{eAcute}},
		{"<naïve>", []int{naive}},
		{"<nai\u0308ve>", naivePieces},
		{"e<|im_end|>\u0301", append(append(enc("e"), imEnd), enc("\u0301")...)},
	} {
		if got := enc(c.text); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Encode(%+q) = %v, want %v", c.text, got, c.want)
		}
	}
}

// bpeOnly encodes s with the pre-tokenizer and BPE model alone, no added
// tokens and no normalizer.
func (h *hfModel) bpeOnly(t *testing.T, s string) []int {
	t.Helper()
	var out []int
	for _, w := range preTokenizeSection(h.pre, s, true) {
		out = h.bpe.tokenize(w, out)
	}
	return out
}

// TestLoadDirQwen checks BOS and EOS of Qwen-style folders around the
// committed Qwen3 fixture: Qwen2.5 and Qwen3 say "add_bos_token": false and
// "bos_token": null, Qwen2 only the latter, and their config.json names a
// bos_token_id (<|endoftext|>) that transformers never adds. The EOS is
// <|im_end|> for chat models and <|endoftext|> for base ones.
func TestLoadDirQwen(t *testing.T) {
	tj := string(readFile(t, "testdata/bl-qwen3-mini/tokenizer.json"))
	probe, err := ParseHF([]byte(tj), "probe")
	if err != nil {
		t.Fatal(err)
	}
	endOfText, _ := probe.Lookup("<|endoftext|>")
	imEnd, _ := probe.Lookup("<|im_end|>")
	configJSON := fmt.Sprintf(`{"bos_token_id": %d, "eos_token_id": %d}`, endOfText, endOfText)
	cases := []struct {
		name  string
		files map[string]string
		eos   int
	}{
		{"qwen3 chat", map[string]string{"tokenizer.json": tj, "config.json": configJSON,
			"tokenizer_config.json": `{"add_bos_token": false, "bos_token": null, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}`}, imEnd},
		{"qwen2.5 base", map[string]string{"tokenizer.json": tj, "config.json": configJSON,
			"tokenizer_config.json": `{"add_bos_token": false, "bos_token": null, "eos_token": "<|endoftext|>"}`}, endOfText},
		{"qwen2 chat, no add_bos_token", map[string]string{"tokenizer.json": tj, "config.json": configJSON,
			"tokenizer_config.json": `{"bos_token": null, "eos_token": "<|im_end|>"}`}, imEnd},
		{"no tokenizer_config.json", map[string]string{"tokenizer.json": tj}, endOfText}, // guessed
	}
	for _, c := range cases {
		tok, err := LoadDir(writeDir(t, c.files))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if tok.BOS() != -1 || tok.EOS() != c.eos {
			t.Errorf("%s: BOS %d EOS %d, want -1 and %d", c.name, tok.BOS(), tok.EOS(), c.eos)
		}
		want := append(tok.Encode("cafe\u0301", false, false), c.eos)
		if got := tok.Encode("cafe\u0301", true, true); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Encode(text, true, true) = %v, want %v", c.name, got, want)
		}
	}
	// The committed fixture's own folder (tokenizer_config.json taken from
	// Qwen3's), against the JS reference.
	tok, err := LoadDir("testdata/bl-qwen3-mini")
	if err != nil {
		t.Fatal(err)
	}
	if tok.BOS() != -1 || tok.EOS() != imEnd {
		t.Fatalf("bl-qwen3-mini: BOS %d EOS %d, want -1 and %d", tok.BOS(), tok.EOS(), imEnd)
	}
	for _, r := range readJSRef(t, "testdata/bl-qwen3-mini/ref.json").Results {
		want := append(append([]int(nil), r.IDsNoSpecial...), imEnd)
		if got := tok.Encode(r.Text, true, true); !reflect.DeepEqual(got, want) {
			t.Errorf("bl-qwen3-mini: %q: Encode(text, true, true) = %v, want %v", r.Name, got, want)
		}
	}
}

// unicodeNormalizer reports whether every normalizer step is a Unicode
// normalization form (or there are none).
func (h *hfModel) unicodeNormalizer() bool {
	for _, op := range h.normalizer {
		if _, ok := unicodeForms[op.kind]; !ok {
			return false
		}
	}
	return true
}

// FuzzUnicodeNormalize checks the identities between the forms that hold
// for any text (Unicode Standard Annex #15): NFC(s) = NFC(NFD(s)) =
// NFC(NFC(s)), NFD(s) = NFD(NFC(s)) = NFD(NFD(s)), NFKC(s) = NFC(NFKD(s)) =
// NFKC(NFD(s)), NFKD(s) = NFD(NFKD(s)) = NFKD(NFKC(s)); that the quick check
// passes only text that the long way leaves alone; and that valid UTF-8
// stays valid.
func FuzzUnicodeNormalize(f *testing.F) {
	for _, s := range []string{"", "cafe\u0301", "a\u0302\u0323\u1100\u1161\u11a8", "\ufb01\u3131\u314f",
		"A\u09be\u0316\u0302\U00010041\u0301", "a" + strings.Repeat("\u0301\u0316", 20), "e\u1df6\u0301\xff\u0301"} {
		f.Add(s)
	}
	nfc, nfd, nfkc, nfkd := norm.NFC, norm.NFD, norm.NFKC, norm.NFKD
	n := normalizeUnicode
	f.Fuzz(func(t *testing.T, s string) {
		c, d, kc, kd := n(nfc, s), n(nfd, s), n(nfkc, s), n(nfkd, s)
		for _, k := range []struct {
			name      string
			got, want string
		}{
			{"NFC(NFD(s))", n(nfc, d), c}, {"NFC(NFC(s))", n(nfc, c), c},
			{"NFD(NFC(s))", n(nfd, c), d}, {"NFD(NFD(s))", n(nfd, d), d},
			{"NFC(NFKD(s))", n(nfc, kd), kc}, {"NFKC(NFD(s))", n(nfkc, d), kc}, {"NFKC(NFKC(s))", n(nfkc, kc), kc},
			{"NFD(NFKD(s))", n(nfd, kd), kd}, {"NFKD(NFKC(s))", n(nfkd, kc), kd},
		} {
			if k.got != k.want {
				t.Fatalf("s = %+q: %s = %+q, want %+q", s, k.name, k.got, k.want)
			}
		}
		if utf8.ValidString(s) {
			for name, f := range unicodeForms {
				if f.IsNormalString(s) && allAssignedHF(s) && normalizeText(f, s) != s {
					t.Fatalf("%s: the quick check passes %+q, which normalizes to %+q", name, s, normalizeText(f, s))
				}
				if out := n(f, s); !utf8.ValidString(out) {
					t.Fatalf("%s(%+q) = %+q, not valid UTF-8", name, s, out)
				}
			}
		}
	})
}

// BenchmarkUnicodeNormalize times NFC on 64 KiB texts (prose with a few
// accents, the same with every accent decomposed, Korean, and marks in runs
// of 40) and reports its time over that of x/text's own NFC (which is wrong
// in places; see unicodenorm.go) on the same text, measured in the same run.
func BenchmarkUnicodeNormalize(b *testing.B) {
	const size = 64 << 10
	fill := func(s string) string { return strings.Repeat(s, size/len(s)+1)[:size] }
	prose := "Once upon a time, there was a little girl named Lily. She loved café naïve résumé 日本語 😀 don't.\n"
	texts := []struct{ name, text string }{
		{"prose", fill(prose)},
		{"decomposed", fill(norm.NFD.String(prose + "Tiếng Việt có dấu. "))},
		{"hangul jamo", fill(norm.NFD.String("한국어 텍스트입니다. "))},
		{"mark runs", fill("a" + strings.Repeat("\u0301\u0316\u0323\u0300", 10) + " ")},
	}
	for _, c := range texts {
		b.Run(c.name, func(b *testing.B) {
			timeOf := func(fn func(string) string) float64 {
				start := time.Now()
				for range 20 {
					fn(c.text)
				}
				return float64(time.Since(start))
			}
			ratio := timeOf(func(s string) string { return normalizeUnicode(norm.NFC, s) }) / timeOf(norm.NFC.String)
			b.SetBytes(int64(len(c.text)))
			b.ResetTimer()
			for range b.N {
				normalizeUnicode(norm.NFC, c.text)
			}
			b.ReportMetric(ratio, "x/text-ratio")
		})
	}
}
