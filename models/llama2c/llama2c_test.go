package llama2c

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testdata"
	"github.com/sora-go/sora/models/llama"
)

func floatAt(t *testing.T, b []byte, off int64) float32 {
	t.Helper()
	return math.Float32frombits(binary.LittleEndian.Uint32(b[off:]))
}

func TestLoadStories260K(t *testing.T) {
	path, _ := testdata.Stories260K(t)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w, format, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if format != Legacy {
		t.Errorf("format = %v, want legacy", format)
	}
	// The values the data README documents.
	want := llama.Config{Dim: 64, HiddenDim: 172, NumLayers: 5, NumHeads: 8, NumKVHeads: 4, VocabSize: 512,
		MaxSeqLen: 512, NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true, RopeLayout: llama.RopeInterleaved}
	if w.Config != want {
		t.Fatalf("config = %+v, want %+v", w.Config, want)
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	// Spot-check tensors against offsets worked out by hand from the README's
	// layout: header 28 bytes, embedding 512·64, rms_att 5·64, wq 5·64·64,
	// wk 5·32·64, wv 5·32·64, wo 5·64·64, rms_ffn 5·64, w1 5·172·64,
	// w2 5·64·172, w3 5·172·64, rms_final 64.
	const f = 4
	embed := int64(28)
	rmsAtt := embed + f*512*64
	wq := rmsAtt + f*5*64
	wk := wq + f*5*64*64
	wv := wk + f*5*32*64
	wo := wv + f*5*32*64
	rmsFFN := wo + f*5*64*64
	w1 := rmsFFN + f*5*64
	w2 := w1 + f*5*172*64
	w3 := w2 + f*5*64*172
	rmsFinal := w3 + f*5*172*64
	checks := []struct {
		name string
		got  float32
		off  int64
	}{
		{"embed[0]", w.TokenEmbedding[0], embed},
		{"embed[last]", w.TokenEmbedding[512*64-1], rmsAtt - f},
		{"rms_att[2][3]", w.Layers[2].AttnNorm[3], rmsAtt + f*(2*64+3)},
		{"wq[4][100]", w.Layers[4].Wq[100], wq + f*(4*64*64+100)},
		{"wk[1][7]", w.Layers[1].Wk[7], wk + f*(1*32*64+7)},
		{"wv[3][2047]", w.Layers[3].Wv[2047], wv + f*(3*32*64+2047)},
		{"wo[0][5]", w.Layers[0].Wo[5], wo + f*5},
		{"rms_ffn[4][63]", w.Layers[4].FFNNorm[63], rmsFFN + f*(4*64+63)},
		{"w1[2][9]", w.Layers[2].W1[9], w1 + f*(2*172*64+9)},
		{"w2[1][1000]", w.Layers[1].W2[1000], w2 + f*(1*64*172+1000)},
		{"w3[4][0]", w.Layers[4].W3[0], w3 + f*(4*172*64)},
		{"rms_final[10]", w.FinalNorm[10], rmsFinal + f*10},
	}
	for _, c := range checks {
		if want := floatAt(t, raw, c.off); math.Float32bits(c.got) != math.Float32bits(want) {
			t.Errorf("%s = %v, file has %v at offset %d", c.name, c.got, want, c.off)
		}
	}
	// The legacy RoPE tables follow and end the file: cos(0) = 1, and the
	// file size is everything above plus 2·512·4 floats.
	tables := rmsFinal + f*64
	if got := floatAt(t, raw, tables); got != 1 {
		t.Errorf("first cos table entry = %v, want 1", got)
	}
	if tables+f*2*512*4 != int64(len(raw)) {
		t.Errorf("hand layout ends at %d, file is %d bytes", tables+f*2*512*4, len(raw))
	}
}

// TestLegacyRewrite writes stories260K back in the legacy format: every
// byte outside the (ignored) RoPE tables must equal the original file, and
// the tables must be llama2.c's to float32 rounding.
func TestLegacyRewrite(t *testing.T) {
	path, _ := testdata.Stories260K(t)
	raw, _ := os.ReadFile(path)
	w, _, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Encode(&buf, w, Legacy); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	if len(out) != len(raw) {
		t.Fatalf("rewrite is %d bytes, original %d", len(out), len(raw))
	}
	tables := int64(len(raw)) - 4*2*512*4
	if !bytes.Equal(out[:tables], raw[:tables]) {
		t.Fatal("rewritten header or weights differ from the original")
	}
	for off := tables; off < int64(len(raw)); off += 4 {
		a, b := floatAt(t, out, off), floatAt(t, raw, off)
		if math.Abs(float64(a-b)) > 1e-6 {
			t.Fatalf("RoPE table at %d: wrote %v, original %v", off, a, b)
		}
	}
}

func randomWeights(t *testing.T, rng *rand.Rand, cfg llama.Config) *llama.Weights {
	t.Helper()
	w, err := llama.NewWeights(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range w.Params() {
		for i := range p.Data {
			p.Data[i] = float32(rng.NormFloat64())
		}
	}
	return w
}

func small(tied bool) llama.Config {
	return llama.Config{Dim: 8, HiddenDim: 12, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, VocabSize: 11, MaxSeqLen: 6,
		NormEps: llama.DefaultNormEps, RopeTheta: llama.DefaultRopeTheta, TiedEmbeddings: tied}
}

func equalWeights(t *testing.T, got, want *llama.Weights) {
	t.Helper()
	if got.Config != want.Config {
		t.Fatalf("config %+v, want %+v", got.Config, want.Config)
	}
	gp, wp := got.Params(), want.Params()
	for i := range wp {
		for j := range wp[i].Data {
			if math.Float32bits(gp[i].Data[j]) != math.Float32bits(wp[i].Data[j]) {
				t.Fatalf("%s[%d] = %v, want %v", wp[i].Name, j, gp[i].Data[j], wp[i].Data[j])
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	dir := t.TempDir()
	for _, format := range []Format{Legacy, Version1} {
		for _, tied := range []bool{true, false} {
			w := randomWeights(t, rng, small(tied))
			path := filepath.Join(dir, "m.bin")
			if err := Write(path, w, format); err != nil {
				t.Fatal(err)
			}
			got, gotFormat, err := Load(path)
			if err != nil {
				t.Fatalf("%v tied=%v: %v", format, tied, err)
			}
			if gotFormat != format {
				t.Errorf("format %v read back as %v", format, gotFormat)
			}
			equalWeights(t, got, w)

			// Half-split weights are written in the interleaved layout.
			hs, _ := w.Clone()
			if err := hs.ToLayout(llama.RopeHalfSplit); err != nil {
				t.Fatal(err)
			}
			if err := Write(path, hs, format); err != nil {
				t.Fatal(err)
			}
			got, _, err = Load(path)
			if err != nil {
				t.Fatal(err)
			}
			equalWeights(t, got, w)
		}
	}
}

// TestVersion1Layout checks the version-1 writer against the layout of
// llama2.c's export.py, offset by offset.
func TestVersion1Layout(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	w := randomWeights(t, rng, small(false))
	var buf bytes.Buffer
	if err := Encode(&buf, w, Version1); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	le := binary.LittleEndian
	if le.Uint32(b) != 0x616b3432 || string(b[:4]) != "24ka" || le.Uint32(b[4:]) != 1 {
		t.Fatalf("bad magic/version % x", b[:8])
	}
	for i, want := range []int32{8, 12, 2, 4, 2, 11, 6} {
		if got := int32(le.Uint32(b[8+4*i:])); got != want {
			t.Errorf("header field %d = %d, want %d", i, got, want)
		}
	}
	if b[36] != 0 {
		t.Errorf("shared flag = %d for an untied model", b[36])
	}
	for i := 37; i < 256; i++ {
		if b[i] != 0 {
			t.Fatalf("padding byte %d = %d", i, b[i])
		}
	}
	// Norms first: attention norms, ffn norms, final norm; then embedding,
	// wq, wk, wv, wo, w1, w2, w3 for all layers, then the classifier.
	const d, h, kv, v, L = 8, 12, 4, 11, 2
	off := int64(256)
	next := func(n int64) int64 { o := off; off += 4 * n; return o }
	checks := []struct {
		name string
		got  float32
		off  int64
	}{
		{"attn_norm[0][0]", w.Layers[0].AttnNorm[0], next(L * d)},
		{"ffn_norm[0][0]", w.Layers[0].FFNNorm[0], next(L * d)},
		{"norm[0]", w.FinalNorm[0], next(d)},
		{"embed[0]", w.TokenEmbedding[0], next(v * d)},
		{"wq[0][0]", w.Layers[0].Wq[0], next(L * d * d)},
		{"wk[0][0]", w.Layers[0].Wk[0], next(L * kv * d)},
		{"wv[0][0]", w.Layers[0].Wv[0], next(L * kv * d)},
		{"wo[0][0]", w.Layers[0].Wo[0], next(L * d * d)},
		{"w1[0][0]", w.Layers[0].W1[0], next(L * h * d)},
		{"w2[0][0]", w.Layers[0].W2[0], next(L * d * h)},
		{"w3[0][0]", w.Layers[0].W3[0], next(L * h * d)},
		{"output[0]", w.Output[0], next(v * d)},
	}
	if off != int64(len(b)) {
		t.Fatalf("layout ends at %d, file is %d bytes", off, len(b))
	}
	for _, c := range checks {
		if got := floatAt(t, b, c.off); got != c.got {
			t.Errorf("%s: file has %v at %d, want %v", c.name, got, c.off, c.got)
		}
	}
	if floatAt(t, b, 256+4*d) != w.Layers[1].AttnNorm[0] {
		t.Error("second layer's attention norm is not right after the first")
	}
}

// TestTruncated cuts stories260K (in both formats) at many points; every
// prefix must give an error naming the file and saying what was expected.
func TestTruncated(t *testing.T) {
	path, _ := testdata.Stories260K(t)
	legacy, _ := os.ReadFile(path)
	w, _, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var v1 bytes.Buffer
	if err := Encode(&v1, w, Version1); err != nil {
		t.Fatal(err)
	}
	for name, full := range map[string][]byte{"legacy": legacy, "v1": v1.Bytes()} {
		n := int64(len(full))
		cuts := []int64{0, 1, 4, 27, 28, 29, 100, 255, 256, 257, n / 2, n - 4, n - 1}
		for i := int64(1); i < 200; i++ {
			cuts = append(cuts, n*i/200)
		}
		for _, cut := range cuts {
			_, _, err := Read(bytes.NewReader(full[:cut]), cut, "cut.bin")
			if err == nil {
				t.Fatalf("%s cut at %d of %d: accepted", name, cut, n)
			}
			msg := err.Error()
			if !strings.Contains(msg, "cut.bin") || !(strings.Contains(msg, "truncated") || strings.Contains(msg, "too short")) {
				t.Fatalf("%s cut at %d: unclear error %q", name, cut, msg)
			}
		}
		// And one byte too many.
		long := append(append([]byte{}, full...), 0)
		if _, _, err := Read(bytes.NewReader(long), n+1, "long.bin"); err == nil || !strings.Contains(err.Error(), "trailing data") {
			t.Errorf("%s with a trailing byte: %v", name, err)
		}
	}
}

func legacyHeader(fields ...int32) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.LittleEndian.AppendUint32(b, uint32(f))
	}
	return b
}

func v1Header(version int32, flag byte, fields ...int32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, Magic)
	b = binary.LittleEndian.AppendUint32(b, uint32(version))
	b = append(b, legacyHeader(fields...)...)
	b = append(b, flag)
	return append(b, make([]byte, 256-len(b))...)
}

func TestBadHeaders(t *testing.T) {
	ok := []int32{8, 12, 2, 4, 2, 11, 6}
	with := func(i int, v int32) []int32 { f := append([]int32{}, ok...); f[i] = v; return f }
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"zero dim", legacyHeader(with(0, 0)...), "dim = 0"},
		{"negative layers", legacyHeader(with(2, -1)...), "n_layers = -1"},
		{"heads", legacyHeader(with(3, 3)...), "not a multiple of n_heads 3"},
		{"kv heads", legacyHeader(with(4, 3)...), "n_kv_heads 3"},
		{"zero vocab", legacyHeader(with(5, 0)...), "vocab_size = 0"},
		{"min vocab", legacyHeader(with(5, math.MinInt32)...), "vocab_size = 2147483648"},
		{"huge model", legacyHeader(1<<24, 1<<24, 1<<20, 1<<10, 1<<10, 1<<20, 1<<20), "parameters"},
		{"big but valid", legacyHeader(1<<14, 1<<16, 1<<10, 1<<7, 1<<7, 1<<16, 1<<12), "truncated"},
		{"v1 version 2", v1Header(2, 1, ok...), "version 2 is not supported"},
		{"v1 flag", v1Header(1, 7, ok...), "shared_classifier flag is 7"},
		{"v1 short", v1Header(1, 1, ok...)[:100], "too short for the 256-byte version-1 header"},
		{"v1 vocab", v1Header(1, 1, with(5, -11)...), "vocab_size = -11"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, _, err := Read(bytes.NewReader(c.file), int64(len(c.file)), "bad.bin")
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "bad.bin") {
				t.Fatalf("error %v, want one naming bad.bin and containing %q", err, c.want)
			}
			// A header claiming billions of parameters must not be believed.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("rejecting a %d-byte file allocated %d bytes", len(c.file), grew)
			}
		})
	}
}

func TestWriteRejects(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	w := randomWeights(t, rng, small(true))
	w.Config.RopeTheta = 500000
	path := filepath.Join(t.TempDir(), "x.bin")
	if err := Write(path, w, Legacy); err == nil || !strings.Contains(err.Error(), "rope theta") {
		t.Errorf("theta 500000: %v", err)
	}
	w.Config.RopeTheta = llama.DefaultRopeTheta
	w.Config.RopeScaling = llama.RopeScaling{Type: llama.RopeScalingLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192}
	if err := Write(path, w, Version1); err == nil || !strings.Contains(err.Error(), "cannot record rope scaling (llama3, factor 8)") {
		t.Errorf("llama3 rope scaling: %v", err)
	}
	w.Config.RopeScaling = llama.RopeScaling{}
	// Biases: a Qwen2-shaped model otherwise within the format (llama2.c's
	// eps and theta) is refused, in either format, for the biases alone.
	for _, kind := range []llama.AttentionBias{llama.BiasQKV, llama.BiasQKVO} {
		cfg := small(true)
		cfg.AttentionBias = kind
		bw := randomWeights(t, rng, cfg)
		for _, format := range []Format{Legacy, Version1} {
			err := Write(path, bw, format)
			if err == nil || !strings.Contains(err.Error(), "cannot store attention biases (this model has them on "+kind.String()) {
				t.Errorf("%v biases, %v: %v", kind, format, err)
			}
			var buf bytes.Buffer
			if err := Encode(&buf, bw, format); err == nil || buf.Len() != 0 {
				t.Errorf("%v biases, %v: Encode wrote %d bytes, error %v", kind, format, buf.Len(), err)
			}
		}
	}
	// A head width other than dim / heads (Qwen3, Mistral Nemo) and
	// QK-norm have no place in the header; an explicit head width equal
	// to dim / heads is the same model and writes.
	for _, tc := range []struct {
		name string
		edit func(*llama.Config)
		want string
	}{
		{"head width", func(c *llama.Config) { c.HeadWidth = 2 * c.Dim / c.NumHeads }, "cannot record head_dim"},
		{"qk-norm", func(c *llama.Config) { c.QKNorm = true }, "cannot store QK-norm weights"},
		// Gemma 3 in llama2.c's own eps and theta: refused for what it is.
		{"gemma 3", func(c *llama.Config) {
			c.QKNorm, c.Family, c.Activation = true, llama.FamilyGemma3, llama.GELUTanh
		}, `cannot hold Gemma 3 (family "gemma3"`},
		// Gemma 2 in llama2.c's eps and theta, with heads dim / n_heads
		// wide and no sliding layer, passes every other check: its
		// post-attention and post-feed-forward norms would be dropped,
		// and its norms of 1 + w, √dim embedding scale, GeGLU and
		// soft-caps read as LLaMA's.
		{"gemma 2", func(c *llama.Config) {
			c.Family, c.Activation = llama.FamilyGemma2, llama.GELUTanh
			c.AttnLogitSoftcap, c.FinalLogitSoftcap = 50, 30
		}, `cannot hold Gemma 2 (family "gemma2"`},
		{"gemma 2, silu, no caps", func(c *llama.Config) { c.Family = llama.FamilyGemma2 }, `cannot hold Gemma 2 (family "gemma2"`},
		// Mistral 7B v0.1 keeps llama2.c's eps and theta; its sliding
		// window has no header field and would be dropped, changing
		// every position past the window. Without one it is LLaMA.
		{"mistral window", func(c *llama.Config) {
			c.Family, c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = llama.FamilyMistral, strings.Repeat("s", c.NumLayers), 3, c.RopeTheta
		}, "cannot record a sliding window (3 positions, every layer"},
		{"mistral without window", func(c *llama.Config) { c.Family = llama.FamilyMistral }, ""},
		{"same head width", func(c *llama.Config) { c.HeadWidth = c.Dim / c.NumHeads }, ""},
	} {
		cfg := small(true)
		tc.edit(&cfg)
		hw := randomWeights(t, rng, cfg)
		for _, format := range []Format{Legacy, Version1} {
			err := Write(path, hw, format)
			if tc.want == "" {
				if err != nil {
					t.Errorf("%s, %v: %v", tc.name, format, err)
				}
				continue
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s, %v: %v, want an error containing %q", tc.name, format, err, tc.want)
			}
		}
	}
	os.Remove(path)
	w.Layers[0].Wq = w.Layers[0].Wq[:3]
	if err := Write(path, w, Version1); err == nil {
		t.Error("wrote weights with a short tensor")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Error("a failed Write left a file")
	}
}

// FuzzRead feeds arbitrary bytes to the checkpoint reader: it must never
// panic, and whatever it accepts must survive a write/read round trip.
func FuzzRead(f *testing.F) {
	rng := rand.New(rand.NewSource(8))
	for _, format := range []Format{Legacy, Version1} {
		for _, tied := range []bool{true, false} {
			cfg := llama.Config{Dim: 4, HiddenDim: 3, NumLayers: 1, NumHeads: 2, NumKVHeads: 1, VocabSize: 5, MaxSeqLen: 2,
				NormEps: llama.DefaultNormEps, RopeTheta: llama.DefaultRopeTheta, TiedEmbeddings: tied}
			w, _ := llama.NewWeights(cfg)
			for _, p := range w.Params() {
				for i := range p.Data {
					p.Data[i] = float32(rng.NormFloat64())
				}
			}
			var buf bytes.Buffer
			Encode(&buf, w, format)
			f.Add(buf.Bytes())
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w, format, err := Read(bytes.NewReader(b), int64(len(b)), "fuzz.bin")
		if err != nil {
			return
		}
		if w.Config.NumParams()*4 > int64(len(b)) {
			t.Fatalf("accepted %d parameters from a %d-byte file", w.Config.NumParams(), len(b))
		}
		var out bytes.Buffer
		if err := Encode(&out, w, format); err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		again, format2, err := Read(bytes.NewReader(out.Bytes()), int64(out.Len()), "again.bin")
		if err != nil || format2 != format {
			t.Fatalf("re-encoded checkpoint rejected: %v", err)
		}
		equalWeights(t, again, w)
	})
}

// TestStat checks that Stat reads a checkpoint's configuration as Load
// does, and refuses what Load refuses for its header or size: the
// tokenizer beside the model, a cut file, a file with a byte too many.
func TestStat(t *testing.T) {
	path, tok := testdata.Stories260K(t)
	w, format, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, sformat, err := Stat(path)
	if err != nil || cfg != w.Config || sformat != format {
		t.Fatalf("Stat = %+v, %v, %v; Load's config %+v, format %v", cfg, sformat, err, w.Config, format)
	}
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"cut.bin": full[:len(full)-4], "long.bin": append(append([]byte{}, full...), 0)} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Stat(p); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Stat of %s: %v, want an error naming it", name, err)
		}
	}
	if _, _, err := Stat(tok); err == nil {
		t.Errorf("Stat of the tokenizer %s: accepted", tok)
	}
}
