package jinja

// The syntax tree. Statements render output; expressions compute values.
// Every node remembers where it starts in the source, for error messages.

type node interface{ position() pos }

type expr interface{ position() pos }

type at struct{ p pos }

func (a at) position() pos { return a.p }

// Statements.
type (
	textNode struct {
		at
		text string
	}
	outputNode struct {
		at
		x expr
	}
	ifNode struct {
		at
		conds  []expr
		bodies [][]node
		els    []node
	}
	forNode struct {
		at
		target    expr // nameExpr or tupleExpr of names
		iter      expr
		filter    expr // the "if" of "for x in xs if cond", or nil
		body, els []node
		recursive bool
	}
	setNode struct {
		at
		target expr // nameExpr, tupleExpr of names, or attrExpr on a name
		x      expr
	}
	setBlockNode struct {
		at
		name    string
		filters []*filterExpr // applied to the body's output, innermost first
		body    []node
	}
	macroNode struct {
		at
		m *macroDef
	}
	callBlockNode struct {
		at
		call   *callExpr
		caller *macroDef
	}
	filterBlockNode struct {
		at
		filters []*filterExpr
		body    []node
	}
	withNode struct {
		at
		names  []string
		values []expr
		body   []node
	}
	generationNode struct {
		at
		body []node
	}
	breakNode    struct{ at }
	continueNode struct{ at }
)

// macroDef is a macro's definition: {% macro %} or the caller of a
// {% call %} block.
type macroDef struct {
	name     string
	params   []string
	defaults []expr // one per param; nil where there is none
	body     []node
}

// Expressions.
type (
	literal struct {
		at
		v Value
	}
	nameExpr struct {
		at
		name string
	}
	listExpr struct {
		at
		items []expr
	}
	tupleExpr struct {
		at
		items []expr
	}
	dictExpr struct {
		at
		keys, vals []expr
	}
	attrExpr struct {
		at
		x    expr
		name string
	}
	itemExpr struct {
		at
		x, key expr
	}
	sliceExpr struct {
		at
		start, stop, step expr // each may be nil
	}
	callExpr struct {
		at
		fn        expr
		args      []expr
		kwNames   []string
		kwVals    []expr
		dynArgs   expr // *args, or nil
		dynKwargs expr // **kwargs, or nil
	}
	filterExpr struct {
		at
		x       expr // nil in a filter block or block set
		name    string
		args    []expr
		kwNames []string
		kwVals  []expr
	}
	testExpr struct {
		at
		x       expr
		name    string
		args    []expr
		kwNames []string
		kwVals  []expr
		negate  bool
	}
	binExpr struct {
		at
		op   string // + - * / // % ** ~ and or
		l, r expr
	}
	unaryExpr struct {
		at
		op string // not, -, +
		x  expr
	}
	compareExpr struct {
		at
		first expr
		ops   []string // == != < <= > >= in notin
		rest  []expr
	}
	condExpr struct {
		at
		cond, yes, no expr // no may be nil
	}
	concatExpr struct {
		at
		parts []expr
	}
)
