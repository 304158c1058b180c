package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// hfModel is what a tokenizer.json adds to a Tokenizer: the pipeline of
// Hugging Face's tokenizers (added tokens, normalizer, pre-tokenizer, BPE
// model, decoder).
type hfModel struct {
	bpe        bpeModel
	pieces     []string // token strings by id (model vocabulary and added tokens)
	added      []hfAddedToken
	addedByID  map[int]*hfAddedToken
	raw        *addedMatcher // added tokens matched on the raw text (normalized false)
	normed     *addedMatcher // added tokens matched on normalized text (normalized true)
	normalizer []normOp
	pre        preTokenizer // nil: the whole normalized piece is one word
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

// hfError formats a tokenizer.json error naming the file and the field.
func hfError(name, field, format string, args ...any) error {
	return fmt.Errorf("tokenizer: %s: %s: %s", name, field, fmt.Sprintf(format, args...))
}

// LoadHF reads a Hugging Face tokenizer.json whose model is BPE (the
// LLaMA, Mistral, Llama 3 and GPT-2 families). BOS and EOS come from its
// post_processor template where it has one; otherwise they are guessed
// from its special added tokens ("<s>", "</s>", "<|begin_of_text|>",
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

func parseHF(b []byte, name string) (*Tokenizer, error) {
	var f hfFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: not a valid tokenizer.json: %v", name, err)
	}
	if isNull(f.Model) {
		return nil, hfError(name, "model", "missing; expected an object with \"type\": \"BPE\"")
	}
	typ, err := typeOf(f.Model)
	if err != nil {
		return nil, hfError(name, "model", "%v; expected an object with \"type\": \"BPE\"", err)
	}
	if typ != "BPE" {
		return nil, hfError(name, "model.type", "%q is not supported; only BPE models are (WordPiece, Unigram and WordLevel are not)", typ)
	}
	var m hfBPEModel
	if err := json.Unmarshal(f.Model, &m); err != nil {
		return nil, hfError(name, "model", "%v", err)
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return nil, hfError(name, "model.dropout", "is %v; only null or 0 is supported (dropout makes encoding random)", *m.Dropout)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return nil, hfError(name, "model.continuing_subword_prefix", "is %q; only null or \"\" is supported", *m.ContinuingSubwordPrefix)
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, hfError(name, "model.end_of_word_suffix", "is %q; only null or \"\" is supported", *m.EndOfWordSuffix)
	}
	h := &hfModel{addedByID: map[int]*hfAddedToken{}}
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
			return nil, hfError(name, "model.unk_token", "%q is not in model.vocab", *m.UnkToken)
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
	for i, raw := range f.AddedTokens {
		a, err := parseAddedToken(raw, name, i)
		if err != nil {
			return nil, err
		}
		if p, ok := h.addedByID[a.ID]; ok && p.Content != a.Content {
			return nil, hfError(name, fmt.Sprintf("added_tokens[%d].id", i), "%d is already the added token %q", a.ID, p.Content)
		}
		h.added = append(h.added, a)
		size = max(size, a.ID+1)
	}
	h.pieces = make([]string, size)
	known := make([]bool, size)
	for p, id := range vocab {
		h.pieces[id], known[id] = p, true
	}
	for i := range h.added {
		a := &h.added[i]
		if known[a.ID] && h.pieces[a.ID] != a.Content {
			return nil, hfError(name, "added_tokens", "token %q has id %d, which model.vocab gives to %q", a.Content, a.ID, h.pieces[a.ID])
		}
		h.pieces[a.ID], known[a.ID] = a.Content, true
		h.addedByID[a.ID] = a
	}
	for id, ok := range known {
		if !ok {
			return nil, hfError(name, "model.vocab", "no token has id %d, though ids go up to %d; expected ids 0 to %d without gaps (vocabulary and added_tokens together)", id, size-1, size-1)
		}
	}
	if h.normalizer, err = parseNormalizer(f.Normalizer, name, "normalizer"); err != nil {
		return nil, err
	}
	if h.pre, err = parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: pre_tokenizer: %w", name, err)
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

// parseVocab reads model.vocab, an object from token to id.
func parseVocab(raw json.RawMessage, name string) (map[string]int, error) {
	if isNull(raw) {
		return nil, hfError(name, "model.vocab", "missing; expected an object from token to id")
	}
	var v map[string]int
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, hfError(name, "model.vocab", "%v; expected an object from token to id", err)
	}
	if len(v) == 0 {
		return nil, hfError(name, "model.vocab", "is empty")
	}
	byID := make(map[int]string, len(v))
	for p, id := range v {
		if id < 0 || id >= 1<<24 {
			return nil, hfError(name, "model.vocab", "token %q has id %d; expected 0 to %d", p, id, 1<<24-1)
		}
		if q, dup := byID[id]; dup {
			a, b := min(p, q), max(p, q)
			return nil, hfError(name, "model.vocab", "tokens %q and %q share id %d", a, b, id)
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
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return hfError(name, "model.merges", "%v; expected an array", err)
	}
	for rank, e := range list {
		var a, b string
		var s string
		var pair []string
		if err := json.Unmarshal(e, &s); err == nil {
			parts := strings.Split(s, " ")
			if len(parts) != 2 {
				return hfError(name, fmt.Sprintf("model.merges[%d]", rank), "%q; expected two tokens separated by one space", s)
			}
			a, b = parts[0], parts[1]
		} else if err := json.Unmarshal(e, &pair); err == nil && len(pair) == 2 {
			a, b = pair[0], pair[1]
		} else {
			return hfError(name, fmt.Sprintf("model.merges[%d]", rank), "%s; expected \"left right\" or [\"left\", \"right\"]", truncate(string(e), 60))
		}
		la, ok1 := m.vocab[a]
		lb, ok2 := m.vocab[b]
		merged, ok3 := m.vocab[a+b]
		switch {
		case !ok1:
			return hfError(name, fmt.Sprintf("model.merges[%d]", rank), "%q is not in model.vocab", a)
		case !ok2:
			return hfError(name, fmt.Sprintf("model.merges[%d]", rank), "%q is not in model.vocab", b)
		case !ok3:
			return hfError(name, fmt.Sprintf("model.merges[%d]", rank), "the merged token %q is not in model.vocab", a+b)
		}
		// A repeated pair keeps its last rank, as in Hugging Face.
		m.merges[pairKey(la, lb)] = bpeMerge{rank: rank, id: merged}
	}
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
		return hfAddedToken{}, hfError(name, field, "%v", err)
	}
	if v.ID == nil || *v.ID < 0 || *v.ID >= 1<<24 {
		return hfAddedToken{}, hfError(name, field+".id", "missing or out of range; expected 0 to %d", 1<<24-1)
	}
	if v.Content == nil || *v.Content == "" {
		return hfAddedToken{}, hfError(name, field+".content", "missing or empty")
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
// and rstrip tokens take the whitespace beside them.
type addedMatcher struct {
	// byFirst lists the patterns by their first byte, longest first.
	byFirst [256][]addedPattern
	any     bool
}

type addedPattern struct {
	text  string
	token *hfAddedToken
}

// newAddedMatcher indexes tokens; norm, if not nil, maps each content to
// the pattern searched for (normalized tokens are matched as normalized).
func newAddedMatcher(tokens []*hfAddedToken, norm func(string) string) *addedMatcher {
	m := &addedMatcher{}
	for _, a := range tokens {
		p := a.Content
		if norm != nil {
			p = norm(p)
		}
		if p == "" {
			continue
		}
		m.byFirst[p[0]] = append(m.byFirst[p[0]], addedPattern{p, a})
		m.any = true
	}
	for i := range m.byFirst {
		l := m.byFirst[i]
		sort.SliceStable(l, func(a, b int) bool { return len(l[a].text) > len(l[b].text) })
	}
	return m
}

// next returns the leftmost-longest match at or after i, or ok false.
func (m *addedMatcher) next(s string, i int) (start int, p addedPattern, ok bool) {
	for ; i < len(s); i++ {
		for _, q := range m.byFirst[s[i]] {
			if strings.HasPrefix(s[i:], q.text) {
				return i, q, true
			}
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

// isWordChar is the regex \w of Hugging Face's single_word check.
func isWordChar(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) ||
		unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Pc, r)
}

func endsWithWord(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && isWordChar(r)
}

func startsWithWord(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && isWordChar(r)
}

// normOp is one normalizer step.
type normOp struct {
	kind        string // "Prepend", "Replace", "Strip"
	text, with  string // Prepend: text; Replace: pattern text → with
	left, right bool   // Strip: which ends
}

// supportedNormalizers names what parseNormalizer accepts, for errors.
const supportedNormalizers = "Sequence, Prepend, Replace (String pattern) and Strip"

// parseNormalizer reads a normalizer (field names where it sits in the
// file); null is no normalizer.
func parseNormalizer(raw json.RawMessage, name, field string) ([]normOp, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, err := typeOf(raw)
	if err != nil {
		return nil, hfError(name, field, "%v", err)
	}
	switch typ {
	case "Sequence":
		var v struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, hfError(name, field, "%v", err)
		}
		var ops []normOp
		for i, n := range v.Normalizers {
			sub, err := parseNormalizer(n, name, fmt.Sprintf("%s.normalizers[%d]", field, i))
			if err != nil {
				return nil, err
			}
			ops = append(ops, sub...)
		}
		return ops, nil
	case "Prepend":
		var v struct {
			Prepend *string `json:"prepend"`
		}
		if err := json.Unmarshal(raw, &v); err != nil || v.Prepend == nil {
			return nil, hfError(name, field+".prepend", "missing or not a string")
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
			return nil, hfError(name, field, "%v", err)
		}
		return []normOp{{kind: typ, left: v.Left, right: v.Right}}, nil
	}
	return nil, hfError(name, field+".type", "normalizer %q is not supported; supported: %s", typ, supportedNormalizers)
}

// parseReplace reads a Replace normalizer or decoder: {"pattern":
// {"String": s}, "content": c}. Regex patterns are refused.
func parseReplace(raw json.RawMessage, name, field string) (pattern, content string, err error) {
	var v struct {
		Pattern map[string]string `json:"pattern"`
		Content *string           `json:"content"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", "", hfError(name, field, "%v", err)
	}
	if v.Content == nil {
		return "", "", hfError(name, field+".content", "missing")
	}
	if re, ok := v.Pattern["Regex"]; ok {
		return "", "", hfError(name, field+".pattern", "Regex %q is not supported; only String patterns are", re)
	}
	s, ok := v.Pattern["String"]
	if !ok || s == "" {
		return "", "", hfError(name, field+".pattern", "expected {\"String\": non-empty text}")
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
	if isNull(raw) {
		return nil, nil
	}
	typ, err := typeOf(raw)
	if err != nil {
		return nil, hfError(name, field, "%v", err)
	}
	switch typ {
	case "Sequence":
		var v struct {
			Decoders []json.RawMessage `json:"decoders"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, hfError(name, field, "%v", err)
		}
		var ops []decodeOp
		for i, d := range v.Decoders {
			sub, err := parseDecoder(d, name, fmt.Sprintf("%s.decoders[%d]", field, i))
			if err != nil {
				return nil, err
			}
			ops = append(ops, sub...)
		}
		return ops, nil
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
			return nil, hfError(name, field, "%v", err)
		}
		if v.Content == nil || utf8.RuneCountInString(*v.Content) != 1 {
			return nil, hfError(name, field+".content", "expected one character")
		}
		if v.Start < 0 || v.Stop < 0 {
			return nil, hfError(name, field, "start %d and stop %d must not be negative", v.Start, v.Stop)
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
			return nil, hfError(name, field, "%v", err)
		}
		if v.Replacement == nil || utf8.RuneCountInString(*v.Replacement) != 1 {
			return nil, hfError(name, field+".replacement", "expected one character")
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
				return nil, hfError(name, field+".prepend_scheme", "%q; expected \"always\", \"first\" or \"never\"", *v.PrependScheme)
			}
		case v.AddPrefixSpace != nil:
			prefix = *v.AddPrefixSpace
		}
		return []decodeOp{{kind: typ, char: r, prefix: prefix}}, nil
	}
	return nil, hfError(name, field+".type", "decoder %q is not supported; supported: %s", typ, supportedDecoders)
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
				return hfError(name, "decoder", "a Strip decoder before any Fuse is not supported (it strips every token)")
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
	if _, ok := h.addedByID[id]; ok {
		return h.pieces[id]
	}
	s := h.runDecoder([]string{h.pieces[id]}, first, false)
	return s
}

// decode returns the text of ids (none of them skipped): added tokens as
// their content, runs of model tokens through the decoder, the first token
// of the text as the start.
func (h *hfModel) decode(ids []int) string {
	var sb strings.Builder
	var run []string
	flush := func() {
		if len(run) > 0 {
			sb.WriteString(h.runDecoder(run, sb.Len() == 0, true))
			run = run[:0]
		}
	}
	for _, id := range ids {
		if id < 0 || id >= len(h.pieces) {
			continue
		}
		if _, ok := h.addedByID[id]; ok {
			flush()
			sb.WriteString(h.pieces[id])
			continue
		}
		run = append(run, h.pieces[id])
	}
	flush()
	return sb.String()
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
	if isNull(raw) {
		return nil
	}
	typ, err := typeOf(raw)
	if err != nil {
		return hfError(name, field, "%v", err)
	}
	switch typ {
	case "Sequence":
		var v struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return hfError(name, field, "%v", err)
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
	return hfError(name, field+".type", "post-processor %q is not supported; supported: TemplateProcessing, ByteLevel and Sequence", typ)
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
		return hfError(name, field, "%v; expected \"single\" as a list of {\"SpecialToken\"} and {\"Sequence\"} objects", err)
	}
	var prefix, suffix []int
	seen := false
	for i, p := range v.Single {
		f := fmt.Sprintf("%s.single[%d]", field, i)
		switch {
		case p.Sequence != nil:
			if p.Sequence.ID != "A" || seen {
				return hfError(name, f, "sequence %q; expected $A once", p.Sequence.ID)
			}
			seen = true
		case p.SpecialToken != nil:
			st, ok := v.SpecialTokens[p.SpecialToken.ID]
			if !ok {
				return hfError(name, f, "special token %q is not in %s.special_tokens", p.SpecialToken.ID, field)
			}
			for _, id := range st.IDs {
				if id < 0 || id >= len(h.pieces) {
					return hfError(name, field+".special_tokens", "%q has id %d, outside the vocabulary of %d", p.SpecialToken.ID, id, len(h.pieces))
				}
			}
			if seen {
				suffix = append(suffix, st.IDs...)
			} else {
				prefix = append(prefix, st.IDs...)
			}
		default:
			return hfError(name, f, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}")
		}
	}
	if !seen {
		return hfError(name, field+".single", "has no $A sequence")
	}
	if len(prefix) > 1 || len(suffix) > 1 {
		return hfError(name, field+".single", "%d token ids before $A and %d after; supported: at most one each (BOS and EOS)", len(prefix), len(suffix))
	}
	h.prefix, h.suffix = prefix, suffix
	return nil
}
