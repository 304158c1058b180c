package tokenizer

import "unicode/utf8"

// Byte-level BPE (GPT-2, Llama 3, SmolLM...) works on bytes, but its
// vocabulary is written as text: each byte is shown as one printable
// character. Bytes that are printable and not space in Latin-1 ('!'..'~',
// '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 bytes (controls,
// space, DEL, NBSP, soft hyphen...) take the characters U+0100, U+0101, ...
// in byte order, so the space 0x20 is 'Ġ' (U+0120) and '\n' is 'Ċ' (U+010A).

// byteRunes maps each byte to its character; runeBytes is the inverse over
// U+0000..U+0143 (every character in the table is below U+0144), with -1
// for a character that stands for no byte.
var byteRunes, runeBytes = byteLevelTables()

// byteLevelMax bounds the characters of the table.
const byteLevelMax = 0x144

func byteLevelTables() (fwd [256]rune, inv [byteLevelMax]int16) {
	for i := range inv {
		inv[i] = -1
	}
	visible := func(b int) bool {
		return '!' <= b && b <= '~' || 0xA1 <= b && b <= 0xAC || 0xAE <= b && b <= 0xFF
	}
	next := rune(256)
	for b := range 256 {
		r := rune(b)
		if !visible(b) {
			r = next
			next++
		}
		fwd[b] = r
		inv[r] = int16(b)
	}
	return fwd, inv
}

// byteLevelEncode maps each byte of s (valid UTF-8 or not) to its
// byte-level character, as the ByteLevel pre-tokenizer does before BPE.
func byteLevelEncode(s string) string {
	b := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		b = utf8.AppendRune(b, byteRunes[s[i]])
	}
	return string(b)
}

// byteLevelDecode inverts byteLevelEncode: it returns the byte of each
// character of s. ok is false if s has a character that stands for no byte
// (then the bytes are nil), as an added token written as plain text may
// ("▁", "日本"); the caller decodes such a token as its own text.
func byteLevelDecode(s string) (b []byte, ok bool) {
	b = make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if n == 1 && r == utf8.RuneError || r >= byteLevelMax || runeBytes[r] < 0 {
			return nil, false
		}
		b = append(b, byte(runeBytes[r]))
		i += n
	}
	return b, true
}
