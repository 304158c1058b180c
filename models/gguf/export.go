package gguf

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
)

// Options are the choices of an export.
type Options struct {
	// Type is the type of the matrices (the token embedding, the output
	// head and every linear layer); vectors (norms, biases, rope
	// factors) are always F32, as llama.cpp's converter keeps them. A
	// Q8_0 matrix whose rows are not a multiple of QK8_0 long is written
	// F16 instead, as that converter falls back, and a Plan note says so.
	Type Type
	// Name is general.name; "" writes none.
	Name string
	// ChatTemplate is the Jinja chat template (tokenizer.chat_template);
	// "" writes none.
	ChatTemplate string
	// PadToken is the padding token's text, which the tokenizer must hold
	// (tokenizer.ggml.padding_token_id); "" writes none.
	PadToken string
	// BOSID and EOSID are the beginning- and end-of-sequence token ids
	// the model names elsewhere than in its tokenizer (a Hugging Face
	// config.json's bos_token_id and eos_token_id), nil where none:
	// written where the tokenizer has no such token, so that llama.cpp
	// does not take its own default (token 11 for a BPE vocabulary) in
	// their place. A BOS given so is not added before the text, as the
	// tokenizer adds none.
	BOSID, EOSID *int
}

// Plan is a model laid out as a GGUF file: its llama.cpp architecture, the
// metadata and tensors to write, and notes on what llama.cpp will do
// differently from this project's decoder, if anything (a shorter context,
// a type fallback, tokens left out).
type Plan struct {
	Arch    string
	KV      []KV
	Tensors []Tensor
	Notes   []string
}

// Write writes the plan's file to path (see Write).
func (p *Plan) Write(path string) error { return Write(path, p.KV, p.Tensors) }

// Export writes the model w with its tokenizer tok to path as a GGUF file
// for llama.cpp (see NewPlan) and returns the plan it wrote.
func Export(path string, w *llama.Weights, tok *tokenizer.Tokenizer, o Options) (*Plan, error) {
	src, err := WeightsSource(w)
	if err != nil {
		return nil, err
	}
	return ExportSource(path, src, tok, o)
}

// ExportSource is Export for a model read from src a slab of rows at a
// time (a Hugging Face folder's tensors, say), so that the whole model is
// never held in memory.
func ExportSource(path string, src llama.Source, tok *tokenizer.Tokenizer, o Options) (*Plan, error) {
	p, err := NewPlan(src, tok, o)
	if err != nil {
		return nil, err
	}
	if err := p.Write(path); err != nil {
		return nil, err
	}
	return p, nil
}

// Architectures returns the llama.cpp architectures an export writes:
// "llama" (LLaMA, Mistral and llama2.c checkpoints), "qwen2", "qwen3",
// "gemma2" and "gemma3".
func Architectures() []string { return []string{"llama", "qwen2", "qwen3", "gemma2", "gemma3"} }

// archOf returns the llama.cpp architecture of a model of configuration c:
// the Gemma families by name, QK-norm Qwen3, biases on q/k/v only Qwen2
// (LLaMA's attention_bias puts one on o_proj too), the rest LLaMA.
func archOf(c llama.Config) string {
	switch {
	case c.Family == llama.FamilyGemma2:
		return "gemma2"
	case c.Family == llama.FamilyGemma3:
		return "gemma3"
	case c.QKNorm:
		return "qwen3"
	case c.AttentionBias == llama.BiasQKV:
		return "qwen2"
	}
	return "llama"
}

// NewPlan lays out the model src with its tokenizer tok as the GGUF file
// llama.cpp's converter (convert_hf_to_gguf.py) would write for the
// architecture that runs it (see Architectures): the hyper-parameters under
// "<arch>.", the tokenizer under "tokenizer.", tensors named token_embd,
// blk.N.attn_q, ..., output_norm and output (left out when tied to the
// embedding).
//
// The rotary layout is the architecture's: llama.cpp's "llama" rotates
// interleaved pairs, so half-split (Hugging Face) q_proj and k_proj rows,
// biases and QK-norm weights are permuted back to it, while "qwen2",
// "qwen3" and the Gemmas rotate half-split pairs (NeoX), to which an
// interleaved model is permuted. Gemma's norm weights, kept here as the
// offsets w of a norm multiplying by 1 + w, are written as 1 + w, the
// weight llama.cpp multiplies by. Llama 3's rope scaling becomes the
// rope_freqs tensor of per-pair frequency divisors, linear scaling the
// rope.scaling keys.
//
// It refuses, saying why, what llama.cpp would run differently: Gemma's
// sliding-window layers in another pattern than llama.cpp's fixed one
// (every second layer full for Gemma 2, every sixth for Gemma 3), another
// local rotary base than 10000 for Gemma 3, an attention scale other than
// the one llama.cpp derives from the layer count, Gemma 2 without
// soft-caps or with an output head of its own, biases where the
// architecture has none, Llama 3 rope scaling outside "llama", Qwen2 with a
// head width other than dim/n_heads, and tokenizers whose pre-tokenization
// llama.cpp does not implement (see the tokenizer errors). Mistral's
// sliding window, which llama.cpp's "llama" lacks, is written as a context
// length capped at the window, within which the two agree.
func NewPlan(src llama.Source, tok *tokenizer.Tokenizer, o Options) (*Plan, error) {
	if src == nil || tok == nil {
		return nil, fmt.Errorf("gguf: export needs a model and a tokenizer")
	}
	c := src.Config()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !o.Type.known() {
		return nil, fmt.Errorf("gguf: export type %s; expected f32, f16, bf16 or q8_0", o.Type)
	}
	p := &Plan{Arch: archOf(c)}
	ctx, err := checkArch(p, c)
	if err != nil {
		return nil, err
	}
	v, err := newVocab(tok, c.VocabSize, o.PadToken)
	if err != nil {
		return nil, err
	}
	for _, s := range []struct {
		what string
		id   *int
		to   *int
	}{{"BOS", o.BOSID, &v.bos}, {"EOS", o.EOSID, &v.eos}} {
		if s.id == nil || *s.to >= 0 {
			continue
		}
		if *s.id < 0 || *s.id >= c.VocabSize {
			return nil, fmt.Errorf("gguf: %s token id %d lies outside the model's %d tokens", s.what, *s.id, c.VocabSize)
		}
		*s.to = *s.id
	}
	p.Notes = append(p.Notes, v.notes...)

	a := p.Arch
	p.KV = []KV{
		{"general.architecture", String(a)},
		{"general.type", String("model")},
	}
	if o.Name != "" {
		p.KV = append(p.KV, KV{"general.name", String(o.Name)})
	}
	hd := c.HeadDim()
	p.KV = append(p.KV,
		KV{a + ".context_length", Uint32(uint32(ctx))},
		KV{a + ".embedding_length", Uint32(uint32(c.Dim))},
		KV{a + ".block_count", Uint32(uint32(c.NumLayers))},
		KV{a + ".feed_forward_length", Uint32(uint32(c.HiddenDim))},
		KV{a + ".attention.head_count", Uint32(uint32(c.NumHeads))},
		KV{a + ".attention.head_count_kv", Uint32(uint32(c.NumKVHeads))},
		KV{a + ".attention.key_length", Uint32(uint32(hd))},
		KV{a + ".attention.value_length", Uint32(uint32(hd))},
		KV{a + ".attention.layer_norm_rms_epsilon", Float32(float32(c.NormEps))},
		KV{a + ".rope.freq_base", Float32(float32(c.RopeTheta))},
		KV{a + ".rope.dimension_count", Uint32(uint32(hd))},
	)
	if c.RopeScaling.Type == llama.RopeScalingLinear {
		p.KV = append(p.KV,
			KV{a + ".rope.scaling.type", String("linear")},
			KV{a + ".rope.scaling.factor", Float32(float32(c.RopeScaling.Factor))})
	}
	switch a {
	case "gemma2":
		p.KV = append(p.KV,
			KV{a + ".attention.sliding_window", Uint32(uint32(c.SlidingWindow))},
			KV{a + ".attn_logit_softcapping", Float32(float32(c.AttnLogitSoftcap))},
			KV{a + ".final_logit_softcapping", Float32(float32(c.FinalLogitSoftcap))})
	case "gemma3":
		p.KV = append(p.KV, KV{a + ".attention.sliding_window", Uint32(uint32(c.SlidingWindow))})
	}
	p.KV = append(p.KV, KV{"general.file_type", Uint32(o.Type.FileType())})
	if o.Type == Q8_0 {
		p.KV = append(p.KV, KV{"general.quantization_version", Uint32(2)})
	}
	p.KV = append(p.KV, v.kv()...)
	if o.ChatTemplate != "" {
		p.KV = append(p.KV, KV{"tokenizer.chat_template", String(o.ChatTemplate)})
	}
	if err := p.addTensors(src, c, o.Type); err != nil {
		return nil, err
	}
	return p, nil
}

// Gemma's sliding-window period in llama.cpp, which fixes it per
// architecture: layer l slides unless (l+1) is a multiple of it.
var swaPeriod = map[string]int{"gemma2": 2, "gemma3": 6}

// checkArch refuses a configuration llama.cpp's architecture p.Arch would
// run differently, and returns the context length to write.
func checkArch(p *Plan, c llama.Config) (int, error) {
	fail := func(format string, args ...any) (int, error) {
		return 0, fmt.Errorf("gguf: cannot export this %s model for llama.cpp: %s", p.Arch, fmt.Sprintf(format, args...))
	}
	ctx := c.MaxSeqLen
	if c.RopeScaling.Type == llama.RopeScalingLlama3 && p.Arch != "llama" {
		return fail("llama.cpp applies Llama 3's rope scaling (a rope_freqs tensor) in its \"llama\" architecture only")
	}
	switch p.Arch {
	case "llama":
		if c.LayerKinds != "" {
			// Mistral v0.1: every layer slides (Validate allows no
			// other pattern outside Gemma). Within the window, sliding
			// attention is full attention.
			if c.SlidingWindow < ctx {
				p.Notes = append(p.Notes, fmt.Sprintf("llama.cpp's \"llama\" architecture has no sliding window: the context length is written as the window, %d positions (the model's is %d), within which full attention is the same", c.SlidingWindow, ctx))
				ctx = c.SlidingWindow
			}
		}
	case "qwen2":
		if c.HeadDim()*c.NumHeads != c.Dim {
			return fail("head width %d × %d heads is not the model width %d; llama.cpp's qwen2 shapes q_proj as dim × dim", c.HeadDim(), c.NumHeads, c.Dim)
		}
	case "qwen3":
		if c.AttentionBias != llama.NoBias {
			return fail("attention biases (%s) with QK-norm; llama.cpp's qwen3 has none", c.AttentionBias)
		}
	case "gemma2", "gemma3":
		if c.AttentionBias != llama.NoBias {
			return fail("attention biases (%s); llama.cpp's %s has none", c.AttentionBias, p.Arch)
		}
		if c.Activation != llama.GELUTanh {
			return fail("feed-forward activation %s; llama.cpp's %s uses GELU (tanh)", c.Activation, p.Arch)
		}
		period := swaPeriod[p.Arch]
		want := make([]byte, c.NumLayers)
		for l := range want {
			want[l] = llama.LayerSliding
			if (l+1)%period == 0 {
				want[l] = llama.LayerFull
			}
		}
		if c.LayerKinds != string(want) {
			return fail("layer attention kinds %q; llama.cpp's %s slides every layer but each %s one (%q)", c.LayerKinds, p.Arch, ordinal(period), want)
		}
		// llama.cpp scales attention by 1/√head_dim, except for the
		// 27B models, which it knows by their layer count.
		scale := 1 / math.Sqrt(float64(c.HeadDim()))
		if p.Arch == "gemma2" && c.NumLayers == 46 || p.Arch == "gemma3" && c.NumLayers == 62 {
			scale = 1 / math.Sqrt(float64(c.Dim/c.NumHeads))
		}
		if float32(scale) != float32(c.AttentionScale()) {
			return fail("attention scale %v (query_pre_attn_scalar %v); llama.cpp derives %v from a %s of %d layers", c.AttentionScale(), c.QueryPreAttnScalar, scale, p.Arch, c.NumLayers)
		}
		if p.Arch == "gemma2" {
			if c.AttnLogitSoftcap == 0 || c.FinalLogitSoftcap == 0 {
				return fail("no soft-capping (attention %v, final %v); llama.cpp's gemma2 always caps, at 50 and 30 where unset", c.AttnLogitSoftcap, c.FinalLogitSoftcap)
			}
			if !c.TiedEmbeddings {
				return fail("an output head of its own; llama.cpp's gemma2 always ties it to the token embedding")
			}
		} else if c.LocalRopeTheta != 10000 {
			return fail("sliding layers' rotary base %v; llama.cpp's gemma3 fixes it at 10000", c.LocalRopeTheta)
		}
	}
	return ctx, nil
}

func ordinal(n int) string {
	switch n {
	case 2:
		return "second"
	case 6:
		return "sixth"
	}
	return strconv.Itoa(n) + "th"
}

// ggufLayerName maps a decoder-layer module to its llama.cpp tensor name
// (without "blk.N." and ".weight"). post_attention_layernorm is the
// feed-forward's input norm in LLaMA (ffn_norm) and the attention's output
// norm in Gemma (post_attention_norm).
func ggufLayerName(c llama.Config, mod string) string {
	switch mod {
	case llama.ModInputNorm:
		return "attn_norm"
	case llama.ModQ:
		return "attn_q"
	case llama.ModK:
		return "attn_k"
	case llama.ModV:
		return "attn_v"
	case llama.ModO:
		return "attn_output"
	case llama.ModQNorm:
		return "attn_q_norm"
	case llama.ModKNorm:
		return "attn_k_norm"
	case llama.ModPostNorm:
		if c.PostNorms() {
			return "post_attention_norm"
		}
		return "ffn_norm"
	case llama.ModPreFFNNorm:
		return "ffn_norm"
	case llama.ModPostFFNNorm:
		return "post_ffw_norm"
	case llama.ModGate:
		return "ffn_gate"
	case llama.ModUp:
		return "ffn_up"
	case llama.ModDown:
		return "ffn_down"
	}
	return ""
}

// isNorm reports whether module mod is an RMSNorm weight.
func isNorm(mod string) bool {
	switch mod {
	case llama.ModInputNorm, llama.ModPostNorm, llama.ModPreFFNNorm, llama.ModPostFFNNorm, llama.ModQNorm, llama.ModKNorm:
		return true
	}
	return false
}

// addTensors lists the tensors: the embedding, the rope factors (Llama 3
// scaling), the final norm, the output head (unless tied), then each
// layer's.
func (p *Plan) addTensors(src llama.Source, c llama.Config, typ Type) error {
	wantLayout := llama.RopeHalfSplit
	if p.Arch == "llama" {
		wantLayout = llama.RopeInterleaved
	}
	var fellBack []string
	matrix := func(name string, shape []int) Type {
		if typ == Q8_0 && shape[len(shape)-1]%QK8_0 != 0 {
			fellBack = append(fellBack, name)
			return F16
		}
		return typ
	}
	plain := func(srcName string) func(int, []float32) error {
		return func(row0 int, dst []float32) error { return src.ReadRows(srcName, row0, dst) }
	}
	add := func(name string, shape []int, read func(int, []float32) error) {
		t := F32
		if len(shape) > 1 {
			t = matrix(name, shape)
		}
		if t == F16 {
			read = halfRange(name, read)
		}
		p.Tensors = append(p.Tensors, Tensor{Name: name, Shape: shape, Type: t, Read: read})
	}
	norm := func(srcName string) func(int, []float32) error {
		if !c.NormOffset() {
			return plain(srcName)
		}
		return func(row0 int, dst []float32) error {
			if err := src.ReadRows(srcName, row0, dst); err != nil {
				return err
			}
			for i := range dst {
				dst[i]++
			}
			return nil
		}
	}

	add("token_embd.weight", []int{c.VocabSize, c.Dim}, plain(llama.EmbedName))
	if c.RopeScaling.Type == llama.RopeScalingLlama3 {
		factors := ropeFactors(c)
		add("rope_freqs.weight", []int{len(factors)}, func(row0 int, dst []float32) error {
			copy(dst, factors[row0:])
			return nil
		})
	}
	add("output_norm.weight", []int{c.Dim}, norm(llama.NormName))
	if !c.TiedEmbeddings {
		add("output.weight", []int{c.VocabSize, c.Dim}, plain(llama.OutputName))
	}
	hd := c.HeadDim()
	for l := range c.NumLayers {
		for _, mod := range c.Modules() {
			name := fmt.Sprintf("blk.%d.%s", l, ggufLayerName(c, mod))
			srcName := llama.LayerParamName(l, mod)
			shape := llama.ModuleShape(c, mod)
			read := plain(srcName)
			if isNorm(mod) {
				read = norm(srcName)
			}
			// q_proj and k_proj rows (and their biases), and the QK-norm
			// weights (one head), go into the architecture's layout.
			heads := 0
			switch mod {
			case llama.ModQ:
				heads = c.NumHeads
			case llama.ModK:
				heads = c.NumKVHeads
			case llama.ModQNorm, llama.ModKNorm:
				heads = 1
			}
			if heads > 0 && c.RopeLayout != wantLayout {
				read = permuted(read, rowOrder(heads, hd, wantLayout), cols(shape))
			}
			add(name+".weight", shape, read)
			if c.HasBias(mod) {
				bread := plain(llama.LayerBiasName(l, mod))
				if heads > 0 && c.RopeLayout != wantLayout {
					bread = permuted(bread, rowOrder(heads, hd, wantLayout), 1)
				}
				add(name+".bias", shape[:1], bread)
			}
		}
	}
	if len(fellBack) > 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("%d matrices whose rows are not a multiple of %d long are written f16 instead of q8_0 (as llama.cpp's converter falls back): %s", len(fellBack), QK8_0, abbreviate(fellBack, 6)))
	}
	return nil
}

// halfRange wraps read to refuse a value that float16 cannot hold (beyond
// ±65504 it would become an infinity, and the model garbage).
func halfRange(name string, read func(int, []float32) error) func(int, []float32) error {
	return func(row0 int, dst []float32) error {
		if err := read(row0, dst); err != nil {
			return err
		}
		for i, v := range dst {
			if v > 65504 || v < -65504 {
				return fmt.Errorf("%s holds %v (value %d from row %d on), beyond float16's range of ±65504: export it as bf16 or f32", name, v, i, row0)
			}
		}
		return nil
	}
}

// cols returns the number of values in one row of a tensor of shape s:
// the product of all extents but the first (1 for a vector).
func cols(s []int) int {
	n := 1
	for _, d := range s[1:] {
		n *= d
	}
	return n
}

func abbreviate(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + fmt.Sprintf(" and %d more", len(names)-n)
}

// rowOrder returns, for heads heads of headDim rows, the source row of each
// row of the layout to: perm[i] is the row of the other layout that goes to
// row i. Half-split row j·headDim/2 + i of a head is interleaved row 2i + j.
func rowOrder(heads, headDim int, to llama.RopeLayout) []int {
	perm := make([]int, heads*headDim)
	half := headDim / 2
	for h := range heads {
		base := h * headDim
		for i := range half {
			for j := range 2 {
				split, inter := base+j*half+i, base+2*i+j
				if to == llama.RopeHalfSplit {
					perm[split] = inter
				} else {
					perm[inter] = split
				}
			}
		}
	}
	return perm
}

// permuted returns a row reader that gives row i of a tensor of cols
// columns as row perm[i] of what read gives. perm permutes rows within
// blocks (heads), so the source rows of a run of rows lie in the blocks
// the run spans, which it reads at once.
func permuted(read func(int, []float32) error, perm []int, cols int) func(int, []float32) error {
	var buf []float32
	return func(row0 int, dst []float32) error {
		rows := len(dst) / cols
		lo, hi := len(perm), -1
		for r := row0; r < row0+rows; r++ {
			lo, hi = min(lo, perm[r]), max(hi, perm[r])
		}
		n := (hi - lo + 1) * cols
		if cap(buf) < n {
			buf = make([]float32, n)
		}
		if err := read(lo, buf[:n]); err != nil {
			return err
		}
		for r := range rows {
			from := (perm[row0+r] - lo) * cols
			copy(dst[r*cols:(r+1)*cols], buf[from:from+cols])
		}
		return nil
	}
}

// ropeFactors returns the per-pair divisors of the base rotary frequencies
// that Llama 3's rope scaling applies (llama.cpp's rope_freqs tensor):
// base_i / scaled_i.
func ropeFactors(c llama.Config) []float32 {
	scaled := c.RopeFreqs()
	hd := c.HeadDim()
	theta := float64(float32(c.RopeTheta))
	out := make([]float32, len(scaled))
	for i, f := range scaled {
		base := math.Pow(theta, -float64(2*i)/float64(hd))
		out[i] = float32(base / f)
	}
	return out
}

// configSource is a llama.Source with a configuration and no tensors, for
// Check.
type configSource llama.Config

func (s configSource) Config() llama.Config { return llama.Config(s) }

func (s configSource) ReadRows(name string, _ int, _ []float32) error {
	return fmt.Errorf("gguf: no weights to read (%s): the model is only being checked", name)
}

// Check returns the error NewPlan would return for a model of
// configuration c with the tokenizer tok, without any weights: a command
// calls it to refuse an export before it loads or merges a model.
func Check(c llama.Config, tok *tokenizer.Tokenizer, o Options) error {
	_, err := NewPlan(configSource(c), tok, o)
	return err
}
