package jinja

import "fmt"

// testFunc implements a test: v is name(args).
type testFunc func(r *renderer, v Value, args []Value) (bool, error)

var tests map[string]testFunc

func init() {
	cmp := func(op string) testFunc {
		return func(r *renderer, v Value, args []Value) (bool, error) {
			if len(args) != 1 {
				return false, fmt.Errorf("test needs exactly one argument")
			}
			return compareOp(op, v, args[0])
		}
	}
	is := func(f func(Value) bool) testFunc {
		return func(r *renderer, v Value, args []Value) (bool, error) { return f(v), nil }
	}
	tests = map[string]testFunc{
		"defined":   is(func(v Value) bool { _, u := v.(Undefined); return !u }),
		"undefined": is(func(v Value) bool { _, u := v.(Undefined); return u }),
		"none":      is(func(v Value) bool { return v == nil }),
		"boolean":   is(func(v Value) bool { _, ok := v.(bool); return ok }),
		"true":      is(func(v Value) bool { b, ok := v.(bool); return ok && b }),
		"false":     is(func(v Value) bool { b, ok := v.(bool); return ok && !b }),
		"string":    is(func(v Value) bool { _, ok := asString(v); return ok }),
		"number":    is(isNumber),
		"integer":   is(func(v Value) bool { _, ok := v.(int64); return ok }),
		"float":     is(func(v Value) bool { _, ok := v.(float64); return ok }),
		"mapping":   is(func(v Value) bool { _, ok := v.(*Dict); return ok }),
		"iterable": is(func(v Value) bool {
			switch v.(type) {
			case string, Markup, []Value, Tuple, *Dict, Undefined:
				return true
			}
			return false
		}),
		"sequence": is(func(v Value) bool {
			switch v.(type) {
			case string, Markup, []Value, Tuple, *Dict, Undefined:
				return true
			}
			return false
		}),
		"callable": is(func(v Value) bool {
			switch v.(type) {
			case *macro, Func, *method:
				return true
			}
			return false
		}),
		"escaped": is(func(v Value) bool { _, ok := v.(Markup); return ok }),
		"lower": is(func(v Value) bool {
			ok, _ := strMethod(toStr(v), "islower", nil, nil, 0)
			return ok.(bool)
		}),
		"upper": is(func(v Value) bool {
			ok, _ := strMethod(toStr(v), "isupper", nil, nil, 0)
			return ok.(bool)
		}),
		"even": intTest(func(n int64) bool { return n%2 == 0 }),
		"odd":  intTest(func(n int64) bool { return n%2 != 0 }),
		"divisibleby": func(r *renderer, v Value, args []Value) (bool, error) {
			if len(args) != 1 {
				return false, fmt.Errorf("divisibleby needs one argument")
			}
			m, err := arith("%", v, args[0], r.lim.MaxOutput)
			if err != nil {
				return false, err
			}
			return equal(m, int64(0)), nil
		},
		"in": func(r *renderer, v Value, args []Value) (bool, error) {
			if len(args) != 1 {
				return false, fmt.Errorf("in needs one argument")
			}
			return contains(args[0], v)
		},
		"sameas": func(r *renderer, v Value, args []Value) (bool, error) {
			if len(args) != 1 {
				return false, fmt.Errorf("sameas needs one argument")
			}
			return sameAs(v, args[0]), nil
		},
		"filter": func(r *renderer, v Value, args []Value) (bool, error) {
			name, ok := v.(string)
			_, found := filters[name]
			return ok && found, nil
		},
		"test": func(r *renderer, v Value, args []Value) (bool, error) {
			name, ok := v.(string)
			_, found := tests[name]
			return ok && found, nil
		},
	}
	for _, names := range [][]string{{"eq", "equalto", "=="}, {"ne", "!="}, {"lt", "lessthan", "<"}, {"le", "<="}, {"gt", "greaterthan", ">"}, {"ge", ">="}} {
		op := names[len(names)-1]
		for _, n := range names {
			tests[n] = cmp(op)
		}
	}
}

func intTest(f func(int64) bool) testFunc {
	return func(r *renderer, v Value, args []Value) (bool, error) {
		if n, ok := asInt(v); ok {
			return f(n), nil
		}
		if x, ok := v.(float64); ok {
			m, _ := numArith("%", x, int64(2))
			return f(int64(m.(float64))), nil
		}
		if u, ok := v.(Undefined); ok {
			return false, u.err()
		}
		return false, fmt.Errorf("unsupported operand type(s) for %%: '%s' and 'int'", typeName(v))
	}
}

// sameAs approximates Python's "is": identity for containers, equality of
// type and value for the immutable scalars Python shares.
func sameAs(a, b Value) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case int64, float64, string:
		return a == b
	case *Dict:
		return a == b
	case []Value:
		y, ok := b.([]Value)
		return ok && len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0])
	}
	return false
}

func (r *renderer) applyTest(t *testExpr, v Value, s *scope) (bool, error) {
	fn, ok := tests[t.name]
	if !ok {
		return false, r.errAt(t, fmt.Errorf("no test named '%s'", t.name))
	}
	var args []Value
	for _, x := range t.args {
		av, err := r.eval(x, s)
		if err != nil {
			return false, err
		}
		args = append(args, av)
	}
	for i := range t.kwNames {
		av, err := r.eval(t.kwVals[i], s)
		if err != nil {
			return false, err
		}
		args = append(args, av)
	}
	ok, err := fn(r, v, args)
	if err != nil {
		return false, r.errAt(t, err)
	}
	return ok, nil
}

// checkNames reports, as Jinja's compiler does, a filter or test that
// does not exist, unless it sits inside an if (where Jinja defers the
// error to the moment it is reached, so that templates can guard an
// optional filter).
func checkNames(name string, body []node) error {
	var err error
	var walkX func(x expr, cond bool)
	fail := func(p pos, kind, n string) {
		if err == nil {
			err = &Error{Template: name, Line: p.line, Col: p.col, Msg: fmt.Sprintf("no %s named '%s'", kind, n)}
		}
	}
	walkX = func(x expr, cond bool) {
		switch x := x.(type) {
		case nil:
		case *filterExpr:
			if _, ok := filters[x.name]; !ok && !cond {
				fail(x.p, "filter", x.name)
			}
			walkX(x.x, cond)
			for _, a := range x.args {
				walkX(a, cond)
			}
			for _, a := range x.kwVals {
				walkX(a, cond)
			}
		case *testExpr:
			if _, ok := tests[x.name]; !ok && !cond {
				fail(x.p, "test", x.name)
			}
			walkX(x.x, cond)
			for _, a := range x.args {
				walkX(a, cond)
			}
		case *listExpr:
			for _, a := range x.items {
				walkX(a, cond)
			}
		case *tupleExpr:
			for _, a := range x.items {
				walkX(a, cond)
			}
		case *dictExpr:
			for i := range x.keys {
				walkX(x.keys[i], cond)
				walkX(x.vals[i], cond)
			}
		case *attrExpr:
			walkX(x.x, cond)
		case *itemExpr:
			walkX(x.x, cond)
			walkX(x.key, cond)
		case *sliceExpr:
			walkX(x.start, cond)
			walkX(x.stop, cond)
			walkX(x.step, cond)
		case *callExpr:
			walkX(x.fn, cond)
			for _, a := range x.args {
				walkX(a, cond)
			}
			for _, a := range x.kwVals {
				walkX(a, cond)
			}
			walkX(x.dynArgs, cond)
			walkX(x.dynKwargs, cond)
		case *binExpr:
			walkX(x.l, cond)
			walkX(x.r, cond)
		case *unaryExpr:
			walkX(x.x, cond)
		case *compareExpr:
			walkX(x.first, cond)
			for _, a := range x.rest {
				walkX(a, cond)
			}
		case *condExpr:
			walkX(x.cond, cond)
			walkX(x.yes, true)
			walkX(x.no, true)
		case *concatExpr:
			for _, a := range x.parts {
				walkX(a, cond)
			}
		}
	}
	var walk func(body []node, cond bool)
	walk = func(body []node, cond bool) {
		for _, n := range body {
			switch n := n.(type) {
			case *outputNode:
				walkX(n.x, cond)
			case *ifNode:
				for i, c := range n.conds {
					walkX(c, cond)
					walk(n.bodies[i], true)
				}
				walk(n.els, true)
			case *forNode:
				walkX(n.iter, cond)
				walkX(n.filter, cond)
				walk(n.body, cond)
				walk(n.els, cond)
			case *setNode:
				walkX(n.x, cond)
			case *setBlockNode:
				for _, f := range n.filters {
					walkX(f, cond)
				}
				walk(n.body, cond)
			case *macroNode:
				walk(n.m.body, cond)
			case *callBlockNode:
				walkX(n.call, cond)
				walk(n.caller.body, cond)
			case *filterBlockNode:
				for _, f := range n.filters {
					walkX(f, cond)
				}
				walk(n.body, cond)
			case *withNode:
				for _, v := range n.values {
					walkX(v, cond)
				}
				walk(n.body, cond)
			case *generationNode:
				walk(n.body, cond)
			}
		}
	}
	walk(body, false)
	return err
}

// builtinGlobals are Jinja's global functions that chat templates use.
var builtinGlobals = map[string]Value{
	"range": Func(func(args []Value, kwargs []KV) (Value, error) {
		if len(kwargs) > 0 {
			return nil, fmt.Errorf("range() takes no keyword arguments")
		}
		var bounds [3]int64
		bounds[2] = 1
		for i, a := range args {
			n, ok := asInt(a)
			if !ok {
				return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(a))
			}
			bounds[i] = n
		}
		start, stop, step := bounds[0], bounds[1], bounds[2]
		switch len(args) {
		case 1:
			start, stop = 0, bounds[0]
		case 2, 3:
		default:
			return nil, fmt.Errorf("range expected 1 to 3 arguments, got %d", len(args))
		}
		if step == 0 {
			return nil, fmt.Errorf("range() arg 3 must not be zero")
		}
		// The count in unsigned arithmetic: stop - start and -step wrap
		// around in int64 for the widest ranges.
		var n uint64
		if step > 0 && stop > start {
			n = (uint64(stop)-uint64(start)-1)/uint64(step) + 1
		} else if step < 0 && stop < start {
			n = (uint64(start)-uint64(stop)-1)/(-uint64(step)) + 1
		}
		// Jinja's sandbox refuses ranges longer than this (MAX_RANGE).
		if n > 100000 {
			return nil, fmt.Errorf("range too big (%d items); the most is 100000", n)
		}
		out := make([]Value, n)
		for i := range out {
			out[i] = start + int64(i)*step
		}
		return out, nil
	}),
	"dict": Func(func(args []Value, kwargs []KV) (Value, error) {
		d := NewDict()
		if len(args) > 1 {
			return nil, fmt.Errorf("dict expected at most 1 argument, got %d", len(args))
		}
		if len(args) == 1 {
			if err := fillDict(d, args[0]); err != nil {
				return nil, err
			}
		}
		for _, kv := range kwargs {
			_ = d.Set(kv.Key, kv.Value)
		}
		return d, nil
	}),
	"namespace": Func(func(args []Value, kwargs []KV) (Value, error) {
		d := NewDict()
		for _, a := range args {
			if err := fillDict(d, a); err != nil {
				return nil, err
			}
		}
		for _, kv := range kwargs {
			_ = d.Set(kv.Key, kv.Value)
		}
		return &Namespace{attrs: d}, nil
	}),
}

// fillDict adds the entries of a dict, or of a list of pairs, to d.
func fillDict(d *Dict, v Value) error {
	if src, ok := v.(*Dict); ok {
		for i, k := range src.keys {
			_ = d.Set(k, src.vals[i])
		}
		return nil
	}
	items, err := iterate(v)
	if err != nil {
		return err
	}
	for i, it := range items {
		pair, ok := seqOf(it)
		if !ok || len(pair) != 2 {
			return fmt.Errorf("dictionary update sequence element #%d has the wrong length", i)
		}
		if err := d.Set(pair[0], pair[1]); err != nil {
			return err
		}
	}
	return nil
}
