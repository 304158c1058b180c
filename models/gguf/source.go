package gguf

import (
	"fmt"

	"github.com/sora-go/sora/models/llama"
)

// weightsSource serves host weights as a llama.Source.
type weightsSource struct {
	cfg    llama.Config
	params map[string]llama.Param
}

// WeightsSource returns w, which must be valid, as a llama.Source whose
// rows alias w's memory, so that host weights export through
// ExportSource.
func WeightsSource(w *llama.Weights) (llama.Source, error) {
	if w == nil {
		return nil, fmt.Errorf("gguf: nil weights")
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	s := &weightsSource{cfg: w.Config, params: map[string]llama.Param{}}
	for _, p := range w.Params() {
		s.params[p.Name] = p
	}
	return s, nil
}

func (s *weightsSource) Config() llama.Config { return s.cfg }

func (s *weightsSource) ReadRows(name string, row0 int, dst []float32) error {
	p, ok := s.params[name]
	if !ok {
		return fmt.Errorf("gguf: the weights have no tensor %s", name)
	}
	c := cols(p.Shape)
	if row0 < 0 || len(dst)%c != 0 || row0*c+len(dst) > len(p.Data) {
		return fmt.Errorf("gguf: reading %d values from row %d of %s %v", len(dst), row0, name, p.Shape)
	}
	copy(dst, p.Data[row0*c:])
	return nil
}
