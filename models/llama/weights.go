package llama

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/sora-go/sora/internal/rowperm"
)

// Canonical names of the tensors outside the decoder layers.
const (
	EmbedName  = "model.embed_tokens.weight"
	NormName   = "model.norm.weight"
	OutputName = "lm_head.weight"
)

// The modules of one decoder layer, in the order Params lists them. The
// tensor name of module m in layer n is LayerParamName(n, m).
const (
	ModInputNorm = "input_layernorm"
	ModQ         = "self_attn.q_proj"
	ModK         = "self_attn.k_proj"
	ModV         = "self_attn.v_proj"
	ModO         = "self_attn.o_proj"
	ModQNorm     = "self_attn.q_norm"
	ModKNorm     = "self_attn.k_norm"
	ModPostNorm  = "post_attention_layernorm"
	ModGate      = "mlp.gate_proj"
	ModUp        = "mlp.up_proj"
	ModDown      = "mlp.down_proj"

	// Gemma's feed-forward norms (Config.PostNorms). In Gemma
	// post_attention_layernorm (ModPostNorm) normalises the attention's
	// output, and pre_feedforward_layernorm is the norm before the
	// feed-forward that LLaMA calls post_attention_layernorm.
	ModPreFFNNorm  = "pre_feedforward_layernorm"
	ModPostFFNNorm = "post_feedforward_layernorm"
)

// LayerModules lists the module names that every decoder layer has, in
// Params order. A model with QK-norm has two more, q_norm and k_norm:
// [Config.Modules] lists a given configuration's.
func LayerModules() []string {
	return []string{ModInputNorm, ModQ, ModK, ModV, ModO, ModPostNorm, ModGate, ModUp, ModDown}
}

// Modules lists the weight modules of one decoder layer of a model with
// configuration c, in Params order: [LayerModules], with ModQNorm and
// ModKNorm after o_proj where c.QKNorm (the order of Qwen3Attention's
// modules), and with Gemma's ModPreFFNNorm and ModPostFFNNorm after
// ModPostNorm where c.PostNorms.
func (c Config) Modules() []string {
	mods := LayerModules()
	if c.QKNorm {
		i := slices.Index(mods, ModO) + 1
		mods = slices.Insert(mods, i, ModQNorm, ModKNorm)
	}
	if c.PostNorms() {
		i := slices.Index(mods, ModPostNorm) + 1
		mods = slices.Insert(mods, i, ModPreFFNNorm, ModPostFFNNorm)
	}
	return mods
}

// LayerParamName returns the canonical tensor name of module (one of the
// Mod* constants) in decoder layer layer, e.g.
// "model.layers.3.self_attn.q_proj.weight".
func LayerParamName(layer int, module string) string {
	return "model.layers." + strconv.Itoa(layer) + "." + module + ".weight"
}

// LayerBiasName returns the canonical name of the bias of module (one of
// the attention projections ModQ, ModK, ModV, ModO) in decoder layer
// layer, e.g. "model.layers.3.self_attn.q_proj.bias".
func LayerBiasName(layer int, module string) string {
	return "model.layers." + strconv.Itoa(layer) + "." + module + ".bias"
}

// BiasModules lists the modules of a decoder layer that carry a bias in a
// model with configuration c (see [Config.HasBias]), in Params order.
func BiasModules(c Config) []string {
	var mods []string
	for _, m := range []string{ModQ, ModK, ModV, ModO} {
		if c.HasBias(m) {
			mods = append(mods, m)
		}
	}
	return mods
}

// ModuleShape returns the shape of module (one of the Mod* constants) in
// any decoder layer of a model with configuration c, or nil for an unknown
// module name. q_norm and k_norm have a shape, [head_dim], whether or not
// c has them.
func ModuleShape(c Config, module string) []int {
	d, h, q, kv := c.Dim, c.HiddenDim, c.QDim(), c.KVDim()
	switch module {
	case ModInputNorm, ModPostNorm, ModPreFFNNorm, ModPostFFNNorm:
		return []int{d}
	case ModQNorm, ModKNorm:
		return []int{c.HeadDim()}
	case ModQ:
		return []int{q, d}
	case ModO:
		return []int{d, q}
	case ModK, ModV:
		return []int{kv, d}
	case ModGate, ModUp:
		return []int{h, d}
	case ModDown:
		return []int{d, h}
	}
	return nil
}

// Layer holds one decoder layer's weights, each a row-major float32 slice.
// The comments give the llama2.c names. Norm weights are stored as the
// checkpoint stores them: for Gemma (Config.NormOffset) the offsets w of
// a norm that multiplies by 1 + w.
type Layer struct {
	AttnNorm []float32 // [dim] attention_norm (rms_att), input_layernorm
	Wq       []float32 // [q_dim, dim] wq, rows in Config.RopeLayout
	Wk       []float32 // [kv_dim, dim] wk, rows in Config.RopeLayout
	Wv       []float32 // [kv_dim, dim] wv
	Wo       []float32 // [dim, q_dim] wo
	// FFNNorm is the norm before the feed-forward, [dim]: llama2.c's
	// ffn_norm (rms_ffn), LLaMA's post_attention_layernorm, Gemma's
	// pre_feedforward_layernorm.
	FFNNorm []float32
	W1      []float32 // [hidden, dim] w1, gate_proj
	W3      []float32 // [hidden, dim] w3, up_proj
	W2      []float32 // [dim, hidden] w2, down_proj

	// PostAttnNorm and PostFFNNorm normalise the outputs of the attention
	// (o_proj) and of the feed-forward (down_proj) before they are added
	// to the residual stream, [dim] each: Gemma's post_attention_layernorm
	// and post_feedforward_layernorm; nil without Config.PostNorms.
	PostAttnNorm, PostFFNNorm []float32

	// The attention biases, nil where Config.HasBias says the module has
	// none: Bq [q_dim] and Bk [kv_dim] in Config.RopeLayout like the rows
	// of Wq and Wk, Bv [kv_dim], Bo [dim].
	Bq, Bk, Bv, Bo []float32

	// QNorm and KNorm are the QK-norm weights [head_dim], q_norm and
	// k_norm, in Config.RopeLayout like the rows of one head of Wq; nil
	// without Config.QKNorm.
	QNorm, KNorm []float32
}

// norm returns a pointer to the QK-norm slice of module mod (ModQNorm or
// ModKNorm), or nil for any other module.
func (l *Layer) norm(mod string) *[]float32 {
	switch mod {
	case ModQNorm:
		return &l.QNorm
	case ModKNorm:
		return &l.KNorm
	}
	return nil
}

// weight returns the weight of module mod (one of the Mod* constants) in
// a model with configuration c, nil for a module the layer does not hold.
// post_attention_layernorm is FFNNorm in LLaMA and PostAttnNorm in Gemma.
func (l *Layer) weight(c Config, mod string) []float32 {
	switch mod {
	case ModPostNorm:
		if c.PostNorms() {
			return l.PostAttnNorm
		}
		return l.FFNNorm
	case ModPreFFNNorm:
		return l.FFNNorm
	case ModPostFFNNorm:
		return l.PostFFNNorm
	case ModInputNorm:
		return l.AttnNorm
	case ModQ:
		return l.Wq
	case ModK:
		return l.Wk
	case ModV:
		return l.Wv
	case ModO:
		return l.Wo
	case ModQNorm:
		return l.QNorm
	case ModKNorm:
		return l.KNorm
	case ModGate:
		return l.W1
	case ModUp:
		return l.W3
	case ModDown:
		return l.W2
	}
	return nil
}

// bias returns a pointer to the bias slice of attention module mod, or
// nil for a module that never has one.
func (l *Layer) bias(mod string) *[]float32 {
	switch mod {
	case ModQ:
		return &l.Bq
	case ModK:
		return &l.Bk
	case ModV:
		return &l.Bv
	case ModO:
		return &l.Bo
	}
	return nil
}

// Weights is a LLaMA model's parameters on the host, as loaders return them
// and writers take them; models upload them to a backend once.
type Weights struct {
	Config         Config
	TokenEmbedding []float32 // [vocab, dim]
	Layers         []Layer
	FinalNorm      []float32 // [dim]
	Output         []float32 // [vocab, dim]; nil when Config.TiedEmbeddings
}

// Param is one named tensor of a Weights. Data aliases the Weights' memory:
// filling it fills the model.
type Param struct {
	Name  string
	Shape []int
	Data  []float32
}

// NewWeights validates cfg and allocates zeroed weights for it. Loaders
// call it only after checking the file holds every parameter, so a corrupt
// header cannot trigger a huge allocation.
func NewWeights(cfg Config) (*Weights, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if n := cfg.NumParams(); n > math.MaxInt {
		return nil, fmt.Errorf("llama: model of %d parameters does not fit in memory", n)
	}
	d, h, q, kv := cfg.Dim, cfg.HiddenDim, cfg.QDim(), cfg.KVDim()
	// One backing array keeps the allocation count small for big models.
	buf := make([]float32, cfg.NumParams())
	take := func(n int) []float32 {
		s := buf[:n:n]
		buf = buf[n:]
		return s
	}
	w := &Weights{Config: cfg}
	w.TokenEmbedding = take(cfg.VocabSize * d)
	w.Layers = make([]Layer, cfg.NumLayers)
	for i := range w.Layers {
		w.Layers[i] = Layer{
			AttnNorm: take(d), Wq: take(q * d), Wk: take(kv * d), Wv: take(kv * d), Wo: take(d * q),
			FFNNorm: take(d), W1: take(h * d), W3: take(h * d), W2: take(d * h),
		}
		for _, m := range BiasModules(cfg) {
			*w.Layers[i].bias(m) = take(ModuleShape(cfg, m)[0])
		}
		if cfg.QKNorm {
			w.Layers[i].QNorm, w.Layers[i].KNorm = take(cfg.HeadDim()), take(cfg.HeadDim())
		}
		if cfg.PostNorms() {
			w.Layers[i].PostAttnNorm, w.Layers[i].PostFFNNorm = take(d), take(d)
		}
	}
	w.FinalNorm = take(d)
	if !cfg.TiedEmbeddings {
		w.Output = take(cfg.VocabSize * d)
	}
	return w, nil
}

// Params lists every tensor with its canonical name and shape: the token
// embedding, then each layer's modules in Config.Modules order (a module's
// bias, where it has one, right after its weight), the final norm, and the
// output classifier unless tied. The Data slices alias w.
func (w *Weights) Params() []Param {
	c := w.Config
	mods := c.Modules()
	ps := make([]Param, 0, 3+(len(mods)+4)*len(w.Layers))
	ps = append(ps, Param{EmbedName, []int{c.VocabSize, c.Dim}, w.TokenEmbedding})
	for i := range w.Layers {
		l := &w.Layers[i]
		for _, mod := range mods {
			shape := ModuleShape(c, mod)
			ps = append(ps, Param{LayerParamName(i, mod), shape, l.weight(c, mod)})
			if c.HasBias(mod) {
				ps = append(ps, Param{LayerBiasName(i, mod), shape[:1], *l.bias(mod)})
			}
		}
	}
	ps = append(ps, Param{NormName, []int{c.Dim}, w.FinalNorm})
	if !c.TiedEmbeddings {
		ps = append(ps, Param{OutputName, []int{c.VocabSize, c.Dim}, w.Output})
	}
	return ps
}

// Param returns the tensor with the given canonical name.
func (w *Weights) Param(name string) (Param, bool) {
	for _, p := range w.Params() {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// Validate checks the configuration and that every tensor has the length
// its shape requires (catching hand-assembled or truncated Weights).
func (w *Weights) Validate() error {
	if err := w.Config.Validate(); err != nil {
		return err
	}
	if len(w.Layers) != w.Config.NumLayers {
		return fmt.Errorf("llama: weights have %d layers, config says %d", len(w.Layers), w.Config.NumLayers)
	}
	if w.Config.TiedEmbeddings && w.Output != nil {
		return fmt.Errorf("llama: tied embeddings but a separate output classifier is present")
	}
	for i := range w.Layers {
		for _, m := range []string{ModQ, ModK, ModV, ModO} {
			if b := *w.Layers[i].bias(m); b != nil && !w.Config.HasBias(m) {
				return fmt.Errorf("llama: layer %d has a %s bias but the config's attention bias is %s", i, m, w.Config.AttentionBias)
			}
		}
		for _, m := range []string{ModQNorm, ModKNorm} {
			if n := *w.Layers[i].norm(m); n != nil && !w.Config.QKNorm {
				return fmt.Errorf("llama: layer %d has a %s weight but the config has no QK-norm", i, m)
			}
		}
		if l := &w.Layers[i]; (l.PostAttnNorm != nil || l.PostFFNNorm != nil) && !w.Config.PostNorms() {
			return fmt.Errorf("llama: layer %d has output norms (Gemma's post-attention and post-feed-forward norms) but the config's family %q has none", i, w.Config.Family)
		}
	}
	for _, p := range w.Params() {
		n := 1
		for _, s := range p.Shape {
			n *= s
		}
		if len(p.Data) != n {
			return fmt.Errorf("llama: tensor %s has %d elements, shape %v needs %d", p.Name, len(p.Data), p.Shape, n)
		}
	}
	return nil
}

// Clone returns a deep copy of w, which must be valid.
func (w *Weights) Clone() (*Weights, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	c, err := NewWeights(w.Config)
	if err != nil {
		return nil, err
	}
	src, dst := w.Params(), c.Params()
	for i := range src {
		copy(dst[i].Data, src[i].Data)
	}
	return c, nil
}

// ToLayout reorders the rows of every q_proj and k_proj, and of their
// biases, and the values of q_norm and k_norm (one head's worth), so that
// the weights are in layout l, and records l in the config. The model
// computes exactly the same function before and after, provided it applies
// the rotation that matches Config.RopeLayout: the RMSNorm of a head is
// blind to the order of its values, so a norm weight permuted like the
// head's rows gives the permuted output.
func (w *Weights) ToLayout(l RopeLayout) error {
	if l > RopeHalfSplit {
		return fmt.Errorf("llama: unknown rope layout %d", l)
	}
	if err := w.Validate(); err != nil {
		return err
	}
	c := &w.Config
	if c.RopeLayout == l {
		return nil
	}
	conv := InterleavedToHalfSplit
	if l == RopeInterleaved {
		conv = HalfSplitToInterleaved
	}
	hd := c.HeadDim()
	for i := range w.Layers {
		ly := &w.Layers[i]
		copy(ly.Wq, conv(ly.Wq, c.NumHeads, hd, c.Dim))
		copy(ly.Wk, conv(ly.Wk, c.NumKVHeads, hd, c.Dim))
		// A bias is a one-column matrix whose rows are the weight's, a
		// QK-norm weight one head of such rows.
		if ly.Bq != nil {
			copy(ly.Bq, conv(ly.Bq, c.NumHeads, hd, 1))
		}
		if ly.Bk != nil {
			copy(ly.Bk, conv(ly.Bk, c.NumKVHeads, hd, 1))
		}
		if ly.QNorm != nil {
			copy(ly.QNorm, conv(ly.QNorm, 1, hd, 1))
			copy(ly.KNorm, conv(ly.KNorm, 1, hd, 1))
		}
	}
	c.RopeLayout = l
	return nil
}

// InterleavedToHalfSplit returns a copy of the projection w ([heads·headDim,
// cols], row-major) with each head's rows reordered from llama2.c's
// interleaved rotary layout to Hugging Face's half-split one: the rows of
// pair i, (2i, 2i+1), move to (i, i+headDim/2). This is the permutation
// Hugging Face's conversion script applies to q_proj and k_proj.
func InterleavedToHalfSplit(w []float32, heads, headDim, cols int) []float32 {
	return permuteRows(w, heads, headDim, cols, true)
}

// HalfSplitToInterleaved is the inverse of InterleavedToHalfSplit.
//
// Both panic if len(w) != heads·headDim·cols or headDim is odd, as these are
// programming errors; Weights.ToLayout validates the weights first.
func HalfSplitToInterleaved(w []float32, heads, headDim, cols int) []float32 {
	return permuteRows(w, heads, headDim, cols, false)
}

func permuteRows(w []float32, heads, headDim, cols int, toHalf bool) []float32 {
	if headDim%2 != 0 || len(w) != heads*headDim*cols {
		panic(fmt.Sprintf("llama: permuting %d elements as %d heads of %d rows of %d columns", len(w), heads, headDim, cols))
	}
	// perm[split] = interleaved: the row of each half-split position in
	// the interleaved layout, so gathering by it gives the half-split one.
	return rowperm.Permute(w, halfSplitRowOrder(heads, headDim), !toHalf)
}
