package cpu

import "github.com/sora-go/sora/backend"

// Copy copies (or, with accumulate, adds) src into dst element by element.
// Both may be strided views of any rank, with negative strides, and src may
// broadcast with stride 0. Axes that are laid out back to back in both views
// are merged first, so a permutation copy walks as few, as long rows as the
// layouts allow; big copies are split over goroutines along the outer axes.
func (b *Backend) Copy(dst, src backend.Tensor, accumulate bool) {
	if b.skip(backend.OpCopy) {
		return
	}
	if err := backend.CheckCopy(dst, src); err != nil {
		b.Record(err)
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

// storage returns the whole live buffer behind t, for strided access.
func (b *Backend) storage(t backend.Tensor) ([]float32, error) {
	buf, ok := t.Buffer().(*buffer)
	if !ok || buf.owner != b {
		return nil, errForeign
	}
	if buf.data == nil && buf.n > 0 {
		return nil, errFreed
	}
	return buf.data, nil
}

// axis is one axis of a copy: its extent and the element stride of each
// side.
type axis struct{ n, ds, ss int }

// coalesce drops axes of extent 1 and merges each axis into the next inner
// one where both views step over it contiguously, returning the axes
// outermost first. An empty view (some extent 0) returns nil, ok = false.
func coalesce(shape backend.Shape, ds, ss []int) (axes []axis, ok bool) {
	for i, n := range shape {
		if n == 0 {
			return nil, false
		}
		if n == 1 {
			continue
		}
		axes = append(axes, axis{n, ds[i], ss[i]})
	}
	if len(axes) == 0 {
		return []axis{{1, 1, 1}}, true // a single element
	}
	// Merge from the inside out: axis i folds into the merged axis below it
	// when stepping i once equals stepping the inner axis across its extent.
	merged := []axis{axes[len(axes)-1]}
	for i := len(axes) - 2; i >= 0; i-- {
		in := &merged[len(merged)-1]
		a := axes[i]
		if a.ds == in.ds*in.n && a.ss == in.ss*in.n {
			in.n *= a.n
			continue
		}
		merged = append(merged, a)
	}
	for i, j := 0, len(merged)-1; i < j; i, j = i+1, j-1 {
		merged[i], merged[j] = merged[j], merged[i]
	}
	return merged, true
}

// copyStrided performs the copy on raw buffers.
func (b *Backend) copyStrided(dst []float32, doff int, ds []int, src []float32, soff int, ss []int, shape backend.Shape, acc bool) {
	axes, ok := coalesce(shape, ds, ss)
	if !ok {
		return
	}
	in := axes[len(axes)-1]
	outer := axes[:len(axes)-1]
	if len(outer) == 0 {
		// One long row: split the row itself.
		b.parallelFor(in.n, 1, func(lo, hi int) {
			copyRow(dst, doff+lo*in.ds, in.ds, src, soff+lo*in.ss, in.ss, hi-lo, acc)
		})
		return
	}
	rows := 1
	for _, a := range outer {
		rows *= a.n
	}
	b.parallelFor(rows, in.n, func(lo, hi int) {
		// Position the odometer at outer row lo.
		idx := make([]int, len(outer))
		d, s := doff, soff
		for r, i := lo, len(outer)-1; i >= 0; i-- {
			idx[i] = r % outer[i].n
			r /= outer[i].n
			d += idx[i] * outer[i].ds
			s += idx[i] * outer[i].ss
		}
		for r := lo; r < hi; r++ {
			copyRow(dst, d, in.ds, src, s, in.ss, in.n, acc)
			for i := len(outer) - 1; i >= 0; i-- {
				idx[i]++
				d += outer[i].ds
				s += outer[i].ss
				if idx[i] < outer[i].n {
					break
				}
				d -= outer[i].n * outer[i].ds
				s -= outer[i].n * outer[i].ss
				idx[i] = 0
			}
		}
	})
}

// copyRow copies or adds n elements from src (start s, stride sst) to dst
// (start d, stride dst), with fast paths for the common layouts.
func copyRow(dst []float32, d, dstr int, src []float32, s, sstr, n int, acc bool) {
	switch {
	case dstr == 1 && sstr == 1:
		dr, sr := dst[d:d+n], src[s:s+n]
		if acc {
			for i, v := range sr {
				dr[i] += v
			}
		} else {
			copy(dr, sr)
		}
	case dstr == 1 && sstr == 0:
		dr, v := dst[d:d+n], src[s]
		if acc {
			for i := range dr {
				dr[i] += v
			}
		} else {
			for i := range dr {
				dr[i] = v
			}
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
