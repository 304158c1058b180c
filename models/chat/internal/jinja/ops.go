package jinja

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// arith applies a binary operator with Python's semantics; limit bounds
// the size of strings and lists it builds.
func arith(op string, a, b Value, limit int) (Value, error) {
	if u, ok := a.(Undefined); ok {
		return nil, u.err()
	}
	if u, ok := b.(Undefined); ok {
		return nil, u.err()
	}
	if isNumber(a) && isNumber(b) {
		return numArith(op, a, b)
	}
	switch op {
	case "+":
		if _, ok := a.(Markup); ok {
			if bs, ok := asString(b); ok {
				return a.(Markup) + Markup(escapeIfPlain(b, bs)), nil
			}
		}
		if as, ok := a.(string); ok {
			if bm, ok := b.(Markup); ok {
				return Markup(htmlEscape(as)) + bm, nil
			}
			if bs, ok := b.(string); ok {
				if len(as)+len(bs) > limit {
					return nil, fmt.Errorf("string exceeds %d bytes", limit)
				}
				return as + bs, nil
			}
			return nil, fmt.Errorf("can only concatenate str (not \"%s\") to str", typeName(b))
		}
		if al, ok := a.([]Value); ok {
			if bl, ok := b.([]Value); ok {
				if len(al)+len(bl) > limit {
					return nil, fmt.Errorf("list exceeds %d items", limit)
				}
				return append(append(make([]Value, 0, len(al)+len(bl)), al...), bl...), nil
			}
			return nil, fmt.Errorf("can only concatenate list (not \"%s\") to list", typeName(b))
		}
		if at, ok := a.(Tuple); ok {
			if bt, ok := b.(Tuple); ok {
				return append(append(make(Tuple, 0, len(at)+len(bt)), at...), bt...), nil
			}
			return nil, fmt.Errorf("can only concatenate tuple (not \"%s\") to tuple", typeName(b))
		}
	case "*":
		if n, ok := asInt(b); ok {
			return repeat(a, n, limit)
		}
		if n, ok := asInt(a); ok {
			return repeat(b, n, limit)
		}
	case "%":
		if as, ok := asString(a); ok {
			return percentFormat(as, b, limit)
		}
	}
	return nil, fmt.Errorf("unsupported operand type(s) for %s: '%s' and '%s'", op, typeName(a), typeName(b))
}

func escapeIfPlain(v Value, s string) string {
	if _, ok := v.(Markup); ok {
		return s
	}
	return htmlEscape(s)
}

// repeat is Python's seq * n.
func repeat(v Value, n int64, limit int) (Value, error) {
	if n < 0 {
		n = 0
	}
	switch s := v.(type) {
	case string, Markup:
		str, _ := asString(s)
		if n > 0 && int64(len(str)) > int64(limit)/n {
			return nil, fmt.Errorf("string exceeds %d bytes", limit)
		}
		out := strings.Repeat(str, int(n))
		if _, ok := v.(Markup); ok {
			return Markup(out), nil
		}
		return out, nil
	case []Value, Tuple:
		items, _ := seqOf(s)
		if n > 0 && int64(len(items)) > int64(limit)/n {
			return nil, fmt.Errorf("list exceeds %d items", limit)
		}
		out := make([]Value, 0, len(items)*int(n))
		for i := int64(0); i < n; i++ {
			out = append(out, items...)
		}
		if _, ok := v.(Tuple); ok {
			return Tuple(out), nil
		}
		return out, nil
	}
	return nil, fmt.Errorf("can't multiply sequence by non-int of type '%s'", typeName(v))
}

// errTooLong is the error for a string that would pass limit bytes.
func errTooLong(limit int) error { return fmt.Errorf("string exceeds %d bytes", limit) }

var errOverflow = fmt.Errorf("integer overflow (integers here have 64 bits)")

func numArith(op string, a, b Value) (Value, error) {
	ai, aInt := asInt(a)
	bi, bInt := asInt(b)
	if aInt && bInt {
		switch op {
		case "+":
			s := ai + bi
			if (s > ai) != (bi > 0) {
				return nil, errOverflow
			}
			return s, nil
		case "-":
			s := ai - bi
			if (s < ai) != (bi > 0) {
				return nil, errOverflow
			}
			return s, nil
		case "*":
			if ai == 0 || bi == 0 {
				return int64(0), nil
			}
			hi, lo := bits.Mul64(uint64(abs64(ai)), uint64(abs64(bi)))
			if hi != 0 || lo > math.MaxInt64 || ai == math.MinInt64 || bi == math.MinInt64 {
				return nil, errOverflow
			}
			p := int64(lo)
			if (ai < 0) != (bi < 0) {
				p = -p
			}
			return p, nil
		case "/":
			if bi == 0 {
				return nil, fmt.Errorf("division by zero")
			}
			return float64(ai) / float64(bi), nil
		case "//":
			if bi == 0 {
				return nil, fmt.Errorf("integer division or modulo by zero")
			}
			q := ai / bi
			if (ai%bi != 0) && ((ai < 0) != (bi < 0)) {
				q--
			}
			return q, nil
		case "%":
			if bi == 0 {
				return nil, fmt.Errorf("integer division or modulo by zero")
			}
			m := ai % bi
			if m != 0 && (m < 0) != (bi < 0) {
				m += bi
			}
			return m, nil
		case "**":
			if bi < 0 {
				return math.Pow(float64(ai), float64(bi)), nil
			}
			res := int64(1)
			base := ai
			for e := bi; e > 0; e >>= 1 {
				if e&1 == 1 {
					v, err := numArith("*", res, base)
					if err != nil {
						return nil, err
					}
					res = v.(int64)
				}
				if e > 1 {
					v, err := numArith("*", base, base)
					if err != nil {
						return nil, err
					}
					base = v.(int64)
				}
			}
			return res, nil
		}
	}
	af, _ := asFloat(a)
	bf, _ := asFloat(b)
	switch op {
	case "+":
		return af + bf, nil
	case "-":
		return af - bf, nil
	case "*":
		return af * bf, nil
	case "/":
		if bf == 0 {
			return nil, fmt.Errorf("float division by zero")
		}
		return af / bf, nil
	case "//":
		if bf == 0 {
			return nil, fmt.Errorf("float floor division by zero")
		}
		return math.Floor(af / bf), nil
	case "%":
		if bf == 0 {
			return nil, fmt.Errorf("float modulo")
		}
		m := math.Mod(af, bf)
		if m != 0 && (m < 0) != (bf < 0) {
			m += bf
		}
		return m, nil
	case "**":
		if af == 0 && bf < 0 {
			return nil, fmt.Errorf("0.0 cannot be raised to a negative power")
		}
		return math.Pow(af, bf), nil
	}
	return nil, fmt.Errorf("unknown operator %s", op)
}

func abs64(i int64) int64 {
	if i < 0 {
		return -i
	}
	return i
}

// percentFormat is Python's printf-style "fmt % args" for the
// conversions s, r, d, i, f, F, e, g, x, X, o, c and %%; limit bounds the
// text it builds.
func percentFormat(format string, args Value, limit int) (Value, error) {
	var list []Value
	var mapping *Dict
	switch a := args.(type) {
	case Tuple:
		list = a
	case *Dict:
		mapping = a
		list = []Value{a}
	default:
		list = []Value{a}
	}
	var b strings.Builder
	next := 0
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(format) {
			return nil, fmt.Errorf("incomplete format")
		}
		if format[i] == '%' {
			b.WriteByte('%')
			continue
		}
		var arg Value
		haveArg := false
		if format[i] == '(' {
			end := strings.IndexByte(format[i:], ')')
			if end < 0 || mapping == nil {
				return nil, fmt.Errorf("format requires a mapping")
			}
			key := format[i+1 : i+end]
			v, ok := mapping.Get(key)
			if !ok {
				return nil, fmt.Errorf("KeyError: %s", quoteRepr(key))
			}
			arg, haveArg = v, true
			i += end + 1
		}
		start := i
		for i < len(format) && strings.IndexByte("-+ #0", format[i]) >= 0 {
			i++
		}
		for i < len(format) && (format[i] >= '0' && format[i] <= '9' || format[i] == '.') {
			i++
		}
		if i >= len(format) {
			return nil, fmt.Errorf("incomplete format")
		}
		spec := format[start:i]
		verb := format[i]
		if !haveArg {
			if next >= len(list) {
				return nil, fmt.Errorf("not enough arguments for format string")
			}
			arg = list[next]
			next++
		}
		s, err := formatOne(spec, verb, arg)
		if err != nil {
			return nil, err
		}
		if b.Len()+len(s) > limit {
			return nil, errTooLong(limit)
		}
		b.WriteString(s)
	}
	if mapping == nil && next < len(list) {
		return nil, fmt.Errorf("not all arguments converted during string formatting")
	}
	return b.String(), nil
}

// maxFmtWidth is the largest width or precision formatOne accepts: Go's
// fmt, which does its padding, prints an error into the text past it.
const maxFmtWidth = 1_000_000

func formatOne(spec string, verb byte, arg Value) (string, error) {
	for _, num := range strings.FieldsFunc(spec, func(r rune) bool { return r < '0' || r > '9' }) {
		if n, err := strconv.Atoi(num); err != nil || n > maxFmtWidth {
			return "", fmt.Errorf("%%-format width or precision %s is too large (the most is %d)", num, maxFmtWidth)
		}
	}
	switch verb {
	case 's':
		return fmt.Sprintf("%"+spec+"s", toStr(arg)), nil
	case 'r', 'a':
		return fmt.Sprintf("%"+spec+"s", repr(arg)), nil
	case 'd', 'i', 'x', 'X', 'o', 'c':
		if str, ok := asString(arg); ok && verb == 'c' && utf8.RuneCountInString(str) == 1 {
			return fmt.Sprintf("%"+spec+"s", str), nil
		}
		var n int64
		if f, ok := arg.(float64); ok {
			n = int64(f)
		} else if i, ok := asInt(arg); ok {
			n = i
		} else {
			return "", fmt.Errorf("%%%c format: a number is required, not %s", verb, typeName(arg))
		}
		v := verb
		if v == 'i' {
			v = 'd'
		}
		if v == 'c' {
			return string(rune(n)), nil
		}
		return fmt.Sprintf("%"+spec+string(v), n), nil
	case 'f', 'F', 'e', 'E', 'g', 'G':
		f, ok := asFloat(arg)
		if !ok {
			return "", fmt.Errorf("must be real number, not %s", typeName(arg))
		}
		if !strings.Contains(spec, ".") {
			spec += ".6"
		}
		return fmt.Sprintf("%"+spec+string(verb), f), nil
	}
	return "", fmt.Errorf("unsupported format character '%c'", verb)
}

// strFormat is str.format with positional and keyword fields and simple
// format specs (fill, align, width, precision, type); limit bounds the
// text it builds.
func strFormat(format string, args []Value, kwargs []KV, limit int) (string, error) {
	var b strings.Builder
	auto := 0
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c == '}' {
			if i+1 < len(format) && format[i+1] == '}' {
				i++
			}
			b.WriteByte('}')
			continue
		}
		if c != '{' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(format) && format[i+1] == '{' {
			b.WriteByte('{')
			i++
			continue
		}
		end := strings.IndexByte(format[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("single '{' encountered in format string")
		}
		field := format[i+1 : i+end]
		i += end
		name, spec, _ := strings.Cut(field, ":")
		name, conv, _ := strings.Cut(name, "!")
		var v Value
		if name == "" {
			if auto >= len(args) {
				return "", fmt.Errorf("Replacement index %d out of range for positional args tuple", auto)
			}
			v = args[auto]
			auto++
		} else if n, err := strconv.Atoi(name); err == nil {
			if n >= len(args) {
				return "", fmt.Errorf("Replacement index %d out of range for positional args tuple", n)
			}
			v = args[n]
		} else {
			found := false
			for _, kv := range kwargs {
				if kv.Key == name {
					v, found = kv.Value, true
				}
			}
			if !found {
				return "", fmt.Errorf("KeyError: %s", quoteRepr(name))
			}
		}
		switch conv { // the spec then formats the conversion's string
		case "r", "a":
			v = repr(v)
		case "s":
			v = toStr(v)
		}
		s := toStr(v)
		if spec != "" {
			var err error
			if s, err = applySpec(spec, v, limit); err != nil {
				return "", err
			}
		}
		if b.Len()+len(s) > limit {
			return "", errTooLong(limit)
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

// applySpec formats v by a format spec of Python's
// mini-language, [[fill]align][sign][#][0][width][,|_][.precision][type],
// as format(v, spec) does for strings, ints, bools (as ints) and floats;
// other values take no spec, as in Python. A width or precision past
// limit would make a text longer than limit.
func applySpec(spec string, v Value, limit int) (string, error) {
	bad := func() (string, error) {
		return "", fmt.Errorf("invalid format spec %q for object of type '%s'", spec, typeName(v))
	}
	var f fmtSpec
	rest := spec
	if r, n := utf8.DecodeRuneInString(rest); n > 0 && n < len(rest) && strings.IndexByte("<>^=", rest[n]) >= 0 && r != utf8.RuneError {
		f.fill, f.align, rest = rest[:n], rest[n], rest[n+1:]
	} else if rest != "" && strings.IndexByte("<>^=", rest[0]) >= 0 {
		f.align, rest = rest[0], rest[1:]
	}
	if rest != "" && strings.IndexByte("+- ", rest[0]) >= 0 {
		f.sign, rest = rest[0], rest[1:]
	}
	if strings.HasPrefix(rest, "#") {
		f.alt, rest = true, rest[1:]
	}
	if strings.HasPrefix(rest, "0") {
		f.zero, rest = true, rest[1:]
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i > 0 {
		w, err := strconv.Atoi(rest[:i])
		if err != nil || w > limit {
			return "", errTooLong(limit)
		}
		f.width, rest = w, rest[i:]
	}
	if rest != "" && (rest[0] == ',' || rest[0] == '_') {
		f.group, rest = rest[0], rest[1:]
	}
	f.prec = -1
	if strings.HasPrefix(rest, ".") {
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j == 1 {
			return "", fmt.Errorf("format specifier missing precision")
		}
		p, err := strconv.Atoi(rest[1:j])
		if err != nil || p > limit {
			return "", errTooLong(limit)
		}
		f.prec, rest = p, rest[j:]
	}
	if len(rest) > 1 {
		return bad()
	}
	typ := byte(0)
	if rest != "" {
		typ = rest[0]
	}
	if b, ok := v.(bool); ok { // bool's format is int's once a spec is given
		v = int64(0)
		if b {
			v = int64(1)
		}
	}
	var body, sign string
	numeric := true
	switch x := v.(type) {
	case string, Markup:
		str, _ := asString(x)
		if typ != 0 && typ != 's' || f.sign != 0 || f.alt || f.group != 0 || f.align == '=' {
			return bad()
		}
		if f.prec >= 0 {
			if rs := []rune(str); f.prec < len(rs) {
				str = string(rs[:f.prec])
			}
		}
		body, numeric = str, false
	case int64:
		switch typ {
		case 0, 'd', 'n', 'b', 'o', 'x', 'X', 'c':
			if f.prec >= 0 {
				return "", fmt.Errorf("precision not allowed in integer format specifier")
			}
			var err error
			if sign, body, err = f.formatInt(x, typ); err != nil {
				return "", err
			}
		case 'e', 'E', 'f', 'F', 'g', 'G', '%':
			sign, body = f.formatFloat(float64(x), typ)
		default:
			return bad()
		}
	case float64:
		switch typ {
		case 0, 'e', 'E', 'f', 'F', 'g', 'G', '%', 'n':
			if typ == 'n' {
				typ = 'g'
			}
			sign, body = f.formatFloat(x, typ)
		default:
			return bad()
		}
	default:
		return "", fmt.Errorf("unsupported format string passed to %s.__format__", typeName(v))
	}
	if numeric {
		switch {
		case strings.HasPrefix(sign, "-"):
		case f.sign == '+':
			sign = "+" + sign
		case f.sign == ' ':
			sign = " " + sign
		}
	}
	fill, align := f.fill, f.align
	if f.zero && fill == "" {
		fill = "0"
		if align == 0 && numeric {
			align = '='
		}
	}
	if fill == "" {
		fill = " "
	}
	if align == 0 {
		align = '<'
		if numeric {
			align = '>'
		}
	}
	n := f.width - utf8.RuneCountInString(sign) - utf8.RuneCountInString(body)
	if n <= 0 {
		return sign + body, nil
	}
	if f.group != 0 && align == '=' && fill == "0" {
		return "", fmt.Errorf("zero padding with a thousands separator is not supported")
	}
	switch align {
	case '<':
		return sign + body + strings.Repeat(fill, n), nil
	case '>':
		return strings.Repeat(fill, n) + sign + body, nil
	case '=':
		return sign + strings.Repeat(fill, n) + body, nil
	}
	left := n / 2
	return strings.Repeat(fill, left) + sign + body + strings.Repeat(fill, n-left), nil
}

// fmtSpec is a parsed format spec (see applySpec).
type fmtSpec struct {
	fill               string
	align, sign, group byte
	alt, zero          bool
	width, prec        int
}

// formatInt formats an int by type typ (0 for none), returning its sign
// ("-" or "") and its digits with any prefix.
func (f fmtSpec) formatInt(x int64, typ byte) (sign, body string, err error) {
	if typ == 'c' {
		if f.sign != 0 || f.alt || f.group != 0 {
			return "", "", fmt.Errorf("sign, alternate form and grouping are not allowed with integer format specifier 'c'")
		}
		if x < 0 || x > unicode.MaxRune {
			return "", "", fmt.Errorf("%%c arg not in range(0x110000)")
		}
		return "", string(rune(x)), nil
	}
	u := uint64(x)
	if x < 0 {
		sign, u = "-", uint64(-x)
	}
	base, prefix, every := 10, "", 3
	switch typ {
	case 'b':
		base, prefix, every = 2, "0b", 4
	case 'o':
		base, prefix, every = 8, "0o", 4
	case 'x', 'X':
		base, prefix, every = 16, "0x", 4
	}
	if f.group == ',' && base != 10 || typ == 'n' && f.group != 0 {
		return "", "", fmt.Errorf("cannot specify ',' with '%c'", typ)
	}
	body = strconv.FormatUint(u, base)
	if f.group != 0 {
		body = groupDigits(body, string(f.group), every)
	}
	if typ == 'X' {
		body, prefix = strings.ToUpper(body), "0X"
	}
	if f.alt { // the prefix goes with the sign, before any zero padding
		sign += prefix
	}
	return sign, body, nil
}

// formatFloat formats a float by type typ (0 for none: str(), or with a
// precision 'g' that keeps a digit after the point and switches to
// exponents one place sooner), returning its sign ("-" or "") and the
// rest.
func (f fmtSpec) formatFloat(x float64, typ byte) (sign, body string) {
	if math.Signbit(x) && !math.IsNaN(x) {
		sign, x = "-", -x
	}
	upper := typ == 'E' || typ == 'F' || typ == 'G'
	switch {
	case math.IsInf(x, 0):
		body = "inf"
	case math.IsNaN(x):
		body = "nan"
	case typ == 0 && f.prec < 0:
		body = formatFloat(x)
	default:
		prec := f.prec
		if prec < 0 {
			prec = 6
		}
		switch typ {
		case 'f', 'F':
			body = strconv.FormatFloat(x, 'f', prec, 64)
		case '%':
			body = strconv.FormatFloat(x*100, 'f', prec, 64)
		case 'e', 'E':
			body = strconv.FormatFloat(x, 'e', prec, 64)
		default: // 'g', 'G', or none with a precision
			p := max(prec, 1)
			e := strconv.FormatFloat(x, 'e', p-1, 64)
			exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
			limit := p
			if typ == 0 {
				limit = p - 1
			}
			if exp < -4 || exp >= limit {
				mant, ex, _ := strings.Cut(e, "e")
				if !f.alt {
					mant = trimZeros(mant)
				}
				body = mant + "e" + ex
			} else {
				body = strconv.FormatFloat(x, 'f', max(p-1-exp, 0), 64)
				if !f.alt {
					body = trimZeros(body)
				}
				if typ == 0 && !strings.Contains(body, ".") {
					body += ".0"
				}
			}
		}
		if f.alt && !strings.ContainsAny(body, ".e") {
			body += "."
		}
		if typ == '%' {
			body += "%"
		}
	}
	if f.group != 0 {
		intPart := body
		for i, c := range body {
			if c < '0' || c > '9' {
				intPart = body[:i]
				break
			}
		}
		body = groupDigits(intPart, string(f.group), 3) + body[len(intPart):]
	}
	if upper {
		body = strings.ToUpper(body)
	}
	return sign, body
}

// trimZeros drops the zeros that end the fraction of a decimal, and its
// point if nothing is left after it.
func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}

// groupDigits puts sep between every group of `every` digits of digits,
// from the right.
func groupDigits(digits, sep string, every int) string {
	if len(digits) <= every {
		return digits
	}
	var b strings.Builder
	first := len(digits) % every
	if first > 0 {
		b.WriteString(digits[:first])
	}
	for i := first; i < len(digits); i += every {
		if b.Len() > 0 {
			b.WriteString(sep)
		}
		b.WriteString(digits[i : i+every])
	}
	return b.String()
}

// htmlEscape is markupsafe's escape.
func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}
