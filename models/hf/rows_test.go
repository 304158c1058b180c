package hf

import (
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/safetensors"
)

// TestReadRows reads every tensor of a sharded folder mixing F32, F16 and
// BF16 files (biases and QK-norms among them) in runs of 1, 2, 3 and all
// of its rows, and checks every value's bits against what was written;
// and checks ReadRows' refusals: names the model does not use, rows
// outside the tensor or not whole, reads after Close, each naming the
// file and the tensor.
func TestReadRows(t *testing.T) {
	rng := rand.New(rand.NewSource(75))
	cfg := qwen3Tiny(false)
	cfg.AttentionBias = llama.BiasQKVO
	cfg.RopeLayout = llama.RopeHalfSplit
	dir, written := typedFolder(t, rng, cfg, mixedTypes, 2)
	src, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range written.Params() {
		rows := p.Shape[0]
		cols := len(p.Data) / rows
		for _, k := range []int{1, 2, 3, rows} {
			for r0 := 0; r0 < rows; r0 += k {
				r1 := min(rows, r0+k)
				dst := make([]float32, (r1-r0)*cols)
				if err := src.ReadRows(p.Name, r0, dst); err != nil {
					t.Fatalf("%s rows [%d, %d): %v", p.Name, r0, r1, err)
				}
				for i, v := range dst {
					if w := p.Data[r0*cols+i]; math.Float32bits(v) != math.Float32bits(w) {
						t.Fatalf("%s (%s) rows [%d, %d): value %d = %v, written %v", p.Name, mixedTypes(p.Name), r0, r1, i, v, w)
					}
				}
			}
		}
	}
	embed := filepath.Join(dir, "model-00001-of-00002.safetensors") // Params order puts it first
	for _, tc := range []struct {
		name string
		row0 int
		n    int
		want []string
	}{
		{"model.layers.2.mlp.up_proj.weight", 0, cfg.Dim, []string{dir, "is not a tensor that a model of this config uses"}},
		{llama.EmbedName, cfg.VocabSize - 1, 2 * cfg.Dim, []string{embed, fmt.Sprintf("rows [%d, %d) run past them", cfg.VocabSize-1, cfg.VocabSize+1)}},
		{llama.EmbedName, 1, cfg.Dim + 1, []string{embed, "not a whole number of rows"}},
		{llama.EmbedName, -1, cfg.Dim, []string{embed, "cannot read from row -1"}},
	} {
		err := src.ReadRows(tc.name, tc.row0, make([]float32, tc.n))
		for _, s := range append(tc.want, fmt.Sprintf("%q", tc.name)) {
			if err == nil || !strings.Contains(err.Error(), s) {
				t.Errorf("ReadRows(%s, %d, %d values): error %v, want one containing %q", tc.name, tc.row0, tc.n, err, s)
			}
		}
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.ReadRows(llama.NormName, 0, make([]float32, cfg.Dim)); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("ReadRows after Close: %v", err)
	}
}

// TestOpenSlabbedEmbedding loads a folder whose BF16 embedding is one and
// a half times llama.LoadSlabBytes in float32, so that llama.NewFromSource
// reads and uploads it in two slabs of the default size: the model equals
// Load + New bit for bit, with float32 and bfloat16 base weights; the
// load allocates one slab besides the model, less than the embedding in
// float32; and a file truncated after Open in the embedding's second slab
// fails the load after its first was uploaded, naming the file, the
// tensor and the rows, and leaves the backend as it was.
func TestOpenSlabbedEmbedding(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and loads a 50 MB embedding; not with -short")
	}
	b := testbackend.Open(t, "cpu")
	rng := rand.New(rand.NewSource(76))
	cfg := tinyConfig(true, 2)
	cfg.RopeLayout = llama.RopeHalfSplit
	slabRows := llama.LoadSlabBytes / (4 * cfg.Dim)
	cfg.VocabSize = slabRows * 3 / 2
	dir, written := typedFolder(t, rng, cfg, allOf(safetensors.BF16), 1)
	largest := 4 * int64(cfg.VocabSize*cfg.Dim)
	const overhead = 512 << 10
	w, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameWeights(t, w, written)
	for _, o := range []llama.Options{{BaseDType: backend.Float32}, {BaseDType: backend.BFloat16}} {
		want, err := llama.NewWithOptions(b, w, o)
		if err != nil {
			t.Fatal(err)
		}
		src, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		held := b.BytesInUse()
		got, err := llama.NewFromSource(b, src, o)
		if err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		held = b.BytesInUse() - held
		src.Close()
		allocated := int64(after.TotalAlloc - before.TotalAlloc)
		t.Logf("base %s: backend %d bytes; NewFromSource allocated %d (the embedding is %d in float32, a slab %d)", o.BaseDType, held, allocated, largest, llama.LoadSlabBytes)
		if limit := held + llama.LoadSlabBytes + overhead; allocated > limit {
			t.Errorf("base %s: NewFromSource allocated %d bytes, more than the backend's %d + a slab's %d + %d", o.BaseDType, allocated, held, llama.LoadSlabBytes, overhead)
		}
		sameBackendModels(t, got, want)
		got.Free()
		want.Free()
	}
	w = nil

	path := filepath.Join(dir, WeightsFile)
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := f.Info(llama.EmbedName)
	last := f.Tensors()[len(f.Tensors())-1]
	f.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	dataStart := st.Size() - last.End
	opts := []llama.Options{{BaseDType: backend.Float32}, {BaseDType: backend.BFloat16}}
	var srcs []*Source
	for range opts {
		src, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, src)
	}
	// 100 rows and a byte into the second slab.
	if err := os.Truncate(path, dataStart+info.Begin+int64(2*(slabRows+100)*cfg.Dim)+1); err != nil {
		t.Fatal(err)
	}
	for i, o := range opts {
		src := srcs[i]
		before := b.BytesInUse()
		m, err := llama.NewFromSource(b, src, o)
		src.Close()
		if err == nil {
			m.Free()
			t.Fatal("an embedding cut short after Open was loaded")
		}
		for _, s := range []string{path, fmt.Sprintf("%q", llama.EmbedName), fmt.Sprintf("rows [%d, %d)", slabRows, cfg.VocabSize), "truncated"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("base %s: error %q does not contain %q", o.BaseDType, err, s)
			}
		}
		if after := b.BytesInUse(); after != before {
			t.Errorf("base %s: the failed load leaves %d bytes allocated", o.BaseDType, after-before)
		}
	}
}
