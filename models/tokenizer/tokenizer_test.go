package tokenizer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
	"unicode"
	"unicode/utf8"

	"github.com/sora-go/sora/internal/testdata"
)

type entry struct {
	piece string
	score float32
}

// build serialises a vocabulary in tokenizer.bin format: <unk>, BOS, EOS,
// the 256 byte tokens, then extra.
func build(maxLen int32, extra ...entry) []byte {
	vocab := []entry{{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}}
	for b := 0; b < 256; b++ {
		vocab = append(vocab, entry{fmt.Sprintf("<0x%02X>", b), 0})
	}
	vocab = append(vocab, extra...)
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, maxLen)
	for _, e := range vocab {
		binary.Write(&buf, binary.LittleEndian, e.score)
		binary.Write(&buf, binary.LittleEndian, int32(len(e.piece)))
		buf.WriteString(e.piece)
	}
	return buf.Bytes()
}

func mustParse(t testing.TB, b []byte) *Tokenizer {
	t.Helper()
	tok, err := Parse(b, "test.bin")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func tok512(t testing.TB) *Tokenizer {
	t.Helper()
	_, path := testdata.Stories260K(t)
	tok, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// naiveEncode is a direct transcription of llama2.c's encode loop — rescan
// every adjacent pair, merge the best (strictly greater score, so leftmost
// on ties), repeat — used as the reference for the heap-based Encode.
func naiveEncode(t *Tokenizer, text string, bos, eos bool) []int {
	var toks []int
	if bos {
		toks = append(toks, BOS)
	}
	if text != "" {
		id, ok := t.ids[" "]
		if !ok {
			id = 3 + ' '
		}
		toks = append(toks, id)
	}
	var cur []byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c&0xC0 != 0x80 {
			cur = cur[:0]
		}
		cur = append(cur, c)
		if i+1 < len(text) && text[i+1]&0xC0 == 0x80 && len(cur) < 4 {
			continue
		}
		if id, ok := t.ids[string(cur)]; ok {
			toks = append(toks, id)
		} else {
			for _, b := range cur {
				toks = append(toks, int(b)+3)
			}
		}
		cur = cur[:0]
	}
	for {
		best, bestID, bestIdx := float32(-1e10), -1, -1
		for i := 0; i+1 < len(toks); i++ {
			id, ok := t.ids[t.pieces[toks[i]]+t.pieces[toks[i+1]]]
			if ok && t.scores[id] > best {
				best, bestID, bestIdx = t.scores[id], id, i
			}
		}
		if bestIdx < 0 {
			break
		}
		toks[bestIdx] = bestID
		toks = append(toks[:bestIdx+1], toks[bestIdx+2:]...)
	}
	if eos {
		toks = append(toks, EOS)
	}
	return toks
}

func TestOnceUponATime(t *testing.T) {
	tok := tok512(t)
	if tok.VocabSize() != 512 || tok.MaxTokenLength() != 7 {
		t.Fatalf("vocab %d max length %d, want 512 and 7", tok.VocabSize(), tok.MaxTokenLength())
	}
	// Worked out by hand from tok512's vocabulary. Characters of
	// " Once upon a time": ' '=410 'O'=441 'n'=416 'c'=429 'e'=411 'u'=425
	// 'p'=427 'o'=414 'a'=412 't'=413 'i'=417 'm'=423. Merges in score order:
	// " t"(259, -0) " a"(261, -2) "im"(288, -29) "on"(289, -30) " u"(318, -59)
	// " O"(319, -60) " On"(321, -62) "ce"(331, -72) " up"(350, -91)
	// "ime"(369, -110) " time"(378, -119) " Once"(403, -144) " upon"(407, -148).
	want := []int{1, 403, 407, 261, 378}
	if got := tok.Encode("Once upon a time", true, false); !reflect.DeepEqual(got, want) {
		t.Fatalf("Encode = %v, want %v", got, want)
	}
	if got := tok.Encode("Once upon a time", false, true); !reflect.DeepEqual(got, []int{403, 407, 261, 378, 2}) {
		t.Fatalf("Encode without BOS, with EOS = %v", got)
	}
	if got := tok.DecodeAll(want); got != "Once upon a time" {
		t.Fatalf("DecodeAll = %q", got)
	}
	if err := tok.CheckVocab(512); err != nil {
		t.Error(err)
	}
	if err := tok.CheckVocab(32000); err == nil || !strings.Contains(err.Error(), "tok512.bin has 512 tokens") {
		t.Errorf("CheckVocab(32000) = %v", err)
	}
}

func TestRoundTripTok512(t *testing.T) {
	tok := tok512(t)
	fixed := []string{
		"", " ", "  ", "a", "\n", "Lily and Ben", " leading space", "trailing ",
		"Once upon a time, there was a little girl named Lily.\nShe said, \"Hi!\"",
		"héllo wörld ñ € ™ — “quoted”", "日本語のテキスト", "emoji 🙂🚀", "\x00\x01\x7f",
		"\xff\xfe invalid \xc3", "\xe2\x82", "tabs\tand\r\nCRLF", "<0x41> literal", "<s> </s> <unk>",
	}
	for _, s := range fixed {
		ids := tok.Encode(s, true, false)
		if got := tok.DecodeAll(ids); got != s {
			t.Errorf("DecodeAll(Encode(%q)) = %q (ids %v)", s, got, ids)
		}
		if want := naiveEncode(tok, s, true, false); !reflect.DeepEqual(ids, want) {
			t.Errorf("Encode(%q) = %v, llama2.c's loop gives %v", s, ids, want)
		}
	}
	// Property: decode∘encode is the identity on arbitrary UTF-8 text.
	prop := func(s string) bool { return tok.DecodeAll(tok.Encode(s, true, true)) == s }
	if err := quick.Check(prop, &quick.Config{MaxCount: 500}); err != nil {
		t.Error(err)
	}
	// And on arbitrary bytes, which go through byte fallback.
	rng := rand.New(rand.NewSource(9))
	for range 300 {
		b := make([]byte, rng.Intn(40))
		rng.Read(b)
		if s := string(b); !prop(s) {
			t.Fatalf("round trip fails on %q", s)
		}
	}
}

// TestEncodeMatchesNaive checks the heap-based merge against llama2.c's
// quadratic loop on text that exercises many merges.
func TestEncodeMatchesNaive(t *testing.T) {
	tok := tok512(t)
	words := []string{"the", "a", "Lily", "Tim", "happy", "said", "was", "upon", "time", ",", ".", "!", "\"",
		"pl", "ay", "ing", "she", "saw", "big", "ball", "é", "€", " ", "\n", "\xff"}
	rng := rand.New(rand.NewSource(10))
	for range 300 {
		var sb strings.Builder
		for range rng.Intn(30) {
			sb.WriteString(words[rng.Intn(len(words))])
			if rng.Intn(3) > 0 {
				sb.WriteByte(' ')
			}
		}
		s := sb.String()
		if got, want := tok.Encode(s, true, false), naiveEncode(tok, s, true, false); !reflect.DeepEqual(got, want) {
			t.Fatalf("Encode(%q) = %v, naive %v", s, got, want)
		}
	}
}

func TestSyntheticVocab(t *testing.T) {
	// No " " token: the dummy prefix falls back to byte 0x20. "ab" and "bc"
	// score the same, so in "abc" the leftmost pair merges; "aa" checks
	// ties inside runs; "xyz" is better than its parts.
	tok := mustParse(t, build(7,
		entry{"a", -1}, entry{"b", -1}, entry{"c", -1}, entry{"ab", -5}, entry{"bc", -5},
		entry{"aa", -3}, entry{"x", -1}, entry{"y", -1}, entry{"z", -1}, entry{"yz", -9}, entry{"xyz", -2},
		entry{"é", -1}))
	id := func(p string) int {
		i, ok := tok.Lookup(p)
		if !ok {
			t.Fatalf("no %q", p)
		}
		return i
	}
	sp := int(3 + ' ')
	cases := []struct {
		text string
		want []int
	}{
		{"", []int{BOS}},
		{"abc", []int{BOS, sp, id("ab"), id("c")}},
		{"aaa", []int{BOS, sp, id("aa"), id("a")}},
		{"xyz", []int{BOS, sp, id("xyz")}},
		{"é", []int{BOS, sp, id("é")}},
		{"ü", []int{BOS, sp, 3 + 0xc3, 3 + 0xbc}}, // unknown: its two UTF-8 bytes
		{"q", []int{BOS, sp, 3 + 'q'}},
	}
	for _, c := range cases {
		if got := tok.Encode(c.text, true, false); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
		// Without a " " token the dummy prefix is the byte token <0x20>,
		// which, as in llama2.c, is not stripped after BOS.
		want := c.text
		if c.text != "" {
			want = " " + c.text
		}
		if got := tok.DecodeAll(c.want); got != want {
			t.Errorf("DecodeAll(%v) = %q, want %q", c.want, got, want)
		}
	}
}

func TestDecode(t *testing.T) {
	tok := tok512(t)
	space, _ := tok.Lookup(" Lily")
	cases := []struct {
		prev, id int
		want     string
	}{
		{BOS, space, "Lily"},
		{5, space, " Lily"},
		{BOS, 3 + 'A', "A"},
		{0, 3 + 0xe2, "\xe2"},
		{0, 3 + ' ', " "},
		{BOS, 3 + ' ', " "}, // a byte piece is not a leading-space piece
		{0, -1, ""},
		{0, 512, ""},
	}
	for _, c := range cases {
		if got := tok.Decode(c.prev, c.id); got != c.want {
			t.Errorf("Decode(%d, %d) = %q, want %q", c.prev, c.id, got, c.want)
		}
	}
	for s, want := range map[string]bool{"a": true, " ": true, "\n": true, "\x01": false, "\xe2": false, "é": true, "": false} {
		if IsPrintable(s) != want {
			t.Errorf("IsPrintable(%q) = %v", s, !want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	good := build(7)
	le := binary.LittleEndian
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, good...)) }
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"max len 0", mutate(func(b []byte) []byte { le.PutUint32(b, 0); return b }), "max_token_length is 0"},
		{"max len huge", mutate(func(b []byte) []byte { le.PutUint32(b, 1<<30); return b }), "max_token_length is 1073741824"},
		{"short entry", mutate(func(b []byte) []byte { return append(b, 1, 2, 3) }), "truncated entry"},
		{"negative length", mutate(func(b []byte) []byte { le.PutUint32(b[8:], 0xffffffff); return b }), "token 0 has length -1"},
		{"long piece", mutate(func(b []byte) []byte { le.PutUint32(b[8:], 8); return b }), "token 0 has length 8"},
		{"nan score", mutate(func(b []byte) []byte { le.PutUint32(b[4:], math.Float32bits(float32(math.NaN()))); return b }), "NaN score"},
		{"piece past end", mutate(func(b []byte) []byte { return append(b, 0, 0, 0, 0, 3, 0, 0, 0, 'a') }), "truncated: length 3"},
		{"too few", build(7)[:200], "truncated"},
		{"wrong byte token", bytes.Replace(build(8), []byte("<0x41>"), []byte("<0x42>"), 1), `token 68 is "<0x42>"; expected the byte-fallback piece "<0x41>"`},
	}
	for _, c := range cases {
		_, err := Parse(c.file, "bad.bin")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "bad.bin") {
			t.Errorf("%s: error %v, want one naming bad.bin and containing %q", c.name, err, c.want)
		}
	}
	// Whole entries removed: a valid but smaller vocabulary, which
	// CheckVocab catches; fewer than 259 tokens is an error by itself.
	small := build(8)
	if _, err := Parse(small[:len(small)-(8+6)], "short.bin"); err == nil || !strings.Contains(err.Error(), "vocabulary has 258 tokens") {
		t.Errorf("258-token vocabulary: %v", err)
	}
}

// TestTruncatedTok512 cuts tok512.bin at many points: each prefix is either
// rejected with a clear error or is a smaller vocabulary that CheckVocab
// rejects.
func TestTruncatedTok512(t *testing.T) {
	_, path := testdata.Stories260K(t)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for cut := 0; cut < len(full); cut += 7 {
		tok, err := Parse(full[:cut], "cut.bin")
		if err != nil {
			if !strings.Contains(err.Error(), "cut.bin") {
				t.Fatalf("cut %d: error does not name the file: %v", cut, err)
			}
			continue
		}
		if tok.VocabSize() >= 512 || tok.CheckVocab(512) == nil {
			t.Fatalf("cut %d: accepted as %d tokens", cut, tok.VocabSize())
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(build(7, entry{"ab", -1}, entry{"a", -2}))
	f.Add(build(7))
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := Parse(b, "fuzz.bin")
		if err != nil {
			return
		}
		if tok.VocabSize() < 259 || tok.MaxTokenLength() < 1 {
			t.Fatalf("accepted vocab %d, max length %d", tok.VocabSize(), tok.MaxTokenLength())
		}
		ids := tok.Encode("fuzz \xff é", true, true)
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("Encode produced id %d outside the vocabulary", id)
			}
		}
		_ = tok.DecodeAll(ids)
	})
}

// FuzzRoundTrip checks decode∘encode = identity on arbitrary bytes, with
// tok512 when the shared data is present and a small synthetic vocabulary
// otherwise.
func FuzzRoundTrip(f *testing.F) {
	var tok *Tokenizer
	if p := testdata.Dir(); p != "" {
		if b, err := os.ReadFile(p + "/models/stories260K/tok512.bin"); err == nil {
			tok = mustParse(f, b)
		}
	}
	if tok == nil {
		tok = mustParse(f, build(7, entry{" ", -1}, entry{"a", -1}, entry{" a", -2}, entry{"ab", -3}, entry{"é", -1}))
	}
	for _, s := range []string{"Once upon a time", "", "héllo\n", "\xff\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s, true, false)
		if got := tok.DecodeAll(ids); got != s {
			t.Fatalf("DecodeAll(Encode(%q)) = %q", s, got)
		}
		if utf8.ValidString(s) && len(ids) > len(s)+1+1 {
			t.Fatalf("%d tokens for %d bytes", len(ids), len(s))
		}
	})
}

// BenchmarkEncode times Encode (heap merge) against a transcription of
// llama2.c's quadratic merge loop on the same ~2 KB story and reports the
// speed-up measured in this run.
func BenchmarkEncode(b *testing.B) {
	tok := tok512(b)
	text := strings.Repeat("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ", 22)
	var heapNs, naiveNs float64
	b.Run("heap", func(b *testing.B) {
		for range b.N {
			tok.Encode(text, true, false)
		}
		heapNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("llama2c-loop", func(b *testing.B) {
		for range b.N {
			naiveEncode(tok, text, true, false)
		}
		naiveNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	if heapNs > 0 {
		b.Logf("%d bytes: heap merge %.0f µs, llama2.c loop %.0f µs, speed-up %.1fx", len(text), heapNs/1e3, naiveNs/1e3, naiveNs/heapNs)
	}
}

// TestPrinter feeds tokens one at a time and checks what each prints: a
// character made of byte tokens prints whole when its last byte arrives,
// and what llama2.c's safe_printf drops (control bytes, bytes that are
// not valid UTF-8) is still dropped.
func TestPrinter(t *testing.T) {
	tok := mustParse(t, build(8, entry{"é", 1}, entry{" ab", 2}))
	eAcute, _ := tok.Lookup("é")
	spaceAB, _ := tok.Lookup(" ab")
	b := func(c byte) int { return firstByteID + int(c) }
	for _, tc := range []struct {
		name string
		ids  []int
		want []string // what Next returns for each id
	}{
		{"ASCII bytes", []int{b('H'), b('i'), b('\n')}, []string{"H", "i", "\n"}},
		{"three-byte character", []int{b(0xE2), b(0x98), b(0x95)}, []string{"", "", "☕"}},
		{"two characters", []int{b(0xE6), b(0x97), b(0xA5), b(0xE6), b(0x9C), b(0xAC)}, []string{"", "", "日", "", "", "本"}},
		{"four-byte character", []int{b(0xF0), b(0x9F), b(0x98), b(0x80), b('!')}, []string{"", "", "", "😀", "!"}},
		{"leading space dropped after BOS", []int{spaceAB, spaceAB}, []string{"ab", " ab"}},
		{"control bytes dropped", []int{b(0x01), b(0x7F), b('\t'), b('x')}, []string{"", "", "\t", "x"}},
		{"stray continuation byte", []int{b(0x98), b('x')}, []string{"", "x"}},
		{"cut short by ASCII", []int{b(0xE2), b(0x98), b('x')}, []string{"", "", "x"}},
		{"cut short by a new character", []int{b(0xE2), b(0xC3), b(0xA9)}, []string{"", "", "é"}},
		{"cut short by a control byte", []int{b(0xE2), b(0x01), b('x')}, []string{"", "", "x"}},
		{"cut short by a longer piece", []int{b(0xE2), b(0x98), eAcute, b(0x95)}, []string{"", "", "é", ""}},
		{"overlong encoding", []int{b(0xE0), b(0x80), b(0x80), b('x')}, []string{"", "", "", "x"}},
		{"surrogate", []int{b(0xED), b(0xA0), b(0x80), b('x')}, []string{"", "", "", "x"}},
		{"never-valid bytes", []int{b(0xC0), b(0xFF), b(0xF5), b('x')}, []string{"", "", "", "x"}},
		{"C1 control character", []int{b(0xC2), b(0x85), b(0xC2), b(0xA0)}, []string{"", "", "", "\u00a0"}},
		{"incomplete at the end", []int{b('x'), b(0xE2), b(0x98)}, []string{"x", "", ""}},
		{"id out of range", []int{b(0xE2), 100000, b(0x98)}, []string{"", "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tok.NewPrinter(BOS)
			var got []string
			for _, id := range tc.ids {
				got = append(got, p.Next(id))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("printed %q\nwant    %q", got, tc.want)
			}
		})
	}
}

// printable is the reference for Printer: the text with what llama2.c
// would not print removed, character by character rather than token by
// token — bytes that are not valid UTF-8, and control characters other
// than ASCII whitespace.
func printable(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r != utf8.RuneError || size > 1) && (!unicode.IsControl(r) || '\t' <= r && r <= '\r') {
			sb.WriteString(s[i : i+size])
		}
		i += size
	}
	return sb.String()
}

// TestPrinterText prints the encoding of texts token by token and compares
// the whole with the reference printable: what DecodeAll returns, less
// what must not be printed. With llama2.c's rule every character missing
// from the vocabulary was lost ("Le café ☕ 日本" printed "Le café  ").
func TestPrinterText(t *testing.T) {
	synthetic := mustParse(t, build(8, entry{"é", 1}, entry{" ab", 2}, entry{"ab", 1}))
	check := func(t *testing.T, tok *Tokenizer, s string) bool {
		t.Helper()
		ids := tok.Encode(s, true, false)
		p := tok.NewPrinter(ids[0])
		var sb strings.Builder
		for _, id := range ids[1:] {
			sb.WriteString(p.Next(id))
		}
		if got, want := sb.String(), printable(tok.DecodeAll(ids)); got != want {
			t.Errorf("text %q printed %q, want %q", s, got, want)
			return false
		}
		return true
	}
	texts := []string{
		"Le café ☕ 日本.",
		"€5 “quoted” — ñandú 😀",
		"bad \xe2\x98 bytes \x80\xff and \x01controls\x7f\u0085 kept\ttabs\nnewlines",
		"\xed\xa0\x80 surrogate, \xe0\x80\x80 overlong",
	}
	for _, s := range texts {
		check(t, synthetic, s)
	}
	tok := tok512(t)
	if got := printable(tok.DecodeAll(tok.Encode(texts[0], true, false))); got != texts[0] {
		t.Fatalf("reference: %q", got)
	}
	for _, s := range texts {
		check(t, tok, s)
	}
	cfg := &quick.Config{MaxCount: 300, Rand: rand.New(rand.NewSource(7))}
	for _, vocab := range []*Tokenizer{synthetic, tok} {
		if err := quick.Check(func(s string, raw []byte) bool {
			return check(t, vocab, s+string(raw)+s)
		}, cfg); err != nil {
			t.Error(err)
		}
	}
}
