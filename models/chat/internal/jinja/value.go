package jinja

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Value is a template value. Its dynamic type is one of: nil (Python's
// None), bool, int64, float64, string, Markup, []Value (a list), Tuple,
// *Dict, *Namespace, Undefined, Func, or one of the interpreter's own
// callables and objects (macros, loop objects, bound methods).
type Value = any

// Tuple is a Python tuple: a list that compares unequal to lists and prints
// with parentheses.
type Tuple []Value

// Markup is a string marked safe (the result of the safe and escape
// filters). Adding a plain string to it escapes that string, as
// markupsafe.Markup does.
type Markup string

// Func is a Go function callable from a template, such as raise_exception.
// An error it returns stops the rendering and is reported with the
// template position of the call.
type Func func(args []Value, kwargs []KV) (Value, error)

// KV is one keyword argument, or one entry of a Dict.
type KV struct {
	Key   string
	Value Value
}

// Undefined is the value of a missing variable, attribute or item, with
// Jinja's default Undefined semantics: it prints as the empty string, is
// false, iterates as empty and has length 0, but taking an attribute or
// item of it, calling it or doing arithmetic with it is an error.
type Undefined struct {
	// Hint says why it is undefined, for error messages.
	Hint string
}

func undefinedName(name string) Undefined {
	return Undefined{Hint: fmt.Sprintf("'%s' is undefined", name)}
}

func undefinedAttr(obj Value, name string) Undefined {
	return Undefined{Hint: fmt.Sprintf("'%s' has no attribute '%s'", objectName(obj), name)}
}

// Dict is a Python dict: keys (strings, numbers, booleans, None or tuples
// of those) in insertion order.
type Dict struct {
	keys  []Value
	vals  []Value
	index map[any]int
}

// NewDict returns an empty dict.
func NewDict() *Dict { return &Dict{index: map[any]int{}} }

// dictKey maps a Python key to a Go map key; equal Python keys (1, 1.0
// and True) map to the same Go key.
func dictKey(k Value) (any, error) {
	switch k := k.(type) {
	case nil, string, int64:
		return k, nil
	case Markup:
		return string(k), nil
	case bool:
		if k {
			return int64(1), nil
		}
		return int64(0), nil
	case float64:
		if k == math.Trunc(k) && math.Abs(k) < 1<<63 {
			return int64(k), nil
		}
		return k, nil
	case Tuple:
		parts := make([]string, len(k))
		for i, v := range k {
			gk, err := dictKey(v)
			if err != nil {
				return nil, err
			}
			parts[i] = fmt.Sprintf("%T:%v", gk, gk)
		}
		return "\x00tuple(" + strings.Join(parts, "\x00") + ")", nil
	}
	return nil, fmt.Errorf("unhashable type: '%s'", typeName(k))
}

// Set sets key k to v, keeping the position of an existing key.
func (d *Dict) Set(k, v Value) error {
	gk, err := dictKey(k)
	if err != nil {
		return err
	}
	if i, ok := d.index[gk]; ok {
		d.vals[i] = v
		return nil
	}
	d.index[gk] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

// Get returns the value of key k.
func (d *Dict) Get(k Value) (Value, bool) {
	gk, err := dictKey(k)
	if err != nil {
		return nil, false
	}
	i, ok := d.index[gk]
	if !ok {
		return nil, false
	}
	return d.vals[i], true
}

// Len is the number of keys.
func (d *Dict) Len() int { return len(d.keys) }

// Keys returns the keys in order.
func (d *Dict) Keys() []Value { return d.keys }

// Values returns the values in key order.
func (d *Dict) Values() []Value { return d.vals }

// Namespace is the mutable object namespace() returns; {% set ns.x = … %}
// assigns its attributes.
type Namespace struct{ attrs *Dict }

// truth is Python's bool(v).
func truth(v Value) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case int64:
		return v != 0
	case float64:
		return v != 0
	case string:
		return v != ""
	case Markup:
		return v != ""
	case []Value:
		return len(v) > 0
	case Tuple:
		return len(v) > 0
	case *Dict:
		return v.Len() > 0
	case Undefined:
		return false
	}
	return true
}

// typeName is Python's type(v).__name__.
func typeName(v Value) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case Markup:
		return "Markup"
	case []Value:
		return "list"
	case Tuple:
		return "tuple"
	case *Dict:
		return "dict"
	case Undefined:
		return "Undefined"
	case *Namespace:
		return "Namespace"
	case *loopObj:
		return "LoopContext"
	case *macro:
		return "Macro"
	}
	return "function"
}

// objectName is how Jinja names an object in "has no attribute" hints.
func objectName(v Value) string {
	if v == nil {
		return "None"
	}
	return typeName(v) + " object"
}

// toStr is Python's str(v) as Jinja prints it.
func toStr(v Value) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		if v {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return formatFloat(v)
	case string:
		return v
	case Markup:
		return string(v)
	case Undefined:
		return ""
	}
	return repr(v)
}

// repr is Python's repr(v).
func repr(v Value) string {
	var b strings.Builder
	writeRepr(&b, v, 0)
	return b.String()
}

// writeRepr writes repr(v); a value nested deeper than maxNesting (a
// namespace that holds itself) is written as "...", as Python does for
// recursive containers.
func writeRepr(b *strings.Builder, v Value, depth int) {
	if depth > maxNesting {
		b.WriteString("...")
		return
	}
	switch v := v.(type) {
	case string:
		b.WriteString(quoteRepr(v))
	case Markup:
		b.WriteString("Markup(" + quoteRepr(string(v)) + ")")
	case []Value:
		b.WriteByte('[')
		for i, x := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, x, depth+1)
		}
		b.WriteByte(']')
	case Tuple:
		b.WriteByte('(')
		for i, x := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, x, depth+1)
		}
		if len(v) == 1 {
			b.WriteByte(',')
		}
		b.WriteByte(')')
	case *Dict:
		b.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, k, depth+1)
			b.WriteString(": ")
			writeRepr(b, v.vals[i], depth+1)
		}
		b.WriteByte('}')
	case Undefined:
		b.WriteString("Undefined")
	case *Namespace:
		b.WriteString("<Namespace ")
		writeRepr(b, v.attrs, depth+1)
		b.WriteByte('>')
	case *loopObj:
		fmt.Fprintf(b, "<LoopContext %d/%d>", v.index+1, len(v.items))
	case *macro:
		fmt.Fprintf(b, "<Macro '%s'>", v.def.name)
	case nil, bool, int64, float64:
		b.WriteString(toStr(v))
	default:
		b.WriteString("<function>")
	}
}

// quoteRepr quotes s as Python's repr of a str does.
func quoteRepr(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x80 || unicode.IsPrint(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// formatFloat is Python's repr of a float: the shortest digits that read
// back exactly, in positional notation for exponents -4 through 15 and
// scientific notation (two-digit exponent at least) otherwise.
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // -d.ddde±XX
	sign := ""
	if e[0] == '-' {
		sign, e = "-", e[1:]
	}
	mant, exps, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(exps)
	digits := strings.Replace(mant, ".", "", 1)
	decpt := exp + 1
	if decpt <= -4 || decpt > 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es, exp = "-", -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
	}
	switch {
	case decpt <= 0:
		return sign + "0." + strings.Repeat("0", -decpt) + digits
	case decpt >= len(digits):
		return sign + digits + strings.Repeat("0", decpt-len(digits)) + ".0"
	}
	return sign + digits[:decpt] + "." + digits[decpt:]
}

// isNumber says whether v is a Python number (bool included).
func isNumber(v Value) bool {
	switch v.(type) {
	case bool, int64, float64:
		return true
	}
	return false
}

// asInt returns an int or bool as int64.
func asInt(v Value) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// asFloat returns any number as float64.
func asFloat(v Value) (float64, bool) {
	if f, ok := v.(float64); ok {
		return f, true
	}
	if i, ok := asInt(v); ok {
		return float64(i), true
	}
	return 0, false
}

// asString returns a str or Markup as a Go string.
func asString(v Value) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case Markup:
		return string(v), true
	}
	return "", false
}

// equal is Python's ==.
func equal(a, b Value) bool {
	if isNumber(a) && isNumber(b) {
		ai, aok := asInt(a)
		bi, bok := asInt(b)
		if aok && bok {
			return ai == bi
		}
		af, _ := asFloat(a)
		bf, _ := asFloat(b)
		return af == bf
	}
	if as, ok := asString(a); ok {
		bs, ok := asString(b)
		return ok && as == bs
	}
	switch a := a.(type) {
	case nil:
		return b == nil
	case Undefined:
		_, ok := b.(Undefined)
		return ok
	case []Value:
		bl, ok := b.([]Value)
		return ok && equalSeq(a, bl)
	case Tuple:
		bt, ok := b.(Tuple)
		return ok && equalSeq(a, bt)
	case *Dict:
		bd, ok := b.(*Dict)
		if !ok || a.Len() != bd.Len() {
			return false
		}
		for i, k := range a.keys {
			bv, ok := bd.Get(k)
			if !ok || !equal(a.vals[i], bv) {
				return false
			}
		}
		return true
	}
	return a == b
}

func equalSeq(a, b []Value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// compare is Python's ordering of a and b: -1, 0 or 1, or an error for
// values that have none (a str and an int, say).
func compare(a, b Value, op string) (int, error) {
	if isNumber(a) && isNumber(b) {
		ai, aok := asInt(a)
		bi, bok := asInt(b)
		if aok && bok {
			return cmpOrdered(ai, bi), nil
		}
		af, _ := asFloat(a)
		bf, _ := asFloat(b)
		if math.IsNaN(af) || math.IsNaN(bf) {
			return 2, nil // every ordering comparison with NaN is false
		}
		return cmpOrdered(af, bf), nil
	}
	if as, ok := asString(a); ok {
		if bs, ok := asString(b); ok {
			return strings.Compare(as, bs), nil
		}
	}
	as, aok := seqOf(a)
	bs, bok := seqOf(b)
	if aok && bok && typeName(a) == typeName(b) {
		for i := 0; i < len(as) && i < len(bs); i++ {
			if !equal(as[i], bs[i]) {
				return compare(as[i], bs[i], op)
			}
		}
		return cmpOrdered(len(as), len(bs)), nil
	}
	if _, ok := a.(Undefined); ok {
		return 0, a.(Undefined).err()
	}
	if _, ok := b.(Undefined); ok {
		return 0, b.(Undefined).err()
	}
	return 0, fmt.Errorf("'%s' not supported between instances of '%s' and '%s'", op, typeName(a), typeName(b))
}

func cmpOrdered[T int | int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// seqOf returns the items of a list or tuple.
func seqOf(v Value) ([]Value, bool) {
	switch v := v.(type) {
	case []Value:
		return v, true
	case Tuple:
		return v, true
	}
	return nil, false
}

func (u Undefined) err() error {
	if u.Hint == "" {
		return &UndefinedError{Msg: "value is undefined"}
	}
	return &UndefinedError{Msg: u.Hint}
}

// UndefinedError is Jinja's UndefinedError: an undefined value was used
// where a real one is needed.
type UndefinedError struct{ Msg string }

func (e *UndefinedError) Error() string { return e.Msg }

// iterate returns the items a for loop over v visits: list and tuple
// items, dict keys, the characters of a string; nothing for Undefined.
func iterate(v Value) ([]Value, error) {
	switch v := v.(type) {
	case []Value:
		return v, nil
	case Tuple:
		return v, nil
	case *Dict:
		return v.keys, nil
	case string:
		return chars(v), nil
	case Markup:
		return chars(string(v)), nil
	case Undefined:
		return nil, nil
	case *loopObj:
		return nil, fmt.Errorf("'LoopContext' object is not iterable")
	}
	return nil, fmt.Errorf("'%s' object is not iterable", typeName(v))
}

func chars(s string) []Value {
	out := make([]Value, 0, len(s))
	for _, r := range s {
		out = append(out, string(r))
	}
	return out
}

// length is Python's len(v); Undefined has length 0.
func length(v Value) (int, error) {
	switch v := v.(type) {
	case string:
		return utf8.RuneCountInString(v), nil
	case Markup:
		return utf8.RuneCountInString(string(v)), nil
	case []Value:
		return len(v), nil
	case Tuple:
		return len(v), nil
	case *Dict:
		return v.Len(), nil
	case Undefined:
		return 0, nil
	case *Namespace:
		return 0, fmt.Errorf("object of type 'Namespace' has no len()")
	}
	return 0, fmt.Errorf("object of type '%s' has no len()", typeName(v))
}

// sortValues sorts vs in place by key(v), stably, with Python ordering.
func sortValues(vs []Value, key func(Value) Value, reverse bool) error {
	var err error
	sort.SliceStable(vs, func(i, j int) bool {
		a, b := key(vs[i]), key(vs[j])
		if reverse {
			a, b = b, a
		}
		c, e := compare(a, b, "<")
		if e != nil && err == nil {
			err = e
		}
		return c == -1
	})
	return err
}
