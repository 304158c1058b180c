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
	shapes map[string][]int
	// spans are the row ranges read of each tensor, in order.
	spans  map[string][][2]int
	count  int
	failAt int
	// longest is the longest dst a read was given.
	longest int
}

var errSourceFailed = errors.New("source failed on purpose")

func newWeightsSource(w *llama.Weights) *weightsSource {
	params, shapes := map[string][]float32{}, map[string][]int{}
	for _, p := range w.Params() {
		params[p.Name], shapes[p.Name] = p.Data, p.Shape
	}
	return &weightsSource{w: w, params: params, shapes: shapes, spans: map[string][][2]int{}}
}

func (s *weightsSource) Config() llama.Config { return s.w.Config }

func (s *weightsSource) ReadRows(name string, row0 int, dst []float32) error {
	s.count++
	s.longest = max(s.longest, len(dst))
	if s.count == s.failAt {
		return fmt.Errorf("%s: %w", name, errSourceFailed)
	}
	data, ok := s.params[name]
	if !ok {
		return fmt.Errorf("no tensor %q", name)
	}
	cols := backend.Shape(s.shapes[name][1:]).NumElements()
	if len(dst)%cols != 0 || row0 < 0 || row0*cols+len(dst) > len(data) {
		return fmt.Errorf("tensor %q %v: rows from %d, %d values", name, s.shapes[name], row0, len(dst))
	}
	s.spans[name] = append(s.spans[name], [2]int{row0, row0 + len(dst)/cols})
	// Garbage first: the model must hold what was read, not what the
	// buffer held before.
	for i := range dst {
		dst[i] = float32(math.NaN())
	}
	copy(dst, data[row0*cols:])
	return nil
}

// checkSlabs checks that src was asked for every row of every tensor of
// the model exactly once, in order, in reads of at most slab elements
// (or one row, where a row is longer), each as long as that allows.
func (s *weightsSource) checkSlabs(t *testing.T, slab int, label string) {
	t.Helper()
	params := s.w.Params()
	if len(s.spans) != len(params) {
		t.Errorf("%s: %d tensors read; the model has %d", label, len(s.spans), len(params))
	}
	for _, p := range params {
		rows, cols := p.Shape[0], len(p.Data)/p.Shape[0]
		next := 0
		for _, sp := range s.spans[p.Name] {
			n := sp[1] - sp[0]
			switch {
			case sp[0] != next:
				t.Fatalf("%s: %s read rows %v after rows up to %d", label, p.Name, sp, next)
			case n < 1 || (n > 1 && n*cols > slab):
				t.Fatalf("%s: %s read rows %v, %d values of slab %d", label, p.Name, sp, n*cols, slab)
			case sp[1] < rows && (n+1)*cols <= slab:
				t.Fatalf("%s: %s read rows %v, though a slab of %d holds %d rows of %d", label, p.Name, sp, slab, n+1, cols)
			}
			next = sp[1]
		}
		if next != rows {
			t.Errorf("%s: %s read up to row %d of %d", label, p.Name, next, rows)
		}
	}
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

// slabCases are the slab sizes, in float32 elements, that the source
// tests load with: the default (every tensor of these models in one
// read), one element (one row a read), and 3·dim+1 (three rows of most
// matrices, some rows alone, odd runs of the norms).
func slabCases(c llama.Config) []struct {
	name string
	elem int
} {
	return []struct {
		name string
		elem int
	}{{"default slab", llama.LoadSlabBytes / 4}, {"one-element slab", 1}, {"3·dim+1 slab", 3*c.Dim + 1}}
}

// TestNewFromSourceMatchesNew checks that a model built from a source a
// slab of rows at a time equals the one New builds from the same host
// weights, bit for bit in every parameter, with float32 and bfloat16
// base weights, whatever the slab (tied and untied embeddings, biases,
// QK-norm, Gemma's norms); that every row of every tensor is read once,
// in order, in slabs as long as the bound allows; and that with the
// default slab each tensor of these small models is one read.
func TestNewFromSourceMatchesNew(t *testing.T) {
	b := openCPU(t)
	defer llama.SetLoadSlabBytes(llama.SetLoadSlabBytes(llama.LoadSlabBytes))
	for i, nc := range sourceConfigs() {
		w := randomWeights(t, nc.cfg, uint64(90+i))
		for _, o := range []llama.Options{{BaseDType: backend.Float32}, bf16Opts} {
			want, err := llama.NewWithOptions(b, w, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, sc := range slabCases(nc.cfg) {
				label := fmt.Sprintf("%s, base %s, %s", nc.name, o.BaseDType, sc.name)
				llama.SetLoadSlabBytes(4 * sc.elem)
				src := newWeightsSource(w)
				got, err := llama.NewFromSource(b, src, o)
				if err != nil {
					want.Free()
					t.Fatalf("%s: %v", label, err)
				}
				sameModels(t, got, want, label)
				src.checkSlabs(t, sc.elem, label)
				if n := len(w.Params()); sc.elem == llama.LoadSlabBytes/4 && src.count != n {
					t.Errorf("%s: %d reads of %d tensors", label, src.count, n)
				}
				got.Free()
			}
			want.Free()
		}
	}
}

// TestNewFromSourceErrors checks that a read failing at any slab, the
// first to the last, whole tensors or slabs of a few rows, is returned as
// the source gave it and leaves nothing allocated on the backend, as an
// upload failing at any slab does (its error naming the tensor and the
// rows); and that refusals made before reading (nil arguments, an
// invalid config, a base type the backend cannot store) read nothing.
func TestNewFromSourceErrors(t *testing.T) {
	b := openCPU(t)
	defer llama.SetLoadSlabBytes(llama.SetLoadSlabBytes(llama.LoadSlabBytes))
	for _, nc := range []namedConfig{{"untied qkvo biases", biasConfig(llama.BiasQKVO, llama.RopeInterleaved)}, {"gemma2", gemma2Config(llama.RopeHalfSplit)}} {
		w := randomWeights(t, nc.cfg, 99)
		for _, slab := range []int{llama.LoadSlabBytes / 4, 3*nc.cfg.Dim + 1} {
			llama.SetLoadSlabBytes(4 * slab)
			for _, o := range []llama.Options{{}, bf16Opts} {
				all := newWeightsSource(w)
				m, err := llama.NewFromSource(b, all, o)
				if err != nil {
					t.Fatal(err)
				}
				m.Free()
				n := all.count
				for k := 1; k <= n; k++ {
					label := fmt.Sprintf("%s, base %s, slab %d", nc.name, o.BaseDType, slab)
					before := b.BytesInUse()
					src := newWeightsSource(w)
					src.failAt = k
					m, err := llama.NewFromSource(b, src, o)
					if err == nil {
						m.Free()
						t.Fatalf("%s: read %d of %d failed, but NewFromSource did not", label, k, n)
					}
					if !errors.Is(err, errSourceFailed) {
						t.Errorf("%s: read %d failed; error %v does not wrap the source's", label, k, err)
					}
					if src.count != k {
						t.Errorf("%s: read %d failed, yet %d reads were made", label, k, src.count)
					}
					if after := b.BytesInUse(); after != before {
						t.Errorf("%s: failing at read %d of %d leaves %d bytes allocated", label, k, n, after-before)
					}

					fb := &failingUploads{Backend: b, failAt: k}
					m, err = llama.NewFromSource(fb, newWeightsSource(w), o)
					if err == nil {
						m.Free()
						t.Fatalf("%s: upload %d of %d failed, but NewFromSource did not", label, k, n)
					}
					if !errors.Is(err, errUploadFailed) || !strings.Contains(err.Error(), fb.failed) {
						t.Errorf("%s: upload %d (%s) failed; error %v does not name it and wrap the backend's", label, k, fb.failed, err)
					}
					if after := b.BytesInUse(); after != before {
						t.Errorf("%s: failing at upload %d of %d leaves %d bytes allocated", label, k, n, after-before)
					}
				}
			}
		}
	}
	llama.SetLoadSlabBytes(llama.LoadSlabBytes)

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
		{"invalid config", b, &weightsSource{w: &llama.Weights{Config: bad}}, llama.Options{}, "kv"},
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

// failingUploads is a backend whose failAt-th upload fails: the Sync
// after it reports errUploadFailed (the upload itself is done, as a
// backend records an error and goes on). failed says which rows of which
// tensor it was, as the error should.
type failingUploads struct {
	backend.Backend
	uploads, failAt int
	failed          string
	pending         bool
}

var errUploadFailed = errors.New("upload failed on purpose")

func (f *failingUploads) Upload(dst backend.Tensor, src []float32) {
	f.uploads++
	f.Backend.Upload(dst, src)
	if f.uploads == f.failAt {
		f.pending = true
		f.failed = fmt.Sprintf("rows [%d, %d)", dst.Offset()/max(1, dst.Len()/dst.Dim(0)), dst.Offset()/max(1, dst.Len()/dst.Dim(0))+dst.Dim(0))
	}
}

func (f *failingUploads) Sync() error {
	err := f.Backend.Sync()
	if f.pending {
		f.pending = false
		return errUploadFailed
	}
	return err
}

// TestNewFromSourceHostMemory checks what loading from a source allocates
// on the host beyond what the backend holds (the CPU backend's buffers are
// host memory, counted too): at most one slab of float32 and a small
// overhead for the model's structures, far less than the host copy of
// every tensor that New needs, and with small slabs less than the largest
// tensor. Everything the load allocates is counted (TotalAlloc), which
// bounds the peak from above.
func TestNewFromSourceHostMemory(t *testing.T) {
	b := openCPU(t)
	defer llama.SetLoadSlabBytes(llama.SetLoadSlabBytes(llama.LoadSlabBytes))
	cfg := llama.Config{Dim: 128, HiddenDim: 344, NumLayers: 4, NumHeads: 4, NumKVHeads: 2, VocabSize: 1500,
		MaxSeqLen: 64, NormEps: 1e-5, RopeTheta: 1e4, RopeLayout: llama.RopeHalfSplit}
	w := randomWeights(t, cfg, 97)
	largest := 0
	for _, p := range w.Params() {
		largest = max(largest, len(p.Data))
	}
	const overhead = 256 << 10
	for _, slab := range []int{llama.LoadSlabBytes, 16 << 10} {
		llama.SetLoadSlabBytes(slab)
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
			buffer := min(int64(slab), 4*int64(largest))
			limit := held + buffer + overhead
			t.Logf("base %s, slab %d bytes: backend holds %d bytes, load allocated %d (limit %d; the largest tensor is %d, the host weights %d)", o.BaseDType, slab, held, allocated, limit, 4*largest, 4*cfg.NumParams())
			if allocated > limit {
				t.Errorf("base %s, slab %d bytes: loading allocated %d bytes, more than the backend's %d + the buffer's %d + %d", o.BaseDType, slab, allocated, held, buffer, overhead)
			}
		}
	}
}
