package graph

import (
	"github.com/sora-go/sora/backend"
)

// Reshape returns a view of x with a new shape of the same number of
// elements; one extent may be −1, inferred from the others. No data moves.
// When the shape does not change it returns x itself.
func (g *Tape) Reshape(x *Value, shape ...int) *Value {
	if !g.check("Reshape", x) {
		return g.placeholder(backend.Shape(shape))
	}
	t, err := x.data.Reshape(shape...)
	if err != nil {
		g.failf("Reshape: %v", err)
		return g.placeholder(backend.Shape(shape))
	}
	if t.Shape().Equal(x.shape) {
		return x
	}
	out := g.view(t, x)
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) { g.give(x, dy) })
	}
	return out
}

// Permute returns x with its axes reordered, materialised: axis i of the
// result is axis perm[i] of x.
func (g *Tape) Permute(x *Value, perm ...int) *Value {
	if !g.check("Permute", x) {
		return g.placeholder(nil)
	}
	src, err := x.data.Permute(perm...)
	if err != nil {
		g.failf("Permute: %v", err)
		return g.placeholder(nil)
	}
	out := g.output(src.Shape(), x)
	if g.err != nil {
		return out
	}
	g.b.Copy(out.data, src, false)
	if g.recording(out) {
		perm := append([]int(nil), perm...)
		g.record(out, func(dy backend.Tensor) {
			if dst, acc := g.gradDst(x); !dst.IsZero() {
				// dst permuted has dy's shape; the copy scatters dy back.
				pd, err := dst.Permute(perm...)
				g.fail(err)
				g.b.Copy(pd, dy, acc)
			}
			g.release(dy)
		})
	}
	return out
}

// Transpose returns x with axes i and j swapped, materialised (negative
// axes count from the end).
func (g *Tape) Transpose(x *Value, i, j int) *Value {
	if !g.check("Transpose", x) {
		return g.placeholder(nil)
	}
	r := x.Rank()
	i, j = normAxis(i, r), normAxis(j, r)
	if i < 0 || j < 0 {
		g.failf("Transpose: axes out of range for shape %v", x.shape)
		return g.placeholder(x.shape)
	}
	perm := make([]int, r)
	for k := range perm {
		perm[k] = k
	}
	perm[i], perm[j] = j, i
	return g.Permute(x, perm...)
}

func normAxis(a, rank int) int {
	if a < 0 {
		a += rank
	}
	if a < 0 || a >= rank {
		return -1
	}
	return a
}

// region returns the strided view of the contiguous tensor t covering
// [from, to) along axis.
func region(t backend.Tensor, axis, from, to int) backend.Tensor {
	shape := append(backend.Shape(nil), t.Shape()...)
	shape[axis] = to - from
	st := t.Strides()
	r, err := t.Strided(from*st[axis], shape, st)
	if err != nil {
		panic(err) // callers checked the range
	}
	return r
}

// Slice returns the elements of x with index in [from, to) along axis
// (negative axis counts from the end). Along axis 0 it is a view; along
// other axes it is copied.
func (g *Tape) Slice(x *Value, axis, from, to int) *Value {
	if !g.check("Slice", x) {
		return g.placeholder(nil)
	}
	a := normAxis(axis, x.Rank())
	if a < 0 || from < 0 || to < from || to > x.shape[a] {
		g.failf("Slice: [%d:%d] along axis %d of %v", from, to, axis, x.shape)
		return g.placeholder(x.shape)
	}
	var out *Value
	if a == 0 {
		out = g.view(x.data.MustSlice(from, to), x)
	} else {
		out = g.output(region(x.data, a, from, to).Shape(), x)
		if g.err != nil {
			return out
		}
		g.b.Copy(out.data, region(x.data, a, from, to), false)
	}
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			if dst := g.gradZeroed(x); !dst.IsZero() {
				g.b.Copy(region(dst, a, from, to), dy, true)
			}
			g.release(dy)
		})
	}
	return out
}

// Concat joins values along axis (negative counts from the end); their
// other extents must agree.
func (g *Tape) Concat(axis int, xs ...*Value) *Value {
	if len(xs) == 0 {
		g.failf("Concat: no values")
		return g.placeholder(nil)
	}
	if !g.check("Concat", xs...) {
		return g.placeholder(nil)
	}
	a := normAxis(axis, xs[0].Rank())
	if a < 0 {
		g.failf("Concat: axis %d out of range for %v", axis, xs[0].shape)
		return g.placeholder(nil)
	}
	ref := append(backend.Shape(nil), xs[0].shape...)
	ref[a] = 0
	shape := append(backend.Shape(nil), ref...)
	for i, x := range xs {
		s := append(backend.Shape(nil), x.shape...)
		if len(s) == len(ref) {
			s[a] = 0
		}
		if !s.Equal(ref) {
			g.failf("Concat: value %d has shape %v, value 0 has %v (only axis %d may differ)", i, x.shape, xs[0].shape, a)
			return g.placeholder(nil)
		}
		shape[a] += x.shape[a]
	}
	out := g.output(shape, xs...)
	if g.err != nil {
		return out
	}
	offs := make([]int, len(xs)+1)
	for i, x := range xs {
		offs[i+1] = offs[i] + x.shape[a]
		g.b.Copy(region(out.data, a, offs[i], offs[i+1]), x.data, false)
	}
	xs = append([]*Value(nil), xs...)
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			for i, x := range xs {
				if !x.needsGrad {
					continue
				}
				dst, acc := g.gradDst(x)
				g.b.Copy(dst, region(dy, a, offs[i], offs[i+1]), acc)
			}
			g.release(dy)
		})
	}
	return out
}

// RepeatInterleave repeats every slice of x along axis n times in a row:
// for axis 2 of [B, T, H, D] and n = 2 the heads come out h0 h0 h1 h1 …,
// which is how grouped-query attention shares a key/value head among n query
// heads. The backward sums the n copies.
func (g *Tape) RepeatInterleave(x *Value, axis, n int) *Value {
	if !g.check("RepeatInterleave", x) {
		return g.placeholder(nil)
	}
	a := normAxis(axis, x.Rank())
	if a < 0 || n < 1 {
		g.failf("RepeatInterleave: axis %d, count %d for shape %v", axis, n, x.shape)
		return g.placeholder(x.shape)
	}
	if n == 1 {
		return x
	}
	pre := x.shape[:a].NumElements()
	d := x.shape[a]
	post := x.shape[a+1:].NumElements()
	shape := append(backend.Shape(nil), x.shape...)
	shape[a] *= n
	out := g.output(shape, x)
	if g.err != nil {
		return out
	}
	// Broadcast copy: the repeat axis has stride 0 in the source.
	src, err := x.data.Strided(0, backend.Shape{pre, d, n, post}, []int{d * post, post, 0, 1})
	if err != nil {
		g.fail(err)
		return out
	}
	g.b.Copy(out.data.MustReshape(pre, d, n, post), src, false)
	if g.recording(out) {
		g.record(out, func(dy backend.Tensor) {
			// A fused sum over the strided axis would save n−1 passes.
			if dst, acc := g.gradDst(x); !dst.IsZero() {
				d3 := dst.MustReshape(pre, d, post)
				for r := range n {
					part, err := dy.Strided(r*post, backend.Shape{pre, d, post}, []int{d * n * post, n * post, 1})
					if err != nil {
						g.fail(err)
						break
					}
					g.b.Copy(d3, part, acc || r > 0)
				}
			}
			g.release(dy)
		})
	}
	return out
}
