package tokenizer

import (
	"bytes"
	"testing"
	"unicode"
)

// TestByteLevelKnown checks bytes whose characters every GPT-2-style
// vocabulary shows: "Ġ" for space, "Ċ" for newline, "ĉ" for tab, and the
// ends of the table.
func TestByteLevelKnown(t *testing.T) {
	for _, tc := range []struct {
		b    byte
		want rune
	}{
		{0x00, 'Ā'}, // U+0100, the first byte that is not shown as itself
		{'\t', 'ĉ'},
		{'\n', 'Ċ'},
		{'\r', 'č'},
		{' ', 'Ġ'},
		{'!', '!'},
		{'~', '~'},
		{0x7F, 'ġ'},   // DEL follows the 33 bytes 0x00..0x20
		{0xA0, 'ł'},   // NBSP, the last of 0x7F..0xA0
		{0xA1, '¡'},   // shown as itself
		{0xAD, 'Ń'},   // soft hyphen, the 68th and last replaced byte: U+0143
		{0xFF, 'ÿ'},   // shown as itself
		{0xC3, 'Ã'},   // first byte of é in UTF-8
		{0xA9, '©'},   // its second byte
		{0xE2, 'â'},   // first byte of the three-byte characters
		{0x80, 'Ģ'},   // continuation bytes below 0xA1 are replaced
		{0x8A, 'Ĭ'},   //
		{0x9F, 'Ł'},   //
		{'a', 'a'},    //
		{'<', '<'},    // added tokens like <|eot_id|> are visible ASCII
		{0x20, 0x120}, // the same as 'Ġ', as a number
	} {
		if got := byteRunes[tc.b]; got != tc.want {
			t.Errorf("byte %#02x: %q (U+%04X), want %q (U+%04X)", tc.b, got, got, tc.want, tc.want)
		}
	}
	if got, want := byteLevelEncode("é \n"), "Ã©ĠĊ"; got != want {
		t.Errorf("byteLevelEncode(%q) = %q, want %q", "é \n", got, want)
	}
}

// TestByteLevelTable checks the table's shape: 256 distinct printable,
// non-space characters, each decoding back to its byte.
func TestByteLevelTable(t *testing.T) {
	seen := map[rune]bool{}
	all := make([]byte, 256)
	for b := range 256 {
		r := byteRunes[b]
		if seen[r] {
			t.Errorf("byte %#02x: character %q used twice", b, r)
		}
		seen[r] = true
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			t.Errorf("byte %#02x: character %q is not printable or is a space", b, r)
		}
		all[b] = byte(b)
	}
	got, ok := byteLevelDecode(byteLevelEncode(string(all)))
	if !ok || !bytes.Equal(got, all) {
		t.Errorf("round trip of all bytes: %v, %v", got, ok)
	}
}

// TestByteLevelDecode checks decoding, including strings that are not
// byte-level text.
func TestByteLevelDecode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []byte
		ok   bool
	}{
		{"", []byte{}, true},
		{"ĠHello", []byte(" Hello"), true},
		{"ðŁ¤Ĺ", []byte("🤗"), true},
		{"Ã", []byte{0xC3}, true}, // half a character is still bytes
		{"<|eot_id|>", []byte("<|eot_id|>"), true},
		{"▁", nil, false},  // U+2581 is not in the table
		{"a日", nil, false}, // nor is CJK
		{" ", nil, false},  // nor a plain space (0x20 is shown as Ġ)
		{"\u00ad", nil, false},
		{"Ń\u0144", nil, false}, // U+0143 is the last; U+0144 is past the table
		{"\xff", nil, false},    // invalid UTF-8
		{"\ufffd", nil, false},
	} {
		got, ok := byteLevelDecode(tc.in)
		if ok != tc.ok || !bytes.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("byteLevelDecode(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
