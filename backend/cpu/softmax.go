package cpu

import (
	"math"

	"github.com/sora-go/sora/backend"
)

// visible returns how many leading keys row r may attend to: all of them
// without a causal mask, else those at j ≤ q + QueryOffset for the row's
// query index q, at least key 0 since the offset is not negative.
func visible(r, queries, keys int, p backend.SoftmaxParams) int {
	if !p.Causal {
		return keys
	}
	return min(r%queries+p.QueryOffset+1, keys)
}

// Softmax computes dst = softmax(scale·src) over each row, subtracting the
// row maximum before exponentiating and summing in float64. Masked entries
// are written as exactly 0. dst may alias src.
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
	scale := float64(p.EffectiveScale())
	b.parallelFor(batch*queries, keys*8, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			x, y := s[r*keys:(r+1)*keys], d[r*keys:(r+1)*keys]
			n := visible(r, queries, keys, p)
			m := math.Inf(-1)
			for _, xv := range x[:n] {
				m = max(m, scale*float64(xv)) // max propagates NaN
			}
			var sum float64
			for j, xv := range x[:n] {
				e := math.Exp(scale*float64(xv) - m)
				sum += e
				y[j] = float32(e)
			}
			inv := 1 / sum
			for j := range y[:n] {
				// Rescale the rounded exponential: the error this adds is a
				// few ulps, far below float32 exponentials' own.
				y[j] = float32(float64(y[j]) * inv)
			}
			clear(y[n:])
		}
	})
}

// SoftmaxGrad computes dx = scale · y ⊙ (dy − Σ_row dy⊙y), 0 where masked.
// dx may alias dy.
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
	scale := float64(p.EffectiveScale())
	b.parallelFor(batch*queries, keys*4, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			dr, yr, gr := d[r*keys:(r+1)*keys], ys[r*keys:(r+1)*keys], gs[r*keys:(r+1)*keys]
			n := visible(r, queries, keys, p)
			var dot float64
			for j, yv := range yr[:n] {
				dot += float64(yv) * float64(gr[j])
			}
			for j, yv := range yr[:n] {
				dr[j] = float32(scale * float64(yv) * (float64(gr[j]) - dot))
			}
			clear(dr[n:])
		}
	})
}
