// Package demo is sora's built-in demonstration, what "sora finetune"
// runs when no model is given: it needs no files. It builds a small
// LLaMA-style model in memory, pretrains it on a synthetic language of digit
// strings (copying, reversing and sorting them), then fine-tunes it on a
// task it has never seen (writing the digits backwards, each plus one) with
// each PEFT method in turn, starting every method from the same pretrained
// weights, and reports one table: trainable parameters, held-out accuracy,
// the singular value entropy of the weight updates, and the time per step.
//
// Everything is seeded: a seed gives the same table on a given machine
// (the times aside).
package demo

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/train"
)

// Options configure the demonstration. Zero values take the defaults
// listed with the fields.
type Options struct {
	// Seed seeds the model, the data and the adapters (default 1).
	Seed uint64
	// Methods are the PEFT methods compared (default LoRA, DoRA, Pre-Diag,
	// SORA).
	Methods []peft.Method
	// PretrainSteps and FinetuneSteps are the optimizer steps of each
	// stage (defaults 600 and 300).
	PretrainSteps, FinetuneSteps int
	// Rank, Alpha and RotationRank configure the adapters (defaults 8, 16
	// and 4), which go on all seven linear layers of every block.
	Rank         int
	Alpha        float64
	RotationRank int
	// FinetuneLR is the fine-tuning learning rate, the same for every
	// method (default 2e-3).
	FinetuneLR float64
	// Repeats is the number of fine-tuning runs per method (default 3),
	// each with its own adapter initialisation and data order, all from
	// the same pretrained model; the table shows their mean and range, so
	// that a difference between methods can be told from run-to-run noise.
	Repeats int
	// Log receives a line per stage (nil: nothing).
	Log io.Writer
	// Progress, when not nil, makes the progress display of each stage.
	Progress func(stage string) train.Progress
}

// Defaults of Options.
var (
	DefaultMethods = []peft.Method{peft.LoRA, peft.DoRA, peft.PreDiag, peft.SORA}
)

const (
	DefaultPretrainSteps = 600
	DefaultFinetuneSteps = 300
	DefaultRank          = 8
	DefaultAlpha         = 16
	DefaultRotationRank  = 4
	DefaultFinetuneLR    = 2e-3
	DefaultRepeats       = 3

	pretrainLR     = 3e-3
	pretrainBatch  = 64
	finetuneBatch  = 32
	pretrainSize   = 16384
	finetuneSize   = 2048
	heldOutSize    = 512
	evalBatch      = 128
	pretrainWarmup = 50
)

func (o Options) withDefaults() Options {
	// cmp.Or keeps a field that is set and takes the default for zero.
	o.Seed = cmp.Or(o.Seed, 1)
	o.PretrainSteps = cmp.Or(o.PretrainSteps, DefaultPretrainSteps)
	o.FinetuneSteps = cmp.Or(o.FinetuneSteps, DefaultFinetuneSteps)
	o.Rank = cmp.Or(o.Rank, DefaultRank)
	o.Alpha = cmp.Or(o.Alpha, DefaultAlpha)
	o.RotationRank = cmp.Or(o.RotationRank, DefaultRotationRank)
	o.FinetuneLR = cmp.Or(o.FinetuneLR, DefaultFinetuneLR)
	o.Repeats = cmp.Or(o.Repeats, DefaultRepeats)
	if len(o.Methods) == 0 {
		o.Methods = DefaultMethods
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o
}

// ModelConfig is the demonstration's model: LLaMA's architecture (RMSNorm,
// rotary embeddings, grouped-query attention with 4 query heads over 2
// key/value heads, SwiGLU) at width 64 with 2 layers.
func ModelConfig() llama.Config {
	return llama.Config{Dim: 64, HiddenDim: 176, NumLayers: 2, NumHeads: 4, NumKVHeads: 2,
		VocabSize: VocabSize, MaxSeqLen: MaxSeqLen, NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true}
}

// Row is one method's line of the table.
type Row struct {
	Method peft.Method `json:"method"`
	// TrainablePercent is 100 · trainable / all parameters.
	TrainablePercent float64 `json:"trainable_percent"`
	Trainable        int64   `json:"trainable"`
	// Accuracy is the held-out exact-match accuracy of greedy decoding,
	// the mean over the repeats, and AccuracyMin and AccuracyMax its range.
	Accuracy    float64   `json:"accuracy"`
	AccuracyMin float64   `json:"accuracy_min"`
	AccuracyMax float64   `json:"accuracy_max"`
	Accuracies  []float64 `json:"accuracies"`
	// Loss is the held-out loss per answer token (mean over the repeats).
	Loss float64 `json:"loss"`
	// Entropy is the mean over adapted layers of the singular value
	// entropy of the update ΔW = W' − W0 (nats), and NormalizedEntropy the
	// mean of the entropies divided by the log of each update's numerical
	// rank.
	Entropy           float64 `json:"svd_entropy"`
	NormalizedEntropy float64 `json:"svd_entropy_normalized"`
	// StableRank is the mean stable rank of the updates.
	StableRank float64 `json:"stable_rank"`
	// The spectral figures are means over the repeats too.

	// MsPerStep is the mean wall time of an optimizer step.
	MsPerStep float64 `json:"ms_per_step"`
}

// Report is the demonstration's result.
type Report struct {
	Options Options `json:"-"`
	// PretrainAccuracy is the pretrained model's held-out accuracy on its
	// own tasks, and BaselineAccuracy its accuracy on the new task before
	// any fine-tuning.
	PretrainAccuracy float64 `json:"pretrain_accuracy"`
	BaselineAccuracy float64 `json:"baseline_accuracy"`
	BaselineLoss     float64 `json:"baseline_loss"`
	Rows             []Row   `json:"methods"`
	// Elapsed is the wall time of the whole demonstration.
	Elapsed time.Duration `json:"-"`
	// Device describes the backend (its Device).
	Device string `json:"device"`
	// Threads is how many goroutines an op of the backend may use, for a
	// backend that says so (the CPU's Threads); 0 otherwise.
	Threads int `json:"threads,omitempty"`
}

// Run runs the demonstration on b.
func Run(ctx context.Context, b backend.Backend, o Options) (*Report, error) {
	start := time.Now()
	o = o.withDefaults()
	rep := &Report{Options: o, Device: b.Device()}
	if t, ok := b.(backend.ThreadCounter); ok {
		rep.Threads = t.Threads()
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	pretrainTasks := []Task{Copy, Reverse, Sort}
	seen := map[string]bool{}
	preEval := generate(rng, pretrainTasks, heldOutSize, seen)
	ftEval := generate(rng, []Task{ReverseIncrement}, heldOutSize, seen)
	preTrain := generate(rng, pretrainTasks, pretrainSize, seen)
	ftTrain := generate(rng, []Task{ReverseIncrement}, finetuneSize, seen)

	progress := func(stage string) train.Progress {
		if o.Progress == nil {
			return nil
		}
		return o.Progress(stage)
	}

	// Pretraining: every weight trains.
	cfg := ModelConfig()
	w, err := train.InitWeights(cfg, o.Seed)
	if err != nil {
		return nil, err
	}
	m, err := llama.New(b, w)
	if err != nil {
		return nil, err
	}
	defer m.Free()
	for _, p := range m.Params() {
		if err := p.SetTrainable(true); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(o.Log, "pretraining a %s-parameter LLaMA-style model (dim %d, %d layers, %d heads / %d KV heads) on copy, reverse and sort: %d steps of %d sequences\n",
		thousands(cfg.NumParams()), cfg.Dim, cfg.NumLayers, cfg.NumHeads, cfg.NumKVHeads, o.PretrainSteps, pretrainBatch)
	pre := &train.Trainer{Model: m, Train: preTrain, Progress: progress("pretrain"), Options: train.Options{
		Steps: o.PretrainSteps, Batch: pretrainBatch, LR: pretrainLR, Warmup: min(pretrainWarmup, o.PretrainSteps/10), Schedule: "cosine",
		WeightDecay: 0.01, Seed: o.Seed, EvalBatch: evalBatch}}
	if _, err := pre.Run(ctx); err != nil {
		return nil, fmt.Errorf("demo: pretraining: %w", err)
	}
	for _, p := range m.Params() {
		if err := p.SetTrainable(false); err != nil {
			return nil, err
		}
	}
	ev, err := train.Evaluate(ctx, m, train.LM, preEval, evalBatch, 0)
	if err != nil {
		return nil, err
	}
	rep.PretrainAccuracy = ev.Accuracy
	base, err := train.Evaluate(ctx, m, train.LM, ftEval, evalBatch, 0)
	if err != nil {
		return nil, err
	}
	rep.BaselineAccuracy, rep.BaselineLoss = base.Accuracy, base.Loss
	fmt.Fprintf(o.Log, "pretrained: held-out accuracy %.1f%% on copy/reverse/sort, %.1f%% on the new task %q (loss %.3f)\n",
		100*ev.Accuracy, 100*base.Accuracy, ReverseIncrement.Name, base.Loss)

	for i, method := range o.Methods {
		what := fmt.Sprintf("r=%d alpha=%g on all linear layers", o.Rank, o.Alpha)
		if method == peft.Full {
			what = "every parameter"
		}
		fmt.Fprintf(o.Log, "fine-tuning %d/%d with %s: %d × %d steps of %d sequences, lr %g, %s\n",
			i+1, len(o.Methods), method, o.Repeats, o.FinetuneSteps, finetuneBatch, o.FinetuneLR, what)
		var runs []Row
		for k := range o.Repeats {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			row, err := finetune(ctx, m, method, o, o.Seed+uint64(k), ftTrain, ftEval, progress(fmt.Sprintf("%s #%d", method, k+1)))
			if err != nil {
				return rep, fmt.Errorf("demo: fine-tuning with %s: %w", method, err)
			}
			runs = append(runs, row)
		}
		rep.Rows = append(rep.Rows, mean(runs))
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// finetune injects method into m, trains it, measures it and removes it
// again, leaving m as it was.
func finetune(ctx context.Context, m *llama.Model, method peft.Method, o Options, seed uint64, trainSet, evalSet []data.Sequence, prog train.Progress) (Row, error) {
	target := peft.AllLinear
	if method == peft.Full {
		target = peft.AllParameters // as sora finetune --method full trains
	}
	pm, err := peft.Inject(m, peft.Config{Method: method, R: o.Rank, Alpha: o.Alpha, RotationRank: o.RotationRank,
		TargetModules: []string{target}, Seed: seed})
	if err != nil {
		return Row{}, err
	}
	defer pm.Unload()
	tr := &train.Trainer{Model: m, Adapter: pm, Train: trainSet, Progress: prog, Options: train.Options{
		Steps: o.FinetuneSteps, Batch: finetuneBatch, LR: o.FinetuneLR, Warmup: o.FinetuneSteps / 10,
		Schedule: "linear", Seed: seed, EvalBatch: evalBatch}}
	res, err := tr.Run(ctx)
	if err != nil {
		return Row{}, err
	}
	ev, err := train.Evaluate(ctx, m, train.LM, evalSet, evalBatch, 0)
	if err != nil {
		return Row{}, err
	}
	spectra, err := pm.Spectra()
	if err != nil {
		return Row{}, err
	}
	trainable, total := train.CountParams(m, pm)
	sum := train.SpectrumSummary(spectra)
	return Row{Method: method, TrainablePercent: 100 * float64(trainable) / float64(total), Trainable: trainable,
		Accuracy: ev.Accuracy, Loss: ev.Loss, MsPerStep: float64(res.StepTime.Microseconds()) / 1000,
		Entropy: sum.MeanEntropy, NormalizedEntropy: sum.MeanNormalizedEntropy, StableRank: sum.MeanStableRank}, nil
}

// mean averages the repeats of one method.
func mean(runs []Row) Row {
	r := runs[0]
	r.AccuracyMin, r.AccuracyMax = r.Accuracy, r.Accuracy
	r.Accuracies = []float64{r.Accuracy}
	for _, x := range runs[1:] {
		r.Accuracy += x.Accuracy
		r.Accuracies = append(r.Accuracies, x.Accuracy)
		r.AccuracyMin = min(r.AccuracyMin, x.Accuracy)
		r.AccuracyMax = max(r.AccuracyMax, x.Accuracy)
		r.Loss += x.Loss
		r.Entropy += x.Entropy
		r.NormalizedEntropy += x.NormalizedEntropy
		r.StableRank += x.StableRank
		r.MsPerStep += x.MsPerStep
	}
	n := float64(len(runs))
	r.Accuracy /= n
	r.Loss /= n
	r.Entropy /= n
	r.NormalizedEntropy /= n
	r.StableRank /= n
	r.MsPerStep /= n
	return r
}

// WriteTable prints the report as a table.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\nHeld-out task %q, %d examples never trained on; exact match of greedy decoding.\n", ReverseIncrement.Name, heldOutSize)
	fmt.Fprintf(w, "Pretrained model before fine-tuning: %.1f%% (and %.1f%% on its pretraining tasks).\n", 100*r.BaselineAccuracy, 100*r.PretrainAccuracy)
	if n := r.Options.Repeats; n == 1 {
		fmt.Fprintf(w, "Each method: 1 run (seed %d).\n\n", r.Options.Seed)
	} else {
		fmt.Fprintf(w, "Each method: %d runs (seeds %d…%d), mean accuracy and [min–max].\n\n", n, r.Options.Seed, r.Options.Seed+uint64(n)-1)
	}
	fmt.Fprintf(w, "%-9s %10s %22s %9s %12s %8s\n", "method", "trainable", "held-out accuracy", "loss", "SVD entropy", "ms/step")
	for _, row := range r.Rows {
		acc := fmt.Sprintf("%5.1f%% [%4.1f–%4.1f]", 100*row.Accuracy, 100*row.AccuracyMin, 100*row.AccuracyMax)
		fmt.Fprintf(w, "%-9s %9.2f%% %22s %9.4f %12.3f %8.1f\n", row.Method, row.TrainablePercent, acc,
			row.Loss, row.Entropy, row.MsPerStep)
	}
	fmt.Fprintf(w, "\nSVD entropy: mean over the %d adapted layers of −Σ pᵢ ln pᵢ with pᵢ = σᵢ²/Σⱼσⱼ² for the update ΔW = W' − W0 (higher: spread over more directions).\n",
		7*ModelConfig().NumLayers)
	on := r.Device
	switch {
	case r.Threads == 1:
		on += ", 1 thread"
	case r.Threads > 1:
		on += fmt.Sprintf(", %d threads", r.Threads)
	}
	fmt.Fprintf(w, "Finished in %s on %s.\n", r.Elapsed.Round(time.Second), on)
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
