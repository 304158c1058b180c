package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/sora-go/sora/internal/atomicfile"
)

// hfModel is what a tokenizer.json adds to a Tokenizer: the pipeline of
// Hugging Face's tokenizers (added tokens, normalizer, pre-tokenizer, BPE
// model, decoder).
type hfModel struct {
	source    []byte // the file, for MarshalHF
	bpe       bpeModel
	pieces    []string // token strings by id (model vocabulary and added tokens)
	added     []hfAddedToken
	addedByID map[int]*hfAddedToken
	// addedText holds the contents of the added tokens, which the
	// ByteLevel decoder passes through unchanged.
	addedText  map[string]bool
	raw        *addedMatcher // added tokens matched on the raw text (normalized false)
	normed     *addedMatcher // added tokens matched on normalized text (normalized true)
	normalizer []normOp
	pre        *preTokenizer // nil: the whole normalized piece is one word
	decoder    []decodeOp
	// prefix and suffix are the special tokens post_processor's template
	// puts around a single sequence.
	prefix, suffix []int
}

// hfAddedToken is one entry of added_tokens.
type hfAddedToken struct {
	ID         int
	Content    string
	SingleWord bool
	Lstrip     bool
	Rstrip     bool
	Normalized bool
	Special    bool
}

// fieldError formats an error in a tokenizer file (tokenizer.json or
// tokenizer.model) naming the file and the field at fault.
func fieldError(name, field, format string, args ...any) error {
	return fmt.Errorf("tokenizer: %s: %s: %s", name, field, fmt.Sprintf(format, args...))
}

// LoadHF reads a Hugging Face tokenizer.json whose model is BPE (the
// LLaMA, Mistral, Mistral Nemo, Llama 3, GPT-2, Gemma and Qwen2/Qwen3
// families). BOS and EOS
// come from its post_processor template where it has one; otherwise they
// are guessed from its special added tokens ("<s>", "</s>", "<|begin_of_text|>",
// "<|end_of_text|>", "<|endoftext|>"), which LoadDir replaces with what a
// model folder's config files say.
func LoadHF(path string) (*Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return ParseHF(b, path)
}

// ParseHF decodes the contents of a tokenizer.json; name is used in error
// messages. See LoadHF.
func ParseHF(b []byte, name string) (*Tokenizer, error) {
	t, err := parseHF(b, name)
	if err != nil {
		return nil, err
	}
	if t.bos < 0 {
		t.bos = guessSpecial(t, bosNames)
	}
	if t.eos < 0 {
		t.eos = guessSpecial(t, eosNames)
	}
	return t, nil
}

// The special tokens LoadHF takes for BOS and EOS when the file does not
// say, in order of preference.
var (
	bosNames = []string{"<s>", "<|begin_of_text|>", "<bos>"}
	eosNames = []string{"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"}
)

// guessSpecial returns the id of the first of names that is a special added
// token, or -1.
func guessSpecial(t *Tokenizer, names []string) int {
	for _, n := range names {
		for _, a := range t.hf.added {
			if a.Special && a.Content == n {
				return a.ID
			}
		}
	}
	return -1
}

// hfFile is the top level of a tokenizer.json.
type hfFile struct {
	AddedTokens   []json.RawMessage `json:"added_tokens"`
	Normalizer    json.RawMessage   `json:"normalizer"`
	PreTokenizer  json.RawMessage   `json:"pre_tokenizer"`
	PostProcessor json.RawMessage   `json:"post_processor"`
	Decoder       json.RawMessage   `json:"decoder"`
	Model         json.RawMessage   `json:"model"`
}

// hfBPEModel is the "model" object of type BPE.
type hfBPEModel struct {
	Type                    string          `json:"type"`
	Dropout                 *float64        `json:"dropout"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
}

// isNull reports whether a JSON value is absent or null.
func isNull(raw json.RawMessage) bool {
	s := bytes.TrimSpace(raw)
	return len(s) == 0 || string(s) == "null"
}

// typeOf returns the "type" field of a JSON object.
func typeOf(raw json.RawMessage) (string, error) {
	var v struct {
		Type *string `json:"type"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	if v.Type == nil {
		return "", fmt.Errorf("no \"type\"")
	}
	return *v.Type, nil
}

// stepType reads the "type" of one step of a tokenizer.json pipeline (a
// normalizer, decoder or post-processor) at field. ok is false where the
// step is null or absent (err nil: no step) or its type cannot be read
// (err says so); an empty "type" is ok, and refused by the caller's switch.
func stepType(raw json.RawMessage, name, field string) (typ string, ok bool, err error) {
	if isNull(raw) {
		return "", false, nil
	}
	typ, err = typeOf(raw)
	if err != nil {
		return "", false, fieldError(name, field, "%v", err)
	}
	return typ, true, nil
}

// parseSequence reads the steps listed in a "Sequence" normalizer or
// decoder, each with parse at its place in the list (field is the list's
// path, e.g. "decoder.decoders"), and joins them in order: a nested
// Sequence flattens into its parent's steps.
func parseSequence[T any](list []json.RawMessage, name, field string, parse func(raw json.RawMessage, name, field string) ([]T, error)) ([]T, error) {
	var ops []T
	for i, raw := range list {
		sub, err := parse(raw, name, fmt.Sprintf("%s[%d]", field, i))
		if err != nil {
			return nil, err
		}
		ops = append(ops, sub...)
	}
	return ops, nil
}

func parseHF(b []byte, name string) (*Tokenizer, error) {
	var f hfFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: not a valid tokenizer.json: %v", name, err)
	}
	if isNull(f.Model) {
		return nil, fieldError(name, "model", "missing; expected an object with \"type\": \"BPE\"")
	}
	typ, err := typeOf(f.Model)
	if err != nil {
		return nil, fieldError(name, "model", "%v; expected an object with \"type\": \"BPE\"", err)
	}
	if typ != "BPE" {
		return nil, fieldError(name, "model.type", "%q is not supported; only BPE models are (WordPiece, Unigram and WordLevel are not)", typ)
	}
	var m hfBPEModel
	if err := json.Unmarshal(f.Model, &m); err != nil {
		return nil, fieldError(name, "model", "%v", err)
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return nil, fieldError(name, "model.dropout", "is %v; only null or 0 is supported (dropout makes encoding random)", *m.Dropout)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return nil, fieldError(name, "model.continuing_subword_prefix", "is %q; only null or \"\" is supported", *m.ContinuingSubwordPrefix)
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, fieldError(name, "model.end_of_word_suffix", "is %q; only null or \"\" is supported", *m.EndOfWordSuffix)
	}
	h := &hfModel{addedByID: map[int]*hfAddedToken{}, addedText: map[string]bool{}, source: append([]byte(nil), b...)}
	h.bpe = bpeModel{vocab: map[string]int{}, merges: map[uint64]bpeMerge{}, unk: -1,
		fuseUnk: m.FuseUnk, byteFallback: m.ByteFallback, ignoreMerges: m.IgnoreMerges}
	vocab, err := parseVocab(m.Vocab, name)
	if err != nil {
		return nil, err
	}
	h.bpe.vocab = vocab
	if m.UnkToken != nil {
		id, ok := vocab[*m.UnkToken]
		if !ok {
			return nil, fieldError(name, "model.unk_token", "%q is not in model.vocab", *m.UnkToken)
		}
		h.bpe.unk = id
	}
	if err := parseMerges(m.Merges, name, &h.bpe); err != nil {
		return nil, err
	}
	// Token strings by id: the model's vocabulary, then added tokens,
	// which may extend it (Llama 3's specials) or repeat its entries.
	size := 0
	for _, id := range vocab {
		size = max(size, id+1)
	}
	seen := map[int]string{}
	for i, raw := range f.AddedTokens {
		a, err := parseAddedToken(raw, name, i)
		if err != nil {
			return nil, err
		}
		if c, ok := seen[a.ID]; ok && c != a.Content {
			return nil, fieldError(name, fmt.Sprintf("added_tokens[%d].id", i), "%d is already the added token %q", a.ID, c)
		}
		seen[a.ID] = a.Content
		h.added = append(h.added, a)
		size = max(size, a.ID+1)
	}
	// A gap in the ids is found before the tables for size tokens are
	// made: a file of a few tokens can claim an id of 2^24-1.
	if err := checkIDGaps(vocab, seen, size, name); err != nil {
		return nil, err
	}
	h.pieces = make([]string, size)
	known := make([]bool, size)
	for p, id := range vocab {
		h.pieces[id], known[id] = p, true
	}
	for i := range h.added {
		a := &h.added[i]
		if known[a.ID] && h.pieces[a.ID] != a.Content {
			return nil, fieldError(name, "added_tokens", "token %q has id %d, which model.vocab gives to %q", a.Content, a.ID, h.pieces[a.ID])
		}
		h.pieces[a.ID], known[a.ID] = a.Content, true
		h.addedByID[a.ID] = a
		h.addedText[a.Content] = true
	}
	for _, c := range []struct {
		field string
		raw   json.RawMessage
	}{{"normalizer", f.Normalizer}, {"pre_tokenizer", f.PreTokenizer}, {"post_processor", f.PostProcessor}, {"decoder", f.Decoder}} {
		if d := jsonDepth(c.raw); d > maxNesting {
			return nil, fieldError(name, c.field, "nested %d levels deep; at most %d are supported", d, maxNesting)
		}
	}
	if h.normalizer, err = parseNormalizer(f.Normalizer, name, "normalizer"); err != nil {
		return nil, err
	}
	if h.pre, err = parsePreTokenizer(f.PreTokenizer); err != nil {
		// parsePreTokenizer's errors start with the field's path.
		return nil, fmt.Errorf("tokenizer: %s: %w", name, err)
	}
	if h.decoder, err = parseDecoder(f.Decoder, name, "decoder"); err != nil {
		return nil, err
	}
	if err := checkDecoder(h.decoder, name); err != nil {
		return nil, err
	}
	if err := parsePostProcessor(f.PostProcessor, name, "post_processor", h); err != nil {
		return nil, err
	}
	var raw, normed []*hfAddedToken
	for i := range h.added {
		if a := &h.added[i]; a.Normalized {
			normed = append(normed, a)
		} else {
			raw = append(raw, a)
		}
	}
	h.raw = newAddedMatcher(raw, nil)
	h.normed = newAddedMatcher(normed, func(s string) string { return applyNormalizer(h.normalizer, s) })

	t := &Tokenizer{name: name, kind: kindHF, hf: h, bos: -1, eos: -1, ids: map[string]int{}}
	t.pieces = h.pieces
	t.scores = make([]float32, size)
	t.decoded = make([]string, size)
	t.skip = make([]bool, size)
	for id, p := range h.pieces {
		t.maxLen = max(t.maxLen, len(p))
		if _, dup := t.ids[p]; !dup {
			t.ids[p] = id
		}
		t.decoded[id] = h.decodeToken(id, false)
	}
	for _, a := range h.added {
		t.skip[a.ID] = a.Special
	}
	if len(h.prefix) == 1 {
		t.bos = h.prefix[0]
	}
	if len(h.suffix) == 1 {
		t.eos = h.suffix[0]
	}
	return t, nil
}

// checkIDGaps returns an error unless the ids of vocab and of the added
// tokens (added: id → content) together are 0 to size-1 without gaps. It
// allocates in proportion to the number of tokens, not to size.
func checkIDGaps(vocab map[string]int, added map[int]string, size int, name string) error {
	ids := make([]int, 0, len(vocab)+len(added))
	for _, id := range vocab {
		ids = append(ids, id)
	}
	for id := range added {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	want := 0 // the lowest id not yet seen
	for _, id := range ids {
		if id > want {
			break
		}
		want = id + 1
	}
	if want < size {
		return fieldError(name, "model.vocab", "no token has id %d, though ids go up to %d; expected ids 0 to %d without gaps (vocabulary and added_tokens together)", want, size-1, size-1)
	}
	return nil
}

// maxNesting bounds how deeply a pipeline component of a tokenizer.json
// (normalizer, pre_tokenizer, post_processor, decoder) may nest JSON objects
// and arrays. Real files nest six levels at most (a Sequence of steps
// holding patterns or templates). Each Sequence level is parsed again by the
// level above it, so a hostile file nested thousands deep would cost time
// quadratic in its depth.
const maxNesting = 32

// jsonDepth returns the deepest nesting of objects and arrays in raw, which
// is valid JSON.
func jsonDepth(raw []byte) int {
	depth, deepest := 0, 0
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if inString {
			switch c {
			case '\\':
				i++ // the escaped byte cannot end the string
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			deepest = max(deepest, depth)
		case '}', ']':
			depth--
		}
	}
	return deepest
}

// parseVocab reads model.vocab, an object from token to id.
func parseVocab(raw json.RawMessage, name string) (map[string]int, error) {
	if isNull(raw) {
		return nil, fieldError(name, "model.vocab", "missing; expected an object from token to id")
	}
	var v map[string]int
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fieldError(name, "model.vocab", "%v; expected an object from token to id", err)
	}
	if len(v) == 0 {
		return nil, fieldError(name, "model.vocab", "is empty")
	}
	byID := make(map[int]string, len(v))
	for p, id := range v {
		if id < 0 || id >= 1<<24 {
			return nil, fieldError(name, "model.vocab", "token %q has id %d; expected 0 to %d", p, id, 1<<24-1)
		}
		if q, dup := byID[id]; dup {
			a, b := min(p, q), max(p, q)
			return nil, fieldError(name, "model.vocab", "tokens %q and %q share id %d", a, b, id)
		}
		byID[id] = p
	}
	return v, nil
}

// parseMerges reads model.merges, in either of its two forms: strings
// "left right" (older files) or two-string arrays (newer ones). Each
// merge's parts and result must be in the vocabulary.
func parseMerges(raw json.RawMessage, name string, m *bpeModel) error {
	if isNull(raw) {
		return nil
	}
	// The whole list is decoded in one of its two forms at once: decoding
	// each of Llama 3's 280 147 merges on its own took half the load time.
	// A list in neither form is read entry by entry to say which is wrong.
	var strs []string
	var pairs [][]string
	if json.Unmarshal(raw, &strs) == nil {
		for rank, s := range strs {
			a, b, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(b, " ") {
				return fieldError(name, fmt.Sprintf("model.merges[%d]", rank), "%q; expected two tokens separated by one space", s)
			}
			if err := addMerge(m, a, b, rank, name); err != nil {
				return err
			}
		}
		return nil
	}
	if json.Unmarshal(raw, &pairs) == nil {
		for rank, p := range pairs {
			if len(p) != 2 {
				e, _ := json.Marshal(p)
				return fieldError(name, fmt.Sprintf("model.merges[%d]", rank), "%s; expected \"left right\" or [\"left\", \"right\"]", truncate(string(e), 60))
			}
			if err := addMerge(m, p[0], p[1], rank, name); err != nil {
				return err
			}
		}
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return fieldError(name, "model.merges", "%v; expected an array", err)
	}
	for rank, e := range list {
		var s string
		var pair []string
		if json.Unmarshal(e, &s) != nil && (json.Unmarshal(e, &pair) != nil || len(pair) != 2) {
			return fieldError(name, fmt.Sprintf("model.merges[%d]", rank), "%s; expected \"left right\" or [\"left\", \"right\"]", truncate(string(e), 60))
		}
	}
	return fieldError(name, "model.merges", "mixes \"left right\" strings and [\"left\", \"right\"] pairs; expected one form")
}

// addMerge records the merge of a and b, of the given rank; the parts and
// the result must be in the vocabulary.
func addMerge(m *bpeModel, a, b string, rank int, name string) error {
	la, ok1 := m.vocab[a]
	lb, ok2 := m.vocab[b]
	merged, ok3 := m.vocab[a+b]
	switch {
	case !ok1:
		return fieldError(name, fmt.Sprintf("model.merges[%d]", rank), "%q is not in model.vocab", a)
	case !ok2:
		return fieldError(name, fmt.Sprintf("model.merges[%d]", rank), "%q is not in model.vocab", b)
	case !ok3:
		return fieldError(name, fmt.Sprintf("model.merges[%d]", rank), "the merged token %q is not in model.vocab", a+b)
	}
	// A repeated pair keeps its last rank, as in Hugging Face.
	m.merges[pairKey(la, lb)] = bpeMerge{rank: rank, id: merged}
	return nil
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// parseAddedToken reads added_tokens[i].
func parseAddedToken(raw json.RawMessage, name string, i int) (hfAddedToken, error) {
	var v struct {
		ID         *int    `json:"id"`
		Content    *string `json:"content"`
		SingleWord bool    `json:"single_word"`
		Lstrip     bool    `json:"lstrip"`
		Rstrip     bool    `json:"rstrip"`
		Normalized *bool   `json:"normalized"`
		Special    bool    `json:"special"`
	}
	field := fmt.Sprintf("added_tokens[%d]", i)
	if err := json.Unmarshal(raw, &v); err != nil {
		return hfAddedToken{}, fieldError(name, field, "%v", err)
	}
	if v.ID == nil || *v.ID < 0 || *v.ID >= 1<<24 {
		return hfAddedToken{}, fieldError(name, field+".id", "missing or out of range; expected 0 to %d", 1<<24-1)
	}
	if v.Content == nil || *v.Content == "" {
		return hfAddedToken{}, fieldError(name, field+".content", "missing or empty")
	}
	a := hfAddedToken{ID: *v.ID, Content: *v.Content, SingleWord: v.SingleWord, Lstrip: v.Lstrip, Rstrip: v.Rstrip, Special: v.Special}
	// Hugging Face's default: special tokens are not normalized, others are.
	a.Normalized = !v.Special
	if v.Normalized != nil {
		a.Normalized = *v.Normalized
	}
	return a, nil
}

// encode appends the ids of text to out: added tokens not normalized are
// split out of the raw text, each piece between them is normalized, the
// normalized added tokens are split out of that, and the rest is
// pre-tokenized into words for the BPE model, as Hugging Face does.
func (h *hfModel) encode(text string, out []int) []int {
	for _, sec := range h.raw.split(text) {
		if sec.token != nil {
			out = append(out, sec.token.ID)
			continue
		}
		norm := applyNormalizer(h.normalizer, sec.text)
		for _, sub := range h.normed.split(norm) {
			if sub.token != nil {
				out = append(out, sub.token.ID)
				continue
			}
			// Only a piece at the very start of the text is "first" for
			// a Metaspace pre-tokenizer with prepend_scheme "first".
			atStart := sec.start == 0 && sub.start == 0
			for _, w := range preTokenizeSection(h.pre, sub.text, atStart) {
				out = h.bpe.tokenize(w, out)
			}
		}
	}
	return out
}

// section is a piece of text between added tokens, or an added token.
type section struct {
	text  string
	start int // byte offset in the text split
	token *hfAddedToken
}

// addedMatcher finds added tokens in text as Hugging Face does: the
// leftmost match, the longest of those starting there, then on from its
// end; single_word tokens only where no word character touches them; lstrip
// and rstrip tokens take the whitespace beside them. The patterns are held
// in a byte trie, so that finding the longest match at a position costs at
// most the length of the longest pattern, however many patterns share a
// prefix (Llama 3's 256 special tokens all start with "<|": trying each at
// every "<" made a text of "<" 20 times slower to encode than prose).
type addedMatcher struct {
	nodes []trieNode // nodes[0] is the root
	// first is the root's child for each byte (-1: none), a table since
	// it is looked up at every byte of the text.
	first [256]int32
	any   bool
}

// trieNode is one node of the trie: the token whose pattern ends here (nil
// if none) and the edges to the nodes one byte further.
type trieNode struct {
	token *hfAddedToken
	edges []trieEdge
}

type trieEdge struct {
	b  byte
	to int32
}

func (m *addedMatcher) child(n int32, b byte) int32 {
	for _, e := range m.nodes[n].edges {
		if e.b == b {
			return e.to
		}
	}
	return -1
}

type addedPattern struct {
	text  string
	token *hfAddedToken
}

// newAddedMatcher indexes tokens; norm, if not nil, maps each content to
// the pattern searched for (normalized tokens are matched as normalized).
// Where two tokens have the same pattern, the first is found.
func newAddedMatcher(tokens []*hfAddedToken, norm func(string) string) *addedMatcher {
	m := &addedMatcher{nodes: []trieNode{{}}}
	for _, a := range tokens {
		p := a.Content
		if norm != nil {
			p = norm(p)
		}
		if p == "" {
			continue
		}
		n := int32(0)
		for i := 0; i < len(p); i++ {
			c := m.child(n, p[i])
			if c < 0 {
				c = int32(len(m.nodes))
				m.nodes = append(m.nodes, trieNode{})
				m.nodes[n].edges = append(m.nodes[n].edges, trieEdge{p[i], c})
			}
			n = c
		}
		if m.nodes[n].token == nil {
			m.nodes[n].token = a
		}
		m.any = true
	}
	for b := range m.first {
		m.first[b] = m.child(0, byte(b))
	}
	return m
}

// next returns the leftmost-longest match at or after i, or ok false.
func (m *addedMatcher) next(s string, i int) (start int, p addedPattern, ok bool) {
	for ; i < len(s); i++ {
		n, end := m.first[s[i]], -1
		var tok *hfAddedToken
		for j := i + 1; n >= 0; j++ {
			if t := m.nodes[n].token; t != nil {
				end, tok = j, t
			}
			if j == len(s) {
				break
			}
			n = m.child(n, s[j])
		}
		if end > 0 {
			return i, addedPattern{s[i:end], tok}, true
		}
	}
	return 0, addedPattern{}, false
}

// split cuts s into sections. Empty sections are left out.
func (m *addedMatcher) split(s string) []section {
	if !m.any {
		if s == "" {
			return nil
		}
		return []section{{text: s, start: 0}}
	}
	var out []section
	done := 0 // end of the last section emitted
	for i := 0; i < len(s); {
		start, p, ok := m.next(s, i)
		if !ok {
			break
		}
		stop := start + len(p.text)
		i = stop
		a := p.token
		if a.SingleWord && (endsWithWord(s[:start]) || startsWithWord(s[stop:])) {
			continue
		}
		if a.Lstrip {
			start = max(len(strings.TrimRightFunc(s[:start], unicode.IsSpace)), done)
		}
		if a.Rstrip {
			stop = len(s) - len(strings.TrimLeftFunc(s[stop:], unicode.IsSpace))
		}
		if done < start {
			out = append(out, section{text: s[done:start], start: done})
		}
		out = append(out, section{text: s[start:stop], start: start, token: a})
		done = stop
		// Matching goes on from the end of the match itself, as in Hugging
		// Face, even where rstrip took the whitespace after it.
	}
	if done < len(s) {
		out = append(out, section{text: s[done:], start: done})
	}
	return out
}

// endsWithWord and startsWithWord are the single_word check, the regex
// crate's \w at the end or start of s (see isWord).
func endsWithWord(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && isWord(r)
}

func startsWithWord(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && isWord(r)
}

// normOp is one normalizer step.
type normOp struct {
	kind        string // "Prepend", "Replace", "Strip", "NFC", "NFD", "NFKC", "NFKD"
	text, with  string // Prepend: text; Replace: pattern text → with
	left, right bool   // Strip: which ends
	form        norm.Form
}

// supportedNormalizers names what parseNormalizer accepts, for errors.
const supportedNormalizers = "Sequence, Prepend, Replace (String pattern), Strip, NFC, NFD, NFKC and NFKD"

// parseNormalizer reads a normalizer (field names where it sits in the
// file); null is no normalizer.
func parseNormalizer(raw json.RawMessage, name, field string) ([]normOp, error) {
	typ, ok, err := stepType(raw, name, field)
	if !ok {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var v struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fieldError(name, field, "%v", err)
		}
		return parseSequence(v.Normalizers, name, field+".normalizers", parseNormalizer)
	case "Prepend":
		var v struct {
			Prepend *string `json:"prepend"`
		}
		if err := json.Unmarshal(raw, &v); err != nil || v.Prepend == nil {
			return nil, fieldError(name, field+".prepend", "missing or not a string")
		}
		return []normOp{{kind: typ, text: *v.Prepend}}, nil
	case "Replace":
		pat, content, err := parseReplace(raw, name, field)
		if err != nil {
			return nil, err
		}
		return []normOp{{kind: typ, text: pat, with: content}}, nil
	case "Strip":
		var v struct {
			Left  bool `json:"strip_left"`
			Right bool `json:"strip_right"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fieldError(name, field, "%v", err)
		}
		return []normOp{{kind: typ, left: v.Left, right: v.Right}}, nil
	case "NFC", "NFD", "NFKC", "NFKD":
		return []normOp{{kind: typ, form: unicodeForms[typ]}}, nil
	}
	return nil, fieldError(name, field+".type", "normalizer %q is not supported; supported: %s", typ, supportedNormalizers)
}

// parseReplace reads a Replace normalizer or decoder: {"pattern":
// {"String": s}, "content": c}. Regex patterns are refused.
func parseReplace(raw json.RawMessage, name, field string) (pattern, content string, err error) {
	var v struct {
		Pattern map[string]string `json:"pattern"`
		Content *string           `json:"content"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", "", fieldError(name, field, "%v", err)
	}
	if v.Content == nil {
		return "", "", fieldError(name, field+".content", "missing")
	}
	if re, ok := v.Pattern["Regex"]; ok {
		return "", "", fieldError(name, field+".pattern", "Regex %q is not supported; only String patterns are", re)
	}
	s, ok := v.Pattern["String"]
	if !ok || s == "" {
		return "", "", fieldError(name, field+".pattern", "expected {\"String\": non-empty text}")
	}
	return s, *v.Content, nil
}

// applyNormalizer runs the normalizer steps on s.
func applyNormalizer(ops []normOp, s string) string {
	for _, op := range ops {
		switch op.kind {
		case "Prepend":
			if s != "" {
				s = op.text + s
			}
		case "Replace":
			s = strings.ReplaceAll(s, op.text, op.with)
		case "Strip":
			if op.left {
				s = strings.TrimLeftFunc(s, unicode.IsSpace)
			}
			if op.right {
				s = strings.TrimRightFunc(s, unicode.IsSpace)
			}
		case "NFC", "NFD", "NFKC", "NFKD":
			s = normalizeUnicode(op.form, s)
		}
	}
	return s
}

// decodeOp is one decoder step.
type decodeOp struct {
	kind        string // "Replace", "ByteFallback", "Fuse", "Strip", "ByteLevel", "Metaspace"
	text, with  string // Replace: pattern text → with
	char        rune   // Strip: content; Metaspace: replacement
	start, stop int    // Strip
	prefix      bool   // Metaspace: prepend_scheme is not "never"
}

const supportedDecoders = "Sequence, Replace (String pattern), ByteFallback, Fuse, Strip, ByteLevel and Metaspace"

// parseDecoder reads a decoder; null is none (tokens are then joined with
// spaces, as Hugging Face does).
func parseDecoder(raw json.RawMessage, name, field string) ([]decodeOp, error) {
	typ, ok, err := stepType(raw, name, field)
	if !ok {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var v struct {
			Decoders []json.RawMessage `json:"decoders"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fieldError(name, field, "%v", err)
		}
		return parseSequence(v.Decoders, name, field+".decoders", parseDecoder)
	case "Replace":
		pat, content, err := parseReplace(raw, name, field)
		if err != nil {
			return nil, err
		}
		return []decodeOp{{kind: typ, text: pat, with: content}}, nil
	case "ByteFallback", "Fuse", "ByteLevel":
		return []decodeOp{{kind: typ}}, nil
	case "Strip":
		var v struct {
			Content *string `json:"content"`
			Start   int     `json:"start"`
			Stop    int     `json:"stop"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fieldError(name, field, "%v", err)
		}
		if v.Content == nil || utf8.RuneCountInString(*v.Content) != 1 {
			return nil, fieldError(name, field+".content", "expected one character")
		}
		if v.Start < 0 || v.Stop < 0 {
			return nil, fieldError(name, field, "start %d and stop %d must not be negative", v.Start, v.Stop)
		}
		r, _ := utf8.DecodeRuneInString(*v.Content)
		return []decodeOp{{kind: typ, char: r, start: v.Start, stop: v.Stop}}, nil
	case "Metaspace":
		var v struct {
			Replacement    *string `json:"replacement"`
			PrependScheme  *string `json:"prepend_scheme"`
			AddPrefixSpace *bool   `json:"add_prefix_space"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fieldError(name, field, "%v", err)
		}
		if v.Replacement == nil || utf8.RuneCountInString(*v.Replacement) != 1 {
			return nil, fieldError(name, field+".replacement", "expected one character")
		}
		r, _ := utf8.DecodeRuneInString(*v.Replacement)
		prefix := true
		switch {
		case v.PrependScheme != nil:
			switch *v.PrependScheme {
			case "always", "first":
			case "never":
				prefix = false
			default:
				return nil, fieldError(name, field+".prepend_scheme", "%q; expected \"always\", \"first\" or \"never\"", *v.PrependScheme)
			}
		case v.AddPrefixSpace != nil:
			prefix = *v.AddPrefixSpace
		}
		return []decodeOp{{kind: typ, char: r, prefix: prefix}}, nil
	}
	return nil, fieldError(name, field+".type", "decoder %q is not supported; supported: %s", typ, supportedDecoders)
}

// checkDecoder refuses a Strip that does not follow a Fuse: Hugging Face
// strips each token then, which a token-at-a-time decoder cannot follow.
func checkDecoder(ops []decodeOp, name string) error {
	fused := false
	for _, op := range ops {
		switch op.kind {
		case "Fuse":
			fused = true
		case "Strip":
			if !fused {
				return fieldError(name, "decoder", "a Strip decoder before any Fuse is not supported (it strips every token)")
			}
		}
	}
	return nil
}

// decodeToken returns the bytes of token id alone through the decoder; first
// says it starts the text (Strip and Metaspace act there). A Strip's stop
// count, which acts at the end of the whole text, is left to decode.
func (h *hfModel) decodeToken(id int, first bool) string {
	if id < 0 || id >= len(h.pieces) {
		return ""
	}
	return h.runDecoder([]string{h.pieces[id]}, first, false)
}

// decode returns the text of ids (none of them skipped) through the
// decoder, the first token as the start of the text. Added tokens go
// through the decoder like the model's own (the tokenizers crate skipped
// the decoder for them in 0.19.1 only, and reverted that in
// huggingface/tokenizers#1569), which matters for Gemma, whose whitespace
// runs "▁▁" are added tokens that its Replace decoder turns into spaces;
// the ByteLevel step alone leaves them as they are (see runDecoder).
func (h *hfModel) decode(ids []int) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id >= 0 && id < len(h.pieces) {
			toks = append(toks, h.pieces[id])
		}
	}
	if len(toks) == 0 {
		return ""
	}
	return h.runDecoder(toks, true, true)
}

// runDecoder applies the decoder steps to toks and joins the result. first
// says toks begin the text; last that they end it (for Strip's stop).
func (h *hfModel) runDecoder(toks []string, first, last bool) string {
	if len(h.decoder) == 0 {
		return strings.Join(toks, " ")
	}
	toks = append([]string(nil), toks...)
	for _, op := range h.decoder {
		switch op.kind {
		case "Replace":
			for i := range toks {
				toks[i] = strings.ReplaceAll(toks[i], op.text, op.with)
			}
		case "ByteFallback":
			for i, tk := range toks {
				if b, ok := bytePiece(tk); ok {
					toks[i] = string([]byte{b})
				}
			}
		case "Fuse":
			toks = []string{strings.Join(toks, "")}
		case "Strip":
			for i := range toks {
				if first {
					toks[i] = stripChar(toks[i], op.char, op.start, true)
				}
				if last {
					toks[i] = stripChar(toks[i], op.char, op.stop, false)
				}
			}
		case "ByteLevel":
			for i, tk := range toks {
				// An added token's text is not in the byte alphabet: it
				// stays as it is (transformers' and the JS library's
				// ByteLevel decoders split the run at added tokens),
				// "<café>" would otherwise become the byte 0xE9.
				if h.addedText[tk] {
					continue
				}
				if b, ok := byteLevelDecode(tk); ok {
					toks[i] = string(b)
				}
			}
		case "Metaspace":
			for i, tk := range toks {
				var sb strings.Builder
				for _, r := range tk {
					switch {
					case r != op.char:
						sb.WriteRune(r)
					case i == 0 && first && op.prefix:
						// Hugging Face drops every replacement character
						// of the text's first token.
					default:
						sb.WriteByte(' ')
					}
				}
				toks[i] = sb.String()
			}
		}
	}
	return strings.Join(toks, "")
}

// stripChar removes up to n copies of c from the start (or end) of s.
func stripChar(s string, c rune, n int, start bool) string {
	for ; n > 0; n-- {
		if start {
			r, size := utf8.DecodeRuneInString(s)
			if size == 0 || r != c {
				break
			}
			s = s[size:]
		} else {
			r, size := utf8.DecodeLastRuneInString(s)
			if size == 0 || r != c {
				break
			}
			s = s[:len(s)-size]
		}
	}
	return s
}

// parsePostProcessor reads the post_processor: TemplateProcessing (its
// single-sequence template gives BOS and EOS), ByteLevel (offsets only: no
// effect on ids), or a Sequence of them.
func parsePostProcessor(raw json.RawMessage, name, field string, h *hfModel) error {
	typ, ok, err := stepType(raw, name, field)
	if !ok {
		return err
	}
	switch typ {
	case "Sequence":
		var v struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return fieldError(name, field, "%v", err)
		}
		for i, p := range v.Processors {
			if err := parsePostProcessor(p, name, fmt.Sprintf("%s.processors[%d]", field, i), h); err != nil {
				return err
			}
		}
		return nil
	case "ByteLevel":
		return nil
	case "TemplateProcessing":
		return parseTemplate(raw, name, field, h)
	}
	return fieldError(name, field+".type", "post-processor %q is not supported; supported: TemplateProcessing, ByteLevel and Sequence", typ)
}

// parseTemplate reads a TemplateProcessing's single template: at most one
// special token before $A (BOS) and at most one after it (EOS).
func parseTemplate(raw json.RawMessage, name, field string, h *hfModel) error {
	type piece struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
		Sequence *struct {
			ID string `json:"id"`
		} `json:"Sequence"`
	}
	var v struct {
		Single        []piece `json:"single"`
		SpecialTokens map[string]struct {
			ID  string `json:"id"`
			IDs []int  `json:"ids"`
		} `json:"special_tokens"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fieldError(name, field, "%v; expected \"single\" as a list of {\"SpecialToken\"} and {\"Sequence\"} objects", err)
	}
	var prefix, suffix []int
	seen := false
	for i, p := range v.Single {
		f := fmt.Sprintf("%s.single[%d]", field, i)
		switch {
		case p.Sequence != nil:
			if p.Sequence.ID != "A" || seen {
				return fieldError(name, f, "sequence %q; expected $A once", p.Sequence.ID)
			}
			seen = true
		case p.SpecialToken != nil:
			st, ok := v.SpecialTokens[p.SpecialToken.ID]
			if !ok {
				return fieldError(name, f, "special token %q is not in %s.special_tokens", p.SpecialToken.ID, field)
			}
			for _, id := range st.IDs {
				if id < 0 || id >= len(h.pieces) {
					return fieldError(name, field+".special_tokens", "%q has id %d, outside the vocabulary of %d", p.SpecialToken.ID, id, len(h.pieces))
				}
			}
			if seen {
				suffix = append(suffix, st.IDs...)
			} else {
				prefix = append(prefix, st.IDs...)
			}
		default:
			return fieldError(name, f, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}")
		}
	}
	if !seen {
		return fieldError(name, field+".single", "has no $A sequence")
	}
	if len(prefix) > 1 || len(suffix) > 1 {
		return fieldError(name, field+".single", "%d token ids before $A and %d after; supported: at most one each (BOS and EOS)", len(prefix), len(suffix))
	}
	h.prefix, h.suffix = prefix, suffix
	return nil
}

// MarshalHF returns the tokenizer as a Hugging Face tokenizer.json in the
// layout the transformers library writes for a LLaMA tokenizer
// (LlamaTokenizerFast converted from SentencePiece, "legacy" form): model
// BPE with byte fallback and fuse_unk, the vocabulary in id order, the
// merges that transformers derives from the pieces' scores (every split of
// a piece into two pieces, best score first, then longer left and right
// parts), normalizer Prepend("▁") + Replace(" ", "▁"), a template adding
// BOS, and the decoder Replace("▁", " "), ByteFallback, Fuse, Strip. The
// unknown, BOS and EOS tokens (and any other control or user-defined
// SentencePiece pieces) are added tokens. Encoding text with the result in
// Hugging Face's tokenizers gives the ids this tokenizer gives, except on
// text that holds "<s>", "</s>" or "<unk>" (split out as special tokens
// there, spelled out by llama2.c) or "▁" (a space there).
//
// It accepts a tokenizer.bin (whose tokens 1 and 2, "\n<s>\n" and
// "\n</s>\n" in llama2.c's export, become "<s>" and "</s>") and a
// tokenizer.model whose normalization the layout can express
// (add_dummy_prefix on, remove_extra_whitespaces off). A tokenizer read
// from a tokenizer.json is returned as it was read.
func (t *Tokenizer) MarshalHF() ([]byte, error) {
	if t.kind == kindHF {
		return append([]byte(nil), t.hf.source...), nil
	}
	fail := func(format string, args ...any) ([]byte, error) {
		return nil, fmt.Errorf("tokenizer: %s: cannot write as tokenizer.json: %s", t.name, fmt.Sprintf(format, args...))
	}
	n := len(t.pieces)
	pieces := make([]string, n)
	special := make([]bool, n)   // added token, special
	userDef := make([]bool, n)   // added token, not special
	scores := make([]float32, n) // as transformers' LlamaConverter takes them
	copy(scores, t.scores)
	unk := "<unk>"
	switch t.kind {
	case kindLlama2c:
		for id, p := range t.pieces {
			switch id {
			case UnknownID:
				pieces[id], special[id] = p, true
				unk = p
			case BOS:
				pieces[id], special[id] = "<s>", true
			case EOS:
				pieces[id], special[id] = "</s>", true
			default:
				if _, ok := bytePiece(p); ok && id >= firstByteID && id < firstByteID+256 {
					pieces[id] = p
				} else {
					pieces[id] = strings.ReplaceAll(p, " ", "▁")
				}
			}
		}
	case kindSentencePiece:
		sp := t.sp
		if !sp.addDummyPrefix || sp.removeExtraSpace || !sp.escapeSpaces {
			return fail("normalizer_spec has add_dummy_prefix %v, remove_extra_whitespaces %v, escape_whitespaces %v; the LLaMA layout needs true, false, true",
				sp.addDummyPrefix, sp.removeExtraSpace, sp.escapeSpaces)
		}
		copy(pieces, sp.pieces)
		for id, typ := range sp.types {
			special[id] = typ == spUnknown || typ == spControl
			userDef[id] = typ == spUserDefined
		}
		unk = sp.pieces[sp.unk]
	}
	// LlamaConverter gives the first three pieces (unknown, BOS, EOS) the
	// score 0.
	for id := 0; id < min(3, n); id++ {
		scores[id] = 0
	}
	vocab := make(map[string]int, n)
	for id, p := range pieces {
		if p == "" {
			return fail("token %d is empty", id)
		}
		if !utf8.ValidString(p) {
			return fail("token %d (%q) is not valid UTF-8", id, p)
		}
		if prev, dup := vocab[p]; dup {
			return fail("tokens %d and %d are both %q", prev, id, p)
		}
		vocab[p] = id
	}
	merges := llamaMerges(pieces, scores, vocab)

	var added []jv
	for id := range pieces {
		if special[id] || userDef[id] {
			added = append(added, jobj(
				"id", jnum(id), "content", jstr(pieces[id]), "single_word", jbool(false),
				"lstrip", jbool(false), "rstrip", jbool(false), "normalized", jbool(false),
				"special", jbool(special[id])))
		}
	}
	post := jv(jnull{})
	if t.bos >= 0 {
		bos := pieces[t.bos]
		tokRef := func(id string, typ int) jv {
			return jobj("SpecialToken", jobj("id", jstr(bos), "type_id", jnum(typ)))
		}
		seq := func(id string, typ int) jv { return jobj("Sequence", jobj("id", jstr(id), "type_id", jnum(typ))) }
		post = jobj("type", jstr("TemplateProcessing"),
			"single", jarr{tokRef(bos, 0), seq("A", 0)},
			"pair", jarr{tokRef(bos, 0), seq("A", 0), tokRef(bos, 1), seq("B", 1)},
			"special_tokens", jobj(bos, jobj("id", jstr(bos), "ids", jarr{jnum(t.bos)}, "tokens", jarr{jstr(bos)})))
	}
	vocabObj := make(jobject, 0, n)
	for id, p := range pieces {
		vocabObj = append(vocabObj, jkv{p, jnum(id)})
	}
	mergeArr := make(jarr, len(merges))
	for i, m := range merges {
		mergeArr[i] = jarr{jstr(m[0]), jstr(m[1])}
	}
	replace := func(from, to string) jv {
		return jobj("type", jstr("Replace"), "pattern", jobj("String", jstr(from)), "content", jstr(to))
	}
	doc := jobj(
		"version", jstr("1.0"),
		"truncation", jnull{},
		"padding", jnull{},
		"added_tokens", jarr(added),
		"normalizer", jobj("type", jstr("Sequence"), "normalizers", jarr{
			jobj("type", jstr("Prepend"), "prepend", jstr("▁")),
			replace(" ", "▁"),
		}),
		"pre_tokenizer", jnull{},
		"post_processor", post,
		"decoder", jobj("type", jstr("Sequence"), "decoders", jarr{
			replace("▁", " "),
			jobj("type", jstr("ByteFallback")),
			jobj("type", jstr("Fuse")),
			jobj("type", jstr("Strip"), "content", jstr(" "), "start", jnum(1), "stop", jnum(0)),
		}),
		"model", jobj(
			"type", jstr("BPE"),
			"dropout", jnull{},
			"unk_token", jstr(unk),
			"continuing_subword_prefix", jnull{},
			"end_of_word_suffix", jnull{},
			"fuse_unk", jbool(true),
			"byte_fallback", jbool(true),
			"ignore_merges", jbool(false),
			"vocab", vocabObj,
			"merges", mergeArr,
		),
	)
	var buf bytes.Buffer
	doc.write(&buf, 0)
	return buf.Bytes(), nil
}

// llamaMerges derives BPE merges from SentencePiece pieces and scores as
// transformers' generate_merges does: for each piece in id order, every
// split into two pieces of the vocabulary (ordered by their ids); then all
// of them sorted, stably, by score, length of the left part and length of
// the right part (in characters), each descending.
func llamaMerges(pieces []string, scores []float32, vocab map[string]int) [][2]string {
	type merge struct {
		l, r       string
		score      float32
		lenL, lenR int
		idL, idR   int
	}
	var all []merge
	for id, p := range pieces {
		var local []merge
		for i := range p {
			if i == 0 {
				continue
			}
			l, r := p[:i], p[i:]
			il, ok1 := vocab[l]
			ir, ok2 := vocab[r]
			if ok1 && ok2 {
				local = append(local, merge{l, r, scores[id], utf8.RuneCountInString(l), utf8.RuneCountInString(r), il, ir})
			}
		}
		sort.SliceStable(local, func(a, b int) bool {
			if local[a].idL != local[b].idL {
				return local[a].idL < local[b].idL
			}
			return local[a].idR < local[b].idR
		})
		all = append(all, local...)
	}
	sort.SliceStable(all, func(a, b int) bool {
		x, y := all[a], all[b]
		if x.score != y.score {
			return x.score > y.score
		}
		if x.lenL != y.lenL {
			return x.lenL > y.lenL
		}
		return x.lenR > y.lenR
	})
	out := make([][2]string, len(all))
	for i, m := range all {
		out[i] = [2]string{m.l, m.r}
	}
	return out
}

// HFFiles returns the files of the tokenizer as a Hugging Face tokenizer,
// by name: "tokenizer.json" (see MarshalHF) and "tokenizer_config.json"
// (LlamaTokenizerFast's settings: BOS added, EOS not, legacy, no clean-up
// of spaces). A model writer puts them beside the weights.
func (t *Tokenizer) HFFiles() (map[string][]byte, error) {
	b, err := t.MarshalHF()
	if err != nil {
		return nil, err
	}
	cfg, err := t.hfConfig()
	if err != nil {
		return nil, err
	}
	return map[string][]byte{"tokenizer.json": b, "tokenizer_config.json": cfg}, nil
}

// WriteHF writes the tokenizer's HFFiles into the folder dir. Each file is
// written atomically; dir and its parents are created if missing.
func (t *Tokenizer) WriteHF(dir string) error {
	files, err := t.HFFiles()
	if err != nil {
		return err
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), files[name]); err != nil {
			return fmt.Errorf("tokenizer: %w", err)
		}
	}
	return nil
}

// hfConfig returns a tokenizer_config.json for WriteHF, in the layout
// transformers writes (keys sorted, two-space indent).
func (t *Tokenizer) hfConfig() ([]byte, error) {
	var v hfFile
	b, err := t.MarshalHF()
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %v", t.name, err)
	}
	content := func(id int) any {
		if id < 0 {
			return nil
		}
		if t.kind == kindHF {
			return t.hf.pieces[id]
		}
		switch {
		case t.kind == kindLlama2c && id == BOS:
			return "<s>"
		case t.kind == kindLlama2c && id == EOS:
			return "</s>"
		}
		return t.pieces[id]
	}
	decoder := map[string]any{}
	unk := any(nil)
	for i, raw := range v.AddedTokens {
		a, err := parseAddedToken(raw, t.name, i)
		if err != nil {
			return nil, err
		}
		decoder[fmt.Sprint(a.ID)] = map[string]any{"content": a.Content, "lstrip": a.Lstrip, "normalized": a.Normalized,
			"rstrip": a.Rstrip, "single_word": a.SingleWord, "special": a.Special}
		if unk == nil && a.Special && a.ID != t.bos && a.ID != t.eos {
			unk = a.Content
		}
	}
	cfg := map[string]any{
		"add_bos_token":                t.bos >= 0,
		"add_eos_token":                false,
		"added_tokens_decoder":         decoder,
		"bos_token":                    content(t.bos),
		"clean_up_tokenization_spaces": false,
		"eos_token":                    content(t.eos),
		"legacy":                       true,
		"model_max_length":             json.Number("1000000000000000019884624838656"),
		"pad_token":                    nil,
		"sp_model_kwargs":              map[string]any{},
		"tokenizer_class":              "LlamaTokenizer",
		"unk_token":                    unk,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %v", t.name, err)
	}
	return buf.Bytes(), nil
}

// jv is a JSON value written in the layout of serde_json's pretty printer,
// which Hugging Face tokenizers uses for tokenizer.json: two-space indent,
// keys in the order given, non-ASCII characters as they are.
type jv interface {
	write(b *bytes.Buffer, indent int)
}

type (
	jnull struct{}
	jbool bool
	jnum  int
	jstr  string
	jarr  []jv
	jkv   struct {
		k string
		v jv
	}
	jobject []jkv
)

// jobj builds an object from alternating keys and values.
func jobj(kv ...any) jobject {
	o := make(jobject, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		o = append(o, jkv{kv[i].(string), kv[i+1].(jv)})
	}
	return o
}

func (jnull) write(b *bytes.Buffer, _ int)   { b.WriteString("null") }
func (v jbool) write(b *bytes.Buffer, _ int) { fmt.Fprint(b, bool(v)) }
func (v jnum) write(b *bytes.Buffer, _ int)  { fmt.Fprint(b, int(v)) }
func (v jstr) write(b *bytes.Buffer, _ int)  { writeJSONString(b, string(v)) }

func newline(b *bytes.Buffer, indent int) {
	b.WriteByte('\n')
	for range indent {
		b.WriteString("  ")
	}
}

func (v jarr) write(b *bytes.Buffer, indent int) {
	if len(v) == 0 {
		b.WriteString("[]")
		return
	}
	b.WriteByte('[')
	for i, e := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		newline(b, indent+1)
		e.write(b, indent+1)
	}
	newline(b, indent)
	b.WriteByte(']')
}

func (v jobject) write(b *bytes.Buffer, indent int) {
	if len(v) == 0 {
		b.WriteString("{}")
		return
	}
	b.WriteByte('{')
	for i, e := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		newline(b, indent+1)
		writeJSONString(b, e.k)
		b.WriteString(": ")
		e.v.write(b, indent+1)
	}
	newline(b, indent)
	b.WriteByte('}')
}

// writeJSONString quotes s as serde_json does: '"', '\\' and control
// characters escaped (\b \t \n \f \r by name, others as \u00xx), everything
// else as it is.
func writeJSONString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if c < 0x20 {
				fmt.Fprintf(b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}
