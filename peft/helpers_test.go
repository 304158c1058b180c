package peft

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/gradcheck"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/internal/testdata"
	"github.com/sora-go/sora/safetensors"
)

func openCPU(t testing.TB) backend.Backend { return testbackend.Open(t, "cpu") }

func randn(rng *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	return v
}

func upload(t testing.TB, b backend.Backend, name string, data []float32, train graph.Trainability, shape ...int) *graph.Value {
	t.Helper()
	v, err := graph.UploadParam(b, name, data, train, shape...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Free)
	return v
}

// set overwrites a parameter's data.
func set(t testing.TB, v *graph.Value, data []float32) {
	t.Helper()
	if len(data) != v.Len() {
		t.Fatalf("set %s: %d values for %v", v.Name(), len(data), v.Shape())
	}
	b := v.Backend()
	b.Upload(v.Tensor(), data)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// relMax returns max|a − b| / max|b| (0 when both are zero).
func relMax(a []float32, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	num, den := 0.0, 0.0
	for i := range b {
		num = math.Max(num, math.Abs(float64(a[i])-b[i]))
		den = math.Max(den, math.Abs(b[i]))
	}
	if den == 0 {
		return num
	}
	return num / den
}

// forward runs l on x (host data of the given shape) with recording off.
func forward(t testing.TB, l graph.Layer, b backend.Backend, x []float32, shape ...int) []float32 {
	t.Helper()
	g := graph.New(b)
	defer g.Close()
	g.SetNoGrad(true)
	y, err := l.Forward(g, g.Input(x, shape...)).Download()
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// sharedData returns the path of rel under the shared data folder beside
// the repository, or skips the test when it is absent.
func sharedData(t testing.TB, rel string) string {
	t.Helper()
	return testdata.Path(t, rel)
}

// readF64 reads every F64 tensor of a safetensors file; package
// safetensors validates the header, this decodes the doubles it does not
// convert.
func readF64(t testing.TB, path string) map[string][]float64 {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	start := 8 + int64(binary.LittleEndian.Uint64(raw[:8]))
	out := map[string][]float64{}
	for _, info := range f.Tensors() {
		if info.DType != safetensors.F64 {
			t.Fatalf("%s: tensor %q is %s, want F64", path, info.Name, info.DType)
		}
		b := raw[start+info.Begin : start+info.End]
		v := make([]float64, len(b)/8)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		out[info.Name] = v
	}
	return out
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// testLayer builds a layer of the given method over a random frozen dense
// layer [out, in] with a bias.
func testLayer(t testing.TB, b backend.Backend, cfg Config, out, in int, seed uint64) *Layer {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	base := &graph.Dense{
		W: upload(t, b, "w0", randn(rng, out*in, 0.5), graph.Frozen, out, in),
		B: upload(t, b, "b0", randn(rng, out, 0.5), graph.Frozen, out),
	}
	l, err := NewLayer(fmt.Sprintf("layers.%d.proj", seed), base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Free)
	return l
}

// perturb gives every trainable parameter of l random values, as training
// would, so that no conditioner is the identity.
func perturb(t testing.TB, l *Layer, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, p := range l.Trainable() {
		data, err := p.Download()
		if err != nil {
			t.Fatal(err)
		}
		scale := 0.3
		if p == l.oftR {
			scale = 0.1
		}
		for i := range data {
			data[i] += float32(rng.NormFloat64() * scale)
		}
		set(t, p, data)
	}
}

// checkGradients runs the finite-difference check of case c on b with the
// given seed: an error stops the test, a failed check fails it, and a pass
// is logged with its errors.
func checkGradients(t *testing.T, b backend.Backend, c gradcheck.Case, seed uint64) {
	t.Helper()
	res, err := gradcheck.Check(b, c, gradcheck.Options{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Passed() {
		t.Error(res)
	} else {
		t.Log(res)
	}
}
