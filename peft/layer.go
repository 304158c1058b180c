package peft

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"regexp"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// Layer is a frozen linear layer y = x·W0ᵀ + b conditioned by a PEFT
// method. It implements [graph.Layer] and, at initialisation, computes
// exactly (bit for bit) what the frozen layer computes.
//
// For the weight-conditioning methods the effective weight is
// Post·(Pre·W0 + s·B·A) (see [Spec]); Forward never forms it, nor any
// [out, out] product, and no [out, in] one except DoRAPEFT's B·A, which
// is that method's point (and, when training on at least as many rows as
// inputs, diag(d)·W0 for the input gradient of a column-scaled method).
// OFT rotates the input; Full trains the base layer's own W and b in
// place.
type Layer struct {
	name    string
	cfg     Config
	method  Method
	spec    Spec
	b       backend.Backend
	base    *graph.Dense
	in, out int
	scaling float32

	a, bm *graph.Value // LoRA A [r, in], B [out, r]
	diag  *graph.Value // d [out]
	mag   *graph.Value // DoRA's m [out]
	w0sq  *graph.Value // ‖W0ᵢ‖² [out, 1], frozen (DoRA)
	c, d  *graph.Value // rotation factors [out, r_p]
	swap  *graph.Value // rotation's J = [[0, −I], [I, 0]] [2r_p, 2r_p], frozen
	oftR  *graph.Value // OFT's skew-symmetric blocks, packed [nb, bs(bs−1)/2]
	oft   *oftConsts
	w, wb *graph.Value // Full: the base layer's W and b, trained in place
	// w0Host and b0Host are Full's pretrained W0 and b on the host, for
	// the update's spectrum and for Model.Unload, until
	// Model.ForgetPretrained lets them go: the device holds the trained
	// weights alone.
	w0Host, b0Host []float32

	// Dropout masks are a function of dropSeed (the layer's name and
	// Config.Seed), the step and micro-batch of the last SetDropoutStep
	// and the number of training forwards since: no generator state that
	// a checkpoint would have to carry.
	dropSeed            uint64
	dropStep, dropMicro uint64
	dropCalls           uint64

	merged *graph.Dense // W' and b' while merged
}

// NewLayer wraps base, a linear layer with weight W0 [out, in] and optional
// bias [out], in the method of cfg, with the initialisation of the paper's
// reference (see the package documentation). name (the layer's path in its
// model, e.g. "model.layers.0.self_attn.q_proj") names the new parameters
// and, with cfg.Seed, seeds their random initialisation. base's parameters
// are neither modified nor frozen ([Inject] freezes them), except by Full,
// which makes them trainable: it trains them in place, keeping their
// pretrained values on the host.
func NewLayer(name string, base *graph.Dense, cfg Config) (*Layer, error) {
	cfg = cfg.WithDefaults()
	if cfg.TargetModules == nil {
		cfg.TargetModules = []string{"re:" + regexp.QuoteMeta(name)} // validation wants targets; a lone layer is its own
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if base == nil || base.W == nil {
		return nil, fmt.Errorf("peft: layer %q: no base weight", name)
	}
	if base.W.Rank() != 2 {
		return nil, fmt.Errorf("peft: layer %q: weight has shape %v, want [out, in]", name, base.W.Shape())
	}
	out, in := base.W.Dim(0), base.W.Dim(1)
	if base.B != nil && base.B.Len() != out {
		return nil, fmt.Errorf("peft: layer %q: bias has shape %v, want [%d]", name, base.B.Shape(), out)
	}
	if base.B != nil && base.B.Backend() != base.W.Backend() {
		return nil, fmt.Errorf("peft: layer %q: bias and weight live on different backends", name)
	}
	if dt := base.W.DType(); dt != backend.Float32 && cfg.Method == Full {
		return nil, fmt.Errorf("peft: layer %q: full fine-tuning trains the base weight itself, which is stored in %s, frozen storage: load the model with float32 base weights (sora's --base-dtype f32) to train it fully, or use an adapter method", name, dt)
	}
	l := &Layer{
		name: name, cfg: cfg, method: cfg.Method, spec: cfg.Method.Spec(),
		b: base.W.Backend(), base: base, in: in, out: out,
	}
	if l.spec.LowRank {
		l.scaling = float32(cfg.Scaling())
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	seed := h.Sum64()
	initRNG := rand.New(rand.NewPCG(cfg.Seed, seed))
	l.dropSeed = graph.MixSeed(cfg.Seed^graph.MixGamma, seed)
	if err := l.init(initRNG); err != nil {
		l.Free()
		return nil, fmt.Errorf("peft: layer %q: %w", name, err)
	}
	return l, nil
}

// kaimingUniform draws n values uniform in (−1/√fan, 1/√fan): PyTorch's
// kaiming_uniform_ with a = √5, as PEFT initialises A and the reference C.
func kaimingUniform(rng *rand.Rand, n, fan int) []float32 {
	bound := 1 / math.Sqrt(float64(fan))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((2*rng.Float64() - 1) * bound)
	}
	return v
}

func filled(n int, c float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = c
	}
	return v
}

func (l *Layer) param(suffix string, data []float32, train graph.Trainability, shape ...int) (*graph.Value, error) {
	return graph.UploadParam(l.b, l.name+"."+suffix, data, train, shape...)
}

func (l *Layer) init(rng *rand.Rand) error {
	var err error
	switch l.method {
	case Full:
		return l.initFull()
	case OFT:
		return l.initOFT()
	}
	r := l.cfg.R
	if l.a, err = l.param("lora_A", kaimingUniform(rng, r*l.in, l.in), graph.Trainable, r, l.in); err != nil {
		return err
	}
	if l.bm, err = l.param("lora_B", make([]float32, l.out*r), graph.Trainable, l.out, r); err != nil {
		return err
	}
	if l.spec.Pre == Diagonal || l.spec.Post == Diagonal {
		if l.diag, err = l.param("lora_Diag", filled(l.out, 1), graph.Trainable, l.out); err != nil {
			return err
		}
	}
	if l.spec.Post == NormDiagonal {
		// m and ‖W0ᵢ‖² come from the same device kernels the forward uses
		// for n, so that m ⊘ n is exactly 1 at initialisation. A W0
		// stored in bfloat16 is widened for the sum into a float32 copy,
		// one layer's at a time, freed with the tape.
		g := graph.New(l.b)
		defer g.Close()
		g.SetNoGrad(true)
		sq := g.SumSqRows(g.ToFloat32(l.base.W))
		norm := g.Sqrt(sq)
		if err := g.Err(); err != nil {
			return err
		}
		if l.mag, err = l.copyTensor("lora_magnitude_vector", norm.Tensor(), graph.Trainable, l.out); err != nil {
			return err
		}
		if l.method == DoRA {
			if l.w0sq, err = l.copyTensor("w0_row_sumsq", sq.Tensor(), graph.Frozen, l.out, 1); err != nil {
				return err
			}
		}
	}
	if l.spec.Pre == Rotation || l.spec.Post == Rotation {
		rp := l.cfg.RotationRank
		c := kaimingUniform(rng, l.out*rp, l.out) // fan_out of C [out, r_p]
		if l.c, err = l.param("lora_C", c, graph.Trainable, l.out, rp); err != nil {
			return err
		}
		if l.d, err = l.param("lora_D", c, graph.Trainable, l.out, rp); err != nil {
			return err
		}
		if l.swap, err = l.param("rotation_swap", swapNeg(rp), graph.Frozen, 2*rp, 2*rp); err != nil {
			return err
		}
	}
	return nil
}

// initFull keeps W0 and b on the host and makes the base layer's own
// tensors trainable: full fine-tuning updates the weights the model
// computes with, so no second device copy of them exists (a trained copy
// beside a frozen W0 would double the layer's device memory).
func (l *Layer) initFull() error {
	var err error
	if l.w0Host, err = l.base.W.Download(); err != nil {
		return err
	}
	if l.base.B != nil {
		if l.b0Host, err = l.base.B.Download(); err != nil {
			return err
		}
	}
	for _, p := range []*graph.Value{l.base.W, l.base.B} {
		if p != nil && !p.Trainable() {
			if err := p.SetTrainable(true); err != nil {
				return err
			}
		}
	}
	l.w, l.wb = l.base.W, l.base.B
	return nil
}

func (l *Layer) copyTensor(suffix string, src backend.Tensor, train graph.Trainability, shape ...int) (*graph.Value, error) {
	t, err := l.b.Alloc(backend.Float32, shape...)
	if err != nil {
		return nil, err
	}
	l.b.Copy(t, src.MustReshape(shape...), false)
	if err := l.b.Sync(); err != nil {
		l.b.Free(t)
		return nil, err
	}
	p, err := graph.NewParam(l.b, l.name+"."+suffix, t, train)
	if err != nil {
		l.b.Free(t)
	}
	return p, err
}

// Name returns the layer's path in its model.
func (l *Layer) Name() string { return l.name }

// Method returns the layer's method.
func (l *Layer) Method() Method { return l.method }

// Config returns the layer's configuration, defaults filled in.
func (l *Layer) Config() Config { return l.cfg }

// Base returns the frozen layer that l wraps. Its tensors hold W0 and b:
// merging does not write into them (see [Model.MergeAndUnload]). Full is
// the exception: it trains them in place, so they hold the trained W and
// b, and the pretrained values are kept on the host.
func (l *Layer) Base() *graph.Dense { return l.base }

// Dims returns the layer's input and output sizes.
func (l *Layer) Dims() (in, out int) { return l.in, l.out }

// Params returns every parameter the layer computes with, in a stable
// order: the frozen base weight W0 and bias b (when it has one), then the
// adapter's tensors as [Layer.Trainable] lists them. Full fine-tuning
// computes with the base layer's own W and b, which it trains, so for Full
// Params is [Layer.Trainable]. A module that lists its slots' parameters
// through Params (as [graph.Module] asks) thus counts each weight of the
// adapted model once.
//
// Params says what the layer uses, not what it owns: the base layer's
// tensors belong to the model, the adapter's to the layer (see
// [Layer.Free]).
func (l *Layer) Params() []*graph.Value {
	if l.method == Full {
		return l.Trainable()
	}
	ps := []*graph.Value{l.base.W}
	if l.base.B != nil {
		ps = append(ps, l.base.B)
	}
	return append(ps, l.Trainable()...)
}

// Trainable returns the tensors the method trains, in a stable order: A,
// B, then d, m, C, D as the method has them (OFT's packed blocks), which
// the layer allocated and owns; for Full the base layer's own W and b,
// which the module owns. For the other methods the base layer is not
// among them ([Inject] freezes it).
func (l *Layer) Trainable() []*graph.Value {
	var ps []*graph.Value
	for _, p := range []*graph.Value{l.a, l.bm, l.diag, l.mag, l.c, l.d, l.oftR, l.w, l.wb} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// LoRAB returns the LoRA B matrix (nil for OFT and Full): LoRA+ trains it
// with a larger learning rate.
func (l *Layer) LoRAB() *graph.Value { return l.bm }

// Free releases every tensor the layer allocated: the adapter's
// parameters, its caches (DoRA's ‖W0ᵢ‖², the rotation's J, OFT's constants) and the merged
// weight. The base layer's tensors are not the layer's and stay, as they
// are (Full's trained, and trainable): the model that holds them frees
// them. The layer must not be used afterwards.
func (l *Layer) Free() {
	if l.method == Full {
		l.w, l.wb = nil, nil // the base layer's, not the layer's
		l.w0Host, l.b0Host = nil, nil
	}
	for _, p := range []*graph.Value{l.a, l.bm, l.diag, l.mag, l.w0sq, l.c, l.d, l.swap, l.oftR, l.w, l.wb} {
		if p != nil {
			p.Free()
		}
	}
	l.a, l.bm, l.diag, l.mag, l.w0sq, l.c, l.d, l.swap, l.oftR, l.w, l.wb = nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil
	if l.oft != nil {
		l.oft.free()
		l.oft = nil
	}
	l.freeMerged()
}

// Forward applies the conditioned layer to x of shape [..., in] and returns
// [..., out]. While the layer is merged it is the dense layer x·W'ᵀ + b'.
// Dropout on the LoRA input applies while g records gradients (for
// DoRAPEFT, on the input of PEFT's frozen correction term too: see
// [DoRAPEFT]).
func (l *Layer) Forward(g *graph.Tape, x *graph.Value) *graph.Value {
	if l.merged != nil {
		return l.merged.Forward(g, x)
	}
	outShape := make([]int, 0, x.Rank())
	for i := 0; i < x.Rank()-1; i++ {
		outShape = append(outShape, x.Dim(i))
	}
	outShape = append(outShape, l.out)
	x2 := g.Reshape(x, -1, max(x.Dim(-1), 1))
	w0, b0 := l.base.W, l.base.B
	var y *graph.Value
	switch l.method {
	case Full:
		y = g.Linear(x2, l.w, l.wb)
	case OFT:
		y = g.Linear(l.oftInput(g, x2), w0, b0)
	case DoRAPEFT:
		if l.cfg.Dropout > 0 && !g.NoGrad() {
			y = l.doraPEFTDropout(g, x2)
		} else {
			y = l.doraPEFT(g, x2)
		}
	default:
		y = l.lowRankForward(g, x2)
	}
	return g.Reshape(y, outShape...)
}

// doraPEFT is DoRAPEFT without dropout (or in evaluation), op by op as
// Hugging Face PEFT computes it: y = k ⊙ (x·W0ᵀ + s·x·Aᵀ·Bᵀ) + b with
// k = m ⊘ n scaling columns, n from the materialised B·A.
func (l *Layer) doraPEFT(g *graph.Tape, x *graph.Value) *graph.Value {
	h := g.Linear(x, l.base.W, nil) // the bias stays outside the scale
	t := g.Scale(g.MatMulNT(x, l.a), l.scaling)
	h = g.Add(h, g.MatMulNT(t, l.bm))
	h = g.ScaleColumns(h, g.Div(l.mag, l.doraNorm(g)))
	if b0 := l.base.B; b0 != nil {
		h = g.Add(h, g.Reshape(b0, l.out))
	}
	return h
}

// doraPEFTDropout is DoRAPEFT in training with dropout p > 0, the function
// Hugging Face PEFT 0.14 computes there (lora.Linear.forward hands the
// dropped input to DoraLinearLayer with base_result = None, which then
// recomputes the frozen product from it):
//
//	y = x·W0ᵀ + b + (k − 1) ⊙ (drop(x)·W0ᵀ) + k ⊙ (s·drop(x)·Aᵀ·Bᵀ),  k = m ⊘ n
//
// with one mask shared by both uses of drop(x), k scaling columns, and n
// detached. It costs a second full-size product forward and another in
// backward (dx gets both), which is what PEFT's DoRA pays with dropout on.
func (l *Layer) doraPEFTDropout(g *graph.Tape, x *graph.Value) *graph.Value {
	w0 := l.base.W
	y := g.Linear(x, w0, l.base.B) // the base layer on the undropped input
	xd := l.dropout(g, x)
	k := g.Div(l.mag, l.doraNorm(g))
	base := g.MatMulNT(xd, w0) // PEFT's base_result, recomputed without bias
	lora := g.MatMulNT(g.Scale(g.MatMulNT(xd, l.a), l.scaling), l.bm)
	y = g.Add(y, g.ScaleColumns(base, g.AddScalar(k, -1)))
	return g.Add(y, g.ScaleColumns(lora, k))
}

// doraNorm returns n, the row norms of W0 + s·B·A, as a [out] value that
// carries no gradient (PEFT detaches it).
func (l *Layer) doraNorm(g *graph.Tape) *graph.Value {
	// PEFT detaches the whole norm, W0 included when it is trainable.
	a, bm, w0 := g.Detach(l.a), g.Detach(l.bm), g.Detach(l.base.W)
	if l.method == DoRAPEFT {
		// The PEFT way: materialise the [out, in] weight (from a float32
		// copy of W0 where it is stored in bfloat16: one more [out, in]
		// temporary, as large as the one PEFT's way makes anyway).
		w := g.Add(g.ToFloat32(w0), g.Scale(g.MatMul(bm, a), l.scaling))
		return g.Reshape(g.Sqrt(g.SumSqRows(w)), l.out)
	}
	// ‖W0ᵢ + s(BA)ᵢ‖² = ‖W0ᵢ‖² + 2s·(W0Aᵀ)ᵢ·Bᵢ + s²·Bᵢ(AAᵀ)Bᵢᵀ: products of
	// sizes [out, r] and [r, r] only, and ‖W0ᵢ‖² cached.
	s := float64(l.scaling)
	wa := g.MatMulNT(w0, a)               // [out, r] (computed transposed when W0 is bfloat16)
	baa := g.MatMul(bm, g.MatMulNT(a, a)) // [out, r]
	cross := g.SumRows(g.Mul(wa, bm))     // [out, 1]
	quad := g.SumRows(g.Mul(baa, bm))     // [out, 1]
	w0sq := l.w0sq
	if l.base.W.RequiresGrad() {
		w0sq = g.SumSqRows(w0) // a W0 that trains makes the cached norms stale
	}
	n2 := g.Add(w0sq, g.Scale(cross, float32(2*s)))
	n2 = g.Add(n2, g.Scale(quad, float32(s*s)))
	// Rounding can take n² a hair below 0 only for a row that is ≈ 0,
	// where PEFT's norm is 0 as well.
	return g.Reshape(g.Sqrt(g.ReLU(n2)), l.out)
}

// NamedTensor is one trainable tensor of a layer as adapter files store it.
type NamedTensor struct {
	// Key is the name after the module path, as Hugging Face PEFT writes
	// it ("lora_A.weight", "lora_B.weight", "lora_magnitude_vector",
	// "oft_R.weight") or the SORA reference does ("lora_Diag.weight",
	// "lora_C.weight", "lora_D.weight"); Full's are "weight" and "bias".
	Key string
	// Shape is the shape in the file ([out, 1] for lora_Diag, whose value
	// is a vector [out] here).
	Shape []int
	// Value is the parameter; its data is row-major in Shape's order.
	Value *graph.Value
}

// Tensors returns the layer's trainable tensors with their adapter-file
// names and shapes, in the order of [Layer.Trainable].
func (l *Layer) Tensors() []NamedTensor {
	var ts []NamedTensor
	add := func(key string, v *graph.Value, shape ...int) {
		if v != nil {
			ts = append(ts, NamedTensor{Key: key, Shape: shape, Value: v})
		}
	}
	r, rp := l.cfg.R, l.cfg.RotationRank
	add("lora_A.weight", l.a, r, l.in)
	add("lora_B.weight", l.bm, l.out, r)
	add("lora_Diag.weight", l.diag, l.out, 1)
	add("lora_magnitude_vector", l.mag, l.out)
	add("lora_C.weight", l.c, l.out, rp)
	add("lora_D.weight", l.d, l.out, rp)
	if l.oft != nil {
		add("oft_R.weight", l.oftR, l.oft.nb, l.oft.bs*(l.oft.bs-1)/2)
	}
	add("weight", l.w, l.out, l.in)
	add("bias", l.wb, l.out)
	return ts
}
