package cpu

import "github.com/sora-go/sora/backend"

// Gather copies rows of table [vocab, dim] into dst: dst[i] = table[ids[i]].
// A bfloat16 table's rows are widened (exactly) by the active path's
// conversion, the one Copy uses.
func (b *Backend) Gather(dst, table backend.Tensor, ids []int32) {
	if b.skip(backend.OpGather) {
		return
	}
	_, dim, err := backend.CheckGatherDType(backend.OpGather, dst, table, ids, true)
	if err != nil {
		b.Record(err)
		return
	}
	if table.DType() == backend.BFloat16 {
		b.gatherBF16(dst, table, ids, dim)
		return
	}
	v, ok := b.views(backend.OpGather, dst, table)
	if !ok {
		return
	}
	d, tb := v[0], v[1]
	b.parallelFor(len(ids), dim, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			id := int(ids[i])
			copy(d[i*dim:(i+1)*dim], tb[id*dim:(id+1)*dim])
		}
	})
}

// gatherBF16 is Gather from a bfloat16 table (validated by the caller).
func (b *Backend) gatherBF16(dst, table backend.Tensor, ids []int32, dim int) {
	d, err := b.view(dst)
	var h []uint16
	if err == nil {
		h, err = b.viewBF16(table)
	}
	if err != nil {
		b.Record(backend.Errorf(backend.OpGather, []backend.Tensor{dst, table}, "%w", err))
		return
	}
	b.parallelFor(len(ids), dim, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			id := int(ids[i])
			b.conv.ToFloat32(d[i*dim:(i+1)*dim], h[id*dim:(id+1)*dim])
		}
	})
}

// ScatterAdd is Gather's backward: dtable[ids[i]] += dy[i], repeated ids
// accumulating. Goroutines split the columns rather than the ids, so two
// never add into the same element.
func (b *Backend) ScatterAdd(dtable, dy backend.Tensor, ids []int32) {
	if b.skip(backend.OpScatterAdd) {
		return
	}
	_, dim, err := backend.CheckGather(backend.OpScatterAdd, dy, dtable, ids)
	if err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(backend.OpScatterAdd, dtable, dy)
	if !ok {
		return
	}
	tb, g := v[0], v[1]
	b.parallelFor(dim, len(ids), func(lo, hi int) {
		for i, id := range ids {
			src := g[i*dim+lo : i*dim+hi]
			dst := tb[int(id)*dim+lo : int(id)*dim+hi]
			for j, x := range src {
				dst[j] += x
			}
		}
	})
}
