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
