package peft

import (
	"fmt"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// effective records on g the effective weight W' [out, in] and bias b'
// ([out], nil when the base has none) of the layer's current parameters.
// The bias follows the method's rule: DoRA keeps b (outside its scale),
// Pre-Diag gives d ⊙ b, SORA R(d ⊙ b), Pre- and Post-Ortho R·b, OFT b.
//
// A W0 stored in bfloat16 is widened first into a float32 copy on g (one
// [out, in] float32 temporary, freed with g), since W' is not a bfloat16
// value and the conditioners' ops compute in float32 only.
func (l *Layer) effective(g *graph.Tape) (w, bias *graph.Value) {
	if l.method == Full {
		return l.w, l.wb // W0 does not enter: no copy of it to make
	}
	w0, b0 := g.ToFloat32(l.base.W), l.base.B
	if l.method == OFT {
		return l.oftApply(g, w0, l.oftMatrix(g), true), b0
	}
	w, bias = w0, b0
	col := func(v *graph.Value) *graph.Value { return g.Reshape(v, l.out, 1) }
	vec := func(v *graph.Value) *graph.Value { return g.Reshape(v, l.out) }
	// left applies a free diagonal or a rotation, the conditioners Pre and
	// Post share, on the left of w and to the bias.
	left := func(c Cond) {
		switch c {
		case Diagonal:
			w = g.ScaleRows(w, l.diag)
			if bias != nil {
				bias = g.Mul(vec(bias), l.diag)
			}
		case Rotation:
			rot := l.rotation(g)
			w = rot.left(g, w)
			if bias != nil {
				bias = vec(rot.left(g, col(bias)))
			}
		}
	}
	left(l.spec.Pre)
	if l.spec.LowRank {
		w = g.Add(w, g.Scale(g.MatMul(l.bm, l.a), l.scaling))
	}
	if l.spec.Post == NormDiagonal {
		w = g.ScaleRows(w, g.Div(l.mag, l.doraNorm(g)))
	} else {
		left(l.spec.Post)
	}
	return w, bias
}

// Merged reports whether the layer is merged.
func (l *Layer) Merged() bool { return l.merged != nil }

// Merge folds the adapter into one dense layer: until [Layer.Unmerge],
// Forward computes x·W'ᵀ + b', exactly what the base layer costs. W' and b'
// go into new buffers; the base layer's W0 and b are not touched. Do not
// train while merged: gradients no longer reach the adapter.
func (l *Layer) Merge() error {
	if l.merged != nil {
		return nil
	}
	g := graph.New(l.b)
	defer g.Close()
	g.SetNoGrad(true)
	w, bias := l.effective(g)
	if err := g.Err(); err != nil {
		return fmt.Errorf("peft: merging %q: %w", l.name, err)
	}
	m := &graph.Dense{}
	var err error
	if m.W, err = l.copyTensor("merged_weight", w.Tensor(), graph.Frozen, l.out, l.in); err != nil {
		return fmt.Errorf("peft: merging %q: %w", l.name, err)
	}
	if bias != nil {
		if m.B, err = l.copyTensor("merged_bias", bias.Tensor(), graph.Frozen, l.out); err != nil {
			m.W.Free()
			return fmt.Errorf("peft: merging %q: %w", l.name, err)
		}
	}
	l.merged = m
	return nil
}

// Unmerge undoes [Layer.Merge]: Forward runs the adapter again. Since W0
// was never overwritten, nothing is recomputed or inverted.
func (l *Layer) Unmerge() { l.freeMerged() }

func (l *Layer) freeMerged() {
	if l.merged == nil {
		return
	}
	if l.merged.W != nil {
		l.merged.W.Free()
	}
	if l.merged.B != nil {
		l.merged.B.Free()
	}
	l.merged = nil
}

// fold writes W' and b' into the base layer's own tensors (for
// [Model.MergeAndUnload]). A base without a bias keeps none: no method
// makes a bias out of nothing. A W0 stored in bfloat16 could hold W' only
// rounded: it takes the merged float32 weight's buffer in place of its
// own ([graph.Value.Replace]), so that whatever shares W0 (a tied
// embedding, under bfloat16 base weights) sees W' too, as it does when
// W' is copied into a float32 W0. Its Merge does nothing for a layer
// MergeAndUnload has merged already.
func (l *Layer) fold() error {
	if err := l.Merge(); err != nil {
		return err
	}
	if w0 := l.base.W; w0.DType() != backend.Float32 {
		if err := w0.Replace(l.merged.W.Tensor()); err != nil {
			return fmt.Errorf("peft: folding %q into its base layer: %w", l.name, err)
		}
		// The merged weight's buffer now belongs to W0.
		l.merged.W = nil
	} else {
		l.b.Copy(w0.Tensor(), l.merged.W.Tensor(), false)
	}
	if l.base.B != nil {
		src := l.merged.B.Tensor()
		l.b.Copy(l.base.B.Tensor(), src.MustReshape(l.base.B.Shape()...), false)
	}
	if err := l.b.Sync(); err != nil {
		return fmt.Errorf("peft: folding %q into its base layer: %w", l.name, err)
	}
	return nil
}

// EffectiveWeight returns W' (row-major [out, in]) and b' ([out], nil
// without a bias) of the current parameters, computed on the device in
// float32 the way Merge computes them.
func (l *Layer) EffectiveWeight() (w, bias []float32, err error) {
	g := graph.New(l.b)
	defer g.Close()
	g.SetNoGrad(true)
	wv, bv := l.effective(g)
	if w, err = wv.Download(); err != nil {
		return nil, nil, fmt.Errorf("peft: effective weight of %q: %w", l.name, err)
	}
	if bv != nil {
		if bias, err = bv.Download(); err != nil {
			return nil, nil, fmt.Errorf("peft: effective bias of %q: %w", l.name, err)
		}
	}
	return w, bias, nil
}

var _ graph.Layer = (*Layer)(nil)
