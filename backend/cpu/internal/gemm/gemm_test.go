package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sora-go/sora/backend/internal/bf16"
)

// kernelsUnderTest is every micro-kernel this machine can run, so the
// portable path is tested here too.
func kernelsUnderTest() []*kernel { return availableKernels() }

// operand is a row-major matrix stored with row stride ld ≥ cols; the
// padding holds NaN so that reading it poisons the result.
type operand struct {
	rows, cols, ld int
	data           []float32
}

func newOperand(rng *rand.Rand, rows, cols, pad int) operand {
	o := operand{rows: rows, cols: cols, ld: cols + pad}
	o.data = make([]float32, max(rows*o.ld, 1))
	for i := range o.data {
		o.data[i] = float32(math.NaN())
	}
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			o.data[i*o.ld+j] = float32(rng.NormFloat64())
		}
	}
	return o
}

// reference computes alpha·op(A)·op(B) + beta·C in float64, and for each
// element the sum of absolute products, which bounds float32 rounding.
func reference(transA, transB bool, m, n, k int, alpha float32, a, b operand, beta float32, c operand) (want, mag []float64) {
	want = make([]float64, m*n)
	mag = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, t float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a.data[p*a.ld+i]
				} else {
					av = a.data[i*a.ld+p]
				}
				if transB {
					bv = b.data[j*b.ld+p]
				} else {
					bv = b.data[p*b.ld+j]
				}
				s += float64(av) * float64(bv)
				t += math.Abs(float64(av) * float64(bv))
			}
			w := float64(alpha) * s
			g := math.Abs(float64(alpha)) * t
			if beta != 0 {
				cv := float64(c.data[i*c.ld+j])
				w += float64(beta) * cv
				g += math.Abs(float64(beta) * cv)
			}
			want[i*n+j], mag[i*n+j] = w, g
		}
	}
	return want, mag
}

type shape struct{ m, n, k int }

var testShapes = []shape{
	{1, 1, 1}, {1, 1, 7}, {1, 9, 1}, {9, 1, 1}, {2, 3, 4}, {4, 4, 4}, {4, 16, 8},
	{6, 16, 5}, {7, 13, 17}, {5, 17, 3}, {17, 31, 29}, {13, 1, 37}, {1, 37, 13},
	{31, 7, 64}, {64, 64, 64}, {67, 131, 259}, {97, 33, 300}, {130, 70, 11},
	{20, 300, 100}, {7, 500, 64}, {150, 20, 90},
	{200, 8, 96}, {96, 5, 200}, {130, 3, 1}, // narrow C, computed transposed
	{50, 9, 67}, {33, 16, 130}, // narrow C as dot products (Engine.skinny), k tails
}

// checkSgemm runs one Sgemm on e and compares every element of C, and the
// untouched padding of C, against the float64 reference.
func checkSgemm(t *testing.T, e *Engine, rng *rand.Rand, transA, transB bool, s shape, alpha, beta float32, pad int) {
	t.Helper()
	checkSgemmDType(t, e, rng, transA, transB, s, alpha, beta, pad, false)
}

// checkSgemmDType is checkSgemm, through SgemmBF16 with B rounded to
// bfloat16 when bf16 is set (the reference then uses the rounded values;
// B's NaN padding stays NaN).
func checkSgemmDType(t *testing.T, e *Engine, rng *rand.Rand, transA, transB bool, s shape, alpha, beta float32, pad int, bf16B bool) {
	t.Helper()
	ar, ac := s.m, s.k
	if transA {
		ar, ac = s.k, s.m
	}
	br, bc := s.k, s.n
	if transB {
		br, bc = s.n, s.k
	}
	a := newOperand(rng, ar, ac, pad)
	b := newOperand(rng, br, bc, pad+1)
	var b16 []uint16
	if bf16B {
		b16 = make([]uint16, len(b.data))
		for i, v := range b.data {
			b16[i] = bf16.Round(v)
			b.data[i] = bf16.Widen(b16[i])
		}
	}
	c := newOperand(rng, s.m, s.n, pad+2)
	const sentinel = 12345
	for i := 0; i < s.m; i++ {
		for j := s.n; j < c.ld; j++ {
			c.data[i*c.ld+j] = sentinel
		}
	}
	if beta == 0 {
		// Old contents must be ignored entirely.
		for i := 0; i < s.m; i++ {
			for j := 0; j < s.n; j++ {
				c.data[i*c.ld+j] = float32(math.NaN())
			}
		}
	}
	want, mag := reference(transA, transB, s.m, s.n, s.k, alpha, a, b, beta, c)
	if bf16B {
		e.SgemmBF16(transA, transB, s.m, s.n, s.k, alpha, a.data, a.ld, b16, b.ld, beta, c.data, c.ld)
	} else {
		e.Sgemm(transA, transB, s.m, s.n, s.k, alpha, a.data, a.ld, b.data, b.ld, beta, c.data, c.ld)
	}
	const eps32 = 1.0 / (1 << 23)
	bad := 0
	for i := 0; i < s.m; i++ {
		for j := 0; j < c.ld; j++ {
			got := float64(c.data[i*c.ld+j])
			if j >= s.n {
				if got != sentinel {
					t.Fatalf("C[%d,%d] in the row padding was overwritten with %v", i, j, got)
				}
				continue
			}
			w, tol := want[i*s.n+j], 2*float64(s.k+2)*eps32*mag[i*s.n+j]+1e-30
			if !(math.Abs(got-w) <= tol) {
				if bad++; bad <= 5 {
					t.Errorf("C[%d,%d] = %v, want %v (±%.3g)", i, j, got, w, tol)
				}
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d elements wrong", bad, s.m*s.n)
	}
}

func TestSgemmMatchesFloat64Reference(t *testing.T) {
	scalars := []struct{ alpha, beta float32 }{{1, 0}, {-0.5, 0}, {1, 1}, {0.75, -1.5}}
	for _, kr := range kernelsUnderTest() {
		for _, threads := range []int{1, 2, 3} {
			e := NewEngine(Config{Threads: threads})
			e.k = kr
			rng := rand.New(rand.NewPCG(1, uint64(threads)))
			for _, s := range testShapes {
				for _, tr := range []struct{ a, b bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
					for si, sc := range scalars {
						pad := (si + s.m) % 3 // strides both equal to and beyond the width
						name := fmt.Sprintf("%s/t%d/%dx%dx%d/%s/a%v_b%v", kr.name, threads, s.m, s.n, s.k, transName(tr.a, tr.b), sc.alpha, sc.beta)
						t.Run(name, func(t *testing.T) {
							checkSgemm(t, e, rng, tr.a, tr.b, s, sc.alpha, sc.beta, pad)
						})
					}
				}
			}
		}
	}
}

// TestSgemmSmallBlocks shrinks the cache blocks so that every blocking
// loop (several k, m and n blocks, uneven last blocks) runs on small
// matrices.
func TestSgemmSmallBlocks(t *testing.T) {
	for _, kr := range kernelsUnderTest() {
		small := *kr
		small.kc, small.mc, small.nc = 5, 2*kr.mr, 2*kr.nr
		for _, threads := range []int{1, 2, 3} {
			e := NewEngine(Config{Threads: threads})
			e.k = &small
			// Thread even tiny products, and make the shared B hold only
			// two k blocks so rowsParallel needs several passes.
			e.minFlops, e.bBudget = 1, 2*small.kc*small.nc
			rng := rand.New(rand.NewPCG(2, uint64(threads)))
			for _, s := range []shape{{23, 47, 31}, {50, 9, 17}, {3 * kr.mr, 5 * kr.nr, 40}, {12 * kr.mr, 3 * kr.nr, 23}, {100, 7, 33}} {
				for _, tr := range []struct{ a, b bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
					for _, beta := range []float32{0, 0.5} {
						t.Run(fmt.Sprintf("%s/t%d/%dx%dx%d/%s/b%v", kr.name, threads, s.m, s.n, s.k, transName(tr.a, tr.b), beta), func(t *testing.T) {
							checkSgemm(t, e, rng, tr.a, tr.b, s, 1.25, beta, 1)
						})
					}
				}
			}
		}
	}
}

// TestSgemmDegenerate covers k = 0 and alpha = 0, where C = beta·C, and
// empty outputs, which must not touch anything.
func TestSgemmDegenerate(t *testing.T) {
	e := NewEngine(Config{Threads: 2})
	nan := float32(math.NaN())
	tests := []struct {
		name        string
		m, n, k     int
		alpha, beta float32
		c, want     []float32
	}{
		{"k=0 beta=0 clears NaN", 2, 2, 0, 1, 0, []float32{nan, 1, 2, nan}, []float32{0, 0, 0, 0}},
		{"k=0 beta=2 scales", 2, 2, 0, 1, 2, []float32{1, 2, 3, 4}, []float32{2, 4, 6, 8}},
		{"alpha=0 beta=1 keeps", 1, 3, 4, 0, 1, []float32{1, 2, 3}, []float32{1, 2, 3}},
		{"alpha=0 beta=0 clears", 1, 3, 4, 0, 0, []float32{nan, nan, nan}, []float32{0, 0, 0}},
		{"m=0 touches nothing", 0, 3, 4, 1, 0, []float32{7}, []float32{7}},
		{"n=0 touches nothing", 3, 0, 4, 1, 0, []float32{7}, []float32{7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := make([]float32, max(tc.m*tc.k, 1))
			b := make([]float32, max(tc.k*tc.n, 1))
			for i := range a {
				a[i] = nan // alpha = 0 must not multiply through NaN·0 either
			}
			e.Sgemm(false, false, tc.m, tc.n, tc.k, tc.alpha, a, max(tc.k, 1), b, max(tc.n, 1), tc.beta, tc.c, max(tc.n, 1))
			for i := range tc.want {
				if tc.c[i] != tc.want[i] {
					t.Fatalf("C = %v, want %v", tc.c, tc.want)
				}
			}
		})
	}
}

// TestSgemmWarmAllocatesNothing checks that buffers and workers are
// reused, on the row-parallel and the column-parallel schemes.
func TestSgemmWarmAllocatesNothing(t *testing.T) {
	for _, kr := range kernelsUnderTest() {
		for _, threads := range []int{1, 2} {
			e := NewEngine(Config{Threads: threads})
			e.k = kr
			for _, s := range []shape{{96, 96, 96}, {8, 512, 128}, {1, 100, 70}, {3, 5, 64}} {
				a, b, c := make([]float32, s.m*s.k), make([]float32, s.k*s.n), make([]float32, s.m*s.n)
				for _, tr := range []struct{ a, b bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
					lda, ldb := s.k, s.n
					if tr.a {
						lda = s.m
					}
					if tr.b {
						ldb = s.k
					}
					e.Sgemm(tr.a, tr.b, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n) // warm up
					allocs := testing.AllocsPerRun(20, func() {
						e.Sgemm(tr.a, tr.b, s.m, s.n, s.k, 1, a, lda, b, ldb, 0.5, c, s.n)
					})
					if allocs != 0 {
						t.Errorf("%s, %d threads, %dx%dx%d %s: %v allocations per warm Sgemm, want 0",
							kr.name, threads, s.m, s.n, s.k, transName(tr.a, tr.b), allocs)
					}
				}
			}
		}
	}
}

func transName(a, b bool) string {
	s := [2]byte{'N', 'N'}
	if a {
		s[0] = 'T'
	}
	if b {
		s[1] = 'T'
	}
	return string(s[:])
}

func TestKernelSelection(t *testing.T) {
	names := Kernels()
	if len(names) == 0 || names[len(names)-1] != "go" {
		t.Fatalf("Kernels() = %v, want a list ending in the pure-Go kernel", names)
	}
	for _, name := range names {
		if got := NewEngine(Config{Kernel: name}).k.id; got != name {
			t.Errorf("Config{Kernel: %q} runs %q", name, got)
		}
		// The backend accepts $SORA_CPU_GEMM_KERNEL only from KernelNames.
		if !slices.Contains(KernelNames, name) {
			t.Errorf("kernel %q runs here but is missing from KernelNames %v", name, KernelNames)
		}
	}
	if got := NewEngine(Config{Kernel: names[0], Portable: true}).Kernel(); got != goKernel.name {
		t.Errorf("Portable with Kernel %q runs %q, want the pure-Go kernel", names[0], got)
	}
	if got := NewEngine(Config{Kernel: "no such kernel"}).k.id; got != names[0] {
		t.Errorf("an unknown kernel name runs %q, want the fastest, %q", got, names[0])
	}
	t.Setenv(EnvKernel, "go")
	if got := NewEngine(Config{}).k.id; got != "go" {
		t.Errorf("with $%s=go the engine runs %q", EnvKernel, got)
	}
	if got := NewEngine(Config{Kernel: names[0]}).k.id; got != names[0] {
		t.Errorf("Config.Kernel %q did not override $%s=go: runs %q", names[0], EnvKernel, got)
	}
}

// TestKernelStridedB calls each micro-kernel directly with B rows further
// apart than the tile is wide, as when B is read in place, for beta 0 and
// not.
func TestKernelStridedB(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, kr := range kernelsUnderTest() {
		for _, kc := range []int{1, 3, 4, 5, 17} {
			for _, beta := range []float32{0, -0.5} {
				ldb, ldc := kr.nr+5, kr.nr+3
				// A panel with each value stored dup times, as packA
				// writes it for this kernel.
				dup := kr.aDup()
				a := make([]float32, kr.mr*kc*dup)
				b := make([]float32, (kc-1)*ldb+kr.nr)
				c := make([]float32, (kr.mr-1)*ldc+kr.nr)
				for i := 0; i < len(a); i += dup {
					v := float32(rng.NormFloat64())
					for q := range dup {
						a[i+q] = v
					}
				}
				for i := range b {
					b[i] = float32(rng.NormFloat64())
				}
				for i := range c {
					c[i] = float32(rng.NormFloat64())
				}
				old := append([]float32(nil), c...)
				kr.full(kc, a, b, ldb, c, ldc, beta)
				for i := 0; i < kr.mr; i++ {
					for j := 0; j < kr.nr; j++ {
						var want, mag float64
						for p := 0; p < kc; p++ {
							v := float64(a[(p*kr.mr+i)*dup]) * float64(b[p*ldb+j])
							want += v
							mag += math.Abs(v)
						}
						if beta != 0 {
							want += float64(beta) * float64(old[i*ldc+j])
							mag += math.Abs(float64(beta) * float64(old[i*ldc+j]))
						}
						if got := float64(c[i*ldc+j]); math.Abs(got-want) > 1e-6*(mag+1) {
							t.Fatalf("%s kc=%d beta=%v: C[%d,%d] = %v, want %v", kr.name, kc, beta, i, j, got, want)
						}
					}
				}
			}
		}
	}
}

// TestKernelNegativeZeroBeta calls each micro-kernel with beta = −0 on a
// C full of NaN: −0 is 0, so C must not be read (−0·NaN is NaN). A
// kernel that tests beta's bits rather than its value would read it.
func TestKernelNegativeZeroBeta(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	for _, kr := range kernelsUnderTest() {
		const kc = 9
		dup := kr.aDup()
		a := make([]float32, kr.mr*kc*dup)
		b := make([]float32, kc*kr.nr)
		c := make([]float32, kr.mr*kr.nr)
		for i := range a {
			a[i] = 1
		}
		for i := range b {
			b[i] = 0.5
		}
		for i := range c {
			c[i] = float32(math.NaN())
		}
		kr.full(kc, a, b, kr.nr, c, kr.nr, negZero)
		for i, v := range c {
			if v != kc*0.5 {
				t.Fatalf("%s: C[%d] = %v after beta = −0, want %v (C read?)", kr.name, i, v, kc*0.5)
			}
		}
	}
}

// TestSgemmRandomShapes runs many random shapes, strides, transposes,
// scalars and thread counts through every kernel, reaching combinations
// of the code paths (narrow products computed transposed, B read in
// place, row- and column-parallel schemes, edge tiles) that the tables
// above may miss.
func TestSgemmRandomShapes(t *testing.T) {
	cases := 400
	if testing.Short() {
		cases = 40
	}
	rng := rand.New(rand.NewPCG(10, 10))
	dim := func() int {
		switch rng.IntN(4) {
		case 0:
			return 1 + rng.IntN(4)
		case 1:
			return 1 + rng.IntN(40)
		default:
			return 1 + rng.IntN(150)
		}
	}
	for _, kr := range kernelsUnderTest() {
		engines := map[int]*Engine{}
		for _, th := range []int{1, 2, 3} {
			engines[th] = NewEngine(Config{Threads: th})
			engines[th].k = kr
			engines[th].minFlops = 1 + rng.IntN(20000)
		}
		for i := 0; i < cases; i++ {
			s := shape{dim(), dim(), dim()}
			ta, tb := rng.IntN(2) == 1, rng.IntN(2) == 1
			alpha := []float32{1, -0.5, 2}[rng.IntN(3)]
			beta := []float32{0, 1, 0.25}[rng.IntN(3)]
			th := 1 + rng.IntN(3)
			t.Run(fmt.Sprintf("%s/%d/t%d/%dx%dx%d/%s/a%v_b%v", kr.name, i, th, s.m, s.n, s.k, transName(ta, tb), alpha, beta), func(t *testing.T) {
				checkSgemm(t, engines[th], rng, ta, tb, s, alpha, beta, rng.IntN(3))
			})
		}
	}
}

// TestRowDotPath checks products with a few rows and a transposed B, the
// shapes Engine.rowDots takes: widths around multiples of rowDotN (a last
// partial group; fewer columns than rowDotN, where B is padded), depths
// around the SIMD widths (masked tails), alpha and beta, and several
// threads with work items ending mid-row.
func TestRowDotPath(t *testing.T) {
	for _, kr := range kernelsUnderTest() {
		for _, threads := range []int{1, 3} {
			e := NewEngine(Config{Threads: threads})
			e.k = kr
			e.minFlops = 1
			rng := rand.New(rand.NewPCG(11, uint64(threads)))
			for _, m := range []int{1, 2, defaultRowDotMax} {
				for _, n := range []int{1, 7, 8, 9, 16, 63, 64, 65, 130} {
					for _, k := range []int{1, 5, 8, 15, 16, 17, 33, 64, 172} {
						ab := []struct{ alpha, beta float32 }{{1, 0}, {-0.5, 0}, {1, 1}, {2, -0.25}}[(m+n+k)%4]
						pad := (n + k) % 3
						t.Run(fmt.Sprintf("%s/t%d/%dx%dx%d/a%v_b%v", kr.name, threads, m, n, k, ab.alpha, ab.beta), func(t *testing.T) {
							checkSgemm(t, e, rng, false, true, shape{m, n, k}, ab.alpha, ab.beta, pad)
						})
					}
				}
			}
		}
	}
}

// TestRowDotKernels calls each rowDot kernel directly: eight dot products
// of a row with rows ldbt apart whose padding is NaN, which must not reach
// a sum, against float64 sums.
func TestRowDotKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	for _, kr := range kernelsUnderTest() {
		for k := 1; k <= 70; k++ {
			ldbt := k + 1 + k%5
			a := make([]float32, k+16)
			bt := make([]float32, (rowDotN-1)*ldbt+k+16)
			for i := range a {
				a[i] = float32(math.NaN())
			}
			for i := range bt {
				bt[i] = float32(math.NaN())
			}
			for p := 0; p < k; p++ {
				a[p] = float32(rng.NormFloat64())
				for j := 0; j < rowDotN; j++ {
					bt[j*ldbt+p] = float32(rng.NormFloat64())
				}
			}
			out := make([]float32, rowDotN)
			kr.rowDot(k, a[:k], bt[:(rowDotN-1)*ldbt+k], ldbt, out)
			for j, got := range out {
				var want, mag float64
				for p := 0; p < k; p++ {
					v := float64(a[p]) * float64(bt[j*ldbt+p])
					want += v
					mag += math.Abs(v)
				}
				if math.Abs(float64(got)-want) > 2*float64(k)*mag/(1<<23)+1e-30 {
					t.Fatalf("%s k=%d: out[%d] = %v, want %v", kr.name, k, j, got, want)
				}
			}
		}
	}
}

// TestDotKernels calls each kernel's dot directly: a dotRows×4 block of
// dot products of rows of A with rows of Bᵀ, whose strides' padding is
// NaN, which must not reach a sum, against float64 sums.
func TestDotKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	for _, kr := range kernelsUnderTest() {
		if kr.dot == nil {
			continue
		}
		for _, k := range []int{kr.dotK, 2 * kr.dotK, 5 * kr.dotK, 16 * kr.dotK} {
			lda, ldbt := k+3, k+kr.dotK+1
			a := make([]float32, (kr.dotRows-1)*lda+k)
			bt := make([]float32, 3*ldbt+k)
			for i := range a {
				a[i] = float32(math.NaN())
			}
			for i := range bt {
				bt[i] = float32(math.NaN())
			}
			for p := 0; p < k; p++ {
				for r := 0; r < kr.dotRows; r++ {
					a[r*lda+p] = float32(rng.NormFloat64())
				}
				for j := 0; j < 4; j++ {
					bt[j*ldbt+p] = float32(rng.NormFloat64())
				}
			}
			out := make([]float32, kr.dotRows*4)
			kr.dot(k, a, lda, bt, ldbt, out)
			for r := 0; r < kr.dotRows; r++ {
				for j := 0; j < 4; j++ {
					var want, mag float64
					for p := 0; p < k; p++ {
						v := float64(a[r*lda+p]) * float64(bt[j*ldbt+p])
						want += v
						mag += math.Abs(v)
					}
					if got := float64(out[r*4+j]); math.Abs(got-want) > 2*float64(k)*mag/(1<<23)+1e-30 {
						t.Fatalf("%s k=%d: out[%d] = %v, want %v", kr.name, k, r*4+j, got, want)
					}
				}
			}
		}
	}
}

// TestDirectBStrideNR multiplies a few rows by a B read in place whose row
// stride is exactly the kernel's panel width nr, with fewer than nr
// columns and B's slice ending at its last element: the partial panel
// must be copied out, not read nr wide as if it were packed (which ran
// past the end of B and panicked).
func TestDirectBStrideNR(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	for _, kr := range kernelsUnderTest() {
		e := NewEngine(Config{Kernel: kr.id, Threads: 1})
		if e.Kernel() != kr.name {
			t.Fatalf("asked for kernel %s, got %s", kr.id, e.Kernel())
		}
		m, n, k := 2, kr.nr-3, 20
		a := newOperand(rng, m, k, 0)
		b := newOperand(rng, k, n, kr.nr-n)
		b.data = b.data[:(k-1)*b.ld+n]
		c := newOperand(rng, m, n, 0)
		want, mag := reference(false, false, m, n, k, 1, a, b, 0, c)
		e.Sgemm(false, false, m, n, k, 1, a.data, a.ld, b.data, b.ld, 0, c.data, c.ld)
		for i, w := range want {
			if got := float64(c.data[i]); math.Abs(got-w) > 1e-6*(mag[i]+1) {
				t.Fatalf("%s: C[%d] = %v, want %v", kr.name, i, got, w)
			}
		}
	}
}
