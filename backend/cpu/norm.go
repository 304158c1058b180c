package cpu

import (
	"math"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// RMSNorm computes dst = x / sqrt(mean(x²) + eps) ⊙ w over each row, with
// the mean of squares accumulated in float64 and the output in float32.
// dst may alias x.
func (b *Backend) RMSNorm(dst, x, w backend.Tensor, eps float32) {
	if b.skip(backend.OpRMSNorm) {
		return
	}
	rows, cols, err := backend.CheckNorm(backend.OpRMSNorm, dst, x, w)
	if err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(backend.OpRMSNorm, dst, x, w)
	if !ok {
		return
	}
	d, xs, ws := v[0], v[1], v[2]
	k := b.kernels(8 * len(d))
	b.streamFor(k, rows, cols*3, func(lo, hi int) {
		var st rowStats
		for r := lo; r < hi; r++ {
			xr := xs[r*cols : (r+1)*cols]
			ss := st.s[0]
			if !st.has(r) {
				ss = k.SumSquares(xr)
			}
			next := nextRow(xs, r, hi, cols)
			rs := 1 / math.Sqrt(ss/float64(cols)+float64(eps))
			st = carry(r, next, k.ScaleMulNext(d[r*cols:(r+1)*cols], xr, ws, rs, next))
		}
	})
}

// rowStats carries the statistics of row row, taken by the previous row's
// step in the same pass as its own work (vec's Next forms), to that row's
// step. They are what the statistics kernel returns for the row, bit for
// bit, so a row's result does not depend on which of the two took them:
// the first row of a chunk takes its own. With AVX-512 the next row's
// loads are in the pass, and a prefetch of the row after measured slower
// for both norms; the other sets' NormalizeNext prefetches the next row
// before its two passes, as LayerNorm did before.
type rowStats struct {
	row int
	ok  bool
	s   [2]float64
}

// carry returns the statistics s of row r+1 (next; none where next is
// empty).
func carry(r int, next []float32, s ...float64) rowStats {
	st := rowStats{row: r + 1, ok: len(next) > 0}
	copy(st.s[:], s)
	return st
}

// has reports whether st holds row r's statistics.
func (st rowStats) has(r int) bool { return st.ok && st.row == r }

// RMSNormGrad computes, with r = 1/sqrt(mean(x²)+eps) per row,
//
//	dx = r·(w⊙dy) − x·r³·Σ(w⊙dy⊙x)/cols   (overwritten)
//	dw += Σ_rows dy⊙x·r                    (when dw is present)
//
// with the row statistics in float64 (over the float32 products w·dy),
// taken in the pass over the row before as LayerNormGrad takes its, dw's
// sums in float32 over at most flushRows rows at a time and in float64
// across them (see flushedColumnSums), and dx in float32.
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
	v, ok := b.views(op, all...)
	if !ok {
		return
	}
	d, dws, xs, ws, gs := v[0], v[1], v[2], v[3], v[4]
	k := b.kernels(12 * len(d))
	n := float64(cols)
	rowOf := func(s []float32, r int) []float32 { return s[r*cols : (r+1)*cols] }
	// run computes the dx of rows [lo, hi), each row's statistics (Σ x²,
	// Σ w⊙dy⊙x) taken in the pass over the row before, and where acc32 is
	// not nil adds dy⊙x·r to it in the same pass.
	run := func(lo, hi int, acc32 []float32) {
		if lo >= hi {
			return
		}
		ss, dot := k.SumSquaresDot3(rowOf(xs, lo), ws, rowOf(gs, lo))
		for r := lo; r < hi; r++ {
			rs := 1 / math.Sqrt(ss/n+float64(eps))
			c := rs * rs * rs * dot / n
			dr, xr, gr := rowOf(d, r), rowOf(xs, r), rowOf(gs, r)
			nx, ng := nextRow(xs, r, hi, cols), nextRow(gs, r, hi, cols)
			prefetchHeads(k, nextRow(xs, r, rows, cols), nextRow(gs, r, rows, cols))
			if acc32 != nil {
				ss, dot = k.RMSNormGradAccNext(dr, xr, ws, gr, acc32, rs, c, nx, ng)
			} else {
				ss, dot = k.RMSNormGradNext(dr, xr, ws, gr, rs, c, nx, ng)
			}
		}
	}
	if dws == nil {
		b.streamFor(k, rows, cols*6, func(lo, hi int) { run(lo, hi, nil) })
		return
	}
	for j, s := range b.flushedColumnSums(k, rows, cols, cols*6, 1, run) {
		dws[j] = float32(float64(dws[j]) + s)
	}
}

// LayerNorm computes dst = (x − mean)/sqrt(var + eps) ⊙ gamma + beta over
// each row, with the mean and the biased variance from one float64 pass
// (the sums about the row's first element, see centre) and the output in
// float32 (the mean split into two float32s, so that x − mean keeps its
// digits). beta may be absent. dst may alias x.
func (b *Backend) LayerNorm(dst, x, gamma, beta backend.Tensor, eps float32) {
	const op = backend.OpLayerNorm
	if b.skip(op) {
		return
	}
	rows, cols, err := backend.CheckNorm(op, dst, x, gamma, beta)
	if err != nil {
		b.Record(err)
		return
	}
	v, ok := b.views(op, dst, x, gamma, beta)
	if !ok {
		return
	}
	d, xs, gm, bt := v[0], v[1], v[2], v[3]
	k := b.kernels(8 * len(d))
	b.streamFor(k, rows, cols*4, func(lo, hi int) {
		var st rowStats
		for r := lo; r < hi; r++ {
			// The sums about c, the row's first element, in one float64
			// pass (see centre), taken by the previous row's.
			xr := xs[r*cols : (r+1)*cols]
			c := pivot(xr)
			sd, ssd := st.s[0], st.s[1]
			if !st.has(r) {
				sd, ssd = k.SumsAbout(xr, c)
			}
			mean, ssd, _ := centre(c, sd, ssd, float64(cols))
			rstd := 1 / math.Sqrt(ssd/float64(cols)+float64(eps))
			next := nextRow(xs, r, hi, cols)
			sd, ssd = k.NormalizeNext(d[r*cols:(r+1)*cols], xr, gm, bt, mean, rstd, next, pivot(next))
			st = carry(r, next, sd, ssd)
		}
	})
}

// prefetchHead is how many floats of the next row's x and dy the norm
// gradients prefetch. Their second pass reads the current row's x and dy
// again, with w and dw's partial sums: a whole next row on top pushes
// them out of the L1 cache, and the hardware prefetchers keep up within a
// row once it has started. With rows of 4096 or 16384 floats (4M floats,
// one thread) both gradients ran 35–50% faster with the first 1024 floats
// than with the whole row.
const prefetchHead = 1024

// prefetchHeads asks for the first prefetchHead floats of the next row's
// x and dy of a norm gradient, which then arrive while this row's dx is
// computed from the cache (a third faster on 4M floats, one thread, than
// the hardware prefetchers alone), unless k's statistics kernels fetch
// their rows ahead themselves (vec's StatsAhead), which the burst only
// slows. Only the streaming kernels, taken for data larger than the L3
// cache, prefetch at all: below that the rows are in the cache already
// (see vec's Prefetch).
func prefetchHeads(k *vec.Kernels, x, dy []float32) {
	if k.StatsAhead {
		return
	}
	k.Prefetch(x[:min(len(x), prefetchHead)])
	k.Prefetch(dy[:min(len(dy), prefetchHead)])
}

// pivot is the value about which a row's one-pass sums are taken: its
// first element (0 for an empty row).
func pivot(x []float32) float64 {
	if len(x) == 0 {
		return 0
	}
	return float64(x[0])
}

// centre turns the sums about c of a row of n values, sd = Σ(x − c) and
// ssd = Σ(x − c)², into the mean and Σ(x − mean)² = ssd − n·dm² with
// dm = mean − c, also returned. With c an element of the row, dm² ≤
// Σ(x−mean)², so ssd ≤ (n+1)·Σ(x−mean)²: the subtraction costs at most
// log10(n+1) of float64's 16 digits, however large the mean or far out c,
// and the row needs no pass for the mean first.
func centre(c, sd, ssd, n float64) (mean, ssdMean, dm float64) {
	dm = sd / n
	return c + dm, max(ssd-sd*dm, 0), dm
}

// LayerNormGrad computes, with x̂ = (x − mean)·rstd and g = dy ⊙ gamma,
//
//	dx = rstd·(g − mean(g) − x̂·mean(g⊙x̂))   (overwritten)
//	dgamma += Σ_rows dy⊙x̂,  dbeta += Σ_rows dy   (each when present)
//
// with the row statistics in float64 (over the float32 products
// dy·gamma, which dx uses too), the parameter sums in float32 over at most
// flushRows rows at a time and in float64 across them (see
// flushedColumnSums), and dx in float32.
//
// Each row's statistics are taken in the pass that writes the row
// before's dx (vec's Next forms), bit for bit the sums the statistics
// kernel takes, so that a row's result does not depend on which took them
// (the first row of a chunk, or of a block of parameter sums, takes its
// own). With AVX-512 the next row's loads, which miss the cache on a large
// op, then overlap this row's arithmetic instead of making a pass of their
// own wait for memory; the other sets take two passes, the head of the
// next row prefetched between them (prefetchHeads).
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
	v, ok := b.views(op, all...)
	if !ok {
		return
	}
	d, dg, db, xs, gm, gs := v[0], v[1], v[2], v[3], v[4], v[5]
	k := b.kernels(12 * len(d))
	n := float64(cols)
	rowOf := func(s []float32, r int) []float32 { return s[r*cols : (r+1)*cols] }
	// scalars turns one pass's sums about c, the row's first element
	// (d = x − c is exact there in float64), into what the output pass
	// takes: the sums about the mean follow (centre), and
	// Σ g·(x−mean) = Σ g·d − dm·Σ g with dm = mean − c.
	scalars := func(xr []float32, sd, ssd, sg, sgd float64) (mean, rstd, mg, mgx float64) {
		mean, ssd, dm := centre(pivot(xr), sd, ssd, n)
		rstd = 1 / math.Sqrt(ssd/n+float64(eps))
		return mean, rstd, sg / n, (sgd - sg*dm) * rstd / n
	}
	if dg == nil && db == nil {
		// Frozen parameters: dx alone.
		b.streamFor(k, rows, cols*8, func(lo, hi int) {
			if lo >= hi {
				return
			}
			xr := rowOf(xs, lo)
			sd, ssd, sg, sgd := k.LayerNormGradStats(xr, gm, rowOf(gs, lo), pivot(xr))
			for r := lo; r < hi; r++ {
				xr := rowOf(xs, r)
				mean, rstd, mg, mgx := scalars(xr, sd, ssd, sg, sgd)
				nx, ng := nextRow(xs, r, hi, cols), nextRow(gs, r, hi, cols)
				prefetchHeads(k, nextRow(xs, r, rows, cols), nextRow(gs, r, rows, cols))
				sd, ssd, sg, sgd = k.LayerNormGradNext(rowOf(d, r), xr, gm, rowOf(gs, r), mean, rstd, mg, mgx, nx, ng, pivot(nx))
			}
		})
		return
	}
	// The parameter sums go into float32 accumulators, accG += dy⊙x̂ and
	// accB += dy, which cost far less than float64 ones read and written
	// on every row. Where the kernels have LayerNormGradAccNext
	// (AVX-512), dy is summed in the statistics' pass, which waits on
	// memory, not in the pass that writes dx, which waited on its stores
	// (4M floats in rows of 1024, one thread, two series of alternated
	// runs: 48.1–50.8 → 51.7–54.7 and 49.2–51.1 → 49.6–53.0 GB/s), with
	// the same float32 additions in the same order, so the same results
	// bit for bit; and each row's statistics are taken in the pass over
	// the row before, a block's first row taking its own, so that its dy
	// goes into the block's accB. The other sets add dy in the output pass
	// and take two passes a row.
	statsAcc, accNext := k.LayerNormGradStatsAcc, k.LayerNormGradAccNext
	sums := b.flushedColumnSums(k, rows, cols, cols*8, 2, func(lo, hi int, acc32 []float32) {
		accG, accB := acc32[:cols], acc32[cols:]
		if accNext == nil {
			for r := lo; r < hi; r++ {
				xr, gr := rowOf(xs, r), rowOf(gs, r)
				sd, ssd, sg, sgd := k.LayerNormGradStats(xr, gm, gr, pivot(xr))
				mean, rstd, mg, mgx := scalars(xr, sd, ssd, sg, sgd)
				prefetchHeads(k, nextRow(xs, r, rows, cols), nextRow(gs, r, rows, cols))
				k.LayerNormGradAcc(rowOf(d, r), xr, gm, gr, accG, accB, mean, rstd, mg, mgx)
			}
			return
		}
		xr := rowOf(xs, lo)
		sd, ssd, sg, sgd := statsAcc(xr, gm, rowOf(gs, lo), accB, pivot(xr))
		for r := lo; r < hi; r++ {
			xr := rowOf(xs, r)
			mean, rstd, mg, mgx := scalars(xr, sd, ssd, sg, sgd)
			nx, ng := nextRow(xs, r, hi, cols), nextRow(gs, r, hi, cols)
			sd, ssd, sg, sgd = accNext(rowOf(d, r), xr, gm, rowOf(gs, r), accG, mean, rstd, mg, mgx, nx, ng, accB, pivot(nx))
		}
	})
	for j := range cols {
		if dg != nil {
			dg[j] = float32(float64(dg[j]) + sums[j])
		}
		if db != nil {
			db[j] = float32(float64(db[j]) + sums[cols+j])
		}
	}
}
