package llama

import (
	"fmt"
	"math/rand/v2"

	"github.com/sora-go/sora/graph"
)

// ScoreInitStd is the standard deviation of the normal distribution the
// score head's weights are drawn from: Hugging Face's initializer_range
// for LLaMA.
const ScoreInitStd = 0.02

// AddScoreHead gives the model a sequence-classification head, as
// Hugging Face's LlamaForSequenceClassification has: a linear layer
// "score" without bias, weight [numLabels, dim], drawn from N(0, 0.02²)
// with a PCG generator seeded with seed, and trainable. It fills the
// [Model.Score] slot (replacing any head there), so a PEFT method sees it
// among the layers and Params lists its weight.
func (m *Model) AddScoreHead(numLabels int, seed uint64) error {
	if numLabels < 2 {
		return fmt.Errorf("llama: AddScoreHead: %d labels; want at least 2", numLabels)
	}
	d := m.cfg.Dim
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	w := make([]float32, numLabels*d)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * ScoreInitStd)
	}
	v, err := graph.UploadParam(m.b, ScoreModule+".weight", w, graph.Trainable, numLabels, d)
	if err != nil {
		return fmt.Errorf("llama: AddScoreHead: %w", err)
	}
	if m.Score != nil {
		for _, p := range LayerParams(m.Score) {
			p.Free()
		}
	}
	m.Score = &graph.Dense{W: v}
	return nil
}

// Classify returns the classification logits [B, numLabels] of the batch:
// the score head applied to the final hidden state of each sequence's last
// real token (position Lengths[b]−1; padding, which follows it, cannot
// influence it under the causal mask), as LlamaForSequenceClassification
// does.
//
// A packed batch (Batch.Segments) holds several sequences per row, so a
// row's last token is not each sequence's: Classify refuses it, and
// [Model.ClassifyAt] takes each sequence's last position instead.
func (m *Model) Classify(g *graph.Tape, bt Batch) (*graph.Value, error) {
	if bt.Segments != nil {
		return nil, fmt.Errorf("llama: Classify: a packed batch (with segments) has several sequences per row, and Classify reads one per row; use ClassifyAt with each sequence's last position")
	}
	if m.Score == nil {
		return nil, fmt.Errorf("llama: Classify: the model has no score head (AddScoreHead)")
	}
	if err := m.validate(bt); err != nil { // before Length reads the lengths
		return nil, err
	}
	rows := make([]int32, bt.Size)
	for b := range rows {
		rows[b] = int32(b*bt.Len + bt.Length(b) - 1)
	}
	return m.ClassifyAt(g, bt, rows)
}

// ClassifyAt returns the classification logits [len(rows), numLabels] of
// the score head applied to the final hidden states at the given flat
// positions (b·Len + t) of the batch: each sequence's last real position,
// which in a packed batch (Batch.Segments) is the last position of each
// document, its hidden state that of the document alone.
func (m *Model) ClassifyAt(g *graph.Tape, bt Batch, rows []int32) (*graph.Value, error) {
	if m.Score == nil {
		return nil, fmt.Errorf("llama: ClassifyAt: the model has no score head (AddScoreHead)")
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("llama: ClassifyAt: no positions to classify")
	}
	h, err := m.hiddenAt(g, bt, rows)
	if err != nil {
		return nil, err
	}
	return m.Score.Forward(g, h), nil
}

// ClassifyLoss returns the mean cross-entropy of the batch's classification
// logits against labels (one per sequence, in [0, numLabels), or
// [graph.IgnoreIndex] to skip a sequence), a one-element value ready for
// Backward, and the logits themselves for accuracy or metrics.
func (m *Model) ClassifyLoss(g *graph.Tape, bt Batch, labels []int32) (loss, logits *graph.Value, err error) {
	if len(labels) != bt.Size {
		return nil, nil, fmt.Errorf("llama: ClassifyLoss: %d labels for %d sequences", len(labels), bt.Size)
	}
	logits, err = m.Classify(g, bt)
	if err != nil {
		return nil, nil, err
	}
	n := logits.Dim(-1)
	for i, l := range labels {
		if l != graph.IgnoreIndex && (l < 0 || int(l) >= n) {
			return nil, nil, fmt.Errorf("llama: ClassifyLoss: label %d of sequence %d is outside 0..%d", l, i, n-1)
		}
	}
	return g.CrossEntropy(logits, labels, graph.CrossEntropyOptions{}), logits, nil
}
