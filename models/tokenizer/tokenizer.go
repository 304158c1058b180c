// Package tokenizer turns text into token ids and back for LLaMA-family
// models. It reads three kinds of vocabulary file into the one type
// Tokenizer:
//
//   - llama2.c's tokenizer.bin (Load, Parse): SentencePiece-style byte-pair
//     encoding with per-token scores and byte fallback, encoded exactly as
//     llama2.c encodes;
//   - Hugging Face's tokenizer.json (LoadHF, ParseHF) with model BPE,
//     encoded as the Hugging Face tokenizers library encodes (its Unicode
//     normalizers with the Unicode 9.0 tables that library uses);
//   - SentencePiece's tokenizer.model (LoadSentencePiece,
//     ParseSentencePiece) of BPE type, encoded as Hugging Face's
//     LlamaTokenizer encodes with it.
//
// LoadDir reads a Hugging Face model folder (tokenizer.json, else
// tokenizer.model, with BOS and EOS from its config files), and Load
// accepts any of these paths.
//
// # The tokenizer.bin format
//
// A little-endian int32 max_token_length, then for each token in id order a
// float32 score, an int32 byte length and that many bytes of the token's
// piece. The file does not record the vocabulary size; it is the number of
// entries (callers should check it against the model's vocab_size). Tokens
// 0, 1 and 2 are <unk>, BOS and EOS; tokens 3..258 must be the byte
// pieces "<0x00>".."<0xFF>".
//
// # Encoding a tokenizer.bin vocabulary
//
// Encode follows llama2.c exactly: a leading space (SentencePiece's "dummy
// prefix") is added to non-empty text; each UTF-8 character (a byte and up
// to three continuation bytes) becomes its token if the vocabulary has it,
// otherwise one byte-fallback token per byte (id = byte + 3); then, while
// any adjacent pair's concatenated piece is in the vocabulary, the pair
// whose merge has the highest score (the leftmost on ties) is merged.
// Decode maps byte pieces back to bytes and drops the leading space of the
// first piece after BOS, so that decoding an encoding with BOS returns the
// original text. Printer decodes a stream of generated tokens for printing,
// holding back the byte tokens of a character until it is whole.
package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Special token ids of llama2.c's vocabularies.
const (
	UnknownID = 0
	BOS       = 1
	EOS       = 2
	// firstByteID is the id of the byte-fallback token "<0x00>".
	firstByteID = 3
)

// maxTokenLength bounds max_token_length; real vocabularies need a few
// dozen bytes.
const maxTokenLength = 1 << 16

// kind says which file a Tokenizer came from, and so which encoding rules
// apply.
type kind int

const (
	kindLlama2c       kind = iota // tokenizer.bin: llama2.c's rules
	kindHF                        // tokenizer.json: Hugging Face tokenizers' rules
	kindSentencePiece             // tokenizer.model: LlamaTokenizer's rules
)

// Tokenizer is a loaded vocabulary. It is immutable and safe for concurrent use.
type Tokenizer struct {
	pieces  []string
	scores  []float32
	decoded []string // what each token decodes to: its piece, or one byte for "<0xXX>"
	maxLen  int
	ids     map[string]int // piece → lowest id holding it
	name    string         // file name, for error messages
	kind    kind
	// bos and eos are the ids Encode adds on request, -1 where the
	// vocabulary has none.
	bos, eos int
	// stops are the ids besides EOS that end a generation (a model
	// folder's generation_config.json and config.json list them).
	stops []int
	// skip marks the ids DecodeAll leaves out besides BOS and EOS
	// (special added tokens); nil for tokenizer.bin.
	skip []bool
	hf   *hfModel // kindHF only
	sp   *spModel // kindSentencePiece only
}

// Load reads a tokenizer from path: a Hugging Face model folder (see
// LoadDir), a tokenizer.json (LoadHF) or tokenizer.model (LoadSentencePiece)
// file, told apart by the name's extension, and otherwise a llama2.c
// tokenizer.bin.
func Load(path string) (*Tokenizer, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return LoadDir(path)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return LoadHF(path)
	case ".model":
		return LoadSentencePiece(path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return Parse(b, path)
}

// Parse decodes the contents of a tokenizer.bin file. name is used in error
// messages.
func Parse(b []byte, name string) (*Tokenizer, error) {
	fail := func(format string, args ...any) (*Tokenizer, error) {
		return nil, fmt.Errorf("tokenizer: %s: %s", name, fmt.Sprintf(format, args...))
	}
	le := binary.LittleEndian
	if len(b) < 4 {
		return fail("file is %d bytes, too short for the 4-byte max_token_length", len(b))
	}
	maxLen := int64(int32(le.Uint32(b)))
	if maxLen < 1 || maxLen > maxTokenLength {
		return fail("max_token_length is %d; expected 1 to %d", maxLen, maxTokenLength)
	}
	t := &Tokenizer{maxLen: int(maxLen), ids: map[string]int{}, name: name, bos: BOS, eos: EOS}
	off := 4
	for id := 0; off < len(b); id++ {
		if len(b)-off < 8 {
			return fail("token %d at offset %d: truncated entry: %d bytes left, need 8 for score and length", id, off, len(b)-off)
		}
		score := math.Float32frombits(le.Uint32(b[off:]))
		n := int64(int32(le.Uint32(b[off+4:])))
		off += 8
		if math.IsNaN(float64(score)) {
			return fail("token %d has a NaN score", id)
		}
		if n < 0 || n > maxLen {
			return fail("token %d has length %d; expected 0 to max_token_length %d", id, n, maxLen)
		}
		if int64(len(b)-off) < n {
			return fail("token %d: truncated: length %d but only %d bytes left", id, n, len(b)-off)
		}
		piece := string(b[off : off+int(n)])
		off += int(n)
		t.pieces = append(t.pieces, piece)
		t.scores = append(t.scores, score)
		if _, dup := t.ids[piece]; !dup {
			t.ids[piece] = id
		}
	}
	if len(t.pieces) < firstByteID+256 {
		return fail("vocabulary has %d tokens; expected at least 259 (<unk>, BOS, EOS and 256 byte tokens)", len(t.pieces))
	}
	t.decoded = make([]string, len(t.pieces))
	for id, p := range t.pieces {
		t.decoded[id] = p
		if v, ok := bytePiece(p); ok {
			t.decoded[id] = string([]byte{v})
		}
	}
	for v := 0; v < 256; v++ {
		id := firstByteID + v
		if got, ok := bytePiece(t.pieces[id]); !ok || got != byte(v) {
			return fail("token %d is %q; expected the byte-fallback piece \"<0x%02X>\" (tokens 3..258 must be bytes 0..255)", id, t.pieces[id], v)
		}
	}
	return t, nil
}

// bytePiece reports whether p is a byte-fallback piece "<0xXX>" and its byte.
func bytePiece(p string) (byte, bool) {
	if len(p) != 6 || !strings.HasPrefix(p, "<0x") || p[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexDigit(p[3])
	lo, ok2 := hexDigit(p[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// BOS returns the id of the beginning-of-sequence token that Encode adds
// when asked, or -1 if the tokenizer has none. It is BOS (1) for a
// tokenizer.bin.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS returns the id of the end-of-sequence token that Encode adds when
// asked, or -1 if the tokenizer has none. It is EOS (2) for a
// tokenizer.bin.
func (t *Tokenizer) EOS() int { return t.eos }

// Stops returns the ids that end a generated text: EOS (where there is
// one) first, then the other end-of-sequence ids that a model folder read
// by LoadDir lists as eos_token_id in its generation_config.json or
// config.json (Llama 3 Instruct: <|end_of_text|>, <|eom_id|> and
// <|eot_id|>, of which its tokenizer_config.json names only one as EOS).
// The caller may modify the result.
func (t *Tokenizer) Stops() []int {
	var s []int
	if t.eos >= 0 {
		s = append(s, t.eos)
	}
	for _, id := range t.stops {
		if !slices.Contains(s, id) {
			s = append(s, id)
		}
	}
	return s
}

// HuggingFace reports whether the tokenizer follows Hugging Face's rules
// (read from a tokenizer.json, a tokenizer.model or a model folder) rather
// than llama2.c's (a tokenizer.bin).
func (t *Tokenizer) HuggingFace() bool { return t.kind != kindLlama2c }

// Name returns the file the tokenizer was read from, as given to the
// loader.
func (t *Tokenizer) Name() string { return t.name }

// VocabSize returns the number of tokens.
func (t *Tokenizer) VocabSize() int { return len(t.pieces) }

// CheckVocab returns an error unless the tokenizer fits a model whose
// vocabulary has vocabSize tokens. A llama2.c tokenizer.bin must have
// exactly vocabSize tokens: the format does not record its size, so a
// truncated file can look like a smaller vocabulary. A Hugging Face
// tokenizer may have fewer, since models often pad their embedding to a
// round size, but no more, except for special added tokens past the end
// of the embedding: Gemma 3's tokenizer.json, shared by every size, ends
// with <image_soft_token> at id 262144, one past the text models' 262144
// rows (only the multimodal models embed it). Such a token is never
// produced by encoding ordinary text; a text that spells it out encodes
// to an id the model refuses by name.
func (t *Tokenizer) CheckVocab(vocabSize int) error {
	switch {
	case t.kind == kindLlama2c && len(t.pieces) != vocabSize:
		return fmt.Errorf("tokenizer: %s has %d tokens but the model's vocab_size is %d", t.name, len(t.pieces), vocabSize)
	case len(t.pieces) > vocabSize:
		for id := max(vocabSize, 0); id < len(t.pieces); id++ {
			if t.kind != kindHF || !t.skip[id] {
				return fmt.Errorf("tokenizer: %s has %d tokens but the model's vocab_size is only %d (token %d %q is past the embedding)",
					t.name, len(t.pieces), vocabSize, id, t.pieces[id])
			}
		}
	}
	return nil
}

// MaxTokenLength returns the file's max_token_length, the longest piece.
func (t *Tokenizer) MaxTokenLength() int { return t.maxLen }

// Piece returns token id's piece as stored (byte tokens as "<0xXX>"). It
// returns "" for an id out of range.
func (t *Tokenizer) Piece(id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// Score returns token id's merge score (0 for an id out of range).
func (t *Tokenizer) Score(id int) float32 {
	if id < 0 || id >= len(t.scores) {
		return 0
	}
	return t.scores[id]
}

// Lookup returns the id of the token whose piece is exactly s (the lowest
// such id), or false.
func (t *Tokenizer) Lookup(s string) (int, bool) {
	id, ok := t.ids[s]
	return id, ok
}

// Encode tokenizes text, optionally preceded by BOS and followed by EOS
// (each added only where the tokenizer has one: see BOS and EOS). A
// tokenizer.bin encodes as llama2.c does (see the package documentation), a
// tokenizer.json as Hugging Face's tokenizers library does with
// add_special_tokens=false, and a tokenizer.model as Hugging Face's
// LlamaTokenizer does. Any bytes are accepted: invalid UTF-8 goes through
// byte fallback (or the unknown token where there is none).
func (t *Tokenizer) Encode(text string, bos, eos bool) []int {
	var toks []int
	switch t.kind {
	case kindHF:
		if bos && t.bos >= 0 {
			toks = append(toks, t.bos)
		}
		toks = t.hf.encode(text, toks)
	case kindSentencePiece:
		if bos && t.bos >= 0 {
			toks = append(toks, t.bos)
		}
		toks = t.sp.encode(t, text, toks)
	default:
		toks = t.encodeLlama2c(text, bos)
	}
	if eos && t.eos >= 0 {
		toks = append(toks, t.eos)
	}
	return toks
}

// encodeLlama2c is llama2.c's encode, BOS included in the merge as there.
func (t *Tokenizer) encodeLlama2c(text string, bos bool) []int {
	var toks []int
	if bos {
		toks = append(toks, BOS)
	}
	if text != "" {
		if id, ok := t.ids[" "]; ok {
			toks = append(toks, id)
		} else {
			toks = append(toks, firstByteID+' ')
		}
	}
	for i := 0; i < len(text); {
		// A character: one byte and up to three continuation bytes.
		j := i + 1
		for j < len(text) && j-i < 4 && text[j]&0xC0 == 0x80 {
			j++
		}
		if id, ok := t.ids[text[i:j]]; ok {
			toks = append(toks, id)
		} else {
			for k := i; k < j; k++ {
				toks = append(toks, firstByteID+int(text[k]))
			}
		}
		i = j
	}
	return t.merge(toks)
}

// merge applies llama2.c's merge loop — repeatedly merge the adjacent pair
// with the best-scoring merged piece, leftmost on ties — in O(n log n) with
// a queue and a linked list instead of llama2.c's O(n²) rescans. The result
// is identical: node indices keep sequence order, so the queue's tie-break
// on the left node picks the pair llama2.c's left-to-right scan picks.
func (t *Tokenizer) merge(toks []int) []int {
	n := len(toks)
	if n < 2 {
		return toks
	}
	id := append([]int(nil), toks...)
	list := newSymbolList(n)
	var q mergeQueue
	buf := make([]byte, 0, 2*t.maxLen)
	// lookup returns the token the pair l, r merges into.
	lookup := func(l, r int) (int, bool) {
		buf = append(append(buf[:0], t.pieces[id[l]]...), t.pieces[id[r]]...)
		m, ok := t.ids[string(buf)]
		return m, ok
	}
	try := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		if m, ok := lookup(l, r); ok {
			q.push(mergeKey(scorePriority(t.scores[m]), l))
		}
	}
	for i := 0; i+1 < n; i++ {
		try(i, i+1)
	}
	for len(q) > 0 {
		l, prio := q.pop()
		r := list.next[l]
		if !list.alive[l] || r < 0 {
			continue
		}
		m, ok := lookup(l, r)
		if !ok || scorePriority(t.scores[m]) != prio {
			continue // stale: the pair at l has changed since
		}
		id[l] = m
		list.unlink(r)
		try(list.prev[l], l)
		try(l, list.next[l])
	}
	out := toks[:0]
	for i := 0; i >= 0; i = list.next[i] {
		out = append(out, id[i])
	}
	return out
}

// Decode returns the text of token id following token prev. For a
// tokenizer.bin it is what llama2.c's decode returns: byte tokens become
// their byte, and a piece's leading space is dropped right after BOS. The
// other kinds decode the token alone through their decoder (the
// tokenizer.json's decoder, SentencePiece's rules), treating it as the
// first of the text when prev is BOS or negative (no token before it, as
// for the first token of a text encoded without BOS): then the space that
// encoding prepended is dropped. An id out of range decodes to "".
func (t *Tokenizer) Decode(prev, id int) string {
	if id < 0 || id >= len(t.decoded) {
		return ""
	}
	first := prev < 0 || prev == t.bos
	switch t.kind {
	case kindHF:
		return t.hf.decodeToken(id, first)
	case kindSentencePiece:
		return t.sp.decodeToken(t, id, first)
	}
	s := t.decoded[id]
	if prev == BOS && strings.HasPrefix(t.pieces[id], " ") {
		s = s[1:]
	}
	return s
}

// DecodeAll returns the text of a token sequence, omitting the BOS and EOS
// control tokens (and, for a tokenizer.json, every special added token, as
// Hugging Face's decode with skip_special_tokens=True does). For any text s,
// DecodeAll(Encode(s, true, eos)) == s with a tokenizer.bin. The other
// kinds treat the first token kept as the start of the text, as Hugging
// Face's decoders do; byte-fallback bytes that are not valid UTF-8 are kept
// as they are rather than replaced by U+FFFD.
func (t *Tokenizer) DecodeAll(ids []int) string {
	var sb strings.Builder
	if t.kind == kindLlama2c {
		prev := -1
		for _, id := range ids {
			if id != BOS && id != EOS {
				sb.WriteString(t.Decode(prev, id))
			}
			prev = id
		}
		return sb.String()
	}
	kept := make([]int, 0, len(ids))
	for _, id := range ids {
		if t.isControl(id) {
			continue
		}
		kept = append(kept, id)
	}
	if t.kind == kindHF {
		return t.hf.decode(kept)
	}
	for i, id := range kept {
		sb.WriteString(t.sp.decodeToken(t, id, i == 0))
	}
	return sb.String()
}

// IsPrintable reports whether a decoded piece should be printed, following
// llama2.c's safe_printf: single bytes that are neither printable ASCII nor
// whitespace (stray control or partial-UTF-8 bytes) are not.
func IsPrintable(piece string) bool {
	if len(piece) != 1 {
		return piece != ""
	}
	c := piece[0]
	return (c >= 0x20 && c < 0x7f) || c == ' ' || (c >= '\t' && c <= '\r')
}

// isControl reports whether DecodeAll leaves token id out of the text of a
// Hugging Face or SentencePiece tokenizer: an id outside the vocabulary,
// BOS, EOS or a special added token.
func (t *Tokenizer) isControl(id int) bool {
	return id < 0 || id >= len(t.decoded) || id == t.bos || id == t.eos || (t.skip != nil && t.skip[id])
}

// Printer turns generated tokens into text to print one token at a time,
// as llama2.c's run prints them (see IsPrintable), except that the byte
// tokens of a multibyte UTF-8 character are held back until the character
// is complete and then printed together: llama2.c drops each such byte,
// so that characters missing from the vocabulary ("☕", "日") vanished from
// the output, though DecodeAll keeps them. Bytes that do not form valid
// UTF-8 (a stray continuation byte, a sequence cut short by another token,
// an overlong or surrogate encoding) and control bytes are still dropped,
// as llama2.c drops them, and so are the C1 control characters; an
// incomplete character at the end never prints.
// Pieces of more than one byte print as they are, as in llama2.c.
//
// With a tokenizer.json or tokenizer.model, the tokens DecodeAll leaves out
// (BOS, EOS, special added tokens such as Llama 3's <|eot_id|> or Qwen's
// <|im_end|>) print nothing, as transformers' text-generation pipeline
// decodes with skip_special_tokens=True; the token after one decodes as if
// it followed the last token printed.
type Printer struct {
	tok     *Tokenizer
	prev    int
	pending []byte // the bytes so far of an incomplete UTF-8 character
}

// NewPrinter returns a Printer for tokens that follow the token prev (BOS
// for a prompt's first token after it, -1 for the first token of a text
// without BOS; see Decode).
func (t *Tokenizer) NewPrinter(prev int) *Printer {
	return &Printer{tok: t, prev: prev}
}

// Next returns the text to print for token id, the next token: its
// decoded piece (see Decode), "" while a character's bytes are still
// arriving, or the whole character with the byte that completes it.
func (p *Printer) Next(id int) string {
	if p.tok.kind != kindLlama2c && p.tok.isControl(id) {
		return ""
	}
	piece := p.tok.Decode(p.prev, id)
	p.prev = id
	if p.tok.kind != kindLlama2c {
		// Byte-level tokens hold parts of characters in pieces of any
		// length, so every byte goes through the assembler.
		var out []byte
		for i := 0; i < len(piece); i++ {
			p.feed(piece[i], &out)
		}
		return string(out)
	}
	if len(piece) != 1 {
		// A longer piece cuts short any character in progress, whose
		// bytes are then invalid UTF-8.
		p.pending = p.pending[:0]
		return piece
	}
	var out []byte
	p.feed(piece[0], &out)
	return string(out)
}

// feed adds byte c to the character in progress and appends to out what
// can be printed.
func (p *Printer) feed(c byte, out *[]byte) {
	if len(p.pending) == 0 && c < utf8.RuneSelf {
		if IsPrintable(string(c)) {
			*out = append(*out, c)
		}
		return
	}
	p.pending = append(p.pending, c)
	if !utf8.FullRune(p.pending) {
		return // a valid start; wait for the rest
	}
	if r, size := utf8.DecodeRune(p.pending); r != utf8.RuneError || size > 1 {
		// C1 control characters (U+0080–U+009F) are dropped like the C0
		// ones: some terminals act on them.
		if !unicode.IsControl(r) {
			*out = append(*out, p.pending...)
		}
		p.pending = p.pending[:0]
		return
	}
	// Invalid: drop the first byte, as llama2.c drops any lone byte that is
	// not printable ASCII, and read the rest again, since the byte that
	// broke the sequence may begin a character or be ASCII itself.
	rest := append([]byte(nil), p.pending[1:]...)
	p.pending = p.pending[:0]
	for _, b := range rest {
		p.feed(b, out)
	}
}
