package blas

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// installed loads the named library for a test, or skips the test saying
// how to install it: CI machines may not have one.
func installed(t testing.TB, name string) *Library {
	t.Helper()
	l, err := Load(name)
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("no BLAS in this build: %v", err)
	}
	if err != nil {
		t.Skipf("%s is not installed here (Debian: apt-get install libopenblas0-pthread libblis4-pthread): %v", name, err)
	}
	return l
}

func TestCandidates(t *testing.T) {
	tests := []struct {
		goos, value string
		first       string   // the first file tried
		wantErr     []string // substrings of the error
	}{
		{"darwin", "accelerate", "/System/Library/Frameworks/Accelerate.framework/Accelerate", nil},
		{"linux", "openblas", "libopenblas.so.0", nil},
		{"darwin", "openblas", "libopenblas.dylib", nil},
		{"linux", "blis", "libblis.so.4", nil},
		{"linux", "mkl", "libmkl_rt.so.2", nil},
		{"linux", "/opt/lib/libopenblas.so", "/opt/lib/libopenblas.so", nil},
		{"linux", "libopenblas64_.so.0", "libopenblas64_.so.0", nil},
		{"darwin", "libblas.dylib", "libblas.dylib", nil},
		{"windows", `C:\blas\libopenblas.dll`, `C:\blas\libopenblas.dll`, nil},
		{"linux", "accelerate", "", []string{"Accelerate", "linux"}},
		{"darwin", "mkl", "", []string{"MKL", "darwin"}},
		{"linux", "openblass", "", []string{`"openblass"`, "openblas, blis or mkl"}},
		{"darwin", "atlas", "", []string{`"atlas"`, "accelerate, openblas or blis"}},
	}
	for _, tt := range tests {
		files, _, _, err := candidates(tt.goos, tt.value)
		if tt.wantErr != nil {
			if err == nil {
				t.Errorf("%s %q: files %v, want an error", tt.goos, tt.value, files)
				continue
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s %q: error %q does not mention %q", tt.goos, tt.value, err, w)
				}
			}
			continue
		}
		if err != nil || len(files) == 0 || files[0] != tt.first {
			t.Errorf("%s %q: %v, %v; want %s first", tt.goos, tt.value, files, err, tt.first)
		}
	}
}

// TestLoadErrors loads what is not a usable BLAS: the errors must say
// which file and what was wanted of it.
func TestLoadErrors(t *testing.T) {
	if !supported {
		if _, err := Load("openblas"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Load in a build without a loader: %v, want ErrUnsupported", err)
		}
		t.Skip("this build has no library loader")
	}
	libc := "libc.so.6"
	if runtime.GOOS == "darwin" {
		libc = "/usr/lib/libSystem.B.dylib"
	}
	tests := []struct {
		value string
		want  []string
	}{
		{"/no/such/dir/libopenblas.so.0", []string{"/no/such/dir/libopenblas.so.0"}},
		{libc, []string{libc, "no cblas_sgemm", "not a CBLAS library"}},
		{"nosuchblas", []string{`unknown BLAS "nosuchblas"`, "openblas"}},
	}
	for _, tt := range tests {
		l, err := Load(tt.value)
		if err == nil {
			t.Errorf("Load(%q) = %s, want an error", tt.value, l)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Load(%q): error %q does not mention %q", tt.value, err, w)
			}
		}
	}
	// A name with several files lists them all when none loads (unless
	// MKL happens to be installed).
	if _, err := Load("mkl"); err != nil && !strings.Contains(err.Error(), "libmkl_rt.so.2, libmkl_rt.so.1, libmkl_rt.so") && runtime.GOOS == "linux" {
		t.Errorf("Load(mkl): %v; want the files tried", err)
	}
}

// goSgemm is a plain Go row-major sgemm for NewFunc; mutate, when not nil,
// breaks it in one way to check that check notices.
func goSgemm(mutate func(*[4]int)) SgemmFunc {
	return func(ta, tb bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
		ld := [4]int{lda, ldb, ldc, k}
		if mutate != nil {
			mutate(&ld)
		}
		lda, ldb, ldc, k = ld[0], ld[1], ld[2], ld[3]
		for i := range m {
			for j := range n {
				var s float32
				for p := range k {
					av, bv := a[i*lda+p], b[p*ldb+j]
					if ta {
						av = a[p*lda+i]
					}
					if tb {
						bv = b[j*ldb+p]
					}
					s += av * bv
				}
				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
	}
}

// TestCheck shows that Load's check accepts a correct sgemm and refuses
// ones that get a stride or a size wrong, as a misread argument would.
func TestCheck(t *testing.T) {
	if err := check(NewFunc("go", goSgemm(nil))); err != nil {
		t.Fatalf("a correct sgemm fails the check: %v", err)
	}
	broken := map[string]func(*[4]int){
		"lda ignored":      func(ld *[4]int) { ld[0] = ld[3] },
		"ldb off by one":   func(ld *[4]int) { ld[1]-- },
		"ldc packed":       func(ld *[4]int) { ld[2]-- },
		"k one short":      func(ld *[4]int) { ld[3]-- },
		"ldc read as zero": func(ld *[4]int) { ld[2] = 0 },
	}
	for name, mutate := range broken {
		err := check(NewFunc(name, goSgemm(mutate)))
		if err == nil || !strings.Contains(err.Error(), "wrong product") {
			t.Errorf("%s: check returned %v, want a wrong product", name, err)
		}
	}
}

// TestSgemm multiplies through each library installed here and compares
// with gonum's float64 Gemm on the same inputs: all four transposes,
// padded leading dimensions, beta = 0 over a C full of NaN (which must not
// propagate), and rows/columns left of the padding untouched.
func TestSgemm(t *testing.T) {
	shapes := []struct {
		m, n, k, pad int
		alpha, beta  float32
	}{
		{1, 1, 1, 0, 1, 0},
		{7, 1, 13, 2, 1, 0},
		{1, 300, 257, 0, -0.5, 1},
		{33, 65, 17, 3, 2, 0.5},
		{128, 96, 200, 1, 1, 0},
	}
	for _, name := range []string{"openblas", "blis"} {
		t.Run(name, func(t *testing.T) {
			l := installed(t, name)
			t.Logf("%s", l)
			for _, s := range shapes {
				for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
					testSgemm(t, l, s.m, s.n, s.k, s.pad, tr[0], tr[1], s.alpha, s.beta)
				}
			}
		})
	}
}

func testSgemm(t *testing.T, l *Library, m, n, k, pad int, ta, tb bool, alpha, beta float32) {
	t.Helper()
	name := fmt.Sprintf("m%d n%d k%d pad%d ta=%v tb=%v alpha=%g beta=%g", m, n, k, pad, ta, tb, alpha, beta)
	seed := uint32(m*7919 + n*31 + k)
	rnd := func() float32 { // a small LCG: the inputs only need to vary
		seed = seed*1664525 + 1013904223
		return float32(seed>>8)/float32(1<<24)*2 - 1
	}
	ar, ac := m, k
	if ta {
		ar, ac = k, m
	}
	br, bc := k, n
	if tb {
		br, bc = n, k
	}
	lda, ldb, ldc := ac+pad, bc+pad, n+pad
	a, b, c := make([]float32, ar*lda), make([]float32, br*ldb), make([]float32, m*ldc)
	for i := range a {
		a[i] = rnd()
	}
	for i := range b {
		b[i] = rnd()
	}
	for i := range c {
		c[i] = rnd()
		if beta == 0 && i%ldc < n {
			c[i] = float32(math.NaN())
		}
	}
	wide := func(x []float32) []float64 {
		y := make([]float64, len(x))
		for i, v := range x {
			y[i] = float64(v)
		}
		return y
	}
	want := wide(c)
	if beta == 0 {
		for i := range want {
			if i%ldc < n {
				want[i] = 0
			}
		}
	}
	op := func(tr bool) blas.Transpose {
		if tr {
			return blas.Trans
		}
		return blas.NoTrans
	}
	blas64.Gemm(op(ta), op(tb), float64(alpha),
		blas64.General{Rows: ar, Cols: ac, Stride: lda, Data: wide(a)},
		blas64.General{Rows: br, Cols: bc, Stride: ldb, Data: wide(b)},
		float64(beta), blas64.General{Rows: m, Cols: n, Stride: ldc, Data: want})

	l.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	bad := 0
	for i := range c {
		// float32 accumulation of k products of magnitude ≤ |alpha|.
		tol := 1e-5*math.Abs(want[i]) + 2e-6*float64(k)*math.Abs(float64(alpha))
		if i%ldc >= n {
			tol = 0 // padding: not to be written
		}
		if d := math.Abs(float64(c[i]) - want[i]); !(d <= tol) {
			if bad++; bad <= 3 {
				t.Errorf("%s: C[%d][%d] = %g, want %g", name, i/ldc, i%ldc, c[i], want[i])
			}
		}
	}
}

// TestLoadOnce checks that a library is loaded once per process: the same
// name gives the same Library.
func TestLoadOnce(t *testing.T) {
	l := installed(t, "openblas")
	again, err := Load("openblas")
	if err != nil || again != l {
		t.Errorf("second Load: %p, %v; want the first one, %p", again, err, l)
	}
	if !slices.Contains(Names(), "openblas") {
		t.Errorf("Names() = %v lacks openblas", Names())
	}
}

// BenchmarkSgemmCall times the smallest product through the library, which
// is mostly the cost of the call itself (purego's, and the library's
// dispatch), and reports its allocations.
func BenchmarkSgemmCall(b *testing.B) {
	l := installed(b, "openblas")
	x, y, z := []float32{2}, []float32{3}, []float32{0}
	b.ReportAllocs()
	for b.Loop() {
		l.Sgemm(false, false, 1, 1, 1, 1, x, 1, y, 1, 0, z, 1)
	}
	if z[0] != 6 {
		b.Fatalf("2·3 = %g", z[0])
	}
}
