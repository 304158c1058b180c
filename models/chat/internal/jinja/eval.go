package jinja

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a template error: a syntax error found by Parse, or an error
// raised while rendering, with the template position it concerns.
type Error struct {
	Template  string // the template's name, as given to Parse
	Line, Col int    // 1-based; Col is 0 where only the line is known
	Msg       string
	// Raised is true for an error the template raised itself with
	// raise_exception; Msg is then the template's message.
	Raised bool
}

func (e *Error) Error() string {
	where := e.Template
	if where == "" {
		where = "template"
	}
	if e.Col > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", where, e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", where, e.Line, e.Msg)
}

// Limits bound the work one Render may do, so that a runaway template
// (an endless recursion, a loop over a huge range, text doubled in a
// loop) fails with an error instead of exhausting the machine. Zero
// fields take the defaults.
type Limits struct {
	MaxOutput int // bytes of output and of any string or list built, default 32 MiB
	MaxSteps  int // loop iterations plus macro and filter calls, default 10,000,000
	MaxDepth  int // nested macro calls and recursive loops, default 100
}

func (l Limits) withDefaults() Limits {
	if l.MaxOutput <= 0 {
		l.MaxOutput = 32 << 20
	}
	if l.MaxSteps <= 0 {
		l.MaxSteps = 10_000_000
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = 100
	}
	return l
}

// Template is a parsed template, safe for concurrent use by several
// renderings.
type Template struct {
	name string
	body []node
}

// Parse parses a template's source. name is used in error messages only.
// The syntax is Jinja2's as transformers configures it: trim_blocks and
// lstrip_blocks on, loop controls (break, continue) and the generation
// tag enabled.
func Parse(name, src string) (*Template, error) {
	if !validUTF8(src) {
		return nil, &Error{Template: name, Line: 1, Msg: "template is not valid UTF-8"}
	}
	body, err := parse(name, src)
	if err != nil {
		return nil, err
	}
	if err := checkNames(name, body); err != nil {
		return nil, err
	}
	return &Template{name: name, body: body}, nil
}

// Span is a range of bytes [Start, End) of the rendered text.
type Span struct{ Start, End int }

// Output is the result of a rendering.
type Output struct {
	Text string
	// Generation holds the spans of the text that {% generation %} blocks
	// rendered, in order (transformers' assistant masks).
	Generation []Span
}

// Render renders the template with vars, the template's variables, and
// globals, the functions and values every template sees (looked up after
// vars). Values must be of the types listed for Value.
func (t *Template) Render(vars map[string]Value, globals map[string]Value, lim Limits) (*Output, error) {
	r := &renderer{name: t.name, globals: globals, lim: lim.withDefaults()}
	root := &scope{vars: map[string]Value{}}
	for k, v := range vars {
		root.vars[k] = v
	}
	r.root = &strings.Builder{}
	r.out = r.root
	if _, err := r.exec(t.body, root); err != nil {
		return nil, err
	}
	return &Output{Text: r.root.String(), Generation: r.gen}, nil
}

// scope holds the variables of a template level, loop iteration, macro
// call or with block; lookups fall back to the enclosing scope.
type scope struct {
	vars   map[string]Value
	parent *scope
}

func (s *scope) child() *scope { return &scope{vars: map[string]Value{}, parent: s} }

func (s *scope) lookup(name string) (Value, bool) {
	for ; s != nil; s = s.parent {
		if v, ok := s.vars[name]; ok {
			return v, true
		}
	}
	return nil, false
}

type renderer struct {
	name    string
	globals map[string]Value
	lim     Limits
	root    *strings.Builder // the template's own output
	out     *strings.Builder // where output goes now (a macro's or set block's buffer)
	gen     []Span
	steps   int
	depth   int
}

// flow says how a list of statements ended.
type flow int

const (
	flowNormal flow = iota
	flowBreak
	flowContinue
)

// errAt wraps err with the position of n unless it already has one.
func (r *renderer) errAt(n interface{ position() pos }, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	p := n.position()
	if msg, ok := raised(err); ok {
		return &Error{Template: r.name, Line: p.line, Col: p.col, Msg: msg, Raised: true}
	}
	return &Error{Template: r.name, Line: p.line, Col: p.col, Msg: err.Error()}
}

func (r *renderer) step(n interface{ position() pos }) error {
	r.steps++
	if r.steps > r.lim.MaxSteps {
		return r.errAt(n, fmt.Errorf("template ran more than %d steps (loop iterations and calls)", r.lim.MaxSteps))
	}
	return nil
}

func (r *renderer) write(n node, s string) error {
	if r.out.Len()+len(s) > r.lim.MaxOutput {
		return r.errAt(n, fmt.Errorf("template output exceeds %d bytes", r.lim.MaxOutput))
	}
	r.out.WriteString(s)
	return nil
}

// captureFiltered renders body into a string, as a set block and a filter
// block both do, and passes it through filters, innermost first.
func (r *renderer) captureFiltered(body []node, filters []*filterExpr, s *scope) (Value, error) {
	text, _, err := r.capture(body, s)
	if err != nil {
		return nil, err
	}
	var v Value = text
	for _, f := range filters {
		if v, err = r.applyFilter(f, v, s); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// capture renders body into a fresh buffer and returns its text.
func (r *renderer) capture(body []node, s *scope) (string, flow, error) {
	saved := r.out
	buf := &strings.Builder{}
	r.out = buf
	f, err := r.exec(body, s)
	r.out = saved
	return buf.String(), f, err
}

func (r *renderer) exec(body []node, s *scope) (flow, error) {
	for _, n := range body {
		f, err := r.execNode(n, s)
		if err != nil || f != flowNormal {
			return f, err
		}
	}
	return flowNormal, nil
}

func (r *renderer) execNode(n node, s *scope) (flow, error) {
	switch n := n.(type) {
	case *textNode:
		return flowNormal, r.write(n, n.text)
	case *outputNode:
		v, err := r.eval(n.x, s)
		if err != nil {
			return flowNormal, err
		}
		return flowNormal, r.write(n, toStr(v))
	case *ifNode:
		for i, c := range n.conds {
			v, err := r.eval(c, s)
			if err != nil {
				return flowNormal, err
			}
			if truth(v) {
				return r.exec(n.bodies[i], s)
			}
		}
		return r.exec(n.els, s)
	case *forNode:
		return flowNormal, r.execFor(n, s)
	case *setNode:
		v, err := r.eval(n.x, s)
		if err != nil {
			return flowNormal, err
		}
		return flowNormal, r.assign(n.target, v, s)
	case *setBlockNode:
		v, err := r.captureFiltered(n.body, n.filters, s)
		if err != nil {
			return flowNormal, err
		}
		s.vars[n.name] = v
		return flowNormal, nil
	case *macroNode:
		s.vars[n.m.name] = &macro{def: n.m, closure: s, at: n.p}
		return flowNormal, nil
	case *callBlockNode:
		caller := &macro{def: n.caller, closure: s, at: n.p}
		v, err := r.evalCall(n.call, s, caller)
		if err != nil {
			return flowNormal, err
		}
		return flowNormal, r.write(n, toStr(v))
	case *filterBlockNode:
		v, err := r.captureFiltered(n.body, n.filters, s)
		if err != nil {
			return flowNormal, err
		}
		return flowNormal, r.write(n, toStr(v))
	case *withNode:
		inner := s.child()
		for i, name := range n.names {
			v, err := r.eval(n.values[i], s)
			if err != nil {
				return flowNormal, err
			}
			inner.vars[name] = v
		}
		return r.exec(n.body, inner)
	case *generationNode:
		if r.out != r.root {
			return r.exec(n.body, s)
		}
		start := r.root.Len()
		f, err := r.exec(n.body, s)
		r.gen = append(r.gen, Span{start, r.root.Len()})
		return f, err
	case *breakNode:
		return flowBreak, nil
	case *continueNode:
		return flowContinue, nil
	}
	return flowNormal, r.errAt(n, fmt.Errorf("internal error: unknown node %T", n))
}

// assign binds target (a name, a tuple of names, or ns.attr) to v in s.
func (r *renderer) assign(target expr, v Value, s *scope) error {
	switch t := target.(type) {
	case *nameExpr:
		s.vars[t.name] = v
		return nil
	case *attrExpr:
		obj, err := r.eval(t.x, s)
		if err != nil {
			return err
		}
		ns, ok := obj.(*Namespace)
		if !ok {
			return r.errAt(t, fmt.Errorf("cannot assign attribute on non-namespace object"))
		}
		return ns.attrs.Set(t.name, v)
	case *tupleExpr:
		items, err := iterate(v)
		if err != nil {
			return r.errAt(t, fmt.Errorf("cannot unpack non-iterable %s object", typeName(v)))
		}
		if len(items) != len(t.items) {
			if len(items) > len(t.items) {
				return r.errAt(t, fmt.Errorf("too many values to unpack (expected %d)", len(t.items)))
			}
			return r.errAt(t, fmt.Errorf("not enough values to unpack (expected %d, got %d)", len(t.items), len(items)))
		}
		for i, x := range t.items {
			if err := r.assign(x, items[i], s); err != nil {
				return err
			}
		}
		return nil
	}
	return r.errAt(target, fmt.Errorf("cannot assign to this expression"))
}

func (r *renderer) execFor(n *forNode, s *scope) error {
	v, err := r.eval(n.iter, s)
	if err != nil {
		return err
	}
	return r.loop(n, v, s, 0)
}

// loop runs a for loop over v; depth counts recursive loop() calls.
func (r *renderer) loop(n *forNode, v Value, s *scope, depth int) error {
	all, err := iterate(v)
	if err != nil {
		return r.errAt(n.iter, err)
	}
	items := all
	if n.filter != nil {
		items = nil
		for _, it := range all {
			if err := r.step(n); err != nil {
				return err
			}
			inner := s.child()
			if err := r.assign(n.target, it, inner); err != nil {
				return err
			}
			c, err := r.eval(n.filter, inner)
			if err != nil {
				return err
			}
			if truth(c) {
				items = append(items, it)
			}
		}
	}
	if len(items) == 0 {
		_, err := r.exec(n.els, s)
		return err
	}
	lo := &loopObj{items: items, depth: depth, node: n, scope: s, r: r}
	for i, it := range items {
		if err := r.step(n); err != nil {
			return err
		}
		lo.index = i
		inner := s.child()
		if err := r.assign(n.target, it, inner); err != nil {
			return err
		}
		inner.vars["loop"] = lo
		f, err := r.exec(n.body, inner)
		if err != nil {
			return err
		}
		if f == flowBreak {
			break
		}
	}
	return nil
}

// loopObj is the loop variable of a for loop.
type loopObj struct {
	items   []Value
	index   int
	depth   int
	node    *forNode
	scope   *scope
	r       *renderer
	changed []Value
	hasLast bool
}

func (lo *loopObj) attr(name string) (Value, bool) {
	n := len(lo.items)
	i := lo.index
	switch name {
	case "index":
		return int64(i + 1), true
	case "index0":
		return int64(i), true
	case "revindex":
		return int64(n - i), true
	case "revindex0":
		return int64(n - i - 1), true
	case "first":
		return i == 0, true
	case "last":
		return i == n-1, true
	case "length":
		return int64(n), true
	case "depth":
		return int64(lo.depth + 1), true
	case "depth0":
		return int64(lo.depth), true
	case "previtem":
		if i == 0 {
			return Undefined{Hint: "there is no previous item"}, true
		}
		return lo.items[i-1], true
	case "nextitem":
		if i == n-1 {
			return Undefined{Hint: "there is no next item"}, true
		}
		return lo.items[i+1], true
	case "cycle", "changed":
		return &method{recv: lo, name: name}, true
	}
	return nil, false
}

// macro is a callable macro, or the caller of a call block.
type macro struct {
	def     *macroDef
	closure *scope
	at      pos
}

func (m *macro) position() pos { return m.at }

// callMacro renders m's body with the given arguments.
func (r *renderer) callMacro(m *macro, args []Value, kwargs []KV, caller *macro, at interface{ position() pos }) (Value, error) {
	if err := r.step(at); err != nil {
		return nil, err
	}
	r.depth++
	defer func() { r.depth-- }()
	if r.depth > r.lim.MaxDepth {
		return nil, r.errAt(at, fmt.Errorf("macro calls nest deeper than %d", r.lim.MaxDepth))
	}
	inner := m.closure.child()
	d := m.def
	for i, p := range d.params {
		if i < len(args) {
			inner.vars[p] = args[i]
		}
	}
	var extra []Value
	if len(args) > len(d.params) {
		extra = args[len(d.params):]
	}
	kw := NewDict()
	for _, a := range kwargs {
		found := false
		for i, p := range d.params {
			if p == a.Key {
				if i < len(args) {
					return nil, r.errAt(at, fmt.Errorf("macro '%s' got multiple values for argument '%s'", d.name, p))
				}
				inner.vars[p] = a.Value
				found = true
			}
		}
		if !found {
			if a.Key == "caller" && caller == nil {
				if c, ok := a.Value.(*macro); ok {
					caller = c
					continue
				}
			}
			if err := kw.Set(a.Key, a.Value); err != nil {
				return nil, r.errAt(at, err)
			}
		}
	}
	for i, p := range d.params {
		if _, ok := inner.vars[p]; ok {
			continue
		}
		if d.defaults[i] != nil {
			v, err := r.eval(d.defaults[i], inner)
			if err != nil {
				return nil, err
			}
			inner.vars[p] = v
		} else {
			inner.vars[p] = Undefined{Hint: fmt.Sprintf("parameter '%s' was not provided", p)}
		}
	}
	inner.vars["varargs"] = Tuple(extra)
	inner.vars["kwargs"] = kw
	if caller != nil {
		inner.vars["caller"] = caller
	}
	text, _, err := r.capture(d.body, inner)
	if err != nil {
		return nil, err
	}
	return text, nil
}

// method is a method bound to its receiver: "abc".upper, d.items.
type method struct {
	recv Value
	name string
}
