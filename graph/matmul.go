package graph

import (
	"github.com/sora-go/sora/backend"
)

// MatMul returns the matrix product a·b. Operands have rank 2 or more: the
// last two axes hold the matrices and the leading axes a batch. Both
// operands have the same batch axes, or one of them is a single matrix
// (rank 2) shared by every matrix of the other: [B, H, T, D]·[B, H, D, T]
// multiplies B·H pairs, [B, T, in]·[in, out] multiplies each of B matrices
// by one weight.
//
// One operand, not both, may be a weight stored in bfloat16 ([Value.DType],
// frozen): the backend reads it as MatMul's B operand in every product,
// forward and backward; where the algebra puts it first, the product is
// computed transposed (Cᵀ = op(B)ᵀ·op(A)ᵀ) into a scratch buffer of C's
// size and copied back. A bfloat16 operand of rank above 2 must be the
// second one.
func (g *Tape) MatMul(a, b *Value) *Value { return g.matmul("MatMul", a, b, false, false) }

// MatMulNT returns a·bᵀ (each matrix of b transposed), batched as
// [Tape.MatMul]: x·Wᵀ for a weight W of shape [out, in], or the attention
// scores Q·Kᵀ.
func (g *Tape) MatMulNT(a, b *Value) *Value { return g.matmul("MatMulNT", a, b, false, true) }

// MatMulTN returns aᵀ·b (each matrix of a transposed), batched as
// [Tape.MatMul].
func (g *Tape) MatMulTN(a, b *Value) *Value { return g.matmul("MatMulTN", a, b, true, false) }

func (g *Tape) matmul(name string, a, b *Value, ta, tb bool) *Value {
	if !g.checkStored(name, a, b) {
		return g.placeholder(nil)
	}
	if a.Rank() < 2 || b.Rank() < 2 {
		g.failf("%s: operands need rank 2 or more, have %v and %v", name, a.shape, b.shape)
		return g.placeholder(nil)
	}
	if a.DType() == backend.BFloat16 && (b.DType() == backend.BFloat16 || a.Rank() > 2) {
		g.failf("%s: operands %v and %v: one bfloat16 operand at most, and a bfloat16 first operand must be a single matrix", name, a, b)
		return g.placeholder(nil)
	}
	ab, bb := a.shape[:a.Rank()-2], b.shape[:b.Rank()-2]
	var batch backend.Shape
	switch {
	case len(ab) == 0:
		batch = bb
	case len(bb) == 0 || ab.Equal(bb):
		batch = ab
	default:
		g.failf("%s: batch axes of %v and %v differ", name, a.shape, b.shape)
		return g.placeholder(nil)
	}
	ar, ac := a.Dim(-2), a.Dim(-1)
	br, bc := b.Dim(-2), b.Dim(-1)
	m, ka := ar, ac
	if ta {
		m, ka = ac, ar
	}
	kb, n := br, bc
	if tb {
		kb, n = bc, br
	}
	shape := append(append(backend.Shape(nil), batch...), m, n)
	if ka != kb {
		g.failf("%s: inner dimensions of %v and %v disagree (%d vs %d)", name, a.shape, b.shape, ka, kb)
		return g.placeholder(shape)
	}
	out := g.output(shape, a, b)
	if g.err != nil {
		return out
	}
	v := mmViews{nb: batch.NumElements(), ar: ar, ac: ac, br: br, bc: bc, m: m, n: n,
		batchA: len(ab) > 0, batchB: len(bb) > 0, batchC: len(batch) > 0,
		// A batch of a against a shared b folds into the rows of one
		// larger product when a is not transposed.
		fold: len(ab) > 0 && len(bb) == 0 && !ta}
	av, bv := v.a(a.data), v.b(b.data)
	g.mm(v.c(out.data), av, bv, backend.MatMulParams{TransA: ta, TransB: tb, Alpha: 1})
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			dc := v.c(dy)
			if a.needsGrad {
				// dA = dC·op(B)ᵀ; for a transposed A, dA = op(B)·dCᵀ.
				if ta {
					g.matmulGrad(a, v, true, bv, dc, tb, true)
				} else {
					g.matmulGrad(a, v, true, dc, bv, false, !tb)
				}
			}
			if b.needsGrad {
				// dB = op(A)ᵀ·dC; for a transposed B, dB = dCᵀ·op(A).
				if tb {
					g.matmulGrad(b, v, false, dc, av, true, ta)
				} else {
					g.matmulGrad(b, v, false, av, dc, !ta, false)
				}
			}
			g.release(dy)
		})
	}
	return out
}

// mmViews gives the views of a batched product's operands, and of
// tensors of their shapes, that backend.MatMul takes: a single matrix
// stays as it is, a batch becomes rank 3, and a folded batch (a's batch
// against a single b) becomes the rows of one matrix. It is a plain value,
// not closures, so that a product allocates nothing for it.
type mmViews struct {
	nb, ar, ac, br, bc, m, n     int
	batchA, batchB, batchC, fold bool
}

func (v mmViews) a(t backend.Tensor) backend.Tensor {
	switch {
	case v.fold:
		return t.MustReshape(v.nb*v.ar, v.ac)
	case v.batchA:
		return t.MustReshape(v.nb, v.ar, v.ac)
	}
	return t
}

func (v mmViews) b(t backend.Tensor) backend.Tensor {
	if v.batchB {
		return t.MustReshape(v.nb, v.br, v.bc)
	}
	return t
}

func (v mmViews) c(t backend.Tensor) backend.Tensor {
	switch {
	case v.fold:
		return t.MustReshape(v.nb*v.m, v.n)
	case v.batchC:
		return t.MustReshape(v.nb, v.m, v.n)
	}
	return t
}

// matmulGrad adds x'·y' (primes per the transpose flags) to the gradient
// of v, operand a of the product (isA) or b, viewed as views says. When v
// is a single matrix but x or y is a batch, the batch is summed one
// product at a time.
func (g *Tape) matmulGrad(v *Value, views mmViews, isA bool, x, y backend.Tensor, tx, ty bool) {
	dst, acc := g.gradDst(v)
	if dst.IsZero() {
		return
	}
	nb := views.nb
	var d backend.Tensor
	if isA {
		d = views.a(dst)
	} else {
		d = views.b(dst)
	}
	p := backend.MatMulParams{TransA: tx, TransB: ty, Alpha: 1}
	if d.Rank() == 3 || (x.Rank() == 2 && y.Rank() == 2) {
		if acc {
			p.Beta = 1
		}
		g.mm(d, x, y, p)
		return
	}
	// A fused batched-reduce product would do this in one call.
	pick := func(t backend.Tensor, i int) backend.Tensor {
		if t.Rank() == 3 {
			return t.MustSlice(i, i+1).MustReshape(t.Dim(1), t.Dim(2))
		}
		return t
	}
	for i := range nb {
		p.Beta = 0
		if acc || i > 0 {
			p.Beta = 1
		}
		g.mm(d, pick(x, i), pick(y, i), p)
	}
}

// mm is the backend's MatMul, c = op(a)·op(b) + beta·c with beta 0 or 1,
// for operands of which one may be bfloat16. The backend takes bfloat16
// only as its B operand, so a bfloat16 a is multiplied transposed, as
// cᵀ = op(b)ᵀ·op(a)ᵀ, into a scratch buffer that is then copied (or, with
// beta 1, added) into c through a transposed view.
func (g *Tape) mm(c, a, b backend.Tensor, p backend.MatMulParams) {
	if a.DType() != backend.BFloat16 {
		g.b.MatMul(c, a, b, p)
		return
	}
	if p.Beta != 0 && p.Beta != 1 {
		g.failf("MatMul: beta %g with a bfloat16 first operand; want 0 or 1", p.Beta)
		return
	}
	perm := []int{1, 0}
	ts := backend.Shape{c.Dim(1), c.Dim(0)}
	if c.Rank() == 3 {
		perm = []int{0, 2, 1}
		ts = backend.Shape{c.Dim(0), c.Dim(2), c.Dim(1)}
	}
	tmp := g.alloc(ts)
	if tmp.IsZero() {
		return
	}
	g.b.MatMul(tmp, b, a, backend.MatMulParams{TransA: !p.TransB, TransB: !p.TransA, Alpha: p.Alpha})
	view, err := tmp.Permute(perm...)
	if err != nil {
		g.fail(err)
	} else {
		g.b.Copy(c, view, p.Beta == 1)
	}
	g.release(tmp)
}

// Linear returns x·wᵀ + bias for a weight w of shape [out, in] and x of
// shape [..., in]; the result has shape [..., out]. bias, of shape [out],
// may be nil. w may be a frozen weight stored in bfloat16 (see
// [UploadParamAs]).
func (g *Tape) Linear(x, w, bias *Value) *Value {
	ins := []*Value{x, w}
	if bias != nil {
		ins = append(ins, bias)
	}
	// w may be a bfloat16 weight, which MatMulNT takes; the ops below
	// refuse bfloat16 wherever else it turns up.
	if !g.checkStored("Linear", ins...) {
		return g.placeholder(nil)
	}
	if w.Rank() != 2 || x.Rank() < 1 || x.Dim(-1) != w.Dim(1) {
		g.failf("Linear: input %v does not fit weight %v (want [..., in] and [out, in])", x.shape, w.shape)
		return g.placeholder(nil)
	}
	if x.Rank() == 2 && bias == nil {
		// The common case needs no reshapes (each costs a value).
		return g.MatMulNT(x, w)
	}
	shape := append(append(backend.Shape(nil), x.shape[:x.Rank()-1]...), w.Dim(0))
	y := g.MatMulNT(g.Reshape(x, -1, w.Dim(1)), w)
	if bias != nil {
		if bias.Len() != w.Dim(0) {
			g.failf("Linear: bias %v for weight %v, want [%d]", bias.shape, w.shape, w.Dim(0))
			return g.placeholder(shape)
		}
		y = g.Add(y, g.Reshape(bias, w.Dim(0)))
	}
	return g.Reshape(y, shape...)
}
