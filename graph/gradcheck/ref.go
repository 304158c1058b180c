package gradcheck

import (
	"github.com/sora-go/sora/backend"
)

// float64 reference implementations of the graph's ops, written
// independently of any backend for the reference checks of OpCases. Shapes
// are passed explicitly; data is row-major. The references of ops that map
// one to one onto backend ops (unary functions, softmax, the norms, RoPE,
// cross-entropy) are package refops's, which the conformance suite uses
// too.

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
