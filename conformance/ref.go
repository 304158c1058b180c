package conformance

// Float64 references, written from the op documentation in
// backend/backend.go. Inputs are the float32 values the backend saw,
// widened; every intermediate is float64.

import (
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/refops"
)

// refMatMul computes C = alpha·op(A)·op(B) + beta·C0 for each of batch
// matrices with gonum. A holds batchA matrices of its stored shape
// ([m, k], or [k, m] when transA) and B batchB ([k, n] or [n, k]); a batch
// of 1 is shared. c0 is ignored when beta is 0.
func refMatMul(a, b []float32, batch, batchA, batchB, m, n, k int, transA, transB bool, alpha, beta float64, c0 []float32) []float64 {
	out := make([]float64, batch*m*n)
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	for i := 0; i < batch; i++ {
		ia, ib := 0, 0
		if batchA > 1 {
			ia = i
		}
		if batchB > 1 {
			ib = i
		}
		var A, B mat.Matrix
		A = mat.NewDense(ar, ac, F64(a[ia*m*k:(ia+1)*m*k]))
		B = mat.NewDense(br, bc, F64(b[ib*k*n:(ib+1)*k*n]))
		if transA {
			A = A.T()
		}
		if transB {
			B = B.T()
		}
		var C mat.Dense
		C.Mul(A, B)
		for r := 0; r < m; r++ {
			for c := 0; c < n; c++ {
				v := alpha * C.At(r, c)
				if beta != 0 {
					v += beta * float64(c0[i*m*n+r*n+c])
				}
				out[i*m*n+r*n+c] = v
			}
		}
	}
	return out
}

// refSoftmax computes softmax(scale·x) over each row of x [rows, keys]
// with the mask of p (causal, query offset, sliding window); masked
// entries are 0.
func refSoftmax(x []float32, queries, keys int, p backend.SoftmaxParams) []float64 {
	return refops.SoftmaxMasked(F64(x), queries, keys, p)
}

// refSoftmaxGrad computes scale·y ⊙ (dy − Σ_row dy⊙y), 0 where masked.
func refSoftmaxGrad(y, dy []float32, queries, keys int, p backend.SoftmaxParams) []float64 {
	return refops.SoftmaxGrad(F64(y), F64(dy), queries, keys, p)
}

// refRMSNorm computes x / sqrt(mean(x²) + eps) ⊙ w per row.
func refRMSNorm(x, w []float32, cols int, eps float64) []float64 {
	return refops.RMSNorm(F64(x), F64(w[:cols]), eps)
}

// refRMSNormGrad returns dx and Σ_rows of the weight gradient (to be added
// to dw's starting values). With ρ = 1/sqrt(mean(x²)+eps) and g = dy⊙w:
// dx = ρ·g − ρ³/n · x · Σ g⊙x; dw = Σ_rows dy ⊙ x·ρ.
func refRMSNormGrad(x, w, dy []float32, cols int, eps float64) (dx, dw []float64) {
	dx = make([]float64, len(x))
	dw = make([]float64, cols)
	n := float64(cols)
	for r := 0; r < len(x)/cols; r++ {
		xr := F64(x[r*cols : (r+1)*cols])
		dyr := F64(dy[r*cols : (r+1)*cols])
		var ss, gx float64
		for j, v := range xr {
			ss += v * v
			gx += dyr[j] * float64(w[j]) * v
		}
		rho := 1 / math.Sqrt(ss/n+eps)
		for j, v := range xr {
			dx[r*cols+j] = rho*dyr[j]*float64(w[j]) - rho*rho*rho/n*v*gx
			dw[j] += dyr[j] * v * rho
		}
	}
	return dx, dw
}

// refLayerNorm computes (x − mean)/sqrt(var + eps) ⊙ gamma + beta per row
// with the biased variance; beta may be nil.
func refLayerNorm(x, gamma, beta []float32, cols int, eps float64) []float64 {
	var b64 []float64
	if beta != nil {
		b64 = F64(beta)
	}
	return refops.LayerNorm(F64(x), F64(gamma[:cols]), b64, eps)
}

// refLayerNormGrad returns dx and the row sums of the gamma and beta
// gradients. With x̂ = (x − mean)·σ⁻¹ and g = dy⊙gamma:
// dx = σ⁻¹·(g − mean(g) − x̂·mean(g⊙x̂)); dgamma = Σ dy⊙x̂; dbeta = Σ dy.
func refLayerNormGrad(x, gamma, dy []float32, cols int, eps float64) (dx, dgamma, dbeta []float64) {
	dx = make([]float64, len(x))
	dgamma = make([]float64, cols)
	dbeta = make([]float64, cols)
	n := float64(cols)
	for r := 0; r < len(x)/cols; r++ {
		xr := F64(x[r*cols : (r+1)*cols])
		dyr := F64(dy[r*cols : (r+1)*cols])
		mean, inv := refops.MeanInvStd(xr, eps)
		var mg, mgx float64
		for j, v := range xr {
			g := dyr[j] * float64(gamma[j])
			xh := (v - mean) * inv
			mg += g
			mgx += g * xh
			dgamma[j] += dyr[j] * xh
			dbeta[j] += dyr[j]
		}
		mg /= n
		mgx /= n
		for j, v := range xr {
			g := dyr[j] * float64(gamma[j])
			xh := (v - mean) * inv
			dx[r*cols+j] = inv * (g - mg - xh*mgx)
		}
	}
	return dx, dgamma, dbeta
}

// refCrossEntropy returns each row's −Σ_j q_j log softmax(logits)_j with
// q = (1−ε)·one-hot(target) + ε/vocab, and 0 for ignored rows.
func refCrossEntropy(logits []float32, targets []int32, vocab int, p backend.CrossEntropyParams) []float64 {
	return refops.CrossEntropy(F64(logits), vocab, targets, p.IgnoreIndex, float64(p.Smoothing))
}

// refCrossEntropyGrad returns Scale·(softmax(logits) − q) per row, 0 for
// ignored rows.
func refCrossEntropyGrad(logits []float32, targets []int32, vocab int, p backend.CrossEntropyParams) []float64 {
	out := make([]float64, len(logits))
	eps := float64(p.Smoothing)
	for r, t := range targets {
		if t == p.IgnoreIndex {
			continue
		}
		ls := refops.LogSoftmax(F64(logits[r*vocab : (r+1)*vocab]))
		for j, v := range ls {
			q := eps / float64(vocab)
			if j == int(t) {
				q += 1 - eps
			}
			out[r*vocab+j] = float64(p.Scale) * (math.Exp(v) - q)
		}
	}
	return out
}

// refAdamW performs one torch.optim.AdamW step in float64 and returns the
// new param, m and v.
func refAdamW(param, grad, m, v []float32, p backend.AdamWParams) (np, nm, nv []float64) {
	np = make([]float64, len(param))
	nm = make([]float64, len(param))
	nv = make([]float64, len(param))
	lr, b1, b2 := float64(p.LR), float64(p.Beta1), float64(p.Beta2)
	bc1 := 1 - math.Pow(b1, float64(p.Step))
	bc2 := 1 - math.Pow(b2, float64(p.Step))
	for i := range param {
		x := float64(param[i])
		g := float64(grad[i])
		x -= lr * float64(p.WeightDecay) * x
		nm[i] = b1*float64(m[i]) + (1-b1)*g
		nv[i] = b2*float64(v[i]) + (1-b2)*g*g
		x -= lr * (nm[i] / bc1) / (math.Sqrt(nv[i]/bc2) + float64(p.Eps))
		np[i] = x
	}
	return np, nm, nv
}

// RoundBF16 returns f rounded to bfloat16 ([backend.BFloat16]) and widened
// back to float32: to 8 significant bits (2⁻¹³³ apart below 2⁻¹²⁶, where
// bfloat16 is subnormal), ties to even, with magnitudes from halfway
// between the largest bfloat16 and 2¹²⁸ up becoming infinite, as a
// backend's Upload into a bfloat16 tensor must. NaN and the infinities
// are returned as they are. It is computed in float64, by scaling, not
// with the bit manipulation backends use.
func RoundBF16(f float32) float32 {
	x := float64(f)
	if math.IsNaN(x) || math.IsInf(x, 0) || x == 0 {
		return f
	}
	_, exp := math.Frexp(x) // |x| = frac·2^exp, frac in [0.5, 1)
	q := math.Ldexp(1, max(exp-8, -133))
	r := math.RoundToEven(x/q) * q
	if math.Abs(r) >= 0x1p128 {
		return float32(math.Inf(int(math.Copysign(1, x))))
	}
	return float32(r)
}

// attnShape gives the dimensions of an attention call: q and out are
// [B, Tq, H, D], k and v [B, Tk, KV, D], lse [B, H, Tq].
type attnShape struct{ B, Tq, Tk, H, KV, D int }

// sees reports whether query i of sequence b sees key j: the mask and,
// on top of it, the segments (refops.AttentionSees).
func (s attnShape) sees(b, i, j int, p backend.AttentionParams) bool {
	return refops.AttentionSees(p, s.Tk, b, i, j)
}

// attnRow holds, for one query of one head, the raw scaled scores r_j =
// Scale·q·k_j of the keys it sees, their capped values c_j and the
// softmax weights P_j of the capped scores; keys lists which keys they are.
type attnRow struct {
	keys    []int
	r, c, w []float64
	lse     float64
}

// qAt returns the offset of query i, head h of sequence b in q, out, dq
// and dout [B, Tq, H, D].
func (s attnShape) qAt(b, i, h int) int { return ((b*s.Tq+i)*s.H + h) * s.D }

// kAt returns the offset of key j, key/value head g of sequence b in k, v,
// dk and dv [B, Tk, KV, D].
func (s attnShape) kAt(b, j, g int) int { return ((b*s.Tk+j)*s.KV + g) * s.D }

// eachRow calls f with the attnRow of every query i of every query head h
// of every sequence b, and the key/value head g = h / (H/KV) that serves
// h.
func (s attnShape) eachRow(q, k []float64, p backend.AttentionParams, f func(b, h, g, i int, a attnRow)) {
	for b := 0; b < s.B; b++ {
		for h := 0; h < s.H; h++ {
			g := h / (s.H / s.KV)
			for i := 0; i < s.Tq; i++ {
				f(b, h, g, i, s.row(q, k, b, h, g, i, p))
			}
		}
	}
}

// row computes attnRow for batch b, query head h (key/value head g),
// query i.
func (s attnShape) row(q, k []float64, b, h, g, i int, p backend.AttentionParams) attnRow {
	qi := q[s.qAt(b, i, h):][:s.D]
	var a attnRow
	for j := 0; j < s.Tk; j++ {
		if !s.sees(b, i, j, p) {
			continue
		}
		kj := k[s.kAt(b, j, g):][:s.D]
		var dot float64
		for d := range qi {
			dot += qi[d] * kj[d]
		}
		r := float64(p.Scale) * dot
		c := r
		if p.Softcap > 0 {
			c = float64(p.Softcap) * math.Tanh(r/float64(p.Softcap))
		}
		a.keys = append(a.keys, j)
		a.r = append(a.r, r)
		a.c = append(a.c, c)
	}
	m := math.Inf(-1)
	for _, c := range a.c {
		m = math.Max(m, c)
	}
	var sum float64
	a.w = make([]float64, len(a.c))
	for n, c := range a.c {
		a.w[n] = math.Exp(c - m)
		sum += a.w[n]
	}
	for n := range a.w {
		a.w[n] /= sum
	}
	a.lse = m + math.Log(sum)
	return a
}

// refAttention computes Attention in float64: out [B, Tq, H, D] and lse
// [B, H, Tq] (natural log of the sum of exp of the capped scores over the
// visible keys). Key/value head g = h / (H/KV) serves query head h.
func refAttention(q, k, v []float64, s attnShape, p backend.AttentionParams) (out, lse []float64) {
	out = make([]float64, s.B*s.Tq*s.H*s.D)
	lse = make([]float64, s.B*s.H*s.Tq)
	s.eachRow(q, k, p, func(b, h, g, i int, a attnRow) {
		o := out[s.qAt(b, i, h):][:s.D]
		for n, j := range a.keys {
			vj := v[s.kAt(b, j, g):][:s.D]
			for d := range o {
				o[d] += a.w[n] * vj[d]
			}
		}
		lse[(b*s.H+h)*s.Tq+i] = a.lse
	})
	return out, lse
}

// refAttentionGrad computes the gradients of Σ dout⊙out with respect to
// q, k and v in float64, from q, k and v alone (the forward is recomputed
// here, not taken from a backend). With P the softmax weights of the
// capped scores c = cap(r), r = Scale·q·k:
//
//	dv_j = Σ_i P_ij dout_i
//	dc_ij = P_ij (dout_i·v_j − Σ_l P_il dout_i·v_l)
//	dr_ij = dc_ij · (1 − tanh²(r_ij/Softcap))   (dc_ij without a cap)
//	dq_i = Scale Σ_j dr_ij k_j,  dk_j = Scale Σ_i dr_ij q_i
//
// with dk and dv summed over the query heads that share a key/value head.
func refAttentionGrad(q, k, v, dout []float64, s attnShape, p backend.AttentionParams) (dq, dk, dv []float64) {
	dq = make([]float64, len(q))
	dk = make([]float64, len(k))
	dv = make([]float64, len(v))
	scale := float64(p.Scale)
	s.eachRow(q, k, p, func(b, h, g, i int, a attnRow) {
		qOff := s.qAt(b, i, h)
		qi, doi, dqi := q[qOff:][:s.D], dout[qOff:][:s.D], dq[qOff:][:s.D]
		dp := make([]float64, len(a.keys))
		var dot float64 // Σ_l P_il dout_i·v_l
		for n, j := range a.keys {
			vj := v[s.kAt(b, j, g):][:s.D]
			for d := range vj {
				dp[n] += doi[d] * vj[d]
			}
			dot += a.w[n] * dp[n]
		}
		for n, j := range a.keys {
			kvOff := s.kAt(b, j, g)
			kj, dkj, dvj := k[kvOff:][:s.D], dk[kvOff:][:s.D], dv[kvOff:][:s.D]
			dr := a.w[n] * (dp[n] - dot)
			if p.Softcap > 0 {
				t := math.Tanh(a.r[n] / float64(p.Softcap))
				dr *= 1 - t*t
			}
			for d := 0; d < s.D; d++ {
				dqi[d] += scale * dr * kj[d]
				dkj[d] += scale * dr * qi[d]
				dvj[d] += a.w[n] * doi[d]
			}
		}
	})
	return dq, dk, dv
}

// refAttentionGradTerms returns, for dq and dk, the size of the terms a
// kernel sums to form each element: with M_ij = P_ij·(Σ|dout_i⊙v_j| +
// Σ|dout_i⊙out_i|), the bound on |dP_ij − Σ_l P_il dP_il| before it
// cancels, Scale·Σ_j M_ij·|k_j| for dq and Scale·Σ_i M_ij·|q_i| for dk
// (summed over each group, as dk is). A float32 kernel errs by a few ulps
// of these sums (its float32 out and lse, which the backward takes,
// already carry that much), not of the result, which cancels to almost
// nothing in rows that one key dominates. (The cap's factor 1 − tanh² ≤
// 1 is left out: it only shrinks the terms, and the float32 tanh errs by
// ulps of 1 where it saturates.)
func refAttentionGradTerms(q, k, v, dout []float64, s attnShape, p backend.AttentionParams) (mq, mk []float64) {
	mq = make([]float64, len(q))
	mk = make([]float64, len(k))
	out, _ := refAttention(q, k, v, s, p)
	scale := float64(p.Scale)
	s.eachRow(q, k, p, func(b, h, g, i int, a attnRow) {
		qOff := s.qAt(b, i, h)
		qi, oi, doi, mqi := q[qOff:][:s.D], out[qOff:][:s.D], dout[qOff:][:s.D], mq[qOff:][:s.D]
		var dsum float64
		for d := range oi {
			dsum += math.Abs(doi[d] * oi[d])
		}
		for n, j := range a.keys {
			kvOff := s.kAt(b, j, g)
			kj, vj, mkj := k[kvOff:][:s.D], v[kvOff:][:s.D], mk[kvOff:][:s.D]
			var dp float64
			for d := range vj {
				dp += math.Abs(doi[d] * vj[d])
			}
			m := a.w[n] * (dp + dsum)
			for d := 0; d < s.D; d++ {
				mqi[d] += scale * m * math.Abs(kj[d])
				mkj[d] += scale * m * math.Abs(qi[d])
			}
		}
	})
	return mq, mk
}
