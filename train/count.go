package train

import (
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// CountParams counts parameters as Hugging Face's
// print_trainable_parameters does for a PEFT model: total is the base
// model (its score head included) plus the adapters' own tensors (full
// fine-tuning's trainable copies replace the weights they copy, so add
// nothing), and trainable is the adapters' tensors plus any trainable
// parameter of the model itself (the score head of a classifier). With a
// nil adapter it counts the model alone.
func CountParams(m *llama.Model, pm *peft.Model) (trainable, total int64) {
	total = m.Config().NumParams()
	if m.Score != nil {
		for _, p := range llama.LayerParams(m.Score) {
			total += int64(p.Len())
		}
	}
	adapter := map[any]bool{}
	if pm != nil {
		for _, l := range pm.Layers() {
			for _, p := range l.Params() {
				adapter[p] = true
				trainable += int64(p.Len())
				if l.Method() != peft.Full {
					total += int64(p.Len())
				}
			}
		}
	}
	for _, p := range m.Params() {
		if p.Trainable() && !adapter[p] {
			trainable += int64(p.Len())
		}
	}
	return trainable, total
}
