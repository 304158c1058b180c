package llama

import "github.com/sora-go/sora/graph"

// geluTanh returns GELU's tanh approximation of x element-wise,
//
//	y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))),
//
// Gemma's hidden_activation "gelu_pytorch_tanh" (the backend's GELU op is
// the exact erf form, a different function). It is the backend's fused
// GELUTanh op, one pass over the [tokens, intermediate] activation forward
// and one backward, as SiLU is for LLaMA.
func geluTanh(g *graph.Tape, x *graph.Value) *graph.Value { return g.GELUTanh(x) }
