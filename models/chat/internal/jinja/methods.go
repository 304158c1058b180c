package jinja

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The Python methods templates call on strings, dicts and lists. Methods
// that change a list or dict in place are refused, as transformers'
// ImmutableSandboxedEnvironment refuses them.

var strMethods = map[string]bool{
	"strip": true, "lstrip": true, "rstrip": true, "split": true, "rsplit": true, "splitlines": true,
	"startswith": true, "endswith": true, "upper": true, "lower": true, "title": true, "capitalize": true,
	"replace": true, "format": true, "count": true, "find": true, "rfind": true, "index": true, "rindex": true,
	"join": true, "isdigit": true, "isalpha": true, "isalnum": true, "isspace": true, "isupper": true,
	"islower": true, "isnumeric": true, "isdecimal": true, "swapcase": true, "casefold": true, "center": true,
	"ljust": true, "rjust": true, "zfill": true, "partition": true, "rpartition": true,
	"removeprefix": true, "removesuffix": true, "istitle": true, "expandtabs": true,
}

var dictMethods = map[string]bool{"items": true, "keys": true, "values": true, "get": true, "copy": true}

// mutators are the list and dict methods the immutable sandbox refuses.
var mutators = map[string]bool{
	"append": true, "extend": true, "insert": true, "pop": true, "remove": true, "clear": true,
	"sort": true, "reverse": true, "update": true, "popitem": true, "setdefault": true,
}

var listMethods = map[string]bool{"index": true, "count": true, "copy": true}

func hasMethod(obj Value, name string) bool {
	switch obj.(type) {
	case string, Markup:
		return strMethods[name]
	case *Dict:
		return dictMethods[name] || mutators[name] && name != "append" && name != "extend" && name != "insert" && name != "remove" && name != "sort" && name != "reverse"
	case []Value:
		return listMethods[name] || mutators[name] && name != "update" && name != "popitem" && name != "setdefault"
	case Tuple:
		return name == "index" || name == "count"
	}
	return false
}

func wantArgs(name string, args []Value, min, max int) error {
	if len(args) < min || len(args) > max {
		if min == max {
			return fmt.Errorf("%s() takes exactly %d argument(s) (%d given)", name, min, len(args))
		}
		return fmt.Errorf("%s() takes from %d to %d arguments (%d given)", name, min, max, len(args))
	}
	return nil
}

func (r *renderer) callMethod(m *method, args []Value, kwargs []KV, at interface{ position() pos }) (Value, error) {
	if err := r.step(at); err != nil {
		return nil, err
	}
	switch recv := m.recv.(type) {
	case string:
		return strMethod(recv, m.name, args, kwargs, r.lim.MaxOutput)
	case Markup:
		return strMethod(string(recv), m.name, args, kwargs, r.lim.MaxOutput)
	case *Dict:
		if mutators[m.name] {
			return nil, fmt.Errorf("access to attribute '%s' of 'dict' object is unsafe.", m.name)
		}
		switch m.name {
		case "items":
			out := make([]Value, recv.Len())
			for i, k := range recv.keys {
				out[i] = Tuple{k, recv.vals[i]}
			}
			return out, wantArgs("items", args, 0, 0)
		case "keys":
			return append([]Value(nil), recv.keys...), wantArgs("keys", args, 0, 0)
		case "values":
			return append([]Value(nil), recv.vals...), wantArgs("values", args, 0, 0)
		case "get":
			if err := wantArgs("get", args, 1, 2); err != nil {
				return nil, err
			}
			if _, err := dictKey(args[0]); err != nil {
				return nil, err
			}
			if v, ok := recv.Get(args[0]); ok {
				return v, nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return nil, nil
		case "copy":
			d := NewDict()
			for i, k := range recv.keys {
				_ = d.Set(k, recv.vals[i])
			}
			return d, nil
		}
	case []Value, Tuple:
		if mutators[m.name] {
			return nil, fmt.Errorf("access to attribute '%s' of 'list' object is unsafe.", m.name)
		}
		items, _ := seqOf(recv)
		switch m.name {
		case "index":
			if err := wantArgs("index", args, 1, 1); err != nil {
				return nil, err
			}
			for i, it := range items {
				if equal(it, args[0]) {
					return int64(i), nil
				}
			}
			return nil, fmt.Errorf("%s is not in list", repr(args[0]))
		case "count":
			if err := wantArgs("count", args, 1, 1); err != nil {
				return nil, err
			}
			n := int64(0)
			for _, it := range items {
				if equal(it, args[0]) {
					n++
				}
			}
			return n, nil
		case "copy":
			return append([]Value(nil), items...), nil
		}
	case *loopObj:
		switch m.name {
		case "cycle":
			if len(args) == 0 {
				return nil, fmt.Errorf("no items for cycling given")
			}
			return args[recv.index%len(args)], nil
		case "changed":
			v := Tuple(args)
			if recv.hasLast && equal(recv.changed, []Value(v)) {
				return false, nil
			}
			recv.changed, recv.hasLast = v, true
			return true, nil
		}
	}
	return nil, fmt.Errorf("'%s' object has no attribute '%s'", typeName(m.recv), m.name)
}

func strArg(name string, v Value) (string, error) {
	s, ok := asString(v)
	if !ok {
		return "", fmt.Errorf("%s arg must be None or str, not %s", name, typeName(v))
	}
	return s, nil
}

// optChars is the characters argument of strip and its kin: whitespace
// when absent or None.
func optChars(name string, args []Value) (string, bool, error) {
	if len(args) == 0 || args[0] == nil {
		return "", false, nil
	}
	s, err := strArg(name, args[0])
	return s, true, err
}

func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || r == '\x1c' || r == '\x1d' || r == '\x1e' || r == '\x1f'
}

// strMethod calls Python's str method name on s; limit bounds the length
// of the strings it builds.
func strMethod(s, name string, args []Value, kwargs []KV, limit int) (Value, error) {
	if name != "format" && len(kwargs) > 0 && name != "split" && name != "rsplit" && name != "splitlines" && name != "expandtabs" {
		return nil, fmt.Errorf("%s() takes no keyword arguments", name)
	}
	kw := func(key string, pos int) (Value, bool) {
		for _, a := range kwargs {
			if a.Key == key {
				return a.Value, true
			}
		}
		if pos < len(args) {
			return args[pos], true
		}
		return nil, false
	}
	switch name {
	case "strip", "lstrip", "rstrip":
		if err := wantArgs(name, args, 0, 1); err != nil {
			return nil, err
		}
		chars, given, err := optChars(name, args)
		if err != nil {
			return nil, err
		}
		cut := isPySpace
		if given {
			cut = func(r rune) bool { return strings.ContainsRune(chars, r) }
		}
		switch name {
		case "strip":
			return strings.TrimFunc(s, cut), nil
		case "lstrip":
			return strings.TrimLeftFunc(s, cut), nil
		}
		return strings.TrimRightFunc(s, cut), nil
	case "split", "rsplit":
		sepV, _ := kw("sep", 0)
		maxV, hasMax := kw("maxsplit", 1)
		max := int64(-1)
		if hasMax {
			n, ok := asInt(maxV)
			if !ok {
				return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(maxV))
			}
			max = n
		}
		var parts []string
		if sepV == nil {
			parts = splitWhitespace(s, max, name == "rsplit")
		} else {
			sep, err := strArg(name, sepV)
			if err != nil {
				return nil, err
			}
			if sep == "" {
				return nil, fmt.Errorf("empty separator")
			}
			n := -1
			if max >= 0 {
				n = int(max) + 1
			}
			if name == "split" {
				parts = strings.SplitN(s, sep, n)
			} else {
				parts = rsplitN(s, sep, n)
			}
		}
		out := make([]Value, len(parts))
		for i, p := range parts {
			out[i] = p
		}
		return out, nil
	case "splitlines":
		keep := false
		if v, ok := kw("keepends", 0); ok {
			keep = truth(v)
		}
		var out []Value
		for len(s) > 0 {
			i := strings.IndexAny(s, "\n\r\v\f\x1c\x1d\x1e\u0085\u2028\u2029")
			if i < 0 {
				out = append(out, s)
				break
			}
			n := 1
			if strings.HasPrefix(s[i:], "\r\n") {
				n = 2
			} else if s[i] >= 0x80 {
				_, size := utfDecode(s[i:])
				n = size
			}
			if keep {
				out = append(out, s[:i+n])
			} else {
				out = append(out, s[:i])
			}
			s = s[i+n:]
		}
		if out == nil {
			out = []Value{}
		}
		return out, nil
	case "startswith", "endswith":
		if err := wantArgs(name, args, 1, 1); err != nil {
			return nil, err
		}
		var cands []Value
		if t, ok := args[0].(Tuple); ok {
			cands = t
		} else {
			cands = []Value{args[0]}
		}
		for _, c := range cands {
			cs, ok := asString(c)
			if !ok {
				return nil, fmt.Errorf("%s first arg must be str or a tuple of str, not %s", name, typeName(c))
			}
			if name == "startswith" && strings.HasPrefix(s, cs) || name == "endswith" && strings.HasSuffix(s, cs) {
				return true, nil
			}
		}
		return false, nil
	case "upper":
		return pyUpper(s), nil
	case "lower", "casefold":
		return pyLower(s), nil
	case "swapcase":
		return strings.Map(func(r rune) rune {
			if unicode.IsUpper(r) {
				return unicode.ToLower(r)
			}
			return unicode.ToUpper(r)
		}, s), nil
	case "title":
		return pyTitle(s), nil
	case "capitalize":
		return pyCapitalize(s), nil
	case "replace":
		if err := wantArgs(name, args, 2, 3); err != nil {
			return nil, err
		}
		old, err := strArg(name, args[0])
		if err != nil {
			return nil, err
		}
		repl, err := strArg(name, args[1])
		if err != nil {
			return nil, err
		}
		n := -1
		if len(args) == 3 {
			c, ok := asInt(args[2])
			if !ok {
				return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(args[2]))
			}
			n = int(c)
		}
		// The text's length is known before it is built: a replacement
		// of an empty old string goes between every two characters.
		k := int64(utf8.RuneCountInString(s) + 1)
		if old != "" {
			k = int64(strings.Count(s, old))
		}
		if n >= 0 {
			k = min(k, int64(n))
		}
		if int64(len(s))+k*int64(len(repl)-len(old)) > int64(limit) {
			return nil, errTooLong(limit)
		}
		return strings.Replace(s, old, repl, n), nil
	case "format":
		return strFormat(s, args, kwargs, limit)
	case "count", "find", "rfind", "index", "rindex":
		if err := wantArgs(name, args, 1, 1); err != nil {
			return nil, err
		}
		sub, err := strArg(name, args[0])
		if err != nil {
			return nil, err
		}
		switch name {
		case "count":
			if sub == "" {
				return int64(len([]rune(s)) + 1), nil
			}
			return int64(strings.Count(s, sub)), nil
		case "find", "index":
			i := strings.Index(s, sub)
			if i < 0 && name == "index" {
				return nil, fmt.Errorf("substring not found")
			}
			return runeIndex(s, i), nil
		}
		i := strings.LastIndex(s, sub)
		if i < 0 && name == "rindex" {
			return nil, fmt.Errorf("substring not found")
		}
		return runeIndex(s, i), nil
	case "join":
		if err := wantArgs(name, args, 1, 1); err != nil {
			return nil, err
		}
		items, err := iterate(args[0])
		if err != nil {
			return nil, err
		}
		parts := make([]string, len(items))
		var total int64
		for i, it := range items {
			p, ok := asString(it)
			if !ok {
				return nil, fmt.Errorf("sequence item %d: expected str instance, %s found", i, typeName(it))
			}
			parts[i] = p
			if total += int64(len(p) + len(s)); total > int64(limit) {
				return nil, errTooLong(limit)
			}
		}
		return strings.Join(parts, s), nil
	case "isdigit", "isdecimal", "isnumeric", "isalpha", "isalnum", "isspace":
		if s == "" {
			return false, nil
		}
		for _, r := range s {
			var ok bool
			switch name {
			case "isdigit", "isdecimal":
				ok = unicode.IsDigit(r)
			case "isnumeric":
				ok = unicode.IsNumber(r)
			case "isalpha":
				ok = unicode.IsLetter(r)
			case "isalnum":
				ok = unicode.IsLetter(r) || unicode.IsNumber(r)
			case "isspace":
				ok = isPySpace(r)
			}
			if !ok {
				return false, nil
			}
		}
		return true, nil
	case "isupper", "islower":
		cased := false
		for _, r := range s {
			if unicode.IsUpper(r) || unicode.IsTitle(r) {
				if name == "islower" {
					return false, nil
				}
				cased = true
			} else if unicode.IsLower(r) {
				if name == "isupper" {
					return false, nil
				}
				cased = true
			}
		}
		return cased, nil
	case "istitle":
		return s != "" && pyTitle(s) == s && strings.ToLower(s) != s, nil
	case "center", "ljust", "rjust":
		if err := wantArgs(name, args, 1, 2); err != nil {
			return nil, err
		}
		w, ok := asInt(args[0])
		if !ok {
			return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(args[0]))
		}
		fill := " "
		if len(args) == 2 {
			f, err := strArg(name, args[1])
			if err != nil || len([]rune(f)) != 1 {
				return nil, fmt.Errorf("The fill character must be exactly one character long")
			}
			fill = f
		}
		return pad(s, w, fill, name, limit)
	case "zfill":
		if err := wantArgs(name, args, 1, 1); err != nil {
			return nil, err
		}
		w, ok := asInt(args[0])
		if !ok {
			return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(args[0]))
		}
		if w > int64(limit) {
			return nil, errTooLong(limit)
		}
		n := int(w) - len([]rune(s))
		if n <= 0 {
			return s, nil
		}
		if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
			return s[:1] + strings.Repeat("0", n) + s[1:], nil
		}
		return strings.Repeat("0", n) + s, nil
	case "partition", "rpartition":
		if err := wantArgs(name, args, 1, 1); err != nil {
			return nil, err
		}
		sep, err := strArg(name, args[0])
		if err != nil {
			return nil, err
		}
		var i int
		if name == "partition" {
			i = strings.Index(s, sep)
		} else {
			i = strings.LastIndex(s, sep)
		}
		if i < 0 {
			if name == "partition" {
				return Tuple{s, "", ""}, nil
			}
			return Tuple{"", "", s}, nil
		}
		return Tuple{s[:i], sep, s[i+len(sep):]}, nil
	case "removeprefix", "removesuffix":
		if err := wantArgs(name, args, 1, 1); err != nil {
			return nil, err
		}
		a, err := strArg(name, args[0])
		if err != nil {
			return nil, err
		}
		if name == "removeprefix" {
			return strings.TrimPrefix(s, a), nil
		}
		return strings.TrimSuffix(s, a), nil
	case "expandtabs":
		if err := wantArgs(name, args, 0, 1); err != nil {
			return nil, err
		}
		size := int64(8)
		if t, ok := kw("tabsize", 0); ok {
			if size, ok = asInt(t); !ok {
				return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(t))
			}
		}
		return expandTabs(s, size, limit)
	}
	return nil, fmt.Errorf("'str' object has no attribute '%s'", name)
}

func runeIndex(s string, i int) int64 {
	if i < 0 {
		return -1
	}
	return int64(len([]rune(s[:i])))
}

func utfDecode(s string) (rune, int) {
	for i, r := range s {
		if i == 0 {
			return r, len(string(r))
		}
	}
	return 0, 1
}

// splitWhitespace is str.split() and str.rsplit() without a separator.
func splitWhitespace(s string, max int64, fromRight bool) []string {
	fields := strings.FieldsFunc(s, isPySpace)
	if max < 0 || int64(len(fields)) <= max+1 {
		if fields == nil {
			return []string{}
		}
		return fields
	}
	if !fromRight {
		// Split off max fields from the left; the rest keeps its inner spacing.
		rest := strings.TrimLeftFunc(s, isPySpace)
		var out []string
		for k := int64(0); k < max; k++ {
			i := strings.IndexFunc(rest, isPySpace)
			out = append(out, rest[:i])
			rest = strings.TrimLeftFunc(rest[i:], isPySpace)
		}
		return append(out, rest)
	}
	rest := strings.TrimRightFunc(s, isPySpace)
	var out []string
	for k := int64(0); k < max; k++ {
		i := strings.LastIndexFunc(rest, isPySpace)
		out = append([]string{rest[i+1:]}, out...)
		rest = strings.TrimRightFunc(rest[:i], isPySpace)
	}
	return append([]string{rest}, out...)
}

func rsplitN(s, sep string, n int) []string {
	if n < 0 {
		return strings.Split(s, sep)
	}
	var out []string
	for len(out) < n-1 {
		i := strings.LastIndex(s, sep)
		if i < 0 {
			break
		}
		out = append([]string{s[i+len(sep):]}, out...)
		s = s[:i]
	}
	return append([]string{s}, out...)
}

// pyTitle is str.title: a letter after a non-letter is upper-cased, other
// letters lower-cased.
func pyTitle(s string) string {
	var b strings.Builder
	prevCased := false
	for _, r := range s {
		switch {
		case unicode.IsLetter(r):
			if prevCased {
				b.WriteString(pyLower(string(r)))
			} else {
				b.WriteString(pyTitleRune(r))
			}
			prevCased = true
		default:
			b.WriteRune(r)
			prevCased = false
		}
	}
	return b.String()
}

// pyCapitalize is str.capitalize: the first character upper-cased, the
// rest lower-cased.
func pyCapitalize(s string) string {
	for i, r := range s {
		return pyTitleRune(r) + pyLower(s[i+len(string(r)):])
	}
	return s
}

// pad is str.center, ljust or rjust (how) with fill to width characters;
// a text longer than limit bytes is an error.
func pad(s string, width int64, fill, how string, limit int) (string, error) {
	n64 := width - int64(utf8.RuneCountInString(s))
	if n64 <= 0 {
		return s, nil
	}
	if width > int64(limit) || int64(len(s))+n64*int64(len(fill)) > int64(limit) {
		return "", errTooLong(limit)
	}
	n, w := int(n64), int(width)
	switch how {
	case "ljust":
		return s + strings.Repeat(fill, n), nil
	case "rjust":
		return strings.Repeat(fill, n) + s, nil
	}
	// Python's centering puts the extra fill on the right when n and
	// width are both odd... precisely: left = n/2 + (n & width & 1).
	left := n/2 + (n & w & 1)
	return strings.Repeat(fill, left) + s + strings.Repeat(fill, n-left), nil
}

// specialUpper holds the characters whose upper case is more than one
// character (Unicode's SpecialCasing.txt, unconditional mappings), which
// Python applies and Go's unicode.ToUpper does not.
var specialUpper = map[rune]string{
	'ß': "SS", 'ŉ': "ʼN", 'ǰ': "J̌", 'ΐ': "Ϊ́", 'ΰ': "Ϋ́", 'և': "ԵՒ",
	'ẖ': "H̱", 'ẗ': "T̈", 'ẘ': "W̊", 'ẙ': "Y̊", 'ẚ': "Aʾ",
	'ﬀ': "FF", 'ﬁ': "FI", 'ﬂ': "FL", 'ﬃ': "FFI", 'ﬄ': "FFL", 'ﬅ': "ST", 'ﬆ': "ST",
	'ﬓ': "ՄՆ", 'ﬔ': "ՄԵ", 'ﬕ': "ՄԻ", 'ﬖ': "ՎՆ", 'ﬗ': "ՄԽ",
}

// specialTitle is the same for title case, where it differs.
var specialTitle = map[rune]string{
	'ß': "Ss", 'ﬀ': "Ff", 'ﬁ': "Fi", 'ﬂ': "Fl", 'ﬃ': "Ffi", 'ﬄ': "Ffl", 'ﬅ': "St", 'ﬆ': "St",
	'և': "Եւ", 'ﬓ': "Մն", 'ﬔ': "Մե", 'ﬕ': "Մի", 'ﬖ': "Վն", 'ﬗ': "Մխ",
}

func pyUpper(s string) string {
	var b strings.Builder
	for _, r := range s {
		if u, ok := specialUpper[r]; ok {
			b.WriteString(u)
		} else {
			b.WriteRune(unicode.ToUpper(r))
		}
	}
	return b.String()
}

func pyLower(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == 'İ' {
			b.WriteString("i̇")
		} else {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

func pyTitleRune(r rune) string {
	if t, ok := specialTitle[r]; ok {
		return t
	}
	if u, ok := specialUpper[r]; ok {
		return u
	}
	return string(unicode.ToTitle(r))
}

// expandTabs is str.expandtabs: each tab becomes the spaces up to the next
// column that is a multiple of size (none for size <= 0), the column
// counting characters since the last newline or carriage return.
func expandTabs(s string, size int64, limit int) (string, error) {
	var b strings.Builder
	col := int64(0)
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		c := s[i : i+w]
		i += w
		switch r {
		case '\t':
			if size > 0 {
				n := size - col%size
				if int64(b.Len())+n > int64(limit) {
					return "", errTooLong(limit)
				}
				b.WriteString(strings.Repeat(" ", int(n)))
				col += n
			}
			continue
		case '\n', '\r':
			col = -1
		}
		b.WriteString(c)
		col++
	}
	return b.String(), nil
}
