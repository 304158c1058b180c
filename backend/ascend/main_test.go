package ascend

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/ascend/acltest"
)

// The tests run the backend against the ACL test double, built once per
// test process by TestMain and named by SORA_ASCEND_PATH. A child process
// started by the layout tests (ACLTEST_CHILD set) uses the libraries its
// parent pointed it at instead.
var (
	doubleDir string          // folder of the double the backend loads
	double    *acltest.Double // its control API
	skipAll   string          // why tests cannot run (no compiler)
)

func TestMain(m *testing.M) {
	code := func() int {
		if os.Getenv("ACLTEST_CHILD") != "" {
			return m.Run()
		}
		tmp, err := os.MkdirTemp("", "acltest")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		// The backend must load the double, whatever the environment says.
		os.Setenv("SORA_ASCEND_PATH", "")
		dir, err := acltest.UseDouble(tmp)
		switch {
		case errors.Is(err, acltest.ErrNoCompiler):
			skipAll = "ACL test double not built: " + err.Error()
		case err != nil:
			fmt.Fprintln(os.Stderr, "building the ACL test double:", err)
			return 1
		default:
			doubleDir = dir
			if double, err = acltest.Attach(dir); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// counters the leak checks compare before and after a test.
var leakCounters = []string{"device_allocs", "host_allocs", "tensors", "scalars", "int_arrays", "bool_arrays",
	"streams", "contexts", "pending_tasks"}

// openDouble opens the backend on the double, resets the double's log and
// injections, and at the end of the test closes the backend and checks that
// every device allocation, host allocation and object it made is gone.
func openDouble(t *testing.T, o Options) (*Backend, *acltest.Double) {
	t.Helper()
	return openDoubleAfter(t, o, nil)
}

// openDoubleAfter is openDouble with setup, when not nil, run on the
// double after its reset and before Open (to inject failures into Open).
func openDoubleAfter(t *testing.T, o Options, setup func(d *acltest.Double)) (*Backend, *acltest.Double) {
	t.Helper()
	if skipAll != "" {
		t.Skip(skipAll)
	}
	if double == nil {
		t.Skip("no ACL test double attached (child process)")
	}
	before := map[string]int64{}
	for _, k := range leakCounters {
		before[k] = double.Live(k)
	}
	double.Reset()
	if setup != nil {
		setup(double)
	}
	b, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		double.Reset()
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		for _, k := range leakCounters {
			if got := double.Live(k); got != before[k] {
				t.Errorf("after Close: %s = %d, want %d as before the test", k, got, before[k])
			}
		}
	})
	return b, double
}

// upload allocates a tensor of the given shape holding data.
func upload(t *testing.T, b backend.Backend, data []float32, shape ...int) backend.Tensor {
	t.Helper()
	x, err := b.Alloc(backend.Float32, shape...)
	if err != nil {
		t.Fatalf("Alloc %v: %v", shape, err)
	}
	b.Upload(x, data)
	return x
}

// download syncs and returns t's contents, failing the test on an error.
func download(t *testing.T, b backend.Backend, x backend.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Len())
	if err := b.Download(out, x); err != nil {
		t.Fatalf("Download: %v", err)
	}
	return out
}

func randn(r *rand.Rand, n int, lo, hi float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return x
}

// nmse is Σ(got−want)²/Σwant², or the plain squared error when want is all
// zero; NaN or Inf in got gives +Inf.
func nmse(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		g := float64(got[i])
		if math.IsNaN(g) || math.IsInf(g, 0) {
			return math.Inf(1)
		}
		num += (g - w) * (g - w)
		den += w * w
	}
	if den == 0 {
		return num
	}
	return num / den
}

// checkClose fails the test when got is further than tol (NMSE) from want.
func checkClose(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	if e := nmse(got, want); !(e <= tol) {
		i := worst(got, want)
		t.Errorf("%s: NMSE %.3g > %.3g (worst at %d: got %g, want %g)", name, e, tol, i, got[i], want[i])
	}
}

func worst(got []float32, want []float64) int {
	w, best := 0, -1.0
	for i := range want {
		d := math.Abs(float64(got[i]) - want[i])
		if math.IsNaN(d) || d > best {
			w, best = i, d
			if math.IsNaN(d) {
				return i
			}
		}
	}
	return w
}

func f64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}
