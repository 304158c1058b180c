package optim

import (
	"fmt"
	"math"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// ClipGradNorm scales the gradients of params down so that their global
// norm √(Σ‖g‖²) is at most maxNorm, as torch.nn.utils.clip_grad_norm_
// does: by maxNorm/(norm + 1e-6) when that is below 1. Parameters without a
// gradient are ignored. It returns the norm before clipping (with maxNorm =
// +Inf it only measures). A NaN or infinite norm is an error and leaves the
// gradients alone, so the caller can skip the step.
func ClipGradNorm(params []*graph.Value, maxNorm float64) (float64, error) {
	if !(maxNorm > 0) {
		return 0, fmt.Errorf("optim: ClipGradNorm: max norm %g must be positive", maxNorm)
	}
	var grads []backend.Tensor
	var b backend.Backend
	seen := map[*graph.Value]bool{}
	for _, p := range params {
		if p == nil || seen[p] || p.Grad().IsZero() {
			continue
		}
		if b != nil && p.Backend() != b {
			return 0, fmt.Errorf("optim: ClipGradNorm: parameter %q lives on another backend", p.Name())
		}
		seen[p] = true
		b = p.Backend()
		grads = append(grads, p.Grad())
	}
	if len(grads) == 0 {
		return 0, nil
	}
	sq, err := b.Alloc(backend.Float32, len(grads))
	if err != nil {
		return 0, fmt.Errorf("optim: ClipGradNorm: %w", err)
	}
	defer b.Free(sq)
	for i, g := range grads {
		b.ReduceRows(backend.SumSquares, sq.MustSlice(i, i+1), g.MustReshape(1, g.Len()))
	}
	h := make([]float32, len(grads))
	if err := b.Download(h, sq); err != nil {
		return 0, fmt.Errorf("optim: ClipGradNorm: %w", err)
	}
	total := 0.0
	for _, v := range h {
		total += float64(v)
	}
	norm := math.Sqrt(total)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm, fmt.Errorf("optim: ClipGradNorm: the gradient norm is %g", norm)
	}
	if coef := maxNorm / (norm + 1e-6); coef < 1 {
		for _, g := range grads {
			b.Scale(g, g, float32(coef))
		}
	}
	return norm, b.Sync()
}
