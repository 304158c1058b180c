package train

import (
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// CountParams returns the trainable and total parameter elements of m with
// its adapter pm: pm's [peft.Model.Report], Hugging Face's
// print_trainable_parameters (every parameter the adapted model computes
// with, each once; full fine-tuning trains the model's own tensors, which
// are counted once). With a nil adapter it counts m's parameters alone.
func CountParams(m *llama.Model, pm *peft.Model) (trainable, total int64) {
	if pm != nil {
		r := pm.Report()
		return r.Trainable, r.Total
	}
	for _, p := range m.Params() {
		total += int64(p.Len())
		if p.Trainable() {
			trainable += int64(p.Len())
		}
	}
	return trainable, total
}
