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
			st.carry(r, next, k.ScaleMulNext(d[r*cols:(r+1)*cols], xr, ws, rs, next), 0)
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

// carry records s0 and s1, the statistics of row r+1 (next; none where
// next is empty). It stores field by field, and has reads st in place: a
// rowStats built and then copied into st, or copied for a value receiver,
// was read back with 16-byte loads that no store can forward, which waited
// for the stores to leave the store buffer, behind the streaming stores
// of the row. In the cache the wait only moved into the kernel (the
// streaming stores bound LayerNorm there: the Go loop's share of a
// profile fell from a quarter to a sixth, the total did not change), and
// from memory the ops were within the noise (layernorm 0.72–0.75 of the
// copy either way, one thread); it is CrossEntropyGrad's ceGradRow.set
// that measured faster.
func (st *rowStats) carry(r int, next []float32, s0, s1 float64) {
	st.row, st.ok, st.s[0], st.s[1] = r+1, len(next) > 0, s0, s1
}

// has reports whether st holds row r's statistics.
func (st *rowStats) has(r int) bool { return st.ok && st.row == r }

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
	span := func(s []float32, lo, hi int) []float32 { return s[lo*cols : hi*cols] }
	if dws == nil {
		b.streamFor(k, rows, cols*6, func(lo, hi int) {
			k.RMSNormGradRows(span(d, lo, hi), span(xs, lo, hi), ws, span(gs, lo, hi), nil, cols, float64(eps))
		})
		return
	}
	sums := b.flushedColumnSums(k, rows, cols, cols*6, 1, func(lo, hi int, acc32 []float32) {
		k.RMSNormGradRows(span(d, lo, hi), span(xs, lo, hi), ws, span(gs, lo, hi), acc32, cols, float64(eps))
	})
	for j, s := range sums {
		dws[j] = float32(float64(dws[j]) + s)
	}
}

// LayerNorm computes dst = (x − mean)/sqrt(var + eps) ⊙ gamma + beta over
// each row, with the mean and the biased variance from one float64 pass
// (the sums about the row's first element, see vec.Centre) and the output in
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
			// pass (see vec.Centre), taken by the previous row's.
			xr := xs[r*cols : (r+1)*cols]
			c := vec.Pivot(xr)
			sd, ssd := st.s[0], st.s[1]
			if !st.has(r) {
				sd, ssd = k.SumsAbout(xr, c)
			}
			mean, ssd, _ := vec.Centre(c, sd, ssd, float64(cols))
			rstd := 1 / math.Sqrt(ssd/float64(cols)+float64(eps))
			next := nextRow(xs, r, hi, cols)
			sd, ssd = k.NormalizeNext(d[r*cols:(r+1)*cols], xr, gm, bt, mean, rstd, next, vec.Pivot(next))
			st.carry(r, next, sd, ssd)
		}
	})
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
// before's dx (vec's LayerNormGradRows and the Next forms), bit for bit
// the sums the statistics kernel takes, so that a row's result does not
// depend on which took them (the first row of a chunk, or of a block of
// parameter sums, takes its own). With AVX-512 the next row's loads, which
// miss the cache on a large op, then overlap this row's arithmetic instead
// of making a pass of their own wait for memory; the other sets take two
// passes, the head of the next row prefetched between them.
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
	span := func(s []float32, lo, hi int) []float32 { return s[lo*cols : hi*cols] }
	if dg == nil && db == nil {
		b.streamFor(k, rows, cols*8, func(lo, hi int) {
			k.LayerNormGradRows(span(d, lo, hi), span(xs, lo, hi), gm, span(gs, lo, hi), nil, nil, cols, float64(eps))
		})
		return
	}
	// The parameter sums go into float32 accumulators, accG += dy⊙x̂ and
	// accB += dy, which cost far less than float64 ones read and written
	// on every row (see flushedColumnSums).
	sums := b.flushedColumnSums(k, rows, cols, cols*8, 2, func(lo, hi int, acc32 []float32) {
		k.LayerNormGradRows(span(d, lo, hi), span(xs, lo, hi), gm, span(gs, lo, hi), acc32[:cols], acc32[cols:], cols, float64(eps))
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
