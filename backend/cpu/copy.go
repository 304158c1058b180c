package cpu

import (
	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
	"github.com/sora-go/sora/backend/internal/strided"
)

// Copy copies (or, with accumulate, adds) src into dst element by element.
// Both may be strided views of any rank, with negative strides, and src may
// broadcast with stride 0. Axes that are laid out back to back in both views
// are merged first, so a permutation copy walks as few, as long rows as the
// layouts allow; big copies are split over goroutines along the outer axes.
func (b *Backend) Copy(dst, src backend.Tensor, accumulate bool) {
	if b.skip(backend.OpCopy) {
		return
	}
	if err := backend.CheckCopyDType(dst, src, true); err != nil {
		b.Record(err)
		return
	}
	if src.DType() == backend.BFloat16 {
		b.copyBF16(dst, src, accumulate)
		return
	}
	dbuf, err := b.storage(dst)
	if err == nil {
		var sbuf []float32
		if sbuf, err = b.storage(src); err == nil {
			b.copyStrided(dbuf, dst.Offset(), dst.Strides(), sbuf, src.Offset(), src.Strides(), dst.Shape(), accumulate)
			return
		}
	}
	b.Record(backend.Errorf(backend.OpCopy, []backend.Tensor{dst, src}, "%w", err))
}

// copyBF16 widens the contiguous bfloat16 tensor src into the contiguous
// float32 tensor dst of the same shape (CheckCopyDType), or adds it there.
func (b *Backend) copyBF16(dst, src backend.Tensor, accumulate bool) {
	d, err := b.view(dst)
	var h []uint16
	if err == nil {
		h, err = b.viewBF16(src)
	}
	if err != nil {
		b.Record(backend.Errorf(backend.OpCopy, []backend.Tensor{dst, src}, "%w", err))
		return
	}
	b.parallelFor(len(d), 1, func(lo, hi int) {
		if accumulate {
			b.conv.AddTo(d[lo:hi], h[lo:hi])
		} else {
			b.conv.ToFloat32(d[lo:hi], h[lo:hi])
		}
	})
}

// storage returns the whole live float32 buffer behind t, for strided
// access.
func (b *Backend) storage(t backend.Tensor) ([]float32, error) {
	buf, err := b.live(t, backend.Float32)
	if err != nil {
		return nil, err
	}
	return buf.data, nil
}

// copyStrided performs the copy on raw buffers.
func (b *Backend) copyStrided(dst []float32, doff int, ds []int, src []float32, soff int, ss []int, shape backend.Shape, acc bool) {
	axes, ok := strided.Merge(shape, ds, ss)
	if !ok {
		return
	}
	in := axes[len(axes)-1]
	outer := axes[:len(axes)-1]
	k := b.kernels(4 * shape.NumElements())
	if len(outer) == 0 {
		// One long row: split the row itself.
		b.streamFor(k, in.N, 1, func(lo, hi int) {
			copyRow(k, dst, doff+lo*in.DS, in.DS, src, soff+lo*in.SS, in.SS, hi-lo, acc)
		})
		return
	}
	rows := 1
	for _, a := range outer {
		rows *= a.N
	}
	b.streamFor(k, rows, in.N, func(lo, hi int) {
		// Position the odometer at outer row lo.
		idx := make([]int, len(outer))
		d, s := doff, soff
		for r, i := lo, len(outer)-1; i >= 0; i-- {
			idx[i] = r % outer[i].N
			r /= outer[i].N
			d += idx[i] * outer[i].DS
			s += idx[i] * outer[i].SS
		}
		for r := lo; r < hi; r++ {
			copyRow(k, dst, d, in.DS, src, s, in.SS, in.N, acc)
			for i := len(outer) - 1; i >= 0; i-- {
				idx[i]++
				d += outer[i].DS
				s += outer[i].SS
				if idx[i] < outer[i].N {
					break
				}
				d -= outer[i].N * outer[i].DS
				s -= outer[i].N * outer[i].SS
				idx[i] = 0
			}
		}
	})
}

// copyRow copies or adds n elements from src (start s, stride sst) to dst
// (start d, stride dst), through k's vector kernels where the row is
// contiguous or a broadcast (Go's loops store one scalar at a time: a 4 MiB
// broadcast, as a loss gradient's, took 4× a Fill).
func copyRow(k *vec.Kernels, dst []float32, d, dstr int, src []float32, s, sstr, n int, acc bool) {
	switch {
	case dstr == 1 && sstr == 1:
		dr, sr := dst[d:d+n], src[s:s+n]
		if acc {
			k.Add(dr, dr, sr)
		} else {
			copy(dr, sr)
		}
	case dstr == 1 && sstr == 0:
		dr, v := dst[d:d+n], src[s]
		if acc {
			k.AddScalar(dr, dr, v)
		} else {
			k.Fill(dr, v)
		}
	default:
		if acc {
			for i := 0; i < n; i++ {
				dst[d+i*dstr] += src[s+i*sstr]
			}
		} else {
			for i := 0; i < n; i++ {
				dst[d+i*dstr] = src[s+i*sstr]
			}
		}
	}
}
