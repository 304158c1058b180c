package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
)

// MetricsFile is the name of the metrics log in the output folder.
const MetricsFile = "metrics.jsonl"

// Record is one line of metrics.jsonl: a training step (Loss set) or an
// evaluation (EvalLoss set), tagged with the step count after which it was
// taken.
type Record struct {
	Step  int     `json:"step"`
	Epoch float64 `json:"epoch"`
	// Training step.
	Loss     *float64 `json:"loss,omitempty"`
	LR       *float64 `json:"lr,omitempty"`
	GradNorm *float64 `json:"grad_norm,omitempty"`
	Tokens   int      `json:"tokens,omitempty"`
	// Positions is the number of positions the step ran through the model,
	// padding included: rows times their padded length, summed over the
	// micro-batches (Tokens of them are real).
	Positions    int     `json:"positions,omitempty"`
	TokensPerSec float64 `json:"tokens_per_s,omitempty"`
	StepMillis   float64 `json:"step_ms,omitempty"`
	// Evaluation.
	EvalLoss     *float64 `json:"eval_loss,omitempty"`
	EvalAccuracy *float64 `json:"eval_accuracy,omitempty"`
	EvalMCC      *float64 `json:"eval_mcc,omitempty"`
	// Best marks the evaluation that was the best so far when it was
	// taken, by Options.BestMetric, in a run that keeps the best or stops
	// early: the last record so marked is the run's best.
	Best bool `json:"best,omitempty"`
	// ElapsedSec is the wall time since the run (or its resumption) began.
	ElapsedSec float64 `json:"elapsed_s"`
	// NonFinite holds, in a line of metrics.jsonl, the fields above whose
	// values are NaN or infinite, which JSON numbers cannot be, with the
	// value as text ("NaN", "+Inf", "-Inf"); the fields themselves are
	// left out of the line. ReadMetrics puts the values back into the
	// fields and leaves this nil.
	NonFinite map[string]string `json:"non_finite,omitempty"`
}

// floats returns the record's optional values, by their JSON names.
func (r *Record) floats() map[string]**float64 {
	return map[string]**float64{"loss": &r.Loss, "lr": &r.LR, "grad_norm": &r.GradNorm,
		"eval_loss": &r.EvalLoss, "eval_accuracy": &r.EvalAccuracy, "eval_mcc": &r.EvalMCC}
}

// encodable returns r with its NaN and infinite values moved into
// NonFinite, so that it can be written as JSON.
func (r Record) encodable() Record {
	r.NonFinite = moveNonFinite(r.floats())
	return r
}

// decodeRecord parses a line of metrics.jsonl, the values in NonFinite
// put back into their fields.
func decodeRecord(line []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return r, err
	}
	if err := restoreNonFinite(r.floats(), r.NonFinite); err != nil {
		return r, err
	}
	r.NonFinite = nil
	return r, nil
}

// moveNonFinite is how the files the trainer writes hold the NaN and
// infinite values that JSON numbers cannot be (metrics.jsonl's records,
// the evaluations in trainer_state.json and best.json): it takes the
// optional values of a record by their JSON names, sets those that are
// NaN or infinite to nil, so that the field is left out, and returns them
// as text ("NaN", "+Inf", "-Inf") by name, for the record's non_finite
// (nil when every value is finite).
func moveNonFinite(fields map[string]**float64) map[string]string {
	var out map[string]string
	for name, p := range fields {
		if *p != nil && (math.IsNaN(**p) || math.IsInf(**p, 0)) {
			if out == nil {
				out = map[string]string{}
			}
			out[name] = strconv.FormatFloat(**p, 'g', -1, 64)
			*p = nil
		}
	}
	return out
}

// restoreNonFinite undoes moveNonFinite: it puts the values of
// nonFinite back into their fields, and fails on a name that is not one
// of them or a value that is not NaN or infinite.
func restoreNonFinite(fields map[string]**float64, nonFinite map[string]string) error {
	for name, v := range nonFinite {
		p, ok := fields[name]
		x, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || !(math.IsNaN(x) || math.IsInf(x, 0)) {
			return fmt.Errorf("non_finite: %q: %q is not a NaN or infinite value of a field that can hold one", name, v)
		}
		*p = &x
	}
	return nil
}

// metricsLog appends records to metrics.jsonl.
type metricsLog struct {
	f *os.File
	w *bufio.Writer
	// pending, when not "", is the path of metrics.jsonl that the log, a
	// fresh run's, replaces once the run begins (commit); until then it
	// is written under a temporary name beside it, so that a run that
	// fails before it trains a step leaves an earlier run's log as it was.
	pending string
	// evaluated holds the steps the log has an evaluation of: a resumed
	// run that had finished evaluates its final weights again (for the
	// caller's report) but does not log them twice.
	evaluated map[int]bool
}

// openMetrics opens dir's metrics.jsonl for appending and returns the
// records it keeps. When resuming from step keep, records of later steps
// (written after that checkpoint by the interrupted run) are removed
// first, atomically, so the log describes exactly the run that continues.
// A fresh run (keep < 0) writes a new log under a temporary name (one
// that removeStaleTemporaries knows), which commit puts in place of
// metrics.jsonl and close, without commit, removes.
func openMetrics(dir string, keep int) (*metricsLog, []Record, error) {
	path := filepath.Join(dir, MetricsFile)
	var records []Record
	if keep < 0 {
		f, err := os.CreateTemp(dir, "."+MetricsFile+".tmp-*")
		if err != nil {
			return nil, nil, fmt.Errorf("train: %w", err)
		}
		if err := f.Chmod(0o644); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, nil, fmt.Errorf("train: %w", err)
		}
		return &metricsLog{f: f, w: bufio.NewWriter(f), pending: path, evaluated: map[int]bool{}}, nil, nil
	}
	if old, err := os.ReadFile(path); err == nil {
		var kept bytes.Buffer
		for _, line := range bytes.Split(old, []byte{'\n'}) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			r, err := decodeRecord(line)
			if err != nil || r.Step > keep {
				continue
			}
			records = append(records, r)
			kept.Write(line)
			kept.WriteByte('\n')
		}
		if err := writeFileAtomic(path, kept.Bytes()); err != nil {
			return nil, nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	m := &metricsLog{f: f, w: bufio.NewWriter(f), evaluated: map[int]bool{}}
	for _, r := range records {
		if r.EvalLoss != nil {
			m.evaluated[r.Step] = true
		}
	}
	return m, records, nil
}

// commit puts a fresh run's log in place of metrics.jsonl (replacing an
// earlier run's), once the run has begun: after its first step, or at the
// checkpoint of a run interrupted before it. Later records are appended
// there. It does nothing to a log already in place.
func (m *metricsLog) commit() error {
	if m == nil || m.pending == "" {
		return nil
	}
	// Closed and opened again, rather than renamed while open, which not
	// every system allows.
	tmp := m.f.Name()
	if err := m.w.Flush(); err != nil {
		return fmt.Errorf("train: writing %s: %w", tmp, err)
	}
	if err := m.f.Close(); err != nil {
		return fmt.Errorf("train: writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, m.pending); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	f, err := os.OpenFile(m.pending, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	m.f, m.pending = f, ""
	m.w.Reset(f)
	return nil
}

// add writes one record and flushes it, so the log is current if the
// process dies. An evaluation of a step the log already has one of is
// left out.
func (m *metricsLog) add(r Record) error {
	if m == nil {
		return nil
	}
	if r.EvalLoss != nil {
		if m.evaluated[r.Step] {
			return nil
		}
		m.evaluated[r.Step] = true
	}
	b, err := json.Marshal(r.encodable())
	if err != nil {
		return err
	}
	m.w.Write(b)
	m.w.WriteByte('\n')
	if err := m.w.Flush(); err != nil {
		return fmt.Errorf("train: writing %s: %w", m.f.Name(), err)
	}
	return nil
}

// close closes the log; a fresh run's log that was never committed (the
// run did not begin) is removed.
func (m *metricsLog) close() error {
	if m == nil {
		return nil
	}
	m.w.Flush()
	err := m.f.Close()
	if m.pending != "" {
		os.Remove(m.f.Name())
	}
	return err
}

// ReadMetrics reads a metrics.jsonl file. A line that is not a record is
// an error naming the line.
func ReadMetrics(path string) ([]Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var out []Record
	for i, line := range bytes.Split(b, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		r, err := decodeRecord(line)
		if err != nil {
			return nil, fmt.Errorf("train: %s:%d: not a metrics record: %v", path, i+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func ptr(v float64) *float64 { return &v }
