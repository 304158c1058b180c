package jinja

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// tokenKind is the kind of a lexer token.
type tokenKind int

const (
	tokEOF tokenKind = iota
	tokText
	tokVarBegin   // {{
	tokVarEnd     // }}
	tokBlockBegin // {%
	tokBlockEnd   // %}
	tokName
	tokString
	tokInt
	tokFloat
	tokOp
)

var tokenNames = [...]string{"end of template", "text", "'{{'", "'}}'", "'{%'", "'%}'", "name", "string", "integer", "float", "operator"}

func (k tokenKind) String() string { return tokenNames[k] }

// pos is a position in the template source, 1-based.
type pos struct{ line, col int }

type token struct {
	kind tokenKind
	val  string // text, name, operator, or the decoded string literal
	num  Value  // int64 or float64 for number tokens
	pos  pos
}

func (t token) describe() string {
	switch t.kind {
	case tokName, tokOp:
		return fmt.Sprintf("'%s'", t.val)
	case tokString:
		return "string " + quoteRepr(t.val)
	case tokInt, tokFloat:
		return toStr(t.num)
	}
	return t.kind.String()
}

// lexer splits a template into tokens as Jinja's lexer does with
// trim_blocks and lstrip_blocks on and keep_trailing_newline off.
type lexer struct {
	name   string
	src    string
	i      int
	line   int
	col    int
	toks   []token
	lineSt bool // the last match ended a line (Jinja's line_starting)
}

// normalizeNewlines turns \r\n and \r into \n and drops one trailing
// newline, as Jinja does to every template source.
func normalizeNewlines(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.TrimSuffix(s, "\n")
}

func lex(name, src string) ([]token, error) {
	l := &lexer{name: name, src: normalizeNewlines(src), line: 1, col: 1, lineSt: true}
	if err := l.run(); err != nil {
		return nil, err
	}
	return l.toks, nil
}

func (l *lexer) errorf(p pos, format string, args ...any) error {
	return &Error{Template: l.name, Line: p.line, Col: p.col, Msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) here() pos { return pos{l.line, l.col} }

// advance moves past n bytes, keeping line and column.
func (l *lexer) advance(n int) {
	for _, r := range l.src[l.i : l.i+n] {
		if r == '\n' {
			l.line++
			l.col = 1
		} else {
			l.col++
		}
	}
	l.i += n
}

func (l *lexer) emitText(p pos, s string) {
	if s != "" {
		l.toks = append(l.toks, token{kind: tokText, val: s, pos: p})
	}
}

func (l *lexer) run() error {
	for l.i < len(l.src) {
		// Find the next tag opening.
		rest := l.src[l.i:]
		j := -1
		for k := 0; k+1 < len(rest); k++ {
			if rest[k] == '{' && (rest[k+1] == '{' || rest[k+1] == '%' || rest[k+1] == '#') {
				j = k
				break
			}
		}
		textPos := l.here()
		if j < 0 {
			l.emitText(textPos, rest)
			l.advance(len(rest))
			break
		}
		text := rest[:j]
		open := rest[j : j+2]
		sign := byte(0)
		if j+2 < len(rest) && (rest[j+2] == '-' || rest[j+2] == '+') {
			sign = rest[j+2]
		}
		switch {
		case sign == '-':
			text = strings.TrimRightFunc(text, unicode.IsSpace)
		case sign != '+' && open != "{{":
			// lstrip_blocks: drop spaces and tabs between the line start and the tag.
			lpos := strings.LastIndexByte(text, '\n') + 1
			if (lpos > 0 || l.lineSt) && strings.Trim(text[lpos:], " \t") == "" {
				text = text[:lpos]
			}
		}
		l.emitText(textPos, text)
		l.advance(j)
		tagPos := l.here()
		n := 2
		if sign != 0 {
			n = 3
		}
		l.advance(n)
		switch open {
		case "{#":
			if err := l.comment(tagPos); err != nil {
				return err
			}
		case "{{":
			l.toks = append(l.toks, token{kind: tokVarBegin, pos: tagPos})
			if err := l.tag("}}", tagPos); err != nil {
				return err
			}
		case "{%":
			if l.raw(tagPos) {
				continue
			}
			l.toks = append(l.toks, token{kind: tokBlockBegin, pos: tagPos})
			if err := l.tag("%}", tagPos); err != nil {
				return err
			}
		}
	}
	l.toks = append(l.toks, token{kind: tokEOF, pos: l.here()})
	return nil
}

// closeTag matches a tag ending ("}}", "%}" or "#}") at the current
// position with its whitespace control: "-" eats all following
// whitespace, "+" nothing, and a plain block or comment end one newline
// (trim_blocks). It reports the length matched, 0 if none.
func (l *lexer) closeTag(end string) int {
	rest := l.src[l.i:]
	switch {
	case strings.HasPrefix(rest, "-"+end):
		n := 3
		n += len(rest[n:]) - len(strings.TrimLeftFunc(rest[n:], unicode.IsSpace))
		return n
	case end != "}}" && strings.HasPrefix(rest, "+"+end):
		return 3
	case strings.HasPrefix(rest, end):
		if end != "}}" && strings.HasPrefix(rest[2:], "\n") {
			return 3
		}
		return 2
	}
	return 0
}

func (l *lexer) comment(p pos) error {
	for l.i < len(l.src) {
		if l.src[l.i] == '-' || l.src[l.i] == '+' || l.src[l.i] == '#' {
			if n := l.closeTag("#}"); n > 0 {
				l.lineSt = l.src[l.i+n-1] == '\n'
				l.advance(n)
				return nil
			}
		}
		l.advance(1)
	}
	return l.errorf(p, "missing end of comment tag")
}

// raw handles {% raw %}…{% endraw %}, whose content is text.
func (l *lexer) raw(p pos) bool {
	rest := l.src[l.i:]
	trimmed := strings.TrimLeftFunc(rest, unicode.IsSpace)
	if !strings.HasPrefix(trimmed, "raw") {
		return false
	}
	after := strings.TrimLeftFunc(trimmed[3:], unicode.IsSpace)
	if !strings.HasPrefix(after, "%}") && !strings.HasPrefix(after, "-%}") {
		return false
	}
	l.advance(len(rest) - len(after))
	l.advance(l.closeTag("%}"))
	start := l.here()
	body := l.src[l.i:]
	for k := 0; k+1 < len(body); k++ {
		if body[k] != '{' || body[k+1] != '%' {
			continue
		}
		m := k + 2
		sign := byte(0)
		if m < len(body) && (body[m] == '-' || body[m] == '+') {
			sign = body[m]
			m++
		}
		inner := strings.TrimLeftFunc(body[m:], unicode.IsSpace)
		if !strings.HasPrefix(inner, "endraw") {
			continue
		}
		tail := strings.TrimLeftFunc(inner[6:], unicode.IsSpace)
		if !strings.HasPrefix(tail, "%}") && !strings.HasPrefix(tail, "-%}") && !strings.HasPrefix(tail, "+%}") {
			continue
		}
		text := body[:k]
		switch {
		case sign == '-':
			text = strings.TrimRightFunc(text, unicode.IsSpace)
		case sign != '+':
			lpos := strings.LastIndexByte(text, '\n') + 1
			if lpos > 0 && strings.Trim(text[lpos:], " \t") == "" {
				text = text[:lpos]
			}
		}
		l.emitText(start, text)
		l.advance(len(body) - len(tail))
		n := l.closeTag("%}")
		l.lineSt = l.src[l.i+n-1] == '\n'
		l.advance(n)
		return true
	}
	// An unclosed raw block: let the parser report the unknown end.
	l.toks = append(l.toks, token{kind: tokBlockBegin, pos: p})
	return false
}

// tag lexes the expression tokens of a {{ }} or {% %} tag up to its end.
func (l *lexer) tag(end string, open pos) error {
	depth := 0
	for {
		if l.i >= len(l.src) {
			return l.errorf(open, "unexpected end of template: tag opened here is not closed with '%s'", end)
		}
		if depth == 0 {
			if n := l.closeTag(end); n > 0 {
				kind := tokVarEnd
				if end == "%}" {
					kind = tokBlockEnd
				}
				l.toks = append(l.toks, token{kind: kind, pos: l.here()})
				l.lineSt = l.src[l.i+n-1] == '\n'
				l.advance(n)
				return nil
			}
		}
		c := l.src[l.i]
		p := l.here()
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			l.advance(1)
		case c >= '0' && c <= '9':
			if err := l.number(p); err != nil {
				return err
			}
		case c == '\'' || c == '"':
			if err := l.str(p); err != nil {
				return err
			}
		case c == '_' || c < utf8.RuneSelf && unicode.IsLetter(rune(c)):
			l.ident(p)
		case c >= utf8.RuneSelf:
			r, _ := utf8.DecodeRuneInString(l.src[l.i:])
			if !unicode.IsLetter(r) {
				return l.errorf(p, "unexpected char %s", quoteRepr(string(r)))
			}
			l.ident(p)
		default:
			op := ""
			for _, cand := range []string{"//", "**", "==", "!=", ">=", "<="} {
				if strings.HasPrefix(l.src[l.i:], cand) {
					op = cand
					break
				}
			}
			if op == "" && strings.IndexByte("+-/*%~[](){}<>=.:|,;", c) >= 0 {
				op = string(c)
			}
			if op == "" {
				return l.errorf(p, "unexpected char %s", quoteRepr(string(c)))
			}
			switch op {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				if depth == 0 {
					return l.errorf(p, "unexpected '%s'", op)
				}
				depth--
			}
			l.toks = append(l.toks, token{kind: tokOp, val: op, pos: p})
			l.advance(len(op))
		}
	}
}

func (l *lexer) ident(p pos) {
	j := l.i
	for j < len(l.src) {
		r, n := utf8.DecodeRuneInString(l.src[j:])
		if r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mn, r) && !unicode.Is(unicode.Mc, r) {
			break
		}
		j += n
	}
	l.toks = append(l.toks, token{kind: tokName, val: l.src[l.i:j], pos: p})
	l.advance(j - l.i)
}

// digits scans digits with single underscores between them, from j.
func digitsAt(s string, j int, isDigit func(byte) bool) int {
	if j >= len(s) || !isDigit(s[j]) {
		return j
	}
	j++
	for j < len(s) {
		if isDigit(s[j]) {
			j++
		} else if s[j] == '_' && j+1 < len(s) && isDigit(s[j+1]) {
			j += 2
		} else {
			break
		}
	}
	return j
}

func isDec(c byte) bool { return c >= '0' && c <= '9' }

func (l *lexer) number(p pos) error {
	s := l.src
	start := l.i
	// Prefixed integers.
	if s[start] == '0' && start+1 < len(s) {
		var base int
		var ok func(byte) bool
		switch s[start+1] {
		case 'b', 'B':
			base, ok = 2, func(c byte) bool { return c == '0' || c == '1' }
		case 'o', 'O':
			base, ok = 8, func(c byte) bool { return c >= '0' && c <= '7' }
		case 'x', 'X':
			base, ok = 16, func(c byte) bool { return isDec(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
		}
		if base != 0 {
			j := start + 2
			if j < len(s) && s[j] == '_' {
				j++
			}
			end := digitsAt(s, j, ok)
			if end > j {
				v, err := strconv.ParseInt(strings.ReplaceAll(s[start+2:end], "_", ""), base, 64)
				if err != nil {
					return l.errorf(p, "integer %s is too large", s[start:end])
				}
				l.toks = append(l.toks, token{kind: tokInt, num: v, pos: p, val: s[start:end]})
				l.advance(end - start)
				return nil
			}
		}
	}
	end := digitsAt(s, start, isDec)
	isFloat := false
	// A float needs digits after the dot; "1." is the integer 1 then a dot.
	// After a dot (x.0.1) the number is an item index, not a float.
	afterDot := start > 0 && s[start-1] == '.'
	if !afterDot && end+1 < len(s) && s[end] == '.' && isDec(s[end+1]) {
		end = digitsAt(s, end+1, isDec)
		isFloat = true
	}
	if !afterDot && end < len(s) && (s[end] == 'e' || s[end] == 'E') {
		j := end + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if k := digitsAt(s, j, isDec); k > j {
			end, isFloat = k, true
		}
	}
	lit := strings.ReplaceAll(s[start:end], "_", "")
	if isFloat {
		f, err := strconv.ParseFloat(lit, 64)
		if err != nil && !strings.Contains(err.Error(), "range") {
			return l.errorf(p, "bad float %s", lit)
		}
		l.toks = append(l.toks, token{kind: tokFloat, num: f, pos: p, val: s[start:end]})
	} else {
		if len(lit) > 1 && lit[0] == '0' && strings.Trim(lit, "0") != "" {
			// Jinja reads 012 as 0 then 12; Python forbids it. Refuse it clearly.
			return l.errorf(p, "integer literal %s has a leading zero", lit)
		}
		v, err := strconv.ParseInt(lit, 10, 64)
		if err != nil {
			return l.errorf(p, "integer %s is too large (at most 64 bits here)", lit)
		}
		l.toks = append(l.toks, token{kind: tokInt, num: v, pos: p, val: s[start:end]})
	}
	l.advance(end - start)
	return nil
}

// str lexes a quoted string literal, decoding Python's escapes.
func (l *lexer) str(p pos) error {
	q := l.src[l.i]
	j := l.i + 1
	for j < len(l.src) && l.src[j] != q {
		if l.src[j] == '\\' {
			j++
		}
		j++
	}
	if j >= len(l.src) {
		return l.errorf(p, "unterminated string")
	}
	body := l.src[l.i+1 : j]
	val, err := unescape(body)
	if err != nil {
		return l.errorf(p, "%v", err)
	}
	l.toks = append(l.toks, token{kind: tokString, val: val, pos: p})
	l.advance(j + 1 - l.i)
	return nil
}

// unescape decodes Python's string escapes (the unicode-escape codec);
// an unknown escape stays as it is written.
func unescape(s string) (string, error) {
	if strings.IndexByte(s, '\\') < 0 {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch e := s[i]; e {
		case '\n':
			// A backslash before a newline joins the lines.
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if i+1+n > len(s) {
				return "", fmt.Errorf("truncated \\%c escape in string", e)
			}
			v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
			if err != nil {
				return "", fmt.Errorf("bad \\%c escape in string", e)
			}
			if v > unicode.MaxRune {
				return "", fmt.Errorf("\\%c escape out of range in string", e)
			}
			b.WriteRune(rune(v))
			i += n
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			v, _ := strconv.ParseUint(s[i:j], 8, 32)
			b.WriteRune(rune(v))
			i = j - 1
		case 'N':
			return "", fmt.Errorf("\\N{...} escapes are not supported")
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return b.String(), nil
}
