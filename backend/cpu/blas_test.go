package cpu

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/blas"
)

// systemBLAS loads the named system BLAS for a test, or skips the test
// saying how to install it: CI machines may not have one.
func systemBLAS(t testing.TB, name string) *BLAS {
	t.Helper()
	lib, err := LoadBLAS(name)
	if err != nil {
		if errors.Is(err, blas.ErrUnsupported) {
			t.Skipf("no BLAS in this build: %v", err)
		}
		t.Skipf("%s is not installed here (Debian: apt-get install libopenblas0-pthread libblis4-pthread): %v", name, err)
	}
	return lib
}

// TestMatMulBLAS runs TestMatMul's cases, every transpose, through each
// system BLAS installed here, against the float64 reference, on one and
// two threads of the package's own (which must not matter).
func TestMatMulBLAS(t *testing.T) {
	for _, name := range []string{"openblas", "blis"} {
		t.Run(name, func(t *testing.T) {
			lib := systemBLAS(t, name)
			for _, threads := range []int{1, 2} {
				be := New(Options{BLAS: lib, Threads: threads})
				be.gemmGrain = 1 // the batch-parallel sizing must not reach the BLAS path
				if !strings.Contains(be.Device(), "matmul blas "+lib.lib.Name()) {
					t.Errorf("Device() = %q does not name the BLAS", be.Device())
				}
				for _, tt := range matmulCases {
					for _, ta := range []bool{false, true} {
						for _, tb := range []bool{false, true} {
							testMatMul(t, be, tt.batchA, tt.batchB, tt.batchC, tt.m, tt.n, tt.k, ta, tb, tt.alpha, tt.beta)
						}
					}
				}
				if err := be.Sync(); err != nil {
					t.Fatalf("unexpected recorded error: %v", err)
				}
			}
		})
	}
}

// TestMatMulBLASCalled checks that MatMul reaches the library at all: a
// product alpha·A·B with alpha = 0 stays with the package's kernels, any
// other goes to the BLAS, which a stand-in Go cblas_sgemm that counts its
// calls (and computes nothing) shows.
func TestMatMulBLASCalled(t *testing.T) {
	calls := 0
	lib := &BLAS{lib: blas.NewFunc("counting", func(_, _ bool, _, _, _ int, _ float32, _ []float32, _ int, _ []float32, _ int, _ float32, _ []float32, _ int) {
		calls++
	})}
	be := New(Options{BLAS: lib})
	a := upload(t, be, make([]float32, 3*4*5), 3, 4, 5)
	bm := upload(t, be, make([]float32, 5*2), 5, 2)
	c := upload(t, be, make([]float32, 3*4*2), 3, 4, 2)
	be.MatMul(c, a, bm, backend.MatMulParams{Alpha: 1})
	if calls != 3 {
		t.Errorf("a batch of 3: %d cblas_sgemm calls, want 3", calls)
	}
	be.MatMul(c, a, bm, backend.MatMulParams{Alpha: 0, Beta: 1})
	if calls != 3 {
		t.Errorf("alpha = 0 reached the BLAS (%d calls)", calls)
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestMatMulBLASConcurrent runs two backends sharing one OpenBLAS on two
// goroutines at once, each checking its products against the reference:
// backends are per goroutine, the library is per process.
func TestMatMulBLASConcurrent(t *testing.T) {
	lib := systemBLAS(t, "openblas")
	for g := range 2 {
		t.Run(fmt.Sprint(g), func(t *testing.T) {
			t.Parallel() // the two run at once
			be := New(Options{BLAS: lib})
			for i := range 10 {
				testMatMul(t, be, 2, 2, 2, 33+g, 40+i, 50, i%2 == 0, g == 0, 1, 0)
			}
			if err := be.Sync(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBLASFromEnv(t *testing.T) {
	if _, err := blas.Load("openblas"); err != nil {
		t.Skipf("OpenBLAS is not installed here (Debian: apt-get install libopenblas0-pthread): %v", err)
	}
	t.Setenv(EnvPortable, "")
	t.Setenv(EnvThreads, "")
	t.Setenv(EnvGemmKernel, "")
	tests := []struct {
		env, def string
		want     string // the library's name, "" for none
		wantErr  []string
	}{
		{"", "", "", nil},
		{"off", "", "", nil},
		{" openblas ", "", "libopenblas.so.0", nil},
		{"libopenblas.so.0", "", "libopenblas.so.0", nil},
		{"", "openblas", "libopenblas.so.0", nil}, // a default that loads is used
		{"", "/no/such/libblas.so", "", nil},      // one that does not is passed over
		{"off", "openblas", "", nil},              // and off turns it off
		{"/no/such/libblas.so", "", "", []string{EnvBLAS, `"/no/such/libblas.so"`, "/no/such/libblas.so"}},
		{"openblass", "", "", []string{EnvBLAS, `"openblass"`, "unknown BLAS", "openblas"}},
		{"libc.so.6", "", "", []string{EnvBLAS, "libc.so.6", "cblas_sgemm"}},
	}
	if runtime.GOOS != "darwin" {
		tests = append(tests, struct {
			env, def string
			want     string
			wantErr  []string
		}{"accelerate", "", "", []string{EnvBLAS, "accelerate", "Accelerate", runtime.GOOS}})
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q,default%q", tt.env, tt.def), func(t *testing.T) {
			t.Setenv(EnvBLAS, tt.env)
			defer func(d string) { defaultBLAS = d }(defaultBLAS)
			defaultBLAS = tt.def
			o, err := OptionsFromEnv()
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, options %+v", o)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				if _, err := backend.Open("cpu"); err == nil {
					t.Errorf("Open accepted %s=%q", EnvBLAS, tt.env)
				}
				if _, err := (driver{}).Probe(); err == nil {
					t.Errorf("Probe accepted %s=%q", EnvBLAS, tt.env)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if o.BLAS != nil {
				got = o.BLAS.lib.Name()
			}
			if got != tt.want {
				t.Fatalf("BLAS %q, want %q", got, tt.want)
			}
			desc, err := driver{}.Probe()
			if err != nil {
				t.Fatal(err)
			}
			if has := strings.Contains(desc, "matmul blas "); has != (tt.want != "") {
				t.Errorf("Probe() = %q; want a BLAS named: %v", desc, tt.want != "")
			}
		})
	}
}

func TestLoadBLASErrors(t *testing.T) {
	for _, name := range []string{"", "off", "nosuchblas", "/no/such/file.so"} {
		if lib, err := LoadBLAS(name); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
			t.Errorf("LoadBLAS(%q) = %v, %v; want an error quoting the name", name, lib, err)
		}
	}
}

// BenchmarkMatMulBLAS times MatMul with the package's kernels and with
// OpenBLAS (or $SORA_CPU_BLAS) on the same shapes in the same run, taking
// turns call by call, and reports the BLAS's speed relative to the
// kernels' ("blas_speedup", above 1 when the BLAS is faster) with both in
// GFLOP/s. The package's kernels use GOMAXPROCS threads; the BLAS uses its
// own setting, so run it as
//
//	OPENBLAS_NUM_THREADS=1 go test -run XXX -bench MatMulBLAS -cpu 1 ./backend/cpu
//	OPENBLAS_NUM_THREADS=2 go test -run XXX -bench MatMulBLAS -cpu 2 ./backend/cpu
func BenchmarkMatMulBLAS(b *testing.B) {
	name := "openblas"
	if s := strings.TrimSpace(os.Getenv(EnvBLAS)); s != "" && s != "off" {
		name = s
	}
	lib := systemBLAS(b, name)
	ours, theirs := New(Options{}), New(Options{BLAS: lib})
	b.Logf("kernels: %s", ours.Device())
	b.Logf("blas: %s", theirs.Device())
	cases := []struct {
		name           string
		batch, m, n, k int
		ta, tb         bool
	}{
		{"square/256/NN", 1, 256, 256, 256, false, false},
		{"square/1024/NN", 1, 1024, 1024, 1024, false, false},
		{"square/1024/TN", 1, 1024, 1024, 1024, true, false},
		{"token/1x2048x2048/NT", 1, 1, 2048, 2048, false, true},   // one token through a linear layer
		{"lora_xA/512x8x2048/NT", 1, 512, 8, 2048, false, true},   // x·Aᵀ at rank 8
		{"lora_xAB/512x2048x8/NN", 1, 512, 2048, 8, false, false}, // (x·A)·B
		{"heads/32x64x64x64/NT", 32, 64, 64, 64, false, true},     // attention scores per head
		{"small/16x16x16/NN", 1, 16, 16, 16, false, false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			shape := func(r, cl int) []int {
				if c.batch > 1 {
					return []int{c.batch, r, cl}
				}
				return []int{r, cl}
			}
			ar, ac, br, bc := c.m, c.k, c.k, c.n
			if c.ta {
				ar, ac = ac, ar
			}
			if c.tb {
				br, bc = bc, br
			}
			prep := func(be *Backend) func() {
				rng := newRNG(3)
				alloc := func(shape []int) backend.Tensor {
					t, err := be.Alloc(backend.Float32, shape...)
					if err != nil {
						b.Fatal(err)
					}
					be.Upload(t, uniform(rng, t.Len(), -1, 1))
					return t
				}
				x, y, z := alloc(shape(ar, ac)), alloc(shape(br, bc)), alloc(shape(c.m, c.n))
				p := backend.MatMulParams{TransA: c.ta, TransB: c.tb, Alpha: 1}
				return func() { be.MatMul(z, x, y, p) }
			}
			runO, runT := prep(ours), prep(theirs)
			runO()
			runT()
			var to, tt time.Duration
			for b.Loop() {
				t0 := time.Now()
				runO()
				t1 := time.Now()
				runT()
				to, tt = to+t1.Sub(t0), tt+time.Since(t1)
			}
			if err := errors.Join(ours.Sync(), theirs.Sync()); err != nil {
				b.Fatal(err)
			}
			flops := 2 * float64(c.batch*c.m*c.n*c.k) * float64(b.N)
			b.ReportMetric(flops/to.Seconds()/1e9, "kernels_GFLOP/s")
			b.ReportMetric(flops/tt.Seconds()/1e9, "blas_GFLOP/s")
			b.ReportMetric(float64(to)/float64(tt), "blas_speedup")
		})
	}
}
