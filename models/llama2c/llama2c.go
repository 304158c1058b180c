// Package llama2c reads and writes model checkpoints in the formats of
// Andrej Karpathy's llama2.c.
//
// Two float32 formats are supported:
//
//   - Legacy (version 0): seven little-endian int32 — dim, hidden_dim,
//     n_layers, n_heads, n_kv_heads, vocab_size, seq_len — where a negative
//     vocab_size means a separate output classifier follows; then the token
//     embedding, each per-layer kind for all layers (attention norms, wq,
//     wk, wv, wo, ffn norms, w1, w2, w3), the final norm, two RoPE tables of
//     seq_len·head_size/2 floats that readers skip, and the classifier if
//     not shared.
//   - Version 1: a 256-byte header — uint32 magic 0x616b3432 ("ak42"),
//     int32 version 1, the same seven int32 (vocab_size positive), a uint8
//     shared-classifier flag, zero padding — then all norms first
//     (attention norms, ffn norms, final norm), the token embedding, wq, wk,
//     wv, wo, w1, w2, w3 for all layers, and the classifier if not shared.
//
// Neither format records the RMSNorm epsilon or the rotary base; the
// llama2.c values (1e-5 and 10000) are assumed. Weights are in the
// interleaved rotary layout. The quantized version 2 is not supported.
//
// Readers check the file size against what the header implies before
// allocating anything, so a corrupt or hostile header can never make them
// allocate more than the file holds.
package llama2c

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/sora-go/sora/internal/atomicfile"
	"github.com/sora-go/sora/models/llama"
)

// Format is a llama2.c checkpoint format version.
type Format int

const (
	// Legacy is llama2.c's original export (version 0), used by the
	// published tinyllamas checkpoints such as stories260K.bin.
	Legacy Format = 0
	// Version1 is the "ak42" format with a 256-byte header and norms first.
	Version1 Format = 1
)

// String returns "legacy" or "version 1".
func (f Format) String() string {
	switch f {
	case Legacy:
		return "legacy"
	case Version1:
		return "version 1"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Magic is the first word of a version-1 file, "ak42" read as a
// little-endian uint32.
const Magic = 0x616b3432

const (
	legacyHeaderSize = 7 * 4
	v1HeaderSize     = 256
)

// Load reads the checkpoint at path, detecting its format.
func Load(path string) (*llama.Weights, Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("llama2c: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("llama2c: %w", err)
	}
	return Read(f, st.Size(), path)
}

// Read reads a checkpoint of the given size through r, detecting its
// format. name is used in error messages.
func Read(r io.ReaderAt, size int64, name string) (*llama.Weights, Format, error) {
	cfg, format, header, err := readHeader(r, size, name)
	if err != nil {
		return nil, 0, err
	}
	skip := int64(0)
	if format == Legacy {
		skip = legacyRopeFloats(cfg)
	}
	if err := checkSize(cfg, format, header, size, name); err != nil {
		return nil, 0, err
	}
	w, err := llama.NewWeights(cfg)
	if err != nil {
		return nil, 0, fmt.Errorf("llama2c: %s: %w", name, err)
	}
	sr := bufio.NewReaderSize(io.NewSectionReader(r, header, size-header), 1<<16)
	for _, t := range order(w, format) {
		if t.data == nil { // legacy RoPE tables
			if _, err := sr.Discard(int(4 * skip)); err != nil {
				return nil, 0, fmt.Errorf("llama2c: %s: skipping %s: %v", name, t.name, err)
			}
			continue
		}
		if err := readFloats(sr, t.data); err != nil {
			return nil, 0, fmt.Errorf("llama2c: %s: reading %s: %v", name, t.name, err)
		}
	}
	return w, format, nil
}

// Stat reads the header of the checkpoint at path and checks that the
// file's size is the one the header implies, without reading the
// weights: it returns the model's configuration and the file's format,
// or the error [Load] would return for a file that is no checkpoint (a
// tokenizer, a cut or padded file).
func Stat(path string) (llama.Config, Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return llama.Config{}, 0, fmt.Errorf("llama2c: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return llama.Config{}, 0, fmt.Errorf("llama2c: %w", err)
	}
	cfg, format, header, err := readHeader(f, st.Size(), path)
	if err != nil {
		return llama.Config{}, 0, err
	}
	if err := checkSize(cfg, format, header, st.Size(), path); err != nil {
		return llama.Config{}, 0, err
	}
	return cfg, format, nil
}

// checkSize returns an error unless size is that of a checkpoint of cfg
// in format with a header of the given size.
func checkSize(cfg llama.Config, format Format, header, size int64, name string) error {
	skip := int64(0)
	if format == Legacy {
		skip = legacyRopeFloats(cfg)
	}
	want := header + 4*(cfg.NumParams()+skip)
	if size != want {
		what := "truncated"
		if size > want {
			what = "has trailing data"
		}
		return fmt.Errorf("llama2c: %s: file %s: it holds %d bytes but a %s checkpoint with %s needs exactly %d",
			name, what, size, format, describe(cfg), want)
	}
	return nil
}

// readHeader decodes and validates the header, returning the config, the
// format and the header size in bytes.
func readHeader(r io.ReaderAt, size int64, name string) (llama.Config, Format, int64, error) {
	fail := func(format string, args ...any) (llama.Config, Format, int64, error) {
		return llama.Config{}, 0, 0, fmt.Errorf("llama2c: %s: %s", name, fmt.Sprintf(format, args...))
	}
	if size < legacyHeaderSize {
		return fail("file is %d bytes, too short for a checkpoint header (at least %d)", size, legacyHeaderSize)
	}
	var hdr [v1HeaderSize]byte
	n := min(int64(len(hdr)), size)
	if got, err := r.ReadAt(hdr[:n], 0); int64(got) < n {
		// (io.ReaderAt may return io.EOF with a complete read at the end.)
		return fail("reading header: %v", err)
	}
	le := binary.LittleEndian
	format, fields, headerSize := Legacy, hdr[:28], int64(legacyHeaderSize)
	if le.Uint32(hdr[:]) == Magic {
		if size < v1HeaderSize {
			return fail("file is %d bytes, too short for the %d-byte version-1 header", size, v1HeaderSize)
		}
		v := int32(le.Uint32(hdr[4:]))
		if v != 1 {
			return fail("checkpoint version %d is not supported (expected version 1; version 2 is llama2.c's int8-quantized format)", v)
		}
		format, fields, headerSize = Version1, hdr[8:36], v1HeaderSize
	}
	var f [7]int64
	for i := range f {
		f[i] = int64(int32(le.Uint32(fields[4*i:])))
	}
	cfg := llama.Config{
		Dim: int(f[0]), HiddenDim: int(f[1]), NumLayers: int(f[2]), NumHeads: int(f[3]),
		NumKVHeads: int(f[4]), VocabSize: int(f[5]), MaxSeqLen: int(f[6]),
		NormEps: llama.DefaultNormEps, RopeTheta: llama.DefaultRopeTheta,
		RopeLayout: llama.RopeInterleaved,
	}
	switch format {
	case Legacy:
		// The sign of vocab_size is the shared-classifier flag.
		cfg.TiedEmbeddings = f[5] > 0
		if f[5] < 0 {
			cfg.VocabSize = int(-f[5])
		}
	case Version1:
		switch hdr[36] {
		case 0, 1:
			cfg.TiedEmbeddings = hdr[36] == 1
		default:
			return fail("shared_classifier flag is %d; expected 0 or 1", hdr[36])
		}
	}
	if err := cfg.Validate(); err != nil {
		return fail("invalid %s header: %v", format, err)
	}
	return cfg, format, headerSize, nil
}

// legacyRopeFloats returns the number of floats of the two RoPE tables a
// legacy file carries after the final norm.
func legacyRopeFloats(cfg llama.Config) int64 {
	return 2 * int64(cfg.MaxSeqLen) * int64(cfg.HeadDim()/2)
}

func describe(c llama.Config) string {
	tied := "shared"
	if !c.TiedEmbeddings {
		tied = "separate"
	}
	return fmt.Sprintf("dim=%d hidden_dim=%d n_layers=%d n_heads=%d n_kv_heads=%d vocab_size=%d seq_len=%d and a %s classifier",
		c.Dim, c.HiddenDim, c.NumLayers, c.NumHeads, c.NumKVHeads, c.VocabSize, c.MaxSeqLen, tied)
}

type section struct {
	name string
	data []float32 // nil marks the legacy RoPE tables
	// permute marks wq/wk, whose rows must be in the interleaved layout in
	// the file; heads is their head count.
	permute bool
	heads   int
}

// order lists w's tensors in the file order of format, with llama2.c names.
func order(w *llama.Weights, format Format) []section {
	L := w.Layers
	var s []section
	perLayer := func(kind string, get func(*llama.Layer) []float32) {
		for i := range L {
			sec := section{name: fmt.Sprintf("layers.%d.%s", i, kind), data: get(&L[i])}
			switch kind {
			case "wq":
				sec.permute, sec.heads = true, w.Config.NumHeads
			case "wk":
				sec.permute, sec.heads = true, w.Config.NumKVHeads
			}
			s = append(s, sec)
		}
	}
	attnNorm := func(l *llama.Layer) []float32 { return l.AttnNorm }
	ffnNorm := func(l *llama.Layer) []float32 { return l.FFNNorm }
	matrices := func() {
		perLayer("wq", func(l *llama.Layer) []float32 { return l.Wq })
		perLayer("wk", func(l *llama.Layer) []float32 { return l.Wk })
		perLayer("wv", func(l *llama.Layer) []float32 { return l.Wv })
		perLayer("wo", func(l *llama.Layer) []float32 { return l.Wo })
	}
	ffn := func() {
		perLayer("w1", func(l *llama.Layer) []float32 { return l.W1 })
		perLayer("w2", func(l *llama.Layer) []float32 { return l.W2 })
		perLayer("w3", func(l *llama.Layer) []float32 { return l.W3 })
	}
	switch format {
	case Legacy:
		s = append(s, section{name: "tok_embeddings", data: w.TokenEmbedding})
		perLayer("attention_norm", attnNorm)
		matrices()
		perLayer("ffn_norm", ffnNorm)
		ffn()
		s = append(s, section{name: "norm", data: w.FinalNorm}, section{name: "freqs_cos/freqs_sin"})
	case Version1:
		perLayer("attention_norm", attnNorm)
		perLayer("ffn_norm", ffnNorm)
		s = append(s, section{name: "norm", data: w.FinalNorm}, section{name: "tok_embeddings", data: w.TokenEmbedding})
		matrices()
		ffn()
	}
	if !w.Config.TiedEmbeddings {
		s = append(s, section{name: "output", data: w.Output})
	}
	return s
}

func readFloats(r io.Reader, dst []float32) error {
	var buf [1 << 14]byte
	for len(dst) > 0 {
		n := min(len(dst), len(buf)/4)
		b := buf[:4*n]
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
		for i := range n {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		dst = dst[n:]
	}
	return nil
}

// Write writes w to path in the given format, through a temporary file that
// is renamed into place. Weights in the half-split rotary layout are
// converted to llama2.c's interleaved layout on the way out (w itself is
// not modified). The formats cannot record NormEps, RopeTheta,
// RopeScaling, attention biases, a head width other than dim / n_heads,
// QK-norm or a sliding window, so Write refuses weights whose values
// differ from llama2.c's (no scaling, no biases, heads dim / n_heads wide,
// no QK-norm, no window: Mistral 7B v0.1's is refused), and Gemma 2's
// and 3's, whose decoders differ in more than the format can say.
func Write(path string, w *llama.Weights, format Format) error {
	if err := checkWritable(w, format); err != nil {
		return fmt.Errorf("llama2c: writing %s: %w", path, err)
	}
	return atomicfile.Write(path, func(bw *bufio.Writer) error { return Encode(bw, w, format) })
}

func checkWritable(w *llama.Weights, format Format) error {
	if format != Legacy && format != Version1 {
		return fmt.Errorf("unknown format %d", int(format))
	}
	if err := w.Validate(); err != nil {
		return err
	}
	c := w.Config
	switch c.Family {
	case llama.FamilyGemma3:
		return fmt.Errorf("llama2.c checkpoints cannot hold Gemma 3 (family %q: its norms of 1 + w, post-attention and post-feed-forward norms, √dim embedding scale, GeGLU and sliding-window layers have no place in the format); write a Hugging Face folder instead", c.Family)
	case llama.FamilyGemma2:
		// Checked before the fields below: a Gemma 2 model in llama2.c's
		// eps and theta, heads dim / n_heads wide and without sliding
		// layers passes all of them, and would lose its two output norms
		// and be read back as LLaMA.
		return fmt.Errorf("llama2.c checkpoints cannot hold Gemma 2 (family %q: its norms of 1 + w, post-attention and post-feed-forward norms, √dim embedding scale, GeGLU and logit soft-capping have no place in the format); write a Hugging Face folder instead", c.Family)
	}
	if c.SlidingWindow > 0 {
		// Mistral 7B v0.1 (the only other family with a window) is
		// otherwise within the format, and would silently lose it.
		return fmt.Errorf("llama2.c checkpoints cannot record a sliding window (%d positions, every layer, as Mistral 7B v0.1 has); write a Hugging Face folder instead", c.SlidingWindow)
	}
	if c.AttentionBias != llama.NoBias {
		return fmt.Errorf("llama2.c checkpoints cannot store attention biases (this model has them on %s, as Qwen2 and LLaMA with attention_bias do); write a Hugging Face folder instead", c.AttentionBias)
	}
	if c.NormEps != llama.DefaultNormEps || c.RopeTheta != llama.DefaultRopeTheta {
		return fmt.Errorf("llama2.c checkpoints cannot record norm eps %g or rope theta %g (they imply %g and %g)",
			c.NormEps, c.RopeTheta, llama.DefaultNormEps, llama.DefaultRopeTheta)
	}
	if c.HeadWidth != 0 && (c.Dim%c.NumHeads != 0 || c.HeadWidth != c.Dim/c.NumHeads) {
		return fmt.Errorf("llama2.c checkpoints cannot record head_dim %d (they imply dim %d / n_heads %d, as Qwen3 and Mistral Nemo do not); write a Hugging Face folder instead", c.HeadWidth, c.Dim, c.NumHeads)
	}
	if c.QKNorm {
		return fmt.Errorf("llama2.c checkpoints cannot store QK-norm weights (q_norm, k_norm, as Qwen3 has them); write a Hugging Face folder instead")
	}
	if !c.RopeScaling.IsZero() {
		return fmt.Errorf("llama2.c checkpoints cannot record rope scaling (%s, factor %g); write a Hugging Face folder instead", c.RopeScaling.Type, c.RopeScaling.Factor)
	}
	if c.Dim > math.MaxInt32 || c.HiddenDim > math.MaxInt32 || c.VocabSize > math.MaxInt32 || c.MaxSeqLen > math.MaxInt32 {
		return fmt.Errorf("config does not fit the int32 header fields (dim %d, hidden_dim %d, vocab_size %d, max_seq_len %d; at most %d each)",
			c.Dim, c.HiddenDim, c.VocabSize, c.MaxSeqLen, math.MaxInt32)
	}
	return nil
}

// Encode writes w in the given format to out. See Write.
func Encode(out io.Writer, w *llama.Weights, format Format) error {
	if err := checkWritable(w, format); err != nil {
		return fmt.Errorf("llama2c: %w", err)
	}
	c := w.Config
	le := binary.LittleEndian
	vocab := int32(c.VocabSize)
	fields := []int32{int32(c.Dim), int32(c.HiddenDim), int32(c.NumLayers), int32(c.NumHeads), int32(c.NumKVHeads), vocab, int32(c.MaxSeqLen)}
	var hdr []byte
	switch format {
	case Legacy:
		if !c.TiedEmbeddings {
			fields[5] = -vocab
		}
		for _, f := range fields {
			hdr = le.AppendUint32(hdr, uint32(f))
		}
	case Version1:
		hdr = le.AppendUint32(hdr, Magic)
		hdr = le.AppendUint32(hdr, 1)
		for _, f := range fields {
			hdr = le.AppendUint32(hdr, uint32(f))
		}
		shared := byte(0)
		if c.TiedEmbeddings {
			shared = 1
		}
		hdr = append(hdr, shared)
		hdr = append(hdr, make([]byte, v1HeaderSize-len(hdr))...)
	}
	if _, err := out.Write(hdr); err != nil {
		return err
	}
	for _, t := range order(w, format) {
		data := t.data
		switch {
		case data == nil:
			data = legacyRopeTables(c)
		case t.permute && c.RopeLayout == llama.RopeHalfSplit:
			data = llama.HalfSplitToInterleaved(data, t.heads, c.HeadDim(), c.Dim)
		}
		if err := writeFloats(out, data); err != nil {
			return err
		}
	}
	return nil
}

// legacyRopeTables returns llama2.c's precomputed cos table followed by its
// sin table, [seq_len, head_size/2] each, which legacy files carry (and
// readers, llama2.c's run.c included, ignore).
func legacyRopeTables(c llama.Config) []float32 {
	half := c.HeadDim() / 2
	cos := make([]float32, c.MaxSeqLen*half)
	sin := make([]float32, c.MaxSeqLen*half)
	for t := 0; t < c.MaxSeqLen; t++ {
		for i := 0; i < half; i++ {
			freq := float32(1 / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim())))
			ang := float64(float32(t) * freq)
			cos[t*half+i] = float32(math.Cos(ang))
			sin[t*half+i] = float32(math.Sin(ang))
		}
	}
	return append(cos, sin...)
}

func writeFloats(w io.Writer, data []float32) error {
	var buf [1 << 14]byte
	for len(data) > 0 {
		n := min(len(data), len(buf)/4)
		for i := range n {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(data[i]))
		}
		if _, err := w.Write(buf[:4*n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}
