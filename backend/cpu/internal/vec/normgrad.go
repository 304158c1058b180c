package vec

import "math"

// Pivot is the value about which LayerNorm takes a row's one-pass sums
// (SumsAbout, LayerNormGradStats): its first element, 0 for an empty row.
func Pivot(x []float32) float64 {
	if len(x) == 0 {
		return 0
	}
	return float64(x[0])
}

// Centre turns the sums about c of a row of n values, sd = Σ(x − c) and
// ssd = Σ(x − c)², into the mean and Σ(x − mean)² = ssd − n·dm² with
// dm = mean − c, also returned. With c an element of the row, dm² ≤
// Σ(x−mean)², so ssd ≤ (n+1)·Σ(x−mean)²: the subtraction costs at most
// log10(n+1) of float64's 16 digits, however large the mean or far out c,
// and the row needs no pass for the mean first.
func Centre(c, sd, ssd, n float64) (mean, ssdMean, dm float64) {
	dm = sd / n
	return c + dm, max(ssd-sd*dm, 0), dm
}

// layerNormGradScalars turns LayerNormGradStats' sums over the row x of
// n elements into what LayerNormGrad's output pass takes: the mean and
// rstd, and mean(g) and mean(g·x̂) for g = w·dy, using
// Σ g·(x−mean) = Σ g·d − dm·Σ g with d = x − c and dm = mean − c.
func layerNormGradScalars(x []float32, sd, ssd, sg, sgd, n, eps float64) (mean, rstd, mg, mgx float64) {
	mean, ssd, dm := Centre(Pivot(x), sd, ssd, n)
	rstd = 1 / math.Sqrt(ssd/n+eps)
	return mean, rstd, sg / n, (sgd - sg*dm) * rstd / n
}

// rmsNormGradScalars turns SumSquaresDot3's sums over a row of n elements,
// Σ x² and Σ w·dy·x, into what RMSNormGrad takes: rs = 1/√(mean(x²)+eps)
// and c = rs³·Σ w·dy·x / n.
func rmsNormGradScalars(ss, dot, n, eps float64) (rs, c float64) {
	rs = 1 / math.Sqrt(ss/n+eps)
	return rs, rs * rs * rs * dot / n
}

// prefetchHead is how many floats of the next row's x and dy the norm
// gradients' rows prefetch where a set takes two passes a row. Their
// second pass reads the current row's x and dy again, with w and the
// partial sums: a whole next row on top pushes them out of the L1 cache,
// and the hardware prefetchers keep up within a row once it has started.
// With rows of 4096 or 16384 floats (4M floats, one thread) both
// gradients ran 35–50% faster with the first 1024 floats than with the
// whole row.
const prefetchHead = 1024

// prefetchHeads asks for the first prefetchHead floats of the next row's
// x and dy, which then arrive while this row's dx is computed from the
// cache (a third faster on 4M floats, one thread, than the hardware
// prefetchers alone), unless k's statistics kernels fetch their rows
// ahead themselves (StatsAhead), which the burst only slows. Only the
// streaming kernels prefetch at all (see Prefetch).
func (k *Kernels) prefetchHeads(x, dy []float32) {
	if k.StatsAhead {
		return
	}
	k.Prefetch(x[:min(len(x), prefetchHead)])
	k.Prefetch(dy[:min(len(dy), prefetchHead)])
}

// normGradRows checks the norm gradients' rows arguments and returns how
// many rows of cols floats dx holds.
func normGradRows(dx, x, w, dy []float32, cols int) int {
	switch {
	case cols <= 0:
		if len(dx) != 0 {
			panic("vec: norm gradient rows of no length")
		}
		return 0
	case len(dx)%cols != 0:
		panic("vec: norm gradient output not whole rows")
	case len(x) < len(dx) || len(dy) < len(dx) || len(w) < cols:
		panic("vec: norm gradient input too short")
	}
	return len(dx) / cols
}

// row returns row r of rows of cols floats in s, or nil past the last of
// rows.
func row(s []float32, r, rows, cols int) []float32 {
	if r >= rows {
		return nil
	}
	return s[r*cols : (r+1)*cols]
}

// rmsNormGradRows is RMSNormGradRows from k's other kernels: each row's
// statistics from the Next form of the row before (the first row's its
// own), the head of the next row prefetched before each step.
func (k *Kernels) rmsNormGradRows(dx, x, w, dy, acc []float32, cols int, eps float64) {
	rows := normGradRows(dx, x, w, dy, cols)
	if rows == 0 {
		return
	}
	n := float64(cols)
	ss, dot := k.SumSquaresDot3(x[:cols], w, dy[:cols])
	for r := range rows {
		rs, c := rmsNormGradScalars(ss, dot, n, eps)
		dr, xr, gr := row(dx, r, rows, cols), row(x, r, rows, cols), row(dy, r, rows, cols)
		nx, ng := row(x, r+1, rows, cols), row(dy, r+1, rows, cols)
		k.prefetchHeads(nx, ng)
		if acc != nil {
			ss, dot = k.RMSNormGradAccNext(dr, xr, w, gr, acc, rs, c, nx, ng)
		} else {
			ss, dot = k.RMSNormGradNext(dr, xr, w, gr, rs, c, nx, ng)
		}
	}
}

// layerNormGradRows is LayerNormGradRows from k's other kernels: each
// row's statistics from the Next form of the row before (the first row's
// its own), the head of the next row prefetched before each step; where k
// has no LayerNormGradAccNext, accB takes dy in the output pass and each
// row two passes.
func (k *Kernels) layerNormGradRows(dx, x, w, dy, accG, accB []float32, cols int, eps float64) {
	rows := normGradRows(dx, x, w, dy, cols)
	if rows == 0 {
		return
	}
	if accG != nil && len(accB) < cols {
		// LayerNormGradAcc would skip a nil accB where AVX-512's rows
		// panic: every set refuses it.
		panic("vec: norm gradient accB shorter than a row")
	}
	n := float64(cols)
	if accG != nil && k.LayerNormGradAccNext == nil {
		for r := range rows {
			dr, xr, gr := row(dx, r, rows, cols), row(x, r, rows, cols), row(dy, r, rows, cols)
			sd, ssd, sg, sgd := k.LayerNormGradStats(xr, w, gr, Pivot(xr))
			mean, rstd, mg, mgx := layerNormGradScalars(xr, sd, ssd, sg, sgd, n, eps)
			k.prefetchHeads(row(x, r+1, rows, cols), row(dy, r+1, rows, cols))
			k.LayerNormGradAcc(dr, xr, w, gr, accG, accB, mean, rstd, mg, mgx)
		}
		return
	}
	var sd, ssd, sg, sgd float64
	if accG != nil {
		sd, ssd, sg, sgd = k.LayerNormGradStatsAcc(x[:cols], w, dy[:cols], accB, Pivot(x))
	} else {
		sd, ssd, sg, sgd = k.LayerNormGradStats(x[:cols], w, dy[:cols], Pivot(x))
	}
	for r := range rows {
		dr, xr, gr := row(dx, r, rows, cols), row(x, r, rows, cols), row(dy, r, rows, cols)
		mean, rstd, mg, mgx := layerNormGradScalars(xr, sd, ssd, sg, sgd, n, eps)
		nx, ng := row(x, r+1, rows, cols), row(dy, r+1, rows, cols)
		k.prefetchHeads(nx, ng)
		if accG != nil {
			sd, ssd, sg, sgd = k.LayerNormGradAccNext(dr, xr, w, gr, accG, mean, rstd, mg, mgx, nx, ng, accB, Pivot(nx))
		} else {
			sd, ssd, sg, sgd = k.LayerNormGradNext(dr, xr, w, gr, mean, rstd, mg, mgx, nx, ng, Pivot(nx))
		}
	}
}
