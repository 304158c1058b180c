package hf

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
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

// typedTensor is a tensor to write in a given dtype: bits holds its
// elements as stored (4 bytes an element for F32, 2 for F16 and BF16),
// value their float32 values.
type typedTensor struct {
	name  string
	shape []int
	dtype safetensors.DType
	bits  []byte
	value []float32
}

// randomTyped returns the tensor name of shape with random values that
// dtype holds exactly, drawn as stored bit patterns (moderate exponents,
// any sign and mantissa), and their float32 values (for F16 through
// safetensors.HalfToFloat32, for BF16 by widening the bits).
func randomTyped(rng *rand.Rand, name string, shape []int, dtype safetensors.DType) typedTensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	t := typedTensor{name: name, shape: shape, dtype: dtype, bits: make([]byte, n*dtype.Size()), value: make([]float32, n)}
	for i := range n {
		sign := uint32(rng.Intn(2))
		switch dtype {
		case safetensors.F32:
			u := sign<<31 | uint32(127-6+rng.Intn(8))<<23 | uint32(rng.Intn(1<<23))
			binary.LittleEndian.PutUint32(t.bits[4*i:], u)
			t.value[i] = math.Float32frombits(u)
		case safetensors.F16:
			h := uint16(sign<<15 | uint32(15-6+rng.Intn(8))<<10 | uint32(rng.Intn(1<<10)))
			binary.LittleEndian.PutUint16(t.bits[2*i:], h)
			t.value[i] = safetensors.HalfToFloat32(h)
		case safetensors.BF16:
			h := uint16(sign<<15 | uint32(127-6+rng.Intn(8))<<7 | uint32(rng.Intn(1<<7)))
			binary.LittleEndian.PutUint16(t.bits[2*i:], h)
			t.value[i] = math.Float32frombits(uint32(h) << 16)
		default:
			panic("randomTyped: dtype " + dtype)
		}
	}
	return t
}

// encodeTyped returns a safetensors file holding tensors, in the given
// order, with the dtypes they have (safetensors.Encode writes F32 only).
func encodeTyped(tensors []typedTensor) []byte {
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var data bytes.Buffer
	for _, x := range tensors {
		begin := data.Len()
		data.Write(x.bits)
		header[x.name] = map[string]any{"dtype": x.dtype, "shape": x.shape, "data_offsets": []int{begin, data.Len()}}
	}
	h, err := json.Marshal(header)
	if err != nil {
		panic(err) // strings, numbers and slices of them always encode
	}
	var out bytes.Buffer
	binary.Write(&out, binary.LittleEndian, uint64(len(h)))
	out.Write(h)
	out.Write(data.Bytes())
	return out.Bytes()
}

// writeTyped writes encodeTyped(tensors) at path.
func writeTyped(t *testing.T, path string, tensors []typedTensor) {
	t.Helper()
	if err := os.WriteFile(path, encodeTyped(tensors), 0o644); err != nil {
		t.Fatal(err)
	}
}

// typedFolder writes a checkpoint folder of cfg (its config.json from
// EncodeConfig) whose tensors are those a model of cfg has plus extra,
// each random in the dtype dtypeOf gives its name, in shards files (one
// model.safetensors for 1, else shards and an index). It returns the
// folder and the weights the tensors hold (without extra).
func typedFolder(t *testing.T, rng *rand.Rand, cfg llama.Config, dtypeOf func(name string) safetensors.DType, shards int, extra ...typedTensor) (string, *llama.Weights) {
	t.Helper()
	w, err := llama.NewWeights(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var tensors []typedTensor
	for _, p := range w.Params() {
		x := randomTyped(rng, p.Name, p.Shape, dtypeOf(p.Name))
		copy(p.Data, x.value)
		tensors = append(tensors, x)
	}
	tensors = append(tensors, extra...)
	dir := t.TempDir()
	c, err := EncodeConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), c, 0o644); err != nil {
		t.Fatal(err)
	}
	if shards == 1 {
		writeTyped(t, filepath.Join(dir, WeightsFile), tensors)
		return dir, w
	}
	weightMap := map[string]string{}
	per := (len(tensors) + shards - 1) / shards
	for i := range shards {
		part := tensors[min(i*per, len(tensors)):min((i+1)*per, len(tensors))]
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, shards)
		writeTyped(t, filepath.Join(dir, name), part)
		for _, x := range part {
			weightMap[x.name] = name
		}
	}
	idx, err := encodeIndex(weightMap, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, IndexFile), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, w
}

// allOf returns a dtypeOf giving every tensor dt; mixedTypes one giving
// each of F32, F16 and BF16 to some tensors of every kind.
func allOf(dt safetensors.DType) func(string) safetensors.DType {
	return func(string) safetensors.DType { return dt }
}

func mixedTypes(name string) safetensors.DType {
	types := []safetensors.DType{safetensors.F32, safetensors.F16, safetensors.BF16}
	return types[len(name)%3]
}

// sameBackendModels checks that got and want hold the same parameters,
// by name, storage type, shape and every downloaded bit.
func sameBackendModels(t *testing.T, got, want *llama.Model) {
	t.Helper()
	if got.Config() != want.Config() || got.BaseDType() != want.BaseDType() {
		t.Fatalf("config %+v base %s, want %+v base %s", got.Config(), got.BaseDType(), want.Config(), want.BaseDType())
	}
	gp, wp := got.Params(), want.Params()
	if len(gp) != len(wp) {
		t.Fatalf("%d parameters, want %d", len(gp), len(wp))
	}
	for i := range wp {
		g, w := gp[i], wp[i]
		if g.Name() != w.Name() || g.DType() != w.DType() || fmt.Sprint(g.Shape()) != fmt.Sprint(w.Shape()) {
			t.Fatalf("parameter %d is %s %s %v, want %s %s %v", i, g.Name(), g.DType(), g.Shape(), w.Name(), w.DType(), w.Shape())
		}
		gd, err := g.Download()
		if err != nil {
			t.Fatal(err)
		}
		wd, err := w.Download()
		if err != nil {
			t.Fatal(err)
		}
		for j := range wd {
			if math.Float32bits(gd[j]) != math.Float32bits(wd[j]) {
				t.Fatalf("%s[%d] = %v streamed, %v loaded", w.Name(), j, gd[j], wd[j])
			}
		}
	}
}

// TestOpenStreamsAsLoad builds each architecture's model from a folder
// twice, with Load and llama.New, and with Open and llama.NewFromSource,
// and checks that the two are the same model bit for bit (every
// parameter downloaded), with float32 and with bfloat16 base weights;
// that Load read the values written (F32, F16 and BF16 files, and files
// mixing them); and that the bfloat16 base holds exactly the values of a
// BF16 file. The folders are whole or sharded, tied or untied, one with
// the extras Load tolerates (an lm_head beside tied embeddings, rotary
// inv_freq buffers).
func TestOpenStreamsAsLoad(t *testing.T) {
	b := testbackend.Open(t, "cpu")
	rng := rand.New(rand.NewSource(71))
	mistral := tinyConfig(false, 2)
	mistral.Family = llama.FamilyMistral
	qwen2 := tinyConfig(true, 2)
	qwen2.AttentionBias = llama.BiasQKV
	qwen3Biased := qwen3Tiny(false)
	qwen3Biased.AttentionBias = llama.BiasQKVO
	extras := func(cfg llama.Config) []typedTensor {
		return []typedTensor{
			randomTyped(rng, llama.OutputName, []int{cfg.VocabSize, cfg.Dim}, safetensors.BF16),
			randomTyped(rng, "model.layers.1.self_attn.rotary_emb.inv_freq", []int{cfg.HeadDim() / 2}, safetensors.F32),
		}
	}
	for _, tc := range []struct {
		name   string
		cfg    llama.Config
		dtype  func(string) safetensors.DType
		shards int
		extra  bool
	}{
		{"llama tied F32", tinyConfig(true, 4), allOf(safetensors.F32), 1, false},
		{"llama untied gqa BF16 sharded", tinyConfig(false, 2), allOf(safetensors.BF16), 3, false},
		{"llama tied with extras BF16", tinyConfig(true, 1), allOf(safetensors.BF16), 1, true},
		{"qwen2 biases F16", qwen2, allOf(safetensors.F16), 1, false},
		{"qwen3 tied BF16", qwen3Tiny(true), allOf(safetensors.BF16), 1, false},
		{"qwen3 untied attention_bias mixed sharded", qwen3Biased, mixedTypes, 2, false},
		{"mistral untied F16 sharded", mistral, allOf(safetensors.F16), 4, false},
		{"gemma2 tied BF16", gemma2Tiny(true), allOf(safetensors.BF16), 1, false},
		{"gemma2 untied mixed", gemma2Tiny(false), mixedTypes, 1, false},
		{"gemma3 untied F32 sharded", gemmaTiny(false), allOf(safetensors.F32), 2, false},
		{"gemma3 tied mixed", gemmaTiny(true), mixedTypes, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.RopeLayout = llama.RopeHalfSplit
			var extra []typedTensor
			if tc.extra {
				extra = extras(cfg)
			}
			dir, written := typedFolder(t, rng, cfg, tc.dtype, tc.shards, extra...)
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
				before := b.BytesInUse()
				src, err := Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				if src.Config() != w.Config {
					t.Errorf("Open's config %+v, Load's %+v", src.Config(), w.Config)
				}
				got, err := llama.NewFromSource(b, src, o)
				if err != nil {
					t.Fatal(err)
				}
				if err := src.Close(); err != nil {
					t.Error(err)
				}
				sameBackendModels(t, got, want)
				// A bfloat16 base stores a BF16 file's values as they are.
				exact := 0
				for _, p := range got.Params() {
					if p.DType() != backend.BFloat16 || tc.dtype(p.Name()) != safetensors.BF16 {
						continue
					}
					d, err := p.Download()
					if err != nil {
						t.Fatal(err)
					}
					file, _ := written.Param(p.Name())
					for i := range d {
						if math.Float32bits(d[i]) != math.Float32bits(file.Data[i]) {
							t.Fatalf("%s[%d] = %v in the bfloat16 base, %v in the file", p.Name(), i, d[i], file.Data[i])
						}
					}
					exact++
				}
				if o.BaseDType == backend.BFloat16 && tc.dtype(llama.LayerParamName(0, llama.ModQ)) == safetensors.BF16 && exact == 0 {
					t.Error("no bfloat16 weight of a BF16 tensor was compared")
				}
				got.Free()
				if after := b.BytesInUse(); after != before {
					t.Errorf("freeing the streamed model leaves %d bytes", after-before)
				}
				want.Free()
			}
		})
	}
}

// TestOpenErrors checks that Open refuses a folder with Load's very
// errors (a missing tensor, a wrong shape, a truncated file or shard,
// missing or unlisted shards), naming the file and tensor, before
// anything reaches a backend; that a file truncated after Open fails
// NewFromSource naming the file and the tensor and leaves the backend as
// it was; and ReadTensor's own refusals.
func TestOpenErrors(t *testing.T) {
	b := testbackend.Open(t, "cpu")
	rng := rand.New(rand.NewSource(72))
	cfg := tinyConfig(false, 2)
	cfg.RopeLayout = llama.RopeHalfSplit
	good := tensorsOf(randomWeights(t, rng, cfg))
	truncated := func(t *testing.T, dir string) string {
		path := filepath.Join(dir, WeightsFile)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data[:len(data)-3], 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	// sharded writes a folder in shards and returns it and its second
	// shard.
	sharded := func(t *testing.T) (string, string) {
		dir := filepath.Join(t.TempDir(), "ckpt")
		w := randomWeights(t, rng, cfg)
		if err := Write(dir, w, &WriteOptions{MaxShardSize: 4000}); err != nil {
			t.Fatal(err)
		}
		shards, _ := filepath.Glob(filepath.Join(dir, "model-00002-of-*.safetensors"))
		if len(shards) != 1 {
			t.Fatalf("second shard: %v", shards)
		}
		return dir, shards[0]
	}
	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
		want []string
	}{
		{"missing tensor", func(t *testing.T) string { return writeRaw(t, cfg, without(good, "model.layers.1.mlp.up_proj.weight")) },
			[]string{WeightsFile, `no tensor "model.layers.1.mlp.up_proj.weight"`}},
		{"wrong shape", func(t *testing.T) string {
			return writeRaw(t, cfg, reshaped(good, "model.layers.0.self_attn.k_proj.weight", 16, 8))
		}, []string{WeightsFile, `"model.layers.0.self_attn.k_proj.weight" has shape [16 8]; the config implies [8 16]`}},
		{"truncated file", func(t *testing.T) string { return truncated(t, writeRaw(t, cfg, good)) },
			[]string{WeightsFile, `tensor "lm_head.weight"`, "file truncated?"}},
		{"truncated shard", func(t *testing.T) string {
			dir, shard := sharded(t)
			data, err := os.ReadFile(shard)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(shard, data[:len(data)-1], 0o644)
			return dir
		}, []string{"model-00002-of-", "file truncated?"}},
		{"missing shard", func(t *testing.T) string {
			dir, shard := sharded(t)
			os.Remove(shard)
			return dir
		}, []string{"model-00002-of-", IndexFile}},
		{"no config", func(t *testing.T) string { return t.TempDir() }, []string{ConfigFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			_, loadErr := Load(dir)
			src, err := Open(dir)
			if err == nil {
				src.Close()
				t.Fatal("Open accepted the folder")
			}
			if loadErr == nil || err.Error() != loadErr.Error() {
				t.Errorf("Open's error\n%v\nis not Load's\n%v", err, loadErr)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
		})
	}

	// Truncated after Open, as a file being replaced or a full disk may
	// leave it: the upload stops at the tensor whose data is gone, and
	// frees what it uploaded.
	for _, o := range []llama.Options{{BaseDType: backend.Float32}, {BaseDType: backend.BFloat16}} {
		dir := writeRaw(t, cfg, good)
		src, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, WeightsFile)
		f, err := safetensors.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		infos := f.Tensors()
		f.Close()
		// Cut the file in the middle of its third tensor from the end.
		cut := infos[len(infos)-3]
		st, _ := os.Stat(path)
		dataStart := st.Size() - infos[len(infos)-1].End
		if err := os.Truncate(path, dataStart+(cut.Begin+cut.End)/2); err != nil {
			t.Fatal(err)
		}
		before := b.BytesInUse()
		m, err := llama.NewFromSource(b, src, o)
		src.Close()
		if err == nil {
			m.Free()
			t.Fatalf("a file truncated after Open was read")
		}
		for _, s := range []string{path, fmt.Sprintf("%q", cut.Name)} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("base %s: error %q does not name %s", o.BaseDType, err, s)
			}
		}
		if after := b.BytesInUse(); after != before {
			t.Errorf("base %s: the failed load leaves %d bytes allocated", o.BaseDType, after-before)
		}
	}

	// ReadTensor refuses names the model does not use (an lm_head beside
	// tied embeddings among them), a destination of the wrong size, and
	// reads after Close.
	tied := tinyConfig(true, 2)
	tied.RopeLayout = llama.RopeHalfSplit
	tw := randomWeights(t, rng, tied)
	dir := writeRaw(t, tied, append(tensorsOf(tw), safetensors.Tensor{Name: llama.OutputName, Shape: []int{19, 16}, Data: make([]float32, 19*16)}))
	src, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	norm := make([]float32, tied.Dim)
	if err := src.ReadTensor(llama.NormName, norm); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(norm) != fmt.Sprint(tw.FinalNorm) {
		t.Errorf("read %s as %v, want %v", llama.NormName, norm, tw.FinalNorm)
	}
	for _, tc := range []struct {
		name string
		dst  []float32
		want string
	}{
		{llama.OutputName, make([]float32, 19*16), `"lm_head.weight" is not a tensor that a model of this config uses`},
		{"model.layers.2.mlp.up_proj.weight", make([]float32, 24*16), "is not a tensor that a model of this config uses"},
		{llama.NormName, make([]float32, 15), "the destination holds 15"},
	} {
		if err := src.ReadTensor(tc.name, tc.dst); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), WeightsFile) {
			t.Errorf("ReadTensor(%s, %d values): error %v, want one naming %s and containing %q", tc.name, len(tc.dst), err, WeightsFile, tc.want)
		}
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := src.ReadTensor(llama.NormName, norm); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("ReadTensor after Close: %v", err)
	}
}

// TestOpenHostMemory checks what Open and llama.NewFromSource allocate on
// the host for a BF16 folder, the CPU backend's buffers included (they
// are host memory): the model as the backend holds it, one float32
// buffer of the largest tensor (whole: it is smaller than a load's slab,
// TestOpenSlabbedEmbedding loads one larger), a margin of 256 KiB a
// tensor and a small overhead, where Load + New allocate
// the whole model in float32 besides. Everything allocated is counted
// (TotalAlloc), which bounds the peak from above.
func TestOpenHostMemory(t *testing.T) {
	b := testbackend.Open(t, "cpu")
	rng := rand.New(rand.NewSource(73))
	cfg := llama.Config{Dim: 128, HiddenDim: 344, NumLayers: 4, NumHeads: 4, NumKVHeads: 2, VocabSize: 1500,
		MaxSeqLen: 64, NormEps: 1e-5, RopeTheta: 1e4, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit}
	dir, w := typedFolder(t, rng, cfg, allOf(safetensors.BF16), 1)
	largest, chunks := 0, int64(0)
	for _, p := range w.Params() {
		largest = max(largest, len(p.Data))
		chunks += min(1<<18, 2*int64(len(p.Data)))
	}
	const overhead = 512 << 10
	for _, o := range []llama.Options{{BaseDType: backend.Float32}, {BaseDType: backend.BFloat16}} {
		measure := func(load func() *llama.Model) (allocated, held int64) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := b.BytesInUse()
			m := load()
			runtime.ReadMemStats(&after)
			held = b.BytesInUse() - start
			m.Free()
			return int64(after.TotalAlloc - before.TotalAlloc), held
		}
		streamed, held := measure(func() *llama.Model {
			src, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			m, err := llama.NewFromSource(b, src, o)
			if err != nil {
				t.Fatal(err)
			}
			return m
		})
		whole, _ := measure(func() *llama.Model {
			w, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			m, err := llama.NewWithOptions(b, w, o)
			if err != nil {
				t.Fatal(err)
			}
			return m
		})
		limit := held + 4*int64(largest) + chunks + overhead
		t.Logf("base %s: backend %d bytes; Open + NewFromSource allocated %d (limit %d), Load + New %d", o.BaseDType, held, streamed, limit, whole)
		if streamed > limit {
			t.Errorf("base %s: Open + NewFromSource allocated %d bytes, more than the backend's %d + the largest tensor's %d + chunks of %d + %d", o.BaseDType, streamed, held, 4*largest, chunks, overhead)
		}
		if host := 4 * cfg.NumParams(); whole < held+host {
			t.Errorf("base %s: Load + New allocated %d bytes, less than the backend's %d + the host weights' %d: the comparison measures nothing", o.BaseDType, whole, held, host)
		}
	}
}
