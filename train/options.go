package train

import (
	"fmt"
	"math"
	"strings"

	"github.com/sora-go/sora/graph/optim"
)

// Task is what the model is trained to do.
type Task uint8

const (
	// LM is causal language modelling with the loss on the answer tokens
	// (each sequence's tokens after its prompt).
	LM Task = iota
	// Classify is sequence classification with the model's score head on
	// the last token.
	Classify
)

func (t Task) String() string {
	if t == Classify {
		return "classify"
	}
	return "lm"
}

// ParseTask returns the task named "lm" or "classify".
func ParseTask(s string) (Task, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "lm", "causal-lm", "causal_lm":
		return LM, nil
	case "classify", "classification", "cls", "seq-cls":
		return Classify, nil
	}
	return 0, fmt.Errorf("unknown task %q; expected lm or classify", s)
}

// Options are the hyper-parameters and bookkeeping of a run. Zero values
// take the defaults listed with the fields (see [Options.WithDefaults]).
type Options struct {
	// Steps is the number of optimizer steps. When 0 it is Epochs passes
	// over the training data, rounded up to whole steps.
	Steps int
	// Epochs is used when Steps is 0 (default 1).
	Epochs float64
	// Batch is the number of sequences per optimizer step (default 16),
	// and MicroBatch the number run through the model at once (default:
	// Batch); gradients of the micro-batches accumulate.
	Batch, MicroBatch int
	// LR is the peak learning rate (default 3e-4, LLM-Adapters' default).
	LR float64
	// Warmup is the number of linear warm-up steps.
	Warmup int
	// Schedule is "constant", "linear" (default) or "cosine": the decay
	// after warm-up, as the Hugging Face schedulers define them.
	Schedule string
	// WeightDecay is AdamW's decoupled weight decay (default 0).
	WeightDecay float64
	// ClipNorm clips the global gradient norm at that value; 0 takes the
	// default 1 (DefaultClipNorm), so that Options left zero clip as
	// Hugging Face's Trainer does by default. A negative value turns
	// clipping off, as NoClip does.
	ClipNorm float64
	// NoClip turns gradient clipping off; the norm is still measured and
	// logged (Hugging Face's max_grad_norm 0, and sora finetune's --clip
	// 0). It is the spelling of "off" that a zero ClipNorm cannot be, as
	// zero takes the default; it does not combine with a positive
	// ClipNorm.
	NoClip bool
	// Seed fixes the data order (the adapters' initialisation is seeded by
	// the caller that makes them).
	Seed uint64
	// SaveEvery writes a checkpoint every that many steps (0: only at the
	// end and on interruption). Checkpoints need Out.
	SaveEvery int
	// EvalEvery evaluates on the evaluation set every that many steps
	// (0: only at the end).
	EvalEvery int
	// EvalBatch is the batch size of evaluation (default: MicroBatch).
	EvalBatch int
	// BestMetric is the metric that KeepBest and EarlyStopping compare
	// evaluations by: "loss" (the default; lower is better), "accuracy"
	// or "mcc" (higher is better), or the same with metrics.jsonl's
	// "eval_" prefix (see [ParseMetric]); the task's evaluation must
	// report it (MCC: classification only). Only with one of them.
	// The evaluations compared are those of the run, every EvalEvery
	// steps and at the end, not one before training: as Hugging Face's
	// Trainer, which picks among its evaluations at save points, the
	// best is a trained model, and early stopping counts from the first
	// of them.
	BestMetric string
	// KeepBest saves the trained weights whenever an evaluation is the
	// best so far (strictly better by BestMetric) into BestDir in Out, as
	// the final adapter is saved (by Trainer.SaveAdapter, which it needs),
	// with BestFile describing the evaluation; the folder is replaced
	// whole. Each new best also writes a checkpoint at its step first, so
	// that a resume never starts from before the weights in BestDir.
	// Needs EvalEvery, evaluation data and Out.
	KeepBest bool
	// EarlyStopping, when positive, ends the run after that many
	// evaluations in a row that do not improve on the best so far by more
	// than EarlyStoppingDelta (Hugging Face's early_stopping_patience and
	// early_stopping_threshold), with the checkpoint and final adapter of
	// a normal end. Needs EvalEvery and evaluation data.
	EarlyStopping int
	// EarlyStoppingDelta is the least change of BestMetric that counts as
	// an improvement for EarlyStopping (default 0: any).
	EarlyStoppingDelta float64
	// LogEvery is the interval of plain progress lines (default: about 20
	// lines per run).
	LogEvery int
	// KeepCheckpoints is how many checkpoints to keep (default 2).
	KeepCheckpoints int
	// Out is the output folder; "" writes nothing.
	Out string
	// Resume continues from the newest checkpoint in Out, which must
	// have been made with the same options but LR and Steps. A Steps
	// other than the checkpoint's trains the run longer (or ends it
	// sooner, but not before the step it has reached nor inside its
	// warm-up; not for a run that early stopping ended): the schedule is
	// computed for the new Steps and goes on from the checkpoint's step,
	// as Hugging Face's Trainer does on resuming with another max_steps,
	// so the run matches a fresh run of the new length with the same
	// Warmup only where the steps trained had that schedule's rates too
	// (a constant schedule, steps in the warm-up; a note says which
	// differ), and Result.StepsHistory records the lengths. A run whose
	// final evaluation ran out the patience of EarlyStopping stops at
	// once when resumed with more steps.
	Resume bool
	// NoSpectra leaves out the spectra of the adapter's updates
	// (spectrum.png, spectrum.json) that a run with Out writes at its end:
	// for the full-rank methods each layer is one SVD of a dense [out, in]
	// matrix, minutes on a large model.
	NoSpectra bool
	// GradientCheckpointing recomputes each decoder layer's activations,
	// and the output head's logits in chunks, during the backward pass
	// instead of keeping them from the forward pass
	// (llama.Model.SetGradientCheckpointing): far less memory for long
	// sequences and large vocabularies, for one more forward pass per step
	// (1.43-1.47x the step time of LoRA and SORA in sora bench train).
	// The results are those of a run without it, the layers' bit for bit
	// and the loss but for the rounding of the chunks' sum, so a resume
	// may turn it on or off.
	GradientCheckpointing bool
	// TrainOnInputs trains every token of each LM training sequence after
	// the first, the prompt's too, as LLM-Adapters' finetune.py does by
	// default (train_on_inputs, kept by its published commands and
	// DoRA's); off, the loss trains what each sequence marks (for
	// instruction rows the response and EOS, PEFT's and TRL's
	// completion-only default). Evaluations score the marked tokens
	// either way. LM only; a resume must keep it.
	TrainOnInputs bool
	// GroupByLength draws each epoch's order at random, then sorts each
	// run of 50 batches (a quarter of the data where that is less) longest
	// first and starts the epoch with its longest sequence, so that a batch
	// holds sequences of similar length and pads little, and a batch too
	// large for memory fails at once (Hugging Face's group_by_length): the
	// same sequences are seen, in another order, for less compute where
	// lengths vary. A resume must keep it.
	GroupByLength bool
	// Packing runs each micro-batch with several sequences to a row
	// (sequence packing, TRL's packing): the micro-batch's sequences are
	// dealt, whole, into the rows of at most PackLen tokens that pad least
	// (data.Pack; never more positions than one sequence per row), and
	// each attends only to itself (llama.Batch.Segments), so that short
	// sequences stop paying for the padding of long ones. A step trains the same
	// sequences on the same targets as without it (the data order, the
	// batches and the loss, the mean over the step's targets, are
	// unchanged; the last token of one sequence never predicts the next
	// one's first), and its loss and gradients match an unpacked step's to
	// float32 rounding, not bit for bit, so a resume must keep it. It
	// needs the backend's fused attention (see [CheckPacking]), and does
	// not combine with GroupByLength, which saves the same padding another
	// way. Evaluation is not packed.
	Packing bool
	// PackLen is the most tokens a packed row holds (default: the model's
	// maximum sequence length); at least the longest training sequence.
	// Only with Packing.
	PackLen int
	// BaseModel describes the base model in whatever way tells apart bases
	// whose trainable tensors would mean something else (for a LLaMA: its
	// shape and the row order of its q/k projections, which differs
	// between a llama2.c file and its Hugging Face conversion). It is kept
	// in every checkpoint, and resuming from one made with another
	// description fails. A checkpoint without one (made before checkpoints
	// kept it) is resumed with a warning through Progress, as it cannot be
	// checked. "" checks nothing, and a resume with "" keeps the
	// checkpoint's description in the checkpoints it writes.
	BaseModel string
	// EvalSplit says how the evaluation data was held out of the
	// training data, as sora finetune's --eval-split writes it ("0.05",
	// "200"); "" when it was not. The split decides which rows train, so
	// it is kept in every checkpoint's settings, and a resume with
	// another is refused, by [CheckResume] before the data loads (the
	// training data's digest, compared once it has, would refuse it too).
	EvalSplit string

	// epochSteps holds the number of steps that Epochs made in
	// WithDefaults when it is too large for Steps, for Validate to report.
	epochSteps float64
}

// Defaults of Options.
const (
	DefaultBatch           = 16
	DefaultLR              = 3e-4
	DefaultSchedule        = "linear"
	DefaultClipNorm        = 1.0
	DefaultKeepCheckpoints = 2
)

// WithDefaults fills the zero fields that have defaults. trainSize is the
// number of training sequences, used to turn Epochs into Steps.
func (o Options) WithDefaults(trainSize int) Options {
	if o.Batch == 0 {
		o.Batch = DefaultBatch
	}
	if o.MicroBatch == 0 {
		o.MicroBatch = o.Batch
	}
	if o.LR == 0 {
		o.LR = DefaultLR
	}
	if o.Schedule == "" {
		o.Schedule = DefaultSchedule
	}
	if o.ClipNorm < 0 {
		o.NoClip = true
	}
	if o.ClipNorm == 0 && !o.NoClip {
		o.ClipNorm = DefaultClipNorm
	}
	if o.Epochs == 0 && o.Steps == 0 {
		o.Epochs = 1
	}
	if o.Steps == 0 && trainSize > 0 && o.Batch > 0 {
		// Converting a float64 beyond int's range gives an
		// implementation-defined int (a negative one on amd64): such a
		// count is left for Validate to refuse instead.
		steps := math.Ceil(o.Epochs * float64(trainSize) / float64(o.Batch))
		if steps < float64(maxSteps(o.Batch)) {
			o.Steps = int(steps)
		} else {
			o.epochSteps = steps
		}
	}
	if o.EvalBatch == 0 {
		o.EvalBatch = o.MicroBatch
	}
	if o.LogEvery == 0 {
		o.LogEvery = max(1, o.Steps/20)
	}
	if o.KeepCheckpoints == 0 {
		o.KeepCheckpoints = DefaultKeepCheckpoints
	}
	return o
}

// Validate checks the options (after WithDefaults) and names the bad one.
func (o Options) Validate() error {
	bad := func(name string, v any, want string) error {
		return fmt.Errorf("train: %s = %v: %s", name, v, want)
	}
	switch {
	case o.epochSteps != 0 && o.Steps == 0:
		return bad("epochs", o.Epochs, fmt.Sprintf("makes %.4g steps of %d sequences, more than a run can count (at most %d); use fewer epochs or set steps", o.epochSteps, o.Batch, maxSteps(o.Batch)))
	case o.Steps < 1:
		return bad("steps", o.Steps, "want at least 1 step (set steps or epochs)")
	case !(o.Epochs >= 0) || math.IsInf(o.Epochs, 0):
		return bad("epochs", o.Epochs, "want a finite number ≥ 0")
	case o.Batch < 1:
		return bad("batch", o.Batch, "want at least 1 sequence per step")
	case o.Steps > maxSteps(o.Batch):
		return bad("steps", o.Steps, fmt.Sprintf("more than a run can count with batches of %d (at most %d)", o.Batch, maxSteps(o.Batch)))
	case o.MicroBatch < 1 || o.MicroBatch > o.Batch:
		return bad("micro-batch", o.MicroBatch, fmt.Sprintf("want 1 to the batch size %d", o.Batch))
	case !(o.LR > 0) || math.IsInf(o.LR, 0):
		return bad("lr", o.LR, "want a finite learning rate > 0")
	case o.Warmup < 0 || o.Warmup > o.Steps:
		return bad("warmup", o.Warmup, fmt.Sprintf("want 0 to the number of steps %d", o.Steps))
	case !(o.WeightDecay >= 0) || math.IsInf(o.WeightDecay, 0):
		return bad("weight-decay", o.WeightDecay, "want a finite number ≥ 0")
	case math.IsNaN(o.ClipNorm) || math.IsInf(o.ClipNorm, 0):
		return bad("clip-norm", o.ClipNorm, "want a finite number (negative: no clipping)")
	case o.NoClip && o.ClipNorm > 0:
		return bad("clip-norm", o.ClipNorm, "is a norm to clip at, and no-clip turns clipping off; set one")
	case o.SaveEvery < 0:
		return bad("save-every", o.SaveEvery, "want 0 (only at the end) or a positive number of steps")
	case o.EvalEvery < 0:
		return bad("eval-every", o.EvalEvery, "want 0 (only at the end) or a positive number of steps")
	case o.EvalBatch < 1:
		return bad("eval batch", o.EvalBatch, "want at least 1")
	case o.EarlyStopping < 0:
		return bad("early-stopping", o.EarlyStopping, "want 0 (off) or the number of evaluations without improvement that stop the run")
	case !(o.EarlyStoppingDelta >= 0) || math.IsInf(o.EarlyStoppingDelta, 0):
		return bad("early-stopping-delta", o.EarlyStoppingDelta, "want a finite number ≥ 0")
	case o.EarlyStoppingDelta != 0 && o.EarlyStopping == 0:
		return bad("early-stopping-delta", o.EarlyStoppingDelta, "is the least improvement that early stopping counts; set early-stopping too")
	case o.BestMetric != "" && !o.KeepBest && o.EarlyStopping == 0:
		return bad("best-metric", o.BestMetric, "chooses the best evaluation for keep-best and early-stopping; set one of them")
	case (o.KeepBest || o.EarlyStopping > 0) && o.EvalEvery == 0:
		return bad("eval-every", o.EvalEvery, "keep-best and early-stopping compare the evaluations during training; want a positive number of steps")
	case o.KeepBest && o.Out == "":
		return fmt.Errorf("train: keep-best needs the output folder to save the best weights in")
	case o.PackLen < 0 || (o.PackLen > 0 && !o.Packing):
		return bad("pack length", o.PackLen, "want 0 (the model's maximum sequence length), or a positive number of tokens with packing")
	case o.Packing && o.GroupByLength:
		return fmt.Errorf("train: packing and group-by-length both cut padding, one by packing a micro-batch's sequences into full rows, the other by batching sequences of similar length; use one")
	case o.Resume && o.Out == "":
		return fmt.Errorf("train: resume needs the output folder that holds the checkpoints")
	}
	if _, err := o.schedule(); err != nil {
		return err
	}
	if _, err := ParseMetric(o.BestMetric); err != nil {
		return bad("best-metric", o.BestMetric, "want loss, accuracy or mcc")
	}
	return nil
}

// clipping reports whether the run clips the gradient norm (after
// WithDefaults).
func (o Options) clipping() bool { return !o.NoClip && o.ClipNorm > 0 }

// maxGradNorm returns the norm the gradients are clipped at: +Inf when
// clipping is off.
func (o Options) maxGradNorm() float64 {
	if !o.clipping() {
		return math.Inf(1)
	}
	return o.ClipNorm
}

// selects reports whether the run chooses among its evaluations: keeps the
// best, or stops early.
func (o Options) selects() bool { return o.KeepBest || o.EarlyStopping > 0 }

// schedule returns the learning-rate schedule of the options.
func (o Options) schedule() (optim.Schedule, error) {
	switch strings.ToLower(o.Schedule) {
	case "constant":
		return optim.Constant{Warmup: o.Warmup}, nil
	case "linear":
		return optim.WarmupLinear{Warmup: o.Warmup, Total: o.Steps}, nil
	case "cosine":
		return optim.WarmupCosine{Warmup: o.Warmup, Total: o.Steps}, nil
	}
	return nil, fmt.Errorf("train: schedule %q: want constant, linear or cosine", o.Schedule)
}

// maxSteps is the most steps a run with batches of batch sequences can
// take: the data order counts sequences, steps × batch, in an int.
func maxSteps(batch int) int { return math.MaxInt / max(batch, 1) }
