package conformance

// Float64 references, written from the op documentation in
// backend/backend.go. Inputs are the float32 values the backend saw,
// widened; every intermediate is float64.

import (
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/sora-go/sora/backend"
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

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// gaussCDF is Φ(x), the standard normal distribution function.
func gaussCDF(x float64) float64 { return 0.5 * (1 + math.Erf(x/math.Sqrt2)) }

// refUnary returns f(x) for a unary op.
func refUnary(op backend.UnaryOp, x float64) float64 {
	switch op {
	case backend.Exp:
		return math.Exp(x)
	case backend.Log:
		return math.Log(x)
	case backend.Sqrt:
		return math.Sqrt(x)
	case backend.Rsqrt:
		return 1 / math.Sqrt(x)
	case backend.Tanh:
		return math.Tanh(x)
	case backend.SiLU:
		return x * sigmoid(x)
	case backend.GELU:
		return x * gaussCDF(x)
	case backend.ReLU:
		return math.Max(x, 0)
	case backend.Neg:
		return -x
	case backend.Square:
		return x * x
	case backend.Sigmoid:
		return sigmoid(x)
	}
	panic("conformance: no reference for unary op " + op.String())
}

// refUnaryDeriv returns f'(x) for a unary op.
func refUnaryDeriv(op backend.UnaryOp, x float64) float64 {
	switch op {
	case backend.Exp:
		return math.Exp(x)
	case backend.Log:
		return 1 / x
	case backend.Sqrt:
		return 0.5 / math.Sqrt(x)
	case backend.Rsqrt:
		return -0.5 / (x * math.Sqrt(x))
	case backend.Tanh:
		t := math.Tanh(x)
		return 1 - t*t
	case backend.SiLU:
		s := sigmoid(x)
		return s * (1 + x*(1-s))
	case backend.GELU:
		return gaussCDF(x) + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi)
	case backend.ReLU:
		if x > 0 {
			return 1
		}
		return 0
	case backend.Neg:
		return -1
	case backend.Square:
		return 2 * x
	case backend.Sigmoid:
		s := sigmoid(x)
		return s * (1 - s)
	}
	panic("conformance: no reference derivative for unary op " + op.String())
}

// softmaxVisible reports how many leading keys row r of a [batch, queries,
// keys] softmax may attend to.
func softmaxVisible(r, queries, keys int, p backend.SoftmaxParams) int {
	if !p.Causal {
		return keys
	}
	q := r % queries
	return min(keys, q+p.QueryOffset+1)
}

// refSoftmax computes softmax(scale·x) over each row of x [rows, keys]
// with the causal mask of p; masked entries are 0.
func refSoftmax(x []float32, queries, keys int, p backend.SoftmaxParams) []float64 {
	scale := float64(p.EffectiveScale())
	out := make([]float64, len(x))
	for r := 0; r < len(x)/keys; r++ {
		row := x[r*keys : (r+1)*keys]
		vis := softmaxVisible(r, queries, keys, p)
		mx := math.Inf(-1)
		for j := 0; j < vis; j++ {
			mx = math.Max(mx, scale*float64(row[j]))
		}
		var sum float64
		for j := 0; j < vis; j++ {
			out[r*keys+j] = math.Exp(scale*float64(row[j]) - mx)
			sum += out[r*keys+j]
		}
		for j := 0; j < vis; j++ {
			out[r*keys+j] /= sum
		}
	}
	return out
}

// refSoftmaxGrad computes scale·y ⊙ (dy − Σ_row dy⊙y), 0 where masked.
func refSoftmaxGrad(y, dy []float32, queries, keys int, p backend.SoftmaxParams) []float64 {
	scale := float64(p.EffectiveScale())
	out := make([]float64, len(y))
	for r := 0; r < len(y)/keys; r++ {
		vis := softmaxVisible(r, queries, keys, p)
		var dot float64
		for j := 0; j < vis; j++ {
			dot += float64(dy[r*keys+j]) * float64(y[r*keys+j])
		}
		for j := 0; j < vis; j++ {
			out[r*keys+j] = scale * float64(y[r*keys+j]) * (float64(dy[r*keys+j]) - dot)
		}
	}
	return out
}

// refRMSNorm computes x / sqrt(mean(x²) + eps) ⊙ w per row.
func refRMSNorm(x, w []float32, cols int, eps float64) []float64 {
	out := make([]float64, len(x))
	for r := 0; r < len(x)/cols; r++ {
		row := F64(x[r*cols : (r+1)*cols])
		var ss float64
		for _, v := range row {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(cols)+eps)
		for j, v := range row {
			out[r*cols+j] = v * inv * float64(w[j])
		}
	}
	return out
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
	out := make([]float64, len(x))
	for r := 0; r < len(x)/cols; r++ {
		xr := F64(x[r*cols : (r+1)*cols])
		mean, inv := meanInvStd(xr, eps)
		for j, v := range xr {
			y := (v - mean) * inv * float64(gamma[j])
			if beta != nil {
				y += float64(beta[j])
			}
			out[r*cols+j] = y
		}
	}
	return out
}

func meanInvStd(x []float64, eps float64) (mean, inv float64) {
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	var vr float64
	for _, v := range x {
		vr += (v - mean) * (v - mean)
	}
	vr /= float64(len(x))
	return mean, 1 / math.Sqrt(vr+eps)
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
		mean, inv := meanInvStd(xr, eps)
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

// refRoPE rotates each pair of x [batch, seq, heads, d]: pair i of the
// token at sequence index t is rotated by (Offset+t)·Theta^(−2i/d)
// counter-clockwise, (a, b) → (a cos φ − b sin φ, a sin φ + b cos φ), or by
// −φ when Inverse. Interleaved pairs are (2i, 2i+1), half-split pairs
// (i, i+d/2).
func refRoPE(x []float32, batch, seq, heads, d int, p backend.RoPEParams) []float64 {
	out := make([]float64, len(x))
	half := d / 2
	for bi := 0; bi < batch; bi++ {
		for t := 0; t < seq; t++ {
			pos := float64(p.Offset + t)
			for h := 0; h < heads; h++ {
				base := ((bi*seq+t)*heads + h) * d
				for i := 0; i < half; i++ {
					phi := pos * math.Pow(float64(p.Theta), -2*float64(i)/float64(d))
					if p.Inverse {
						phi = -phi
					}
					ia, ib := base+2*i, base+2*i+1
					if p.Layout == backend.HalfSplit {
						ia, ib = base+i, base+i+half
					}
					a, b := float64(x[ia]), float64(x[ib])
					s, c := math.Sincos(phi)
					out[ia] = a*c - b*s
					out[ib] = a*s + b*c
				}
			}
		}
	}
	return out
}

// logSoftmaxRow returns log softmax of one row.
func logSoftmaxRow(row []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range row {
		sum += math.Exp(float64(v) - mx)
	}
	lse := mx + math.Log(sum)
	out := make([]float64, len(row))
	for j, v := range row {
		out[j] = float64(v) - lse
	}
	return out
}

// refCrossEntropy returns each row's −Σ_j q_j log softmax(logits)_j with
// q = (1−ε)·one-hot(target) + ε/vocab, and 0 for ignored rows.
func refCrossEntropy(logits []float32, targets []int32, vocab int, p backend.CrossEntropyParams) []float64 {
	out := make([]float64, len(targets))
	eps := float64(p.Smoothing)
	for r, t := range targets {
		if t == p.IgnoreIndex {
			continue
		}
		ls := logSoftmaxRow(logits[r*vocab : (r+1)*vocab])
		var all float64
		for _, v := range ls {
			all += v
		}
		out[r] = -(1-eps)*ls[t] - eps/float64(vocab)*all
	}
	return out
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
		ls := logSoftmaxRow(logits[r*vocab : (r+1)*vocab])
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
