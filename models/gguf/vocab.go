package gguf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/sora-go/sora/models/tokenizer"
)

// llama.cpp's token types (its enum llama_token_type), which
// tokenizer.ggml.token_type holds one of per token.
const (
	tokenNormal      = 1
	tokenUnknown     = 2
	tokenControl     = 3
	tokenUserDefined = 4
	tokenUnused      = 5
	tokenByte        = 6
)

// The tokenizer.ggml.model values: SentencePiece-style BPE scored per
// token ("llama") and byte-level BPE with ranked merges ("gpt2").
const (
	vocabSPM = "llama"
	vocabBPE = "gpt2"
)

// vocab is a tokenizer as llama.cpp's GGUF metadata describes it.
type vocab struct {
	model  string // vocabSPM or vocabBPE
	pre    string // tokenizer.ggml.pre (BPE only)
	tokens []string
	types  []int32
	scores []float32 // SPM only
	merges []string  // BPE only, "left right"
	// The special ids, -1 where there is none.
	bos, eos, unk, pad, eot, eom int
	addBOS, addEOS               bool
	addSpacePrefix               bool // SPM only
	notes                        []string
}

// eogTexts are the token texts llama.cpp takes for end of generation
// whatever the metadata says (llama_vocab::impl::load's list; "</s>" too
// in the version the tests run).
var eogTexts = map[string]bool{
	"<|eot_id|>": true, "<|im_end|>": true, "<|end|>": true, "<|return|>": true, "<|call|>": true,
	"<end_of_turn>": true, "<|endoftext|>": true, "<|eom_id|>": true, "<EOT>": true, "_<EOT>": true,
	"<｜end▁of▁sentence｜>": true, "<end_of_utterance>": true, "<|end_of_text|>": true, "</s>": true,
}

// controlLooking are token texts llama.cpp makes control tokens whatever
// their type in the file: its end-of-generation and fill-in-the-middle
// tokens, found by their text.
func controlLooking(text string) bool {
	switch text {
	case "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "▁<PRE>", "<|code_prefix|>",
		"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "▁<SUF>", "<|code_suffix|>",
		"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "▁<MID>", "<|code_middle|>",
		"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>":
		return true
	}
	return eogTexts[text]
}

// newVocab describes tok for a model whose embedding has vocabSize rows.
// padToken is the padding token's text ("" for none). It refuses a
// tokenizer llama.cpp would tokenize differently, saying why.
func newVocab(tok *tokenizer.Tokenizer, vocabSize int, padToken string) (*vocab, error) {
	if err := tok.CheckVocab(vocabSize); err != nil {
		return nil, err
	}
	var v *vocab
	var err error
	switch {
	case !tok.HuggingFace():
		v, err = llama2cVocab(tok)
	default:
		var raw []byte
		if raw, err = tok.MarshalHF(); err != nil {
			return nil, err
		}
		v, err = hfVocab(tok, raw)
	}
	if err != nil {
		return nil, err
	}
	if err := v.fit(vocabSize); err != nil {
		return nil, fmt.Errorf("gguf: tokenizer %s: %w", tok.Name(), err)
	}
	v.bos, v.eos = tok.BOS(), tok.EOS()
	v.addBOS = v.bos >= 0
	if v.bos >= vocabSize || v.eos >= vocabSize {
		return nil, fmt.Errorf("gguf: tokenizer %s: BOS %d or EOS %d lies past the model's %d tokens", tok.Name(), v.bos, v.eos, vocabSize)
	}
	if padToken != "" {
		id, ok := tok.Lookup(padToken)
		if !ok || id >= vocabSize {
			return nil, fmt.Errorf("gguf: tokenizer %s has no padding token %q among the model's %d tokens", tok.Name(), padToken, vocabSize)
		}
		v.pad = id
	}
	// llama.cpp ends a generation at EOS and at the tokens of eogTexts;
	// other ids that end this model's generations (generation_config's
	// eos_token_id list) go in as its EOT and EOM.
	var extra []int
	for _, id := range tok.Stops() {
		if id != v.eos && id < len(v.tokens) && !eogTexts[v.tokens[id]] {
			extra = append(extra, id)
		}
	}
	if len(extra) > 0 {
		v.eot = extra[0]
	}
	if len(extra) > 1 {
		v.eom = extra[1]
	}
	if len(extra) > 2 {
		v.notes = append(v.notes, fmt.Sprintf("the tokenizer ends generations at %d more tokens (%v) than llama.cpp's metadata can name; llama.cpp will not stop at them", len(extra)-2, extra[2:]))
	}
	var retyped []string
	for id, text := range v.tokens {
		if v.types[id] == tokenNormal && controlLooking(text) {
			retyped = append(retyped, strconvQuote(text))
		}
	}
	if len(retyped) > 0 {
		v.notes = append(v.notes, fmt.Sprintf("%s: llama.cpp makes the ordinary vocabulary tokens %s control tokens by their text (and ends generations at those it takes for an end): texts that spell them out tokenize differently there", noteControlLooking, strings.Join(retyped, ", ")))
	}
	return v, nil
}

// fit makes the token list as long as the embedding: ids the tokenizer
// lacks become "[PADn]" tokens of type unused, as llama.cpp's converter
// pads them; special tokens past the embedding (Gemma 3's
// <image_soft_token>, which CheckVocab allowed) are dropped. Token texts
// must be unique, as llama.cpp maps text to id.
func (v *vocab) fit(n int) error {
	if len(v.tokens) > n {
		v.notes = append(v.notes, fmt.Sprintf("the tokenizer's %d tokens past the embedding's %d rows (special tokens only the multimodal model embeds) are left out", len(v.tokens)-n, n))
		v.tokens, v.types = v.tokens[:n], v.types[:n]
		if v.scores != nil {
			v.scores = v.scores[:n]
		}
	}
	for len(v.tokens) < n {
		v.tokens = append(v.tokens, fmt.Sprintf("[PAD%d]", len(v.tokens)))
		v.types = append(v.types, tokenUnused)
		if v.model == vocabSPM {
			v.scores = append(v.scores, 0)
		}
	}
	seen := make(map[string]int, n)
	for id, t := range v.tokens {
		if t == "" {
			return fmt.Errorf("token %d is empty, which llama.cpp renames", id)
		}
		if prev, dup := seen[t]; dup {
			return fmt.Errorf("tokens %d and %d are both %q, which llama.cpp cannot tell apart", prev, id, t)
		}
		seen[t] = id
	}
	return nil
}

// Notes on known tokenization differences begin with these phrases (tests
// find them by it).
const (
	noteControlLooking = "control-looking tokens"
	noteMetaspace      = "Metaspace"
	noteNFC            = "NFC"
	noteMarks          = "combining marks"
)

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

// llama2cVocab describes a llama2.c tokenizer.bin as llama.cpp's
// SentencePiece tokenizer, which encodes as llama2.c does (a leading space,
// characters merged by best score, bytes for the rest): spaces are "▁"
// there, tokens 1 and 2 are <s> and </s>, and 3..258 the byte tokens.
func llama2cVocab(tok *tokenizer.Tokenizer) (*vocab, error) {
	n := tok.VocabSize()
	v := &vocab{model: vocabSPM, unk: tokenizer.UnknownID, pad: -1, eot: -1, eom: -1, addSpacePrefix: true,
		tokens: make([]string, n), types: make([]int32, n), scores: make([]float32, n)}
	for id := range n {
		p := tok.Piece(id)
		v.scores[id] = tok.Score(id)
		switch {
		case id == tokenizer.UnknownID:
			v.tokens[id], v.types[id] = p, tokenUnknown
		case id == tokenizer.BOS:
			v.tokens[id], v.types[id] = "<s>", tokenControl
		case id == tokenizer.EOS:
			v.tokens[id], v.types[id] = "</s>", tokenControl
		case id >= 3 && id < 3+256 && isBytePiece(p):
			v.tokens[id], v.types[id] = p, tokenByte
		default:
			v.tokens[id], v.types[id] = strings.ReplaceAll(p, " ", "▁"), tokenNormal
		}
	}
	return v, nil
}

// isBytePiece reports whether p is a byte-fallback piece "<0xXX>".
func isBytePiece(p string) bool {
	if len(p) != 6 || !strings.HasPrefix(p, "<0x") || p[5] != '>' {
		return false
	}
	for _, c := range p[3:5] {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// tokenizerJSON is the part of a tokenizer.json that the export reads.
type tokenizerJSON struct {
	AddedTokens []struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		Special    bool   `json:"special"`
		Normalized bool   `json:"normalized"`
		Lstrip     bool   `json:"lstrip"`
		Rstrip     bool   `json:"rstrip"`
		SingleWord bool   `json:"single_word"`
	} `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Model         struct {
		Type                    string          `json:"type"`
		UnkToken                *string         `json:"unk_token"`
		ByteFallback            bool            `json:"byte_fallback"`
		IgnoreMerges            bool            `json:"ignore_merges"`
		ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
		Vocab                   map[string]int  `json:"vocab"`
		Merges                  json.RawMessage `json:"merges"`
	} `json:"model"`
}

// step is one normalizer or pre-tokenizer object, with the fields the
// export compares.
type step struct {
	Type           string            `json:"type"`
	Normalizers    []json.RawMessage `json:"normalizers"`
	Pretokenizers  []json.RawMessage `json:"pretokenizers"`
	Prepend        string            `json:"prepend"`
	Content        string            `json:"content"`
	Replacement    string            `json:"replacement"`
	PrependScheme  string            `json:"prepend_scheme"`
	AddPrefixSpace *bool             `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
	Individual     bool              `json:"individual_digits"`
	Behavior       string            `json:"behavior"`
	Invert         bool              `json:"invert"`
	Pattern        struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	} `json:"pattern"`
}

// steps returns raw as a list of steps: a Sequence's members (normalizers
// or pre-tokenizers), a single step, or none for null.
func steps(raw json.RawMessage) ([]step, error) {
	if s := bytes.TrimSpace(raw); len(s) == 0 || string(s) == "null" {
		return nil, nil
	}
	var s step
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	if s.Type != "Sequence" {
		return []step{s}, nil
	}
	var out []step
	for _, m := range append(s.Normalizers, s.Pretokenizers...) {
		inner, err := steps(m)
		if err != nil {
			return nil, err
		}
		out = append(out, inner...)
	}
	return out, nil
}

func describe(ss []step) string {
	if len(ss) == 0 {
		return "none"
	}
	var names []string
	for _, s := range ss {
		names = append(names, s.Type)
	}
	return strings.Join(names, "+")
}

// The Split regexes of the byte-level tokenizers llama.cpp knows, by the
// pre-tokenizer name it gives them, with whether it ignores merges for
// them (a word that is a token stays whole).
var bpeRegexes = []struct {
	regex, pre   string
	ignoreMerges bool
}{
	{`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, "llama-bpe", true},
	{`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, "qwen2", false},
	{`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`, "tekken", true},
}

// hfVocab describes a Hugging Face BPE tokenizer (raw is its
// tokenizer.json): SentencePiece-style (byte fallback, "▁" for spaces:
// Llama 2, Mistral v0.1, Gemma) as llama.cpp's "llama" tokenizer, and
// byte-level (Llama 3, Qwen2/3, GPT-2, Mistral Nemo's Tekken, SmolLM) as its
// "gpt2" tokenizer with the pre-tokenizer that splits text as the file's
// does. Anything else is refused.
func hfVocab(tok *tokenizer.Tokenizer, raw []byte) (*vocab, error) {
	name := tok.Name()
	fail := func(format string, args ...any) (*vocab, error) {
		return nil, fmt.Errorf("gguf: tokenizer %s cannot be written for llama.cpp: %s", name, fmt.Sprintf(format, args...))
	}
	var j tokenizerJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return fail("%v", err)
	}
	m := j.Model
	if m.Type != "BPE" {
		return fail("model type %q; only BPE tokenizers are exported", m.Type)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" || m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return fail("BPE with a continuing-subword prefix or end-of-word suffix, which llama.cpp's tokenizers do not have")
	}
	norms, err := steps(j.Normalizer)
	if err != nil {
		return fail("normalizer: %v", err)
	}
	pres, err := steps(j.PreTokenizer)
	if err != nil {
		return fail("pre_tokenizer: %v", err)
	}
	merges, err := parseMerges(j.Model.Merges)
	if err != nil {
		return fail("model.merges: %v", err)
	}
	// Tokens by id: the vocabulary, then the added tokens (which may
	// repeat a vocabulary entry's id).
	n := tok.VocabSize()
	v := &vocab{unk: -1, pad: -1, eot: -1, eom: -1, tokens: make([]string, n), types: make([]int32, n)}
	for p, id := range m.Vocab {
		if id < 0 || id >= n {
			return fail("vocabulary token %q has id %d outside 0..%d", p, id, n-1)
		}
		v.tokens[id], v.types[id] = p, tokenNormal
	}
	byteLevel := false
	for _, s := range pres {
		byteLevel = byteLevel || s.Type == "ByteLevel"
	}
	spm := m.ByteFallback && !byteLevel
	// Where spaces become "▁" before added tokens are matched
	// (normalized: true), llama.cpp, which matches them in the raw text,
	// needs them with spaces.
	spaceToMeta := false
	for _, s := range norms {
		spaceToMeta = spaceToMeta || s.Type == "Replace" && s.Pattern.String != nil && *s.Pattern.String == " " && s.Content == "▁"
	}
	var stripped []string
	for _, a := range j.AddedTokens {
		if a.ID < 0 || a.ID >= n {
			return fail("added token %q has id %d outside 0..%d", a.Content, a.ID, n-1)
		}
		if a.Lstrip || a.Rstrip || a.SingleWord {
			stripped = append(stripped, a.Content)
		}
		text, typ := a.Content, int32(tokenUserDefined)
		if a.Special {
			typ = tokenControl
		} else if a.Normalized && spaceToMeta {
			text = strings.ReplaceAll(text, "▁", " ")
		}
		v.tokens[a.ID], v.types[a.ID] = text, typ
	}
	for id := range v.tokens {
		if v.types[id] == 0 {
			// An id neither file names: padded as the converter pads.
			v.tokens[id], v.types[id] = fmt.Sprintf("[PAD%d]", id), tokenUnused
		}
	}
	if len(stripped) > 0 {
		v.notes = append(v.notes, fmt.Sprintf("llama.cpp ignores the lstrip, rstrip and single_word flags of %d added tokens (%s): texts that hold them next to spaces may tokenize differently there", len(stripped), abbreviate(stripped, 4)))
	}
	v.addEOS = templateAddsEOS(j.PostProcessor)
	if spm {
		err = v.spm(j, norms, pres, merges, tok)
	} else {
		err = v.bpe(j, norms, pres, merges)
	}
	if err != nil {
		return fail("%v", err)
	}
	return v, nil
}

// spm fills in a SentencePiece-style tokenizer: byte pieces typed as bytes,
// the unknown token, whether a space is prepended, and per-token scores that
// make llama.cpp's merge order (highest score of the merged token first,
// leftmost on ties) the file's merge ranks. A tokenizer.model keeps its own
// scores, which are what those ranks were derived from.
func (v *vocab) spm(j tokenizerJSON, norms, pres []step, merges [][2]string, tok *tokenizer.Tokenizer) error {
	v.model = vocabSPM
	// The text's spaces must become "▁" (a Replace normalizer, or a
	// Metaspace pre-tokenizer), with "▁" prepended (the normalizer
	// Prepend, Metaspace's prepend scheme) or not; nothing else may
	// change the text, and nothing may split it except on the spaces
	// that are gone by then (Gemma's Split on " ").
	replace, prepend := false, false
	for _, s := range norms {
		switch {
		case s.Type == "Replace" && s.Pattern.String != nil && *s.Pattern.String == " " && s.Content == "▁":
			replace = true
		case s.Type == "Prepend" && s.Prepend == "▁":
			prepend = true
		default:
			return fmt.Errorf("SentencePiece-style tokenizer with normalizer %s, which llama.cpp does not apply", describe(norms))
		}
	}
	for _, s := range pres {
		switch {
		case s.Type == "Metaspace" && s.Replacement == "▁" && !replace:
			replace = true
			scheme := s.PrependScheme
			if scheme == "" && s.AddPrefixSpace != nil && !*s.AddPrefixSpace {
				// Files older than prepend_scheme say add_prefix_space;
				// false means never, as the tokenizer package reads it.
				scheme = "never"
			}
			switch scheme {
			case "always", "", "first":
				prepend = true
				v.notes = append(v.notes, fmt.Sprintf("%s: the tokenizer (a Metaspace pre-tokenizer, prepend_scheme %q) prepends \"▁\" only where the text does not start with a space or \"▁\", and (scheme \"first\") not after special tokens; llama.cpp prepends a space to every text and after every special token: texts that start with a space or \"▁\", or hold special tokens, tokenize differently there", noteMetaspace, scheme))
			case "never":
			default:
				return fmt.Errorf("Metaspace prepend_scheme %q", scheme)
			}
		case s.Type == "Split" && s.Pattern.String != nil && *s.Pattern.String == " " && replace:
			// Splits at spaces the normalizer has already replaced.
		default:
			return fmt.Errorf("SentencePiece-style tokenizer with pre-tokenizer %s, which llama.cpp does not apply", describe(pres))
		}
	}
	if !replace {
		return fmt.Errorf("byte-fallback BPE that keeps spaces as they are (normalizer %s, pre-tokenizer %s); llama.cpp's SentencePiece tokenizer writes them as \"▁\"", describe(norms), describe(pres))
	}
	v.addSpacePrefix = prepend
	if j.Model.UnkToken != nil {
		if id, ok := j.Model.Vocab[*j.Model.UnkToken]; ok {
			v.unk = id
			if v.types[id] == tokenNormal || v.types[id] == tokenControl {
				v.types[id] = tokenUnknown
			}
		}
	}
	for id, t := range v.tokens {
		if v.types[id] == tokenNormal && isBytePiece(t) {
			v.types[id] = tokenByte
		}
	}
	v.scores = make([]float32, len(v.tokens))
	if strings.HasSuffix(strings.ToLower(tok.Name()), ".model") {
		for id := range v.scores {
			v.scores[id] = tok.Score(id)
		}
		return nil
	}
	// A tokenizer.json keeps ranked merges, not scores. llama.cpp merges
	// the adjacent pair whose concatenation is a token of the highest
	// score; with each merged token scored by minus the rank of the first
	// merge that makes it, that is the pair of the lowest rank, as
	// Hugging Face's BPE merges, for merges listing every split of a
	// token into two tokens (as those converted from SentencePiece do).
	// Tokens no merge makes keep 0, above every merge; merging never
	// reaches them except as whole pieces already.
	made := make([]bool, len(v.tokens))
	for rank, mg := range merges {
		id, ok := j.Model.Vocab[mg[0]+mg[1]]
		if !ok || made[id] {
			continue
		}
		made[id] = true
		v.scores[id] = -float32(rank + 1)
		if float32(rank+1) > 1<<24 {
			return fmt.Errorf("%d merges: ranks past 2^24 do not fit a float32 score exactly", len(merges))
		}
	}
	var unmade int
	for id := range v.tokens {
		if !made[id] && v.types[id] == tokenNormal && utf8.RuneCountInString(v.tokens[id]) > 1 {
			unmade++
		}
	}
	if unmade > 0 {
		v.notes = append(v.notes, fmt.Sprintf("%d multi-character tokens are made by no merge; llama.cpp's scored merging can reach them where Hugging Face's never does", unmade))
	}
	return nil
}

// bpe fills in a byte-level tokenizer: the pre-tokenizer name and the
// merges.
func (v *vocab) bpe(j tokenizerJSON, norms, pres []step, merges [][2]string) error {
	v.model = vocabBPE
	if j.Model.ByteFallback {
		return fmt.Errorf("byte-level BPE with byte fallback, which llama.cpp's BPE tokenizer lacks")
	}
	for _, s := range norms {
		if s.Type != "NFC" {
			return fmt.Errorf("byte-level BPE with normalizer %s, which llama.cpp does not apply", describe(norms))
		}
	}
	pre, ignoreMerges := "", false
	bl := func(s step, regex bool) bool {
		return s.Type == "ByteLevel" && (s.AddPrefixSpace == nil || !*s.AddPrefixSpace) && (s.UseRegex == nil || *s.UseRegex == regex)
	}
	switch {
	case len(pres) == 1 && bl(pres[0], true):
		pre = "gpt-2"
	case len(pres) == 2 && pres[0].Type == "Digits" && pres[0].Individual && bl(pres[1], true):
		pre = "smollm"
	case len(pres) == 2 && pres[0].Type == "Split" && pres[0].Pattern.Regex != nil && pres[0].Behavior == "Isolated" && !pres[0].Invert && bl(pres[1], false):
		for _, r := range bpeRegexes {
			if *pres[0].Pattern.Regex == r.regex {
				pre, ignoreMerges = r.pre, r.ignoreMerges
			}
		}
		if pre == "" {
			return fmt.Errorf("byte-level BPE splitting with the regex %q, which is none of the pre-tokenizers llama.cpp knows (llama-bpe, qwen2, tekken)", *pres[0].Pattern.Regex)
		}
	default:
		return fmt.Errorf("byte-level BPE with pre-tokenizer %s, which is none of llama.cpp's (gpt-2, smollm, llama-bpe, qwen2, tekken)", describe(pres))
	}
	if len(norms) > 0 {
		if pre != "qwen2" {
			return fmt.Errorf("byte-level BPE with normalizer %s, which llama.cpp does not apply", describe(norms))
		}
		v.notes = append(v.notes, noteNFC+": the tokenizer normalizes text to NFC, which llama.cpp does not: text in other normal forms tokenizes differently there")
	}
	if pre == "tekken" {
		v.notes = append(v.notes, noteMarks+": llama.cpp's tekken pre-tokenizer splits words holding combining marks (Unicode category M: Indic vowel signs, Thai vowels, accents written apart) differently from the tokenizer's regex: such texts may tokenize differently there")
	}
	if j.Model.IgnoreMerges != ignoreMerges {
		return fmt.Errorf("byte-level BPE with ignore_merges %v under pre-tokenizer %q, for which llama.cpp sets it %v", j.Model.IgnoreMerges, pre, ignoreMerges)
	}
	v.pre = pre
	v.merges = make([]string, len(merges))
	for i, mg := range merges {
		if strings.Contains(mg[0], " ") || strings.Contains(mg[1], " ") || mg[0] == "" || mg[1] == "" {
			return fmt.Errorf("merge %d (%q, %q) has an empty side or a space, which llama.cpp's \"a b\" merges cannot hold", i, mg[0], mg[1])
		}
		v.merges[i] = mg[0] + " " + mg[1]
	}
	return nil
}

// parseMerges reads BPE merges written as "a b" strings or ["a", "b"]
// pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if s := bytes.TrimSpace(raw); len(s) == 0 || string(s) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	out := make([][2]string, len(items))
	for i, it := range items {
		var s string
		if err := json.Unmarshal(it, &s); err == nil {
			a, b, ok := strings.Cut(s, " ")
			if !ok {
				return nil, fmt.Errorf("merge %d %q has no space", i, s)
			}
			out[i] = [2]string{a, b}
			continue
		}
		var pair []string
		if err := json.Unmarshal(it, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("merge %d is neither \"a b\" nor [\"a\", \"b\"]", i)
		}
		out[i] = [2]string{pair[0], pair[1]}
	}
	return out, nil
}

// templateAddsEOS reports whether a post_processor's TemplateProcessing
// puts a special token after the text (an EOS added to every encoding).
func templateAddsEOS(raw json.RawMessage) bool {
	var p struct {
		Type       string            `json:"type"`
		Processors []json.RawMessage `json:"processors"`
		Single     []struct {
			SpecialToken *struct{} `json:"SpecialToken"`
			Sequence     *struct{} `json:"Sequence"`
		} `json:"single"`
	}
	if json.Unmarshal(raw, &p) != nil {
		return false
	}
	if p.Type == "Sequence" {
		for _, q := range p.Processors {
			if templateAddsEOS(q) {
				return true
			}
		}
		return false
	}
	seen := false
	for _, s := range p.Single {
		if s.Sequence != nil {
			seen = true
		} else if s.SpecialToken != nil && seen {
			return true
		}
	}
	return false
}

// kv returns the tokenizer metadata.
func (v *vocab) kv() []KV {
	kv := []KV{
		{"tokenizer.ggml.model", String(v.model)},
	}
	if v.model == vocabBPE {
		kv = append(kv, KV{"tokenizer.ggml.pre", String(v.pre)})
	}
	kv = append(kv, KV{"tokenizer.ggml.tokens", Strings(v.tokens)})
	if v.scores != nil {
		kv = append(kv, KV{"tokenizer.ggml.scores", Float32s(v.scores)})
	}
	kv = append(kv, KV{"tokenizer.ggml.token_type", Int32s(v.types)})
	if v.model == vocabBPE {
		kv = append(kv, KV{"tokenizer.ggml.merges", Strings(v.merges)})
	}
	for _, s := range []struct {
		key string
		id  int
	}{{"bos", v.bos}, {"eos", v.eos}, {"eot", v.eot}, {"eom", v.eom}, {"unknown", v.unk}, {"padding", v.pad}} {
		if s.id >= 0 {
			kv = append(kv, KV{"tokenizer.ggml." + s.key + "_token_id", Uint32(uint32(s.id))})
		}
	}
	kv = append(kv,
		KV{"tokenizer.ggml.add_bos_token", Bool(v.addBOS)},
		KV{"tokenizer.ggml.add_eos_token", Bool(v.addEOS)})
	if v.model == vocabSPM {
		kv = append(kv, KV{"tokenizer.ggml.add_space_prefix", Bool(v.addSpacePrefix)})
	}
	return kv
}
