package llama_test

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/llama"
)

// weightsSource is a llama.Source over host weights that records what it
// is asked for and fails, where failAt > 0, on the failAt-th read.
type weightsSource struct {
	w      *llama.Weights
	params map[string][]float32
	reads  map[string]int
	count  int
	failAt int
	// largest is the longest dst a read was given.
	largest int
}

var errSourceFailed = errors.New("source failed on purpose")

func newWeightsSource(w *llama.Weights) *weightsSource {
	params := map[string][]float32{}
	for _, p := range w.Params() {
		params[p.Name] = p.Data
	}
	return &weightsSource{w: w, params: params, reads: map[string]int{}}
}

func (s *weightsSource) Config() llama.Config { return s.w.Config }

func (s *weightsSource) ReadTensor(name string, dst []float32) error {
	s.count++
	s.reads[name]++
	s.largest = max(s.largest, len(dst))
	if s.count == s.failAt {
		return fmt.Errorf("%s: %w", name, errSourceFailed)
	}
	data, ok := s.params[name]
	if !ok {
		return fmt.Errorf("no tensor %q", name)
	}
	if len(data) != len(dst) {
		return fmt.Errorf("tensor %q has %d elements, dst %d", name, len(data), len(dst))
	}
	// Garbage first: the model must hold what was read, not what the
	// buffer held before.
	for i := range dst {
		dst[i] = float32(math.NaN())
	}
	copy(dst, data)
	return nil
}

// sameModels checks that got and want hold the same parameters, by name,
// storage type and every downloaded bit, and the same configuration and
// base storage type.
func sameModels(t *testing.T, got, want *llama.Model, label string) {
	t.Helper()
	if got.Config() != want.Config() || got.BaseDType() != want.BaseDType() {
		t.Fatalf("%s: config %+v base %s, want %+v base %s", label, got.Config(), got.BaseDType(), want.Config(), want.BaseDType())
	}
	gp, wp := got.Params(), want.Params()
	if len(gp) != len(wp) {
		t.Fatalf("%s: %d parameters, want %d", label, len(gp), len(wp))
	}
	for i := range wp {
		g, w := gp[i], wp[i]
		if g.Name() != w.Name() || g.DType() != w.DType() || fmt.Sprint(g.Shape()) != fmt.Sprint(w.Shape()) {
			t.Fatalf("%s: parameter %d is %s %s %v, want %s %s %v", label, i, g.Name(), g.DType(), g.Shape(), w.Name(), w.DType(), w.Shape())
		}
		gd, wd := download(t, g), download(t, w)
		for j := range wd {
			if math.Float32bits(gd[j]) != math.Float32bits(wd[j]) {
				t.Fatalf("%s: %s[%d] = %v, want %v", label, w.Name(), j, gd[j], wd[j])
			}
		}
	}
}

// sourceConfigs are the architectures the source tests build: tied and
// untied LLaMA in both rotary layouts, biases, QK-norm with wide heads,
// and Gemma 2's and 3's extra norms.
func sourceConfigs() []namedConfig {
	return []namedConfig{
		{"tied half-split", tinyConfig(true, llama.RopeHalfSplit)},
		{"untied interleaved", tinyConfig(false, llama.RopeInterleaved)},
		{"qkv biases", biasConfig(llama.BiasQKV, llama.RopeHalfSplit)},
		{"qkvo biases untied", biasConfig(llama.BiasQKVO, llama.RopeInterleaved)},
		{"qwen3", qwen3Config(llama.RopeHalfSplit)},
		{"gemma3", gemmaConfig(llama.RopeHalfSplit)},
		{"gemma2", gemma2Config(llama.RopeHalfSplit)},
	}
}

// TestNewFromSourceMatchesNew checks that a model built tensor by tensor
// from a source equals the one New builds from the same host weights,
// bit for bit in every parameter, with float32 and bfloat16 base weights;
// that every tensor the model has is read exactly once; and that no read
// is longer than the largest tensor.
func TestNewFromSourceMatchesNew(t *testing.T) {
	b := openCPU(t)
	for i, nc := range sourceConfigs() {
		w := randomWeights(t, nc.cfg, uint64(90+i))
		largest := 0
		for _, p := range w.Params() {
			largest = max(largest, len(p.Data))
		}
		for _, o := range []llama.Options{{BaseDType: backend.Float32}, bf16Opts} {
			label := fmt.Sprintf("%s, base %s", nc.name, o.BaseDType)
			want, err := llama.NewWithOptions(b, w, o)
			if err != nil {
				t.Fatal(err)
			}
			src := newWeightsSource(w)
			got, err := llama.NewFromSource(b, src, o)
			if err != nil {
				want.Free()
				t.Fatalf("%s: %v", label, err)
			}
			sameModels(t, got, want, label)
			params := w.Params()
			if len(src.reads) != len(params) || src.count != len(params) {
				t.Errorf("%s: %d reads of %d tensors; the model has %d", label, src.count, len(src.reads), len(params))
			}
			for _, p := range params {
				if src.reads[p.Name] != 1 {
					t.Errorf("%s: %s read %d times", label, p.Name, src.reads[p.Name])
				}
			}
			if src.largest != largest {
				t.Errorf("%s: the longest read was %d elements; the largest tensor has %d", label, src.largest, largest)
			}
			got.Free()
			want.Free()
		}
	}
}

// TestNewFromSourceErrors checks that a read failing at any tensor, the
// first to the last, is returned as the source gave it and leaves nothing
// allocated on the backend, and that refusals made before reading (nil
// arguments, an invalid config, a base type the backend cannot store)
// read nothing.
func TestNewFromSourceErrors(t *testing.T) {
	b := openCPU(t)
	for _, nc := range []namedConfig{{"untied qkvo biases", biasConfig(llama.BiasQKVO, llama.RopeInterleaved)}, {"gemma2", gemma2Config(llama.RopeHalfSplit)}} {
		w := randomWeights(t, nc.cfg, 99)
		n := len(w.Params())
		for _, o := range []llama.Options{{}, bf16Opts} {
			for k := 1; k <= n; k++ {
				before := b.BytesInUse()
				src := newWeightsSource(w)
				src.failAt = k
				m, err := llama.NewFromSource(b, src, o)
				if err == nil {
					m.Free()
					t.Fatalf("%s: read %d of %d failed, but NewFromSource did not", nc.name, k, n)
				}
				if !errors.Is(err, errSourceFailed) {
					t.Errorf("%s: read %d failed; error %v does not wrap the source's", nc.name, k, err)
				}
				if src.count != k {
					t.Errorf("%s: read %d failed, yet %d reads were made", nc.name, k, src.count)
				}
				if after := b.BytesInUse(); after != before {
					t.Errorf("%s, base %s: failing at read %d of %d leaves %d bytes allocated", nc.name, o.BaseDType, k, n, after-before)
				}
			}
		}
	}

	w := randomWeights(t, tinyConfig(false, llama.RopeHalfSplit), 98)
	bad := w.Config
	bad.NumKVHeads = 3 // does not divide the 4 query heads
	for _, tc := range []struct {
		name string
		b    backend.Backend
		src  llama.Source
		o    llama.Options
		want string
	}{
		{"nil backend", nil, newWeightsSource(w), llama.Options{}, "nil backend"},
		{"nil source", b, nil, llama.Options{}, "nil source"},
		{"invalid config", b, &weightsSource{w: &llama.Weights{Config: bad}, reads: map[string]int{}}, llama.Options{}, "kv"},
		{"no bfloat16 products", noBF16{b}, newWeightsSource(w), bf16Opts, string(backend.OpMatMulBF16)},
		{"unknown base type", b, newWeightsSource(w), llama.Options{BaseDType: backend.DType(9)}, "BaseDType"},
	} {
		before := b.BytesInUse()
		m, err := llama.NewFromSource(tc.b, tc.src, tc.o)
		if err == nil {
			m.Free()
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.want)) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.want)
		}
		if ws, ok := tc.src.(*weightsSource); ok && ws.count != 0 {
			t.Errorf("%s: %d tensors read before the refusal", tc.name, ws.count)
		}
		if after := b.BytesInUse(); after != before {
			t.Errorf("%s: the refusal leaves %d bytes allocated", tc.name, after-before)
		}
	}
}

// TestNewFromSourceHostMemory checks what loading from a source allocates
// on the host beyond what the backend holds (the CPU backend's buffers are
// host memory, counted too): at most one buffer of the largest tensor and
// a small overhead for the model's structures, far less than the host
// copy of every tensor that New needs. Everything the load allocates is
// counted (TotalAlloc), which bounds the peak from above.
func TestNewFromSourceHostMemory(t *testing.T) {
	b := openCPU(t)
	cfg := llama.Config{Dim: 128, HiddenDim: 344, NumLayers: 4, NumHeads: 4, NumKVHeads: 2, VocabSize: 1500,
		MaxSeqLen: 64, NormEps: 1e-5, RopeTheta: 1e4, RopeLayout: llama.RopeHalfSplit}
	w := randomWeights(t, cfg, 97)
	largest := 0
	for _, p := range w.Params() {
		largest = max(largest, len(p.Data))
	}
	const overhead = 256 << 10
	for _, o := range []llama.Options{{BaseDType: backend.Float32}, bf16Opts} {
		src := newWeightsSource(w)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		held := b.BytesInUse()
		m, err := llama.NewFromSource(b, src, o)
		if err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		held = b.BytesInUse() - held
		m.Free()
		allocated := int64(after.TotalAlloc - before.TotalAlloc)
		limit := held + 4*int64(largest) + overhead
		t.Logf("base %s: backend holds %d bytes, load allocated %d (limit %d; the host weights are %d)", o.BaseDType, held, allocated, limit, 4*cfg.NumParams())
		if allocated > limit {
			t.Errorf("base %s: loading allocated %d bytes, more than the backend's %d + the largest tensor's %d + %d", o.BaseDType, allocated, held, 4*largest, overhead)
		}
	}
}
