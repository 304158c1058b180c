package tokenizer

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/unicode/rangetable"
)

// The Unicode normalizers of a tokenizer.json (NFC, NFD, NFKC, NFKD) give
// what Hugging Face's Rust crate gives. golang.org/x/text/unicode/norm
// supplies the Unicode data (decompositions, combining classes) and the
// quick check that finds text already normalized; the rest is done here:
//
//   - The crate normalizes with unicode-normalization-alignments 0.1.12,
//     whose tables are Unicode 9.0; x/text's are newer (norm.Version). A
//     character that Unicode 9.0 leaves unassigned has no decomposition,
//     combining class 0 and no compositions there, so it cuts the text into
//     pieces that are normalized apart and is itself kept as it is. Unicode's
//     stability policy keeps the normalization of characters assigned by 9.0
//     the same in every later version, so the rest needs no adjusting.
//     (Hugging Face's JS library uses the JavaScript engine's String.normalize,
//     Unicode 17.0 in node 20.20: it differs from both on characters new
//     since 9.0 that have combining classes or decompositions.)
//   - Text the quick check does not pass is normalized by the definition
//     (normalizeText), not by x/text, whose composition is wrong in places:
//     it composes a mark with a starter across another starter that can
//     combine backward ("A\u09be\u0316\u0302" becomes "Â\u09be\u0316",
//     golang/go#81001), it looks composition pairs up by the low 16 bits of
//     each character ("\U00010041\u0301" becomes "Á", golang/go#81028), and
//     it follows the Stream-Safe Text Format, inserting U+034F COMBINING
//     GRAPHEME JOINER after 30 non-starters in a row, which the crate does
//     not.
//
// Invalid UTF-8, which Rust strings cannot hold, is kept byte for byte and
// cuts the text as an unassigned character does.

// hfUnicodeVersion is the Unicode version of the Rust crate's normalization
// tables.
const hfUnicodeVersion = "9.0.0"

// assignedHF holds the characters assigned in hfUnicodeVersion.
var assignedHF = rangetable.Assigned(hfUnicodeVersion)

// unicodeForms are the normalizer types of a tokenizer.json that are
// Unicode normalization forms.
var unicodeForms = map[string]norm.Form{"NFC": norm.NFC, "NFD": norm.NFD, "NFKC": norm.NFKC, "NFKD": norm.NFKD}

// normalizeUnicode returns s in form f as Hugging Face's Rust crate
// computes it (see above).
func normalizeUnicode(f norm.Form, s string) string {
	var sb strings.Builder
	done := 0 // s[:done] is written to sb
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || !unicode.Is(assignedHF, r) {
			if done == 0 {
				sb.Grow(len(s))
			}
			sb.WriteString(normalizePiece(f, s[done:i]))
			sb.WriteString(s[i : i+n])
			done = i + n
		}
		i += n
	}
	if done == 0 {
		return normalizePiece(f, s)
	}
	sb.WriteString(normalizePiece(f, s[done:]))
	return sb.String()
}

// normalizePiece normalizes valid UTF-8 whose characters are all assigned in
// hfUnicodeVersion.
func normalizePiece(f norm.Form, s string) string {
	// The quick check passes text whose characters all have quick-check
	// value Yes for the form, in canonical order: such text is normalized.
	// Where it stops (it also stops in a run of more than 30 non-starters),
	// the text from the last safe boundary before that point to the next
	// one after it is normalized the long way, and the check goes on.
	n := f.QuickSpanString(s)
	if n == len(s) {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s) + len(s)/8)
	done := 0 // s[:done] is written to sb, and done is a boundary
	for n < len(s) {
		start := n
		for start > done && !boundaryAt(s, start) {
			start--
		}
		_, size := utf8.DecodeRuneInString(s[n:])
		end := n + size
		for end < len(s) && !boundaryAt(s, end) {
			end++
		}
		sb.WriteString(s[done:start])
		sb.WriteString(normalizeText(f, s[start:end]))
		done = end
		n = end + f.QuickSpanString(s[end:])
	}
	sb.WriteString(s[done:])
	return sb.String()
}

// boundaryAt reports whether a character starts at s[i] before which text
// can be cut and each side normalized alone, in every form: one that has
// class 0, never composes with what precedes it, and decomposes (if at all)
// to such a character followed by others: every character below U+0300,
// and the CJK unified ideographs. Others are taken as no boundary, which
// only makes the pieces normalized the long way longer.
func boundaryAt(s string, i int) bool {
	c := s[i]
	switch {
	case c < utf8.RuneSelf:
		return true
	case c < 0xc2 || c > 0xe9:
		return false // a continuation byte, or a character from U+A000 on
	case c <= 0xcb:
		return true // U+0080 to U+02FF
	}
	r, _ := utf8.DecodeRuneInString(s[i:])
	return r >= 0x4e00 && r <= 0x9fff
}

// normalizeText normalizes s by the definition of the forms (Unicode
// Standard, section 3.11): decompose each character fully, sort each run of
// non-starters by combining class (stably), and for NFC and NFKC compose
// each character with the last starter before it unless a character
// between them blocks it. No Stream-Safe limit applies.
func normalizeText(f norm.Form, s string) string {
	dec := norm.NFD
	if f == norm.NFKC || f == norm.NFKD {
		dec = norm.NFKD
	}
	type char struct {
		r   rune
		ccc uint8
	}
	cs := make([]char, 0, len(s))
	var buf [utf8.UTFMax]byte
	for i := 0; i < len(s); {
		p := dec.PropertiesString(s[i:])
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if p.Decomposition() == nil && !isHangulSyllable(r) {
			cs = append(cs, char{r, p.CCC()})
			continue
		}
		// One character's decomposition is a few characters, far from
		// the Stream-Safe limit, and x/text decomposes correctly.
		for _, d := range dec.String(string(r)) {
			n := utf8.EncodeRune(buf[:], d)
			cs = append(cs, char{d, dec.Properties(buf[:n]).CCC()})
		}
	}
	for i := 0; i < len(cs); {
		if cs[i].ccc == 0 {
			i++
			continue
		}
		j := i
		for j < len(cs) && cs[j].ccc != 0 {
			j++
		}
		slices.SortStableFunc(cs[i:j], func(a, b char) int { return int(a.ccc) - int(b.ccc) })
		i = j
	}
	if f == norm.NFC || f == norm.NFKC {
		out := cs[:0] // composing only removes characters, so out never passes the one read
		starter := -1 // index in out of the last starter
		var last uint8
		for _, c := range cs {
			// c is blocked from the starter by a character between them
			// of class 0 or of a class not below c's. Those between are
			// marks (a starter kept becomes the starter) in sorted order,
			// so the last one kept has the highest class. A starter that
			// never combines backward cannot compose.
			if starter >= 0 && (starter == len(out)-1 || last < c.ccc) &&
				(c.ccc != 0 || !norm.NFC.Properties(buf[:utf8.EncodeRune(buf[:], c.r)]).BoundaryBefore()) {
				if p, ok := composePair(out[starter].r, c.r); ok {
					out[starter].r = p
					continue
				}
			}
			if c.ccc == 0 {
				starter = len(out)
			}
			last = c.ccc
			out = append(out, c)
		}
		cs = out
	}
	var sb strings.Builder
	sb.Grow(len(s))
	for _, c := range cs {
		sb.WriteRune(c.r)
	}
	return sb.String()
}

// isHangulSyllable reports whether r is a precomposed Hangul syllable, whose
// decomposition is computed, not in x/text's table.
func isHangulSyllable(r rune) bool { return r >= 0xac00 && r <= 0xd7a3 }

// composePair returns the primary composite of starter a (a decomposed
// character, or a composite made so far) and b, if there is one. Answers
// are kept in pairCache: text has few distinct pairs, and working one out
// takes three runs of x/text.
func composePair(a, b rune) (rune, bool) {
	key := uint64(a)<<32 | uint64(uint32(b))
	if v, ok := pairCache.Load(key); ok {
		r := v.(rune)
		return r, r >= 0
	}
	r, ok := findComposite(a, b)
	if !ok {
		r = -1
	}
	// The cache is bounded: hostile text can hold millions of pairs.
	if pairCacheLen.Load() < pairCacheMax {
		if _, loaded := pairCache.LoadOrStore(key, r); !loaded {
			pairCacheLen.Add(1)
		}
	}
	return r, ok
}

var (
	pairCache    sync.Map // uint64(a)<<32 | b → the composite, or -1 for none
	pairCacheLen atomic.Int32
)

const pairCacheMax = 1 << 16

// findComposite is composePair without the cache: the character that NFC
// makes of a and b alone, if it makes one, and if that character decomposes
// back to them (which rules out x/text's mistaken compositions of
// golang/go#81028, where a is outside the BMP).
func findComposite(a, b rune) (rune, bool) {
	var pair, out, d1, d2 [32]byte
	n := utf8.EncodeRune(pair[:], a)
	n += utf8.EncodeRune(pair[n:], b)
	c := norm.NFC.Append(out[:0], pair[:n]...)
	r, size := utf8.DecodeRune(c)
	if size == 0 || size != len(c) || !bytes.Equal(norm.NFD.Append(d1[:0], c...), norm.NFD.Append(d2[:0], pair[:n]...)) {
		return 0, false
	}
	return r, true
}
