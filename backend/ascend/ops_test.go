package ascend

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/refops"
)

// The op tests run each op of the interface through the backend and the
// test double and compare with float64 references (written here, or
// package refops's, shared with the conformance suite). The
// double computes in double precision and rounds once, so the tolerances
// are tight: a wrong composition (a transposed stride, a missed scale, a
// wrong broadcast) misses them by orders of magnitude.

const tight = 1e-11

// matmulRef returns the float64 product of A [m, k] and B [k, n], both
// row-major.
func matmulRef(A, B []float32, m, n, k int) []float64 {
	want := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			for p := 0; p < k; p++ {
				want[i*n+j] += float64(A[i*k+p]) * float64(B[p*n+j])
			}
		}
	}
	return want
}

// crossEntropyRef returns one row's smoothed cross-entropy loss against
// target, −Σ_j q_j log softmax(row)_j with q = (1−smoothing)·one-hot +
// smoothing/len(row), and writes its gradient times scale,
// scale·(softmax(row) − q), into grad. refops.CrossEntropy gives the loss
// alone, summed in another order; this keeps the terms per element so the
// loss and gradient come from the same log-softmax.
func crossEntropyRef(row []float64, target int, smoothing, scale float64, grad []float64) float64 {
	var loss float64
	for j, ls := range refops.LogSoftmax(row) {
		q := smoothing / float64(len(row))
		if j == target {
			q += 1 - smoothing
		}
		loss -= q * ls
		grad[j] = scale * (math.Exp(ls) - q)
	}
	return loss
}

func TestMatMul(t *testing.T) {
	b, dbl := openDouble(t, Options{})
	r := rand.New(rand.NewSource(1))
	cases := []struct {
		m, n, k        int
		ba, bb, bc     int // batches of A, B, C (0: rank 2)
		transA, transB bool
		alpha, beta    float32
		nanC           bool // C starts as NaN (beta 0 must ignore it)
		wantOps        string
	}{
		{m: 3, n: 5, k: 7, alpha: 1, wantOps: "aclnnMm"},
		{m: 1, n: 1, k: 1, alpha: 1, wantOps: "aclnnMm"},
		{m: 13, n: 7, k: 3, transA: true, alpha: 1, nanC: true, wantOps: "aclnnMm"},
		{m: 4, n: 6, k: 5, transB: true, alpha: 0.5, nanC: true, wantOps: "aclnnMm"},
		{m: 4, n: 6, k: 5, transA: true, transB: true, alpha: 2, beta: 0.5, wantOps: "aclnnMm"},
		{m: 3, n: 4, k: 5, ba: 3, bb: 3, bc: 3, transA: true, transB: true, alpha: 1, wantOps: "aclnnBatchMatMul"},
		{m: 3, n: 4, k: 5, ba: 1, bb: 3, bc: 3, transB: true, alpha: 1, beta: 1, wantOps: "aclnnMatmul"},
		{m: 3, n: 4, k: 5, ba: 3, bb: 1, bc: 3, alpha: 1, wantOps: "aclnnMm"},
		{m: 3, n: 4, k: 5, ba: 3, bb: 1, bc: 3, transA: true, alpha: -1, wantOps: "aclnnMatmul"},
		{m: 2, n: 3, k: 4, ba: 0, bb: 0, bc: 2, alpha: 1.5, beta: 2, wantOps: "aclnnMm"},
		{m: 2, n: 3, k: 4, ba: 0, bb: 0, bc: 2, alpha: 1, nanC: true, wantOps: "aclnnMm"},
		{m: 3, n: 2, k: 0, alpha: 1, beta: 0.5, wantOps: "aclnnInplaceMuls"},
		{m: 3, n: 2, k: 0, alpha: 1, nanC: true, wantOps: "aclnnInplaceFillScalar"},
		{m: 17, n: 9, k: 127, alpha: 1, wantOps: "aclnnMm"},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("%dx%dx%d_b%d%d%d_t%v%v_a%g_b%g", tc.m, tc.n, tc.k, tc.ba, tc.bb, tc.bc, tc.transA, tc.transB, tc.alpha, tc.beta)
		t.Run(name, func(t *testing.T) {
			shape := func(batch, r, c int) []int {
				if batch == 0 {
					return []int{r, c}
				}
				return []int{batch, r, c}
			}
			ar, ac := tc.m, tc.k
			if tc.transA {
				ar, ac = ac, ar
			}
			br, bcl := tc.k, tc.n
			if tc.transB {
				br, bcl = bcl, br
			}
			nb := max(tc.bc, 1)
			A := randn(r, max(tc.ba, 1)*ar*ac, -1, 1)
			B := randn(r, max(tc.bb, 1)*br*bcl, -1, 1)
			C0 := randn(r, nb*tc.m*tc.n, -1, 1)
			if tc.nanC {
				for i := range C0 {
					C0[i] = float32(math.NaN())
				}
			}
			at := upload(t, b, A, shape(tc.ba, ar, ac)...)
			bt := upload(t, b, B, shape(tc.bb, br, bcl)...)
			ct := upload(t, b, C0, shape(tc.bc, tc.m, tc.n)...)
			dbl.Reset()
			b.MatMul(ct, at, bt, backend.MatMulParams{TransA: tc.transA, TransB: tc.transB, Alpha: tc.alpha, Beta: tc.beta})
			got := download(t, b, ct)
			want := make([]float64, len(C0))
			for bi := 0; bi < nb; bi++ {
				aoff, boff := 0, 0
				if tc.ba > 1 {
					aoff = bi * ar * ac
				}
				if tc.bb > 1 {
					boff = bi * br * bcl
				}
				for i := 0; i < tc.m; i++ {
					for j := 0; j < tc.n; j++ {
						var s float64
						for k := 0; k < tc.k; k++ {
							ai := aoff + i*ac + k
							if tc.transA {
								ai = aoff + k*ac + i
							}
							bi2 := boff + k*bcl + j
							if tc.transB {
								bi2 = boff + j*bcl + k
							}
							s += float64(A[ai]) * float64(B[bi2])
						}
						o := bi*tc.m*tc.n + i*tc.n + j
						v := float64(tc.alpha) * s
						if tc.beta != 0 {
							v += float64(tc.beta) * float64(C0[o])
						}
						want[o] = v
					}
				}
			}
			checkClose(t, "C", got, want, tight)
			if dbl.Calls(tc.wantOps) == 0 {
				t.Errorf("%s was not called; calls: %v", tc.wantOps, dbl.Log())
			}
		})
	}
}

// TestMatMulFastMode checks that MatMulFast passes cubeMathType 1 and that
// its results stay within FastMatMulNMSE while differing from float32.
func TestMatMulFastMode(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	m, n, k := 16, 12, 64
	A, B := randn(r, m*k, -1, 1), randn(r, k*n, -1, 1)
	want := matmulRef(A, B, m, n, k)
	for _, mode := range []MatMulMode{MatMulKeepFloat32, MatMulFast} {
		b, _ := openDouble(t, Options{MatMul: mode})
		if b.MatMulMode() != mode {
			t.Fatalf("MatMulMode() = %d, want %d", b.MatMulMode(), mode)
		}
		at, bt := upload(t, b, A, m, k), upload(t, b, B, k, n)
		ct, _ := b.Alloc(backend.Float32, m, n)
		b.MatMul(ct, at, bt, backend.MatMulParams{Alpha: 1})
		e := nmse(download(t, b, ct), want)
		switch mode {
		case MatMulKeepFloat32:
			if e > tight {
				t.Errorf("float32 mode: NMSE %.3g > %.3g", e, tight)
			}
		case MatMulFast:
			if e > FastMatMulNMSE || e < 1e-12 {
				t.Errorf("fast mode: NMSE %.3g, want in [1e-12, %g] (reduced precision, within its bound)", e, FastMatMulNMSE)
			}
			t.Logf("fast mode NMSE %.3g (bound %g)", e, FastMatMulNMSE)
		}
		b.Close()
	}
}

func TestBinary(t *testing.T) {
	b, _ := openDouble(t, Options{})
	r := rand.New(rand.NewSource(3))
	type shp struct{ a, b []int }
	shapes := []shp{
		{[]int{4, 5}, []int{4, 5}},
		{[]int{4, 5}, []int{5}},
		{[]int{4, 5}, []int{4, 1}},
		{[]int{2, 3, 4}, []int{4}},
		{[]int{2, 3, 4}, []int{6, 1}},
		{[]int{7}, []int{7}},
		{[]int{1, 1}, []int{1}},
	}
	for _, op := range backend.BinaryOps {
		for _, s := range shapes {
			for _, alias := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s_%v_%v_alias%v", op, s.a, s.b, alias), func(t *testing.T) {
					na, nb := backend.Shape(s.a).NumElements(), backend.Shape(s.b).NumElements()
					A := randn(r, na, -1, 1)
					B := randn(r, nb, 0.5, 1.5)
					at, bt := upload(t, b, A, s.a...), upload(t, b, B, s.b...)
					dt := at
					if !alias {
						dt, _ = b.Alloc(backend.Float32, s.a...)
					}
					b.Binary(op, dt, at, bt)
					rows, cols := backend.Shape(s.a).Rows()
					want := make([]float64, na)
					for i := 0; i < rows; i++ {
						for j := 0; j < cols; j++ {
							x := float64(A[i*cols+j])
							var y float64
							switch {
							case nb == na:
								y = float64(B[i*cols+j])
							case len(s.b) == 1:
								y = float64(B[j])
							default:
								y = float64(B[i])
							}
							switch op {
							case backend.Add:
								want[i*cols+j] = x + y
							case backend.Sub:
								want[i*cols+j] = x - y
							case backend.Mul:
								want[i*cols+j] = x * y
							case backend.Div:
								want[i*cols+j] = x / y
							}
						}
					}
					checkClose(t, "dst", download(t, b, dt), want, tight)
				})
			}
		}
	}
}

func TestScaleAxpy(t *testing.T) {
	b, _ := openDouble(t, Options{})
	r := rand.New(rand.NewSource(4))
	X, Y := randn(r, 15, -1, 1), randn(r, 15, -1, 1)
	xt, yt := upload(t, b, X, 3, 5), upload(t, b, Y, 15)
	st, _ := b.Alloc(backend.Float32, 5, 3)
	b.Scale(st, xt, -2.5)
	b.Axpy(yt, 0.25, xt)
	ws, wy := make([]float64, 15), make([]float64, 15)
	for i := range X {
		ws[i] = -2.5 * float64(X[i])
		wy[i] = float64(Y[i]) + 0.25*float64(X[i])
	}
	checkClose(t, "scale", download(t, b, st), ws, tight)
	checkClose(t, "axpy", download(t, b, yt), wy, tight)
}

func TestUnaryAndGrad(t *testing.T) {
	b, _ := openDouble(t, Options{})
	r := rand.New(rand.NewSource(5))
	for _, op := range backend.UnaryOps {
		for _, alias := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s_alias%v", op, alias), func(t *testing.T) {
				lo, hi := -3.0, 3.0
				if op == backend.Log || op == backend.Sqrt || op == backend.Rsqrt {
					lo, hi = 0.1, 4
				}
				n := 37
				X, DY := randn(r, n, lo, hi), randn(r, n, -1, 1)
				xt, dyt := upload(t, b, X, n), upload(t, b, DY, n)
				yt, dxt := xt, dyt
				if !alias {
					yt, _ = b.Alloc(backend.Float32, n)
					dxt, _ = b.Alloc(backend.Float32, n)
				}
				// The gradient first: with aliasing the forward overwrites x.
				b.UnaryGrad(op, dxt, xt, dyt)
				gotDX := download(t, b, dxt)
				b.Unary(op, yt, xt)
				gotY := download(t, b, yt)
				wy, wdx := make([]float64, n), make([]float64, n)
				for i, x := range X {
					wy[i], wdx[i] = refops.Unary(op, float64(x)), refops.UnaryDeriv(op, float64(x))*float64(DY[i])
				}
				checkClose(t, "y", gotY, wy, 1e-10)
				checkClose(t, "dx", gotDX, wdx, 1e-10)
			})
		}
	}
}

func TestReductions(t *testing.T) {
	b, _ := openDouble(t, Options{})
	r := rand.New(rand.NewSource(6))
	for _, shape := range [][]int{{4, 7}, {2, 3, 5}, {1, 1}, {13, 1}, {1, 127}} {
		rows, cols := backend.Shape(shape).Rows()
		X := randn(r, rows*cols, -2, 2)
		xt := upload(t, b, X, shape...)
		for _, op := range backend.ReduceOps {
			dt, _ := b.Alloc(backend.Float32, rows)
			b.ReduceRows(op, dt, xt)
			want := make([]float64, rows)
			for i := 0; i < rows; i++ {
				row := X[i*cols : (i+1)*cols]
				want[i] = math.Inf(-1)
				if op != backend.Max {
					want[i] = 0
				}
				for _, v := range row {
					switch op {
					case backend.Sum:
						want[i] += float64(v)
					case backend.SumSquares:
						want[i] += float64(v) * float64(v)
					case backend.Max:
						want[i] = math.Max(want[i], float64(v))
					}
				}
			}
			checkClose(t, fmt.Sprintf("%s %v", op, shape), download(t, b, dt), want, tight)
		}
		st, _ := b.Alloc(backend.Float32, cols)
		b.SumColumns(st, xt)
		want := make([]float64, cols)
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				want[j] += float64(X[i*cols+j])
			}
		}
		checkClose(t, fmt.Sprintf("sumcolumns %v", shape), download(t, b, st), want, tight)
	}
}

// softmaxRef computes scale-softmax rows of x [batch, q, k] with the mask
// of p (j ≤ i + off, and within the sliding window), and its backward for
// dy.
func softmaxRef(x, dy []float32, q, k int, p backend.SoftmaxParams) (y, dx []float64) {
	y = refops.SoftmaxMasked(f64(x), q, k, p)
	return y, refops.SoftmaxGrad(y, f64(dy), q, k, p)
}

func TestSoftmax(t *testing.T) {
	b, _ := openDouble(t, Options{})
	r := rand.New(rand.NewSource(7))
	cases := []struct {
		shape []int
		p     backend.SoftmaxParams
		alias bool
	}{
		{[]int{3, 7}, backend.SoftmaxParams{}, false},
		{[]int{3, 7}, backend.SoftmaxParams{}, true},
		{[]int{5, 13}, backend.SoftmaxParams{Scale: 0.25}, true},
		{[]int{4, 4}, backend.SoftmaxParams{Causal: true}, false},
		{[]int{3, 6}, backend.SoftmaxParams{Causal: true, QueryOffset: 3, Scale: 0.5}, true},
		{[]int{2, 3, 5, 5}, backend.SoftmaxParams{Causal: true, Scale: 0.125}, false},
		{[]int{1, 1}, backend.SoftmaxParams{Causal: true}, false},
		// Sliding windows; the same shapes and offset with and without
		// one, so that a mask table cached for one is not reused for the
		// other.
		{[]int{2, 6, 6}, backend.SoftmaxParams{Causal: true, Window: 2}, false},
		{[]int{2, 6, 6}, backend.SoftmaxParams{Causal: true}, false},
		{[]int{2, 6, 6}, backend.SoftmaxParams{Causal: true, Window: 3, Scale: 0.5}, true},
		{[]int{2, 6, 6}, backend.SoftmaxParams{Causal: true, Window: 6}, false},
		{[]int{2, 6, 6}, backend.SoftmaxParams{Causal: true, Window: 1}, false},
		{[]int{3, 2, 9}, backend.SoftmaxParams{Causal: true, QueryOffset: 7, Window: 4}, true},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v_%+v_alias%v", tc.shape, tc.p, tc.alias), func(t *testing.T) {
			n := backend.Shape(tc.shape).NumElements()
			k := tc.shape[len(tc.shape)-1]
			q := n / k
			if len(tc.shape) >= 3 {
				q = tc.shape[len(tc.shape)-2]
			}
			X, DY := randn(r, n, -3, 3), randn(r, n, -1, 1)
			wy, wdx := softmaxRef(X, DY, q, k, tc.p)
			xt := upload(t, b, X, tc.shape...)
			yt := xt
			if !tc.alias {
				yt, _ = b.Alloc(backend.Float32, tc.shape...)
			}
			b.Softmax(yt, xt, tc.p)
			y := download(t, b, yt)
			checkClose(t, "y", y, wy, tight)
			for i, w := range wy {
				if w == 0 && y[i] != 0 {
					t.Fatalf("masked y[%d] = %g, want exactly 0", i, y[i])
				}
			}
			dyt := upload(t, b, DY, tc.shape...)
			dxt := dyt
			if !tc.alias {
				dxt, _ = b.Alloc(backend.Float32, tc.shape...)
			}
			b.SoftmaxGrad(dxt, yt, dyt, tc.p)
			dx := download(t, b, dxt)
			checkClose(t, "dx", dx, wdx, 1e-10)
		})
	}
}

func TestNorms(t *testing.T) {
	b, _ := openDouble(t, Options{})
	r := rand.New(rand.NewSource(8))
	const eps = 1e-5
	for _, shape := range [][]int{{3, 8}, {2, 2, 5}, {1, 3}, {7, 13}} {
		rows, cols := backend.Shape(shape).Rows()
		n := rows * cols
		X, W, Bv, DY := randn(r, n, -2, 2), randn(r, cols, 0.5, 1.5), randn(r, cols, -1, 1), randn(r, n, -1, 1)
		DW0, DB0 := randn(r, cols, -1, 1), randn(r, cols, -1, 1)
		xt, wt, bt, dyt := upload(t, b, X, shape...), upload(t, b, W, cols), upload(t, b, Bv, cols), upload(t, b, DY, shape...)

		// RMSNorm reference.
		ry, rdx, rdw := make([]float64, n), make([]float64, n), f64(DW0)
		ly, ldx, ldg, ldb := make([]float64, n), make([]float64, n), f64(DW0), f64(DB0)
		for i := 0; i < rows; i++ {
			x, dy := f64(X[i*cols:(i+1)*cols]), f64(DY[i*cols:(i+1)*cols])
			var ss, mean, v float64
			for _, e := range x {
				ss += e * e
				mean += e
			}
			rs := 1 / math.Sqrt(ss/float64(cols)+eps)
			mean /= float64(cols)
			for _, e := range x {
				v += (e - mean) * (e - mean)
			}
			ls := 1 / math.Sqrt(v/float64(cols)+eps)
			var dot, s1, s2 float64
			for j := range x {
				dot += dy[j] * float64(W[j]) * x[j]
				xh := (x[j] - mean) * ls
				s1 += dy[j] * float64(W[j])
				s2 += dy[j] * float64(W[j]) * xh
			}
			for j := range x {
				ry[i*cols+j] = x[j] * rs * float64(W[j])
				rdx[i*cols+j] = rs*float64(W[j])*dy[j] - x[j]*rs*rs*rs*dot/float64(cols)
				rdw[j] += dy[j] * x[j] * rs
				xh := (x[j] - mean) * ls
				ly[i*cols+j] = xh*float64(W[j]) + float64(Bv[j])
				ldx[i*cols+j] = ls * (dy[j]*float64(W[j]) - s1/float64(cols) - xh*s2/float64(cols))
				ldg[j] += dy[j] * xh
				ldb[j] += dy[j]
			}
		}
		yt, _ := b.Alloc(backend.Float32, shape...)
		dxt, _ := b.Alloc(backend.Float32, shape...)
		dwt := upload(t, b, DW0, cols)
		b.RMSNorm(yt, xt, wt, eps)
		b.RMSNormGrad(dxt, dwt, xt, wt, dyt, eps)
		checkClose(t, fmt.Sprintf("rms y %v", shape), download(t, b, yt), ry, 1e-10)
		checkClose(t, fmt.Sprintf("rms dx %v", shape), download(t, b, dxt), rdx, 1e-10)
		checkClose(t, fmt.Sprintf("rms dw %v", shape), download(t, b, dwt), rdw, 1e-10)

		dgt, dbt := upload(t, b, DW0, cols), upload(t, b, DB0, cols)
		b.LayerNorm(yt, xt, wt, bt, eps)
		b.LayerNormGrad(dxt, dgt, dbt, xt, wt, dyt, eps)
		checkClose(t, fmt.Sprintf("ln y %v", shape), download(t, b, yt), ly, 1e-10)
		checkClose(t, fmt.Sprintf("ln dx %v", shape), download(t, b, dxt), ldx, 1e-9)
		checkClose(t, fmt.Sprintf("ln dgamma %v", shape), download(t, b, dgt), ldg, 1e-10)
		checkClose(t, fmt.Sprintf("ln dbeta %v", shape), download(t, b, dbt), ldb, 1e-10)

		// In place, without beta and without parameter gradients.
		xc := upload(t, b, X, shape...)
		b.LayerNorm(xc, xc, wt, backend.Tensor{}, eps)
		for i := range ly {
			ly[i] -= float64(Bv[i%cols])
		}
		checkClose(t, fmt.Sprintf("ln in place %v", shape), download(t, b, xc), ly, 1e-10)
		b.LayerNormGrad(dxt, backend.Tensor{}, backend.Tensor{}, xt, wt, dyt, eps)
		checkClose(t, fmt.Sprintf("ln dx only %v", shape), download(t, b, dxt), ldx, 1e-9)
		xr := upload(t, b, X, shape...)
		b.RMSNorm(xr, xr, wt, eps)
		checkClose(t, fmt.Sprintf("rms in place %v", shape), download(t, b, xr), ry, 1e-10)
	}
}

func TestRoPE(t *testing.T) {
	b, _ := openDouble(t, Options{})
	r := rand.New(rand.NewSource(9))
	for _, layout := range []backend.RoPELayout{backend.Interleaved, backend.HalfSplit} {
		for _, tc := range []struct {
			shape  []int
			offset int
			alias  bool
		}{{[]int{1, 3, 2, 4}, 0, false}, {[]int{2, 5, 3, 8}, 7, true}, {[]int{1, 1, 1, 2}, 0, false}} {
			for _, inv := range []bool{false, true} {
				p := backend.RoPEParams{Layout: layout, Theta: 10000, Offset: tc.offset, Inverse: inv}
				t.Run(fmt.Sprintf("%s_%v_off%d_inv%v", layout, tc.shape, tc.offset, inv), func(t *testing.T) {
					n := backend.Shape(tc.shape).NumElements()
					X := randn(r, n, -1, 1)
					xt := upload(t, b, X, tc.shape...)
					yt := xt
					if !tc.alias {
						yt, _ = b.Alloc(backend.Float32, tc.shape...)
					}
					b.RoPE(yt, xt, p)
					want := refops.RoPE(f64(X), tc.shape[0], tc.shape[1], tc.shape[2], tc.shape[3], p)
					checkClose(t, "y", download(t, b, yt), want, tight)
					// The inverse undoes the rotation.
					q := p
					q.Inverse = !inv
					b.RoPE(yt, yt, q)
					checkClose(t, "round trip", download(t, b, yt), f64(X), 1e-12)
				})
			}
		}
	}
}

// TestRoPEFreqs checks explicit frequencies against a float64 reference,
// including that the cached cos/sin tables are told apart by them: calls
// of one shape and offset with other frequencies, and a call with
// frequencies equal to θ^(−2i/d) after one by Theta, each get their own
// rotation.
func TestRoPEFreqs(t *testing.T) {
	b, _ := openDouble(t, Options{})
	r := rand.New(rand.NewSource(12))
	shape := []int{2, 5, 3, 8}
	n := backend.Shape(shape).NumElements()
	X := randn(r, n, -1, 1)
	xt := upload(t, b, X, shape...)
	yt, _ := b.Alloc(backend.Float32, shape...)
	def := make([]float64, 4)
	for i := range def {
		def[i] = math.Pow(10000, -float64(2*i)/8)
	}
	for _, layout := range []backend.RoPELayout{backend.Interleaved, backend.HalfSplit} {
		for k, p := range []backend.RoPEParams{
			{Layout: layout, Offset: 40000, Freqs: []float64{1, 0.3, -0.2, 0.01}},
			{Layout: layout, Offset: 40000, Freqs: []float64{2, 2, 0, 2}},
			{Layout: layout, Offset: 40000, Freqs: []float64{1, 0.3, -0.2, 0.01}, Inverse: true},
			{Layout: layout, Offset: 3, Theta: 10000},
			{Layout: layout, Offset: 3, Freqs: def, Theta: 5},
		} {
			b.RoPE(yt, xt, p)
			want := refops.RoPE(f64(X), shape[0], shape[1], shape[2], shape[3], p)
			if p.Freqs != nil {
				want = ropeFreqsRef(f64(X), shape, p)
			}
			checkClose(t, fmt.Sprintf("%v call %d", layout, k), download(t, b, yt), want, tight)
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

// ropeFreqsRef rotates pair i of every head of x at sequence index t by
// ±(p.Offset+t)·p.Freqs[i], in float64.
func ropeFreqsRef(x []float64, shape []int, p backend.RoPEParams) []float64 {
	seq, heads, d := shape[1], shape[2], shape[3]
	out := make([]float64, len(x))
	for h := 0; h < len(x)/d; h++ {
		pos := float64(p.Offset + (h/heads)%seq)
		for i := 0; i < d/2; i++ {
			a, c := h*d+2*i, h*d+2*i+1
			if p.Layout == backend.HalfSplit {
				a, c = h*d+i, h*d+i+d/2
			}
			phi := pos * p.Freqs[i]
			if p.Inverse {
				phi = -phi
			}
			sn, cs := math.Sincos(phi)
			out[a] = x[a]*cs - x[c]*sn
			out[c] = x[a]*sn + x[c]*cs
		}
	}
	return out
}

func TestGatherScatterAdd(t *testing.T) {
	b, _ := openDouble(t, Options{})
	r := rand.New(rand.NewSource(10))
	vocab, dim := 7, 5
	T := randn(r, vocab*dim, -1, 1)
	ids := []int32{3, 0, 6, 3, 3, 1}
	tt := upload(t, b, T, vocab, dim)
	dt, _ := b.Alloc(backend.Float32, len(ids), dim)
	b.Gather(dt, tt, ids)
	want := make([]float64, len(ids)*dim)
	for i, id := range ids {
		for j := 0; j < dim; j++ {
			want[i*dim+j] = float64(T[int(id)*dim+j])
		}
	}
	checkClose(t, "gather", download(t, b, dt), want, 0)
	DY := randn(r, len(ids)*dim, -1, 1)
	dyt := upload(t, b, DY, len(ids), dim)
	b.ScatterAdd(tt, dyt, ids)
	ws := f64(T)
	for i, id := range ids {
		for j := 0; j < dim; j++ {
			ws[int(id)*dim+j] += float64(DY[i*dim+j])
		}
	}
	checkClose(t, "scatter_add", download(t, b, tt), ws, tight)
}

func TestCrossEntropy(t *testing.T) {
	b, _ := openDouble(t, Options{})
	r := rand.New(rand.NewSource(11))
	rows, vocab := 5, 9
	X := randn(r, rows*vocab, -3, 3)
	targets := []int32{2, -100, 8, 0, 2}
	xt := upload(t, b, X, rows, vocab)
	for _, sm := range []float32{0, 0.1} {
		p := backend.CrossEntropyParams{IgnoreIndex: -100, Smoothing: sm, Scale: 0.25}
		lt, _ := b.Alloc(backend.Float32, rows)
		gt, _ := b.Alloc(backend.Float32, rows, vocab)
		b.CrossEntropy(lt, xt, targets, p)
		b.CrossEntropyGrad(gt, xt, targets, p)
		wl, wg := make([]float64, rows), make([]float64, rows*vocab)
		for i, tg := range targets {
			if tg == p.IgnoreIndex {
				continue
			}
			wl[i] = crossEntropyRef(f64(X[i*vocab:(i+1)*vocab]), int(tg), float64(sm), float64(p.Scale), wg[i*vocab:(i+1)*vocab])
		}
		checkClose(t, fmt.Sprintf("loss smoothing %g", sm), download(t, b, lt), wl, 1e-10)
		checkClose(t, fmt.Sprintf("grad smoothing %g", sm), download(t, b, gt), wg, 1e-10)
	}
}

// TestCrossEntropyIgnoredNonFinite: package backend says ignored rows get
// loss 0 and gradient 0, whatever their logits hold. Rows of +Inf, −Inf
// and NaN logits that are ignored must give exactly 0 (multiplying them
// by 0, as the backend once did, gives NaN), and the counted rows beside
// them must keep their float64-reference values.
func TestCrossEntropyIgnoredNonFinite(t *testing.T) {
	b, _ := openDouble(t, Options{})
	const vocab = 5
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	rows := [][]float32{
		{0.5, -1, 2, 0, 1},             // counted
		{inf, 0, 1, 2, 3},              // ignored
		{-inf, -inf, -inf, 0, 1},       // ignored
		{-inf, -inf, -inf, -inf, -inf}, // ignored: softmax of all −Inf is NaN
		{nan, 1, 2, 3, 4},              // ignored
		{1, 2, 3, -2, 0.25},            // counted
	}
	targets := []int32{2, -100, -100, -100, -100, 4}
	var X []float32
	for _, r := range rows {
		X = append(X, r...)
	}
	xt := upload(t, b, X, len(rows), vocab)
	for _, sm := range []float32{0, 0.1} {
		p := backend.CrossEntropyParams{IgnoreIndex: -100, Smoothing: sm, Scale: 0.5}
		lt, _ := b.Alloc(backend.Float32, len(rows))
		gt, _ := b.Alloc(backend.Float32, len(rows), vocab)
		b.CrossEntropy(lt, xt, targets, p)
		b.CrossEntropyGrad(gt, xt, targets, p)
		loss, grad := download(t, b, lt), download(t, b, gt)
		for i, tg := range targets {
			if tg == p.IgnoreIndex {
				if math.Float32bits(loss[i])&^(1<<31) != 0 {
					t.Errorf("smoothing %g: ignored row %d (%v) has loss %g, want 0", sm, i, rows[i], loss[i])
				}
				for j := 0; j < vocab; j++ {
					if g := grad[i*vocab+j]; g != 0 {
						t.Errorf("smoothing %g: ignored row %d (%v) has gradient %g at %d, want 0", sm, i, rows[i], g, j)
					}
				}
				continue
			}
			wg := make([]float64, vocab)
			wl := crossEntropyRef(f64(rows[i]), int(tg), float64(sm), float64(p.Scale), wg)
			checkClose(t, fmt.Sprintf("smoothing %g: loss of row %d", sm, i), loss[i:i+1], []float64{wl}, 1e-12)
			checkClose(t, fmt.Sprintf("smoothing %g: gradient of row %d", sm, i), grad[i*vocab:(i+1)*vocab], wg, 1e-12)
		}
		b.Free(lt)
		b.Free(gt)
	}
}

func TestAdamW(t *testing.T) {
	b, _ := openDouble(t, Options{})
	r := rand.New(rand.NewSource(12))
	n := 23
	P, G1, G2 := randn(r, n, -1, 1), randn(r, n, -1, 1), randn(r, n, -1, 1)
	pt, mt, vt := upload(t, b, P, n), upload(t, b, make([]float32, n), n), upload(t, b, make([]float32, n), n)
	wp, wm, wv := f64(P), make([]float64, n), make([]float64, n)
	for step, g := range [][]float32{G1, G2} {
		p := backend.AdamWParams{LR: 0.01, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1, Step: step + 1}
		gt := upload(t, b, g, n)
		b.AdamW(pt, gt, mt, vt, p)
		// The parameters as the backend sees them: float32 values.
		lr, b1, b2, eps, wd := float64(p.LR), float64(p.Beta1), float64(p.Beta2), float64(p.Eps), float64(p.WeightDecay)
		bc1 := 1 - math.Pow(b1, float64(p.Step))
		bc2 := 1 - math.Pow(b2, float64(p.Step))
		for i := range wp {
			gi := float64(g[i])
			wp[i] *= 1 - lr*wd
			wm[i] = b1*wm[i] + (1-b1)*gi
			wv[i] = b2*wv[i] + (1-b2)*gi*gi
			wp[i] -= lr / bc1 * wm[i] / (math.Sqrt(wv[i])/math.Sqrt(bc2) + eps)
		}
	}
	checkClose(t, "param", download(t, b, pt), wp, 1e-10)
	checkClose(t, "m", download(t, b, mt), wm, 1e-10)
	checkClose(t, "v", download(t, b, vt), wv, 1e-10)
}

func TestCopyStrided(t *testing.T) {
	b, _ := openDouble(t, Options{})
	r := rand.New(rand.NewSource(13))
	X := randn(r, 24, -1, 1)
	xt := upload(t, b, X, 2, 3, 4)
	cases := []struct {
		name     string
		src      func() (backend.Tensor, error)
		shape    []int
		ref      func(idx []int) float64
		acc      bool
		dstFlipd bool
	}{
		{name: "permute", shape: []int{4, 2, 3},
			src: func() (backend.Tensor, error) { return xt.Permute(2, 0, 1) },
			ref: func(i []int) float64 { return float64(X[i[1]*12+i[2]*4+i[0]]) }},
		{name: "broadcast", shape: []int{3, 4},
			src: func() (backend.Tensor, error) { return xt.Strided(4, backend.Shape{3, 4}, []int{0, 1}) },
			ref: func(i []int) float64 { return float64(X[4+i[1]]) }},
		{name: "reverse", shape: []int{2, 3, 4},
			src: func() (backend.Tensor, error) { return xt.Strided(23, backend.Shape{2, 3, 4}, []int{-12, -4, -1}) },
			ref: func(i []int) float64 { return float64(X[23-i[0]*12-i[1]*4-i[2]]) }},
		{name: "column accumulate", shape: []int{2, 3}, acc: true,
			src: func() (backend.Tensor, error) { return xt.Strided(1, backend.Shape{2, 3}, []int{12, 4}) },
			ref: func(i []int) float64 { return float64(X[1+i[0]*12+i[1]*4]) }},
		{name: "reverse into reversed dst", shape: []int{6}, dstFlipd: true,
			src: func() (backend.Tensor, error) { return xt.Strided(10, backend.Shape{6}, []int{-2}) },
			ref: func(i []int) float64 { return float64(X[10-2*i[0]]) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, err := tc.src()
			if err != nil {
				t.Fatal(err)
			}
			n := backend.Shape(tc.shape).NumElements()
			D0 := randn(r, n, -1, 1)
			dst := upload(t, b, D0, tc.shape...)
			view := dst
			if tc.dstFlipd {
				view, _ = dst.Strided(n-1, backend.Shape{n}, []int{-1})
			}
			b.Copy(view, src, tc.acc)
			got := download(t, b, dst)
			want := make([]float64, n)
			idx := make([]int, len(tc.shape))
			for lin := 0; lin < n; lin++ {
				rem := lin
				for d := len(tc.shape) - 1; d >= 0; d-- {
					idx[d] = rem % tc.shape[d]
					rem /= tc.shape[d]
				}
				pos := lin
				if tc.dstFlipd {
					pos = n - 1 - lin
				}
				want[pos] = tc.ref(idx)
				if tc.acc {
					want[pos] += float64(D0[pos])
				}
			}
			checkClose(t, "dst", got, want, tight)
		})
	}
}
