package graph

// Layer is a differentiable map from one Value to another. Models hold
// their linear layers as Layers in named slots (see [LayerRef]) so that a
// PEFT method can wrap a layer without the model knowing: package peft
// replaces a slot's *Dense with a conditioned layer that computes the same
// function at initialisation.
type Layer interface {
	// Forward applies the layer to x, recording on g.
	Forward(g *Tape, x *Value) *Value
}

// Dense is the linear layer y = x·Wᵀ + B with W of shape [out, in] and an
// optional bias B of shape [out] (nil for none).
type Dense struct {
	W *Value
	B *Value
}

// Forward returns x·Wᵀ + B for x of shape [..., in].
func (d *Dense) Forward(g *Tape, x *Value) *Value { return g.Linear(x, d.W, d.B) }

// LayerRef names one replaceable layer slot of a model, e.g.
// {"model.layers.0.self_attn.q_proj", &block.Q}. Writing *Slot swaps the
// layer the model calls.
type LayerRef struct {
	Name string
	Slot *Layer
}

// Module is a model as training and PEFT see it: every parameter it owns
// and its replaceable layers by name.
type Module interface {
	// Params returns every parameter of the model, including those inside
	// its layers, in a stable order, each once (a weight shared by two
	// layers, as tied embeddings are, appears once). For a slot holding a
	// layer that wraps another (package peft's), those are the parameters
	// the wrapping layer computes with, which it lists itself.
	Params() []*Value
	// Layers returns the model's replaceable layer slots in a stable order.
	Layers() []LayerRef
}
