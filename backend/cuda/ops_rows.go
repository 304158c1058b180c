package cuda

import (
	"unsafe"

	"github.com/sora-go/sora/backend"
)

// rowArgs checks that a row kernel's extents fit its C int parameters.
func rowArgs(rows, cols int) error {
	if err := check32("row count", rows); err != nil {
		return err
	}
	return check32("row length", cols)
}

// ReduceRows reduces each row of src to one element of dst: Sum in double,
// SumSquares in float over a thread's few elements and double beyond, Max
// propagating NaN.
func (b *Backend) ReduceRows(op backend.ReduceOp, dst, src backend.Tensor) {
	if b.skip(backend.OpReduceRows) {
		return
	}
	rows, cols, err := backend.CheckReduceRows(op, dst, src)
	all := []backend.Tensor{dst, src}
	if err != nil {
		b.Record(err)
		return
	}
	if rows == 0 {
		return
	}
	b.run(backend.OpReduceRows, all, func() error {
		if err := rowArgs(rows, cols); err != nil {
			return err
		}
		p, err := b.dptrs(dst, src)
		if err != nil {
			return err
		}
		args := b.kernel(kReduceRows)
		args.i32(int(op))
		args.i32(rows)
		args.i32(cols)
		args.ptr(p[0])
		args.ptr(p[1])
		grid, block := rowGeometry(rows, cols, b.sms)
		return b.launch(kReduceRows, grid, block)
	})
}

// SumColumns computes dst[j] = Σ_rows src[row, j] deterministically: one
// partial per chunk of rows, then the partials added in order.
func (b *Backend) SumColumns(dst, src backend.Tensor) {
	if b.skip(backend.OpSumColumns) {
		return
	}
	rows, cols, err := backend.CheckSumColumns(dst, src)
	if err != nil {
		b.Record(err)
		return
	}
	if cols == 0 {
		return
	}
	b.run(backend.OpSumColumns, []backend.Tensor{dst, src}, func() error {
		if err := rowArgs(rows, cols); err != nil {
			return err
		}
		p, err := b.dptrs(dst, src)
		if err != nil {
			return err
		}
		chunks, per := chunking(rows)
		part, err := b.tempAlloc(int64(max(chunks, 1)) * int64(cols) * 8)
		if err != nil {
			return err
		}
		defer b.tempFree(part)
		if chunks > 0 {
			args := b.kernel(kColsumPartial)
			args.i32(rows)
			args.i32(cols)
			args.i32(per)
			args.ptr(p[1])
			args.ptr(part.ptr)
			grid, block := columnGrid(cols, chunks)
			if err := b.launch(kColsumPartial, grid, block); err != nil {
				return err
			}
		}
		return b.colsumFinal(chunks, cols, part.ptr, p[0], false)
	})
}

// colsumFinal enqueues dst (+)= the sum of chunks partial rows of cols
// doubles at partial.
func (b *Backend) colsumFinal(chunks, cols int, partial, dst uintptr, accumulate bool) error {
	args := b.kernel(kColsumFinal)
	args.i32(chunks)
	args.i32(cols)
	args.bool32(accumulate)
	args.ptr(partial)
	args.ptr(dst)
	grid, block := columnGrid(cols, 1)
	return b.launch(kColsumFinal, grid, block)
}

// softmaxLaunch is shared by Softmax and SoftmaxGrad.
func (b *Backend) softmaxLaunch(k *kernelSpec, batch, queries, keys int, p backend.SoftmaxParams, ptrs []uintptr) error {
	rows := batch * queries
	if err := rowArgs(rows, keys); err != nil {
		return err
	}
	if err := check32("query offset", p.QueryOffset); err != nil {
		return err
	}
	// A window of at least the last query's position + 1 hides no key, so
	// it is clamped there, which fits an int32 unless the positions do not.
	window := min(p.Window, queries+p.QueryOffset)
	if err := check32("sliding window", window); err != nil {
		return err
	}
	args := b.kernel(k)
	args.i32(rows)
	args.i32(max(queries, 1))
	args.i32(keys)
	args.f32(p.EffectiveScale())
	args.bool32(p.Causal)
	args.i32(p.QueryOffset)
	args.i32(window)
	for _, q := range ptrs {
		args.ptr(q)
	}
	grid, block := rowGeometry(rows, keys, b.sms)
	return b.launch(k, grid, block)
}

// Softmax computes dst = softmax(scale·src) over each row, with the
// optional causal mask and sliding window (masked entries exactly 0). dst
// may alias src.
func (b *Backend) Softmax(dst, src backend.Tensor, p backend.SoftmaxParams) {
	if b.skip(backend.OpSoftmax) {
		return
	}
	batch, queries, keys, err := backend.CheckSoftmax(backend.OpSoftmax, dst, src, backend.Tensor{}, p)
	if err != nil {
		b.Record(err)
		return
	}
	if batch*queries == 0 {
		return
	}
	b.run(backend.OpSoftmax, []backend.Tensor{dst, src}, func() error {
		ptrs, err := b.dptrs(dst, src)
		if err != nil {
			return err
		}
		return b.softmaxLaunch(kSoftmax, batch, queries, keys, p, ptrs)
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
	if batch*queries == 0 {
		return
	}
	b.run(backend.OpSoftmaxGrad, []backend.Tensor{dx, y, dy}, func() error {
		ptrs, err := b.dptrs(dx, y, dy)
		if err != nil {
			return err
		}
		return b.softmaxLaunch(kSoftmaxGrad, batch, queries, keys, p, ptrs)
	})
}

// RMSNorm computes dst = x / sqrt(mean(x²) + eps) ⊙ w over each row, the
// mean of squares summed in float over a thread's few elements and in
// double beyond (see kernels.cu's row kernels). dst may alias x.
func (b *Backend) RMSNorm(dst, x, w backend.Tensor, eps float32) {
	const op = backend.OpRMSNorm
	if b.skip(op) {
		return
	}
	all := []backend.Tensor{dst, x, w}
	rows, cols, err := backend.CheckNorm(op, dst, x, w)
	if err != nil {
		b.Record(err)
		return
	}
	b.normForward(op, kRMSNorm, all, rows, cols, eps)
}

// RMSNormGrad computes dx and, when dw is present, adds Σ_rows dy⊙x·rstd
// into dw through deterministic column sums: partial sums the row kernel
// leaves for rows of up to 4096, else saved per-row rstd (see normGrad).
func (b *Backend) RMSNormGrad(dx, dw, x, w, dy backend.Tensor, eps float32) {
	const op = backend.OpRMSNormGrad
	if b.skip(op) {
		return
	}
	all := []backend.Tensor{dx, dw, x, w, dy}
	rows, cols, err := backend.CheckNormGrad(op, dx, x, dy, w, dw)
	if err != nil {
		b.Record(err)
		return
	}
	b.normRun(op, all, rows, cols, func(p []uintptr) error {
		// Saved per row: rstd.
		return b.normGrad(kRMSNormGrad, kRMSNormDW, rows, cols, eps, 8, p[0], p[2], p[3], p[4], p[1])
	})
}

// LayerNorm computes dst = (x − mean)/sqrt(var + eps) ⊙ gamma + beta over
// each row, with a two-pass variance whose sums are in float over a
// thread's few elements and in double beyond, the mean kept as two floats.
// beta may be absent; dst may alias x.
func (b *Backend) LayerNorm(dst, x, gamma, beta backend.Tensor, eps float32) {
	const op = backend.OpLayerNorm
	if b.skip(op) {
		return
	}
	all := []backend.Tensor{dst, x, gamma, beta}
	rows, cols, err := backend.CheckNorm(op, dst, x, gamma, beta)
	if err != nil {
		b.Record(err)
		return
	}
	b.normForward(op, kLayerNorm, all, rows, cols, eps)
}

// LayerNormGrad computes dx and adds the parameter gradients into dgamma
// and dbeta when present, through deterministic column sums (as
// RMSNormGrad's).
func (b *Backend) LayerNormGrad(dx, dgamma, dbeta, x, gamma, dy backend.Tensor, eps float32) {
	const op = backend.OpLayerNormGrad
	if b.skip(op) {
		return
	}
	all := []backend.Tensor{dx, dgamma, dbeta, x, gamma, dy}
	rows, cols, err := backend.CheckNormGrad(op, dx, x, dy, gamma, dgamma, dbeta)
	if err != nil {
		b.Record(err)
		return
	}
	b.normRun(op, all, rows, cols, func(p []uintptr) error {
		// Saved per row: mean and rstd.
		return b.normGrad(kLayerNormGrad, kLayerNormPG, rows, cols, eps, 16, p[0], p[3], p[4], p[5], p[1], p[2])
	})
}

// normRun runs enqueue(device addresses of all) as op, the forward or
// backward pass of RMSNorm or LayerNorm over rows rows of cols elements:
// nothing for an empty input, an error for sizes beyond the kernels' int
// arguments.
func (b *Backend) normRun(op backend.Op, all []backend.Tensor, rows, cols int, enqueue func(p []uintptr) error) {
	if rows*cols == 0 {
		return
	}
	b.run(op, all, func() error {
		if err := rowArgs(rows, cols); err != nil {
			return err
		}
		p, err := b.dptrs(all...)
		if err != nil {
			return err
		}
		return enqueue(p)
	})
}

// normForward enqueues the row kernel k(rows, cols, eps, addresses of all)
// of RMSNorm or LayerNorm.
func (b *Backend) normForward(op backend.Op, k *kernelSpec, all []backend.Tensor, rows, cols int, eps float32) {
	b.normRun(op, all, rows, cols, func(p []uintptr) error {
		args := b.kernel(k)
		args.i32(rows)
		args.i32(cols)
		args.f32(eps)
		for _, q := range p {
			args.ptr(q)
		}
		grid, block := rowGeometry(rows, cols, b.sms)
		return b.launch(k, grid, block)
	})
}

// normGrad is the backward pass of RMSNorm and LayerNorm. The row kernel
// kRow(rows, cols, eps, dx, x, w, dy, stats, one partial block per
// gradient) computes dx. grads holds the parameter gradients'
// destinations, 0 where absent. Where any is wanted and a row fits in the
// kernel's registers, kRow also sums them over each group's rows into
// partial blocks (see normGradFused). Otherwise it saves statsPerRow bytes
// per row, and kParams(rows, cols, per, x, dy, stats, one partial block per
// gradient) then leaves per-chunk partial sums; colsumFinal adds either
// kind into each gradient.
func (b *Backend) normGrad(kRow, kParams *kernelSpec, rows, cols int, eps float32, statsPerRow int64, pdx, px, pw, pdy uintptr, grads ...uintptr) error {
	params := false
	for _, g := range grads {
		params = params || g != 0
	}
	grid, block := rowGeometry(rows, cols, b.sms)
	if params && cols <= rowCache*block.x {
		return b.normGradFused(kRow, rows, cols, eps, block, pdx, px, pw, pdy, grads)
	}
	var stats temp
	if params {
		var err error
		if stats, err = b.tempAlloc(int64(rows) * statsPerRow); err != nil {
			return err
		}
		defer b.tempFree(stats)
	}
	var buf [maxNormGrads]temp // the partial blocks, none until allocated
	parts := buf[:len(grads)]
	if err := b.launchNormRow(kRow, grid, block, rows, cols, eps, pdx, px, pw, pdy, stats.ptr, parts); err != nil || !params {
		return err
	}
	chunks, per := chunking(rows)
	err := b.partials(parts, grads, chunks, cols)
	defer b.freePartials(parts)
	if err != nil {
		return err
	}
	args := b.kernel(kParams)
	args.i32(rows)
	args.i32(cols)
	args.i32(per)
	args.ptr(px)
	args.ptr(pdy)
	args.ptr(stats.ptr)
	for _, part := range parts {
		args.ptr(part.ptr)
	}
	grid, block = columnGrid(cols, chunks)
	if err := b.launch(kParams, grid, block); err != nil {
		return err
	}
	return b.addPartials(grads, parts, chunks, cols)
}

// normGradFused runs kRow with partial blocks: each group of block.y ×
// block.x threads sums its columns' terms over its rows and writes them as
// one row of each block, so the rows are read once. The grid is as many
// blocks as the multiprocessors hold at once (one wave, so no
// multiprocessor idles through a last partial wave), or more where that
// would give a group more than maxGroupRows rows (its sums are in float).
// The partition, and so the rounding of the sums, depends on the device's
// multiprocessor count and the kernel's registers, not on timing.
func (b *Backend) normGradFused(kRow *kernelSpec, rows, cols int, eps float32, block dim3, pdx, px, pw, pdy uintptr, grads []uintptr) error {
	groups := (rows + block.y - 1) / block.y
	resident, err := b.residentBlocks(kRow)
	if err != nil {
		return err
	}
	blocks := min(groups, max(b.sms*resident, (groups+maxGroupRows-1)/maxGroupRows))
	partRows := blocks * block.y
	var buf [maxNormGrads]temp
	parts := buf[:len(grads)]
	err = b.partials(parts, grads, partRows, cols)
	defer b.freePartials(parts)
	if err != nil {
		return err
	}
	// No statistics: the partial blocks take the parameter gradients.
	if err := b.launchNormRow(kRow, dim3{blocks, 1, 1}, block, rows, cols, eps, pdx, px, pw, pdy, 0, parts); err != nil {
		return err
	}
	return b.addPartials(grads, parts, partRows, cols)
}

// launchNormRow enqueues kRow(rows, cols, eps, dx, x, w, dy, stats, the
// partial blocks of parts, 0 where absent).
func (b *Backend) launchNormRow(kRow *kernelSpec, grid, block dim3, rows, cols int, eps float32, pdx, px, pw, pdy, stats uintptr, parts []temp) error {
	args := b.kernel(kRow)
	args.i32(rows)
	args.i32(cols)
	args.f32(eps)
	args.ptr(pdx)
	args.ptr(px)
	args.ptr(pw)
	args.ptr(pdy)
	args.ptr(stats)
	for _, part := range parts {
		args.ptr(part.ptr)
	}
	return b.launch(kRow, grid, block)
}

// maxNormGrads is the most parameter gradients a norm has (LayerNorm's
// gamma and beta): the partial blocks live in arrays of that size, so that
// the backward of every norm layer allocates nothing on the host.
const maxNormGrads = 2

// partials sets parts[i] to a block of n rows of cols doubles for each
// wanted gradient (grads[i] != 0); the others stay zero. Free them with
// freePartials, also after an error.
func (b *Backend) partials(parts []temp, grads []uintptr, n, cols int) error {
	for i, g := range grads {
		if g == 0 {
			continue
		}
		var err error
		if parts[i], err = b.tempAlloc(int64(n) * int64(cols) * 8); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) freePartials(parts []temp) {
	for _, p := range parts {
		b.tempFree(p)
	}
}

// addPartials adds the n partial rows of each wanted gradient into it.
func (b *Backend) addPartials(grads []uintptr, parts []temp, n, cols int) error {
	for i, g := range grads {
		if g != 0 {
			if err := b.colsumFinal(n, cols, parts[i].ptr, g, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// residentBlocks returns how many blocks of rowBlock threads of k (the
// row kernels' block, whatever its shape) a multiprocessor holds at once:
// the driver's occupancy calculation from the kernel's registers and
// shared memory, at least 1.
func (b *Backend) residentBlocks(k *kernelSpec) (int, error) {
	if n, ok := b.resident[k]; ok {
		return n, nil
	}
	var n int32
	if err := b.api.cu("cuOccupancyMaxActiveBlocksPerMultiprocessor("+k.name+")",
		call(b.api.cuOccupancyMaxActiveBlocksPerMultiprocessor, uintptr(unsafe.Pointer(&n)), b.fns[k], rowBlock, 0)); err != nil {
		return 0, err
	}
	if b.resident == nil {
		b.resident = map[*kernelSpec]int{}
	}
	b.resident[k] = max(int(n), 1)
	return b.resident[k], nil
}
