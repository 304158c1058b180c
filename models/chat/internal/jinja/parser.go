package jinja

import (
	"fmt"
	"slices"
	"strings"
)

// knownTags are the statement names that may start a tag.
var knownTags = map[string]bool{
	"if": true, "for": true, "set": true, "macro": true, "call": true, "filter": true,
	"with": true, "generation": true, "break": true, "continue": true, "raw": true,
}

// maxNesting bounds how deeply blocks and expressions may nest, so that a
// hostile template cannot exhaust the stack while parsing or rendering.
const maxNesting = 200

type parser struct {
	name  string
	toks  []token
	i     int
	depth int
}

func parse(name, src string) ([]node, error) {
	toks, err := lex(name, src)
	if err != nil {
		return nil, err
	}
	p := &parser{name: name, toks: toks}
	body, end, err := p.statements(nil)
	if err != nil {
		return nil, err
	}
	if end != "" {
		return nil, p.errorf(p.peek().pos, "unexpected '%s'", end)
	}
	return body, nil
}

func (p *parser) errorf(at pos, format string, args ...any) error {
	return &Error{Template: p.name, Line: at.line, Col: at.col, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) peekAt(k int) token {
	if p.i+k < len(p.toks) {
		return p.toks[p.i+k]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) next() token {
	t := p.toks[p.i]
	if p.i < len(p.toks)-1 {
		p.i++
	}
	return t
}

func (p *parser) isOp(op string) bool {
	t := p.peek()
	return t.kind == tokOp && t.val == op
}

func (p *parser) isName(name string) bool {
	t := p.peek()
	return t.kind == tokName && t.val == name
}

func (p *parser) expectOp(op string) (token, error) {
	t := p.next()
	if t.kind != tokOp || t.val != op {
		return t, p.errorf(t.pos, "expected '%s', got %s", op, t.describe())
	}
	return t, nil
}

func (p *parser) expectName() (token, error) {
	t := p.next()
	if t.kind != tokName {
		return t, p.errorf(t.pos, "expected a name, got %s", t.describe())
	}
	return t, nil
}

func (p *parser) expectKind(k tokenKind) (token, error) {
	t := p.next()
	if t.kind != k {
		return t, p.errorf(t.pos, "expected %s, got %s", k, t.describe())
	}
	return t, nil
}

func (p *parser) enter(at pos) error {
	p.depth++
	if p.depth > maxNesting {
		return p.errorf(at, "template nests deeper than %d levels", maxNesting)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// link counts one more link of a chain that nests to the left (a + b + c,
// x|f|g, x.a.b): each makes the tree, and the renderer's recursion, one
// level deeper, as a bracket does. The caller gives the links back with
// unlink when the chain is parsed.
func (p *parser) link(at pos, links *int) error {
	*links++
	return p.enter(at)
}

func (p *parser) unlink(links *int) { p.depth -= *links }

// statements parses nodes until a block tag whose name is in ends (which
// is consumed up to the name) or the end of input; it returns the name of
// the tag that ended it ("" at the end of input).
func (p *parser) statements(ends []string) ([]node, string, error) {
	var out []node
	for {
		t := p.peek()
		switch t.kind {
		case tokEOF:
			if len(ends) > 0 {
				return nil, "", p.errorf(t.pos, "unexpected end of template: expected '%s'", ends[len(ends)-1])
			}
			return out, "", nil
		case tokText:
			p.next()
			out = append(out, &textNode{at{t.pos}, t.val})
		case tokVarBegin:
			p.next()
			x, err := p.expression(true)
			if err != nil {
				return nil, "", err
			}
			if _, err := p.expectKind(tokVarEnd); err != nil {
				return nil, "", err
			}
			out = append(out, &outputNode{at{t.pos}, x})
		case tokBlockBegin:
			name := p.peekAt(1)
			if name.kind == tokName && slices.Contains(ends, name.val) {
				p.next()
				p.next()
				return out, name.val, nil
			}
			if name.kind == tokName && (strings.HasPrefix(name.val, "end") || name.val == "elif" || name.val == "else") && !knownTags[name.val] {
				if len(ends) == 0 {
					return nil, "", p.errorf(name.pos, "unexpected '%s': no block is open", name.val)
				}
				return nil, "", p.errorf(name.pos, "unexpected '%s'; expected '%s'", name.val, strings.Join(ends, "' or '"))
			}
			p.next()
			n, err := p.statement()
			if err != nil {
				return nil, "", err
			}
			if n != nil {
				out = append(out, n)
			}
		default:
			return nil, "", p.errorf(t.pos, "unexpected %s", t.describe())
		}
	}
}

// endTag consumes the "%}" closing a tag.
func (p *parser) endTag() error {
	_, err := p.expectKind(tokBlockEnd)
	return err
}

// block parses the "%}" that closes a block tag's opening, its body up to
// the tag end, and that tag's "%}": every block with one body.
func (p *parser) block(end string) ([]node, error) {
	if err := p.endTag(); err != nil {
		return nil, err
	}
	nodes, _, err := p.body(end)
	if err != nil {
		return nil, err
	}
	return nodes, p.endTag()
}

// body parses the statements of a block up to the tag named by one of
// ends, which it consumes up to the name (the caller reads the "%}"), and
// returns that name.
func (p *parser) body(ends ...string) ([]node, string, error) {
	nodes, end, err := p.statements(ends)
	if err != nil {
		return nil, "", err
	}
	return nodes, end, nil
}

func (p *parser) statement() (node, error) {
	t, err := p.expectName()
	if err != nil {
		return nil, err
	}
	if err := p.enter(t.pos); err != nil {
		return nil, err
	}
	defer p.leave()
	a := at{t.pos}
	switch t.val {
	case "if":
		return p.ifStmt(a)
	case "for":
		return p.forStmt(a)
	case "set":
		return p.setStmt(a)
	case "macro":
		return p.macroStmt(a)
	case "call":
		return p.callStmt(a)
	case "filter":
		return p.filterStmt(a)
	case "with":
		return p.withStmt(a)
	case "generation":
		body, err := p.block("endgeneration")
		if err != nil {
			return nil, err
		}
		return &generationNode{a, body}, nil
	case "break":
		return &breakNode{a}, p.endTag()
	case "continue":
		return &continueNode{a}, p.endTag()
	case "raw":
		// Only an unclosed raw block reaches the parser.
		return nil, p.errorf(t.pos, "missing end of raw directive")
	}
	return nil, p.errorf(t.pos, "unknown tag '%s'", t.val)
}

func (p *parser) ifStmt(a at) (node, error) {
	n := &ifNode{at: a}
	for {
		cond, err := p.expression(true)
		if err != nil {
			return nil, err
		}
		if err := p.endTag(); err != nil {
			return nil, err
		}
		body, end, err := p.body("elif", "else", "endif")
		if err != nil {
			return nil, err
		}
		n.conds = append(n.conds, cond)
		n.bodies = append(n.bodies, body)
		switch end {
		case "elif":
			continue
		case "else":
			if n.els, err = p.block("endif"); err != nil {
				return nil, err
			}
			return n, nil
		}
		return n, p.endTag()
	}
}

func (p *parser) forStmt(a at) (node, error) {
	n := &forNode{at: a}
	target, err := p.assignTarget(false)
	if err != nil {
		return nil, err
	}
	n.target = target
	if t := p.next(); t.kind != tokName || t.val != "in" {
		return nil, p.errorf(t.pos, "expected 'in', got %s", t.describe())
	}
	if n.iter, err = p.tuple(false); err != nil {
		return nil, err
	}
	if p.isName("if") {
		p.next()
		if n.filter, err = p.expression(true); err != nil {
			return nil, err
		}
	}
	if p.isName("recursive") {
		p.next()
		n.recursive = true
	}
	if err := p.endTag(); err != nil {
		return nil, err
	}
	body, end, err := p.body("else", "endfor")
	if err != nil {
		return nil, err
	}
	n.body = body
	if end == "else" {
		if n.els, err = p.block("endfor"); err != nil {
			return nil, err
		}
		return n, nil
	}
	return n, p.endTag()
}

// assignTarget parses the target of set or for: a name, names separated
// by commas (optionally in parentheses), or with attrs, ns.attr.
func (p *parser) assignTarget(attrs bool) (expr, error) {
	start := p.peek().pos
	var items []expr
	paren := false
	if p.isOp("(") {
		p.next()
		paren = true
	}
	for {
		t, err := p.expectName()
		if err != nil {
			return nil, err
		}
		var x expr = &nameExpr{at{t.pos}, t.val}
		if attrs && p.isOp(".") {
			p.next()
			attr, err := p.expectName()
			if err != nil {
				return nil, err
			}
			x = &attrExpr{at{t.pos}, x, attr.val}
		}
		items = append(items, x)
		if !p.isOp(",") {
			break
		}
		p.next()
		if p.isOp(")") || p.isOp("=") || p.isName("in") {
			break
		}
	}
	if paren {
		if _, err := p.expectOp(")"); err != nil {
			return nil, err
		}
	}
	if len(items) == 1 && !paren {
		return items[0], nil
	}
	if len(items) == 1 {
		if _, ok := items[0].(*nameExpr); ok && !p.isOp(",") {
			return items[0], nil
		}
	}
	return &tupleExpr{at{start}, items}, nil
}

func (p *parser) setStmt(a at) (node, error) {
	target, err := p.assignTarget(true)
	if err != nil {
		return nil, err
	}
	if p.isOp("=") {
		p.next()
		x, err := p.tuple(true)
		if err != nil {
			return nil, err
		}
		return &setNode{a, target, x}, p.endTag()
	}
	name, ok := target.(*nameExpr)
	if !ok {
		return nil, p.errorf(a.p, "a block set needs a single name")
	}
	n := &setBlockNode{at: a, name: name.name}
	for p.isOp("|") {
		p.next()
		f, err := p.filterCall(nil)
		if err != nil {
			return nil, err
		}
		n.filters = append(n.filters, f)
	}
	if n.body, err = p.block("endset"); err != nil {
		return nil, err
	}
	return n, nil
}

// signature parses a macro's or caller's parameters: (a, b=1, ...).
func (p *parser) signature(m *macroDef) error {
	if _, err := p.expectOp("("); err != nil {
		return err
	}
	for !p.isOp(")") {
		if len(m.params) > 0 {
			if _, err := p.expectOp(","); err != nil {
				return err
			}
			if p.isOp(")") {
				break
			}
		}
		t, err := p.expectName()
		if err != nil {
			return err
		}
		var def expr
		if p.isOp("=") {
			p.next()
			if def, err = p.expression(true); err != nil {
				return err
			}
		} else if len(m.defaults) > 0 && m.defaults[len(m.defaults)-1] != nil {
			return p.errorf(t.pos, "non-default argument follows default argument")
		}
		m.params = append(m.params, t.val)
		m.defaults = append(m.defaults, def)
	}
	p.next()
	return nil
}

func (p *parser) macroStmt(a at) (node, error) {
	t, err := p.expectName()
	if err != nil {
		return nil, err
	}
	m := &macroDef{name: t.val}
	if err := p.signature(m); err != nil {
		return nil, err
	}
	if m.body, err = p.block("endmacro"); err != nil {
		return nil, err
	}
	return &macroNode{a, m}, nil
}

func (p *parser) callStmt(a at) (node, error) {
	caller := &macroDef{name: "caller"}
	if p.isOp("(") {
		if err := p.signature(caller); err != nil {
			return nil, err
		}
	}
	x, err := p.expression(true)
	if err != nil {
		return nil, err
	}
	call, ok := x.(*callExpr)
	if !ok {
		return nil, p.errorf(a.p, "expected a call after 'call'")
	}
	if caller.body, err = p.block("endcall"); err != nil {
		return nil, err
	}
	return &callBlockNode{a, call, caller}, nil
}

func (p *parser) filterStmt(a at) (node, error) {
	n := &filterBlockNode{at: a}
	for {
		f, err := p.filterCall(nil)
		if err != nil {
			return nil, err
		}
		n.filters = append(n.filters, f)
		if !p.isOp("|") {
			break
		}
		p.next()
	}
	var err error
	if n.body, err = p.block("endfilter"); err != nil {
		return nil, err
	}
	return n, nil
}

func (p *parser) withStmt(a at) (node, error) {
	n := &withNode{at: a}
	for p.peek().kind != tokBlockEnd {
		if len(n.names) > 0 {
			if _, err := p.expectOp(","); err != nil {
				return nil, err
			}
		}
		t, err := p.expectName()
		if err != nil {
			return nil, err
		}
		if _, err := p.expectOp("="); err != nil {
			return nil, err
		}
		x, err := p.expression(true)
		if err != nil {
			return nil, err
		}
		n.names = append(n.names, t.val)
		n.values = append(n.values, x)
	}
	var err error
	if n.body, err = p.block("endwith"); err != nil {
		return nil, err
	}
	return n, nil
}

// tuple parses an expression, or a tuple of them separated by commas
// without parentheses (as in {% set t = 1, 2 %}).
func (p *parser) tuple(withCond bool) (expr, error) {
	start := p.peek().pos
	var items []expr
	isTuple := false
	for {
		if len(items) > 0 {
			if !p.isOp(",") {
				break
			}
			p.next()
			isTuple = true
			if t := p.peek(); t.kind == tokBlockEnd || t.kind == tokVarEnd || t.kind == tokOp && t.val == ")" || t.kind == tokName && (t.val == "if" || t.val == "recursive") {
				break
			}
		}
		x, err := p.expression(withCond)
		if err != nil {
			return nil, err
		}
		items = append(items, x)
	}
	if !isTuple {
		return items[0], nil
	}
	return &tupleExpr{at{start}, items}, nil
}

// expression parses a full expression: a ternary if withCond.
func (p *parser) expression(withCond bool) (expr, error) {
	t := p.peek()
	if err := p.enter(t.pos); err != nil {
		return nil, err
	}
	defer p.leave()
	x, err := p.or()
	if err != nil || !withCond {
		return x, err
	}
	links := 0
	defer p.unlink(&links)
	for p.isName("if") {
		ifTok := p.next()
		if err := p.link(ifTok.pos, &links); err != nil {
			return nil, err
		}
		cond, err := p.or()
		if err != nil {
			return nil, err
		}
		var no expr
		if p.isName("else") {
			p.next()
			if no, err = p.expression(true); err != nil {
				return nil, err
			}
		}
		x = &condExpr{at{ifTok.pos}, cond, x, no}
	}
	return x, nil
}

// leftAssoc parses operand (op operand)… as binary expressions nested to
// the left, ops being the tokens for which isOp holds; each link counts
// against the nesting limit as a bracket does, so that a long chain
// cannot overflow the stack when it is evaluated.
func (p *parser) leftAssoc(operand func() (expr, error), isOp func() bool) (expr, error) {
	x, err := operand()
	links := 0
	defer p.unlink(&links)
	for err == nil && isOp() {
		t := p.next()
		if err = p.link(t.pos, &links); err != nil {
			break
		}
		var r expr
		if r, err = operand(); err == nil {
			x = &binExpr{at{t.pos}, t.val, x, r}
		}
	}
	return x, err
}

func (p *parser) or() (expr, error) {
	return p.leftAssoc(p.and, func() bool { return p.isName("or") })
}

func (p *parser) and() (expr, error) {
	return p.leftAssoc(p.not, func() bool { return p.isName("and") })
}

func (p *parser) not() (expr, error) {
	if p.isName("not") {
		t := p.next()
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &unaryExpr{at{t.pos}, "not", x}, nil
	}
	return p.compare()
}

func (p *parser) compare() (expr, error) {
	start := p.peek().pos
	x, err := p.math1()
	if err != nil {
		return nil, err
	}
	c := &compareExpr{at: at{start}, first: x}
	for {
		t := p.peek()
		var op string
		switch {
		case t.kind == tokOp && (t.val == "==" || t.val == "!=" || t.val == "<" || t.val == "<=" || t.val == ">" || t.val == ">="):
			op = t.val
			p.next()
		case t.kind == tokName && t.val == "in":
			op = "in"
			p.next()
		case t.kind == tokName && t.val == "not" && p.peekAt(1).kind == tokName && p.peekAt(1).val == "in":
			op = "notin"
			p.next()
			p.next()
		}
		if op == "" {
			break
		}
		r, err := p.math1()
		if err != nil {
			return nil, err
		}
		c.ops = append(c.ops, op)
		c.rest = append(c.rest, r)
	}
	if len(c.ops) == 0 {
		return x, nil
	}
	return c, nil
}

func (p *parser) math1() (expr, error) {
	return p.leftAssoc(p.concat, func() bool { return p.isOp("+") || p.isOp("-") })
}

func (p *parser) concat() (expr, error) {
	start := p.peek().pos
	x, err := p.math2()
	if err != nil {
		return nil, err
	}
	parts := []expr{x}
	for p.isOp("~") {
		p.next()
		r, err := p.math2()
		if err != nil {
			return nil, err
		}
		parts = append(parts, r)
	}
	if len(parts) == 1 {
		return x, nil
	}
	return &concatExpr{at{start}, parts}, nil
}

func (p *parser) math2() (expr, error) {
	return p.leftAssoc(p.pow, func() bool { return p.isOp("*") || p.isOp("/") || p.isOp("//") || p.isOp("%") })
}

func (p *parser) pow() (expr, error) {
	x, err := p.unary(true)
	links := 0
	defer p.unlink(&links)
	for err == nil && p.isOp("**") {
		t := p.next()
		if err = p.link(t.pos, &links); err != nil {
			break
		}
		var r expr
		if r, err = p.unary(true); err == nil {
			x = &binExpr{at{t.pos}, "**", x, r}
		}
	}
	return x, err
}

func (p *parser) unary(withFilter bool) (expr, error) {
	t := p.peek()
	var x expr
	var err error
	if t.kind == tokOp && (t.val == "-" || t.val == "+") {
		p.next()
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		inner, err := p.unary(false)
		p.leave()
		if err != nil {
			return nil, err
		}
		x = &unaryExpr{at{t.pos}, t.val, inner}
	} else {
		if x, err = p.primary(); err != nil {
			return nil, err
		}
		if x, err = p.postfix(x); err != nil {
			return nil, err
		}
	}
	if withFilter {
		return p.filterChain(x)
	}
	return x, nil
}

func (p *parser) primary() (expr, error) {
	t := p.next()
	a := at{t.pos}
	switch t.kind {
	case tokName:
		switch t.val {
		case "true", "True":
			return &literal{a, true}, nil
		case "false", "False":
			return &literal{a, false}, nil
		case "none", "None":
			return &literal{a, nil}, nil
		}
		return &nameExpr{a, t.val}, nil
	case tokString:
		s := t.val
		for p.peek().kind == tokString {
			s += p.next().val
		}
		return &literal{a, s}, nil
	case tokInt, tokFloat:
		return &literal{a, t.num}, nil
	case tokOp:
		switch t.val {
		case "(":
			if p.isOp(")") {
				p.next()
				return &tupleExpr{a, nil}, nil
			}
			x, err := p.tuple(true)
			if err != nil {
				return nil, err
			}
			if _, err := p.expectOp(")"); err != nil {
				return nil, err
			}
			return x, nil
		case "[":
			items, err := p.items("]")
			if err != nil {
				return nil, err
			}
			return &listExpr{a, items}, nil
		case "{":
			d := &dictExpr{at: a}
			for !p.isOp("}") {
				if len(d.keys) > 0 {
					if _, err := p.expectOp(","); err != nil {
						return nil, err
					}
					if p.isOp("}") {
						break
					}
				}
				k, err := p.expression(true)
				if err != nil {
					return nil, err
				}
				if _, err := p.expectOp(":"); err != nil {
					return nil, err
				}
				v, err := p.expression(true)
				if err != nil {
					return nil, err
				}
				d.keys = append(d.keys, k)
				d.vals = append(d.vals, v)
			}
			p.next()
			return d, nil
		}
	}
	return nil, p.errorf(t.pos, "unexpected %s", t.describe())
}

// items parses comma-separated expressions up to the closing op.
func (p *parser) items(closing string) ([]expr, error) {
	var items []expr
	for !p.isOp(closing) {
		if len(items) > 0 {
			if _, err := p.expectOp(","); err != nil {
				return nil, err
			}
			if p.isOp(closing) {
				break
			}
		}
		x, err := p.expression(true)
		if err != nil {
			return nil, err
		}
		items = append(items, x)
	}
	p.next()
	return items, nil
}

func (p *parser) postfix(x expr) (expr, error) {
	links := 0
	defer p.unlink(&links)
	for {
		t := p.peek()
		if t.kind != tokOp {
			return x, nil
		}
		if t.val == "." || t.val == "[" || t.val == "(" {
			if err := p.link(t.pos, &links); err != nil {
				return nil, err
			}
		}
		switch t.val {
		case ".":
			p.next()
			n := p.next()
			switch n.kind {
			case tokName:
				x = &attrExpr{at{t.pos}, x, n.val}
			case tokInt:
				x = &itemExpr{at{t.pos}, x, &literal{at{n.pos}, n.num}}
			default:
				return nil, p.errorf(n.pos, "expected a name after '.', got %s", n.describe())
			}
		case "[":
			p.next()
			key, err := p.subscript()
			if err != nil {
				return nil, err
			}
			x = &itemExpr{at{t.pos}, x, key}
		case "(":
			c, err := p.call(x)
			if err != nil {
				return nil, err
			}
			x = c
		default:
			return x, nil
		}
	}
}

// subscript parses what is between [ and ]: an index, a slice, or
// several (a tuple index).
func (p *parser) subscript() (expr, error) {
	var items []expr
	for !p.isOp("]") {
		if len(items) > 0 {
			if _, err := p.expectOp(","); err != nil {
				return nil, err
			}
		}
		x, err := p.subscribed()
		if err != nil {
			return nil, err
		}
		items = append(items, x)
	}
	t := p.next()
	switch len(items) {
	case 0:
		return nil, p.errorf(t.pos, "expected an index before ']'")
	case 1:
		return items[0], nil
	}
	return &tupleExpr{at{t.pos}, items}, nil
}

func (p *parser) subscribed() (expr, error) {
	start := p.peek().pos
	var parts [3]expr
	k := 0
	sliced := false
	for {
		if p.isOp(":") {
			p.next()
			sliced = true
			k++
			if k > 2 {
				return nil, p.errorf(start, "too many ':' in slice")
			}
			continue
		}
		if p.isOp("]") || p.isOp(",") {
			break
		}
		if parts[k] != nil {
			return nil, p.errorf(p.peek().pos, "expected ':' or ']', got %s", p.peek().describe())
		}
		x, err := p.expression(true)
		if err != nil {
			return nil, err
		}
		parts[k] = x
	}
	if !sliced {
		if parts[0] == nil {
			return nil, p.errorf(start, "expected an index")
		}
		return parts[0], nil
	}
	return &sliceExpr{at{start}, parts[0], parts[1], parts[2]}, nil
}

// args parses a call's arguments after "(".
func (p *parser) args() (args []expr, kwNames []string, kwVals []expr, dyn, dynKw expr, err error) {
	if _, err = p.expectOp("("); err != nil {
		return
	}
	first := true
	for !p.isOp(")") {
		if !first {
			if _, err = p.expectOp(","); err != nil {
				return
			}
			if p.isOp(")") {
				break
			}
		}
		first = false
		switch {
		case p.isOp("*"):
			p.next()
			if dyn, err = p.expression(true); err != nil {
				return
			}
		case p.isOp("**"):
			p.next()
			if dynKw, err = p.expression(true); err != nil {
				return
			}
		case p.peek().kind == tokName && p.peekAt(1).kind == tokOp && p.peekAt(1).val == "=":
			name := p.next()
			p.next()
			var v expr
			if v, err = p.expression(true); err != nil {
				return
			}
			kwNames = append(kwNames, name.val)
			kwVals = append(kwVals, v)
		default:
			if len(kwNames) > 0 || dyn != nil || dynKw != nil {
				err = p.errorf(p.peek().pos, "positional argument follows keyword argument")
				return
			}
			var v expr
			if v, err = p.expression(true); err != nil {
				return
			}
			args = append(args, v)
		}
	}
	p.next()
	return
}

func (p *parser) call(fn expr) (*callExpr, error) {
	t := p.peek()
	args, kwNames, kwVals, dyn, dynKw, err := p.args()
	if err != nil {
		return nil, err
	}
	return &callExpr{at{t.pos}, fn, args, kwNames, kwVals, dyn, dynKw}, nil
}

// filterChain parses the filters, tests and calls that follow a value.
func (p *parser) filterChain(x expr) (expr, error) {
	links := 0
	defer p.unlink(&links)
	for {
		if p.isOp("|") || p.isName("is") || p.isOp("(") {
			if err := p.link(p.peek().pos, &links); err != nil {
				return nil, err
			}
		}
		switch {
		case p.isOp("|"):
			p.next()
			f, err := p.filterCall(x)
			if err != nil {
				return nil, err
			}
			x = f
		case p.isName("is"):
			t, err := p.test(x)
			if err != nil {
				return nil, err
			}
			x = t
		case p.isOp("("):
			c, err := p.call(x)
			if err != nil {
				return nil, err
			}
			x = c
		default:
			return x, nil
		}
	}
}

// filterCall parses a filter's name and arguments; the "|" is consumed.
func (p *parser) filterCall(x expr) (*filterExpr, error) {
	t, err := p.expectName()
	if err != nil {
		return nil, err
	}
	name := t.val
	for p.isOp(".") {
		p.next()
		n, err := p.expectName()
		if err != nil {
			return nil, err
		}
		name += "." + n.val
	}
	f := &filterExpr{at: at{t.pos}, x: x, name: name}
	if p.isOp("(") {
		var dyn, dynKw expr
		f.args, f.kwNames, f.kwVals, dyn, dynKw, err = p.args()
		if err != nil {
			return nil, err
		}
		if dyn != nil || dynKw != nil {
			return nil, p.errorf(t.pos, "*args and **kwargs in filter calls are not supported")
		}
	}
	return f, nil
}

// test parses "is [not] name [args]".
func (p *parser) test(x expr) (expr, error) {
	isTok := p.next()
	negate := false
	if p.isName("not") {
		p.next()
		negate = true
	}
	t, err := p.expectName()
	if err != nil {
		return nil, err
	}
	name := t.val
	for p.isOp(".") {
		p.next()
		n, err := p.expectName()
		if err != nil {
			return nil, err
		}
		name += "." + n.val
	}
	te := &testExpr{at: at{isTok.pos}, x: x, name: name, negate: negate}
	nt := p.peek()
	switch {
	case nt.kind == tokOp && nt.val == "(":
		var dyn, dynKw expr
		te.args, te.kwNames, te.kwVals, dyn, dynKw, err = p.args()
		if err != nil {
			return nil, err
		}
		if dyn != nil || dynKw != nil {
			return nil, p.errorf(t.pos, "*args and **kwargs in tests are not supported")
		}
	case nt.kind == tokString || nt.kind == tokInt || nt.kind == tokFloat ||
		nt.kind == tokOp && (nt.val == "[" || nt.val == "{") ||
		nt.kind == tokName && nt.val != "else" && nt.val != "or" && nt.val != "and":
		if nt.kind == tokName && nt.val == "is" {
			return nil, p.errorf(nt.pos, "you cannot chain multiple tests with 'is'")
		}
		arg, err := p.primary()
		if err != nil {
			return nil, err
		}
		if arg, err = p.postfix(arg); err != nil {
			return nil, err
		}
		te.args = []expr{arg}
	}
	return te, nil
}
