package cuda

import (
	"slices"

	"github.com/sora-go/sora/backend"
)

// RoPE rotates each pair of every head of src [batch, seq, heads, headDim]
// by pos·theta^(−2i/headDim), or pos·p.Freqs[i] (negated with p.Inverse),
// angles and their sines and cosines in double. p.Freqs goes to a scratch
// block on the stream before the kernel. dst may alias src.
func (b *Backend) RoPE(dst, src backend.Tensor, p backend.RoPEParams) {
	if b.skip(backend.OpRoPE) {
		return
	}
	batch, seq, heads, hd, err := backend.CheckRoPE(dst, src, p)
	if err != nil {
		b.Record(err)
		return
	}
	pairs := int64(batch) * int64(seq) * int64(heads) * int64(hd/2)
	if pairs == 0 {
		return
	}
	b.run(backend.OpRoPE, []backend.Tensor{dst, src}, func() error {
		for _, c := range []struct {
			what string
			v    int
		}{{"sequence length", seq}, {"head count", heads}, {"head dimension", hd}, {"position offset", p.Offset + seq}} {
			if err := check32(c.what, c.v); err != nil {
				return err
			}
		}
		ptrs, err := b.dptrs(dst, src)
		if err != nil {
			return err
		}
		var freqs temp // none: the kernel gets a null pointer and uses theta
		if p.Freqs != nil {
			if freqs, err = uploadScratch(b, p.Freqs); err != nil {
				return err
			}
			defer b.tempFree(freqs)
		}
		args := b.kernel(kRoPE)
		args.i32(int(p.Layout))
		args.bool32(p.Inverse)
		args.i64(pairs)
		args.i32(seq)
		args.i32(heads)
		args.i32(hd)
		args.i32(p.Offset)
		args.f32(p.Theta)
		args.ptr(freqs.ptr)
		args.ptr(ptrs[0])
		args.ptr(ptrs[1])
		grid, block := elementwiseGrid(pairs, b.sms)
		return b.launch(kRoPE, grid, block)
	})
}

// Gather copies rows of table into dst: dst[i] = table[ids[i]]. The ids
// go to a scratch block on the stream before the kernel. A bfloat16 table
// (backend.OpMatMulBF16) is read as it is stored, each element widened
// by the kernel gather_bf16: no float32 copy of the table is made.
func (b *Backend) Gather(dst, table backend.Tensor, ids []int32) {
	if b.skip(backend.OpGather) {
		return
	}
	_, dim, err := backend.CheckGatherDType(backend.OpGather, dst, table, ids, true)
	if err != nil {
		b.Record(err)
		return
	}
	if len(ids) == 0 || dim == 0 {
		return
	}
	b.run(backend.OpGather, []backend.Tensor{dst, table}, func() error {
		if err := check32("row length", dim); err != nil {
			return err
		}
		p, err := b.dptrs(dst, table)
		if err != nil {
			return err
		}
		dev, err := uploadScratch(b, ids)
		if err != nil {
			return err
		}
		defer b.tempFree(dev)
		n := int64(len(ids))
		k := kGather
		if table.DType() == backend.BFloat16 {
			k = kGatherBF16
		}
		args := b.kernel(k)
		args.i64(n)
		args.i32(dim)
		args.ptr(dev.ptr)
		args.ptr(p[0])
		args.ptr(p[1])
		grid, block := elementwiseGrid(n*int64(dim), b.sms)
		return b.launch(k, grid, block)
	})
}

// groupIDs packs ids for the scatter_add kernel: the distinct ids in
// increasing order, the start of each one's run in order (one more entry
// than ids, the last being len(ids)), and the positions of ids grouped by
// id, each group in increasing position. Each table row then gets its rows
// of dy added in their order in ids, as the CPU backend adds them, and no
// two threads write one element.
func groupIDs(ids []int32, packed []int32) (out []int32, segments int) {
	order := make([]int32, len(ids))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, c int32) int { return int(ids[a]) - int(ids[c]) })
	var segIDs, starts []int32
	for k, pos := range order {
		if k == 0 || ids[pos] != ids[order[k-1]] {
			segIDs = append(segIDs, ids[pos])
			starts = append(starts, int32(k))
		}
	}
	starts = append(starts, int32(len(ids)))
	out = append(packed[:0], segIDs...)
	out = append(out, starts...)
	out = append(out, order...)
	return out, len(segIDs)
}

// ScatterAdd is Gather's backward: dtable[ids[i]] += dy[i], repeated ids
// accumulating, without atomics (see groupIDs), so the result is
// deterministic.
func (b *Backend) ScatterAdd(dtable, dy backend.Tensor, ids []int32) {
	if b.skip(backend.OpScatterAdd) {
		return
	}
	_, dim, err := backend.CheckGather(backend.OpScatterAdd, dy, dtable, ids)
	if err != nil {
		b.Record(err)
		return
	}
	if len(ids) == 0 || dim == 0 {
		return
	}
	b.run(backend.OpScatterAdd, []backend.Tensor{dtable, dy}, func() error {
		if err := check32("row length", dim); err != nil {
			return err
		}
		if err := check32("id count", 2*len(ids)+1); err != nil {
			return err
		}
		p, err := b.dptrs(dtable, dy)
		if err != nil {
			return err
		}
		var segments int
		b.ids, segments = groupIDs(ids, b.ids)
		dev, err := uploadScratch(b, b.ids)
		if err != nil {
			return err
		}
		defer b.tempFree(dev)
		args := b.kernel(kScatterAdd)
		args.i32(segments)
		args.i32(dim)
		args.ptr(dev.ptr)
		args.ptr(p[0])
		args.ptr(p[1])
		block := min(max((dim+31)/32*32, 32), 256)
		grid := min(segments, b.sms*32)
		return b.launch(kScatterAdd, dim3{grid, 1, 1}, dim3{block, 1, 1})
	})
}

// crossEntropy launches cross_entropy or cross_entropy_grad.
func (b *Backend) crossEntropy(op backend.Op, out, logits backend.Tensor, targets []int32, p backend.CrossEntropyParams) {
	if b.skip(op) {
		return
	}
	rows, vocab, err := backend.CheckCrossEntropy(op, out, logits, targets, p)
	if err != nil {
		b.Record(err)
		return
	}
	if rows == 0 {
		return
	}
	b.run(op, []backend.Tensor{out, logits}, func() error {
		if err := rowArgs(rows, vocab); err != nil {
			return err
		}
		ptrs, err := b.dptrs(out, logits)
		if err != nil {
			return err
		}
		dev, err := uploadScratch(b, targets)
		if err != nil {
			return err
		}
		defer b.tempFree(dev)
		k := kCrossEntropy
		if op == backend.OpCrossEntropyGrad {
			k = kCrossEntGrad
		}
		args := b.kernel(k)
		args.i32(rows)
		args.i32(vocab)
		args.i32(int(p.IgnoreIndex))
		args.f32(p.Smoothing)
		if k == kCrossEntGrad {
			args.f32(p.Scale)
		}
		args.ptr(dev.ptr)
		args.ptr(ptrs[0])
		args.ptr(ptrs[1])
		grid, block := rowGeometry(rows, vocab, b.sms)
		return b.launch(k, grid, block)
	})
}

// CrossEntropy writes each row's loss logsumexp(logits) − Σ q·logits for
// the smoothed one-hot target q, in double; ignored rows get 0.
func (b *Backend) CrossEntropy(loss, logits backend.Tensor, targets []int32, p backend.CrossEntropyParams) {
	b.crossEntropy(backend.OpCrossEntropy, loss, logits, targets, p)
}

// CrossEntropyGrad writes p.Scale·(softmax(logits) − q) per row, zeros for
// ignored rows.
func (b *Backend) CrossEntropyGrad(dlogits, logits backend.Tensor, targets []int32, p backend.CrossEntropyParams) {
	b.crossEntropy(backend.OpCrossEntropyGrad, dlogits, logits, targets, p)
}
