package train

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
)

// EvalResult summarises a model on an evaluation set.
type EvalResult struct {
	// Loss is the mean cross-entropy per target: per answer token (LM) or
	// per sequence (classification).
	Loss float64 `json:"loss"`
	// Targets is the number of terms Loss averages.
	Targets int `json:"targets"`
	// Accuracy is, for classification, the fraction of sequences whose
	// arg-max class is the label; for LM, the fraction whose whole answer
	// the model predicts token by token (the arg-max at every answer
	// position given the answer so far is the next answer token). For LM
	// that is exactly the exact-match accuracy of greedy decoding: greedy
	// decoding produces the answer if and only if every such arg-max is
	// right.
	Accuracy float64 `json:"accuracy"`
	// MCC is the Matthews correlation, for classification only (nil for
	// LM): a pointer, so that an MCC of 0, which a model that always
	// predicts one class gets, is reported rather than left out.
	MCC *float64 `json:"mcc,omitempty"`
	// Sequences is the number of sequences evaluated.
	Sequences int `json:"sequences"`
	// Predictions holds the predicted class of each sequence
	// (classification), in input order.
	Predictions []int `json:"-"`
}

// Evaluate runs the model without recording gradients over seqs in batches
// of batch sequences. classes is the number of classes (classification).
// A cancelled ctx stops it before the next batch, with an error wrapping
// ctx's.
func Evaluate(ctx context.Context, m *llama.Model, task Task, seqs []data.Sequence, batch, classes int) (*EvalResult, error) {
	if len(seqs) == 0 {
		return nil, fmt.Errorf("train: no evaluation sequences")
	}
	if batch < 1 {
		return nil, fmt.Errorf("train: evaluation batch %d; want at least 1", batch)
	}
	g := graph.New(m.Backend())
	defer g.Close()
	g.SetNoGrad(true)
	res := &EvalResult{Sequences: len(seqs)}
	var lossSum float64
	correct := 0
	// Longest first: each batch holds sequences of similar length, and
	// so little padding. The results do not depend on the order (but for
	// the float64 rounding of the loss's sum).
	idx := make([]int, len(seqs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(len(seqs[b].Tokens), len(seqs[a].Tokens)) })
	var preds, golds []int
	mbs := microBatches(idx, batch)
	for i, mb := range mbs {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("train: evaluation stopped after %d of %d batches: %w", i, len(mbs), err)
		}
		b, err := data.MakeBatch(seqs, mb)
		if err != nil {
			return nil, err
		}
		var logits *graph.Value
		var rows, targets []int32
		if task == Classify {
			logits, err = m.Classify(g, toLlama(b))
		} else {
			rows, targets = b.LossPositions()
			if len(rows) == 0 {
				g.Reset()
				continue
			}
			logits, err = m.LogitsAt(g, toLlama(b), rows)
		}
		if err != nil {
			g.Reset()
			return nil, err
		}
		host, err := logits.Download()
		g.Reset()
		if err != nil {
			return nil, err
		}
		v := len(host) / max(1, logits.Dim(0))
		if task == Classify {
			for r := range b.Size {
				row := host[r*v : (r+1)*v]
				lossSum += nll(row, int(b.Labels[r]))
				p := llama.Argmax(row)
				preds = append(preds, p)
				golds = append(golds, int(b.Labels[r]))
				if p == int(b.Labels[r]) {
					correct++
				}
			}
			res.Targets += b.Size
			continue
		}
		// LM: a sequence is right when every one of its answer rows is.
		ok := make([]bool, b.Size)
		for r := range ok {
			ok[r] = true
		}
		for k, pos := range rows {
			row := host[k*v : (k+1)*v]
			lossSum += nll(row, int(targets[k]))
			if llama.Argmax(row) != int(targets[k]) {
				ok[int(pos)/b.Len] = false
			}
		}
		for _, o := range ok {
			if o {
				correct++
			}
		}
		res.Targets += len(rows)
	}
	if res.Targets == 0 {
		return nil, fmt.Errorf("train: the evaluation sequences hold no answer tokens")
	}
	res.Loss = lossSum / float64(res.Targets)
	res.Accuracy = float64(correct) / float64(len(seqs))
	if task == Classify {
		res.Predictions = preds
		mcc, err := data.MCC(preds, golds, max(classes, 2))
		if err != nil {
			return nil, err
		}
		res.MCC = &mcc
	}
	return res, nil
}

// nll returns −log softmax(logits)[target] in float64.
func nll(logits []float32, target int) float64 {
	mx := math.Inf(-1)
	for _, x := range logits {
		mx = math.Max(mx, float64(x))
	}
	var s float64
	for _, x := range logits {
		s += math.Exp(float64(x) - mx)
	}
	return math.Log(s) + mx - float64(logits[target])
}

// evalJSON is an EvalResult as JSON: its values optional, so that a NaN
// or infinite one (a diverged model's loss) can be left out of its field
// and written as text under non_finite, as metrics.jsonl writes it (see
// moveNonFinite).
type evalJSON struct {
	Loss      *float64          `json:"loss,omitempty"`
	Targets   int               `json:"targets"`
	Accuracy  *float64          `json:"accuracy,omitempty"`
	MCC       *float64          `json:"mcc,omitempty"`
	Sequences int               `json:"sequences"`
	NonFinite map[string]string `json:"non_finite,omitempty"`
}

func (w *evalJSON) floats() map[string]**float64 {
	return map[string]**float64{"loss": &w.Loss, "accuracy": &w.Accuracy, "mcc": &w.MCC}
}

// MarshalJSON writes e with its fields' JSON names; a NaN or infinite
// value is left out of its field and written as text ("NaN", "+Inf",
// "-Inf") under non_finite, as metrics.jsonl does, which JSON numbers
// cannot hold. Predictions are not written.
func (e EvalResult) MarshalJSON() ([]byte, error) {
	w := evalJSON{Loss: &e.Loss, Targets: e.Targets, Accuracy: &e.Accuracy, Sequences: e.Sequences}
	if e.MCC != nil {
		mcc := *e.MCC
		w.MCC = &mcc
	}
	w.NonFinite = moveNonFinite(w.floats())
	return json.Marshal(w)
}

// UnmarshalJSON reads what MarshalJSON writes, the values under
// non_finite back in their fields.
func (e *EvalResult) UnmarshalJSON(b []byte) error {
	var w evalJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if err := restoreNonFinite(w.floats(), w.NonFinite); err != nil {
		return err
	}
	*e = EvalResult{Targets: w.Targets, MCC: w.MCC, Sequences: w.Sequences}
	if w.Loss != nil {
		e.Loss = *w.Loss
	}
	if w.Accuracy != nil {
		e.Accuracy = *w.Accuracy
	}
	return nil
}
