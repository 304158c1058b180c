package jinja

import (
	"fmt"
	"math"
	"strings"
)

func (r *renderer) eval(x expr, s *scope) (Value, error) {
	switch x := x.(type) {
	case *literal:
		return x.v, nil
	case *nameExpr:
		if v, ok := s.lookup(x.name); ok {
			return v, nil
		}
		if v, ok := r.globals[x.name]; ok {
			return v, nil
		}
		if f, ok := builtinGlobals[x.name]; ok {
			return f, nil
		}
		return undefinedName(x.name), nil
	case *listExpr:
		out := make([]Value, len(x.items))
		for i, it := range x.items {
			v, err := r.eval(it, s)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case *tupleExpr:
		out := make(Tuple, len(x.items))
		for i, it := range x.items {
			v, err := r.eval(it, s)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case *dictExpr:
		d := NewDict()
		for i := range x.keys {
			k, err := r.eval(x.keys[i], s)
			if err != nil {
				return nil, err
			}
			v, err := r.eval(x.vals[i], s)
			if err != nil {
				return nil, err
			}
			if err := d.Set(k, v); err != nil {
				return nil, r.errAt(x.keys[i], err)
			}
		}
		return d, nil
	case *attrExpr:
		obj, err := r.eval(x.x, s)
		if err != nil {
			return nil, err
		}
		v, err := getattr(obj, x.name)
		if err != nil {
			return nil, r.errAt(x, err)
		}
		return v, nil
	case *itemExpr:
		obj, err := r.eval(x.x, s)
		if err != nil {
			return nil, err
		}
		if sl, ok := x.key.(*sliceExpr); ok {
			return r.evalSlice(obj, sl, s)
		}
		key, err := r.eval(x.key, s)
		if err != nil {
			return nil, err
		}
		v, err := getitem(obj, key)
		if err != nil {
			return nil, r.errAt(x, err)
		}
		return v, nil
	case *sliceExpr:
		return nil, r.errAt(x, fmt.Errorf("a slice is only valid inside []"))
	case *callExpr:
		return r.evalCall(x, s, nil)
	case *filterExpr:
		v, err := r.eval(x.x, s)
		if err != nil {
			return nil, err
		}
		return r.applyFilter(x, v, s)
	case *testExpr:
		v, err := r.eval(x.x, s)
		if err != nil {
			return nil, err
		}
		ok, err := r.applyTest(x, v, s)
		if err != nil {
			return nil, err
		}
		return ok != x.negate, nil
	case *binExpr:
		return r.evalBin(x, s)
	case *unaryExpr:
		v, err := r.eval(x.x, s)
		if err != nil {
			return nil, err
		}
		switch x.op {
		case "not":
			return !truth(v), nil
		case "-":
			switch n := v.(type) {
			case int64:
				if n == math.MinInt64 {
					return nil, r.errAt(x, fmt.Errorf("integer overflow"))
				}
				return -n, nil
			case bool:
				i, _ := asInt(n)
				return -i, nil
			case float64:
				return -n, nil
			case Undefined:
				return nil, r.errAt(x, n.err())
			}
			return nil, r.errAt(x, fmt.Errorf("bad operand type for unary -: '%s'", typeName(v)))
		default:
			switch n := v.(type) {
			case int64, float64:
				return n, nil
			case bool:
				i, _ := asInt(n)
				return i, nil
			case Undefined:
				return nil, r.errAt(x, n.err())
			}
			return nil, r.errAt(x, fmt.Errorf("bad operand type for unary +: '%s'", typeName(v)))
		}
	case *compareExpr:
		left, err := r.eval(x.first, s)
		if err != nil {
			return nil, err
		}
		for i, op := range x.ops {
			right, err := r.eval(x.rest[i], s)
			if err != nil {
				return nil, err
			}
			ok, err := compareOp(op, left, right)
			if err != nil {
				return nil, r.errAt(x, err)
			}
			if !ok {
				return false, nil
			}
			left = right
		}
		return true, nil
	case *condExpr:
		c, err := r.eval(x.cond, s)
		if err != nil {
			return nil, err
		}
		if truth(c) {
			return r.eval(x.yes, s)
		}
		if x.no == nil {
			return Undefined{Hint: fmt.Sprintf("the inline if-expression on line %d evaluated to false and no else section was defined.", x.p.line)}, nil
		}
		return r.eval(x.no, s)
	case *concatExpr:
		var b strings.Builder
		for _, p := range x.parts {
			v, err := r.eval(p, s)
			if err != nil {
				return nil, err
			}
			b.WriteString(toStr(v))
			if b.Len() > r.lim.MaxOutput {
				return nil, r.errAt(x, fmt.Errorf("string exceeds %d bytes", r.lim.MaxOutput))
			}
		}
		return b.String(), nil
	}
	return nil, r.errAt(x, fmt.Errorf("internal error: unknown expression %T", x))
}

func compareOp(op string, a, b Value) (bool, error) {
	switch op {
	case "==":
		return equal(a, b), nil
	case "!=":
		return !equal(a, b), nil
	case "in":
		return contains(b, a)
	case "notin":
		ok, err := contains(b, a)
		return !ok, err
	}
	c, err := compare(a, b, op)
	if err != nil {
		return false, err
	}
	switch op {
	case "<":
		return c == -1, nil
	case "<=":
		return c == -1 || c == 0, nil
	case ">":
		return c == 1, nil
	case ">=":
		return c == 1 || c == 0, nil
	}
	return false, fmt.Errorf("unknown comparison %s", op)
}

// contains is Python's "item in container".
func contains(container, item Value) (bool, error) {
	switch c := container.(type) {
	case string, Markup:
		cs, _ := asString(c)
		is, ok := asString(item)
		if !ok {
			if u, isU := item.(Undefined); isU {
				return false, u.err()
			}
			return false, fmt.Errorf("'in <string>' requires string as left operand, not %s", typeName(item))
		}
		return strings.Contains(cs, is), nil
	case []Value, Tuple:
		items, _ := seqOf(c)
		for _, it := range items {
			if equal(it, item) {
				return true, nil
			}
		}
		return false, nil
	case *Dict:
		if _, err := dictKey(item); err != nil {
			return false, err
		}
		_, ok := c.Get(item)
		return ok, nil
	case Undefined:
		return false, nil
	case *Namespace:
		return false, fmt.Errorf("argument of type 'Namespace' is not iterable")
	}
	return false, fmt.Errorf("argument of type '%s' is not iterable", typeName(container))
}

func (r *renderer) evalBin(x *binExpr, s *scope) (Value, error) {
	a, err := r.eval(x.l, s)
	if err != nil {
		return nil, err
	}
	switch x.op {
	case "and":
		if !truth(a) {
			return a, nil
		}
		return r.eval(x.r, s)
	case "or":
		if truth(a) {
			return a, nil
		}
		return r.eval(x.r, s)
	}
	b, err := r.eval(x.r, s)
	if err != nil {
		return nil, err
	}
	v, err := arith(x.op, a, b, r.lim.MaxOutput)
	if err != nil {
		return nil, r.errAt(x, err)
	}
	return v, nil
}

// getattr is Jinja's sandboxed obj.name: an attribute (a method, a loop
// or namespace field) first, then the item of that name; Undefined where
// neither exists. An attribute of Undefined is an error.
func getattr(obj Value, name string) (Value, error) {
	if u, ok := obj.(Undefined); ok {
		return nil, u.err()
	}
	if strings.HasPrefix(name, "_") {
		return Undefined{Hint: fmt.Sprintf("access to attribute '%s' of '%s' object is unsafe.", name, typeName(obj))}, nil
	}
	switch o := obj.(type) {
	case *Namespace:
		if v, ok := o.attrs.Get(name); ok {
			return v, nil
		}
		return undefinedAttr(obj, name), nil
	case *loopObj:
		if v, ok := o.attr(name); ok {
			return v, nil
		}
		return undefinedAttr(obj, name), nil
	}
	if hasMethod(obj, name) {
		return &method{recv: obj, name: name}, nil
	}
	if d, ok := obj.(*Dict); ok {
		if v, ok := d.Get(name); ok {
			return v, nil
		}
	}
	return undefinedAttr(obj, name), nil
}

// getitem is Jinja's obj[key]: the item first, then for a string key the
// attribute of that name; Undefined where neither exists.
func getitem(obj, key Value) (Value, error) {
	if u, ok := obj.(Undefined); ok {
		return nil, u.err()
	}
	switch o := obj.(type) {
	case *Dict:
		if _, err := dictKey(key); err != nil {
			return nil, err
		}
		if v, ok := o.Get(key); ok {
			return v, nil
		}
	case []Value, Tuple, string, Markup:
		if i, ok := asInt(key); ok {
			var n int
			if str, isStr := asString(o); isStr {
				rs := []rune(str)
				n = len(rs)
				if i < 0 {
					i += int64(n)
				}
				if i >= 0 && i < int64(n) {
					return string(rs[i]), nil
				}
			} else {
				items, _ := seqOf(o)
				n = len(items)
				if i < 0 {
					i += int64(n)
				}
				if i >= 0 && i < int64(n) {
					return items[i], nil
				}
			}
		}
	}
	if name, ok := key.(string); ok {
		return getattr(obj, name)
	}
	return Undefined{Hint: fmt.Sprintf("%s has no element %s", objectName(obj), repr(key))}, nil
}

func (r *renderer) evalSlice(obj Value, sl *sliceExpr, s *scope) (Value, error) {
	var bounds [3]Value
	for i, e := range []expr{sl.start, sl.stop, sl.step} {
		if e == nil {
			continue
		}
		v, err := r.eval(e, s)
		if err != nil {
			return nil, err
		}
		bounds[i] = v
	}
	if u, ok := obj.(Undefined); ok {
		return nil, r.errAt(sl, u.err())
	}
	v, err := slice(obj, bounds[0], bounds[1], bounds[2])
	if err != nil {
		return nil, r.errAt(sl, err)
	}
	return v, nil
}

// slice is Python's obj[start:stop:step] for lists, tuples and strings.
func slice(obj, start, stop, step Value) (Value, error) {
	var n int
	var rs []rune
	items, isSeq := seqOf(obj)
	str, isStr := asString(obj)
	switch {
	case isSeq:
		n = len(items)
	case isStr:
		rs = []rune(str)
		n = len(rs)
	default:
		return Undefined{Hint: fmt.Sprintf("%s cannot be sliced", objectName(obj))}, nil
	}
	bound := func(v Value, def int64) (int64, bool, error) {
		if v == nil {
			return def, false, nil
		}
		i, ok := asInt(v)
		if !ok {
			return 0, false, fmt.Errorf("slice indices must be integers or None")
		}
		return i, true, nil
	}
	st, _, err := bound(step, 1)
	if err != nil {
		return nil, err
	}
	if st == 0 {
		return nil, fmt.Errorf("slice step cannot be zero")
	}
	var lo, hi int64
	ln := int64(n)
	clamp := func(i int64, given bool, def int64) int64 {
		if !given {
			return def
		}
		if i < 0 {
			i += ln
			if i < 0 {
				if st < 0 {
					return -1
				}
				return 0
			}
		}
		if i >= ln {
			if st < 0 {
				return ln - 1
			}
			return ln
		}
		return i
	}
	a, ga, err := bound(start, 0)
	if err != nil {
		return nil, err
	}
	b, gb, err := bound(stop, 0)
	if err != nil {
		return nil, err
	}
	if st > 0 {
		lo, hi = clamp(a, ga, 0), clamp(b, gb, ln)
	} else {
		lo, hi = clamp(a, ga, ln-1), clamp(b, gb, -1)
	}
	var idx []int64
	if st > 0 {
		for i := lo; i < hi; i += st {
			idx = append(idx, i)
		}
	} else {
		for i := lo; i > hi; i += st {
			idx = append(idx, i)
		}
	}
	if isStr {
		var b strings.Builder
		for _, i := range idx {
			b.WriteRune(rs[i])
		}
		return b.String(), nil
	}
	out := make([]Value, len(idx))
	for k, i := range idx {
		out[k] = items[i]
	}
	if _, ok := obj.(Tuple); ok {
		return Tuple(out), nil
	}
	return out, nil
}

// evalCall evaluates a call; caller is the caller of a {% call %} block.
func (r *renderer) evalCall(x *callExpr, s *scope, caller *macro) (Value, error) {
	fn, err := r.eval(x.fn, s)
	if err != nil {
		return nil, err
	}
	args := make([]Value, 0, len(x.args))
	for _, a := range x.args {
		v, err := r.eval(a, s)
		if err != nil {
			return nil, err
		}
		args = append(args, v)
	}
	if x.dynArgs != nil {
		v, err := r.eval(x.dynArgs, s)
		if err != nil {
			return nil, err
		}
		more, err := iterate(v)
		if err != nil {
			return nil, r.errAt(x, err)
		}
		args = append(args, more...)
	}
	var kwargs []KV
	for i, name := range x.kwNames {
		v, err := r.eval(x.kwVals[i], s)
		if err != nil {
			return nil, err
		}
		kwargs = append(kwargs, KV{name, v})
	}
	if x.dynKwargs != nil {
		v, err := r.eval(x.dynKwargs, s)
		if err != nil {
			return nil, err
		}
		d, ok := v.(*Dict)
		if !ok {
			return nil, r.errAt(x, fmt.Errorf("argument after ** must be a mapping, not %s", typeName(v)))
		}
		for i, k := range d.keys {
			ks, ok := k.(string)
			if !ok {
				return nil, r.errAt(x, fmt.Errorf("keywords must be strings"))
			}
			kwargs = append(kwargs, KV{ks, d.vals[i]})
		}
	}
	return r.call(x, fn, args, kwargs, caller)
}

func (r *renderer) call(at interface{ position() pos }, fn Value, args []Value, kwargs []KV, caller *macro) (Value, error) {
	switch f := fn.(type) {
	case *macro:
		return r.callMacro(f, args, kwargs, caller, at)
	case Func:
		if err := r.step(at); err != nil {
			return nil, err
		}
		v, err := f(args, kwargs)
		if err != nil {
			return nil, r.errAt(at, err)
		}
		return v, nil
	case *method:
		v, err := r.callMethod(f, args, kwargs, at)
		if err != nil {
			return nil, r.errAt(at, err)
		}
		return v, nil
	case *loopObj:
		if !f.node.recursive {
			return nil, r.errAt(at, fmt.Errorf("the loop is not recursive: only a loop marked 'recursive' can be called"))
		}
		if len(args) != 1 || len(kwargs) > 0 {
			return nil, r.errAt(at, fmt.Errorf("loop() takes exactly one argument"))
		}
		if f.depth+1 >= r.lim.MaxDepth {
			return nil, r.errAt(at, fmt.Errorf("recursive loop nests deeper than %d", r.lim.MaxDepth))
		}
		saved := r.out
		buf := &strings.Builder{}
		r.out = buf
		err := r.loop(f.node, args[0], f.scope, f.depth+1)
		r.out = saved
		if err != nil {
			return nil, err
		}
		return buf.String(), nil
	case Undefined:
		return nil, r.errAt(at, f.err())
	}
	return nil, r.errAt(at, fmt.Errorf("'%s' object is not callable", typeName(fn)))
}
