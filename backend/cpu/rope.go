package cpu

import (
	"math"

	"github.com/sora-go/sora/backend"
)

// RoPE rotates each pair of every head of src [batch, seq, heads, headDim]
// by the angle pos·f_i, pos = p.Offset + t, or by its negative with
// p.Inverse; f_i is p.Freqs[i], or theta^(−2i/headDim) without Freqs.
// Angles and their sines and cosines are computed in float64 once per
// (t, i) and shared by the batch and the heads. dst may alias src.
func (b *Backend) RoPE(dst, src backend.Tensor, p backend.RoPEParams) {
	if b.skip(backend.OpRoPE) {
		return
	}
	batch, seq, heads, hd, err := backend.CheckRoPE(dst, src, p)
	if err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(backend.OpRoPE, dst, src)
	if !ok {
		return
	}
	d, s := v[0], v[1]
	half := hd / 2
	if batch*seq*heads*half == 0 {
		return
	}
	// cos and sin of pair i at sequence index t are at [t*half+i].
	cos, sin := make([]float64, seq*half), make([]float64, seq*half)
	inv := p.Freqs
	if inv == nil {
		inv = make([]float64, half)
		for i := range inv {
			inv[i] = math.Pow(float64(p.Theta), -float64(2*i)/float64(hd))
		}
	}
	sign := 1.0
	if p.Inverse {
		sign = -1
	}
	b.parallelFor(seq, half*40, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			pos := float64(p.Offset + t)
			for i, f := range inv {
				sn, cs := math.Sincos(pos * f)
				cos[t*half+i], sin[t*half+i] = cs, sign*sn
			}
		}
	})
	// Pair i of a head is (x[2i], x[2i+1]) interleaved, (x[i], x[i+half])
	// half-split: its first element is at i·stride, its second step later.
	stride, step := 2, 1
	if p.Layout == backend.HalfSplit {
		stride, step = 1, half
	}
	b.parallelFor(batch*seq, heads*hd*3, func(lo, hi int) {
		for bt := lo; bt < hi; bt++ {
			t := bt % seq
			cr, sr := cos[t*half:(t+1)*half], sin[t*half:(t+1)*half]
			for h := range heads {
				base := (bt*heads + h) * hd
				xs, ys := s[base:base+hd], d[base:base+hd]
				for i := range half {
					j := i * stride
					x0, x1 := float64(xs[j]), float64(xs[j+step])
					c, sn := cr[i], sr[i]
					ys[j] = float32(x0*c - x1*sn)
					ys[j+step] = float32(x0*sn + x1*c)
				}
			}
		}
	})
}
