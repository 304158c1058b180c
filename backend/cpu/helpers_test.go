package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// configs are the backend set-ups every op test runs under, for each row
// kernel set this CPU runs (the portable Go kernels, with the portable
// matrix multiply, and each assembly set): one thread with the production
// grain and cache threshold, and several threads with a grain of one
// element and a threshold of 0 bytes, so that even the tiny test shapes
// take the parallel paths and the streaming (non-temporal) kernels.
var configs = func() []config {
	var cs []config
	for _, k := range vec.All() {
		cs = append(cs,
			config{k.Name + "/serial", 1, defaultGrain, k, false},
			config{k.Name + "/parallel_streaming", 3, 1, k, true})
	}
	return cs
}()

type config struct {
	name    string
	threads int
	grain   int
	kern    *vec.Kernels
	stream  bool
}

// eachConfig runs f once per backend configuration, failing the test if
// an op left an error recorded.
func eachConfig(t *testing.T, f func(t *testing.T, be *Backend)) {
	t.Helper()
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			be := New(Options{Threads: c.threads, Portable: c.kern == vec.Go})
			be.kern = c.kern
			be.grain = c.grain
			if c.stream {
				be.stream, be.fillStream = 0, 0
			}
			if c.grain < defaultGrain {
				be.gemmGrain = 1
			}
			f(t, be)
			if err := be.Sync(); err != nil {
				t.Fatalf("unexpected recorded error: %v", err)
			}
		})
	}
}

// upload allocates a tensor of the given shape holding data.
func upload(t testing.TB, be *Backend, data []float32, shape ...int) backend.Tensor {
	t.Helper()
	return uploadDType(t, be, backend.Float32, data, shape...)
}

// uploadDType allocates a tensor of dtype dt and the given shape holding
// data (rounded, for bfloat16).
func uploadDType(t testing.TB, be *Backend, dt backend.DType, data []float32, shape ...int) backend.Tensor {
	t.Helper()
	x, err := be.Alloc(dt, shape...)
	if err != nil {
		t.Fatal(err)
	}
	if x.Len() != len(data) {
		t.Fatalf("upload: %d values for shape %v", len(data), shape)
	}
	be.Upload(x, data)
	return x
}

// poisoned allocates a tensor filled with NaN, so that an element an op
// fails to write shows up in the comparison.
func poisoned(t testing.TB, be *Backend, shape ...int) backend.Tensor {
	t.Helper()
	x, err := be.Alloc(backend.Float32, shape...)
	if err != nil {
		t.Fatal(err)
	}
	be.Fill(x, float32(math.NaN()))
	return x
}

// download returns a tensor's contents, failing on a recorded error.
func download(t testing.TB, be *Backend, x backend.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Len())
	if err := be.Download(out, x); err != nil {
		t.Fatal(err)
	}
	return out
}

// randn returns n values uniform in [lo, hi) from a seeded generator.
func uniform(rng *rand.Rand, n int, lo, hi float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(lo + (hi-lo)*rng.Float64())
	}
	return x
}

// newRNG returns a generator seeded for reproducible tests.
func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

// f64 widens x.
func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// assertClose fails unless every got[i] is within atol + rtol·|want[i]| of
// want[i]; NaN matches nothing.
func assertClose(t *testing.T, name string, got []float32, want []float64, rtol, atol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	bad := 0
	for i := range got {
		g := float64(got[i])
		if d := math.Abs(g - want[i]); !(d <= atol+rtol*math.Abs(want[i])) {
			if bad < 5 {
				t.Errorf("%s[%d] = %.9g, want %.9g (diff %.3g)", name, i, g, want[i], d)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values out of tolerance", name, bad, len(got))
	}
}

// numGrad returns the central finite-difference gradient of the scalar
// function f at x (in float64), for checking backward ops against their
// forward references.
func numGrad(f func([]float64) float64, x []float64) []float64 {
	g := make([]float64, len(x))
	xs := append([]float64(nil), x...)
	for i := range xs {
		h := 1e-6 * max(1, math.Abs(xs[i]))
		orig := xs[i]
		xs[i] = orig + h
		fp := f(xs)
		xs[i] = orig - h
		fm := f(xs)
		xs[i] = orig
		g[i] = (fp - fm) / (2 * h)
	}
	return g
}

// shapeName formats a shape for subtest names.
func shapeName(s ...int) string { return fmt.Sprint(s) }
