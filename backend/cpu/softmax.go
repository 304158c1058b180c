package cpu

import (
	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// visible returns the keys [lo, hi) row r may attend to: all of them
// without a causal mask, else those at j ≤ q + QueryOffset for the row's
// query index q (at least key 0 since the offset is not negative), and
// with a sliding window only the last Window of those. CheckSoftmax has
// made sure the window leaves some key (lo < hi).
func visible(r, queries, keys int, p backend.SoftmaxParams) (lo, hi int) {
	if !p.Causal {
		return 0, keys
	}
	pos := r%queries + p.QueryOffset
	if p.Window > 0 {
		lo = max(pos-p.Window+1, 0)
	}
	return lo, min(pos+1, keys)
}

// Softmax computes dst = softmax(scale·src) over each row: the row maximum
// of scale·src is subtracted before exponentiating (in float32, accurate to
// a few ulps), the exponentials are summed in float64 and each is scaled
// by the float32 reciprocal of the sum. Masked entries are written as
// exactly 0. dst may alias src.
func (b *Backend) Softmax(dst, src backend.Tensor, p backend.SoftmaxParams) {
	if b.skip(backend.OpSoftmax) {
		return
	}
	batch, queries, keys, err := backend.CheckSoftmax(backend.OpSoftmax, dst, src, backend.Tensor{}, p)
	if err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(backend.OpSoftmax, dst, src)
	if !ok {
		return
	}
	d, s := v[0], v[1]
	k := b.kernels(8 * len(d))
	scale := p.EffectiveScale()
	rows := batch * queries
	chunks := b.chunks(rows, keys*8)
	if !p.Causal {
		// Every row is whole: each is written by the pass over the one
		// after it (softmaxRows).
		tmp := b.rowScratch(k, chunks, 2*keys)
		b.parallelChunks(rows, chunks, func(c, lo, hi int) {
			softmaxRows(k, d[lo*keys:hi*keys], s[lo*keys:hi*keys], row(tmp, c), keys, scale)
			k.Fence()
		})
		return
	}
	tmp := b.rowScratch(k, chunks, keys)
	b.parallelChunks(rows, chunks, func(c, lo, hi int) {
		for r := lo; r < hi; r++ {
			x, y := s[r*keys:(r+1)*keys], d[r*keys:(r+1)*keys]
			// Only the visible keys are read and exponentiated; the
			// masked ones on either side are written as zeros.
			a, b := visible(r, queries, keys, p)
			softmaxRow(k, y[a:b], x[a:b], row(tmp, c), scale, 1, nextRow(s, r, hi, keys))
			clear(y[:a])
			clear(y[b:])
		}
		k.Fence()
	})
}

// softmaxRow sets y = num·softmax(scale·x) for a non-empty row and returns
// the maximum m of scale·x and the sum of exp(scale·x − m). A NaN the
// maximum skips still makes the sum, and so every output, NaN. With tmp
// (at least as long as x) the exponentials go there first, so that the
// final pass writes y without reading it, which lets streaming kernels
// write y with non-temporal stores; without, they go to y. After the
// maximum's pass it prefetches next (nil for none), the row to come, which
// then arrives while this one's exponentials are computed from the cache;
// only streaming kernels prefetch (see vec's Prefetch).
func softmaxRow(k *vec.Kernels, y, x, tmp []float32, scale float32, num float64, next []float32) (m float32, sum float64) {
	m = k.MaxScaled(x, scale)
	k.Prefetch(next)
	e := y
	if tmp != nil {
		e = tmp[:len(x)]
	}
	sum = k.ExpShift(e, x, scale, m)
	k.ScaleTo(y, e, num/sum)
	return m, sum
}

// softmaxRows sets each row of n floats of y to softmax(scale·x) as
// softmaxRow does, bit for bit, in one pass over each row but the first
// (vec's SoftmaxStep): the pass over a row stores its exponentials, takes
// the next row's maximum and writes the row before from the exponentials
// its pass stored, so that the stores of one row and the loads of the
// next overlap the exponentials of the one between. With tmp (two rows
// long; streaming kernels) the exponentials go there, else to y.
func softmaxRows(k *vec.Kernels, y, x, tmp []float32, n int, scale float32) {
	rows := len(y) / n
	m := k.MaxScaled(x[:n], scale)
	var prevE, prevY []float32 // the row before, its exponentials and output
	var prevSum float64
	for r := range rows {
		xr, yr := x[r*n:(r+1)*n], y[r*n:(r+1)*n]
		e := yr
		if tmp != nil {
			e = tmp[r%2*n : (r%2+1)*n]
		}
		var sum float64
		sum, m = k.SoftmaxStep(e, xr, nextRow(x, r, rows, n), prevE, prevY, scale, m, 1/prevSum, -1, 0)
		prevE, prevY, prevSum = e, yr, sum
	}
	k.ScaleTo(prevY, prevE, 1/prevSum)
}

// rowScratch returns a temporary buffer of n floats per chunk (a row for
// softmaxRow, two for softmaxRows and CrossEntropyGrad) when k streams
// its stores, else nil.
func (b *Backend) rowScratch(k *vec.Kernels, chunks, n int) [][]float32 {
	if k == b.kern {
		return nil
	}
	return b.scratch32(chunks, n)
}

// nextRow returns row r+1 of the rows of n floats in xs, or nil after the
// last row, hi.
func nextRow(xs []float32, r, hi, n int) []float32 {
	if r+1 >= hi {
		return nil
	}
	return xs[(r+1)*n : (r+2)*n]
}

// row returns rows[c], or nil when rows is.
func row(rows [][]float32, c int) []float32 {
	if rows == nil {
		return nil
	}
	return rows[c]
}

// SoftmaxGrad computes dx = scale · y ⊙ (dy − Σ_row dy⊙y), 0 where masked,
// with the dot product in float64 and the products in float32 (the dot
// split into two float32s, so that dy − dot keeps its digits). dx may
// alias dy.
func (b *Backend) SoftmaxGrad(dx, y, dy backend.Tensor, p backend.SoftmaxParams) {
	if b.skip(backend.OpSoftmaxGrad) {
		return
	}
	batch, queries, keys, err := backend.CheckSoftmax(backend.OpSoftmaxGrad, dx, dy, y, p)
	if err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(backend.OpSoftmaxGrad, dx, y, dy)
	if !ok {
		return
	}
	d, ys, gs := v[0], v[1], v[2]
	k := b.kernels(12 * len(d))
	scale := float64(p.EffectiveScale())
	if !p.Causal {
		// Every row is whole: each row's dot product is taken in the pass
		// that writes the row before (vec's SoftmaxGradNext), as the norm
		// gradients take their statistics, so that the row's loads from
		// memory overlap the arithmetic of the one before.
		b.streamFor(k, batch*queries, keys*4, func(lo, hi int) {
			dot := k.Dot(ys[lo*keys:(lo+1)*keys], gs[lo*keys:(lo+1)*keys])
			for r := lo; r < hi; r++ {
				dr, yr, gr := d[r*keys:(r+1)*keys], ys[r*keys:(r+1)*keys], gs[r*keys:(r+1)*keys]
				dot = k.SoftmaxGradNext(dr, yr, gr, scale, dot, nextRow(ys, r, hi, keys), nextRow(gs, r, hi, keys))
			}
		})
		return
	}
	b.streamFor(k, batch*queries, keys*4, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			dr, yr, gr := d[r*keys:(r+1)*keys], ys[r*keys:(r+1)*keys], gs[r*keys:(r+1)*keys]
			a, b := visible(r, queries, keys, p)
			k.SoftmaxGrad(dr[a:b], yr[a:b], gr[a:b], scale, k.Dot(yr[a:b], gr[a:b]))
			clear(dr[:a])
			clear(dr[b:])
		}
	})
}
