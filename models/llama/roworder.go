package llama

import (
	"strconv"
	"strings"
)

// HFRowOrder returns how the output rows of the layer named name (as
// [Model.Layers] names it, e.g. "model.layers.0.self_attn.q_proj") of a
// model with configuration c relate to Hugging Face's order: row i of the
// Hugging Face tensor is row perm[i] of c's. It returns nil where the two
// orders agree: for every layer of a half-split model, and for all layers
// but q_proj and k_proj of an interleaved one (whose rows are permuted as
// [InterleavedToHalfSplit] permutes them, per attention head, with
// c.NumKVHeads heads for k_proj). It also returns nil for names that are
// not a decoder layer's q_proj or k_proj within c.NumLayers.
//
// Adapter files hold Hugging Face's row order whatever the base's format
// (package peft/adapter), so an adapter trained on a llama2.c checkpoint
// applies unchanged to its Hugging Face conversion and to PEFT's models;
// [Model.HFRowOrder] hands this permutation to the adapter code.
func HFRowOrder(c Config, name string) []int {
	if c.RopeLayout != RopeInterleaved {
		return nil
	}
	rest, ok := strings.CutPrefix(name, "model.layers.")
	if !ok {
		return nil
	}
	idx, module, ok := strings.Cut(rest, ".")
	if !ok {
		return nil
	}
	n, err := strconv.Atoi(idx)
	if err != nil || n < 0 || n >= c.NumLayers || strconv.Itoa(n) != idx {
		return nil
	}
	heads := 0
	switch module {
	case ModQ:
		heads = c.NumHeads
	case ModK:
		heads = c.NumKVHeads
	default:
		return nil
	}
	hd := c.HeadDim()
	if heads <= 0 || hd <= 0 || hd%2 != 0 {
		return nil // an invalid config; New and the loaders refuse it
	}
	return halfSplitRowOrder(heads, hd)
}

// halfSplitRowOrder returns perm with perm[split] = interleaved for each
// row of heads heads of headDim rows: row 2i + j of a head in the
// interleaved layout is row j·headDim/2 + i in the half-split one. It is
// the one definition of that pairing (permuteRows applies it).
func halfSplitRowOrder(heads, headDim int) []int {
	perm := make([]int, heads*headDim)
	half := headDim / 2
	for h := 0; h < heads; h++ {
		base := h * headDim
		for i := 0; i < half; i++ {
			for j := 0; j < 2; j++ {
				perm[base+j*half+i] = base + 2*i + j
			}
		}
	}
	return perm
}

// HFRowOrder returns [HFRowOrder] for the model's configuration: the order
// of the layer's output rows in Hugging Face's layout, nil where it is the
// model's own. Package peft/adapter looks for this method on the module it
// saves or loads, so that adapter files hold Hugging Face's row order
// whatever the format the model was loaded from.
func (m *Model) HFRowOrder(name string) []int { return HFRowOrder(m.cfg, name) }
