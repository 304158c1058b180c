package jinja

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// filterFunc implements a filter: v | name(args, kwargs).
type filterFunc func(r *renderer, v Value, a *argList) (Value, error)

// argList binds a filter's or test's arguments to parameter names, as a
// Python signature would.
type argList struct {
	fname  string
	args   []Value
	kwargs []KV
	used   int
	s      *scope
	at     interface{ position() pos }
}

// get returns the parameter at position i (0 is the first after the
// value) or named name, or def.
func (a *argList) get(i int, name string, def Value) Value {
	for _, kv := range a.kwargs {
		if kv.Key == name {
			return kv.Value
		}
	}
	if i >= 0 && i < len(a.args) {
		return a.args[i]
	}
	return def
}

// check refuses more positional arguments than max and keyword arguments
// not in names.
func (a *argList) check(max int, names ...string) error {
	if len(a.args) > max {
		return fmt.Errorf("%s() takes at most %d argument(s) after the value (%d given)", a.fname, max, len(a.args))
	}
	for _, kv := range a.kwargs {
		ok := false
		for _, n := range names {
			ok = ok || n == kv.Key
		}
		if !ok {
			return fmt.Errorf("%s() got an unexpected keyword argument '%s'", a.fname, kv.Key)
		}
	}
	return nil
}

var filters map[string]filterFunc

func init() {
	filters = map[string]filterFunc{
		"abs":         fAbs,
		"attr":        fAttr,
		"batch":       fBatch,
		"capitalize":  strFilter(pyCapitalize),
		"center":      fCenter,
		"count":       fLength,
		"d":           fDefault,
		"default":     fDefault,
		"dictsort":    fDictsort,
		"e":           fEscape,
		"escape":      fEscape,
		"first":       fFirst,
		"float":       fFloat,
		"forceescape": fForceEscape,
		"format":      fFormat,
		"indent":      fIndent,
		"int":         fInt,
		"items":       fItems,
		"join":        fJoin,
		"last":        fLast,
		"length":      fLength,
		"list":        fList,
		"lower":       strFilter(pyLower),
		"map":         fMap,
		"max":         fMinMax(1),
		"min":         fMinMax(-1),
		"reject":      fSelect(false, false),
		"rejectattr":  fSelect(false, true),
		"replace":     fReplace,
		"reverse":     fReverse,
		"round":       fRound,
		"safe":        fSafe,
		"select":      fSelect(true, false),
		"selectattr":  fSelect(true, true),
		"sort":        fSort,
		"string":      fString,
		"striptags":   fStriptags,
		"sum":         fSum,
		"title":       strFilter(jinjaTitle),
		"tojson":      fToJSON,
		"trim":        fTrim,
		"truncate":    fTruncate,
		"unique":      fUnique,
		"upper":       strFilter(pyUpper),
		"wordcount":   fWordcount,
	}
}

func (r *renderer) applyFilter(f *filterExpr, v Value, s *scope) (Value, error) {
	fn, ok := filters[f.name]
	if !ok {
		return nil, r.errAt(f, fmt.Errorf("no filter named '%s'", f.name))
	}
	a := &argList{fname: f.name, s: s, at: f}
	for _, x := range f.args {
		av, err := r.eval(x, s)
		if err != nil {
			return nil, err
		}
		a.args = append(a.args, av)
	}
	for i, name := range f.kwNames {
		av, err := r.eval(f.kwVals[i], s)
		if err != nil {
			return nil, err
		}
		a.kwargs = append(a.kwargs, KV{name, av})
	}
	if err := r.step(f); err != nil {
		return nil, err
	}
	out, err := fn(r, v, a)
	if err != nil {
		return nil, r.errAt(f, err)
	}
	return out, nil
}

// strFilter makes a filter that applies fn to str(v).
func strFilter(fn func(string) string) filterFunc {
	return func(r *renderer, v Value, a *argList) (Value, error) {
		if err := a.check(0); err != nil {
			return nil, err
		}
		return fn(toStr(v)), nil
	}
}

var wordBeginning = regexp.MustCompile(`([-\s\[\](){}]+)`)

// jinjaTitle is the title filter: each word (split at whitespace,
// hyphens and brackets) gets its first character upper-cased and the
// rest lower-cased.
func jinjaTitle(s string) string {
	var b strings.Builder
	last := 0
	emit := func(w string) {
		for i, r := range w {
			b.WriteString(pyUpper(string(r)) + pyLower(w[i+len(string(r)):]))
			return
		}
	}
	for _, m := range wordBeginning.FindAllStringIndex(s, -1) {
		emit(s[last:m[0]])
		b.WriteString(s[m[0]:m[1]])
		last = m[1]
	}
	emit(s[last:])
	return b.String()
}

func fAbs(r *renderer, v Value, a *argList) (Value, error) {
	switch n := v.(type) {
	case int64:
		if n == math.MinInt64 {
			return nil, errOverflow
		}
		return abs64(n), nil
	case bool:
		i, _ := asInt(n)
		return i, nil
	case float64:
		return math.Abs(n), nil
	}
	return nil, fmt.Errorf("bad operand type for abs(): '%s'", typeName(v))
}

func fAttr(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(1); err != nil {
		return nil, err
	}
	name, ok := a.get(0, "name", nil).(string)
	if !ok {
		return nil, fmt.Errorf("attr() needs an attribute name")
	}
	// attr reads Python attributes only, never items.
	switch o := v.(type) {
	case Undefined:
		return nil, o.err()
	case *Dict:
		if !hasMethod(v, name) {
			return undefinedAttr(v, name), nil
		}
	}
	return getattr(v, name)
}

func fBatch(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(2, "linecount", "fill_with"); err != nil {
		return nil, err
	}
	n, ok := asInt(a.get(0, "linecount", nil))
	if !ok || n <= 0 {
		return nil, fmt.Errorf("batch() needs a positive line count")
	}
	fill := a.get(1, "fill_with", nil)
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	var out []Value
	for i := 0; i < len(items); i += int(n) {
		end := min(i+int(n), len(items))
		row := append([]Value(nil), items[i:end]...)
		if fill != nil {
			for len(row) < int(n) {
				row = append(row, fill)
			}
		}
		out = append(out, row)
	}
	if out == nil {
		out = []Value{}
	}
	return out, nil
}

func fCenter(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(1, "width"); err != nil {
		return nil, err
	}
	w, ok := asInt(a.get(0, "width", int64(80)))
	if !ok {
		return nil, fmt.Errorf("center() width must be an integer")
	}
	return pad(toStr(v), w, " ", "center", r.lim.MaxOutput)
}

func fLength(r *renderer, v Value, a *argList) (Value, error) {
	n, err := length(v)
	return int64(n), err
}

func fDefault(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(2, "default_value", "boolean"); err != nil {
		return nil, err
	}
	def := a.get(0, "default_value", "")
	boolean := truth(a.get(1, "boolean", false))
	if _, ok := v.(Undefined); ok || boolean && !truth(v) {
		return def, nil
	}
	return v, nil
}

func fDictsort(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(3, "case_sensitive", "by", "reverse"); err != nil {
		return nil, err
	}
	d, ok := v.(*Dict)
	if !ok {
		return nil, fmt.Errorf("dictsort() needs a dict, not %s", typeName(v))
	}
	cs := truth(a.get(0, "case_sensitive", false))
	by := a.get(1, "by", "key")
	pos := 0
	switch by {
	case "key":
	case "value":
		pos = 1
	default:
		return nil, fmt.Errorf("You can only sort by either 'key' or 'value'")
	}
	items := make([]Value, d.Len())
	for i, k := range d.keys {
		items[i] = Tuple{k, d.vals[i]}
	}
	err := sortValues(items, func(it Value) Value { return caseKey(it.(Tuple)[pos], cs) }, truth(a.get(2, "reverse", false)))
	return items, err
}

// caseKey lower-cases strings for case-insensitive sorting.
func caseKey(v Value, caseSensitive bool) Value {
	if s, ok := v.(string); ok && !caseSensitive {
		return strings.ToLower(s)
	}
	return v
}

func fEscape(r *renderer, v Value, a *argList) (Value, error) {
	if m, ok := v.(Markup); ok {
		return m, nil
	}
	return Markup(htmlEscape(toStr(v))), nil
}

func fForceEscape(r *renderer, v Value, a *argList) (Value, error) {
	return Markup(htmlEscape(toStr(v))), nil
}

func fSafe(r *renderer, v Value, a *argList) (Value, error) {
	return Markup(toStr(v)), nil
}

func fFirst(r *renderer, v Value, a *argList) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return Undefined{Hint: "No first item, sequence was empty."}, nil
	}
	return items[0], nil
}

func fLast(r *renderer, v Value, a *argList) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return Undefined{Hint: "No last item, sequence was empty."}, nil
	}
	return items[len(items)-1], nil
}

func fFloat(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(1, "default"); err != nil {
		return nil, err
	}
	def := a.get(0, "default", 0.0)
	if f, ok := asFloat(v); ok {
		return f, nil
	}
	if s, ok := asString(v); ok {
		if f, ok := pyParseFloat(s); ok {
			return f, nil
		}
	}
	return def, nil
}

// pyParseFloat is Python's float(str): surrounding whitespace allowed,
// underscores between digits, inf and nan spelled out.
func pyParseFloat(s string) (float64, bool) {
	s = strings.TrimFunc(s, isPySpace)
	switch strings.ToLower(strings.TrimLeft(s, "+-")) {
	case "inf", "infinity", "nan":
	default:
		if strings.ContainsAny(strings.ToLower(s), "xpn") {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !strings.Contains(err.Error(), "range") {
		return 0, false
	}
	return f, true
}

func fInt(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(2, "default", "base"); err != nil {
		return nil, err
	}
	def := a.get(0, "default", int64(0))
	base, _ := asInt(a.get(1, "base", int64(10)))
	switch n := v.(type) {
	case int64:
		return n, nil
	case bool:
		i, _ := asInt(n)
		return i, nil
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) || math.Abs(n) >= 1<<63 {
			return def, nil
		}
		return int64(n), nil
	}
	if s, ok := asString(v); ok {
		t := strings.ReplaceAll(strings.TrimFunc(s, isPySpace), "_", "")
		if len(t) > 2 && t[0] == '0' {
			// Python's int(s, base) accepts the prefix of its own base.
			if p := strings.ToLower(t[1:2]); p == "x" && base == 16 || p == "o" && base == 8 || p == "b" && base == 2 {
				t = t[2:]
			}
		}
		if i, err := strconv.ParseInt(t, int(base), 64); err == nil {
			return i, nil
		}
		if base == 10 {
			if f, ok := pyParseFloat(s); ok && !math.IsNaN(f) && !math.IsInf(f, 0) && math.Abs(f) < 1<<63 {
				return int64(f), nil
			}
		}
	}
	return def, nil
}

func fFormat(r *renderer, v Value, a *argList) (Value, error) {
	s, ok := asString(v)
	if !ok {
		s = toStr(v)
	}
	if len(a.args) > 0 && len(a.kwargs) > 0 {
		return nil, fmt.Errorf("can't handle positional and keyword arguments at the same time")
	}
	if len(a.kwargs) > 0 {
		d := NewDict()
		for _, kv := range a.kwargs {
			_ = d.Set(kv.Key, kv.Value)
		}
		return percentFormat(s, d, r.lim.MaxOutput)
	}
	return percentFormat(s, Tuple(a.args), r.lim.MaxOutput)
}

func fIndent(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(3, "width", "first", "blank"); err != nil {
		return nil, err
	}
	var ind string
	switch w := a.get(0, "width", int64(4)).(type) {
	case string:
		ind = w
	default:
		n, ok := asInt(w)
		if !ok {
			return nil, fmt.Errorf("indent() width must be an integer or a string")
		}
		if n > int64(r.lim.MaxOutput) {
			return nil, errTooLong(r.lim.MaxOutput)
		}
		ind = strings.Repeat(" ", int(max(n, 0)))
	}
	first := truth(a.get(1, "first", false))
	blank := truth(a.get(2, "blank", false))
	lines, _ := strMethod(toStr(v)+"\n", "splitlines", nil, nil, r.lim.MaxOutput)
	ls := lines.([]Value)
	// At most one indentation per line: the text's length is bounded
	// before it is built.
	if int64(len(toStr(v)))+int64(len(ls)+1)*int64(len(ind)) > int64(r.lim.MaxOutput) {
		return nil, errTooLong(r.lim.MaxOutput)
	}
	var b strings.Builder
	for i, l := range ls {
		line := l.(string)
		if i > 0 {
			b.WriteByte('\n')
			if blank || line != "" {
				b.WriteString(ind)
			}
		}
		b.WriteString(line)
	}
	out := b.String()
	if first {
		out = ind + out
	}
	return out, nil
}

func fItems(r *renderer, v Value, a *argList) (Value, error) {
	switch d := v.(type) {
	case Undefined:
		return []Value{}, nil
	case *Dict:
		out := make([]Value, d.Len())
		for i, k := range d.keys {
			out[i] = Tuple{k, d.vals[i]}
		}
		return out, nil
	}
	return nil, fmt.Errorf("Can only get item pairs from a mapping.")
}

// attrGetter returns a function reading a dotted attribute path ("a.b",
// "items.0") from a value, as Jinja's make_attrgetter does.
func attrGetter(attr Value, def Value) (func(Value) (Value, error), error) {
	var parts []Value
	switch at := attr.(type) {
	case string:
		for _, p := range strings.Split(at, ".") {
			if n, err := strconv.ParseInt(p, 10, 64); err == nil {
				parts = append(parts, n)
			} else {
				parts = append(parts, p)
			}
		}
	case int64:
		parts = []Value{at}
	default:
		return nil, fmt.Errorf("attribute must be a string or an integer, not %s", typeName(attr))
	}
	return func(v Value) (Value, error) {
		for _, p := range parts {
			var err error
			if v, err = getitem(v, p); err != nil {
				return nil, err
			}
		}
		if _, ok := v.(Undefined); ok && def != nil {
			return def, nil
		}
		return v, nil
	}, nil
}

func fJoin(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(2, "d", "attribute"); err != nil {
		return nil, err
	}
	sep := toStr(a.get(0, "d", ""))
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	if attr := a.get(1, "attribute", nil); attr != nil {
		get, err := attrGetter(attr, nil)
		if err != nil {
			return nil, err
		}
		for i := range items {
			if items[i], err = get(items[i]); err != nil {
				return nil, err
			}
		}
	}
	parts := make([]string, len(items))
	total := 0
	for i, it := range items {
		parts[i] = toStr(it)
		total += len(parts[i]) + len(sep)
		if total > r.lim.MaxOutput {
			return nil, fmt.Errorf("string exceeds %d bytes", r.lim.MaxOutput)
		}
	}
	return strings.Join(parts, sep), nil
}

func fList(r *renderer, v Value, a *argList) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	return append([]Value{}, items...), nil
}

func fMap(r *renderer, v Value, a *argList) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	out := make([]Value, 0, len(items))
	if len(a.args) == 0 {
		attr := a.get(-1, "attribute", nil)
		if attr == nil {
			return nil, fmt.Errorf("map() needs a filter name or attribute=")
		}
		for _, kv := range a.kwargs {
			if kv.Key != "attribute" && kv.Key != "default" {
				return nil, fmt.Errorf("Unexpected keyword argument '%s'", kv.Key)
			}
		}
		get, err := attrGetter(attr, a.get(-1, "default", nil))
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			x, err := get(it)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	}
	name, ok := a.args[0].(string)
	if !ok {
		return nil, fmt.Errorf("map() filter name must be a string")
	}
	fn, ok := filters[name]
	if !ok {
		return nil, fmt.Errorf("no filter named '%s'", name)
	}
	sub := &argList{fname: name, args: a.args[1:], kwargs: a.kwargs, s: a.s, at: a.at}
	for _, it := range items {
		if err := r.step(a.at); err != nil {
			return nil, err
		}
		x, err := fn(r, it, sub)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

func fMinMax(sign int) filterFunc {
	return func(r *renderer, v Value, a *argList) (Value, error) {
		if err := a.check(2, "case_sensitive", "attribute"); err != nil {
			return nil, err
		}
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return Undefined{Hint: "No aggregated item, sequence was empty."}, nil
		}
		cs := truth(a.get(0, "case_sensitive", false))
		get := func(x Value) (Value, error) { return x, nil }
		if attr := a.get(1, "attribute", nil); attr != nil {
			if get, err = attrGetter(attr, nil); err != nil {
				return nil, err
			}
		}
		best := items[0]
		bk, err := get(best)
		if err != nil {
			return nil, err
		}
		for _, it := range items[1:] {
			k, err := get(it)
			if err != nil {
				return nil, err
			}
			c, err := compare(caseKey(k, cs), caseKey(bk, cs), "<")
			if err != nil {
				return nil, err
			}
			if c == sign {
				best, bk = it, k
			}
		}
		return best, nil
	}
}

func fReplace(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(3, "old", "new", "count"); err != nil {
		return nil, err
	}
	args := []Value{a.get(0, "old", nil), a.get(1, "new", nil)}
	if c := a.get(2, "count", nil); c != nil {
		args = append(args, c)
	}
	out, err := strMethod(toStr(v), "replace", args, nil, r.lim.MaxOutput)
	if err != nil {
		return nil, err
	}
	s := out.(string)
	if len(s) > r.lim.MaxOutput {
		return nil, fmt.Errorf("string exceeds %d bytes", r.lim.MaxOutput)
	}
	return s, nil
}

func fReverse(r *renderer, v Value, a *argList) (Value, error) {
	if s, ok := asString(v); ok {
		rs := []rune(s)
		for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
			rs[i], rs[j] = rs[j], rs[i]
		}
		return string(rs), nil
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	out := make([]Value, len(items))
	for i, it := range items {
		out[len(items)-1-i] = it
	}
	return out, nil
}

func fRound(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(2, "precision", "method"); err != nil {
		return nil, err
	}
	p, ok := asInt(a.get(0, "precision", int64(0)))
	if !ok {
		return nil, fmt.Errorf("round() precision must be an integer")
	}
	method := a.get(1, "method", "common")
	f, ok := asFloat(v)
	if !ok {
		return nil, fmt.Errorf("type %s doesn't define __round__ method", typeName(v))
	}
	// A float64's exact decimal expansion ends within 1074 places after
	// the point, so rounding to more places changes nothing; the clamp
	// keeps FormatFloat from writing p digits (and math.Pow overflows to
	// +Inf or 0 long before ±1100 either way).
	p = max(min(p, 1100), -1100)
	switch method {
	case "common":
		if i, isInt := asInt(v); isInt {
			return roundInt(i, p), nil
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return f, nil
		}
		if p < 0 {
			scale := math.Pow(10, float64(-p))
			if math.IsInf(scale, 1) {
				return math.Copysign(0, f), nil // as Python's round
			}
			out, _ := strconv.ParseFloat(strconv.FormatFloat(f/scale, 'f', 0, 64), 64)
			return out * scale, nil
		}
		out, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', int(p), 64), 64)
		return out, nil
	case "ceil", "floor":
		scale := math.Pow(10, float64(p))
		if math.IsInf(scale, 1) || scale == 0 {
			// Python's value * 10**precision overflows, or divides by 0.
			return nil, fmt.Errorf("round() precision %d is out of range for method %s", p, method)
		}
		fn := math.Ceil
		if method == "floor" {
			fn = math.Floor
		}
		return fn(f*scale) / scale, nil
	}
	return nil, fmt.Errorf("method must be common, ceil or floor")
}

// fSelect makes select, reject, selectattr and rejectattr.
func fSelect(keep, byAttr bool) filterFunc {
	return func(r *renderer, v Value, a *argList) (Value, error) {
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		args := a.args
		get := func(x Value) (Value, error) { return x, nil }
		if byAttr {
			if len(args) == 0 {
				return nil, fmt.Errorf("%s() needs an attribute", a.fname)
			}
			if get, err = attrGetter(args[0], nil); err != nil {
				return nil, err
			}
			args = args[1:]
		}
		var test testFunc
		var testArgs []Value
		if len(args) > 0 {
			name, ok := args[0].(string)
			if !ok {
				return nil, fmt.Errorf("%s() test name must be a string", a.fname)
			}
			if test, ok = tests[name]; !ok {
				return nil, fmt.Errorf("no test named '%s'", name)
			}
			testArgs = args[1:]
		}
		out := []Value{}
		for _, it := range items {
			if err := r.step(a.at); err != nil {
				return nil, err
			}
			x, err := get(it)
			if err != nil {
				return nil, err
			}
			var ok bool
			if test == nil {
				ok = truth(x)
			} else if ok, err = test(r, x, testArgs); err != nil {
				return nil, err
			}
			if ok == keep {
				out = append(out, it)
			}
		}
		return out, nil
	}
}

func fSort(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(3, "reverse", "case_sensitive", "attribute"); err != nil {
		return nil, err
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	out := append([]Value{}, items...)
	cs := truth(a.get(1, "case_sensitive", false))
	get := func(x Value) (Value, error) { return x, nil }
	if attr := a.get(2, "attribute", nil); attr != nil {
		if get, err = attrGetter(attr, nil); err != nil {
			return nil, err
		}
	}
	var kerr error
	err = sortValues(out, func(x Value) Value {
		k, e := get(x)
		if e != nil && kerr == nil {
			kerr = e
		}
		return caseKey(k, cs)
	}, truth(a.get(0, "reverse", false)))
	if kerr != nil {
		return nil, kerr
	}
	return out, err
}

func fString(r *renderer, v Value, a *argList) (Value, error) {
	if m, ok := v.(Markup); ok {
		return m, nil
	}
	return toStr(v), nil
}

var tagRE = regexp.MustCompile(`(?s)<!--.*?-->|<[^>]*>`)

func fStriptags(r *renderer, v Value, a *argList) (Value, error) {
	s := tagRE.ReplaceAllString(toStr(v), "")
	s = strings.Join(strings.FieldsFunc(s, isPySpace), " ")
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&", "&#34;", `"`, "&#39;", "'", "&quot;", `"`).Replace(s), nil
}

func fSum(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(2, "attribute", "start"); err != nil {
		return nil, err
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	get := func(x Value) (Value, error) { return x, nil }
	if attr := a.get(0, "attribute", nil); attr != nil {
		if get, err = attrGetter(attr, nil); err != nil {
			return nil, err
		}
	}
	total := a.get(1, "start", int64(0))
	for _, it := range items {
		x, err := get(it)
		if err != nil {
			return nil, err
		}
		if total, err = arith("+", total, x, r.lim.MaxOutput); err != nil {
			return nil, err
		}
	}
	return total, nil
}

func fToJSON(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(4, "ensure_ascii", "indent", "separators", "sort_keys"); err != nil {
		return nil, err
	}
	opts := jsonOptions{
		ensureASCII: truth(a.get(0, "ensure_ascii", false)),
		sortKeys:    truth(a.get(3, "sort_keys", false)),
		itemSep:     ", ",
		keySep:      ": ",
	}
	switch ind := a.get(1, "indent", nil).(type) {
	case nil:
	case string:
		opts.indent, opts.pretty = ind, true
	default:
		n, ok := asInt(ind)
		if !ok {
			return nil, fmt.Errorf("tojson() indent must be an integer or a string")
		}
		if n > int64(r.lim.MaxOutput) {
			return nil, errTooLong(r.lim.MaxOutput)
		}
		opts.indent, opts.pretty = strings.Repeat(" ", int(max(n, 0))), true
		opts.itemSep = ","
	}
	if _, isStr := a.get(1, "indent", nil).(string); isStr {
		opts.itemSep = ","
	}
	if sep := a.get(2, "separators", nil); sep != nil {
		parts, ok := seqOf(sep)
		if !ok || len(parts) != 2 {
			return nil, fmt.Errorf("tojson() separators must be a pair of strings")
		}
		is, ok1 := asString(parts[0])
		ks, ok2 := asString(parts[1])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("tojson() separators must be a pair of strings")
		}
		opts.itemSep, opts.keySep = is, ks
	}
	var b strings.Builder
	if err := writeJSON(&b, v, opts, 0, r.lim.MaxOutput); err != nil {
		return nil, err
	}
	return b.String(), nil
}

func fTrim(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(1, "chars"); err != nil {
		return nil, err
	}
	var args []Value
	if c := a.get(0, "chars", nil); c != nil {
		args = []Value{c}
	}
	return strMethod(toStr(v), "strip", args, nil, r.lim.MaxOutput)
}

func fTruncate(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(4, "length", "killwords", "end", "leeway"); err != nil {
		return nil, err
	}
	s := []rune(toStr(v))
	n, _ := asInt(a.get(0, "length", int64(255)))
	killwords := truth(a.get(1, "killwords", false))
	end := toStr(a.get(2, "end", "..."))
	leeway, _ := asInt(a.get(3, "leeway", int64(5)))
	if int64(len(s)) <= n+leeway {
		return string(s), nil
	}
	cut := int(n) - len([]rune(end))
	if cut < 0 {
		cut = 0
	}
	if killwords {
		return string(s[:cut]) + end, nil
	}
	head := string(s[:cut])
	if i := strings.LastIndex(head, " "); i >= 0 {
		head = head[:i]
	}
	return head + end, nil
}

func fUnique(r *renderer, v Value, a *argList) (Value, error) {
	if err := a.check(2, "case_sensitive", "attribute"); err != nil {
		return nil, err
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	cs := truth(a.get(0, "case_sensitive", false))
	get := func(x Value) (Value, error) { return x, nil }
	if attr := a.get(1, "attribute", nil); attr != nil {
		if get, err = attrGetter(attr, nil); err != nil {
			return nil, err
		}
	}
	seen := NewDict()
	out := []Value{}
	for _, it := range items {
		k, err := get(it)
		if err != nil {
			return nil, err
		}
		k = caseKey(k, cs)
		if _, ok := seen.Get(k); ok {
			continue
		}
		if err := seen.Set(k, true); err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

var wordRE = regexp.MustCompile(`[\p{L}\p{N}_]+`)

func fWordcount(r *renderer, v Value, a *argList) (Value, error) {
	return int64(len(wordRE.FindAllStringIndex(toStr(v), -1))), nil
}

// roundInt is Python's round(i, p) for an int: i itself for p >= 0, else
// rounded to a multiple of 10**-p, ties to even.
func roundInt(i, p int64) int64 {
	if p >= 0 {
		return i
	}
	if p < -18 {
		return 0
	}
	m := int64(1)
	for k := int64(0); k < -p; k++ {
		m *= 10
	}
	q, rem := i/m, i%m
	if rem < 0 {
		q, rem = q-1, rem+m
	}
	if 2*rem > m || 2*rem == m && q%2 != 0 {
		q++
	}
	return q * m
}
