package peft

import (
	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// The low-rank methods (LoRA, LoRA+, DoRA, Pre-Diag, SORA, Pre- and
// Post-Ortho; DoRAPEFT alone runs op by op, as PEFT does) run as one fused
// op over the [N, out] activations. Written out, every one of them is
//
//	y = D(x·W0ᵀ) + row + Σⱼ (Xⱼ·Mⱼᵀ)·Pⱼᵀ
//
// with D a column scale (Pre-Diag's and SORA's d, DoRA's k = m ⊘ n) or
// nothing, row the conditioned bias (b, d ⊙ b, R·b or R(d ⊙ b); DoRA's b
// is outside its scale), and skinny terms: the LoRA term X = drop(x),
// M = A, P = s·Post(B) ([out, r]: s·B, s·R·B, or DoRA's s·diag(k)·B), and,
// for a rotation R = I + u·vᵀ (u holding φ for the exact form), the term
// X = x, M = v_dᵀ·W0, P = u with v_d = d ⊙ v (or v): the rotation acting on
// the frozen path x·W0ᵀ·diag(d) becomes a product of x with a [2r_p, in]
// matrix, and acting on the LoRA path it folds into that path's P. Without
// dropout both terms share X = x and are one product of width r + 2r_p.
//
// The small matrices (row, P, M) are ordinary graph values, so their
// gradients flow back to A, B, d, C and D through the tape; the fused op
// does the work on [N, ·] tensors: the frozen product, one skinny product
// per term forward (plus one per term to accumulate), and in backward
// G·W0 (G·(diag(d)·W0) or (G ⊙ d)·W0 when d is there), Gᵀ·K, G·P, dKᵀ·X
// and dK·M per term, colsum(G) for the row when it needs a gradient and
// colsum(G ⊙ x·W0ᵀ) for d. Compared with the op-by-op graph (a column
// scale, a rotation h + ((h·v)·φᵀ)·uᵀ with its own Add, a separate bias
// add and LoRA add, each with its backward), this drops every elementwise
// pass over [N, out] but the bias add, those a column scale needs (d ⊙ h
// forward, the product and column sum for d's gradient backward) and the
// row's column sum, and reads x once for A and the rotation together.

// fusedTerm is one skinny term (X·Mᵀ)·Pᵀ of fusedLinear: X [N, in],
// M [k, in], P [out, k].
type fusedTerm struct{ x, m, p *graph.Value }

// fusedLinear returns y = D(x·W0ᵀ) + row + Σⱼ (Xⱼ·Mⱼᵀ)·Pⱼᵀ for x [N, in]
// and w0 [out, in], where D(h) = h·diag(d) when d ([out]) is not nil and h
// otherwise, and row ([out]) may be nil. Every input may require a
// gradient (w0 too, though adapted layers usually freeze it), and a term's
// X may be x itself.
func fusedLinear(g *graph.Tape, x, w0, d, row *graph.Value, terms []fusedTerm) *graph.Value {
	n, out := x.Dim(0), w0.Dim(0)
	training := !g.NoGrad()
	// Values the op reads but differentiates by itself: the products of
	// the forward, computed by the tape without gradient (Detach) so that
	// the tape owns and pools them. q = x·W0ᵀ is kept only for d's
	// gradient; the op otherwise writes the frozen product into y.
	var q, w0d *graph.Value
	if d != nil {
		q = g.MatMulNT(g.Detach(x), g.Detach(w0))
		if training && x.RequiresGrad() && n >= x.Dim(1) && w0.DType() == backend.Float32 {
			// dx = (G ⊙ d)·W0 = G·(diag(d)·W0): with at least as many
			// rows as inputs, scaling the [out, in] weight costs less
			// than scaling the [N, out] gradient (with fewer, backward
			// scales G instead, and no [out, in] temporary is made; so
			// too for a W0 stored in bfloat16, which only the products
			// take, and whose float32 diag(d)·W0 would cost twice its
			// memory).
			w0d = g.ScaleRows(g.Detach(w0), g.Detach(d))
		}
	}
	ks := make([]*graph.Value, len(terms))
	for j, t := range terms {
		ks[j] = g.MatMulNT(g.Detach(t.x), g.Detach(t.m))
	}
	// Scratch for backward (dK per term, a column sum that must be added
	// to a gradient), taken from the tape so that it is pooled and freed
	// with the tape's other buffers.
	var dks []*graph.Value
	var sums, gd *graph.Value
	if training && d != nil && w0.RequiresGrad() {
		gd = g.Full(0, n, out) // G ⊙ d, for W0's own gradient
	}
	if training {
		dks = make([]*graph.Value, len(terms))
		for j := range terms {
			dks[j] = g.Full(0, n, ks[j].Dim(1))
		}
		if row != nil || d != nil { // the only column sums backward takes
			sums = g.Full(0, out)
		}
	}

	// The op's inputs, in this order: x, w0, [q, d], [w0d], [row], then
	// X, M, P, K for each term.
	ins := []*graph.Value{x, w0}
	const ix, iw = 0, 1
	iq, id, iw0d, irow := -1, -1, -1, -1
	add := func(v *graph.Value) int {
		ins = append(ins, v)
		return len(ins) - 1
	}
	if d != nil {
		iq, id = add(q), add(d)
	}
	if w0d != nil {
		iw0d = add(w0d)
	}
	if row != nil {
		irow = add(row)
	}
	type termIdx struct{ x, m, p, k int }
	ti := make([]termIdx, len(terms))
	for j, t := range terms {
		ti[j] = termIdx{add(t.x), add(t.m), add(t.p), add(ks[j])}
	}
	b := g.Backend()
	ten := func(i int) backend.Tensor { return ins[i].Tensor() }
	mm := func(c, a, bb backend.Tensor, ta, tb, acc bool) {
		p := backend.MatMulParams{TransA: ta, TransB: tb, Alpha: 1}
		if acc {
			p.Beta = 1
		}
		b.MatMul(c, a, bb, p)
	}

	forward := func(y backend.Tensor) {
		if d != nil {
			b.Binary(backend.Mul, y, ten(iq), ten(id))
		} else {
			mm(y, ten(ix), ten(iw), false, true, false)
		}
		if row != nil {
			b.Binary(backend.Add, y, y, ten(irow))
		}
		for _, t := range ti {
			mm(y, ten(t.k), ten(t.p), false, true, true)
		}
	}

	backward := func(gy backend.Tensor, gr *graph.Grads) {
		if gr.Needs(iw) {
			// A trainable W0's gradient through the frozen product,
			// (G ⊙ d)ᵀ·x, first, while G is intact; its other uses (the
			// rotation's M = (d ⊙ v)ᵀ·W0) reach it through the tape.
			gw := gy
			if gd != nil {
				gw = gd.Tensor()
				b.Binary(backend.Mul, gw, gy, ten(id))
			}
			dst, acc := gr.Target(iw)
			mm(dst, gw, ten(ix), true, false, acc)
		}
		frozenDX := func(w backend.Tensor) {
			dst, acc := gr.Target(ix)
			mm(dst, gy, w, false, false, acc)
		}
		// The frozen path's share of dx first where G needs no scaling:
		// the big product then usually writes x's gradient rather than
		// adding to it.
		dxDone := !gr.Needs(ix)
		if !dxDone && (d == nil || iw0d >= 0) {
			w := ten(iw)
			if iw0d >= 0 {
				w = ten(iw0d)
			}
			frozenDX(w)
			dxDone = true
		}
		for j, t := range ti {
			if gr.Needs(t.p) {
				dst, acc := gr.Target(t.p) // dP = Gᵀ·K
				mm(dst, gy, ten(t.k), true, false, acc)
			}
			if !gr.Needs(t.x) && !gr.Needs(t.m) {
				continue
			}
			dk := dks[j].Tensor()
			mm(dk, gy, ten(t.p), false, false, false) // dK = G·P
			if gr.Needs(t.m) {
				dst, acc := gr.Target(t.m) // dM = dKᵀ·X
				mm(dst, dk, ten(t.x), true, false, acc)
			}
			if gr.Needs(t.x) {
				dst, acc := gr.Target(t.x) // dX += dK·M
				mm(dst, dk, ten(t.m), false, false, acc)
			}
		}
		colSums := func(i int, src backend.Tensor) {
			dst, acc := gr.Target(i)
			if !acc {
				b.SumColumns(dst, src)
				return
			}
			tmp := sums.Tensor()
			b.SumColumns(tmp, src)
			b.Binary(backend.Add, dst, dst, tmp.MustReshape(dst.Shape()...))
		}
		if irow >= 0 && gr.Needs(irow) {
			colSums(irow, gy)
		}
		if id < 0 {
			return
		}
		if gr.Needs(id) {
			// dd = colsum(G ⊙ x·W0ᵀ), computed in place: in G (which a
			// backward may overwrite) when nothing reads G afterwards,
			// else in q, a value of this op alone that nothing reads
			// after this.
			if dxDone {
				b.Binary(backend.Mul, gy, gy, ten(iq))
				colSums(id, gy)
			} else {
				b.Binary(backend.Mul, ten(iq), ten(iq), gy)
				colSums(id, ten(iq))
			}
		}
		if !dxDone {
			b.Binary(backend.Mul, gy, gy, ten(id)) // G ⊙ d, then dx += (G ⊙ d)·W0
			frozenDX(ten(iw))
		}
	}
	return g.Custom("peft.fusedLinear", backend.Shape{n, out}, ins, forward, backward)
}

// lowRankForward is the forward of the low-rank methods but DoRAPEFT
// through fusedLinear, x being [N, in]. See the comment at the top of this
// file for the algebra.
func (l *Layer) lowRankForward(g *graph.Tape, x *graph.Value) *graph.Value {
	var d, row *graph.Value
	pl := l.bm
	switch {
	case l.spec.Pre == Diagonal:
		d = l.diag
	case l.spec.Post == NormDiagonal:
		// DoRA: k = m ⊘ n scales the frozen product and the LoRA path
		// (k ⊙ (s·t·Bᵀ) = s·t·(diag(k)·B)ᵀ) but not the bias.
		d = g.Div(l.mag, l.doraNorm(g))
		pl = g.ScaleRows(pl, d)
	}
	hasRot := l.spec.Pre == Rotation || l.spec.Post == Rotation
	var rot rotation
	var ueff *graph.Value
	if hasRot {
		rot = l.rotation(g)
		ueff = rot.u
		if rot.phi != nil {
			ueff = g.MatMul(rot.u, rot.phi) // R − I = u·φ·vᵀ
		}
	}
	if b0 := l.base.B; b0 != nil {
		row = g.Reshape(b0, l.out)
		if l.spec.Pre == Diagonal {
			row = g.Mul(row, d)
		}
		if hasRot {
			row = g.Reshape(rot.left(g, g.Reshape(row, l.out, 1)), l.out)
		}
	}
	xl := x
	if l.cfg.Dropout > 0 && !g.NoGrad() {
		xl = l.dropout(g, x)
	}
	if l.spec.Post == Rotation {
		pl = rot.left(g, pl) // R·B: the rotation of the LoRA path
	}
	terms := []fusedTerm{{xl, l.a, g.Scale(pl, l.scaling)}}
	if hasRot {
		vd := rot.v
		if d != nil {
			vd = g.ScaleRows(vd, d) // R acts after diag(d)
		}
		vw := g.MatMulTN(vd, l.base.W) // [2r_p, in]
		if xl == x {
			terms[0] = fusedTerm{x, g.Concat(0, l.a, vw), g.Concat(1, terms[0].p, ueff)}
		} else {
			terms = append(terms, fusedTerm{x, vw, ueff})
		}
	}
	return fusedLinear(g, x, l.base.W, d, row, terms)
}
