package train

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/optim"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/safetensors"
)

// Trainer trains a model on token sequences. Set the fields, then call
// Run once.
type Trainer struct {
	// Model is the model to train. For classification it must have its
	// score head ([llama.Model.AddScoreHead]).
	Model *llama.Model
	// Adapter, when not nil, is the PEFT method injected into Model: its
	// parameters (in its groups: LoRA+'s, or full fine-tuning's, which
	// exempt biases and norm weights from weight decay) and, for
	// classification, the score head are trained. When nil, every
	// trainable parameter of Model is (pretraining, or a caller that chose
	// them), with weight decay on matrices only.
	Adapter *peft.Model
	// Task says how the sequences are scored.
	Task Task
	// Classes is the number of classes (Classify).
	Classes int
	// Train and Eval are the training and evaluation sequences (Eval may
	// be empty).
	Train, Eval []data.Sequence
	// Options are the hyper-parameters.
	Options Options
	// Progress shows the run (nil: nothing).
	Progress Progress
	// SaveAdapter, when not nil, writes the adapter in Hugging Face PEFT
	// layout into dir, a new empty folder; checkpoints and the final output
	// call it.
	SaveAdapter func(dir string) error
	// OutputLock, when not nil, is the caller's hold on Options.Out
	// ([LockOutput]), taken before it looked into the folder itself (as
	// sora finetune does, to refuse a wrong --resume before a slow model
	// load); Run works under it and leaves releasing it to the caller.
	// When nil, Run takes the lock itself for the length of the run, and
	// fails at once if another run holds the folder.
	OutputLock *OutputLock
	// ZeroShot, when not nil, is the caller's evaluation of the model on
	// Eval before training, which a fresh run with Out logs in
	// metrics.jsonl as the evaluation of step 0 (and so loss.png draws).
	// It is no candidate for Options.KeepBest and EarlyStopping. The
	// checkpoints record it with the evaluation data it was taken on,
	// so that a caller resuming the run can take it from there
	// ([CheckpointInfo.ZeroShot]) instead of evaluating again; a resume
	// without one keeps the checkpoint's record, and one with one (of
	// other evaluation data, say) records that.
	ZeroShot *EvalResult
	// EvalNote, when not "", is a caveat said with each evaluation during
	// the run (that the evaluation sequences were cut short, say).
	EvalNote string

	// beforeStep, when set (by tests), runs before each optimizer step
	// with the number of steps done.
	beforeStep func(step int)
}

// Result is what a run did.
type Result struct {
	// StartStep is the step the run began at (non-zero when resumed) and
	// Steps the number of steps done in all.
	StartStep, Steps int
	// Loss is the mean training loss over the last LogEvery steps, those
	// before a resume included (from metrics.jsonl).
	Loss float64
	// Eval is the final evaluation (nil without evaluation data).
	Eval *EvalResult
	// StepTime is the mean wall time of an optimizer step (forward,
	// backward and update of its micro-batches; not the evaluations and
	// checkpoints between steps), and TokensPerSec the throughput of those
	// steps in real tokens. After a resume they cover the whole run: the
	// steps before it as metrics.jsonl records them (step_ms, tokens).
	StepTime     time.Duration
	TokensPerSec float64
	// Padding is the share of the positions those steps ran through the
	// model that were padding, not real tokens (what Options.GroupByLength
	// and Options.Packing save), over the steps whose records say (those
	// of an older version's run before a resume do not).
	Padding float64
	// Checkpoint is the last checkpoint written ("" without Out), and
	// Adapter the folder of the final adapter ("" without Out or
	// SaveAdapter).
	Checkpoint, Adapter string
	// Best is the run's best evaluation by Options.BestMetric (nil unless
	// it keeps the best or stops early), and BestDir the folder holding
	// its weights (with Options.KeepBest; "" when the folder does not
	// hold them: see the run's messages).
	Best    *Best
	BestDir string
	// EarlyStop, when not nil, says that early stopping ended the run
	// after step Steps, before Options.Steps.
	EarlyStop *EarlyStop
	// LossPlot and Spectra say what the run drew into Out at its end:
	// LossPlot, and SpectrumPlot with SpectrumJSON (not with
	// Options.NoSpectra, without an adapter, or when ctx was cancelled
	// during the last step).
	LossPlot, Spectra bool
	// Trainable is the number of trained parameter elements.
	Trainable int64
	// LRs are the peak learning rates the run's steps trained with, in
	// step order: one span from step 1, unless a resume changed
	// Options.LR after some steps (see [Trainer.resume]); the last is the
	// rate of the final steps. A resume adds a span only when a step
	// trains with its rate, so a finished run resumed with another rate
	// keeps its own. The spans start after step 1 when the run was
	// resumed from a checkpoint that records no rate (made before
	// checkpoints kept their settings; the steps before are unknown), and
	// are empty when no step was ever trained.
	LRs []LRSpan
	// StepsHistory are the numbers of steps the learning-rate schedule
	// was computed for, in step order: one span from step 1 with
	// Options.Steps, unless a resume changed the number of steps after
	// some (see [Trainer.resume]), which starts a span where the first
	// step trains with the new schedule. Empty when no step was ever
	// trained.
	StepsHistory []StepsSpan
	// Devices are the backends and devices the run's steps trained on, in
	// step order, each with the mean time and throughput of its steps:
	// one span from step 1, unless a resume went on on another backend or
	// device (which it says in a note), which starts a span where its
	// first step trains. The spans start after step 1 when the run was
	// resumed from a checkpoint that does not record its device (made
	// before checkpoints kept it), and are empty when no step was ever
	// trained.
	Devices []DeviceSpan
	// Memory is the most memory the backend held during the run, in
	// all and over the training steps (nil for a backend that keeps no
	// peaks: see backend.MemoryTracker). Run resets the backend's peaks
	// to tell the phases apart. It covers this process only; the spans
	// of Devices keep the training steps' peaks across resumes.
	Memory *Memory
}

// InterruptedError is returned by Run when its context is cancelled: the
// run stopped after a whole step, or in the evaluation after it, and
// saved a checkpoint to resume from.
type InterruptedError struct {
	Step       int    // the last step applied
	Checkpoint string // the checkpoint folder to resume from ("" without an output folder)
	Cause      error  // the context's error
}

func (e *InterruptedError) Error() string {
	if e.Checkpoint == "" {
		return fmt.Sprintf("train: interrupted after step %d (%v); nothing was saved (no output folder)", e.Step, e.Cause)
	}
	return fmt.Sprintf("train: interrupted after step %d (%v); checkpoint saved in %s", e.Step, e.Cause, e.Checkpoint)
}

func (e *InterruptedError) Unwrap() error { return e.Cause }

// NonFiniteError is returned when a loss or gradient is NaN or infinite.
// The step that produced it was not applied.
type NonFiniteError struct {
	Step  int     // the step that failed, 1-based
	What  string  // what was not finite, e.g. "loss" or "gradient norm"
	Value float64 // its value: NaN or ±Inf
	// Checkpoint is the newest checkpoint ("" if none was written), made
	// after step CheckpointStep. Its weights are finite, but not
	// necessarily sane: a learning rate that ends in NaN has often blown
	// the weights up steps before, so resuming from it may fail again.
	Checkpoint     string
	CheckpointStep int
	// Largest is the largest magnitude among the trainable weights
	// Checkpoint holds, and LargestIn the tensor holding it, for the user
	// to judge them by (0 and "" when not known: no checkpoint, or one too
	// large to read on the way out).
	Largest   float64
	LargestIn string
}

func (e *NonFiniteError) Error() string {
	msg := fmt.Sprintf("train: the %s is %v at step %d; the step was not applied", e.What, e.Value, e.Step)
	if e.Checkpoint == "" {
		return msg + " and no checkpoint was written yet (try a lower learning rate, or check the data)"
	}
	msg += fmt.Sprintf("; the newest checkpoint, %s (step %d), holds finite weights, but they may have diverged already", e.Checkpoint, e.CheckpointStep)
	if e.LargestIn != "" {
		msg += fmt.Sprintf(" (its largest trainable weight is %.3g, in %s)", e.Largest, e.LargestIn)
	}
	return msg + ": resume from it with a lower learning rate where they look sane, or start the run afresh with one; check the data too"
}

// EvalError is Run's error when an evaluation of the held-out data
// (Trainer.Eval) failed: one during training or the final one, after
// step Step. A caller tells it from a failed step by it, since what helps
// differs (a step's memory holds what the backward pass keeps; an
// evaluation's does not).
type EvalError struct {
	Step int
	Err  error
}

func (e *EvalError) Error() string {
	return fmt.Sprintf("train: evaluating after step %d: %v", e.Step, e.Err)
}

func (e *EvalError) Unwrap() error { return e.Err }

// absent reports whether nothing exists at path.
func absent(path string) bool {
	_, err := os.Lstat(path)
	return errors.Is(err, os.ErrNotExist)
}

// removeUnbegun removes from the output folder out what a run that failed
// made there without training a step: its metrics log (newLog: the run
// created it; a resume's, as a fresh run's is under a temporary name
// until the run begins, removed when it is closed), where the log records
// no training step, only the evaluation before training or nothing, and
// the checkpoints folder (newCheckpoints), where it is empty.
func removeUnbegun(out string, newLog, newCheckpoints bool) {
	if newLog {
		path := filepath.Join(out, MetricsFile)
		if rs, err := ReadMetrics(path); err == nil && !slices.ContainsFunc(rs, func(r Record) bool { return r.Loss != nil }) {
			os.Remove(path)
		}
	}
	if newCheckpoints {
		os.Remove(filepath.Join(out, CheckpointsDir)) // only if empty
	}
}

// largestWeight returns the largest magnitude among the trainable weights
// of checkpoint dir and the tensor that holds it ("" where they cannot be
// read, or hold more than a run's failure should wait to read).
func largestWeight(dir string) (float64, string) {
	path := filepath.Join(dir, tensorsFile)
	if fi, err := os.Stat(path); err != nil || fi.Size() > 1<<30 {
		return 0, ""
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	largest, in := 0.0, ""
	for _, info := range f.Tensors() {
		h, err := f.Float32(info.Name)
		if err != nil {
			return 0, ""
		}
		for _, v := range h {
			if a := math.Abs(float64(v)); a > largest || in == "" {
				largest, in = a, info.Name
			}
		}
	}
	return largest, in
}

// groups returns the optimizer's parameter groups.
func (t *Trainer) groups(o Options) ([]optim.Group, error) {
	var head []*graph.Value
	if t.Task == Classify {
		if t.Model.Score == nil {
			return nil, fmt.Errorf("train: classification needs the model's score head (AddScoreHead)")
		}
		for _, p := range llama.LayerParams(t.Model.Score) {
			if !p.Trainable() {
				if err := p.SetTrainable(true); err != nil {
					return nil, err
				}
			}
			head = append(head, p)
		}
	}
	if t.Adapter != nil {
		gs := t.Adapter.ParamGroups(o.LR, o.WeightDecay)
		// Full fine-tuning of every parameter trains a head that was there
		// at Inject among the rest: one group each.
		inGroups := map[*graph.Value]bool{}
		for _, g := range gs {
			for _, p := range g.Params {
				inGroups[p] = true
			}
		}
		head = slices.DeleteFunc(head, func(p *graph.Value) bool { return inGroups[p] })
		if len(head) > 0 {
			gs = append(gs, optim.Group{Name: "score", Params: head, LR: o.LR, WeightDecay: o.WeightDecay})
		}
		return gs, nil
	}
	gs := optim.DecayGroups(t.Model.Trainable(), o.LR, o.WeightDecay)
	if len(gs) == 0 {
		return nil, fmt.Errorf("train: the model has no trainable parameters")
	}
	return gs, nil
}

// trainedWhole returns seqs with every token after the first trained
// (Options.TrainOnInputs): no prompt and no mask. The tokens are shared.
func trainedWhole(seqs []data.Sequence) []data.Sequence {
	out := slices.Clone(seqs)
	for i := range out {
		out[i].PromptLen, out[i].Trained = 0, nil
	}
	return out
}

// Run trains for the configured steps (resuming first when asked), writes
// checkpoints, metrics and the final adapter to the output folder, and
// evaluates at the end. A cancelled ctx stops the run after the current
// step, or an evaluation under way before its next batch, with a
// checkpoint and an [*InterruptedError] (a resume takes the evaluation
// again); a non-finite loss or gradient stops it with a
// [*NonFiniteError].
func (t *Trainer) Run(ctx context.Context) (_ *Result, runErr error) {
	if t.Model == nil {
		return nil, fmt.Errorf("train: no model")
	}
	if len(t.Train) == 0 {
		return nil, fmt.Errorf("train: no training sequences")
	}
	o := t.Options.WithDefaults(len(t.Train))
	if err := o.Validate(); err != nil {
		return nil, err
	}
	t.Options = o
	defer t.Model.SetGradientCheckpointing(t.Model.GradientCheckpointing())
	t.Model.SetGradientCheckpointing(o.GradientCheckpointing)
	if t.Task == Classify && t.Classes < 2 {
		return nil, fmt.Errorf("train: classification needs at least 2 classes, got %d", t.Classes)
	}
	if o.TrainOnInputs {
		if t.Task != LM {
			return nil, fmt.Errorf("train: train-on-inputs trains a language model's prompt tokens; a %s run has none to train", t.Task)
		}
		t.Train = trainedWhole(t.Train)
	}
	if err := checkSequences(t.Train, t.Model, t.Task, t.Classes, "training"); err != nil {
		return nil, err
	}
	if err := checkSequences(t.Eval, t.Model, t.Task, t.Classes, "evaluation"); err != nil {
		return nil, err
	}
	metric, _ := ParseMetric(o.BestMetric) // checked by Validate
	if o.selects() {
		switch {
		case len(t.Eval) == 0:
			return nil, fmt.Errorf("train: keep-best and early-stopping compare the evaluations during training, and the run has no evaluation data")
		case o.KeepBest && t.SaveAdapter == nil:
			return nil, fmt.Errorf("train: keep-best saves the best weights as the final adapter is saved, and the trainer has no SaveAdapter")
		}
		if err := metric.ForTask(t.Task); err != nil {
			return nil, fmt.Errorf("train: best-metric: %w", err)
		}
	}
	packLen := t.packLength(o)
	if o.Packing {
		if err := CheckPacking(t.Model.Backend()); err != nil {
			return nil, err
		}
		if limit := t.Model.Config().MaxSeqLen; packLen > limit {
			return nil, fmt.Errorf("train: pack length %d: the model takes at most %d positions", packLen, limit)
		}
		for i, s := range t.Train {
			if len(s.Tokens) > packLen {
				return nil, fmt.Errorf("train: training sequence %d has %d tokens, more than a packed row's %d (the pack length)", i, len(s.Tokens), packLen)
			}
		}
	}
	prog := t.Progress
	if prog == nil {
		prog = Quiet{}
	}
	gs, err := t.groups(o)
	if err != nil {
		return nil, err
	}
	sched, _ := o.schedule()
	opt, err := optim.NewAdamW(gs, optim.DefaultAdamWConfig(), sched)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer opt.Free()
	params := opt.Params()
	res := &Result{}
	for _, p := range params {
		res.Trainable += int64(p.Len())
	}

	st := trainerState{TotalSteps: o.Steps, Seed: o.Seed, Batch: o.Batch, TrainSize: len(t.Train), TrainDigest: digest(t.Train), Task: t.Task.String(),
		BaseModel: o.BaseModel, Settings: t.settings(o)}
	if o.selects() {
		st.Selection = &selection{}
	}
	var metrics *metricsLog
	var kept []Record        // the records before the resume
	var resumeNotes []string // shown once the progress display has started
	var lockNote string      // how the folder is held, where not as usual; shown with them
	// restate is whether the checkpoint res.Checkpoint does not record
	// the run as it now is: a resume that changed the number of steps,
	// or whose early stopping ended the run at once, writes its state
	// again at the end where no step wrote a checkpoint (see below).
	var restate bool
	var removed []string
	var staleBest string // an earlier run's best/, which a fresh run removes once it begins
	if o.Out != "" {
		if t.OutputLock == nil {
			lock, err := LockOutput(o.Out)
			if err != nil {
				return nil, err
			}
			defer lock.Unlock()
			lockNote = lock.Note()
		} else if !t.OutputLock.holds(o.Out) {
			return nil, fmt.Errorf("train: the trainer's OutputLock does not hold the output folder %s (it is on %s, or released)", o.Out, t.OutputLock.Dir())
		}
		keep := -1
		dir, err := CheckOutput(o.Out, o.Resume)
		if err != nil {
			return nil, err
		}
		if o.Resume {
			if resumeNotes, restate, err = t.resume(dir, &st, opt, params, gs); err != nil {
				return nil, err
			}
			res.Checkpoint = dir
			keep = st.Step
		}
		// Only now that the folder is known to be this run's: a fresh run
		// refused above keeps another run's folder as it is.
		removed = removeStaleTemporaries(o.Out)
		// A run that fails before it trains a step leaves no trace of
		// itself: the folder it began holds what the user had there (a
		// fresh run's log replaces an earlier run's, and its best/ goes,
		// only once the run begins: see begin below), and, where the run
		// made the folder, nothing, so that the lock removes it (see
		// OutputLock.Unlock). Run after the log is closed.
		newLog, newCheckpoints := absent(filepath.Join(o.Out, MetricsFile)), absent(filepath.Join(o.Out, CheckpointsDir))
		defer func() {
			if runErr != nil && !IsInterrupted(runErr) {
				removeUnbegun(o.Out, newLog, newCheckpoints)
			}
		}()
		if metrics, kept, err = openMetrics(o.Out, keep); err != nil {
			return nil, err
		}
		defer metrics.close()
		if !o.Resume && t.ZeroShot != nil {
			z := t.ZeroShot
			if err := metrics.add(Record{Step: 0, EvalLoss: ptr(z.Loss), EvalAccuracy: ptr(z.Accuracy), EvalMCC: z.MCC}); err != nil {
				return nil, err
			}
		}
		if t.ZeroShot != nil && len(t.Eval) > 0 {
			// Recorded with the data it was taken on, so that a resume
			// need not take it again (CheckpointInfo.ZeroShot); a resume
			// given one (of other evaluation data, say) records that.
			// metrics.jsonl keeps the step 0 of the run's start.
			st.ZeroShot = &zeroShotRecord{Eval: t.ZeroShot, EvalData: evalDataID(t.Eval)}
		}
		note, stale, err := t.checkBestDir(st)
		if err != nil {
			return nil, err
		}
		if note != "" {
			resumeNotes = append(resumeNotes, note)
		}
		staleBest = stale
	}
	sel := st.Selection
	res.StartStep = st.Step
	if st.Step < o.Steps && (len(st.LRs) == 0 || st.LRs[len(st.LRs)-1].LR != o.LR) {
		// Checkpoints record the span only once a step has trained in it
		// (they are written after steps), and Result only the spans
		// that have (see below).
		st.LRs = append(st.LRs, LRSpan{FromStep: st.Step + 1, LR: o.LR})
	}
	if st.Step < o.Steps && (len(st.StepsHistory) == 0 || st.StepsHistory[len(st.StepsHistory)-1].Steps != o.Steps) {
		// As the rates: the schedule's length from the next step on.
		st.StepsHistory = append(st.StepsHistory, StepsSpan{FromStep: st.Step + 1, Steps: o.Steps})
	}
	if dev := deviceOf(t.Model.Backend(), st.Step+1); st.Step < o.Steps && (len(st.Devices) == 0 || !st.Devices[len(st.Devices)-1].sameDevice(dev)) {
		// As the rates: the device of the next steps.
		st.Devices = append(st.Devices, dev)
	}
	defer func() {
		res.LRs = lrsUpTo(st.LRs, st.Step)
		res.StepsHistory = spansUpTo(st.StepsHistory, st.Step)
		if res.Devices == nil {
			// A run that failed: the spans, without their timings.
			res.Devices = spansUpTo(st.Devices, st.Step)
		}
	}()
	// A resumed run reports on the whole run: the steps before the resume
	// count from their records.
	var recentLoss []float64
	var priorSteps, priorTokens int
	var priorTime time.Duration
	var posTokens, positions int // over the steps that record their positions
	for _, r := range kept {
		if r.Loss == nil {
			continue
		}
		priorSteps++
		priorTokens += r.Tokens
		if r.Positions > 0 {
			posTokens += r.Tokens
			positions += r.Positions
		}
		priorTime += time.Duration(r.StepMillis * float64(time.Millisecond))
		recentLoss = append(recentLoss, *r.Loss)
	}
	recentLoss = recentLoss[max(0, len(recentLoss)-o.LogEvery):]

	// Memory: the training steps' peaks apart from the evaluations',
	// from here on; what the backend held before (loading the model, a
	// zero-shot evaluation) counts in the run's.
	mem := newMemWatch(t.Model.Backend(), st.Step < o.Steps && (sel == nil || sel.Stop == nil))
	nowDev := deviceOf(t.Model.Backend(), st.Step+1)
	defer func() { res.Memory = mem.result() }()
	g := graph.New(t.Model.Backend())
	defer g.Close()
	ord := newOrder(len(t.Train), o.Seed)
	if o.GroupByLength {
		ord = groupedOrder(t.Train, o.Seed, o.Batch)
	}
	maxNorm := o.maxGradNorm()
	prog.Start(o.Steps, st.Step)
	defer prog.Finish()
	if len(removed) > 0 {
		prog.Message(fmt.Sprintf("removed what an interrupted save left in %s: %s", o.Out, strings.Join(removed, ", ")))
	}
	if lockNote != "" {
		prog.Message(lockNote)
	}
	for _, n := range resumeNotes {
		prog.Message(n)
	}
	start := time.Now()
	var tokens int
	var stepsTime time.Duration
	var lastSaved = st.Step
	var window []stepTiming
	lastEval := -1 // the step res.Eval is of, when this process took it

	// begin marks the run as begun, once it has trained a step or saves
	// a checkpoint (interrupted before its first step): a fresh run's log
	// replaces an earlier run's metrics.jsonl, and an earlier run's best/
	// goes, so that best/ is always the run's own.
	begin := func() error {
		if err := metrics.commit(); err != nil {
			return err
		}
		if staleBest == "" {
			return nil
		}
		if err := os.RemoveAll(staleBest); err != nil {
			return fmt.Errorf("train: removing the best/ folder of an earlier run: %w", err)
		}
		prog.Message(fmt.Sprintf("removed %s, an earlier run's best weights", staleBest))
		staleBest = ""
		return nil
	}
	save := func() error {
		if o.Out == "" {
			return nil
		}
		if err := begin(); err != nil {
			return err
		}
		mem.noteSpan(st.Devices, nowDev)
		dir, err := t.saveCheckpoint(st, opt, params)
		if err != nil {
			return err
		}
		res.Checkpoint, lastSaved, restate = dir, st.Step, false
		return nil
	}
	// interrupt ends the run on the cancellation of ctx (cause), between
	// steps or in an evaluation: with a checkpoint of the steps done,
	// where the newest is not of them already.
	interrupt := func(cause error) (*Result, error) {
		ie := &InterruptedError{Step: st.Step, Cause: cause}
		if st.Step != lastSaved || res.Checkpoint == "" {
			if err := save(); err != nil {
				return res, fmt.Errorf("train: interrupted after step %d, and saving the checkpoint failed: %w", st.Step, err)
			}
		}
		ie.Checkpoint = res.Checkpoint
		return res, ie
	}
	// stopped reports whether err is an evaluation's stop at the
	// cancellation of ctx.
	stopped := func(err error) bool { return ctx.Err() != nil && errors.Is(err, ctx.Err()) }
	// evalAt takes the evaluation after step st.Step, judges it and keeps
	// the best; it reports whether early stopping ends the run there. One
	// during training (final false) is a phase of the memory watch of its
	// own, between training ones, and early stopping may end the run
	// after it. The final one, after the last step (see below), is not
	// judged for early stopping: the run ends there anyway, having
	// trained every step, which is not stopping early.
	evalAt := func(final bool) (stop bool, err error) {
		if !final {
			mem.phase(false)
		}
		// Judged already only for the final evaluation of a finished
		// run, resumed, which takes it again for its report: its
		// checkpoint has the judgment.
		judged := sel != nil && sel.Judged >= st.Step
		ev, best, err := t.evaluate(ctx, prog, metrics, sel, metric, st.Step, float64(st.Step*o.Batch)/float64(len(t.Train)), start)
		if err != nil {
			return false, err
		}
		if !final {
			mem.phase(true)
		}
		res.Eval, lastEval = ev, st.Step
		if !final && sel != nil && sel.stops(o.EarlyStopping) {
			sel.Stop = &EarlyStop{Step: st.Step, Reason: t.stopReason(sel)}
		}
		if sel != nil && !judged && st.Step == lastSaved && res.Checkpoint != "" {
			// A checkpoint of this step made before the evaluation (the
			// one a resume starts from, the final one, or that of a run
			// stopped in it): it records the judgment too, before best/
			// (see checkBestDir), so that a resume does not judge it
			// again.
			if err := writeState(res.Checkpoint, st); err != nil {
				return false, err
			}
		}
		if best && o.KeepBest {
			// The checkpoint first: a resume then never starts from
			// before the weights in best/ (see checkBestDir).
			if st.Step != lastSaved {
				if err := save(); err != nil {
					return false, err
				}
			}
			if _, err := t.writeBest(sel.Best); err != nil {
				return false, err
			}
		}
		if sel != nil && sel.Stop != nil && !final {
			prog.Message(fmt.Sprintf("early stopping after step %d of %d: %s", st.Step, o.Steps, sel.Stop.Reason))
			return true, nil
		}
		return false, nil
	}
	nonFinite := func(what string, v float64) error {
		e := &NonFiniteError{Step: st.Step + 1, What: what, Value: v, Checkpoint: res.Checkpoint}
		if e.Checkpoint != "" {
			if prev, err := readState(e.Checkpoint); err == nil {
				e.CheckpointStep = prev.Step
			}
			e.Largest, e.LargestIn = largestWeight(e.Checkpoint)
		}
		return e
	}

	// lacksEval is whether the run was resumed at a step whose
	// evaluation it lacks: the run was stopped in it (or before it,
	// during the step), so it is taken now, as an uninterrupted run
	// takes it. A run that selects lacks it until the checkpoint records
	// its judgment, which is saved after the evaluation's line in
	// metrics.jsonl: a process killed between the two leaves the line
	// (which the evaluation, taken again, does not log twice: see
	// metricsLog.add) and a checkpoint that has not judged it. Other
	// runs lack it while the log does.
	lacksEval := metrics != nil && !metrics.evaluated[st.Step]
	if sel != nil {
		lacksEval = sel.Judged < st.Step
	}
	if st.Step > 0 && st.Step < o.Steps && (sel == nil || sel.Stop == nil) && o.EvalEvery > 0 && st.Step%o.EvalEvery == 0 &&
		len(t.Eval) > 0 && metrics != nil && lacksEval {
		// The note says what is missing, not why: the run that wrote
		// them may have been stopped in the evaluation, killed after
		// logging it, or have planned none there (a run without
		// evaluations, resumed with them).
		why := "metrics.jsonl has no evaluation there"
		if sel != nil {
			why = fmt.Sprintf("checkpoint %s has no judgment of an evaluation there", res.Checkpoint)
		}
		prog.Message(fmt.Sprintf("note: evaluating after step %d first: %s", st.Step, why))
		if _, err := evalAt(false); stopped(err) {
			return interrupt(ctx.Err())
		} else if err != nil {
			return res, err
		}
	}
	for st.Step < o.Steps && (sel == nil || sel.Stop == nil) {
		if err := ctx.Err(); err != nil {
			return interrupt(err)
		}
		if t.beforeStep != nil {
			t.beforeStep(st.Step)
		}
		stepStart := time.Now()
		idx := ord.batch(st.Step, o.Batch)
		divisor := data.Targets(t.Train, idx, t.Task == Classify)
		var stepLossSum float64
		stepTokens, stepPositions := 0, 0
		for mi, mb := range microBatches(idx, o.MicroBatch) {
			if t.Adapter != nil {
				// The dropout masks follow (step, micro-batch), not the
				// forwards this process ran before: a resumed run drops
				// what an uninterrupted one drops.
				t.Adapter.SetDropoutStep(st.Step, mi)
			}
			b, err := makeBatch(t.Train, mb, packLen)
			if err != nil {
				return res, err
			}
			for _, l := range b.Lengths {
				stepTokens += l
			}
			stepPositions += b.Size * b.Len
			loss, n, err := stepLoss(g, t.Model, t.Task, b, divisor)
			if err != nil {
				g.Reset()
				return res, err
			}
			if n == 0 {
				g.Reset()
				continue
			}
			if err := g.Backward(loss); err != nil {
				g.Reset()
				return res, fmt.Errorf("train: step %d, micro-batch %d: %w", st.Step+1, mi+1, err)
			}
			l, err := loss.Item()
			g.Reset()
			if err != nil {
				return res, fmt.Errorf("train: step %d: %w", st.Step+1, err)
			}
			if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) {
				opt.ZeroGrad()
				return res, nonFinite("loss", float64(l))
			}
			stepLossSum += float64(l)
		}
		norm, err := optim.ClipGradNorm(params, maxNorm)
		if err != nil {
			opt.ZeroGrad()
			if math.IsNaN(norm) || math.IsInf(norm, 0) {
				return res, nonFinite("gradient norm", norm)
			}
			return res, fmt.Errorf("train: step %d: %w", st.Step+1, err)
		}
		lr := opt.LR(0)
		if err := opt.Step(); err != nil {
			return res, fmt.Errorf("train: step %d: optimizer: %w", st.Step+1, err)
		}
		opt.ZeroGrad()
		st.Step++
		st.Loss = stepLossSum
		mem.step()
		if err := begin(); err != nil {
			return res, err
		}
		tokens += stepTokens
		posTokens += stepTokens
		positions += stepPositions
		dur := time.Since(stepStart)
		stepsTime += dur
		window = append(window, stepTiming{dur, stepTokens})
		if len(window) > 20 {
			window = window[1:]
		}
		recentLoss = append(recentLoss, stepLossSum)
		if len(recentLoss) > o.LogEvery {
			recentLoss = recentLoss[1:]
		}
		elapsed := time.Since(start)
		done := st.Step - res.StartStep
		eta := time.Duration(float64(elapsed) / float64(done) * float64(o.Steps-st.Step))
		epoch := float64(st.Step*o.Batch) / float64(len(t.Train))
		tps := throughput(window)
		prog.Step(Status{Step: st.Step, Total: o.Steps, Epoch: epoch, Loss: stepLossSum, LR: lr, GradNorm: norm,
			TokensPerSec: tps, Elapsed: elapsed, ETA: eta})
		if err := metrics.add(Record{Step: st.Step, Epoch: epoch, Loss: ptr(stepLossSum), LR: ptr(lr), GradNorm: ptr(norm),
			Tokens: stepTokens, Positions: stepPositions, TokensPerSec: tps, StepMillis: float64(dur.Microseconds()) / 1000, ElapsedSec: elapsed.Seconds()}); err != nil {
			return res, err
		}
		if o.EvalEvery > 0 && st.Step%o.EvalEvery == 0 && st.Step < o.Steps && len(t.Eval) > 0 {
			stop, err := evalAt(false)
			if stopped(err) {
				return interrupt(ctx.Err())
			}
			if err != nil {
				return res, err
			}
			if stop {
				break
			}
		}
		if o.SaveEvery > 0 && st.Step%o.SaveEvery == 0 && st.Step < o.Steps && st.Step != lastSaved {
			if err := save(); err != nil {
				return res, err
			}
			prog.Message(fmt.Sprintf("checkpoint: %s", res.Checkpoint))
		}
	}
	mem.phase(false)
	mem.noteSpan(st.Devices, nowDev)
	res.Steps = st.Step
	if n, d := priorSteps+st.Step-res.StartStep, priorTime+stepsTime; n > 0 && d > 0 {
		res.StepTime = d / time.Duration(n)
		res.TokensPerSec = float64(priorTokens+tokens) / d.Seconds()
	}
	if positions > 0 {
		res.Padding = 1 - float64(posTokens)/float64(positions)
	}
	res.Devices = deviceTimes(spansUpTo(st.Devices, st.Step), kept, res.StartStep, st.Step, stepsTime, tokens)
	var sum float64
	for _, l := range recentLoss {
		sum += l
	}
	if len(recentLoss) > 0 {
		res.Loss = sum / float64(len(recentLoss))
	}
	if st.Step != lastSaved || (o.Out != "" && res.Checkpoint == "") {
		if err := save(); err != nil {
			return res, err
		}
	} else if o.Out != "" && restate {
		// A resume that trains no step (it ends the run at the
		// checkpoint's step, or early stopping ends it there): the
		// checkpoint records the run's new length and stop, as a step
		// would have.
		if err := writeState(res.Checkpoint, st); err != nil {
			return res, err
		}
		restate = false
	}
	if o.Out != "" && t.SaveAdapter != nil {
		dir := filepath.Join(o.Out, AdapterDir)
		if err := writeDirAtomic(dir, t.SaveAdapter); err != nil {
			return res, fmt.Errorf("train: writing the adapter to %s: %w", dir, err)
		}
		res.Adapter = dir
	}
	if len(t.Eval) > 0 && lastEval != st.Step {
		// After the checkpoint and the adapter, so that a failing or
		// interrupted evaluation loses neither (a resume of the finished
		// run evaluates it).
		if _, err := evalAt(true); stopped(err) {
			return interrupt(ctx.Err())
		} else if err != nil {
			return res, err
		}
	}
	if sel != nil {
		res.Best, res.EarlyStop = sel.Best, sel.Stop
		if o.KeepBest && sel.Best != nil {
			if onDisk, err := readBest(o.Out); err == nil && onDisk != nil && onDisk.Step == sel.Best.Step {
				res.BestDir = filepath.Join(o.Out, BestDir)
			}
		}
	}
	if o.Out != "" {
		if err := t.writePlots(ctx, prog, res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// writePlots draws the loss curves from metrics.jsonl and, for an adapter
// unless Options.NoSpectra or ctx is cancelled, the spectra of the weight
// updates (also written as spectrum.json), saying so through prog first:
// on a large model they take a while. It records in res what it wrote.
func (t *Trainer) writePlots(ctx context.Context, prog Progress, res *Result) error {
	o := t.Options
	rs, err := ReadMetrics(filepath.Join(o.Out, MetricsFile))
	if err != nil {
		return err
	}
	if curves := CurvesFromMetrics(rs, max(1, o.Steps/50)); len(curves) > 0 {
		if err := PlotLoss(filepath.Join(o.Out, LossPlot), fmt.Sprintf("%s, %d steps", t.describe(), o.Steps), curves); err != nil {
			return err
		}
		res.LossPlot = true
	}
	if t.Adapter == nil {
		return nil
	}
	skip := ""
	switch {
	case o.NoSpectra:
		skip = "spectra: left out"
	case ctx.Err() != nil:
		// Interrupted after the last step: the spectra can take minutes.
		skip = "spectra: skipped (interrupted); sora spectrum --adapter computes them"
	}
	if skip != "" {
		// Spectra an earlier run of this folder wrote describe other
		// weights than the adapter now saved.
		removed := false
		for _, name := range []string{SpectrumPlot, SpectrumJSON} {
			err := os.Remove(filepath.Join(o.Out, name))
			if err == nil {
				skip += "; removed the older " + name
				removed = true
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("train: removing the older %s: %w", name, err)
			}
		}
		// Leaving them out as asked is worth a line only where it
		// removed something.
		if !o.NoSpectra || removed {
			prog.Message(skip)
		}
		return nil
	}
	prog.Message(fmt.Sprintf("spectra: analysing the updates of %d layers (spectrum.png, spectrum.json)", len(t.Adapter.Layers())))
	spectra, err := t.Adapter.Spectra()
	if err != nil {
		return fmt.Errorf("train: spectra of the updates: %w", err)
	}
	if err := PlotSpectra(filepath.Join(o.Out, SpectrumPlot), "spectra of ΔW = W' − W0, "+t.describe(), spectra); err != nil {
		return err
	}
	if err := writeJSONAtomic(filepath.Join(o.Out, SpectrumJSON), SpectrumSummary(spectra)); err != nil {
		return err
	}
	res.Spectra = true
	return nil
}

func (t *Trainer) describe() string {
	if t.Adapter == nil {
		return "training"
	}
	c := t.Adapter.Config()
	if c.Method == peft.Full || c.Method == peft.OFT {
		return string(c.Method)
	}
	return fmt.Sprintf("%s r=%d", c.Method, c.R)
}

type stepTiming struct {
	d      time.Duration
	tokens int
}

func throughput(w []stepTiming) float64 {
	var d time.Duration
	n := 0
	for _, s := range w {
		d += s.d
		n += s.tokens
	}
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// evaluate runs Evaluate on the evaluation set after step and logs the
// result. A run that selects among its evaluations (sel not nil) judges
// it by metric first: best reports that it is the best so far, now
// sel.Best, and its record in metrics.jsonl says so. A cancelled ctx
// stops it before its next batch, with an error wrapping ctx's, having
// judged and logged nothing.
func (t *Trainer) evaluate(ctx context.Context, prog Progress, metrics *metricsLog, sel *selection, metric Metric, step int, epoch float64, start time.Time) (ev *EvalResult, best bool, err error) {
	ev, err = Evaluate(ctx, t.Model, t.Task, t.Eval, t.Options.EvalBatch, t.Classes)
	if err != nil {
		return nil, false, &EvalError{Step: step, Err: err}
	}
	r := Record{Step: step, Epoch: epoch, EvalLoss: ptr(ev.Loss), EvalAccuracy: ptr(ev.Accuracy), ElapsedSec: time.Since(start).Seconds()}
	msg := fmt.Sprintf("eval at step %d: loss %.4f  exact match %.4f", step, ev.Loss, ev.Accuracy)
	if t.Task == Classify {
		r.EvalMCC = ev.MCC
		msg = fmt.Sprintf("eval at step %d: loss %.4f  accuracy %.4f  MCC %.4f", step, ev.Loss, ev.Accuracy, *ev.MCC)
	}
	if sel != nil {
		v, err := metric.Value(ev)
		if err != nil {
			return nil, false, err
		}
		prev := sel.Judged
		if best = sel.judge(step, v, metric.HigherIsBetter(), t.Options.EarlyStoppingDelta); best {
			sel.Best = &Best{Step: step, Epoch: epoch, Metric: metric.Field(), Value: v, Eval: ev}
			r.Best = true
			msg += "  (best so far"
			if t.Options.KeepBest {
				msg += ", saved in " + BestDir + "/"
			}
			msg += ")"
		} else if sel.Best != nil {
			msg += "  (best: " + describeBest(sel.Best) + ")"
		}
		if n := t.Options.EarlyStopping; n > 0 && sel.Judged != prev && sel.Stale > 0 {
			msg += fmt.Sprintf("; %d of %d evaluations without improvement", sel.Stale, n)
		}
	}
	if t.EvalNote != "" {
		msg += "  (" + t.EvalNote + ")"
	}
	prog.Message(msg)
	return ev, best, metrics.add(r)
}

// stopReason says why early stopping ends the run after sel's last
// evaluation.
func (t *Trainer) stopReason(sel *selection) string {
	o := t.Options
	by := ""
	if o.EarlyStoppingDelta > 0 {
		by = fmt.Sprintf(" by more than %g", o.EarlyStoppingDelta)
	}
	if sel.Best == nil {
		return fmt.Sprintf("%d evaluations in a row gave no usable value (NaN)", sel.Stale)
	}
	return fmt.Sprintf("%d evaluations in a row did not improve%s on the best %s", sel.Stale, by, describeBest(sel.Best))
}

// checkBestDir looks at the best/ folder of the output folder as the run
// begins, after a resume has restored st. For a fresh run it returns, as
// stale, one that an earlier run in the folder left (it holds BestFile),
// which Run removes once the run has begun, so that best/ is always the
// run's own while a run that fails before its first step leaves it. A
// resumed run that keeps the best checks that
// best/ holds the best evaluation its checkpoint records: the
// checkpoint of a new best is written before best/ (see Run), so where a
// run was killed between the two, best/ is written now from the weights
// just restored, which are the best's; otherwise (best/ removed, say) the
// note says what is amiss until a better evaluation replaces it.
func (t *Trainer) checkBestDir(st trainerState) (note, stale string, err error) {
	o := t.Options
	dir := filepath.Join(o.Out, BestDir)
	if !o.Resume {
		if _, err := os.Stat(filepath.Join(dir, BestFile)); err != nil {
			return "", "", nil
		}
		return "", dir, nil
	}
	if !o.KeepBest || st.Selection == nil || st.Selection.Best == nil {
		return "", "", nil
	}
	want := st.Selection.Best
	onDisk, rerr := readBest(o.Out)
	if rerr == nil && onDisk != nil && onDisk.Step == want.Step {
		return "", "", nil
	}
	has := "nothing"
	switch {
	case rerr != nil:
		has = "an unreadable record (" + rerr.Error() + ")"
	case onDisk != nil:
		has = "step " + fmt.Sprint(onDisk.Step) + "'s weights"
	}
	if want.Step == st.Step {
		if _, err := t.writeBest(want); err != nil {
			return "", "", err
		}
		return fmt.Sprintf("wrote %s: the checkpoint records its best evaluation (%s) at its own step, and %s held %s (the run was stopped between the two saves)", dir, describeBest(want), dir, has), "", nil
	}
	return fmt.Sprintf("warning: the checkpoint records the best evaluation %s, but %s holds %s; it is replaced at the next evaluation better than that", describeBest(want), dir, has), "", nil
}

// resume restores the run from checkpoint dir, which must have been made
// with the same settings (st's), except the learning rate: after a NaN,
// resuming with a lower one is the usual remedy, so a changed rate is
// taken, with a note that the run no longer matches an uninterrupted one.
// The number of steps may change too, to train a run longer (or end it
// sooner, but not before the checkpoint's step): the schedule is computed
// for the new number, with a note (stepsNote), and the checkpoints
// written from then on record it.
// A run whose final evaluation ran out the patience of its early
// stopping, resumed with more steps, stops at once, as it would have
// stopped had it been made that long: its loop never judged that
// evaluation (see stopNote).
// The notes are for the user: that, and the checks that could not be
// made. restate reports that the checkpoint does not record the run as
// it now is (its number of steps, its stop), for Run to write it again
// where no step does.
func (t *Trainer) resume(dir string, st *trainerState, opt optim.Optimizer, params []*graph.Value, gs []optim.Group) (notes []string, restate bool, err error) {
	old, err := readState(dir)
	if err != nil {
		return nil, false, err
	}
	if err := checkResumable(dir, old, *st, nil); err != nil {
		return nil, false, err
	}
	if old.Settings != nil {
		_, lrWas, lrIs, unrecorded := compareSettings(old.Settings, st.Settings)
		stopped := old.Selection != nil && old.Selection.Stop != nil
		switch {
		case lrWas != "" && (old.Step >= st.TotalSteps || stopped):
			how := fmt.Sprintf("had finished its %d steps", old.Step)
			if stopped {
				how = fmt.Sprintf("was stopped early after step %d", old.Step)
			}
			notes = append(notes, fmt.Sprintf("note: resuming %s with learning rate %s where it was made with %s: the run %s, so no step trains with the new rate, and the run's rate stays %s", dir, lrIs, lrWas, how, lrWas))
		case lrWas != "":
			notes = append(notes, fmt.Sprintf("note: resuming %s with learning rate %s where it was made with %s: the schedule goes on from step %d with the new peak, so the run no longer matches an uninterrupted one", dir, lrIs, lrWas, old.Step))
		}
		if len(unrecorded) > 0 {
			notes = append(notes, fmt.Sprintf("warning: checkpoint %s does not record %s (it predates that record), so a change there is not detected; the checkpoints this run writes record it", dir, strings.Join(unrecorded, ", ")))
		}
	}
	s, err := loadOptimizer(filepath.Join(dir, optimizerFile))
	if err != nil {
		return nil, false, err
	}
	if s, err = stateInGroupOrder(dir, s, params, gs); err != nil {
		return nil, false, err
	}
	if err := loadParams(filepath.Join(dir, tensorsFile), params); err != nil {
		return nil, false, err
	}
	if err := opt.SetState(s); err != nil {
		return nil, false, fmt.Errorf("train: %s: %w", dir, err)
	}
	if opt.Steps() != old.Step {
		return nil, false, fmt.Errorf("train: %s: optimizer has taken %d steps but the trainer state says %d", dir, opt.Steps(), old.Step)
	}
	st.Step = old.Step
	st.Loss = old.Loss
	st.LRs = priorLRs(old)
	st.StepsHistory = priorTotals(old)
	st.Devices = spansUpTo(old.Devices, old.Step)
	if note := deviceNote(dir, st.Devices, old.Step, deviceOf(t.Model.Backend(), old.Step+1)); note != "" {
		notes = append(notes, note)
	}
	st.ZeroShot = old.ZeroShot
	restate = old.TotalSteps != st.TotalSteps
	if st.Selection != nil && old.Selection != nil {
		// The settings compared above make it this run's: the same
		// metric, patience, evaluation data and interval.
		st.Selection = old.Selection
	} else if st.Selection != nil && old.Step > 0 {
		notes = append(notes, fmt.Sprintf("warning: checkpoint %s records no best evaluation (it predates that record), so the evaluations before step %d are not among those compared", dir, old.Step))
	}
	if sel := st.Selection; sel != nil && sel.Stop == nil && st.Step < st.TotalSteps && sel.Judged == st.Step && sel.stops(t.Options.EarlyStopping) {
		// The final evaluation of a run that ended there judged
		// without stopping it, there being no step left; a run made
		// longer stops after it, as one made this long would have.
		sel.Stop = &EarlyStop{Step: st.Step, Reason: t.stopReason(sel)}
		restate = true
		notes = append(notes, t.stopNote(dir, st.Step, sel.Stop))
	} else if old.TotalSteps != st.TotalSteps {
		notes = append(notes, t.stepsNote(dir, old))
	}
	if st.BaseModel == "" {
		// A run that does not describe its base (library use) keeps the
		// checkpoint's description for the checkpoints it writes.
		st.BaseModel = old.BaseModel
	}
	// Checkpoints made before they recorded the base model cannot be
	// checked. Refusing them would strand runs that were made on this
	// very base, with no way to resume them; a base whose trainable
	// tensors differ in shape has already failed in loadParams. What
	// passes unseen is another base with tensors of the same shapes (the
	// same model with its q/k rows in the other order), which only the
	// user can rule out, so they are told.
	if old.BaseModel == "" && st.BaseModel != "" {
		notes = append(notes, fmt.Sprintf("warning: checkpoint %s does not record its base model (it predates that record), so it is resumed unchecked on this one (%s); "+
			"if it was made on another base with trainable tensors of the same shapes (the same model with its q/k rows in the other order, say), "+
			"they are now misread: then start afresh. The checkpoints this run writes record the base.", dir, st.BaseModel))
	}
	if old.Settings == nil {
		// As with the base: refusing would strand runs made with these
		// very settings.
		notes = append(notes, fmt.Sprintf("warning: checkpoint %s does not record its settings (it predates that record), so they are resumed unchecked; "+
			"if it was made with another learning rate, schedule, warm-up, clip, weight decay, micro-batch, method, alpha, dropout or rotation, "+
			"the run no longer matches an uninterrupted one. The checkpoints this run writes record them.", dir))
	}
	return notes, restate, nil
}

// stopNote says that a resume with more steps ends at once, after step
// step, where the evaluation at the end of the shorter run ran out the
// patience of its early stopping (stop says so): as a run made with
// the new number of steps stops there, where it evaluates at that step.
func (t *Trainer) stopNote(dir string, step int, stop *EarlyStop) string {
	o := t.Options
	if step%o.EvalEvery != 0 {
		return fmt.Sprintf("note: resuming %s with %d steps: early stopping ends the run after step %d, where its final evaluation ran out the patience: %s "+
			"(a run made for %d steps, which evaluates every %s, makes no evaluation at step %d, and might have trained on)", dir, o.Steps, step, stop.Reason, o.Steps, nSteps(o.EvalEvery), step)
	}
	return fmt.Sprintf("note: resuming %s with %d steps: early stopping ends the run after step %d, where its evaluation ran out the patience, as in a run made for %d steps: %s", dir, o.Steps, step, o.Steps, stop.Reason)
}

// nSteps is n steps in words: "1 step", "2 steps".
func nSteps(n int) string {
	if n == 1 {
		return "1 step"
	}
	return fmt.Sprintf("%d steps", n)
}

// stepsNote says what a resume from checkpoint dir, whose state is old,
// with another number of steps does to the learning-rate schedule: it is
// computed again for the new number and goes on from the checkpoint's
// step, as Hugging Face's Trainer does on resuming with another
// max_steps. The steps before the checkpoint keep the rates they trained
// at, those of the schedules they were computed for (the checkpoint's
// steps history), so the run matches a fresh run of the new length with
// the same warm-up only where those rates are the new schedule's too:
// with a constant schedule, when the schedule they trained on was
// computed for the new number already (the run was ended at its step by
// an earlier resume, and is now taken on), or when they all fall in the
// warm-up, whose rates do not depend on the number of steps. Otherwise
// it names the steps that a fresh run would have trained at other rates.
func (t *Trainer) stepsNote(dir string, old trainerState) string {
	o := t.Options
	spans := priorTotals(old)
	last := scheduleSteps(old)
	head := fmt.Sprintf("resuming %s, made for %s, with %d: ", dir, nSteps(old.TotalSteps), o.Steps)
	if len(spans) > 1 || last != old.TotalSteps {
		head = fmt.Sprintf("resuming %s, made for %s (%s), with %d: ", dir, nSteps(old.TotalSteps), describeSpans(spans, old.Step), o.Steps)
	}
	if o.Steps == old.Step {
		return "note: " + head + "the run ends at its checkpoint's step, with no step to train"
	}
	sched, _ := o.schedule()
	warm := nSteps(o.Warmup)
	kind := strings.ToLower(o.Schedule)
	// The steps trained whose rates the new schedule would have given
	// otherwise: the optimizer's schedule takes the number of steps
	// taken, so step s trains at Factor(s-1).
	var diff []int
	higher, lower := false, false
	for i, sp := range spans {
		end := spanEnd(spans, i, old.Step)
		was := o
		was.Steps = sp.Steps
		wasSched, _ := was.schedule()
		for s := sp.FromStep; s <= end; s++ {
			if a, b := wasSched.Factor(s-1), sched.Factor(s-1); a != b {
				diff = append(diff, s)
				higher, lower = higher || b > a, lower || b < a
			}
		}
	}
	if len(diff) == 0 {
		var why string
		_, constant := sched.(optim.Constant)
		switch {
		case old.Step == 0:
			why = "no step has trained yet"
		case constant:
			why = fmt.Sprintf("the constant schedule (with %s of warm-up) does not depend on the number of steps", warm)
		case !slices.ContainsFunc(spans, func(sp StepsSpan) bool { return sp.Steps != o.Steps }):
			why = fmt.Sprintf("the %d-step %s schedule that steps 1 to %d trained on simply goes on", o.Steps, kind, old.Step)
		default:
			why = fmt.Sprintf("steps 1 to %d trained at the rates the %d-step %s schedule gives them too (in its warm-up of %s, and at the peak right after it, the rates do not depend on the number of steps)", old.Step, o.Steps, kind, warm)
		}
		if slices.ContainsFunc(priorLRs(old), func(l LRSpan) bool { return l.LR != o.LR }) {
			// The schedule is the fresh run's; its peak is not.
			return fmt.Sprintf("note: %s%s, so the run's schedule is that of a fresh %d-step run with %s of warm-up (but not its peak rate, which changed: see the learning-rate note)", head, why, o.Steps, warm)
		}
		return fmt.Sprintf("note: %s%s, so the run trains as a fresh %d-step run with %s of warm-up would", head, why, o.Steps, warm)
	}
	was := "had come to its end"
	if old.Step < last {
		lastO := o
		lastO.Steps = last
		lastSched, _ := lastO.schedule()
		was = fmt.Sprintf("would have trained it at %.4g × the peak", lastSched.Factor(old.Step))
	}
	rates := "other"
	switch {
	case !lower:
		rates = "higher"
	case !higher:
		rates = "lower"
	}
	return fmt.Sprintf("note: %sthe %s schedule (with %s of warm-up) is computed again for %d steps and goes on from step %d, as Hugging Face's Trainer does: step %d trains at %.4g × the peak rate %g, where the %d-step schedule %s; "+
		"so the run differs from a fresh %d-step run, whose %s would have trained at %s rates",
		head, kind, warm, o.Steps, old.Step, old.Step+1, sched.Factor(old.Step), o.LR, last, was, o.Steps, stepRanges(diff), rates)
}

// scheduleSteps returns the number of steps that the schedule of
// checkpoint st's last step was computed for: the last of its steps
// history, which differs from its TotalSteps where a resume ended the
// run at the step it had reached; TotalSteps before any step.
func scheduleSteps(st trainerState) int {
	if h := priorTotals(st); len(h) > 0 {
		return h[len(h)-1].Steps
	}
	return st.TotalSteps
}

// describeSpans says which of steps 1 to step trained on the schedule of
// which number of steps: "steps 1 to 55 trained on the 200-step
// schedule, steps 56 to 87 on the 100-step one".
func describeSpans(spans []StepsSpan, step int) string {
	var parts []string
	for i, sp := range spans {
		end := spanEnd(spans, i, step)
		r := fmt.Sprintf("steps %d to %d", sp.FromStep, end)
		if sp.FromStep == end {
			r = fmt.Sprintf("step %d", end)
		}
		if i == 0 {
			parts = append(parts, fmt.Sprintf("%s trained on the %d-step schedule", r, sp.Steps))
		} else {
			parts = append(parts, fmt.Sprintf("%s on the %d-step one", r, sp.Steps))
		}
	}
	return strings.Join(parts, ", ")
}

// stepRanges names the steps, given in increasing order, by their runs:
// "step 4", "steps 3 to 20", "steps 3 to 5 and 9".
func stepRanges(steps []int) string {
	var runs []string
	for i := 0; i < len(steps); {
		j := i
		for j+1 < len(steps) && steps[j+1] == steps[j]+1 {
			j++
		}
		if i == j {
			runs = append(runs, fmt.Sprint(steps[i]))
		} else {
			runs = append(runs, fmt.Sprintf("%d to %d", steps[i], steps[j]))
		}
		i = j + 1
	}
	word := "steps "
	if len(steps) == 1 {
		word = "step "
	}
	if len(runs) > 1 {
		return word + strings.Join(runs[:len(runs)-1], ", ") + " and " + runs[len(runs)-1]
	}
	return word + runs[0]
}

// checkResumable returns the error that refuses to resume run st from
// checkpoint dir, whose state is old: a damaged state, another base
// model, task, seed, batch, training data or setting (the learning rate
// excepted), or a number of steps that the run cannot go on to: fewer
// than it has trained, fewer than its warm-up, or another than it was
// made for once early stopping ended it (another number of steps is
// otherwise taken: see stepsNote). The state, the base model and the
// number of steps come first, each with advice of its own (a warm-up
// changed to fit fewer steps is explained by the steps'); then the task,
// seed, batch and settings, every one that differs named in one list (see
// checkSettings), so that a user who changed several learns of all of
// them at once, before the data, which a changed task or held-out split
// may change too. unknown, when not nil, names what st
// does not know yet (see CheckResume): the settings it names, and then
// also the base model and the training data, and the number of steps
// where st's is 0; they are not compared.
func checkResumable(dir string, old, st trainerState, unknown map[string]bool) error {
	early := unknown != nil
	changes := old.TotalSteps != st.TotalSteps && !(early && st.TotalSteps == 0)
	// A run cannot end inside its warm-up: the options refuse a warm-up
	// longer than the run, and a shorter one would change the rates of
	// the steps trained. (A checkpoint without settings gives 0.)
	warmup, _ := strconv.Atoi(old.Settings["warmup"])
	// How to finish the run as it was made: its own number of steps, or
	// for a run that an earlier resume ended at the step it had reached,
	// the number its schedule was computed for.
	finish := fmt.Sprintf("%d finishes the run as it was made", old.TotalSteps)
	switch {
	case old.Step < 0 || old.Step > old.TotalSteps:
		return fmt.Errorf("train: checkpoint %s is damaged: its %s records step %d of a run of %s (total_steps); want a step from 0 to the run's steps", dir, stateFile, old.Step, nSteps(old.TotalSteps))
	case !early && old.BaseModel != "" && st.BaseModel != "" && old.BaseModel != st.BaseModel:
		return fmt.Errorf("train: cannot resume from %s: it was made on another base model (%s; now %s), whose trainable tensors would be read in the wrong order or shape; use the same --model", dir, old.BaseModel, st.BaseModel)
	case changes && st.TotalSteps < old.Step:
		switch sched := scheduleSteps(old); {
		case old.Step < old.TotalSteps:
			return fmt.Errorf("train: cannot resume from %s with steps %d: the run has trained %s already, of the %d it was made for; resume it with at least %s (%s)", dir, st.TotalSteps, nSteps(old.Step), old.TotalSteps, nSteps(old.Step), finish)
		case sched != old.TotalSteps:
			return fmt.Errorf("train: cannot resume from %s with steps %d: the run has trained %s already, where an earlier resume ended it (it was made for %d); resume it with %s, as it is, or more to train it longer (%d takes its schedule on as it was)", dir, st.TotalSteps, nSteps(old.Step), sched, nSteps(old.Step), sched)
		default:
			return fmt.Errorf("train: cannot resume from %s with steps %d: the run has trained %s already, of the %d it was made for; resume it with %s, as it was made (it has finished), or more to train it longer", dir, st.TotalSteps, nSteps(old.Step), old.TotalSteps, nSteps(old.TotalSteps))
		}
	case changes && old.Selection != nil && old.Selection.Stop != nil:
		return fmt.Errorf("train: cannot resume from %s with steps %d: early stopping ended its run after step %d of the %d it was made for, and another number of steps does not undo that; resume it with steps %d (it trains no more), or start a new run", dir, st.TotalSteps, old.Step, old.TotalSteps, old.TotalSteps)
	case changes && st.TotalSteps < warmup:
		return fmt.Errorf("train: cannot resume from %s with steps %d: the run cannot end before its warm-up of %s does; resume it with at least %s (%s)", dir, st.TotalSteps, nSteps(warmup), nSteps(warmup), finish)
	}
	if err := checkSettings(dir, old, st, unknown); err != nil {
		return err
	}
	switch {
	case !early && (old.TrainSize != st.TrainSize || old.TrainDigest != st.TrainDigest):
		return fmt.Errorf("train: cannot resume from %s: it was trained on other data (%d sequences, digest %s; now %d, %s); use the same --data, --max-len, tokenizer and chat template (with the same --chat-var; a template that writes the date, as Llama 3.2's does, renders other text on another day unless --chat-var date_string=... fixes it)", dir, old.TrainSize, old.TrainDigest, st.TrainSize, st.TrainDigest)
	}
	return nil
}

// checkSettings returns checkResumable's refusal of the settings that
// differ between checkpoint dir's state old and the run's st, all of them
// in one list, each "name was (now is)": the task, seed and batch, then
// the recorded settings but the learning rate (see compareSettings),
// those unknown names left out. Nil when none differs.
func checkSettings(dir string, old, st trainerState, unknown map[string]bool) error {
	var diffs []string
	for _, d := range []struct {
		name    string
		was, is any
	}{{"task", old.Task, st.Task}, {"seed", old.Seed, st.Seed}, {"batch", old.Batch, st.Batch}} {
		if d.was != d.is {
			diffs = append(diffs, fmt.Sprintf("%s %v (now %v)", d.name, d.was, d.is))
		}
	}
	was, is := old.Settings, st.Settings
	if unknown != nil {
		was, is = maps.Clone(was), maps.Clone(is)
		for k := range unknown {
			delete(was, k)
			delete(is, k)
		}
	}
	if old.Settings != nil {
		d, _, _, _ := compareSettings(was, is)
		diffs = append(diffs, d...)
	}
	if len(diffs) == 0 {
		return nil
	}
	hint := ""
	if st.Settings["method"] == string(peft.Full) && old.Settings["method"] == string(peft.Full) &&
		st.Settings["target"] == peft.AllParameters && old.Settings["target"] != peft.AllParameters {
		// Runs made when full fine-tuning trained the linear layers
		// alone, by default, meet its new default target.
		hint = fmt.Sprintf("; full fine-tuning with the target %s trains every parameter: a run of the linear layers alone goes on with --target %s", peft.AllParameters, old.Settings["target"])
	}
	if withDefaults(was)["clip"] == "1" && withDefaults(is)["clip"] == "off" {
		// Before --clip 0 meant no clipping (as Hugging Face's
		// max_grad_norm 0 does), it clipped at the default, 1, and the
		// checkpoint recorded that.
		hint += "; if it was made with --clip 0 before --clip 0 meant no clipping, it clipped at 1 (as it records): resume it with --clip 1"
	}
	return fmt.Errorf("train: cannot resume from %s: it was made with %s%s; resuming needs the settings it was made with (only the learning rate and the number of steps may change)", dir, strings.Join(diffs, ", "), hint)
}

// ResumePlan is what a caller knows of a run that is to resume before its
// model and data load, for [CheckResume].
type ResumePlan struct {
	// Task is the run's task.
	Task Task
	// Options are the run's options as the trainer will be given them,
	// after WithDefaults; Steps is 0 where the data decides it (Epochs),
	// and then so does the warm-up, which is not compared either.
	Options Options
	// Adapter is the method's configuration as peft.Inject is given it
	// (nil: no adapter).
	Adapter *peft.Config
	// BaseDType is the type the base weights will be stored in.
	BaseDType backend.DType
}

// CheckResume returns the error with which [Trainer.Run] would refuse to
// resume the run that p describes from the newest checkpoint in
// p.Options.Out, as far as p can tell: the task, seed, batch, number of
// steps (when known: fewer than the run has trained or than its warm-up,
// or another than an early-stopped run's, are refused) and every
// recorded setting but those that depend on the data or the model (the
// evaluation data of keep-best and early stopping, a packed row's
// length) are compared; the training data and the base model are checked
// by the run. A caller may call it again once the data has decided
// Options.Steps (from Epochs). It returns nil when the options do
// not resume. A caller with slow work before the run (loading a large
// model, a zero-shot evaluation) calls it first, so that a resume with a
// wrong flag is refused at once.
func CheckResume(p ResumePlan) error {
	o := p.Options
	if !o.Resume || o.Out == "" {
		return nil
	}
	dir, err := CheckOutput(o.Out, true)
	if err != nil {
		return err
	}
	old, err := readState(dir)
	if err != nil {
		return err
	}
	var c *peft.Config
	if p.Adapter != nil {
		cfg := p.Adapter.WithDefaults()
		c = &cfg
	}
	st := trainerState{TotalSteps: o.Steps, Seed: o.Seed, Batch: o.Batch, Task: p.Task.String(),
		Settings: runSettings(o, c, p.BaseDType, nil, 0)}
	unknown := map[string]bool{"eval-data": true}
	if o.Packing {
		// Its value names the row length, which the model's size caps;
		// that packing is off where the checkpoint's was on is known.
		unknown["packing"] = true
	}
	if o.Steps == 0 {
		unknown["warmup"] = true
	}
	return checkResumable(dir, old, st, unknown)
}

// stateInGroupOrder returns the optimizer state s of checkpoint dir with
// its parameters in the order of the run's, params (the groups gs, one
// after the other), where s lists the same parameters in another order.
// Checkpoints of full fine-tuning made before it exempted biases and norm
// weights from weight decay do: it had one group then, each layer's bias
// after its weight. The order is the optimizer's alone (each parameter's
// moments are its own), so where every group trains with one learning
// rate and one weight decay (0, say) the run goes on as it would have;
// otherwise the older run put parameters in groups other than this run's,
// with another rate or decay, and it is refused. A state that lists other
// parameters is returned as it is, for SetState to name the difference.
func stateInGroupOrder(dir string, s *optim.State, params []*graph.Value, gs []optim.Group) (*optim.State, error) {
	if len(s.Params) != len(params) {
		return s, nil
	}
	inOrder := true
	byName := make(map[string]optim.ParamState, len(s.Params))
	for i, ps := range s.Params {
		inOrder = inOrder && ps.Name == params[i].Name()
		byName[ps.Name] = ps
	}
	if inOrder {
		return s, nil
	}
	out := &optim.State{Kind: s.Kind, Steps: s.Steps, Params: make([]optim.ParamState, 0, len(params))}
	for _, p := range params {
		ps, ok := byName[p.Name()]
		if !ok {
			return s, nil
		}
		out.Params = append(out.Params, ps)
	}
	for _, g := range gs[1:] {
		if g.LR != gs[0].LR || g.WeightDecay != gs[0].WeightDecay {
			names := make([]string, len(gs))
			for i, g := range gs {
				names[i] = fmt.Sprintf("%s (lr %g, weight decay %g)", g.Name, g.LR, g.WeightDecay)
			}
			return nil, fmt.Errorf("train: cannot resume from %s: its optimizer state groups the parameters otherwise than this run, whose groups are %s: "+
				"it was made by an earlier version (full fine-tuning then gave biases and norm weights the weight decay of the rest; it now exempts them, as Hugging Face's Trainer does), "+
				"so the run cannot go on as it began; start it afresh", dir, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// IsInterrupted reports whether err is (or wraps) an [*InterruptedError].
func IsInterrupted(err error) bool {
	var ie *InterruptedError
	return errors.As(err, &ie)
}
