package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Pre-tokenizers of tokenizer.json: they cut a text (one section between
// added tokens, after normalisation) into the pieces that the model
// tokenizes one by one, and some also rewrite it (ByteLevel maps bytes to
// characters, Metaspace replaces spaces). Their behaviour follows the Rust
// `tokenizers` crate, which is what Hugging Face means by a tokenizer.json.
//
// The crate's regular expressions (Oniguruma) use lookahead that Go's regexp
// lacks, so the patterns that real files use are recognised by their exact
// text and matched by hand-written code that does what a backtracking
// engine does with them; any other pattern is refused with an error naming it.

// preTokenizer runs the pre-tokenizers of a tokenizer.json in order (a
// Sequence, or one). Its split cuts a text into pieces, in order, as Hugging
// Face's pre-tokenizer does, including its rewriting: the pieces concatenate to s
// itself for Split, Digits and WhitespaceSplit (less what a "Removed"
// behaviour drops), to byteLevelEncode(s) (after a leading space when
// add_prefix_space) for ByteLevel, and to s with spaces replaced (and maybe
// the replacement prepended) for Metaspace. s is taken to be the start of the
// text; see preTokenizeSection. An empty s gives no pieces, and no piece is
// ever empty.
type preTokenizer struct {
	steps []preStep
}

// preTokenizeSection is p.split(s) for a section of the text that starts the
// text (atStart) or not. Only Metaspace with prepend_scheme "first" cares:
// like the Rust crate, it prepends its replacement only to a piece that
// begins at offset 0 of the original text, so not to a section after an
// added token. A nil p gives s as one piece (none when s is empty).
func preTokenizeSection(p *preTokenizer, s string, atStart bool) []string {
	if s == "" {
		return nil
	}
	if p == nil {
		return []string{s}
	}
	return p.run(s, atStart)
}

// piece is a part of a section during pre-tokenization. start records
// whether it begins at offset 0 of the original text.
type piece struct {
	text  string
	start bool
}

// preStep is one pre-tokenizer. It must not return empty pieces.
type preStep interface {
	apply(in []piece) []piece
}

func (p *preTokenizer) split(s string) []string { return p.run(s, true) }

func (p *preTokenizer) run(s string, atStart bool) []string {
	if s == "" {
		return nil
	}
	ps := []piece{{s, atStart}}
	for _, st := range p.steps {
		ps = st.apply(ps)
	}
	out := make([]string, len(ps))
	for i, q := range ps {
		out[i] = q.text
	}
	return out
}

// Supported pre-tokenizer types and Split patterns, for error messages.
const (
	supportedPreTokenizers = "ByteLevel, Split, Digits, Whitespace, WhitespaceSplit, Metaspace, Sequence"
	supportedSplitPatterns = `a {"String": ...} pattern, or the Regex pattern of GPT-2, of Llama 3 (cl100k), of Qwen2 or of Mistral's Tekken`
)

// preTokenizerJSON holds the fields of every supported pre-tokenizer;
// pointers tell a missing field from a zero one.
type preTokenizerJSON struct {
	Type             *string           `json:"type"`
	AddPrefixSpace   *bool             `json:"add_prefix_space"`
	UseRegex         *bool             `json:"use_regex"`
	Pattern          *splitPatternJSON `json:"pattern"`
	Behavior         *string           `json:"behavior"`
	Invert           *bool             `json:"invert"`
	IndividualDigits *bool             `json:"individual_digits"`
	Replacement      *string           `json:"replacement"`
	PrependScheme    *string           `json:"prepend_scheme"`
	Split            *bool             `json:"split"`
	Pretokenizers    []json.RawMessage `json:"pretokenizers"`
}

type splitPatternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// parsePreTokenizer reads the "pre_tokenizer" value of a tokenizer.json.
// null or an empty value gives (nil, nil). Errors start with the JSON path
// ("pre_tokenizer", "pre_tokenizer.pretokenizers[1]") and say what was
// expected; the caller adds the file name.
func parsePreTokenizer(raw json.RawMessage) (*preTokenizer, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if d := jsonDepth(raw); d > maxNesting {
		return nil, fmt.Errorf("pre_tokenizer: nested %d levels deep; at most %d are supported", d, maxNesting)
	}
	steps, err := parsePreSteps(raw, "pre_tokenizer")
	if err != nil {
		return nil, err
	}
	return &preTokenizer{steps}, nil
}

func parsePreSteps(raw json.RawMessage, where string) ([]preStep, error) {
	var j preTokenizerJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("%s: want an object with a \"type\": %v", where, err)
	}
	if j.Type == nil {
		return nil, fmt.Errorf("%s: no \"type\" (supported: %s)", where, supportedPreTokenizers)
	}
	need := func(field string, present bool) error {
		if !present {
			return fmt.Errorf("%s: %s has no %q", where, *j.Type, field)
		}
		return nil
	}
	switch *j.Type {
	case "Sequence":
		if j.Pretokenizers == nil {
			return nil, need("pretokenizers", false)
		}
		var steps []preStep
		for i, sub := range j.Pretokenizers {
			s, err := parsePreSteps(sub, fmt.Sprintf("%s.pretokenizers[%d]", where, i))
			if err != nil {
				return nil, err
			}
			steps = append(steps, s...)
		}
		return steps, nil
	case "ByteLevel":
		if err := need("add_prefix_space", j.AddPrefixSpace != nil); err != nil {
			return nil, err
		}
		st := byteLevelStep{addPrefixSpace: *j.AddPrefixSpace, useRegex: true}
		if j.UseRegex != nil {
			st.useRegex = *j.UseRegex
		}
		return []preStep{st}, nil
	case "Split":
		for _, f := range []struct {
			name    string
			present bool
		}{{"pattern", j.Pattern != nil}, {"behavior", j.Behavior != nil}, {"invert", j.Invert != nil}} {
			if err := need(f.name, f.present); err != nil {
				return nil, err
			}
		}
		b, err := parseBehavior(*j.Behavior)
		if err != nil {
			return nil, fmt.Errorf("%s: Split: %v", where, err)
		}
		st := splitStep{behavior: b, invert: *j.Invert}
		switch p := j.Pattern; {
		case p.String != nil && p.Regex == nil:
			st.find = literalMatcher(*p.String)
		case p.Regex != nil && p.String == nil:
			m, ok := knownRegexes[*p.Regex]
			if !ok {
				return nil, fmt.Errorf("%s: Split: unsupported Regex pattern %q (Go's regexp lacks the lookahead such patterns use, so only known patterns are implemented: %s)", where, *p.Regex, supportedSplitPatterns)
			}
			st.find = m.findAll
		default:
			return nil, fmt.Errorf("%s: Split: \"pattern\" must hold exactly one of \"String\" or \"Regex\"", where)
		}
		return []preStep{st}, nil
	case "Digits":
		if err := need("individual_digits", j.IndividualDigits != nil); err != nil {
			return nil, err
		}
		b := contiguous
		if *j.IndividualDigits {
			b = isolated
		}
		return []preStep{splitStep{find: runeMatcher(unicode.IsNumber), behavior: b}}, nil
	case "Whitespace":
		// Rust: the regex \w+|[^\w\s]+, keeping its matches only.
		return []preStep{splitStep{find: whitespaceWords, behavior: removed, invert: true}}, nil
	case "WhitespaceSplit":
		return []preStep{splitStep{find: runeMatcher(unicode.IsSpace), behavior: removed}}, nil
	case "Metaspace":
		return parseMetaspace(j, where)
	}
	return nil, fmt.Errorf("%s: unsupported pre-tokenizer type %q (supported: %s)", where, *j.Type, supportedPreTokenizers)
}

func parseMetaspace(j preTokenizerJSON, where string) ([]preStep, error) {
	if j.Replacement == nil || utf8.RuneCountInString(*j.Replacement) != 1 {
		return nil, fmt.Errorf("%s: Metaspace: \"replacement\" must be one character", where)
	}
	st := metaspaceStep{replacement: *j.Replacement, scheme: prependAlways, split: true}
	if j.PrependScheme != nil {
		switch *j.PrependScheme {
		case "always":
			st.scheme = prependAlways
		case "first":
			st.scheme = prependFirst
		case "never":
			st.scheme = prependNever
		default:
			return nil, fmt.Errorf("%s: Metaspace: prepend_scheme %q, want \"always\", \"first\" or \"never\"", where, *j.PrependScheme)
		}
	}
	// Files older than prepend_scheme say add_prefix_space; false means never.
	if j.AddPrefixSpace != nil && !*j.AddPrefixSpace {
		if j.PrependScheme != nil && st.scheme != prependNever {
			return nil, fmt.Errorf("%s: Metaspace: add_prefix_space false contradicts prepend_scheme %q", where, *j.PrependScheme)
		}
		st.scheme = prependNever
	}
	if j.Split != nil {
		st.split = *j.Split
	}
	return []preStep{st}, nil
}

// behavior is what Split does with the parts its pattern matches.
type behavior int

const (
	isolated           behavior = iota // each match and each gap is a piece
	removed                            // gaps are pieces; matches are dropped
	mergedWithPrevious                 // a match joins the gap before it
	mergedWithNext                     // a match joins the gap after it
	contiguous                         // adjacent matches join, as do adjacent gaps
)

func parseBehavior(s string) (behavior, error) {
	switch s {
	case "Isolated":
		return isolated, nil
	case "Removed":
		return removed, nil
	case "MergedWithPrevious":
		return mergedWithPrevious, nil
	case "MergedWithNext":
		return mergedWithNext, nil
	case "Contiguous":
		return contiguous, nil
	}
	return 0, fmt.Errorf("behavior %q, want Isolated, Removed, MergedWithPrevious, MergedWithNext or Contiguous", s)
}

// span is a part [start, end) of a string; match tells a match from a gap.
type span struct {
	start, end int
	match      bool
}

// splitStep cuts each piece at the matches of find, which returns the
// non-empty, non-overlapping matches of s in order; invert swaps the roles of
// matches and gaps.
type splitStep struct {
	find     func(s string) [][2]int
	behavior behavior
	invert   bool
}

func (st splitStep) apply(in []piece) []piece {
	var out []piece
	for _, p := range in {
		spans := cover(p.text, st.find(p.text))
		if st.invert {
			for i := range spans {
				spans[i].match = !spans[i].match
			}
		}
		for _, sp := range applyBehavior(spans, st.behavior) {
			if sp.end > sp.start {
				out = append(out, piece{p.text[sp.start:sp.end], p.start && sp.start == 0})
			}
		}
	}
	return out
}

// cover turns matches into spans covering all of s, gaps included.
func cover(s string, matches [][2]int) []span {
	spans := make([]span, 0, 2*len(matches)+1)
	prev := 0
	for _, m := range matches {
		if m[0] > prev {
			spans = append(spans, span{prev, m[0], false})
		}
		spans = append(spans, span{m[0], m[1], true})
		prev = m[1]
	}
	if prev < len(s) {
		spans = append(spans, span{prev, len(s), false})
	}
	return spans
}

// applyBehavior returns the spans to keep as pieces, merging as b says,
// in the way of the Rust crate's NormalizedString::split.
func applyBehavior(spans []span, b behavior) []span {
	var out []span
	switch b {
	case isolated:
		return spans
	case removed:
		for _, sp := range spans {
			if !sp.match {
				out = append(out, sp)
			}
		}
	case contiguous:
		for i, sp := range spans {
			if i > 0 && sp.match == spans[i-1].match {
				out[len(out)-1].end = sp.end
			} else {
				out = append(out, sp)
			}
		}
	case mergedWithPrevious:
		for i, sp := range spans {
			if sp.match && i > 0 && !spans[i-1].match {
				out[len(out)-1].end = sp.end
			} else {
				out = append(out, sp)
			}
		}
	case mergedWithNext:
		// Walk backwards: a match joins the gap that follows it.
		for i := len(spans) - 1; i >= 0; i-- {
			sp := spans[i]
			if sp.match && i < len(spans)-1 && !spans[i+1].match {
				out[len(out)-1].start = sp.start
			} else {
				out = append(out, sp)
			}
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// literalMatcher finds the non-overlapping occurrences of lit, left to
// right; an empty lit matches nothing (as in the Rust crate).
func literalMatcher(lit string) func(string) [][2]int {
	return func(s string) [][2]int {
		if lit == "" {
			return nil
		}
		var m [][2]int
		for off := 0; ; {
			i := strings.Index(s[off:], lit)
			if i < 0 {
				return m
			}
			m = append(m, [2]int{off + i, off + i + len(lit)})
			off += i + len(lit)
		}
	}
}

// runeMatcher makes each character for which f is true a match of its own.
func runeMatcher(f func(rune) bool) func(string) [][2]int {
	return func(s string) [][2]int {
		var m [][2]int
		for i, r := range s {
			if f(r) {
				m = append(m, [2]int{i, i + utf8.RuneLen(r)})
			}
		}
		return m
	}
}

// runeAt decodes the character at s[i:]; an invalid byte counts as one
// character (utf8.RuneError) so that pieces always cut s at byte offsets
// that concatenate back to it.
func runeAt(s string, i int) (rune, int) {
	if i >= len(s) {
		return -1, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// runOf returns the end of the longest run of characters satisfying f from i.
func runOf(s string, i int, f func(rune) bool) int {
	for i < len(s) {
		r, n := runeAt(s, i)
		if !f(r) {
			break
		}
		i += n
	}
	return i
}

// Character classes of the patterns: \s is Unicode White_Space (Oniguruma
// and the regex crate agree, as does unicode.IsSpace), \p{L} and \p{N} the
// general categories.
func isSpace(r rune) bool  { return unicode.IsSpace(r) }
func isLetter(r rune) bool { return unicode.IsLetter(r) }
func isNumber(r rune) bool { return unicode.IsNumber(r) }
func isCRLF(r rune) bool   { return r == '\r' || r == '\n' }

// isOther is [^\s\p{L}\p{N}].
func isOther(r rune) bool { return !isSpace(r) && !isLetter(r) && !isNumber(r) }

// isWord is the regex crate's Unicode \w: Alphabetic, marks, decimal
// digits, connector punctuation and Join_Control.
func isWord(r rune) bool {
	return unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		unicode.IsMark(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Join_Control, r)
}

// whitespaceWords finds the matches of \w+|[^\w\s]+.
func whitespaceWords(s string) [][2]int {
	var m [][2]int
	for i := 0; i < len(s); {
		r, n := runeAt(s, i)
		var end int
		switch {
		case isWord(r):
			end = runOf(s, i, isWord)
		case !isSpace(r):
			end = runOf(s, i, func(r rune) bool { return !isWord(r) && !isSpace(r) })
		default:
			i += n
			continue
		}
		m = append(m, [2]int{i, end})
		i = end
	}
	return m
}

// splitRegex is a hand-written matcher for one of the known patterns. Both
// families are an alternation tried left to right at each position, as a
// backtracking engine does:
//
//	GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//	Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// Qwen2's pattern is Llama 3's with \p{N} for \p{N}{1,3}. Mistral's Tekken
// (Mistral Nemo) cuts words where lower case turns to upper, has no
// contractions, and keeps "/" after punctuation:
//
//	Tekken:  [^\r\n\p{L}\p{N}]?U*L+|[^\r\n\p{L}\p{N}]?U+L*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// with U = [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and L = [\p{Ll}\p{Lm}\p{Lo}\p{M}].
type splitRegex struct {
	llama3    bool // the Llama 3 family, else GPT-2 (unless tekken)
	tekken    bool // Mistral's Tekken
	maxDigits int  // Llama 3 family: most digits in one match
}

// Exact pattern texts as they appear in tokenizer.json files.
const (
	gpt2Pattern   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	tekkenPattern = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

var knownRegexes = map[string]splitRegex{
	gpt2Pattern:   {},
	llama3Pattern: {llama3: true, maxDigits: 3},
	qwen2Pattern:  {llama3: true, maxDigits: 1},
	tekkenPattern: {tekken: true},
}

// findAll returns the leftmost-first matches of the pattern in s, as a
// regex engine's find_iter does.
func (x splitRegex) findAll(s string) [][2]int {
	var m [][2]int
	for i := 0; i < len(s); {
		if end := x.matchAt(s, i); end > i {
			m = append(m, [2]int{i, end})
			i = end
			continue
		}
		_, n := runeAt(s, i)
		i += n
	}
	return m
}

// matchAt returns the end of the pattern's match starting at i, or -1.
func (x splitRegex) matchAt(s string, i int) int {
	if x.tekken {
		return tekkenAt(s, i)
	}
	if end := contractionAt(s, i, x.llama3); end > 0 {
		return end
	}
	r, n := runeAt(s, i)
	if x.llama3 {
		// [^\r\n\p{L}\p{N}]?\p{L}+
		switch {
		case isLetter(r):
			return runOf(s, i, isLetter)
		case !isCRLF(r) && !isNumber(r):
			if end := runOf(s, i+n, isLetter); end > i+n {
				return end
			}
		}
		// \p{N}{1,maxDigits}
		if isNumber(r) {
			end := i
			for k := 0; k < x.maxDigits; k++ {
				r, n := runeAt(s, end)
				if n == 0 || !isNumber(r) {
					break
				}
				end += n
			}
			return end
		}
		// " ?[^\s\p{L}\p{N}]+[\r\n]*"; the optional space can only be the
		// space itself, which the class excludes, so no backtracking is needed.
		j := i
		if r == ' ' {
			j++
		}
		if end := runOf(s, j, isOther); end > j {
			return runOf(s, end, isCRLF)
		}
		if end := newlinesAt(s, i); end > 0 {
			return end
		}
	} else {
		// " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": the optional space
		// belongs to none of the classes, so taking it when present is the
		// only way to match.
		j := i
		if r == ' ' {
			j++
		}
		for _, f := range []func(rune) bool{isLetter, isNumber, isOther} {
			if end := runOf(s, j, f); end > j {
				return end
			}
		}
	}
	return spacesAt(s, i)
}

// newlinesAt matches \s*[\r\n]+ at i: backtracking leaves the whitespace
// run at its last \r or \n, which [\r\n]+ then takes. It returns -1 where
// the run has neither.
func newlinesAt(s string, i int) int {
	end := runOf(s, i, isSpace)
	last := -1
	for k := i; k < end; k++ {
		if s[k] == '\r' || s[k] == '\n' {
			last = k
		}
	}
	if last < 0 {
		return -1
	}
	return last + 1
}

// spacesAt matches \s+(?!\S) then \s+ at i: the longest whitespace run,
// less its last character when something other than whitespace follows and
// the run has more than one character.
func spacesAt(s string, i int) int {
	end := runOf(s, i, isSpace)
	if end == i {
		return -1
	}
	if end == len(s) {
		return end
	}
	_, last := utf8.DecodeLastRuneInString(s[i:end])
	if end-last > i {
		return end - last
	}
	return end
}

// Tekken's letter classes: U is [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}], L is
// [\p{Ll}\p{Lm}\p{Lo}\p{M}]; modifier and other letters and marks are in both.
func isTekkenU(r rune) bool {
	return unicode.In(r, unicode.Lu, unicode.Lt, unicode.Lm, unicode.Lo, unicode.M)
}

func isTekkenL(r rune) bool {
	return unicode.In(r, unicode.Ll, unicode.Lm, unicode.Lo, unicode.M)
}

// tekkenAt matches Tekken's pattern at i, its alternatives in order and
// each optional leading character first taken, then not, as a
// backtracking engine tries them.
func tekkenAt(s string, i int) int {
	r, n := runeAt(s, i)
	lead := !isCRLF(r) && !isLetter(r) && !isNumber(r) // [^\r\n\p{L}\p{N}]
	if lead {
		if end := upperLowerAt(s, i+n); end > 0 {
			return end
		}
	}
	if end := upperLowerAt(s, i); end > 0 {
		return end
	}
	if lead {
		if end := upperThenLowerAt(s, i+n); end > 0 {
			return end
		}
	}
	if end := upperThenLowerAt(s, i); end > 0 {
		return end
	}
	if isNumber(r) {
		return i + n
	}
	// " ?[^\s\p{L}\p{N}]+[\r\n/]*", the optional space as in Llama 3's.
	j := i
	if r == ' ' {
		j++
	}
	if end := runOf(s, j, isOther); end > j {
		return runOf(s, end, func(r rune) bool { return isCRLF(r) || r == '/' })
	}
	if end := newlinesAt(s, i); end > 0 {
		return end
	}
	return spacesAt(s, i)
}

// upperLowerAt matches U*L+ at j. U* first takes its longest run, then
// gives back characters until L+ can start: L+ starts at the last place in
// that run, or just after it, holding an L character; it then takes its
// longest run. -1 when there is none.
func upperLowerAt(s string, j int) int {
	last := -1
	k := j
	for k < len(s) {
		r, n := runeAt(s, k)
		if !isTekkenU(r) {
			break
		}
		if isTekkenL(r) {
			last = k
		}
		k += n
	}
	if r, n := runeAt(s, k); n > 0 && isTekkenL(r) {
		last = k
	}
	if last < 0 {
		return -1
	}
	return runOf(s, last, isTekkenL)
}

// upperThenLowerAt matches U+L* at j, or returns -1.
func upperThenLowerAt(s string, j int) int {
	end := runOf(s, j, isTekkenU)
	if end == j {
		return -1
	}
	return runOf(s, end, isTekkenL)
}

// contractionAt matches 's|'t|'re|'ve|'m|'ll|'d at i, ignoring case (with
// Unicode simple case folding, as Oniguruma's (?i) does) when fold is set.
func contractionAt(s string, i int, fold bool) int {
	if i >= len(s) || s[i] != '\'' {
		return -1
	}
	eq := func(r, want rune) bool {
		if r == want {
			return true
		}
		if !fold || r < 0 {
			return false
		}
		for f := unicode.SimpleFold(want); f != want; f = unicode.SimpleFold(f) {
			if f == r {
				return true
			}
		}
		return false
	}
	r1, n1 := runeAt(s, i+1)
	for _, c := range "stmd" {
		if eq(r1, c) {
			return i + 1 + n1
		}
	}
	r2, n2 := runeAt(s, i+1+n1)
	for _, c := range []string{"re", "ve", "ll"} {
		if eq(r1, rune(c[0])) && eq(r2, rune(c[1])) {
			return i + 1 + n1 + n2
		}
	}
	return -1
}

// byteLevelStep is the ByteLevel pre-tokenizer: an optional leading space,
// the GPT-2 pattern's pieces (use_regex), then the byte-level mapping.
type byteLevelStep struct {
	addPrefixSpace, useRegex bool
}

func (st byteLevelStep) apply(in []piece) []piece {
	out := make([]piece, 0, len(in))
	for _, p := range in {
		if st.addPrefixSpace && !strings.HasPrefix(p.text, " ") {
			p.text = " " + p.text
		}
		if !st.useRegex {
			out = append(out, p)
			continue
		}
		for _, m := range (splitRegex{}).findAll(p.text) {
			// The pattern matches every character, so there are no gaps.
			out = append(out, piece{p.text[m[0]:m[1]], p.start && m[0] == 0})
		}
	}
	for i := range out {
		out[i].text = byteLevelEncode(out[i].text)
	}
	return out
}

// prependScheme says where Metaspace adds its replacement at the front.
type prependScheme int

const (
	prependAlways prependScheme = iota
	prependFirst                // only to the piece at the start of the text
	prependNever
)

// metaspaceStep is the Metaspace pre-tokenizer (SentencePiece's view of
// spaces): spaces become the replacement character, which is prepended per
// scheme unless already there, and with split each replacement starts a new
// piece.
type metaspaceStep struct {
	replacement string
	scheme      prependScheme
	split       bool
}

func (st metaspaceStep) apply(in []piece) []piece {
	var out []piece
	for _, p := range in {
		t := strings.ReplaceAll(p.text, " ", st.replacement)
		if !strings.HasPrefix(t, st.replacement) && (st.scheme == prependAlways || st.scheme == prependFirst && p.start) {
			t = st.replacement + t
		}
		q := piece{t, p.start}
		if !st.split {
			out = append(out, q)
			continue
		}
		out = append(out, splitStep{find: literalMatcher(st.replacement), behavior: mergedWithNext}.apply([]piece{q})...)
	}
	return out
}
