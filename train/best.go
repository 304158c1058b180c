package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Names inside the output folder, beside AdapterDir.
const (
	// BestDir holds, with Options.KeepBest, the weights of the run's best
	// evaluation, saved as the final adapter is (Trainer.SaveAdapter),
	// and BestFile, the record of that evaluation.
	BestDir = "best"
	// BestFile is the file in BestDir that describes the evaluation whose
	// weights the folder holds (a [Best], as JSON).
	BestFile = "best.json"
)

// Metric is an evaluation metric that a run compares its evaluations by
// (Options.BestMetric): the name sora finetune's --best-metric takes, the
// field of metrics.jsonl without its "eval_" prefix.
type Metric string

// The metrics an evaluation ([EvalResult]) reports.
const (
	// MetricLoss is the held-out loss (eval_loss); lower is better.
	MetricLoss Metric = "loss"
	// MetricAccuracy is the held-out accuracy (eval_accuracy): for LM the
	// share of sequences whose whole answer the model predicts exactly,
	// for classification the share of right labels; higher is better.
	MetricAccuracy Metric = "accuracy"
	// MetricMCC is the Matthews correlation of a classifier (eval_mcc);
	// higher is better.
	MetricMCC Metric = "mcc"
)

// ParseMetric returns the metric that s names: loss, accuracy or mcc, or
// the same with metrics.jsonl's "eval_" prefix (as Hugging Face's
// metric_for_best_model takes either), case-insensitive; "" is loss.
func ParseMetric(s string) (Metric, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	if name == "" {
		return MetricLoss, nil
	}
	name = strings.TrimPrefix(name, "eval_")
	switch Metric(name) {
	case MetricLoss:
		return MetricLoss, nil
	case MetricAccuracy, MetricMCC:
		return Metric(name), nil
	}
	return "", fmt.Errorf("unknown metric %q; want loss, accuracy or mcc", s)
}

// HigherIsBetter reports whether a larger value of m is a better model.
func (m Metric) HigherIsBetter() bool { return m != MetricLoss }

// Field returns m's field in metrics.jsonl: eval_loss, eval_accuracy or
// eval_mcc.
func (m Metric) Field() string { return "eval_" + string(m) }

// TaskMetrics returns the metrics that the evaluation of task reports:
// loss and accuracy for LM, and MCC too for classification.
func TaskMetrics(task Task) []Metric {
	if task == Classify {
		return []Metric{MetricLoss, MetricAccuracy, MetricMCC}
	}
	return []Metric{MetricLoss, MetricAccuracy}
}

// ForTask returns an error naming the metrics available where the
// evaluation of task does not report m.
func (m Metric) ForTask(task Task) error {
	names := make([]string, 0, 3)
	for _, a := range TaskMetrics(task) {
		if a == m {
			return nil
		}
		names = append(names, string(a))
	}
	return fmt.Errorf("the evaluation of --task %s does not report %s; it reports %s", task, m, strings.Join(names, " and "))
}

// Value returns m's value in ev, or an error where ev does not report it
// (MCC of an LM evaluation).
func (m Metric) Value(ev *EvalResult) (float64, error) {
	switch m {
	case MetricLoss:
		return ev.Loss, nil
	case MetricAccuracy:
		return ev.Accuracy, nil
	case MetricMCC:
		if ev.MCC != nil {
			return *ev.MCC, nil
		}
	}
	return 0, fmt.Errorf("train: the evaluation reports no %s", m.Field())
}

// Best is the best evaluation of a run by Options.BestMetric, as
// BestDir/BestFile and the checkpoints record it.
type Best struct {
	// Step is the number of steps trained before the evaluation, and
	// Epoch the passes over the training data they make.
	Step  int     `json:"step"`
	Epoch float64 `json:"epoch"`
	// Metric is the metric's field in metrics.jsonl (eval_loss,
	// eval_accuracy or eval_mcc), and Value its value.
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	// Eval is the whole evaluation.
	Eval *EvalResult `json:"eval"`
}

// bestJSON is a Best as JSON: Value optional, so that an infinite one
// (the first evaluation's loss, from a diverged model) can be written as
// text under non_finite, as the evaluation's own values are (see
// EvalResult.MarshalJSON).
type bestJSON struct {
	Step      int               `json:"step"`
	Epoch     float64           `json:"epoch"`
	Metric    string            `json:"metric"`
	Value     *float64          `json:"value,omitempty"`
	Eval      *EvalResult       `json:"eval"`
	NonFinite map[string]string `json:"non_finite,omitempty"`
}

// MarshalJSON writes b with its fields' JSON names, a NaN or infinite
// Value as text under non_finite (see EvalResult.MarshalJSON).
func (b Best) MarshalJSON() ([]byte, error) {
	w := bestJSON{Step: b.Step, Epoch: b.Epoch, Metric: b.Metric, Value: &b.Value, Eval: b.Eval}
	w.NonFinite = moveNonFinite(map[string]**float64{"value": &w.Value})
	return json.Marshal(w)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (b *Best) UnmarshalJSON(data []byte) error {
	var w bestJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	if err := restoreNonFinite(map[string]**float64{"value": &w.Value}, w.NonFinite); err != nil {
		return err
	}
	*b = Best{Step: w.Step, Epoch: w.Epoch, Metric: w.Metric, Eval: w.Eval}
	if w.Value != nil {
		b.Value = *w.Value
	}
	return nil
}

// EarlyStop says that early stopping (Options.EarlyStopping) ended a run
// before its last step.
type EarlyStop struct {
	// Step is the last step trained, after which the evaluation that
	// exhausted the patience was taken.
	Step int `json:"step"`
	// Reason says why, in words.
	Reason string `json:"reason"`
}

// selection is where a run stands in choosing its best evaluation and in
// early stopping, kept in every checkpoint so that a resumed run judges
// its evaluations as an uninterrupted one does.
type selection struct {
	// Best is the best evaluation so far (nil before the first).
	Best *Best `json:"best,omitempty"`
	// Stale counts the evaluations since the last that improved on the
	// best by more than the delta (Options.EarlyStoppingDelta).
	Stale int `json:"evals_without_improvement"`
	// Judged is the step of the last evaluation judged: a resumed run
	// evaluates a finished run's last step again, which is no new
	// evaluation.
	Judged int `json:"last_judged_step"`
	// Stop is set once early stopping has ended the run.
	Stop *EarlyStop `json:"stopped_early,omitempty"`
}

// judge takes the evaluation of step, whose metric (lower or higher is
// better) has value v. It reports whether the evaluation is the best so
// far: strictly better than every earlier one (the first is, unless v is
// NaN). It counts it as an improvement, which resets Stale, when it beats
// the best before it by more than delta (the first always does), and
// adds one to Stale otherwise: a run of small gains, each new best, each
// under delta, exhausts the patience as Hugging Face's early stopping
// does. An evaluation of a step already judged changes nothing.
func (s *selection) judge(step int, v float64, higher bool, delta float64) (best bool) {
	if step <= s.Judged {
		return false
	}
	s.Judged = step
	if math.IsNaN(v) {
		s.Stale++
		return false
	}
	if s.Best == nil {
		s.Stale = 0
		return true
	}
	gain := s.Best.Value - v
	if higher {
		gain = -gain
	}
	if gain > delta {
		s.Stale = 0
	} else {
		s.Stale++
	}
	return gain > 0
}

// stops reports whether early stopping with the patience of that many
// evaluations (0: off) ends the run after the last evaluation judged.
func (s *selection) stops(patience int) bool { return patience > 0 && s.Stale >= patience }

// readBest reads BestDir/BestFile of the output folder out; a missing
// folder or file is (nil, nil).
func readBest(out string) (*Best, error) {
	path := filepath.Join(out, BestDir, BestFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var best Best
	if err := json.Unmarshal(b, &best); err != nil {
		return nil, fmt.Errorf("train: %s: %v", path, err)
	}
	return &best, nil
}

// ReadBest reads the record of the best evaluation that a run with
// Options.KeepBest wrote into its output folder out (BestDir/BestFile).
func ReadBest(out string) (*Best, error) {
	best, err := readBest(out)
	if err == nil && best == nil {
		err = fmt.Errorf("train: %s holds no %s", out, filepath.Join(BestDir, BestFile))
	}
	return best, err
}

// writeBest replaces BestDir in the output folder with the trained
// weights, saved by SaveAdapter as the final adapter is, and BestFile
// recording best: into a temporary folder renamed into place, so that
// BestDir is always a whole earlier best or the whole new one.
func (t *Trainer) writeBest(best *Best) (string, error) {
	dir := filepath.Join(t.Options.Out, BestDir)
	err := writeDirAtomic(dir, func(tmp string) error {
		if err := t.SaveAdapter(tmp); err != nil {
			return fmt.Errorf("train: writing the best weights (step %d) to %s: %w", best.Step, dir, err)
		}
		return writeJSONAtomic(filepath.Join(tmp, BestFile), best)
	})
	return dir, err
}

// describeBest is a best evaluation in words.
func describeBest(b *Best) string {
	return fmt.Sprintf("%s %.4f at step %d", b.Metric, b.Value, b.Step)
}
