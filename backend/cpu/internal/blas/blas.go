package blas

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
)

// Library is a loaded BLAS whose cblas_sgemm passed Load's check. It is
// safe for concurrent use as far as the library itself is (the builds
// named in Names are).
type Library struct {
	name string // the file name or path that was loaded, e.g. "libopenblas.so.0"
	// info is the library's own account of itself (OpenBLAS's build
	// configuration, BLIS's version), "" when it gives none.
	info string
	// threads reports the threads the library uses for a call; nil when
	// the library has no function that says.
	threads func() int32
	sgemm   SgemmFunc
}

// SgemmFunc is the form of Library.Sgemm.
type SgemmFunc func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, c []float32, ldc int)

// cFunc is cblas_sgemm's C signature: the order and transposes are C
// enums (int), the sizes and leading dimensions int in the LP64 interface.
type cFunc func(order, transA, transB, m, n, k int32, alpha float32, a *float32, lda int32,
	b *float32, ldb int32, beta float32, c *float32, ldc int32)

// call adapts the C function to SgemmFunc.
func (f cFunc) call(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, c []float32, ldc int) {
	f(rowMajor, cblasTrans(transA), cblasTrans(transB), int32(m), int32(n), int32(k),
		alpha, &a[0], int32(lda), &b[0], int32(ldb), beta, &c[0], int32(ldc))
}

// NewFunc returns a Library that computes with f instead of a loaded
// library, for tests of the code that calls Sgemm: f gets the arguments
// that cblas_sgemm would, after Sgemm has cleared C for beta = 0.
func NewFunc(name string, f SgemmFunc) *Library { return &Library{name: name, sgemm: f} }

// CBLAS enum values (cblas.h).
const (
	rowMajor = 101
	noTrans  = 111
	trans    = 112
)

// Name is the library file that was loaded: the name the dynamic linker
// found, such as "libopenblas.so.0", or the path given.
func (l *Library) Name() string { return l.name }

// String names the library with what it says of itself, for device
// descriptions, e.g. "libopenblas.so.0 (OpenBLAS 0.3.21 DYNAMIC_ARCH
// NO_AFFINITY Zen MAX_THREADS=64, 2 threads)".
func (l *Library) String() string {
	var about []string
	if l.info != "" {
		about = append(about, l.info)
	}
	if l.threads != nil {
		if n := l.threads(); n == 1 {
			about = append(about, "1 thread")
		} else if n > 1 {
			about = append(about, fmt.Sprintf("%d threads", n))
		}
	}
	if len(about) == 0 {
		return l.name
	}
	return l.name + " (" + strings.Join(about, ", ") + ")"
}

// Fits reports whether cblas_sgemm can take a product of these sizes and
// leading dimensions: all positive (k = 0 would need a leading dimension
// of 0, which CBLAS rejects) and within a 32-bit int.
func Fits(m, n, k, lda, ldb, ldc int) bool {
	for _, v := range [...]int{m, n, k, lda, ldb, ldc} {
		if v < 1 || v > math.MaxInt32 {
			return false
		}
	}
	return true
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices
// with cblas_sgemm, with the arguments of package gemm's Engine.Sgemm:
// op(A) is m×k, op(B) k×n, lda, ldb and ldc are row strides. The sizes must
// satisfy Fits and the slices be long enough for them. When beta is 0, C
// is cleared first rather than left to the library, since not every BLAS
// promises not to read it (and 0·NaN is NaN).
func (l *Library) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, c []float32, ldc int) {
	if beta == 0 {
		for i := range m {
			clear(c[i*ldc : i*ldc+n])
		}
	}
	l.sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func cblasTrans(t bool) int32 {
	if t {
		return trans
	}
	return noTrans
}

// Names lists the libraries Load knows by name on this system, besides
// file names and paths.
func Names() []string { return knownNames(runtime.GOOS) }

func knownNames(goos string) []string {
	var names []string
	for _, s := range specs {
		if len(s.files[goos]) > 0 {
			names = append(names, s.name)
		}
	}
	return names
}

// spec says how to find one library by name.
type spec struct {
	name string // as SORA_CPU_BLAS spells it
	role string // in messages
	// files are what dlopen is given in turn, per GOOS: bare file names,
	// which the dynamic linker searches for, or absolute paths.
	files map[string][]string
	// install says how to get the library, per GOOS.
	install map[string]string
}

var specs = []spec{
	{
		name: "accelerate", role: "Apple's Accelerate framework",
		files: map[string][]string{"darwin": {"/System/Library/Frameworks/Accelerate.framework/Accelerate"}},
		// It is part of macOS: a failure to load it is not an install
		// matter.
	},
	{
		name: "openblas", role: "OpenBLAS",
		files: map[string][]string{
			// Debian and Ubuntu (through alternatives), Arch, Alpine; Fedora's
			// pthread and OpenMP builds; the unversioned development link.
			"linux": {"libopenblas.so.0", "libopenblasp.so.0", "libopenblaso.so.0", "libopenblas.so"},
			// Homebrew (arm64, then Intel) keeps it out of the linker's
			// search as a keg-only formula; MacPorts.
			"darwin": {"libopenblas.dylib", "libopenblas.0.dylib",
				"/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
				"/usr/local/opt/openblas/lib/libopenblas.dylib",
				"/opt/local/lib/libopenblas.dylib"},
		},
		install: map[string]string{
			"linux":  "install it (Debian/Ubuntu: apt-get install libopenblas0; Fedora: dnf install openblas)",
			"darwin": "install it (brew install openblas)",
		},
	},
	{
		name: "blis", role: "BLIS",
		files: map[string][]string{
			"linux": {"libblis.so.4", "libblis.so.3", "libblis.so"},
			"darwin": {"libblis.dylib", "libblis.4.dylib",
				"/opt/homebrew/opt/blis/lib/libblis.dylib",
				"/usr/local/opt/blis/lib/libblis.dylib"},
		},
		install: map[string]string{
			"linux":  "install it (Debian/Ubuntu: apt-get install libblis4; its CBLAS layer must be built in)",
			"darwin": "install it (brew install blis)",
		},
	},
	{
		name: "mkl", role: "Intel MKL (mkl_rt)",
		files: map[string][]string{
			"linux": {"libmkl_rt.so.2", "libmkl_rt.so.1", "libmkl_rt.so"},
		},
		install: map[string]string{
			"linux": "install oneAPI MKL and put its lib folder on LD_LIBRARY_PATH",
		},
	},
}

// IsFileName reports whether value names a library file rather than one of
// Names: it holds a path separator or a shared-library suffix.
func IsFileName(value string) bool {
	return strings.ContainsAny(value, `/\`) || strings.Contains(value, ".so") || strings.HasSuffix(value, ".dylib") ||
		strings.HasSuffix(strings.ToLower(value), ".dll")
}

// candidates returns what Load tries for value on goos, with how to get
// the library when none loads; an error says why value names nothing.
func candidates(goos, value string) (files []string, role, install string, err error) {
	if IsFileName(value) {
		return []string{value}, value, "", nil
	}
	for _, s := range specs {
		if s.name != value {
			continue
		}
		if len(s.files[goos]) == 0 {
			return nil, "", "", fmt.Errorf("%s is not available on %s", s.role, goos)
		}
		return s.files[goos], s.role, s.install[goos], nil
	}
	return nil, "", "", fmt.Errorf("unknown BLAS %q: want %s, or a library file's name or path", value, orList(knownNames(goos)))
}

// orList is "a, b or c".
func orList(s []string) string {
	switch len(s) {
	case 0:
		return "nothing"
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// ErrUnsupported is returned by Load in builds that cannot load a shared
// library without cgo.
var ErrUnsupported = errors.New("this build cannot load a BLAS: loading one needs purego's dlopen without cgo, " +
	"which the CPU backend uses only on linux and darwin for amd64 and arm64, and not with -tags noblas (this build: " +
	runtime.GOOS + "/" + runtime.GOARCH + ")")

var (
	mu     sync.Mutex
	loaded = map[string]*Library{}
)

// Load finds and loads the BLAS that value names: one of Names (each
// tried under the file names it has on this system, in turn), or a
// library file's name for the dynamic linker's search, or its path. The
// first file that loads, exports cblas_sgemm and passes the check in the
// package doc is used; libraries are loaded once per process and never
// unloaded. The error lists every file tried with why it failed.
func Load(value string) (*Library, error) {
	mu.Lock()
	defer mu.Unlock()
	if l, ok := loaded[value]; ok {
		return l, nil
	}
	files, role, install, err := candidates(runtime.GOOS, value)
	if err != nil {
		return nil, err
	}
	if !supported {
		return nil, ErrUnsupported
	}
	var problems []string
	for _, f := range files {
		// A library that fails the check stays loaded: unloading one
		// whose threads have started is riskier than the memory.
		l, err := open(f)
		if err == nil {
			err = check(l)
		}
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		loaded[value] = l
		return l, nil
	}
	msg := problems[0]
	if len(files) > 1 {
		msg = fmt.Sprintf("no usable %s (tried %s): %s", role, strings.Join(files, ", "), strings.Join(problems, "; "))
	}
	if install != "" {
		msg += "; " + install + ", or give the library's path"
	}
	return nil, errors.New(msg)
}

// check multiplies small matrices of small integers through l in all four
// transpose cases, with leading dimensions wider than the matrices, and
// compares every element of C, padding included, with the exact product.
// A library whose integers are 64-bit (ILP64) or whose calling convention
// purego gets wrong computes something else.
func check(l *Library) error {
	const m, n, k, pad = 3, 5, 4, 2
	const alpha, beta = 0.5, 2
	for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
		ta, tb := tr[0], tr[1]
		ar, ac := m, k
		if ta {
			ar, ac = k, m
		}
		br, bc := k, n
		if tb {
			br, bc = n, k
		}
		lda, ldb, ldc := ac+pad, bc+pad+1, n+pad
		a, b, c := make([]float32, ar*lda), make([]float32, br*ldb), make([]float32, m*ldc)
		for i := range a {
			a[i] = float32(i%7 - 3)
		}
		for i := range b {
			b[i] = float32(i%5 - 2)
		}
		for i := range c {
			c[i] = float32(i%3 + 1)
		}
		want := make([]float32, len(c))
		copy(want, c)
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
				want[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
		l.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		for i := range c {
			if c[i] != want[i] {
				return fmt.Errorf("%s: cblas_sgemm computed a wrong product in a check (transA=%v transB=%v: "+
					"C[%d][%d] = %g, want %g); it may take 64-bit integers (an ILP64 build), which this backend does not use",
					l.name, ta, tb, i/ldc, i%ldc, c[i], want[i])
			}
		}
	}
	return nil
}
