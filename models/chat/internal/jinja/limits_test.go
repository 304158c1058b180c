package jinja

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestSizeLimits renders templates whose one number (a width, a
// precision, an indentation) or whose pair of bounded strings asks for a
// text far past MaxOutput: each must fail with a positioned error before
// building it. Before the checks, the widths made the interpreter
// allocate whatever a template asked (a fatal out-of-memory for
// 'a'.ljust(10**11)), a replace of the empty string by a long s panicked in makeslice,
// %-format widths past a million printed Go's "%!(NOVERB)" as text, and
// ranges wider than int64 counted their items with wrap-around (empty, or
// where Python's sandbox refuses).
func TestSizeLimits(t *testing.T) {
	lim := Limits{MaxOutput: 1 << 16}
	for _, src := range []string{
		"{{ 'a'.ljust(2**24)|length }}",
		"{{ 'a'.rjust(2**24)|length }}",
		"{{ 'a'.center(2**24)|length }}",
		"{{ 'a'.center(2**62)|length }}",
		"{{ 'a'|center(2**24)|length }}",
		"{{ 'a'.zfill(2**24)|length }}",
		"{{ 'a\tb'.expandtabs(2**24)|length }}",
		"{{ '{:>16777216}'.format(1)|length }}",
		"{{ '{:.16777216f}'.format(1.5)|length }}",
		"{{ ('%2000000d' % 1)|length }}",
		"{{ ('%.2000000f' % 1.5)|length }}",
		"{{ ('%99999999999999999999s' % 'a')|length }}",
		"{{ 'a\nb'|indent(2**24)|length }}",
		"{{ [1, [2]]|tojson(indent=2**24)|length }}",
		"{% set s = 'x' * 3000 %}{{ s.replace('', s)|length }}",
		"{% set s = 'x' * 3000 %}{{ s|replace('', s)|length }}",
		"{% set s = 'x' * 3000 %}{{ s.join([s] * 30)|length }}",
		"{% set s = 'x' * 3000 %}{{ ('{0}' * 30).format(s)|length }}",
		"{% set s = 'x' * 3000 %}{{ (('%(a)s' * 30) % {'a': s})|length }}",
		"{% set s = 'x\n' * 1000 %}{{ s|indent(100)|length }}",
		"{{ range(-9223372036854775807, 9223372036854775807)|length }}",
		"{{ range(9223372036854775807, -9223372036854775807, -1)|length }}",
	} {
		tmpl, err := Parse("limits", src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		out, err := tmpl.Render(nil, nil, lim)
		var e *Error
		if !errors.As(err, &e) || e.Line < 1 || !strings.Contains(err.Error(), "too large") && !strings.Contains(err.Error(), "exceeds") && !strings.Contains(err.Error(), "too big") {
			text := ""
			if out != nil {
				text = out.Text
			}
			t.Errorf("%s: rendered %.40q, error %v; want an error at a position saying the text would be too long", src, text, err)
		}
	}
}

// TestSizedOperations checks the operations the limits guard against
// Python's Jinja2 3.1.6 in transformers' environment
// (scripts/chat-ref/pyref.py), where the limits do not bite: the texts
// are Python's, and the errors are where Python raised one.
func TestSizedOperations(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`{{ 'a\tb'.expandtabs() }}|{{ 'ab\tc\n\td'.expandtabs(4) }}|{{ '\t'.expandtabs(0) }}|{{ 'é\tx'.expandtabs(tabsize=3) }}|{{ 'a\r\tb'.expandtabs(2) }}|{{ '\t'.expandtabs(-1) }}`,
			"a       b|ab  c\n    d||é  x|a\r  b|"},
		{"{{ 1.5|round(-400) }} {{ -1.5|round(-400) }} {{ 1.5|round(400) }} {{ 1.5|round(10**12) }} {{ 12345|round(-400) }} {{ 5e-324|round(400) }} {{ 0.1|round(1100) }}",
			"0.0 -0.0 1.5 1.5 0 5e-324 0.1"},
		{"{{ 1.5|round(400, 'ceil') }}", "error"},   // OverflowError
		{"{{ 1.5|round(-400, 'floor') }}", "error"}, // ZeroDivisionError
		{"{{ 1.55|round(1, 'ceil') }} {{ 1.55|round(-1, 'floor') }}", "1.6 0.0"},
		{"{{ 'ab'.center(7, '*') }}|{{ 'ab'.ljust(1) }}|{{ 'é'.rjust(3, 'ü') }}|{{ 'ab'|center(6) }}|{{ '-5'.zfill(4) }}|{{ 'x'.zfill(-3) }}",
			"***ab**|ab|üüé|  ab  |-005|x"},
		{"{{ 'x'.zfill('3') }}", "error"},
		{"{{ 'abc'.replace('', '-') }}|{{ 'abc'.replace('', '-', 2) }}|{{ 'aaa'.replace('a', 'bb', 2) }}|{{ 'aaa'.replace('a', '', -1) }}|{{ 'éé'.replace('', '.') }}|{{ 'abc'|replace('b', 'XY') }}",
			"-a-b-c-|-a-bc|bbbba||.é.é.|aXYc"},
		{"{{ ', '.join(['a', 'b']) }}|{{ ''.join([]) }}|{{ '-'.join('abc') }}", "a, b||a-b-c"},
		{"{{ '{:>6.2f}|{:^7}|{:*<4}'.format(3.14159, 'ab', 1) }} {{ '%-4s|%6.2f|%03d' % ('a', 2.5, 7) }} {{ '%(a)s=%(b)d'|format(a='x', b=2) }}",
			"  3.14|  ab   |1*** a   |  2.50|007 x=2"},
		{`{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent('> ', first=true) }}|{{ ''|indent }}`, "a\n  b\n\n  c|> a\n> b|"},
		{"{{ '%c|%c|%3c' % ('x', 65, 'é') }}", "x|A|  é"},
		{"{{ range(-9223372036854775807, 9223372036854775807, 4611686018427387904)|list }} {{ range(5, 0, -2)|list }} {{ range(0, 10, 3)|list }} {{ range(3, 3)|list }} {{ range(-3)|list }}",
			"[-9223372036854775807, -4611686018427387903, 1, 4611686018427387905] [5, 3, 1] [0, 3, 6, 9] [] []"},
		{"{{ [1, {'a': [2]}]|tojson(indent=3) }}", "[\n   1,\n   {\n      \"a\": [\n         2\n      ]\n   }\n]"},
	} {
		tmpl, err := Parse("sized", c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		out, err := tmpl.Render(nil, nil, Limits{})
		switch {
		case c.want == "error" && err == nil:
			t.Errorf("%s: rendered %q; Python raised an error", c.src, out.Text)
		case c.want != "error" && err != nil:
			t.Errorf("%s: %v; Python rendered %q", c.src, err, c.want)
		case c.want != "error" && out.Text != c.want:
			t.Errorf("%s: rendered\n%q\nPython\n%q", c.src, out.Text, c.want)
		}
	}
}

// TestLongChains parses chains that nest to the left: a + b + c..., x|f|g,
// x.a.b, x[0:][0:], a and b and c..., x if c if c.... Each link
// makes the tree, and the renderer's recursion, one level deeper, so a
// long chain counts against the nesting limit as brackets do (before, a
// chain of some 2 million links overflowed the goroutine stack, a fatal
// error; Python's Jinja2 fails with RecursionError from about 1000). A
// chain of 100 links, which Python renders, still renders.
func TestLongChains(t *testing.T) {
	d := NewDict() // d.a is d
	_ = d.Set("a", d)
	vars := map[string]Value{"x": []Value{int64(1)}, "d": d}
	for _, c := range []struct{ first, link, last string }{
		{"{{ 1", " + 1", " }}"},
		{"{{ 1", " * 1", " }}"},
		{"{{ 1", " ** 1", " }}"},
		{"{{ 1", " and 1", " }}"},
		{"{{ 0", " or 0", " }}"},
		{"{{ 1", "|abs", " }}"},
		{"{{ d", ".a", " is defined }}"},
		{"{{ x", "[0:]", "|length }}"},
		{"{{ 1", " if 1", " }}"},
	} {
		for _, n := range []int{100, 300} {
			src := c.first + strings.Repeat(c.link, n) + c.last
			tmpl, err := Parse("chain", src)
			if n == 300 {
				var e *Error
				if !errors.As(err, &e) || e.Line < 1 || !strings.Contains(err.Error(), "nests deeper") {
					t.Errorf("%q x %d: parse error %v; want one saying it nests too deeply", c.link, n, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%q x %d: %v", c.link, n, err)
				continue
			}
			if _, err := tmpl.Render(vars, nil, Limits{}); err != nil {
				t.Errorf("%q x %d: %v", c.link, n, err)
			}
		}
	}
}

// TestFormatSpecs renders {{ ('{:SPEC}').format(v) }} for every spec and
// value of testdata/format_specs.json and compares with Python's Jinja2
// (scripts/chat-ref/format-specs.py): the same text, or an error where
// Python raised one. Before, zero padding ('{:05d}', '{:08.3f}'), signs,
// '=' alignment, the types b, o, x, X, c, grouping, a precision with 's'
// or with no type for floats, and bools and None with a spec all came out
// differently or not at all.
func TestFormatSpecs(t *testing.T) {
	b, err := os.ReadFile("testdata/format_specs.json")
	if err != nil {
		t.Fatal(err)
	}
	var rows [][3]json.RawMessage
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, r := range rows {
		var spec string
		var want *string
		if err := json.Unmarshal(r[0], &spec); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(r[2], &want); err != nil {
			t.Fatal(err)
		}
		v, err := FromJSON(r[1])
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := Parse("spec", "{{ ('{:"+strings.ReplaceAll(spec, "'", `\'`)+"}').format(v) }}")
		if err != nil {
			t.Fatal(err)
		}
		out, err := tmpl.Render(map[string]Value{"v": v}, nil, Limits{})
		switch {
		case want == nil && err == nil:
			t.Errorf("format(%s, %q): %q; Python raised an error", r[1], spec, out.Text)
		case want != nil && err != nil:
			t.Errorf("format(%s, %q): %v; Python %q", r[1], spec, err, *want)
		case want != nil && out.Text != *want:
			t.Errorf("format(%s, %q): %q; Python %q", r[1], spec, out.Text, *want)
		default:
			continue
		}
		if bad++; bad > 20 {
			t.Fatal("and more")
		}
	}
	if len(rows) < 900 {
		t.Fatalf("%d rows; the file is short", len(rows))
	}
}
