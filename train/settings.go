package train

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/peft"
)

// settings returns, by the sora finetune flag that sets each, what a run's
// result depends on besides what the trainer state checks on its own
// (task, seed, batch, steps, data and base model): the optimizer's
// hyper-parameters, the choice of the best evaluation and early stopping,
// the evaluation split held out of the training data (Options.EvalSplit),
// and, with an adapter, the method's. They are kept in
// every checkpoint, and a resume with other values is refused (the
// learning rate excepted: see [Trainer.resume]).
func (t *Trainer) settings(o Options) map[string]string {
	var c *peft.Config
	if t.Adapter != nil {
		cfg := t.Adapter.Config()
		c = &cfg
	}
	dt := backend.Float32
	if t.Model != nil {
		dt = t.Model.BaseDType()
	}
	return runSettings(o, c, dt, t.Eval, t.packLength(o))
}

// runSettings returns the settings (see Trainer.settings) of a run with
// options o (after WithDefaults), the adapter configuration c (as
// peft.Inject keeps it; nil without an adapter), base weights stored as
// baseDType, the evaluation sequences eval, and packed rows of packLen
// tokens (with Options.Packing).
func runSettings(o Options, c *peft.Config, baseDType backend.DType, eval []data.Sequence, packLen int) map[string]string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	clip := "off"
	if o.clipping() {
		clip = f(o.ClipNorm)
	}
	s := map[string]string{
		"lr":           f(o.LR),
		"schedule":     strings.ToLower(o.Schedule),
		"warmup":       strconv.Itoa(o.Warmup),
		"clip":         clip,
		"weight-decay": f(o.WeightDecay),
		"micro-batch":  strconv.Itoa(o.MicroBatch),
	}
	if o.GroupByLength {
		// Recorded only when on, so that checkpoints from before it
		// existed still match a run without it (see settingDefaults).
		s["group-by-length"] = "true"
	}
	if o.TrainOnInputs {
		// Recorded only when on, as group-by-length.
		s["train-on-inputs"] = "true"
	}
	if o.Packing {
		// Recorded only when on, as group-by-length: a packed step
		// rounds otherwise than an unpacked one, or one packed into rows
		// of another length.
		s["packing"] = fmt.Sprintf("true, rows of up to %d tokens", packLen)
	}
	if o.selects() {
		// Recorded only when on, as group-by-length. Each decides what
		// the run leaves: the metric and keep-best what best/ holds, and
		// the patience and delta the step early stopping ends the run
		// at; which evaluations they compare follows from the interval
		// and the evaluation data, recorded with them. A resume that
		// changed one would judge its evaluations otherwise than the
		// checkpoint's best and patience count were judged.
		m, _ := ParseMetric(o.BestMetric)
		s["best-metric"] = string(m)
		s["eval-every"] = strconv.Itoa(o.EvalEvery)
		s["eval-data"] = evalDataID(eval)
		if o.KeepBest {
			s["keep-best"] = "true"
		}
		if o.EarlyStopping > 0 {
			s["early-stopping"] = strconv.Itoa(o.EarlyStopping)
			s["early-stopping-delta"] = f(o.EarlyStoppingDelta)
		}
	}
	if o.EvalSplit != "" {
		// Recorded only when set, as group-by-length.
		s["eval-split"] = o.EvalSplit
	}
	if baseDType == backend.BFloat16 {
		// The base weights' rounding to bfloat16 changes every step's
		// result; recorded only when not float32, as group-by-length.
		s["base-dtype"] = BaseDTypeName(backend.BFloat16)
	}
	if c == nil {
		return s
	}
	s["method"] = string(c.Method)
	s["target"] = strings.Join(c.TargetModules, ",")
	spec := c.Method.Spec()
	if spec.LowRank || c.Method == peft.OFT {
		s["rank"] = strconv.Itoa(c.R)
	}
	if spec.LowRank {
		s["alpha"] = f(c.Alpha)
		if c.RSLoRA {
			// Recorded only when set, so that the settings of runs from
			// before rsLoRA existed still compare equal.
			s["rslora"] = "true"
		}
		// The masks follow the adapter's seed (peft.Model.SetDropoutStep).
		s["dropout"] = f(c.Dropout)
		if c.Dropout > 0 {
			s["dropout"] += fmt.Sprintf(" (masks seeded %d)", c.Seed)
		}
	}
	if spec.Pre == peft.Rotation || spec.Post == peft.Rotation {
		s["rotation-rank"] = strconv.Itoa(c.RotationRank)
		s["exact-rotation"] = strconv.FormatBool(c.ExactRotation)
	}
	if c.LoRAPlusRatio > 0 {
		s["loraplus-ratio"] = f(c.LoRAPlusRatio)
	}
	if c.Method == peft.OFT {
		s["oft-block-size"] = strconv.Itoa(c.OFTBlockSize)
		s["oft-neumann-terms"] = strconv.Itoa(c.OFTNeumannTerms)
	}
	return s
}

// LRSpan is a stretch of a run's steps that trained with one peak
// learning rate (Options.LR, which a resume may change: see
// [Trainer.resume]): from step FromStep (1-based) up to the step before
// the next span's, or to the end.
type LRSpan struct {
	FromStep int     `json:"from_step"`
	LR       float64 `json:"lr"`
}

// StepsSpan is a stretch of a run's steps whose learning-rate schedule
// was computed for one number of steps (Options.Steps, which a resume may
// change: see [Trainer.resume]): from step FromStep (1-based) up to the
// step before the next span's, or to the end.
type StepsSpan struct {
	FromStep int `json:"from_step"`
	Steps    int `json:"steps"`
}

func (s LRSpan) from() int    { return s.FromStep }
func (s StepsSpan) from() int { return s.FromStep }

// spansUpTo returns the spans that steps up to step trained in: a span
// is added before its first step (see Trainer.Run), which a run
// interrupted at once never takes.
func spansUpTo[S interface{ from() int }](spans []S, step int) []S {
	var out []S
	for _, s := range spans {
		if s.from() <= step {
			out = append(out, s)
		}
	}
	return out
}

// spanEnd returns the last step of spans[i]: the step before the next
// span's first, or last for the final span.
func spanEnd[S interface{ from() int }](spans []S, i, last int) int {
	if i+1 < len(spans) {
		return spans[i+1].from() - 1
	}
	return last
}

// lrsUpTo is spansUpTo of learning rates.
func lrsUpTo(lrs []LRSpan, step int) []LRSpan { return spansUpTo(lrs, step) }

// priorTotals returns the numbers of steps that checkpoint st's
// schedule was computed for: its record, or for a checkpoint made before
// checkpoints kept one its total throughout (no resume could change it
// then). Nil when it has no steps.
func priorTotals(st trainerState) []StepsSpan {
	if len(st.StepsHistory) > 0 || st.Step == 0 {
		return spansUpTo(st.StepsHistory, st.Step)
	}
	return []StepsSpan{{FromStep: 1, Steps: st.TotalSteps}}
}

// priorLRs returns the learning rates that checkpoint st's steps trained
// with: its record, or for a checkpoint made before checkpoints kept one
// the rate its settings record, taken to be that of all its steps (nil
// when it records no rate either, or has no steps).
func priorLRs(st trainerState) []LRSpan {
	if len(st.LRs) > 0 || st.Step == 0 {
		return lrsUpTo(st.LRs, st.Step)
	}
	if v, err := strconv.ParseFloat(st.Settings["lr"], 64); err == nil {
		return []LRSpan{{FromStep: 1, LR: v}}
	}
	return nil
}

// settingDefaults are the values of settings recorded only when they
// differ from them.
var settingDefaults = map[string]string{"rslora": "false", "group-by-length": "false", "packing": "false", "base-dtype": BaseDTypeName(backend.Float32),
	"keep-best": "false", "early-stopping": "0", "early-stopping-delta": "0", "best-metric": "unused", "eval-every": "unused", "eval-data": "unused",
	"eval-split": "none"}

// BaseDTypeName returns the name sora's --base-dtype flag gives a storage
// type of base weights, and checkpoints record: "f32" or "bf16".
func BaseDTypeName(dt backend.DType) string {
	switch dt {
	case backend.Float32:
		return "f32"
	case backend.BFloat16:
		return "bf16"
	}
	return dt.String()
}

// ParseBaseDType returns the storage type of base weights that s names:
// "f32" (or "float32") or "bf16" (or "bfloat16"), case-insensitive.
func ParseBaseDType(s string) (backend.DType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "f32", "float32", "fp32":
		return backend.Float32, nil
	case "bf16", "bfloat16":
		return backend.BFloat16, nil
	}
	return 0, fmt.Errorf("base dtype %q: want f32 or bf16", s)
}

// withDefaults returns s with settingDefaults' values where it has none,
// and with the clip of a checkpoint made before "off" was recorded, a
// negative norm, as "off".
func withDefaults(s map[string]string) map[string]string {
	out := maps.Clone(s)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range settingDefaults {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	if v, err := strconv.ParseFloat(out["clip"], 64); err == nil && v < 0 {
		out["clip"] = "off"
	}
	return out
}

// compareSettings compares the settings a checkpoint recorded (was) with
// the run's (is). It returns the differences that forbid resuming, each
// "name was (now is)", the learning rates when only they differ (which a
// resume may change: see [Trainer.resume]), and the names the checkpoint
// does not record (made by a version that recorded fewer). A setting the
// checkpoint records and the run does not ("rotation-rank 4 (now unset)")
// is one the run's method does not use: it follows from another
// difference (the method's), so it is listed only when nothing else
// differs.
func compareSettings(was, is map[string]string) (diffs []string, lrWas, lrIs string, unrecorded []string) {
	was, is = withDefaults(was), withDefaults(is)
	var names []string
	for k := range was {
		names = append(names, k)
	}
	for k := range is {
		if _, ok := was[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var unset []string
	for _, k := range names {
		w, okW := was[k]
		v, okI := is[k]
		switch {
		case okW && okI && w == v:
		case !okW:
			unrecorded = append(unrecorded, k)
		case k == "lr" && okI:
			lrWas, lrIs = w, v
		case !okI:
			unset = append(unset, fmt.Sprintf("%s %s (now unset)", k, w))
		default:
			diffs = append(diffs, fmt.Sprintf("%s %s (now %s)", k, w, v))
		}
	}
	if len(diffs) == 0 {
		diffs = unset
	}
	return diffs, lrWas, lrIs, unrecorded
}
