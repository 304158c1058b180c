package jinja

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// jsonOptions are the arguments of Python's json.dumps that the tojson
// filter passes on.
type jsonOptions struct {
	ensureASCII bool
	sortKeys    bool
	pretty      bool   // indent is not None
	indent      string // one level of indentation
	itemSep     string
	keySep      string
}

// writeJSON writes v as Python's json.dumps does.
func writeJSON(b *strings.Builder, v Value, o jsonOptions, level, limit int) error {
	if b.Len() > limit {
		return fmt.Errorf("JSON text exceeds %d bytes", limit)
	}
	if level > maxNesting {
		return fmt.Errorf("JSON value nests deeper than %d levels", maxNesting)
	}
	newline := func(l int) {
		if o.pretty {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(o.indent, l))
		}
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		switch {
		case math.IsNaN(x):
			b.WriteString("NaN")
		case math.IsInf(x, 1):
			b.WriteString("Infinity")
		case math.IsInf(x, -1):
			b.WriteString("-Infinity")
		default:
			b.WriteString(formatFloat(x))
		}
	case string:
		writeJSONString(b, x, o.ensureASCII)
	case Markup:
		writeJSONString(b, string(x), o.ensureASCII)
	case []Value, Tuple:
		items, _ := seqOf(x)
		if len(items) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			newline(level + 1)
			if err := writeJSON(b, it, o, level+1, limit); err != nil {
				return err
			}
		}
		newline(level)
		b.WriteByte(']')
	case *Dict:
		if x.Len() == 0 {
			b.WriteString("{}")
			return nil
		}
		type entry struct {
			key string
			val Value
		}
		entries := make([]entry, 0, x.Len())
		for i, k := range x.keys {
			var ks string
			switch kk := k.(type) {
			case string:
				ks = kk
			case Markup:
				ks = string(kk)
			case nil, bool, int64, float64:
				var kb strings.Builder
				_ = writeJSON(&kb, kk, o, 0, limit)
				ks = kb.String()
			default:
				return fmt.Errorf("keys must be str, int, float, bool or None, not %s", typeName(k))
			}
			entries = append(entries, entry{ks, x.vals[i]})
		}
		if o.sortKeys {
			sort.SliceStable(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
		}
		b.WriteByte('{')
		for i, e := range entries {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			newline(level + 1)
			writeJSONString(b, e.key, o.ensureASCII)
			b.WriteString(o.keySep)
			if err := writeJSON(b, e.val, o, level+1, limit); err != nil {
				return err
			}
		}
		newline(level)
		b.WriteByte('}')
	default:
		return fmt.Errorf("Object of type %s is not JSON serializable", typeName(v))
	}
	return nil
}

// writeJSONString quotes s as Python's json module does: ", \, \n, \r,
// \t, \b, \f escaped, other control characters as \u00XX, and with
// ensureASCII every non-ASCII character as \uXXXX (surrogate pairs
// beyond the BMP).
func writeJSONString(b *strings.Builder, s string, ensureASCII bool) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r < 0x20:
				fmt.Fprintf(b, `\u%04x`, r)
			case r < 0x7f || !ensureASCII:
				b.WriteRune(r)
			case r <= 0xffff:
				fmt.Fprintf(b, `\u%04x`, r)
			default:
				r -= 0x10000
				fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			}
		}
	}
	b.WriteByte('"')
}

// FromJSON decodes a JSON text into template values, keeping the order of
// object keys (as Python's json.loads does); whole numbers become ints
// and others floats, as in Python.
func FromJSON(data []byte) (Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeJSON(dec, 0)
	if err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("invalid JSON: more than one value")
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("invalid JSON: more than one value")
	}
	return v, nil
}

func decodeJSON(dec *json.Decoder, depth int) (Value, error) {
	if depth > 10000 {
		return nil, fmt.Errorf("JSON nests too deeply")
	}
	t, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	switch t := t.(type) {
	case json.Delim:
		switch t {
		case '[':
			out := []Value{}
			for dec.More() {
				v, err := decodeJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("invalid JSON: %w", err)
			}
			return out, nil
		case '{':
			d := NewDict()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("invalid JSON: %w", err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("invalid JSON: object key is not a string")
				}
				v, err := decodeJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				_ = d.Set(k, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("invalid JSON: %w", err)
			}
			return d, nil
		}
	case json.Number:
		return jsonNumber(string(t))
	case string, bool, nil:
		return t, nil
	}
	return nil, fmt.Errorf("invalid JSON token %v", t)
}

func jsonNumber(s string) (Value, error) {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
		return nil, fmt.Errorf("integer %s does not fit in 64 bits", s)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !strings.Contains(err.Error(), "range") {
		return nil, fmt.Errorf("bad number %s", s)
	}
	return f, nil
}

// FromGo converts a Go value to a template value: nil, bool, integers,
// floats, strings, json.RawMessage (decoded with FromJSON), json.Number,
// slices and arrays (lists), maps with string keys (dicts, keys sorted
// since Go maps have no order), and values already of the template types.
// Anything else (structs, channels, functions) is an error.
func FromGo(v any) (Value, error) { return fromGo(v, 0) }

func fromGo(v any, depth int) (Value, error) {
	if depth > maxNesting {
		return nil, fmt.Errorf("value nests deeper than %d levels", maxNesting)
	}
	switch x := v.(type) {
	case nil, bool, int64, float64, string, Markup, Undefined, *Dict, *Namespace, Func, Tuple:
		return x, nil
	case json.RawMessage:
		return FromJSON(x)
	case json.Number:
		return jsonNumber(string(x))
	case []Value:
		out := make([]Value, len(x))
		for i, it := range x {
			c, err := fromGo(it, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		if u > math.MaxInt64 {
			return nil, fmt.Errorf("integer %d does not fit in 64 bits", u)
		}
		return int64(u), nil
	case reflect.Float32, reflect.Float64:
		return rv.Float(), nil
	case reflect.String:
		return rv.String(), nil
	case reflect.Bool:
		return rv.Bool(), nil
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return nil, nil
		}
		out := make([]Value, rv.Len())
		for i := range out {
			c, err := fromGo(rv.Index(i).Interface(), depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("map keys must be strings, not %s", rv.Type().Key())
		}
		if rv.IsNil() {
			return nil, nil
		}
		keys := make([]string, 0, rv.Len())
		for _, k := range rv.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		d := NewDict()
		for _, k := range keys {
			c, err := fromGo(rv.MapIndex(reflect.ValueOf(k).Convert(rv.Type().Key())).Interface(), depth+1)
			if err != nil {
				return nil, err
			}
			_ = d.Set(k, c)
		}
		return d, nil
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil, nil
		}
		return fromGo(rv.Elem().Interface(), depth+1)
	}
	return nil, fmt.Errorf("cannot pass a %T to a template", v)
}

// validUTF8 reports whether s is valid UTF-8 (template sources must be).
func validUTF8(s string) bool { return utf8.ValidString(s) }
