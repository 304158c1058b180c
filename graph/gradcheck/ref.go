package gradcheck

import (
	"math"

	"github.com/sora-go/sora/backend"
)

// float64 reference implementations of the graph's ops, written
// independently of any backend for the reference checks of OpCases. Shapes
// are passed explicitly; data is row-major.

// refMatMul returns op(A)·op(B) for batches of matrices: A holds na
// matrices of [ar, ac], B nb of [br, bc], with na or nb equal to the
// output batch or 1 (shared).
func refMatMul(a []float64, na, ar, ac int, ta bool, b []float64, nb, br, bc int, tb bool) []float64 {
	m, k := ar, ac
	if ta {
		m, k = ac, ar
	}
	n := bc
	if tb {
		n = br
	}
	batch := max(na, nb)
	out := make([]float64, batch*m*n)
	for z := range batch {
		am := a[(z%na)*ar*ac:]
		bm := b[(z%nb)*br*bc:]
		for i := range m {
			for j := range n {
				s := 0.0
				for l := range k {
					var x, y float64
					if ta {
						x = am[l*ac+i]
					} else {
						x = am[i*ac+l]
					}
					if tb {
						y = bm[j*bc+l]
					} else {
						y = bm[l*bc+j]
					}
					s += x * y
				}
				out[(z*m+i)*n+j] = s
			}
		}
	}
	return out
}

// refBinary applies op with b broadcast as the graph does: bShape one of
// "same", "scalar", "row" (length cols), "col" (length rows).
func refBinary(op backend.BinaryOp, a []float64, cols int, b []float64, kind string) []float64 {
	out := make([]float64, len(a))
	for i, x := range a {
		var y float64
		switch kind {
		case "same":
			y = b[i]
		case "scalar":
			y = b[0]
		case "row":
			y = b[i%cols]
		case "col":
			y = b[i/cols]
		}
		switch op {
		case backend.Add:
			out[i] = x + y
		case backend.Sub:
			out[i] = x - y
		case backend.Mul:
			out[i] = x * y
		case backend.Div:
			out[i] = x / y
		}
	}
	return out
}

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
		return x / (1 + math.Exp(-x))
	case backend.GELU:
		return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
	case backend.ReLU:
		return math.Max(x, 0)
	case backend.Neg:
		return -x
	case backend.Square:
		return x * x
	case backend.Sigmoid:
		return 1 / (1 + math.Exp(-x))
	}
	return math.NaN()
}

func mapf(x []float64, f func(float64) float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = f(v)
	}
	return out
}

// refRows applies f to each row of cols elements.
func refRows(x []float64, cols int, f func(row []float64) []float64) []float64 {
	var out []float64
	for r := 0; r < len(x); r += cols {
		out = append(out, f(x[r:r+cols])...)
	}
	return out
}

func sum(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s
}

func sumsq(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v * v
	}
	return s
}

// refSoftmax is softmax(scale·x) over rows of keys; with causal the rows are
// grouped as [batch, queries, keys] and key j is masked for query i when
// j > i + offset.
func refSoftmax(x []float64, queries, keys int, scale float64, causal bool, offset int) []float64 {
	out := make([]float64, len(x))
	for r := 0; r*keys < len(x); r++ {
		row := x[r*keys : (r+1)*keys]
		q := r % queries
		mx := math.Inf(-1)
		for j, v := range row {
			if causal && j > q+offset {
				continue
			}
			mx = math.Max(mx, scale*v)
		}
		z := 0.0
		for j, v := range row {
			if causal && j > q+offset {
				continue
			}
			z += math.Exp(scale*v - mx)
		}
		for j, v := range row {
			if causal && j > q+offset {
				continue
			}
			out[r*keys+j] = math.Exp(scale*v-mx) / z
		}
	}
	return out
}

func refRMSNorm(x, w []float64, eps float64) []float64 {
	cols := len(w)
	return refRows(x, cols, func(row []float64) []float64 {
		inv := 1 / math.Sqrt(sumsq(row)/float64(cols)+eps)
		out := make([]float64, cols)
		for j, v := range row {
			out[j] = v * inv * w[j]
		}
		return out
	})
}

func refLayerNorm(x, gamma, beta []float64, eps float64) []float64 {
	cols := len(gamma)
	return refRows(x, cols, func(row []float64) []float64 {
		mean := sum(row) / float64(cols)
		v := 0.0
		for _, e := range row {
			v += (e - mean) * (e - mean)
		}
		inv := 1 / math.Sqrt(v/float64(cols)+eps)
		out := make([]float64, cols)
		for j, e := range row {
			out[j] = (e-mean)*inv*gamma[j] + beta[j]
		}
		return out
	})
}

// refRoPE rotates x [batch, seq, heads, hd] as backend.RoPEParams
// describes.
func refRoPE(x []float64, batch, seq, heads, hd int, layout backend.RoPELayout, theta float64, offset int) []float64 {
	out := make([]float64, len(x))
	half := hd / 2
	for bb := range batch {
		for t := range seq {
			for h := range heads {
				base := ((bb*seq+t)*heads + h) * hd
				for i := range half {
					ang := float64(offset+t) * math.Pow(theta, -float64(2*i)/float64(hd))
					j0, j1 := base+2*i, base+2*i+1
					if layout == backend.HalfSplit {
						j0, j1 = base+i, base+i+half
					}
					c, s := math.Cos(ang), math.Sin(ang)
					out[j0] = x[j0]*c - x[j1]*s
					out[j1] = x[j0]*s + x[j1]*c
				}
			}
		}
	}
	return out
}

// refCrossEntropy returns the per-row losses −Σ q log softmax(x) with the
// smoothed one-hot q; IgnoreIndex rows give 0.
func refCrossEntropy(x []float64, vocab int, targets []int32, ignore int32, eps float64) []float64 {
	out := make([]float64, len(targets))
	for r, t := range targets {
		if t == ignore {
			continue
		}
		row := x[r*vocab : (r+1)*vocab]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, v)
		}
		z := 0.0
		for _, v := range row {
			z += math.Exp(v - mx)
		}
		lse := mx + math.Log(z)
		l := 0.0
		for j, v := range row {
			q := eps / float64(vocab)
			if j == int(t) {
				q += 1 - eps
			}
			l -= q * (v - lse)
		}
		out[r] = l
	}
	return out
}

// refPermute returns x of shape with axes reordered by perm.
func refPermute(x []float64, shape []int, perm []int) []float64 {
	st := backend.Shape(shape).ContiguousStrides()
	outShape := make([]int, len(perm))
	for i, p := range perm {
		outShape[i] = shape[p]
	}
	out := make([]float64, len(x))
	idx := make([]int, len(perm))
	for o := range out {
		src := 0
		for i, p := range perm {
			src += idx[i] * st[p]
		}
		out[o] = x[src]
		for i := len(idx) - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < outShape[i] {
				break
			}
			idx[i] = 0
		}
	}
	return out
}

// refSlice returns elements [from, to) along axis of x.
func refSlice(x []float64, shape []int, axis, from, to int) []float64 {
	pre := backend.Shape(shape[:axis]).NumElements()
	post := backend.Shape(shape[axis+1:]).NumElements()
	d := shape[axis]
	var out []float64
	for p := range pre {
		out = append(out, x[(p*d+from)*post:(p*d+to)*post]...)
	}
	return out
}

// refRepeat repeats each slice along axis n times in a row.
func refRepeat(x []float64, shape []int, axis, n int) []float64 {
	pre := backend.Shape(shape[:axis]).NumElements()
	post := backend.Shape(shape[axis+1:]).NumElements()
	d := shape[axis]
	var out []float64
	for p := range pre {
		for i := range d {
			for range n {
				out = append(out, x[(p*d+i)*post:(p*d+i+1)*post]...)
			}
		}
	}
	return out
}
