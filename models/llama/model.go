package llama

import (
	"fmt"
	"strconv"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// Model is a LLaMA decoder whose parameters live in backend memory: the
// model that training, generation and classification run, written once
// against the op interface of package backend through package graph.
//
// Every linear layer sits in a replaceable slot (a [graph.Layer]; a
// [*graph.Dense] when loaded) so that a PEFT method can wrap it by name
// without the model knowing (see [Model.Layers] for the names). Parameters
// are frozen when loaded; make the ones to train trainable with
// [graph.Value.SetTrainable] (not the linear layers' weights nor the
// embedding of a model built with bfloat16 base weights: see [Options]).
//
// A Model is used from one goroutine at a time, like its backend.
type Model struct {
	cfg Config
	b   backend.Backend
	// baseDType is Options.BaseDType, Float32 for 0.
	baseDType backend.DType

	// Embed is the token embedding [vocab, dim], model.embed_tokens.weight.
	Embed *graph.Value
	// Blocks are the decoder layers in order.
	Blocks []*Block
	// Norm is the final RMSNorm weight [dim], model.norm.weight.
	Norm *graph.Value
	// Output is the language-model head lm_head, y = x·Wᵀ with W
	// [vocab, dim]. With tied embeddings it is a *graph.Dense whose W is
	// Embed itself.
	Output graph.Layer
	// Score is the sequence-classification head [numLabels, dim] named
	// "score", nil until [Model.AddScoreHead].
	Score graph.Layer

	// layers holds what each decoder layer computes with besides its
	// weights, worked out once from the configuration: its rotary
	// parameters and its attention window.
	layers []layerSpec
	// attnScale is the scale the attention softmax applies to its
	// logits, embedScale Config.EmbedScale (1: none). Without
	// soft-capping attnScale is Config.AttentionScale in float32 and
	// capScale is 0. With Config.AttnLogitSoftcap c, the logits s are
	// multiplied by capScale, AttentionScale/c, and capped by tanh
	// before the softmax, whose attnScale c then gives c·tanh(scale·s/c).
	attnScale, embedScale, capScale float32
	// finalCap is Config.FinalLogitSoftcap in float32 (0: none).
	finalCap float32

	// perHeadAttention forces caches to attend per key/value head even
	// where blockDiagonal prefers all heads at once (tests of both paths).
	perHeadAttention bool
	// checkpoint makes the training forward checkpoint each decoder
	// layer (SetGradientCheckpointing).
	checkpoint bool
}

// layerSpec is what one decoder layer computes with besides its weights.
type layerSpec struct {
	theta  float32   // rotary base (RoPEParams.Theta)
	freqs  []float64 // scaled rotary frequencies, nil for theta's own
	window int       // sliding attention window, 0 for none
}

// layerSpecs works out every layer's layerSpec from c: the full-attention
// layers rotate with RopeTheta under RopeScaling, Gemma's sliding ones
// with LocalRopeTheta unscaled and see the last SlidingWindow positions.
func layerSpecs(c Config) []layerSpec {
	full := layerSpec{theta: float32(c.RopeTheta), freqs: c.RopeFreqs()}
	local := layerSpec{theta: float32(c.LocalRopeTheta), window: c.SlidingWindow}
	specs := make([]layerSpec, c.NumLayers)
	for l := range specs {
		specs[l] = full
		if c.Sliding(l) {
			specs[l] = local
		}
	}
	return specs
}

// Block is one decoder layer: pre-norm attention and a pre-norm gated
// feed-forward (SwiGLU, or Gemma's GeGLU), each added to the residual
// stream, in Gemma after a norm of its own (PostAttnNorm, PostFFNNorm).
// Norm weights are as the checkpoint stores them (for Gemma the offsets w
// of norms that multiply by 1 + w).
type Block struct {
	AttnNorm   *graph.Value // [dim], input_layernorm
	Q, K, V, O graph.Layer  // self_attn.{q,k,v,o}_proj
	// QNorm and KNorm are the per-head RMSNorm weights [head_dim] of the
	// queries and keys, self_attn.q_norm and k_norm; nil without
	// Config.QKNorm. They are parameters, not layer slots: PEFT methods
	// leave them as they are (frozen), full fine-tuning of the whole
	// model makes them trainable like the other norms.
	QNorm, KNorm *graph.Value
	// FFNNorm is the norm before the feed-forward, [dim]: LLaMA's
	// post_attention_layernorm, Gemma's pre_feedforward_layernorm.
	FFNNorm *graph.Value
	Gate    graph.Layer // mlp.gate_proj (llama2.c w1)
	Up      graph.Layer // mlp.up_proj (llama2.c w3)
	Down    graph.Layer // mlp.down_proj (llama2.c w2)
	// PostAttnNorm and PostFFNNorm are Gemma's norms of the attention's
	// and the feed-forward's outputs, [dim], post_attention_layernorm and
	// post_feedforward_layernorm; nil without Config.PostNorms. PEFT
	// methods leave them frozen, like the other norms.
	PostAttnNorm, PostFFNNorm *graph.Value
}

// Names of the layer slots outside the decoder blocks.
const (
	OutputModule = "lm_head"
	ScoreModule  = "score"
)

// ModuleName returns the Hugging Face module name of module (one of the
// Mod* constants) in decoder layer layer, e.g.
// "model.layers.0.self_attn.q_proj": the name [Model.Layers] gives its slot
// and, with ".weight" appended, the name of its weight.
func ModuleName(layer int, module string) string {
	return "model.layers." + strconv.Itoa(layer) + "." + module
}

// Options say how [NewWithOptions] builds a model. The zero value is
// what [New] does.
type Options struct {
	// BaseDType is the storage type of the base model's matrices: the
	// attention and feed-forward projections (q, k, v, o, gate, up,
	// down), the token embedding, and the output head lm_head (the
	// embedding itself where it is tied). backend.Float32 (or 0) keeps
	// them in float32; backend.BFloat16 stores them at half the memory,
	// rounded to nearest even (exact for checkpoints saved in bfloat16,
	// as most Hugging Face ones are), and frozen for good: the model
	// computes with them in float32 (the backend's bfloat16 matrix
	// product, and its Gather, which widens the embedding's rows
	// exactly), PEFT methods adapt the linear layers (see package peft
	// for which), and none of them can be trained (full fine-tuning
	// needs float32). Norms, biases and a score head stay float32.
	// BFloat16 needs a backend that supports backend.OpMatMulBF16;
	// NewWithOptions fails on any other.
	BaseDType backend.DType
}

// baseDType returns o.BaseDType with 0 read as Float32, or an error
// naming the backend where it cannot store it.
func (o Options) baseDType(b backend.Backend) (backend.DType, error) {
	switch o.BaseDType {
	case 0, backend.Float32:
		return backend.Float32, nil
	case backend.BFloat16:
		if !b.Supports(backend.OpMatMulBF16) {
			return 0, fmt.Errorf("llama: base weights in bfloat16 (Options.BaseDType, sora's --base-dtype bf16) need a backend with bfloat16 matrix products (op %s); backend %s (%s) has none: use float32", backend.OpMatMulBF16, b.Name(), b.Device())
		}
		return backend.BFloat16, nil
	}
	return 0, fmt.Errorf("llama: Options.BaseDType %s: want float32 or bfloat16", o.BaseDType)
}

// New uploads w to b and returns the model, every parameter frozen and
// float32; an attention bias becomes the B of its slot's *graph.Dense.
// Each tensor is copied to the backend once; New does not keep w, so a
// caller that drops w after New returns holds at most the host weights
// and the device copy at the peak (on the CPU backend, twice the
// parameters; [NewFromSource] reads a checkpoint tensor by tensor
// instead, without the host weights). It is NewWithOptions with the zero
// Options.
func New(b backend.Backend, w *Weights) (*Model, error) {
	return NewWithOptions(b, w, Options{})
}

// NewWithOptions is [New] with options: o.BaseDType BFloat16 stores the
// linear layers' weights and the embedding in bfloat16 (see [Options]).
// Weights holding a NaN or an infinity are refused, naming the tensor and
// the element.
func NewWithOptions(b backend.Backend, w *Weights, o Options) (*Model, error) {
	if b == nil {
		return nil, fmt.Errorf("llama: New: nil backend")
	}
	if w == nil {
		return nil, fmt.Errorf("llama: New: nil weights")
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	data := map[string][]float32{}
	for _, p := range w.Params() {
		data[p.Name] = p.Data
	}
	// The host slices go to the backend as they are: nothing is copied
	// on the host.
	return build(b, w.Config, o, func(name string, dt backend.DType, shape []int) (*graph.Value, error) {
		d, ok := data[name]
		if n := backend.Shape(shape).NumElements(); !ok || len(d) != n {
			// Validate and Params name every tensor build asks for.
			return nil, fmt.Errorf("llama: New: internal error: no tensor %s of %d elements in the weights", name, n)
		}
		if err := checkFinite(name, shape, 0, d); err != nil {
			return nil, err
		}
		v, err := graph.UploadParamAs(b, name, d, dt, graph.Frozen, shape...)
		if err != nil {
			return nil, fmt.Errorf("llama: uploading %s: %w", name, err)
		}
		return v, nil
	})
}

// tensorFunc uploads the tensor called name (a canonical name, as
// [Weights.Params] gives it) of the given shape to the backend in
// storage type dt and returns it, a frozen parameter; on failure it
// leaves nothing of it allocated.
type tensorFunc func(name string, dt backend.DType, shape []int) (*graph.Value, error)

// build makes the model of configuration c, valid, on b with options o,
// each tensor uploaded by get. On failure it frees what it uploaded.
func build(b backend.Backend, c Config, o Options, get tensorFunc) (*Model, error) {
	dt, err := o.baseDType(b)
	if err != nil {
		return nil, err
	}
	m := &Model{cfg: c, b: b, baseDType: dt, layers: layerSpecs(c), attnScale: float32(c.AttentionScale()), embedScale: c.EmbedScale(),
		finalCap: float32(c.FinalLogitSoftcap)}
	if cp := c.AttnLogitSoftcap; cp != 0 {
		m.capScale, m.attnScale = float32(c.AttentionScale()/cp), float32(cp)
	}
	ok := false
	defer func() {
		if !ok {
			m.Free()
		}
	}()
	upAs := func(name string, dt backend.DType, shape ...int) (*graph.Value, error) {
		return get(name, dt, shape)
	}
	up := func(name string, shape ...int) (*graph.Value, error) {
		return upAs(name, backend.Float32, shape...)
	}
	dense := func(layer int, mod string) (graph.Layer, error) {
		s := ModuleShape(c, mod)
		v, err := upAs(LayerParamName(layer, mod), dt, s...)
		if err != nil {
			return nil, err
		}
		d := &graph.Dense{W: v}
		if c.HasBias(mod) {
			if d.B, err = up(LayerBiasName(layer, mod), s[0]); err != nil {
				v.Free()
				return nil, err
			}
		}
		return d, nil
	}
	// The embedding takes the base dtype too: in models with a large
	// vocabulary it is much of the model (Gemma 3 270M: 168M of 268M
	// parameters), and a tied head shares it.
	if m.Embed, err = upAs(EmbedName, dt, c.VocabSize, c.Dim); err != nil {
		return nil, err
	}
	for i := range c.NumLayers {
		blk := &Block{}
		m.Blocks = append(m.Blocks, blk)
		if blk.AttnNorm, err = up(LayerParamName(i, ModInputNorm), c.Dim); err != nil {
			return nil, err
		}
		ffnNorm := ModPostNorm
		if c.PostNorms() {
			ffnNorm = ModPreFFNNorm
			if blk.PostAttnNorm, err = up(LayerParamName(i, ModPostNorm), c.Dim); err != nil {
				return nil, err
			}
			if blk.PostFFNNorm, err = up(LayerParamName(i, ModPostFFNNorm), c.Dim); err != nil {
				return nil, err
			}
		}
		if blk.FFNNorm, err = up(LayerParamName(i, ffnNorm), c.Dim); err != nil {
			return nil, err
		}
		if c.QKNorm {
			if blk.QNorm, err = up(LayerParamName(i, ModQNorm), c.HeadDim()); err != nil {
				return nil, err
			}
			if blk.KNorm, err = up(LayerParamName(i, ModKNorm), c.HeadDim()); err != nil {
				return nil, err
			}
		}
		for _, s := range blk.slots() {
			if *s.slot, err = dense(i, s.mod); err != nil {
				return nil, err
			}
		}
	}
	if m.Norm, err = up(NormName, c.Dim); err != nil {
		return nil, err
	}
	if c.TiedEmbeddings {
		m.Output = &graph.Dense{W: m.Embed}
	} else {
		out, err := upAs(OutputName, dt, c.VocabSize, c.Dim)
		if err != nil {
			return nil, err
		}
		m.Output = &graph.Dense{W: out}
	}
	ok = true
	return m, nil
}

// Config returns the model's configuration.
func (m *Model) Config() Config { return m.cfg }

// BaseDType returns the storage type the linear layers' base weights and
// the embedding were given (see [Options]): backend.Float32, or
// backend.BFloat16. (Merging an adapter into a bfloat16 layer,
// peft.Model.MergeAndUnload, gives that layer a float32 weight.)
func (m *Model) BaseDType() backend.DType { return m.baseDType }

// Backend returns the backend that holds the model.
func (m *Model) Backend() backend.Backend { return m.b }

// Layers returns the model's replaceable linear-layer slots, named as
// Hugging Face's LlamaForCausalLM (and LlamaForSequenceClassification)
// name the modules, so that PEFT target patterns and adapter files written
// for Hugging Face models apply unchanged:
//
//	model.layers.N.self_attn.q_proj   (llama2.c wq)
//	model.layers.N.self_attn.k_proj   (wk)
//	model.layers.N.self_attn.v_proj   (wv)
//	model.layers.N.self_attn.o_proj   (wo)
//	model.layers.N.mlp.gate_proj      (w1)
//	model.layers.N.mlp.up_proj        (w3)
//	model.layers.N.mlp.down_proj      (w2)
//	lm_head                           (the classifier; shares Embed when tied)
//	score                             (only after AddScoreHead)
//
// in that order, layer by layer. A target such as "q_proj" matches the
// names ending in ".q_proj", as in Hugging Face PEFT; the llama2.c names in
// parentheses translate with [CanonicalModule].
func (m *Model) Layers() []graph.LayerRef {
	refs := make([]graph.LayerRef, 0, 7*len(m.Blocks)+2)
	for i, blk := range m.Blocks {
		for _, s := range blk.slots() {
			refs = append(refs, graph.LayerRef{Name: ModuleName(i, s.mod), Slot: s.slot})
		}
	}
	if m.Output != nil {
		refs = append(refs, graph.LayerRef{Name: OutputModule, Slot: &m.Output})
	}
	if m.Score != nil {
		refs = append(refs, graph.LayerRef{Name: ScoreModule, Slot: &m.Score})
	}
	return refs
}

type slot struct {
	slot *graph.Layer
	mod  string
}

func (blk *Block) slots() []slot {
	return []slot{
		{&blk.Q, ModQ}, {&blk.K, ModK}, {&blk.V, ModV}, {&blk.O, ModO},
		{&blk.Gate, ModGate}, {&blk.Up, ModUp}, {&blk.Down, ModDown},
	}
}

// paramLister is implemented by layers that own parameters other than a
// *graph.Dense's (the conditioned layers of package peft).
type paramLister interface {
	Params() []*graph.Value
}

// LayerParams returns the parameters a layer computes with: W and B of a
// *graph.Dense, or what a layer with a Params() []*graph.Value method lists
// (a PEFT layer: the weights it wraps, frozen, or trained in place by full
// fine-tuning, and its adapter). Other layers have none that the model
// can see.
func LayerParams(l graph.Layer) []*graph.Value {
	switch l := l.(type) {
	case *graph.Dense:
		if l.B != nil {
			return []*graph.Value{l.W, l.B}
		}
		return []*graph.Value{l.W}
	case paramLister:
		return l.Params()
	}
	return nil
}

// Params returns every parameter the model computes with, each once, in a
// stable order: the embedding, then per block the attention norm, the
// attention projections, the QK-norm weights (where the model has them),
// Gemma's attention output norm, the feed-forward norm, Gemma's
// feed-forward output norm and the feed-forward
// projections (each with the [LayerParams] of whatever layer fills the
// slot, so an adapted model lists its base weights and adapters), the
// final norm, the output head (omitted when it is the tied embedding) and
// the score head. It says what the model uses, not what [Model.Free]
// frees.
func (m *Model) Params() []*graph.Value {
	var ps []*graph.Value
	seen := map[*graph.Value]bool{}
	add := func(vs ...*graph.Value) {
		for _, v := range vs {
			if v != nil && !seen[v] {
				seen[v] = true
				ps = append(ps, v)
			}
		}
	}
	add(m.Embed)
	for _, blk := range m.Blocks {
		add(blk.AttnNorm)
		for _, l := range []graph.Layer{blk.Q, blk.K, blk.V, blk.O} {
			add(LayerParams(l)...)
		}
		add(blk.QNorm, blk.KNorm)
		add(blk.PostAttnNorm, blk.FFNNorm, blk.PostFFNNorm)
		for _, l := range []graph.Layer{blk.Gate, blk.Up, blk.Down} {
			add(LayerParams(l)...)
		}
	}
	add(m.Norm)
	for _, l := range []graph.Layer{m.Output, m.Score} {
		if l != nil {
			add(LayerParams(l)...)
		}
	}
	return ps
}

// Trainable returns the parameters that receive gradients, in Params order.
func (m *Model) Trainable() []*graph.Value {
	var ps []*graph.Value
	for _, p := range m.Params() {
		if p.Trainable() {
			ps = append(ps, p)
		}
	}
	return ps
}

// Free releases the device memory of the parameters the model owns: the
// embedding, the norms (QK-norm and Gemma's output norms included) and
// the weights of its layer slots, where a slot
// holds either a *graph.Dense or a layer wrapping one (a layer with a
// Base() *graph.Dense method, as package peft's), whose base weights are
// the model's. The tensors a wrapping layer made (adapters) belong to
// whoever made it: free them there
// (peft.Model.Unload), before or after Free; Free never touches them, so
// nothing is freed twice. The model must not be used afterwards.
func (m *Model) Free() {
	seen := map[*graph.Value]bool{}
	free := func(vs ...*graph.Value) {
		for _, v := range vs {
			if v != nil && !seen[v] {
				seen[v] = true
				v.Free()
			}
		}
	}
	freeLayer := func(l graph.Layer) {
		if w, ok := l.(interface{ Base() *graph.Dense }); ok {
			l = w.Base()
		}
		if d, ok := l.(*graph.Dense); ok && d != nil {
			free(d.W, d.B)
		}
	}
	free(m.Embed, m.Norm)
	for _, blk := range m.Blocks {
		free(blk.AttnNorm, blk.FFNNorm, blk.QNorm, blk.KNorm, blk.PostAttnNorm, blk.PostFFNNorm)
		for _, s := range blk.slots() {
			freeLayer(*s.slot)
		}
	}
	freeLayer(m.Output)
	freeLayer(m.Score)
}

// Weights downloads the model's base parameters into host weights with the
// model's configuration (and rotary layout), QK-norm weights and Gemma's
// output norms included (norm weights as stored: Gemma's offsets), as
// they are now (trained, if they were made trainable; weights stored in
// bfloat16 as their float32 values, exactly). Slots must hold *graph.Dense
// layers (merge PEFT layers first) with a bias exactly where the
// configuration has one ([Config.HasBias]); the score head is not part of
// Weights.
func (m *Model) Weights() (*Weights, error) {
	w, err := NewWeights(m.cfg)
	if err != nil {
		return nil, err
	}
	get := func(what string, v *graph.Value, dst []float32) error {
		if v == nil {
			return fmt.Errorf("llama: Weights: %s is missing", what)
		}
		h, err := v.Download()
		if err != nil {
			return fmt.Errorf("llama: Weights: downloading %s: %w", v.Name(), err)
		}
		if len(h) != len(dst) {
			return fmt.Errorf("llama: Weights: %s has %d elements, want %d", v.Name(), len(h), len(dst))
		}
		copy(dst, h)
		return nil
	}
	// dense downloads a slot's weight and, where the configuration gives
	// the module a bias (bias != nil), its bias.
	dense := func(name string, l graph.Layer, dst, bias []float32) error {
		d, ok := l.(*graph.Dense)
		if !ok {
			return fmt.Errorf("llama: Weights: layer %s is a %T, want a *graph.Dense (merge adapters first)", name, l)
		}
		switch {
		case bias == nil && d.B != nil:
			return fmt.Errorf("llama: Weights: layer %s has a bias, which a model of attention bias %s cannot hold", name, m.cfg.AttentionBias)
		case bias != nil && d.B == nil:
			return fmt.Errorf("llama: Weights: layer %s has no bias; the configuration (attention bias %s) needs one", name, m.cfg.AttentionBias)
		}
		if err := get(name+" weight", d.W, dst); err != nil {
			return err
		}
		if bias != nil {
			return get(name+" bias", d.B, bias)
		}
		return nil
	}
	if err := get("the token embedding", m.Embed, w.TokenEmbedding); err != nil {
		return nil, err
	}
	for i, blk := range m.Blocks {
		l := &w.Layers[i]
		if err := get(fmt.Sprintf("block %d's attention norm", i), blk.AttnNorm, l.AttnNorm); err != nil {
			return nil, err
		}
		if err := get(fmt.Sprintf("block %d's feed-forward norm", i), blk.FFNNorm, l.FFNNorm); err != nil {
			return nil, err
		}
		if m.cfg.QKNorm {
			if err := get(fmt.Sprintf("block %d's query norm", i), blk.QNorm, l.QNorm); err != nil {
				return nil, err
			}
			if err := get(fmt.Sprintf("block %d's key norm", i), blk.KNorm, l.KNorm); err != nil {
				return nil, err
			}
		}
		if m.cfg.PostNorms() {
			if err := get(fmt.Sprintf("block %d's attention output norm", i), blk.PostAttnNorm, l.PostAttnNorm); err != nil {
				return nil, err
			}
			if err := get(fmt.Sprintf("block %d's feed-forward output norm", i), blk.PostFFNNorm, l.PostFFNNorm); err != nil {
				return nil, err
			}
		}
		for _, s := range []struct {
			layer     graph.Layer
			mod       string
			dst, bias []float32
		}{
			{blk.Q, ModQ, l.Wq, l.Bq}, {blk.K, ModK, l.Wk, l.Bk}, {blk.V, ModV, l.Wv, l.Bv}, {blk.O, ModO, l.Wo, l.Bo},
			{blk.Gate, ModGate, l.W1, nil}, {blk.Up, ModUp, l.W3, nil}, {blk.Down, ModDown, l.W2, nil},
		} {
			if err := dense(ModuleName(i, s.mod), s.layer, s.dst, s.bias); err != nil {
				return nil, err
			}
		}
	}
	if err := get("the final norm", m.Norm, w.FinalNorm); err != nil {
		return nil, err
	}
	if !m.cfg.TiedEmbeddings {
		if err := dense(OutputModule, m.Output, w.Output, nil); err != nil {
			return nil, err
		}
	}
	return w, nil
}
