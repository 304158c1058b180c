package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/atomicfile"
	"github.com/sora-go/sora/internal/hostmem"
	"github.com/sora-go/sora/models/chat"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/peft/adapter"
	"github.com/sora-go/sora/train"
	"github.com/sora-go/sora/train/demo"
)

func init() {
	register(command{
		name:    "finetune",
		summary: "fine-tune a model with LoRA, DoRA, Pre-Diag, SORA, … (no flags: the built-in demonstration)",
		run:     runFinetune,
	})
}

// exitInterrupted is the status of a run stopped by Ctrl-C (after saving
// a checkpoint), as shells report a process ended by SIGINT.
const exitInterrupted = 130

var finetuneDoc = usageDoc{
	synopsis: "finetune [--model FILE|DIR [--tokenizer PATH] --data FILE] [flags]",
	description: "Fine-tunes a LLaMA-family model (LLaMA, Qwen2, Qwen3, Mistral, Gemma 2, Gemma 3) with a parameter-efficient method and saves the adapter in Hugging Face " +
		"PEFT's layout. " +
		"Without --model it runs the built-in demonstration, which needs no files: it pretrains a small " +
		"LLaMA-style model on a synthetic language of digit strings (copy, reverse, sort), fine-tunes it on a new " +
		"task with LoRA, DoRA, Pre-Diag and SORA in turn (3 runs each) and prints one table of trainable " +
		"parameters, held-out accuracy, singular value entropy of the weight updates and time per step. " +
		"With --model, it trains on --data: for --task lm a JSON list or JSON Lines file of rows of one of four kinds: " +
		"instruction/input/output (LLM-Adapters, Alpaca; trained as the Alpaca prompt followed by the output), prompt/completion, " +
		"text, or messages (a conversation, rendered with the chat template: the model's, or --chat-template), with the loss on the output, the completion, " +
		"the whole text or the assistant's turns; for --task classify a CoLA TSV file (source, label, mark, " +
		"sentence) or an LLM-Adapters JSON file with true/false answers (BoolQ), with a classification head on " +
		"the last token (a --model that \"sora finetune --method full --task classify\" wrote continues the head " +
		"it saved beside it in " + headFile + "; --new-head starts a new one). The run shows a progress bar on a terminal and log lines otherwise, and writes into " +
		"--out: adapter/ (adapter_config.json, adapter_model.safetensors; for --method full the whole model, model.bin " +
		"or a Hugging Face folder model/, and with --task classify its head in score.safetensors), checkpoints/ (every --save-every " +
		"steps and at the end; Ctrl-C saves one and exits with status 130), with --keep-best best/ (the weights of the best evaluation during training, saved as adapter/ is, and best.json), metrics.jsonl, loss.png, " +
		"spectrum.png, spectrum.json and run.json (with --eval-split, beside it, the rows held out of --data: eval-split.json). --resume continues from the newest checkpoint with the same " +
		"flags (a flag that changes the result is refused, naming it, before the model loads; only --lr may change, with a note, and --steps, to train the run longer or end it sooner: " +
		"its learning-rate schedule is then computed again for the new number of steps and goes on from the checkpoint's step, as Hugging Face's Trainer does, " +
		"so the result differs from a fresh run of that length where the steps trained had other rates, as a note says; fewer steps than the run has trained, or than its warm-up, are refused) and reports the zero-shot evaluation the run recorded, without taking it again. One run at a time uses " +
		"an --out folder: another run into it, or a --resume while it runs, fails at once. A NaN or infinite loss stops the run; its newest checkpoint " +
		"holds finite weights, which may have diverged already (the message says how large they grew), so it also says how to start afresh. " +
		"A run that fails before it trains a step leaves no files behind, and removes the --out folder it made, and the parents of it that it made, where they are left empty.",
	examples: []string{
		"sora finetune",
		"sora finetune --model stories260K.bin --tokenizer tok512.bin --data boolq/train.json --eval-data boolq/test.json --max-train 2000 --max-eval 300 --method sora --lr 2e-3 --out runs/boolq-sora",
		"sora finetune --model stories260K.bin --tokenizer tok512.bin --task classify --data cola/in_domain_train.tsv --eval-data cola/in_domain_dev.tsv --method prediag --out runs/cola",
		"sora finetune --model stories260K.bin --tokenizer tok512.bin --data boolq/train.json --out runs/boolq-sora --resume",
	},
}

// finetuneFlags are the flags of "sora finetune".
type finetuneFlags struct {
	backend, model, tokenizer, data, evalData, task, method, target, schedule, out     string
	evalSplit                                                                          string
	baseDType                                                                          string
	rank, rotationRank, steps, batch, microBatch, maxLen, warmup, saveEvery, evalEvery int
	maxTrain, maxEval, pretrainSteps, repeats, maxNew                                  int
	alpha, lr, epochs, weightDecay, clip, loraPlusRatio, dropout                       float64
	seed                                                                               uint64
	resume, exactRotation, newHead, noSpectrum, gradientCheckpointing, groupByLength   bool
	packing, rslora, trainOnInputs                                                     bool
	set                                                                                map[string]bool
	chat                                                                               chatFlags
	// holdout is --eval-split, parsed by check (zero without it).
	holdout data.Holdout
	// resumed is, with --resume, what the checkpoint resumed from records
	// of its run (read by run before anything loads).
	resumed *train.CheckpointInfo

	// The choice among the evaluations: --best-metric, --keep-best,
	// --early-stopping and --early-stopping-delta.
	bestMetric         string
	keepBest           bool
	earlyStopping      int
	earlyStoppingDelta float64
}

func defineFinetuneFlags(fs *flag.FlagSet) *finetuneFlags {
	f := &finetuneFlags{}
	backendFlagVar(fs, &f.backend)
	fs.StringVar(&f.model, "model", "", "`PATH` of the base model: a llama2.c checkpoint file or a Hugging Face folder; without it the built-in demonstration runs")
	baseDTypeFlagVar(fs, &f.baseDType)
	fs.StringVar(&f.tokenizer, "tokenizer", "", "`PATH` of the model's tokenizer: a llama2.c tokenizer.bin, or a Hugging Face tokenizer.json, tokenizer.model or model folder (default: the --model folder's own, for a Hugging Face model; required for a llama2.c checkpoint)")
	fs.StringVar(&f.data, "data", "", "`FILE` of training data (required with --model): for --task lm a JSON list or JSON Lines of rows, each instruction/input/output (LLM-Adapters, Alpaca), prompt/completion, text, or messages (a conversation, rendered with the chat template); for --task classify CoLA TSV or BoolQ JSON")
	fs.StringVar(&f.evalData, "eval-data", "", "`FILE` of held-out data in the same format, evaluated before training (zero-shot), every --eval-every steps and at the end")
	fs.StringVar(&f.evalSplit, "eval-split", "", "hold out `X` of the rows of --data, never trained on, and evaluate on them as on --eval-data (not with --eval-data): a fraction in (0, 1), rounded up to whole rows, or a number of rows ≥ 1, drawn at random with --seed (stratified by label with --task classify) before --max-train and --max-eval sample; they are written into --out as "+evalSplitName+".json (.jsonl, .tsv: as --data), which \"sora eval --data\" scores as the run did")
	fs.StringVar(&f.task, "task", "lm", "`TASK`: lm (causal LM, loss on the answer tokens) or classify (classification head on the last token; a --model with a head beside it in "+headFile+" continues that head)")
	fs.BoolVar(&f.newHead, "new-head", false, "with --task classify, start a new random classification head even when --model has one beside it in "+headFile)
	fs.StringVar(&f.method, "method", "sora", "PEFT `METHOD`: one of "+methodNames()+" (the demonstration takes a comma-separated list; default lora,dora,prediag,sora there)")
	fs.IntVar(&f.rank, "rank", peft.DefaultR, "LoRA rank `r` (for oft: the number of blocks per layer)")
	fs.Float64Var(&f.alpha, "alpha", 16, "lora_alpha; the low-rank update is scaled by `alpha`/rank (alpha/√rank with --rslora)")
	fs.BoolVar(&f.rslora, "rslora", false, "rank-stabilized LoRA: scale the low-rank update by alpha/√rank instead of alpha/rank (Hugging Face PEFT's use_rslora), so that a higher rank does not shrink the update; for every method with a low-rank update (not oft or full)")
	fs.IntVar(&f.rotationRank, "rotation-rank", peft.DefaultRotationRank, "rank `r_p` of the rotation factors C and D (sora, preortho, postortho)")
	fs.Float64Var(&f.dropout, "dropout", 0, "dropout `P` on the input of the low-rank path while training (the paper's reference code uses 0.05; dora-peft then computes PEFT's own function); not for oft or full")
	fs.BoolVar(&f.exactRotation, "exact-rotation", false, "use the exactly orthogonal rotation exp(S) instead of the paper's first-order I + S (sora, preortho, postortho)")
	fs.StringVar(&f.target, "target", peft.AllLinear, "comma-separated `PATTERNS` of the layers to adapt: module names such as q_proj,v_proj (matched as name suffixes), regular expressions, or all-linear; with --method full the default is "+peft.AllParameters+" (every parameter: embeddings, norms, the head, biases and every linear layer), and patterns train those linear layers alone")
	fs.Float64Var(&f.lr, "lr", 1e-3, "peak learning `RATE` of AdamW (the demonstration's default is 2e-3)")
	fs.Float64Var(&f.epochs, "epochs", 1, "passes over the training data, `E` (may be fractional; ignored when --steps is set)")
	fs.IntVar(&f.steps, "steps", 0, "optimizer `STEPS` to train; 0 uses --epochs (the demonstration: fine-tuning steps per run, default 300); with --resume, another number than the run was made for trains it longer, or ends it sooner (not before the step it has reached, nor inside its warm-up), its learning-rate schedule computed again for the new number from the checkpoint's step (with the run's warm-up)")
	fs.IntVar(&f.batch, "batch", train.DefaultBatch, "sequences per optimizer step, `N`")
	fs.IntVar(&f.microBatch, "micro-batch", 0, "sequences run through the model at once, `N`; the gradients of --batch/--micro-batch micro-batches accumulate (0: --batch)")
	fs.IntVar(&f.maxLen, "max-len", 256, "longest sequence in `TOKENS`; longer ones are cut (capped at the model's seq_len)")
	fs.IntVar(&f.warmup, "warmup", -1, "linear warm-up `STEPS`; -1 means 5% of the steps (with --resume: of the steps the run was first made for, before a --resume changed --steps)")
	fs.StringVar(&f.schedule, "schedule", train.DefaultSchedule, "learning-rate decay after warm-up, `KIND`: constant, linear or cosine")
	fs.Float64Var(&f.weightDecay, "weight-decay", 0, "AdamW's decoupled weight decay `W`")
	fs.Float64Var(&f.clip, "clip", train.DefaultClipNorm, "clip the gradients' global norm to `N`; 0 (as Hugging Face's max_grad_norm 0) or negative: no clipping")
	fs.Float64Var(&f.loraPlusRatio, "loraplus-ratio", peft.DefaultLoRAPlusRatio, "LoRA+'s `λ`: the B matrices train at λ × --lr (--method lora+ only)")
	fs.Uint64Var(&f.seed, "seed", 42, "random `SEED` of the adapters' initialisation, the data order, the --max-train/--max-eval samples and the --eval-split rows")
	fs.StringVar(&f.out, "out", "", "output `DIR` (default runs/<method>-<task> in the current folder; the demonstration writes nothing unless given)")
	fs.BoolVar(&f.resume, "resume", false, "continue the run in --out from its newest checkpoint (with the same flags: one that changes the result is refused, except --lr, which may change, and --steps, which may grow to train the run longer or shrink, to no fewer than it has trained, to end it sooner), reporting the zero-shot evaluation the run recorded instead of taking it again")
	fs.BoolVar(&f.noSpectrum, "no-spectrum", false, "leave out spectrum.png and spectrum.json, the singular value spectra of the updates written at the end (for dora, prediag, sora, oft and full one SVD of a dense matrix per layer: minutes on a large model; lora's are computed from its factors in moments)")
	fs.BoolVar(&f.gradientCheckpointing, "gradient-checkpointing", false, "recompute each decoder layer's activations, and the output head's logits in chunks, in the backward pass instead of keeping them: far less memory for long sequences and large vocabularies, one more forward pass per step (1.5x the time on our machine); the trained weights are those of a run without it")
	fs.BoolVar(&f.trainOnInputs, "train-on-inputs", false, "train every token of each training row, its prompt's too, as LLM-Adapters' finetune.py does by default (train_on_inputs); without it the loss trains the response and EOS (the assistant turns of a conversation), as PEFT's and TRL's examples do; --task lm only; evaluations score the response either way; a resume must keep it")
	fs.BoolVar(&f.groupByLength, "group-by-length", false, "draw the data order at random, then sort each run of 50 batches (or a quarter of the data, if less) longest first, the epoch's longest sequence first, so that a batch holds sequences of similar length and pads little (Hugging Face's group_by_length): the same data for less compute where lengths vary; a resume must keep it")
	fs.BoolVar(&f.packing, "packing", false, "sequence packing: run each micro-batch's sequences several to a row (rows of up to --max-len tokens, never more positions than one per row), each attending only to itself, instead of one per row padded to the longest, so that short rows stop paying for padding; the batches, targets and loss are those of a run without it, to float32 rounding. Needs fused attention (the cpu and cuda backends have it, ascend on Atlas A2/A3; SORA_ATTENTION=unfused turns it off); not with --group-by-length; a resume must keep it")
	fs.IntVar(&f.saveEvery, "save-every", 100, "write a checkpoint every `N` steps (0: only at the end)")
	fs.IntVar(&f.evalEvery, "eval-every", 0, "evaluate on --eval-data (or the --eval-split rows) every `N` steps (0: before and after training only)")
	fs.StringVar(&f.bestMetric, "best-metric", string(train.MetricLoss), "`METRIC` that --keep-best and --early-stopping compare the evaluations during training by, as metrics.jsonl names it with or without eval_: loss (lower is better), accuracy (higher; for --task lm the share of answers predicted exactly token by token) or mcc (higher; --task classify)")
	fs.BoolVar(&f.keepBest, "keep-best", false, "whenever an evaluation during training is the best so far by --best-metric (the zero-shot one before training does not count), save the weights into --out/best/ as adapter/ is saved, with best.json (step, metric, value); needs --eval-data (or --eval-split) and --eval-every")
	fs.IntVar(&f.earlyStopping, "early-stopping", 0, "stop training after `N` evaluations in a row that do not improve on the best --best-metric so far (Hugging Face's early_stopping_patience), saving the checkpoint and adapter/ as at the last step; 0: off; needs --eval-data (or --eval-split) and --eval-every")
	fs.Float64Var(&f.earlyStoppingDelta, "early-stopping-delta", 0, "with --early-stopping, an evaluation improves only if it beats the best so far by more than `D` (early_stopping_threshold)")
	fs.IntVar(&f.maxTrain, "max-train", 0, "train on a random subset of `N` rows of --data (0: all)")
	fs.IntVar(&f.maxEval, "max-eval", 0, "evaluate on a random subset of `N` rows of --eval-data, or of the --eval-split rows (0: all)")
	fs.IntVar(&f.maxNew, "max-new-tokens", 32, "with --task lm and --eval-data (or --eval-split), the most tokens generated for each prompt when the answers are scored after training, `N`, as \"sora eval --max-new-tokens\" (math rows, whose reasoning comes before the answer, need hundreds)")
	fs.IntVar(&f.pretrainSteps, "pretrain-steps", demo.DefaultPretrainSteps, "the demonstration's pretraining `STEPS`")
	fs.IntVar(&f.repeats, "repeats", demo.DefaultRepeats, "the demonstration's fine-tuning runs per method, `N` (each with its own seed)")
	f.chat.addTemplate(fs, ", for data of conversations (messages rows)")
	return f
}

func runFinetune(args []string, stdout, stderr io.Writer) (status int) {
	fs := newFlagSet("finetune")
	f := defineFinetuneFlags(fs)
	profile := cpuProfileFlag(fs)
	if code, ok := parseFlags(fs, finetuneDoc, args, stdout, stderr); !ok {
		return code
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	if m, err := peft.ParseMethod(f.method); err == nil && m == peft.Full && !f.set["target"] {
		// Full fine-tuning means every parameter, as with Hugging Face's
		// Trainer; --target narrows it to linear layers.
		f.target = peft.AllParameters
	}
	if f.model == "" {
		for _, name := range []string{"tokenizer", "data", "eval-data", "task", "resume", "target", "max-train", "max-eval",
			"batch", "micro-batch", "max-len", "warmup", "schedule", "weight-decay", "epochs", "save-every", "eval-every", "clip",
			"dropout", "exact-rotation", "new-head", "no-spectrum", "gradient-checkpointing", "group-by-length", "packing", "base-dtype", "rslora",
			"best-metric", "keep-best", "early-stopping", "early-stopping-delta", "max-new-tokens", "loraplus-ratio", "eval-split"} {
			if f.set[name] {
				fmt.Fprintf(stderr, "sora finetune: --%s needs --model (without --model the built-in demonstration runs; it takes --method, --rank, --alpha, --rotation-rank, --lr, --steps, --pretrain-steps, --repeats, --seed, --backend, --out and --cpuprofile)\n", name)
				return exitUsage
			}
		}
	} else if err := f.check(); err != nil {
		fmt.Fprintf(stderr, "sora finetune: %v\n", err)
		return exitUsage
	}
	want := "a folder (new, or holding this run's checkpoints)"
	if f.model == "" {
		want = "a folder for the demonstration's demo.json"
	}
	if err := checkOutFolder(f.out, want); err != nil {
		fmt.Fprintf(stderr, "sora finetune: %v\n", err)
		return exitUsage
	}
	finish, code := startCPUProfile("finetune", *profile, stderr)
	if finish == nil {
		return code
	}
	defer finish(&status)
	if f.model == "" {
		return runDemo(f, stdout, stderr)
	}
	return f.run(stdout, stderr)
}

// checkOutFolder refuses an --out that is a regular file or lies beneath
// one, saying it wants want; nothing else (a folder, a path not yet made,
// "") is refused. Otherwise the first write would find it, after the model
// has loaded or the demonstration has run, as "mkdir tiny.json: not a
// directory".
func checkOutFolder(out, want string) error {
	if out == "" {
		return nil
	}
	for p := filepath.Clean(out); ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil {
			switch {
			case fi.IsDir():
				return nil
			case p == filepath.Clean(out):
				return fmt.Errorf("--out %s: is a file; want %s", out, want)
			default:
				return fmt.Errorf("--out %s: %s is a file; want %s", out, p, want)
			}
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

// positive reports whether x is a finite number above 0 (NaN and +Inf are
// not: the flag package parses both).
func positive(x float64) bool { return x > 0 && !math.IsInf(x, 1) }

// check validates the flags of a real run.
func (f *finetuneFlags) check() error {
	if _, err := tokenizerSource(f.model, f.tokenizer); err != nil {
		return err
	}
	switch {
	case f.data == "":
		return fmt.Errorf("--data is required with --model (an LLM-Adapters .json or CoLA .tsv file)")
	case f.rank < 1:
		return fmt.Errorf("--rank %d: want at least 1", f.rank)
	case !positive(f.alpha):
		return fmt.Errorf("--alpha %g: want a finite positive number", f.alpha)
	case f.rotationRank < 1:
		return fmt.Errorf("--rotation-rank %d: want at least 1", f.rotationRank)
	case !positive(f.lr):
		return fmt.Errorf("--lr %g: want a finite positive learning rate", f.lr)
	case !positive(f.epochs) && f.steps == 0:
		return fmt.Errorf("--epochs %g: want a finite positive number (or set --steps)", f.epochs)
	case f.steps < 0:
		return fmt.Errorf("--steps %d: want 0 (use --epochs) or a positive number", f.steps)
	case f.batch < 1:
		return fmt.Errorf("--batch %d: want at least 1", f.batch)
	case f.microBatch < 0 || f.microBatch > f.batch:
		return fmt.Errorf("--micro-batch %d: want 0 (= --batch) to --batch %d", f.microBatch, f.batch)
	case f.maxLen < 2:
		return fmt.Errorf("--max-len %d: want at least 2 tokens", f.maxLen)
	case f.warmup < -1:
		return fmt.Errorf("--warmup %d: want -1 (5%% of the steps) or a number of steps ≥ 0", f.warmup)
	case !(f.weightDecay >= 0) || math.IsInf(f.weightDecay, 1):
		return fmt.Errorf("--weight-decay %g: want a finite number ≥ 0", f.weightDecay)
	case math.IsNaN(f.clip) || math.IsInf(f.clip, 0):
		return fmt.Errorf("--clip %g: want a finite norm (0 or negative turns clipping off)", f.clip)
	case f.saveEvery < 0:
		return fmt.Errorf("--save-every %d: want 0 (a checkpoint at the end only) or a positive number of steps", f.saveEvery)
	case f.evalEvery < 0:
		return fmt.Errorf("--eval-every %d: want 0 (before and after training only) or a positive number of steps", f.evalEvery)
	case f.maxTrain < 0:
		return fmt.Errorf("--max-train %d: want 0 (all rows) or a positive number", f.maxTrain)
	case f.maxEval < 0:
		return fmt.Errorf("--max-eval %d: want 0 (all rows) or a positive number", f.maxEval)
	case f.set["eval-split"] && f.evalData != "":
		return fmt.Errorf("--eval-split and --eval-data both give the data to evaluate on: use one or the other (--eval-split holds out part of --data, --eval-data reads another file)")
	case !f.evaluates() && (f.set["eval-every"] || f.set["max-eval"]):
		// Without held-out data they would do nothing, silently.
		return fmt.Errorf("--eval-every and --max-eval need --eval-data or --eval-split (the held-out data to evaluate)")
	case f.maxNew < 1:
		return fmt.Errorf("--max-new-tokens %d: want at least 1", f.maxNew)
	case f.set["max-new-tokens"] && !f.evaluates():
		return fmt.Errorf("--max-new-tokens is how far the answers of the evaluation data are generated after training; it needs --eval-data or --eval-split")
	case f.earlyStopping < 0:
		return fmt.Errorf("--early-stopping %d: want 0 (off) or the number of evaluations without improvement that stop the run", f.earlyStopping)
	case !(f.earlyStoppingDelta >= 0) || math.IsInf(f.earlyStoppingDelta, 1):
		return fmt.Errorf("--early-stopping-delta %g: want a finite number ≥ 0", f.earlyStoppingDelta)
	case f.set["early-stopping-delta"] && f.earlyStopping == 0:
		return fmt.Errorf("--early-stopping-delta is the least improvement that --early-stopping counts; set --early-stopping too")
	case f.set["best-metric"] && !f.keepBest && f.earlyStopping == 0:
		return fmt.Errorf("--best-metric chooses among the evaluations for --keep-best and --early-stopping; set one of them")
	case (f.keepBest || f.earlyStopping > 0) && (!f.evaluates() || f.evalEvery == 0):
		// Without them the run evaluates at most once, at its end:
		// nothing to choose from, nothing to stop.
		return fmt.Errorf("--keep-best and --early-stopping compare the evaluations during training: they need --eval-data (or --eval-split) and --eval-every N (N > 0)")
	case !positive(f.loraPlusRatio):
		return fmt.Errorf("--loraplus-ratio %g: want a finite positive number", f.loraPlusRatio)
	case !(f.dropout >= 0 && f.dropout < 1):
		return fmt.Errorf("--dropout %g: want a probability in [0, 1)", f.dropout)
	case f.packing && f.groupByLength:
		return fmt.Errorf("--packing and --group-by-length both cut padding, one by packing a micro-batch's sequences into full rows, the other by batching sequences of similar length; use one")
	}
	if f.set["eval-split"] {
		h, err := data.ParseHoldout(f.evalSplit)
		if err != nil {
			return fmt.Errorf("--eval-split: %v", err)
		}
		f.holdout = h
	}
	task, err := train.ParseTask(f.task)
	if err != nil {
		return fmt.Errorf("--task: %v", err)
	}
	if f.trainOnInputs && task != train.LM {
		return fmt.Errorf("--train-on-inputs trains a language model's prompt tokens, with --task lm; a classifier is trained on its label alone")
	}
	if f.newHead && task != train.Classify {
		return fmt.Errorf("--new-head needs --task classify (only a classifier has a head)")
	}
	if f.set["max-new-tokens"] && task != train.LM {
		return fmt.Errorf("--max-new-tokens is how far the answers are generated, with --task lm; a classifier generates none")
	}
	if metric, err := train.ParseMetric(f.bestMetric); err != nil {
		return fmt.Errorf("--best-metric: %v", err)
	} else if err := metric.ForTask(task); err != nil {
		return fmt.Errorf("--best-metric %s: %v", f.bestMetric, err)
	}
	if task == train.Classify && f.target != peft.AllParameters {
		// The head is trained whole; an adapter on it as well would put
		// its parameters in two optimizer groups. (Full fine-tuning of
		// every parameter trains it whole with the rest.)
		if hit, err := peft.Match(splitList(f.target), llama.ScoreModule); err == nil && hit {
			return fmt.Errorf("--target %s selects the classification head %q, which --task classify trains whole; leave it out", f.target, llama.ScoreModule)
		}
	}
	m, err := peft.ParseMethod(f.method)
	if err != nil {
		return fmt.Errorf("--method: %v", err)
	}
	if err := f.checkMethodFlags(m); err != nil {
		return err
	}
	mopts, err := baseDType(f.baseDType)
	if err != nil {
		return err
	}
	if m == peft.Full && mopts.BaseDType == backend.BFloat16 {
		return fmt.Errorf("--base-dtype %s stores the base weights frozen, in bfloat16, and --method full trains them: use --base-dtype f32 (the default) for full fine-tuning, or an adapter method", f.baseDType)
	}
	if targets := splitList(f.target); slices.Contains(targets, peft.AllParameters) {
		// Said in the flags' words, before the method's own check.
		switch {
		case m != peft.Full:
			return fmt.Errorf("--target %s (every parameter) is --method full's; --method %s adapts linear layers (--target %s, the default, or patterns)", peft.AllParameters, m, peft.AllLinear)
		case len(targets) != 1:
			return fmt.Errorf("--target %s: %s selects every parameter; give it alone (or leave --target out), or name the linear layers to train without it", f.target, peft.AllParameters)
		}
	}
	// The adapter is saved in Hugging Face's adapter_config.json, whose
	// target_modules must express --target: found now, not after training.
	if m != peft.Full {
		if _, err := peft.HFTargetModules(splitList(f.target)); err != nil {
			return fmt.Errorf("--target %s cannot be saved with the adapter: %v (name the layers instead, e.g. q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,%s)", f.target, err, llama.OutputModule)
		}
	}
	// Combinations the method refuses (--dropout with oft, --exact-rotation
	// without a rotation) are usage errors, found before anything loads.
	if err := f.peftConfig(m).WithDefaults().Validate(); err != nil {
		return methodFlagError(m, err)
	}
	switch strings.ToLower(f.schedule) {
	case "constant", "linear", "cosine":
	default:
		return fmt.Errorf("--schedule %q: want constant, linear or cosine", f.schedule)
	}
	return nil
}

// methodOnlyFlags are the flags that only some methods use: what each
// sets, and which methods have it. Given with another method, one would do
// nothing, silently (--rotation-rank with lora), or be refused by the
// method's own check in its words (--exact-rotation), and then only at
// some values; every one is refused alike instead, when the user gave it
// (its default, not given, does not count).
var methodOnlyFlags = []struct {
	name, what string
	uses       func(peft.Method) bool
}{
	{"rank", "the rank of the low-rank update (oft: its number of blocks)", func(m peft.Method) bool { return m.Spec().LowRank || m == peft.OFT }},
	{"alpha", "lora_alpha, the scale of the low-rank update", lowRank},
	{"rslora", "rank-stabilized LoRA's scale of the low-rank update", lowRank},
	{"dropout", "the dropout on the low-rank path's input", lowRank},
	{"rotation-rank", "the rank of the rotation factors C and D", rotates},
	{"exact-rotation", "the choice of rotation, exp(S) or I + S", rotates},
	{"loraplus-ratio", "LoRA+'s ratio of the B matrices' learning rate", func(m peft.Method) bool { return m == peft.LoRAPlus }},
}

func lowRank(m peft.Method) bool { return m.Spec().LowRank }

func rotates(m peft.Method) bool {
	s := m.Spec()
	return s.Pre == peft.Rotation || s.Post == peft.Rotation
}

// checkMethodFlags refuses a flag of methodOnlyFlags that the user gave
// and method m does not use, naming the methods that do.
func (f *finetuneFlags) checkMethodFlags(m peft.Method) error {
	for _, fl := range methodOnlyFlags {
		if !f.set[fl.name] || fl.uses(m) {
			continue
		}
		var users []string
		for _, u := range peft.Methods {
			if fl.uses(u) {
				users = append(users, string(u))
			}
		}
		return fmt.Errorf("--%s is %s; --method %s has none (use --method %s)", fl.name, fl.what, m, orList(users))
	}
	return nil
}

// evaluates reports whether the run has evaluation data: --eval-data, or
// the rows --eval-split holds out.
func (f *finetuneFlags) evaluates() bool { return f.evalData != "" || f.set["eval-split"] }

// configFlags are the flags that set the fields of peft.Config that
// Config.Validate names.
var configFlags = map[string]string{"R": "--rank", "Alpha": "--alpha", "RotationRank": "--rotation-rank", "Dropout": "--dropout",
	"ExactRotation": "--exact-rotation", "RSLoRA": "--rslora", "LoRAPlusRatio": "--loraplus-ratio", "TargetModules": "--target", "R/OFTBlockSize": "--rank"}

// methodFlagError says err, an error of peft.Config.Validate for method m,
// in the words of the flags the user typed ("--exact-rotation: only the
// rotation methods … (--method lora)"), not those of the library's fields.
func methodFlagError(m peft.Method, err error) error {
	var ce *peft.ConfigError
	if !errors.As(err, &ce) || configFlags[ce.Field] == "" {
		return fmt.Errorf("--method %s: %v", m, err)
	}
	name := configFlags[ce.Field]
	if ce.Value == true {
		return fmt.Errorf("%s with --method %s: %s", name, m, ce.Reason)
	}
	return fmt.Errorf("%s %v with --method %s: %s", name, ce.Value, m, ce.Reason)
}

// packingNote says what --packing saves in the run with options o on
// the training sequences seqs (train.PackedPositions, over all its
// steps): the share of the positions it runs fewer than one sequence to a
// row, or, where it saves none, why not, so that a user who asked for
// packing to save compute learns that it does not.
func packingNote(seqs []data.Sequence, o train.Options) string {
	packed, unpacked, err := train.PackedPositions(seqs, o)
	switch {
	case err != nil || unpacked == 0:
		return ""
	case packed < unpacked:
		share := 100 * float64(unpacked-packed) / float64(unpacked)
		pct := fmt.Sprintf("%.1f%%", share)
		if share < 1 {
			// Two digits where they would round to 0.0% (a few rows
			// of a long data set packed).
			pct = fmt.Sprintf("%.2g%%", share)
		}
		return fmt.Sprintf("packing saves %s of the positions over the run's %s (%s packed, %s one sequence to a row)",
			pct, plural(o.Steps, "step"), commas(int64(packed)), commas(int64(unpacked)))
	case o.MicroBatch == 1:
		flag := "--micro-batch 1"
		if o.Batch == 1 {
			flag = "--batch 1"
		}
		return fmt.Sprintf("packing saves nothing: each micro-batch holds one sequence (%s), and packing shares rows among a micro-batch's sequences", flag)
	}
	lens := make([]int, len(seqs))
	for i, s := range seqs {
		lens[i] = len(s.Tokens)
	}
	slices.Sort(lens)
	if len(lens) >= 2 && lens[0]+lens[1] > o.PackLen {
		return fmt.Sprintf("packing saves nothing: no two rows fit in --max-len %d (the two shortest training sequences have %d and %d tokens)", o.PackLen, lens[0], lens[1])
	}
	return fmt.Sprintf("packing saves nothing: no micro-batch of the run's %s holds sequences that take fewer positions packed into rows of --max-len %d than one to a row", plural(o.Steps, "step"), o.PackLen)
}

// clipUsed is the gradient clip that run.json records: the norm clipped
// at, or 0 for none (Hugging Face's max_grad_norm 0), whichever of 0 and
// a negative --clip turned it off.
func clipUsed(o train.Options) float64 {
	if o.NoClip || o.ClipNorm < 0 {
		return 0
	}
	return o.ClipNorm
}

// selectionNote says ("" when there is nothing to say) when the run makes
// too few evaluations for --keep-best or --early-stopping to act: one
// every --eval-every steps before the last and one after it, of which
// early stopping needs more than its patience (the first sets the best).
func selectionNote(o train.Options) string {
	if (!o.KeepBest && o.EarlyStopping == 0) || o.EvalEvery <= 0 || o.Steps <= 0 {
		return ""
	}
	evals := (o.Steps-1)/o.EvalEvery + 1
	switch {
	case evals == 1 && o.KeepBest:
		return fmt.Sprintf("--eval-every %d is not below the run's %d steps: the only evaluation is the final one, so best/ will hold the final weights", o.EvalEvery, o.Steps)
	case o.EarlyStopping > 0 && evals <= o.EarlyStopping:
		return fmt.Sprintf("the run makes %s (every %d of its %d steps, and at the end), so --early-stopping %d can never stop it", plural(evals, "evaluation"), o.EvalEvery, o.Steps, o.EarlyStopping)
	}
	return ""
}

// plural returns n and noun, with an s unless n is 1: "1 step", "2 steps".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// unmatchedTargets warns ("" when there is nothing to say) of --target
// patterns that select none of the layers adapted, which the others
// selected: a misspelt name (v_prj) or a module this architecture lacks
// (c_attn) would otherwise be dropped without a word.
func unmatchedTargets(pm *peft.Model, patterns []string) string {
	var none []string
	for _, p := range patterns {
		if p == peft.AllLinear || p == peft.AllParameters {
			continue
		}
		found := false
		for _, l := range pm.Layers() {
			if ok, _ := peft.Match([]string{p}, l.Name()); ok {
				found = true
				break
			}
		}
		if !found {
			none = append(none, p)
		}
	}
	if len(none) == 0 || len(pm.Layers()) == 0 {
		return ""
	}
	return fmt.Sprintf("--target %s: %s matches no layer of this model, so it adapts nothing (the layers are named like %s)",
		strings.Join(patterns, ","), strings.Join(none, ", "), pm.Layers()[0].Name())
}

// rankNote warns ("" when there is nothing to say) of a low-rank update
// whose rank exceeds min(in, out) of adapted layers: B·A of such a layer
// has at most that rank, so the extra rank adds parameters that can add
// nothing (Hugging Face's PEFT takes such a rank too).
func rankNote(pm *peft.Model) string {
	c := pm.Config()
	if !c.Method.Spec().LowRank {
		return ""
	}
	var over []*peft.Layer
	smallest := math.MaxInt
	for _, l := range pm.Layers() {
		in, out := l.Dims()
		if min(in, out) < c.R {
			over = append(over, l)
		}
		smallest = min(smallest, in, out)
	}
	if len(over) == 0 {
		return ""
	}
	in, out := over[0].Dims()
	which := fmt.Sprintf("%d of the %d adapted layers", len(over), len(pm.Layers()))
	if len(over) == len(pm.Layers()) {
		which = fmt.Sprintf("every adapted layer (%d)", len(over))
	}
	return fmt.Sprintf("--rank %d is more than min(in, out) of %s, e.g. %s (%d in, %d out): the update B·A of such a layer has rank min(in, out) at most, so the rank above it adds trainable parameters but no update that rank %d could not make (the smallest adapted layer, %d wide, is served by --rank %d)",
		c.R, which, over[0].Name(), in, out, min(in, out), smallest, smallest)
}

// trainOptions returns the trainer's options of the flags, after
// WithDefaults, for trainSize training sequences of at most maxLen tokens
// (0: not known yet, for train.CheckResume: the steps of --epochs and
// their warm-up are left 0) on the base model described by baseModel.
func (f *finetuneFlags) trainOptions(trainSize, maxLen int, baseModel string) train.Options {
	o := train.Options{Steps: f.steps, Epochs: f.epochs, Batch: f.batch, MicroBatch: f.microBatch, LR: f.lr,
		Schedule: f.schedule, WeightDecay: f.weightDecay, Seed: f.seed, SaveEvery: f.saveEvery,
		EvalEvery: f.evalEvery, Out: f.out, Resume: f.resume, BaseModel: baseModel, NoSpectra: f.noSpectrum,
		GradientCheckpointing: f.gradientCheckpointing, GroupByLength: f.groupByLength, Packing: f.packing, TrainOnInputs: f.trainOnInputs,
		EvalSplit: f.holdout.String()}
	// --clip 0 is Hugging Face's max_grad_norm 0, no clipping; the
	// trainer's zero ClipNorm is its default instead.
	if f.clip > 0 {
		o.ClipNorm = f.clip
	} else {
		o.NoClip = true
	}
	if f.packing {
		o.PackLen = maxLen
	}
	if f.keepBest || f.earlyStopping > 0 {
		o.BestMetric, o.KeepBest, o.EarlyStopping, o.EarlyStoppingDelta = f.bestMetric, f.keepBest, f.earlyStopping, f.earlyStoppingDelta
	}
	o = o.WithDefaults(trainSize)
	if r := f.resumed; f.warmup < 0 && r != nil && o.Steps != 0 {
		// 5% of the steps the run was made for: a resume that changes
		// the number of steps keeps the warm-up its first steps did (5%
		// of a larger number would start another), and a --warmup the
		// run was made with is still asked for, as every setting.
		o.Warmup = min(r.MadeFor/20, o.Steps)
	} else if f.warmup < 0 {
		o.Warmup = o.Steps / 20
	} else {
		o.Warmup = min(f.warmup, o.Steps)
	}
	return o
}

// checkResume refuses, as the trainer would, a --resume with options o
// (train.CheckResume, the flags' number of steps and its warm-up where
// known) before the model loads, and a default warm-up that is not the
// run's first, saying where it came from.
func (f *finetuneFlags) checkResume(task train.Task, method peft.Method, o train.Options) error {
	r := f.resumed
	if f.warmup < 0 && r.Warmup >= 0 && o.Steps != 0 && o.Steps >= r.Step && o.Steps >= r.Warmup && o.Warmup != r.Warmup {
		// The trainer would name the two numbers; the second is no
		// flag the user gave.
		return fmt.Errorf("train: cannot resume from %s: it was made with warmup %d (now %d, 5%% of the %d steps it was made for, which --warmup -1 takes); give --warmup %d, as it was made",
			r.Dir, r.Warmup, o.Warmup, r.MadeFor, r.Warmup)
	}
	mopts, _ := baseDType(f.baseDType) // checked by f.check
	c := f.peftConfig(method)
	return train.CheckResume(train.ResumePlan{Task: task, Options: o, Adapter: &c, BaseDType: mopts.BaseDType})
}

// resumeLength refuses a --resume whose number of steps, o's, the
// defaults made (--epochs 1 of trainSize sequences) and differs from the
// run's: the trainer takes another number of steps as a resume that
// trains the run longer or shorter, which the user did not ask for. A
// positive --steps or an --epochs asks for it; --steps 0 is the flag's
// "use --epochs", the default.
func (f *finetuneFlags) resumeLength(o train.Options, trainSize int) error {
	r := f.resumed
	if o.Steps == r.TotalSteps || f.steps > 0 || f.set["epochs"] {
		return nil
	}
	made := fmt.Sprintf("was made for %d steps", r.TotalSteps)
	var how string
	switch {
	case r.StoppedEarly != nil:
		how = fmt.Sprintf("give --steps %d to resume it as it was made (early stopping ended it after step %d: it trains no more)", r.TotalSteps, r.StoppedEarly.Step)
	case r.Step < r.TotalSteps:
		how = fmt.Sprintf("give --steps %d to resume it as it was made, or another --steps, at least %d, to change its length", r.TotalSteps, max(r.Step, r.Warmup, 1))
	case r.ScheduleSteps != r.TotalSteps:
		made = fmt.Sprintf("ended at step %d, the step it had reached (it was made for %d)", r.Step, r.ScheduleSteps)
		how = fmt.Sprintf("give --steps %d to resume it as it is, or more to train it longer (%d takes its schedule on as it was)", r.TotalSteps, r.ScheduleSteps)
	default:
		how = fmt.Sprintf("give --steps %d to resume it as it was made (it has finished), or more to train it longer", r.TotalSteps)
	}
	return fmt.Errorf("--resume: the run in %s %s, and without --steps this run makes %d (--epochs %g of %d sequences in batches of %d): %s", f.out, made, o.Steps, o.Epochs, trainSize, o.Batch, how)
}

// peftConfig returns the method configuration of the flags.
func (f *finetuneFlags) peftConfig(method peft.Method) peft.Config {
	c := peft.Config{Method: method, R: f.rank, Alpha: f.alpha, RotationRank: f.rotationRank,
		TargetModules: splitList(f.target), Seed: f.seed, Dropout: f.dropout, ExactRotation: f.exactRotation, RSLoRA: f.rslora}
	if method == peft.LoRAPlus {
		c.LoRAPlusRatio = f.loraPlusRatio
	}
	if method == peft.OFT {
		c.Alpha, c.RotationRank = 0, 0
	}
	return c
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// runSummary is run.json: the flags of a run and what it achieved.
type runSummary struct {
	Command   string         `json:"command"`
	Model     string         `json:"model"`
	Data      string         `json:"data"`
	EvalData  string         `json:"eval_data,omitempty"`
	Task      string         `json:"task"`
	Method    string         `json:"method"`
	Config    map[string]any `json:"config"` // the flags that shaped the run; "lr": see LRHistory
	TrainRows int            `json:"train_sequences"`
	EvalRows  int            `json:"eval_sequences,omitempty"`
	// EvalSplit is what --eval-split held out of Data to evaluate on
	// (EvalData is then empty).
	EvalSplit *evalSplit `json:"eval_split,omitempty"`
	// EvalCut counts the evaluation sequences (LM) whose output --max-len
	// cut short: the loss and exact match score only the part that fits.
	EvalCut   int               `json:"eval_sequences_cut,omitempty"`
	Trainable int64             `json:"trainable_params"`
	Total     int64             `json:"total_params"`
	Base      int64             `json:"base_params"`
	Head      string            `json:"head,omitempty"` // the classification head the run continued, from beside the model
	Steps     int               `json:"steps"`
	ZeroShot  *train.EvalResult `json:"zero_shot,omitempty"`
	Final     *train.EvalResult `json:"final,omitempty"`
	Majority  *float64          `json:"majority_baseline_accuracy,omitempty"`
	// AnswerAccuracy is the accuracy of answers extracted from greedy
	// generations (LM tasks).
	AnswerAccuracy *float64 `json:"answer_accuracy,omitempty"`
	// AnswerNote says why there is no answer accuracy, or which rows it
	// leaves out.
	AnswerNote string `json:"answer_note,omitempty"`
	// StepMillis and TokensPerSec are the training steps' mean time and
	// throughput over the whole run, across resumes: over every device
	// the run trained on, which DeviceHistory tells apart.
	StepMillis   float64 `json:"ms_per_step"`
	TokensPerSec float64 `json:"tokens_per_s"`
	// Padding is the share of the positions the steps ran that were
	// padding (train.Result.Padding).
	Padding float64 `json:"padding"`
	// ResumedAfter is the step this invocation resumed after (0: it
	// started the run).
	ResumedAfter int `json:"resumed_after_step,omitempty"`
	// StepsHistory lists from which step on the learning-rate schedule
	// was computed for each number of steps (train.Result.StepsHistory)
	// when a --resume with another --steps changed it; absent when the
	// run kept one. Config's "steps" is the last.
	StepsHistory []train.StepsSpan `json:"steps_history,omitempty"`
	// LRHistory lists from which step on each peak learning rate trained
	// (train.Result.LRs) when a resume changed it, or when the run was
	// resumed from a checkpoint that did not record it; absent when one
	// rate trained every step. Config's "lr" is the rate of the last
	// steps: a --resume with another --lr changes it only once a step
	// trains with the new rate (a finished run trains none).
	LRHistory []train.LRSpan `json:"lr_history,omitempty"`
	// Best is the best evaluation during training by --best-metric
	// (with --keep-best or --early-stopping), and BestDir the folder
	// holding its weights (--keep-best).
	Best    *train.Best `json:"best,omitempty"`
	BestDir string      `json:"best_dir,omitempty"`
	// StoppedEarly says after which step and why --early-stopping ended
	// the run.
	StoppedEarly *train.EarlyStop `json:"stopped_early,omitempty"`
	// Device is the device this invocation ran on: of the last steps,
	// and of the final evaluation.
	Device string `json:"device"`
	// DeviceHistory lists from which step on the run trained on which
	// backend and device, with the mean time and throughput of those
	// steps (train.Result.Devices), when a --resume went on on another
	// (or resumed from a checkpoint that does not record its device);
	// absent when every step trained on Device.
	DeviceHistory []train.DeviceSpan `json:"device_history,omitempty"`
	// PeakMemoryBytes is the most bytes the backend's tensors held, and
	// PeakReservedBytes the most it held from the device with what it
	// keeps to reuse (a device pool's freed blocks, the CPU's scratch
	// between ops), during this
	// invocation: from the backend's opening (loading the model, the
	// zero-shot evaluation) to the end of the answer evaluation.
	// TrainPeakMemoryBytes and TrainPeakReservedBytes are the same over
	// the training steps alone, the evaluations between them left out.
	// DeviceMemoryBytes is the device's memory where the backend tells
	// it. All absent for a backend that keeps no peaks (see
	// backend.MemoryTracker), and in the run.json of earlier versions;
	// the training figures also where this invocation trained no step.
	// They count the backend's tensors, not the Go heap: see
	// docs/finetune.md.
	PeakMemoryBytes        int64  `json:"peak_memory_bytes,omitempty"`
	PeakReservedBytes      int64  `json:"peak_reserved_bytes,omitempty"`
	TrainPeakMemoryBytes   int64  `json:"train_peak_memory_bytes,omitempty"`
	TrainPeakReservedBytes int64  `json:"train_peak_reserved_bytes,omitempty"`
	DeviceMemoryBytes      int64  `json:"device_memory_bytes,omitempty"`
	Finished               string `json:"finished"`
}

// sample returns n rows of xs drawn without replacement with a seeded
// generator, in their original order, and the index in xs of each (all of
// them and a nil index when n is 0 or too big).
func sample[T any](xs []T, n int, seed uint64) ([]T, []int) {
	if n <= 0 || n >= len(xs) {
		return xs, nil
	}
	rng := rand.New(rand.NewPCG(seed, 0x5a3b1e))
	pick := rng.Perm(len(xs))[:n]
	keep := make([]bool, len(xs))
	for _, i := range pick {
		keep[i] = true
	}
	out := make([]T, 0, n)
	index := make([]int, 0, n)
	for i, x := range xs {
		if keep[i] {
			out = append(out, x)
			index = append(index, i)
		}
	}
	return out, index
}

// taskData is a data set ready for training or evaluation.
type taskData struct {
	path    string // the file, for error messages
	seqs    []data.Sequence
	stats   data.EncodeStats
	lm      *data.Set         // LM: the rows (for answers and prompts)
	chat    data.ChatRenderer // LM conversations: their chat template
	set     *data.ClassifySet // classification
	classes []string
	// index holds, for a --max-train/--max-eval subset, the 0-based row in
	// the file of each of rows (or set.Examples); nil when they are the
	// file's rows in order. Rows are reported as fileRow gives them.
	index []int
}

// fileRow returns the 1-based row in the file of the data set's row i
// (an index into rows or set.Examples, as a Sequence's Row is): the
// number to report, which with a subset is not i + 1.
func (td *taskData) fileRow(i int) int {
	if td.index == nil {
		return i + 1
	}
	return td.index[i] + 1
}

// loadTaskData reads and encodes a data file for task; chats gives
// conversations their chat template. With limit > 0 it keeps a random
// sample of limit rows, drawn with seed.
func loadTaskData(path string, task train.Task, tok data.Encoder, chats *chatSource, maxLen, limit int, seed uint64) (*taskData, error) {
	rows, _, err := readTaskRows(path, task, chats)
	if err != nil {
		return nil, err
	}
	return rows.encode(task, tok, maxLen, limit, seed)
}

// taskRows are rows of a data file for a task, read but not yet encoded:
// the whole file, or a part of it (an --eval-split's).
type taskRows struct {
	path string // the file, for error messages
	// part says which part of the file the rows are ("" for all of it),
	// for messages about the rows as a whole.
	part string
	lm   *data.Set         // LM
	chat data.ChatRenderer // LM conversations: their chat template
	set  *data.ClassifySet // classification
	// index holds the 0-based row in the file of each row; nil when
	// they are the file's rows in order.
	index []int
}

// readTaskRows reads the data file path for task, and returns its rows
// and the file's bytes.
func readTaskRows(path string, task train.Task, chats *chatSource) (*taskRows, []byte, error) {
	tr := &taskRows{path: path}
	if task == train.LM && strings.EqualFold(filepath.Ext(path), ".tsv") {
		return nil, nil, fmt.Errorf("%s is a TSV file; --task lm reads JSON or JSON Lines rows (use --task classify for CoLA)", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("data: %w", err)
	}
	if task == train.Classify {
		if tr.set, err = data.ParseClassification(b, path); err != nil {
			return nil, nil, err
		}
		return tr, b, nil
	}
	if tr.lm, err = data.Parse(b, path); err != nil {
		return nil, nil, err
	}
	if tr.lm.Format.Chat() {
		if tr.chat, err = chats.renderer(); err != nil {
			return nil, nil, fmt.Errorf("%s holds conversations (%s rows): %w", path, tr.lm.Format, err)
		}
	}
	return tr, b, nil
}

// len returns the number of rows.
func (tr *taskRows) len() int {
	if tr.set != nil {
		return len(tr.set.Examples)
	}
	return len(tr.lm.Rows)
}

// labels returns a classification data set's label of every row (nil for
// LM rows, which have none).
func (tr *taskRows) labels() []int {
	if tr.set == nil {
		return nil
	}
	return tr.set.Labels()
}

// subset returns the rows whose numbers (0-based, into tr's rows) keep
// lists, in that order, as the part of the file part names.
func (tr *taskRows) subset(keep []int, part string) *taskRows {
	out := &taskRows{path: tr.path, part: part, chat: tr.chat, index: make([]int, len(keep))}
	for j, i := range keep {
		out.index[j] = tr.fileIndex(i)
	}
	if tr.set != nil {
		ex := make([]data.Labeled, len(keep))
		for j, i := range keep {
			ex[j] = tr.set.Examples[i]
		}
		out.set = &data.ClassifySet{Examples: ex, Classes: tr.set.Classes}
		return out
	}
	rows := make([]data.Row, len(keep))
	for j, i := range keep {
		rows[j] = tr.lm.Rows[i]
	}
	out.lm = &data.Set{Name: tr.lm.Name, Format: tr.lm.Format, Rows: rows}
	return out
}

// fileIndex returns the 0-based row in the file of row i.
func (tr *taskRows) fileIndex(i int) int {
	if tr.index == nil {
		return i
	}
	return tr.index[i]
}

// encode encodes the rows for task (keeping, with limit > 0, a random
// sample of limit rows drawn with seed).
func (tr *taskRows) encode(task train.Task, tok data.Encoder, maxLen, limit int, seed uint64) (*taskData, error) {
	td := &taskData{path: tr.path, chat: tr.chat}
	var pick []int
	var err error
	if task == train.Classify {
		set := *tr.set
		set.Examples, pick = sample(set.Examples, limit, seed)
		td.set, td.classes = &set, set.Classes
		td.seqs, td.stats, err = data.EncodeClassify(tok, &set, maxLen)
		if err != nil {
			return nil, err
		}
	} else {
		set := *tr.lm
		set.Rows, pick = sample(set.Rows, limit, seed)
		td.lm = &set
		td.seqs, td.stats, err = set.Encode(tok, td.chat, maxLen)
		if errors.Is(err, chat.ErrNotPrefixStable) {
			return nil, fmt.Errorf("%w\n(the template renders earlier turns otherwise once later ones follow, as Qwen3's drops their thinking, so the assistant's turns cannot be found by rendering the conversation a message at a time: give with --chat-template a template that marks them with {%% generation %%}…{%% endgeneration %%} blocks, or train on one-turn conversations)", err)
		}
		if err != nil {
			return nil, err
		}
	}
	// The rows' numbers in the file: through the sample, then the part.
	switch {
	case pick == nil:
		td.index = tr.index
	default:
		td.index = make([]int, len(pick))
		for j, i := range pick {
			td.index[j] = tr.fileIndex(i)
		}
	}
	if len(td.seqs) == 0 {
		what := tr.path
		if tr.part != "" {
			what = tr.part
		}
		if td.stats.Dropped == 0 {
			return nil, fmt.Errorf("%s holds no rows", what)
		}
		return nil, fmt.Errorf("%s: no usable rows: in all %d the prompt alone fills --max-len %d", what, td.stats.Dropped, maxLen)
	}
	return td, nil
}

func (f *finetuneFlags) run(stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "sora finetune: "+format+"\n", args...)
		return exitFailure
	}
	task, _ := train.ParseTask(f.task)
	method, _ := peft.ParseMethod(f.method)
	if f.out == "" {
		f.out = filepath.Join("runs", fmt.Sprintf("%s-%s", method, task))
	}
	// The folder is this run's alone from its first look into it to the
	// writing of run.json: another run started at the same time, or a
	// --resume while one is writing, would pass the checks below and then
	// overwrite its checkpoints. The trainer works under the same lock.
	// Ctrl-C and SIGTERM are caught from before the lock is taken, so
	// that none leaves it held (see finetuneInterrupts).
	interrupts := catchInterrupts(stderr)
	defer interrupts.stop()
	lock, err := interrupts.lockOutput(f.out)
	if err != nil {
		return fail("%v", err)
	}
	defer lock.Unlock()
	if note := lock.Note(); note != "" {
		fmt.Fprintf(stderr, "sora finetune: note: %s\n", note)
	}
	// The trainer refuses a fresh run into a folder with checkpoints, and
	// --resume without one, but only after the model and data have loaded
	// and the zero-shot evaluation has run, which take a while on a real
	// model: say so at once.
	if _, err := train.CheckOutput(f.out, f.resume); err != nil {
		return fail("%v", err)
	}
	if f.resume {
		if f.resumed, err = train.ReadCheckpoint(f.out); err != nil {
			return fail("%v", err)
		}
		// A flag the checkpoint was not made with is refused now, not
		// after the model has loaded and the zero-shot evaluation has run
		// (minutes on a large model); the trainer checks the rest (the
		// data, the base model) once they are known.
		if err := f.checkResume(task, method, f.trainOptions(0, 0, "")); err != nil {
			return fail("%v", err)
		}
	}
	// The trainer clears what a kill during its own saves left; run.json
	// and the --eval-split rows are written here.
	for _, p := range staleRunJSON(f.out) {
		if os.Remove(p) == nil {
			target, _, _ := atomicfile.Temporary(filepath.Base(p))
			fmt.Fprintf(stdout, "removed %s, left by an interrupted write of %s\n", p, target)
		}
	}
	b, code := openBackend(f.backend, stderr)
	if b == nil {
		return code
	}
	defer b.Close()
	if f.packing {
		// Said before the model and data load, which take a while.
		if err := train.CheckPacking(b); err != nil {
			fmt.Fprintf(stderr, "sora finetune: --packing: %v\n", err)
			return exitUsage
		}
	}
	base, tok, err := openBaseAndTokenizer(f.model, f.tokenizer)
	if err != nil {
		return fail("%v", err)
	}
	defer base.close()
	cfg := base.config()
	maxLen := f.maxLen
	if maxLen > cfg.MaxSeqLen {
		fmt.Fprintf(stdout, "note: --max-len %d exceeds the model's %d positions; using %d\n", maxLen, cfg.MaxSeqLen, cfg.MaxSeqLen)
		maxLen = cfg.MaxSeqLen
	}
	tokSrc, err := tokenizerSource(f.model, f.tokenizer)
	if err != nil {
		return fail("%v", err)
	}
	chats := &chatSource{flags: &f.chat, tokSrc: tokSrc, addsBOS: tok.BOS() >= 0}
	var trainSet, evalSet *taskData
	var split *evalSplit
	evalName := f.evalData // the evaluation data, in messages
	if f.set["eval-split"] {
		var usage bool
		if trainSet, evalSet, split, usage, err = f.splitData(task, tok, chats, maxLen); usage {
			fmt.Fprintf(stderr, "sora finetune: %v\n", err)
			return exitUsage
		} else if err != nil {
			return fail("%v", err)
		}
		evalName = "the --eval-split rows of " + f.data
		fmt.Fprintln(stdout, split.describe(f))
	}
	// The held-out rows are on disk before training, beside the
	// checkpoints and best/ that a killed run leaves, not only at its end;
	// a resume writes the same rows again.
	if removed, err := writeEvalSplit(f.out, split, f.resume); err != nil {
		return fail("%v", err)
	} else if len(removed) > 0 {
		fmt.Fprintf(stdout, "removed %s, the held-out rows of an earlier run in %s\n", strings.Join(removed, ", "), f.out)
	}
	if split == nil {
		if trainSet, err = loadTaskData(f.data, task, tok, chats, maxLen, f.maxTrain, f.seed); err != nil {
			return fail("%v", err)
		}
		if f.evalData != "" {
			if evalSet, err = loadTaskData(f.evalData, task, tok, chats, maxLen, f.maxEval, f.seed+1); err != nil {
				return fail("%v", err)
			}
			if task == train.Classify && len(evalSet.classes) != len(trainSet.classes) {
				return fail("%s has %d classes, %s has %d", f.evalData, len(evalSet.classes), f.data, len(trainSet.classes))
			}
		}
	}
	describeData(stdout, "train", f.data, trainSet, task, maxLen, cfg.MaxSeqLen, f.trainOnInputs)
	if f.resumed != nil {
		// The number of steps of --epochs is known now: a resume that
		// cannot take it is refused before the model loads.
		o := f.trainOptions(len(trainSet.seqs), maxLen, "")
		if err := f.resumeLength(o, len(trainSet.seqs)); err != nil {
			return fail("%v", err)
		}
		if err := f.checkResume(task, method, o); err != nil {
			return fail("%v", err)
		}
	}
	scoreAnswers, answersNote := false, ""
	if evalSet != nil {
		describeData(stdout, "eval", evalName, evalSet, task, maxLen, cfg.MaxSeqLen, false)
		// Whether the answers generated after training can be scored is
		// decided now, not after training, where a refusal would lose
		// the run's report.
		if task == train.LM {
			scoreAnswers, answersNote = answerScoring(evalSet)
			if answersNote != "" {
				fmt.Fprintf(stdout, "note: %s: %s\n", evalName, answersNote)
			}
			if n := len(evalSet.seqs); scoreAnswers && evalSet.stats.Trained > n*f.maxNew {
				// The gold outputs are longer than what is generated:
				// reasoning that comes before the answer (math) is cut
				// before the answer.
				fmt.Fprintf(stdout, "note: %s: the outputs run to %.0f tokens on average (up to --max-len), and the answers after training are generated up to --max-new-tokens %d tokens: a generation cut before its answer scores as wrong; a larger --max-new-tokens scores them whole\n",
					evalName, float64(evalSet.stats.Trained)/float64(n), f.maxNew)
			}
		}
	}

	// A classifier that full fine-tuning wrote keeps its trained head
	// beside it, where "sora eval" finds it; training that model further,
	// fully or with an adapter on top, continues that head rather than
	// replacing it with a random one.
	head, oldHead := "", ""
	var headW []float32
	if p := findHead(f.model); p != "" && task == train.Classify {
		if f.newHead {
			oldHead = p
		} else {
			n, hw, err := readHead(p, cfg.Dim)
			if err != nil {
				return fail("%v", err)
			}
			if n != len(trainSet.classes) {
				fmt.Fprintf(stderr, "sora finetune: the classification head %s beside --model has %d classes, %s has %d; use data with %d classes to continue it, or --new-head to train a new head\n",
					p, n, f.data, len(trainSet.classes), n)
				return exitUsage
			}
			head, headW = p, hw
		}
	}

	mopts, _ := baseDType(f.baseDType) // checked by f.check
	// Running out of memory anywhere from here on is followed by what to
	// try (oomAdvice), from what the run's settings are.
	oomFacts := oomRun{backend: b.Name(), method: method, bf16: mopts.BaseDType == backend.BFloat16, batch: f.batch,
		microBatch: f.microBatch, checkpointing: f.gradientCheckpointing, packing: f.packing, groupByLength: f.groupByLength,
		maxLen: maxLen, out: f.out}
	if oomFacts.microBatch == 0 {
		oomFacts.microBatch = f.batch
	}
	for _, s := range trainSet.seqs {
		oomFacts.longest = max(oomFacts.longest, len(s.Tokens))
	}
	if evalSet != nil {
		for _, s := range evalSet.seqs {
			oomFacts.longestEval = max(oomFacts.longestEval, len(s.Tokens))
		}
	}
	advise := func(err error, phase oomPhase) {
		r := oomFacts
		r.canPack = train.CheckPacking(b) == nil
		_, cerr := train.LatestCheckpoint(f.out)
		r.resumable = cerr == nil
		if tr, ok := b.(backend.MemoryTracker); ok {
			u := tr.MemoryUsage()
			r.held, r.total = u.PeakReserved, u.DeviceTotal
		}
		if advice := oomAdvice(err, phase, r); advice != "" {
			fmt.Fprintf(stderr, "sora finetune: %s\n", advice)
		}
	}
	// A Hugging Face folder is read tensor by tensor as it is uploaded;
	// a llama2.c checkpoint's host weights go once uploaded. Nothing
	// needs them afterwards: full fine-tuning writes its trained weights
	// from the device (saveFullModel) and keeps the pretrained values it
	// needs itself (peft.Model.ForgetPretrained). Not holding the whole
	// model in float32 on the host keeps a large model's load within
	// what the model takes on the backend. (Built here, not by
	// openBaseModel, so that running out of memory is followed by the
	// advice.)
	m, err := base.newModel(b, mopts)
	if err != nil {
		fmt.Fprintf(stderr, "sora finetune: loading %s on %s: %v\n", base.path, b.Name(), err)
		advise(err, oomLoad)
		return exitFailure
	}
	defer m.Free()
	classes := 0
	if task == train.Classify {
		classes = len(trainSet.classes)
		if head != "" {
			err = setHead(m, classes, headW)
		} else {
			err = m.AddScoreHead(classes, f.seed)
		}
		if err != nil {
			fail("%v", err)
			advise(err, oomLoad)
			return exitFailure
		}
	}
	pm, err := peft.Inject(m, f.peftConfig(method))
	if err != nil {
		fail("%v", err)
		if errors.Is(err, peft.ErrNoTargetMatch) {
			// A misspelt --target is a usage error like any other
			// bad flag, not a failure of the run.
			return exitUsage
		}
		advise(err, oomLoad)
		return exitFailure
	}
	defer pm.Unload()
	if m.Score != nil { // Inject froze every module parameter; the new head trains
		for _, p := range llama.LayerParams(m.Score) {
			if err := p.SetTrainable(true); err != nil {
				return fail("%v", err)
			}
		}
	}
	// The model is freed, not unloaded, at the end: of the pretrained
	// values full fine-tuning keeps on the host only the layers' serve,
	// for the spectra of W − W0 (the embedding's would be a copy of up to
	// a fifth of the model), and without the spectra none do.
	pm.ForgetPretrainedOutsideLayers()
	if f.noSpectrum {
		pm.ForgetPretrained()
	}
	if c := pm.Config(); c.Method.Spec().LowRank {
		widest := 0
		for _, l := range pm.Layers() {
			in, out := l.Dims()
			widest = max(widest, min(in, out))
		}
		if c.R > widest {
			oomFacts.rankCap = widest
		}
	}
	count := pm.Report()
	stored := ""
	if m.BaseDType() == backend.BFloat16 {
		stored = ", linear layers' weights and embedding in bfloat16"
	}
	fmt.Fprintf(stdout, "model: %s (dim %d, %d layers, vocab %d%s) on %s\n", f.model, cfg.Dim, cfg.NumLayers, cfg.VocabSize, stored, deviceLine(m.Backend()))
	on := fmt.Sprintf("on %d layers (%s)", len(pm.Layers()), f.target)
	if c := pm.Config(); c.RSLoRA {
		on += fmt.Sprintf(", rsLoRA scale alpha/√r = %.4g", c.Scaling())
	}
	if count.AllParameters {
		on = fmt.Sprintf("of every parameter (embeddings, norms, heads, biases and %d linear layers; --target %s)", len(pm.Layers()), f.target)
	}
	fmt.Fprintf(stdout, "method: %s %s; trainable params: %s of %s (%.4f%%; %.4f%% of the base model's %s)\n", method, on,
		commas(count.Trainable), commas(count.Total), count.Percent(), count.PercentOfBase(), commas(count.Base))
	if note := rankNote(pm); note != "" {
		fmt.Fprintf(stderr, "sora finetune: warning: %s\n", note)
	}
	if note := unmatchedTargets(pm, splitList(f.target)); note != "" {
		fmt.Fprintf(stderr, "sora finetune: warning: %s\n", note)
	}
	switch {
	case head != "":
		fmt.Fprintf(stdout, "classification head: continued from %s (%d classes)\n", head, classes)
	case oldHead != "":
		fmt.Fprintf(stdout, "classification head: new (--new-head), not the one in %s\n", oldHead)
	}

	baseModel := fmt.Sprintf("llama dim %d, %d layers, %d heads (%d key/value), vocab %d, q/k rows %s",
		cfg.Dim, cfg.NumLayers, cfg.NumHeads, cfg.NumKVHeads, cfg.VocabSize, cfg.RopeLayout)
	if cfg.AttentionBias != llama.NoBias {
		// Appended, so that the record of a model without biases reads as
		// it did before biases existed and its checkpoints still resume.
		baseModel += fmt.Sprintf(", %s attention biases", cfg.AttentionBias)
	}
	opts := f.trainOptions(len(trainSet.seqs), maxLen, baseModel)
	if f.warmup > opts.Steps {
		fmt.Fprintf(stdout, "note: --warmup %d is more than the run's %d steps: the learning rate warms up over all of them and never reaches its peak %g\n", f.warmup, opts.Steps, opts.LR)
	}
	if note := batchNote(opts.Batch, len(trainSet.seqs)); note != "" {
		fmt.Fprintf(stdout, "note: %s\n", note)
	}
	if note := selectionNote(opts); note != "" {
		fmt.Fprintf(stdout, "note: %s\n", note)
	}
	// What only the data's size decides (an --epochs that makes more
	// steps than a run can count) is refused before the zero-shot
	// evaluation, which takes a while on a real model.
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(stderr, "sora finetune: %v\n", err)
		return exitUsage
	}
	summary := runSummary{Command: "sora finetune " + strings.Join(os.Args[min(2, len(os.Args)):], " "), Model: f.model, Data: f.data,
		EvalData: f.evalData, Task: task.String(), Method: string(method), TrainRows: len(trainSet.seqs),
		EvalSplit: split, Trainable: count.Trainable, Total: count.Total, Base: count.Base, Head: head, Device: m.Backend().Device(), Config: map[string]any{
			"rank": f.rank, "alpha": f.alpha, "rslora": f.rslora, "rotation_rank": f.rotationRank, "target": f.target, "lr": f.lr,
			"steps": opts.Steps, "batch": opts.Batch, "micro_batch": opts.MicroBatch, "max_len": maxLen,
			"warmup": opts.Warmup, "schedule": opts.Schedule, "weight_decay": f.weightDecay, "clip": clipUsed(opts), "seed": f.seed,
			"base_dtype": train.BaseDTypeName(m.BaseDType()), "group_by_length": f.groupByLength, "packing": f.packing, "train_on_inputs": f.trainOnInputs}}
	summary.Config["attention"] = attentionPath(m.Backend())
	if scoreAnswers {
		summary.Config["max_new_tokens"] = f.maxNew
	}
	if opts.KeepBest || opts.EarlyStopping > 0 {
		summary.Config["eval_every"] = opts.EvalEvery
		summary.Config["best_metric"] = f.bestMetric
		summary.Config["keep_best"] = opts.KeepBest
		summary.Config["early_stopping"] = opts.EarlyStopping
		summary.Config["early_stopping_delta"] = opts.EarlyStoppingDelta
	}
	if f.chat.file != "" {
		summary.Config["chat_template"] = f.chat.file
	}
	if len(f.chat.vars) > 0 {
		summary.Config["chat_vars"] = f.chat.vars
	}
	var evalSeqs []data.Sequence
	evalNote, evalNoteSuffix := "", "" // the caveat of every evaluation's numbers
	if evalSet != nil {
		evalSeqs = evalSet.seqs
		summary.EvalRows = len(evalSeqs)
		if task == train.LM {
			if summary.EvalCut = evalSet.cutRows(); summary.EvalCut > 0 {
				evalNote = cutNote(summary.EvalCut, len(evalSeqs), maxLen)
				evalNoteSuffix = "; " + evalNote
			}
		}
		// A resume reports the evaluation the run took before it began
		// (minutes on a large model), as its checkpoint records it.
		var zs *train.EvalResult
		if f.resumed != nil {
			var why string
			if zs, why = f.resumed.ZeroShot(evalSeqs); zs != nil {
				fmt.Fprintf(stdout, "before training (zero-shot, as the run recorded it when it began; not evaluated again): %s%s\n", describeEval(zs, task), evalNoteSuffix)
			} else {
				fmt.Fprintf(stdout, "note: evaluating zero-shot again: %s\n", why)
			}
		}
		if zs == nil {
			// Before training a signal ends the process (catchInterrupts).
			if zs, err = train.Evaluate(context.Background(), m, task, evalSeqs, opts.EvalBatch, classes); err != nil {
				fail("zero-shot evaluation: %v", err)
				advise(err, oomEval)
				return exitFailure
			}
			fmt.Fprintf(stdout, "before training (zero-shot): %s%s\n", describeEval(zs, task), evalNoteSuffix)
		}
		summary.ZeroShot = zs
		if task == train.Classify {
			_, acc, _ := data.Majority(evalSet.set.Labels())
			summary.Majority = &acc
		}
	}
	meta := adapter.Meta{BaseModel: f.model, TaskType: "CAUSAL_LM"}
	if task == train.Classify {
		meta.TaskType = "SEQ_CLS"
	}
	tr := &train.Trainer{Model: m, Adapter: pm, Task: task, Classes: classes, Train: trainSet.seqs, Eval: evalSeqs,
		ZeroShot: summary.ZeroShot, EvalNote: evalNote,
		Options: opts, Progress: newProgress(stdout, max(1, opts.Steps/20)), OutputLock: lock,
		SaveAdapter: func(dir string) error {
			if err := saveAdapter(dir, m, pm, meta, base, chats.templateText()); err != nil {
				return err
			}
			if task == train.Classify {
				// Beside the head, so that sora eval can refuse data
				// of other labels with as many classes.
				if err := writeHeadLabels(dir, trainSet.classes); err != nil {
					return err
				}
			}
			if method == peft.Full && base.hf {
				// A fully fine-tuned Hugging Face folder is a --model
				// of its own: its template's variables go with it.
				if err := chats.saveTemplate(filepath.Join(dir, "model")); err != nil {
					return err
				}
			}
			return chats.saveTemplate(dir)
		}}
	// The training phase begins before its line prints, so that a signal
	// sent on seeing the line stops the training, not the process.
	ctx, stop := interrupts.training("finishing the current step (or stopping the evaluation under way) and saving a checkpoint")
	fmt.Fprintf(stdout, "training: %s of %s (micro-batch %d), lr %g with %s and %s decay, into %s\n",
		plural(opts.Steps, "step"), plural(opts.Batch, "sequence"), opts.MicroBatch, opts.LR, plural(opts.Warmup, "warm-up step"), opts.Schedule, f.out)
	if opts.GradientCheckpointing {
		fmt.Fprintln(stdout, "gradient checkpointing: each layer's activations and the head's logits are recomputed in the backward pass")
	}
	if opts.Packing {
		fmt.Fprintf(stdout, "packing: each micro-batch's sequences share rows of up to %d tokens (--max-len), each attending only to itself\n", opts.PackLen)
		if note := packingNote(trainSet.seqs, opts); note != "" {
			fmt.Fprintf(stdout, "note: %s\n", note)
		}
	}
	res, err := tr.Run(ctx)
	// A signal in an evaluation stops Run as one in a step does (the
	// final evaluation's checkpoint and adapter are saved before it); one
	// after the last step and its evaluation stops nothing in Run but the
	// spectra, and skips the answer evaluation that follows.
	interrupted := stop() && err == nil
	// The spectra are written: the pretrained values full fine-tuning
	// kept are of no more use (and Unload, at the end, need not put them
	// back into a model about to be freed).
	pm.ForgetPretrained()
	var ie *train.InterruptedError
	var nf *train.NonFiniteError
	switch {
	case errors.As(err, &ie):
		fmt.Fprintf(stderr, "sora finetune: stopped after step %d; checkpoint in %s\nresume with the same flags and --resume\n", ie.Step, ie.Checkpoint)
		return exitInterrupted
	case errors.As(err, &nf) && nf.Checkpoint != "":
		// A fresh run into the folder is refused while it holds the
		// checkpoints, which may hold diverged weights: say how to start
		// afresh, not only how to resume.
		fail("%v", err)
		fmt.Fprintf(stderr, "to resume: the same flags with --resume and a lower --lr; to start afresh: another --out, or remove %s and run again\n", filepath.Join(f.out, train.CheckpointsDir))
		return exitFailure
	case err != nil:
		fail("%v", err)
		phase := oomTrain
		if ee := (*train.EvalError)(nil); errors.As(err, &ee) {
			phase = oomEval
		}
		advise(err, phase)
		return exitFailure
	}
	summary.Steps = res.Steps
	summary.Final = res.Eval
	summary.StepMillis = float64(res.StepTime.Microseconds()) / 1000
	summary.TokensPerSec = res.TokensPerSec
	summary.Padding = res.Padding
	summary.Finished = time.Now().UTC().Format(time.RFC3339)
	summary.ResumedAfter = res.StartStep
	// What the steps trained with, not what this command was given: a
	// resume of a finished run trains nothing with its --lr.
	if n := len(res.LRs); n > 0 {
		summary.Config["lr"] = res.LRs[n-1].LR
		if n > 1 || res.LRs[0].FromStep != 1 {
			summary.LRHistory = res.LRs
		}
	}
	if h := res.StepsHistory; len(h) > 1 || (len(h) == 1 && h[0].Steps != opts.Steps) {
		// Also where config.steps is not what the schedule was
		// computed for: a run that a resume ended at the step it had
		// reached trained on its longer schedule.
		summary.StepsHistory = res.StepsHistory
	}
	if d := res.Devices; len(d) > 1 || (len(d) == 1 && d[0].FromStep != 1) {
		summary.DeviceHistory = d
	}
	trained := fmt.Sprintf("trained %s (%.1f ms/step, %.0f tokens/s, %.1f%% of positions padding)", plural(res.Steps, "step"), summary.StepMillis, res.TokensPerSec, 100*res.Padding)
	// After a resume the trainer's figures cover the whole run, the steps
	// before it as metrics.jsonl records them.
	whole := fmt.Sprintf("(%.1f ms/step, %.0f tokens/s, %.1f%% of positions padding over all %s, as metrics.jsonl records them%s)",
		summary.StepMillis, res.TokensPerSec, 100*res.Padding, plural(res.Steps, "step"), byDevice(summary.DeviceHistory, res.Steps))
	switch {
	case res.StartStep > 0 && res.StartStep >= res.Steps && res.EarlyStop != nil && f.resumed != nil && f.resumed.StoppedEarly == nil:
		// The final evaluation of the shorter run had run out the
		// patience; the trainer said so as it resumed.
		trained = fmt.Sprintf("nothing left to train: early stopping ends the run after step %d of %d, where its final evaluation ran out the patience %s", res.Steps, opts.Steps, whole)
	case res.StartStep > 0 && res.StartStep >= res.Steps && res.EarlyStop != nil:
		trained = fmt.Sprintf("nothing left to train: early stopping had ended the run after step %d of %d %s", res.Steps, opts.Steps, whole)
	case res.StartStep > 0 && res.StartStep >= res.Steps && len(res.StepsHistory) > 0 && res.StepsHistory[len(res.StepsHistory)-1].Steps != res.Steps:
		made := res.StepsHistory[len(res.StepsHistory)-1].Steps
		trained = fmt.Sprintf("nothing left to train: the run ends at step %d, the step it had reached (it was made for %d: --steps %d takes it on) %s", res.Steps, made, made, whole)
	case res.StartStep > 0 && res.StartStep >= res.Steps:
		trained = fmt.Sprintf("nothing left to train: the run had finished its %s %s", plural(res.Steps, "step"), whole)
	case res.StartStep > 0:
		trained = fmt.Sprintf("trained steps %d to %d (resumed after step %d) %s", res.StartStep+1, res.Steps, res.StartStep, whole)
	}
	fmt.Fprintf(stdout, "%s; final training loss %.4f\n", trained, res.Loss)
	if res.Eval != nil {
		fmt.Fprintf(stdout, "after training: %s%s\n", describeEval(res.Eval, task), evalNoteSuffix)
		if summary.ZeroShot != nil {
			fmt.Fprintf(stdout, "held-out loss: %.4f zero-shot → %.4f fine-tuned\n", summary.ZeroShot.Loss, res.Eval.Loss)
		}
		if summary.Majority != nil {
			fmt.Fprintf(stdout, "majority-class baseline accuracy: %.4f\n", *summary.Majority)
		}
	}
	if res.EarlyStop != nil {
		summary.StoppedEarly = res.EarlyStop
		if res.StartStep < res.EarlyStop.Step {
			// The trainer said why as it stopped, a few lines above.
			fmt.Fprintf(stdout, "stopped early after step %d of %d (early stopping)\n", res.EarlyStop.Step, opts.Steps)
		} else {
			fmt.Fprintf(stdout, "stopped early after step %d of %d: %s\n", res.EarlyStop.Step, opts.Steps, res.EarlyStop.Reason)
		}
	}
	if res.Best != nil {
		summary.Best, summary.BestDir = res.Best, res.BestDir
		fmt.Fprintf(stdout, "best evaluation: %s\n", describeBest(res.Best, res.BestDir, opts.KeepBest, summary.ZeroShot))
	}
	status := exitOK
	summary.AnswerNote = answersNote
	// notScored reports answers left unscored by a signal, and returns the
	// run's status.
	notScored := func(when string) int {
		fmt.Fprintf(stderr, "sora finetune: %s: the answers are not scored (sora eval scores them)\n", when)
		summary.AnswerNote = "interrupted before the answers were scored"
		return exitInterrupted
	}
	switch {
	case scoreAnswers && interrupted:
		status = notScored("interrupted after the last step")
	case scoreAnswers:
		actx, astop := interrupts.training("skipping the rest of the answer evaluation and writing run.json")
		rep, err := evalAfterTraining(actx, m, tok, task, evalSet, opts.EvalBatch, f.maxNew, stdout)
		if astop() {
			status = notScored("interrupted")
			break
		}
		if err != nil {
			// The run itself is done: its report is still written.
			fmt.Fprintf(stderr, "sora finetune: evaluating answers: %v (run.json has no answer accuracy)\n", err)
			advise(err, oomAnswers)
			summary.AnswerNote = "evaluating answers failed: " + err.Error()
			status = exitFailure
			break
		}
		over := ""
		if rep.AnswerRows < rep.Rows {
			over = fmt.Sprintf(" over the %d rows with an answer", rep.AnswerRows)
		}
		how := fmt.Sprintf("%s answers extracted as LLM-Adapters does", rep.AnswerKind)
		if rep.AnswerKind == data.Text.String() {
			how = "text answers compared whole, ignoring case"
		}
		fmt.Fprintf(stdout, "answer accuracy (greedy generation, %s)%s: %.4f; majority baseline (always %q) %.4f; no answer in %d of %d\n",
			how, over, rep.Accuracy, rep.MajorityAnswer, rep.Majority, rep.NoAnswer, rep.AnswerRows)
		summary.AnswerAccuracy, summary.Majority = &rep.Accuracy, &rep.Majority
	case evalSet != nil && task == train.LM:
		fmt.Fprintf(stdout, "no answer accuracy: %s\n", answersNote)
	}
	files := written(res, savedWhat(method, task, f.model), summary.Best)
	if split != nil {
		// Written before training (writeEvalSplit); named beside run.json.
		files = slices.Insert(files, len(files)-1, filepath.Base(split.File))
	}
	if line := summary.noteMemory(res.Memory, m.Backend()); line != "" {
		fmt.Fprintln(stdout, line)
	}
	if err := writeJSON(filepath.Join(f.out, "run.json"), summary); err != nil {
		return fail("%v", err)
	}
	fmt.Fprintf(stdout, "wrote %s: %s\n", f.out, strings.Join(files, ", "))
	return status
}

// noteMemory records in s the peaks of run (the trainer's, to the end of
// its final evaluation) taken together with what b held since (the
// answer evaluation), and returns the summary's line about them: ""
// where the backend keeps no peaks.
func (s *runSummary) noteMemory(run *train.Memory, b backend.Backend) string {
	tr, ok := b.(backend.MemoryTracker)
	if run == nil || !ok {
		return ""
	}
	// Run's last phase reset the backend's peaks; they cover what
	// followed.
	u := tr.MemoryUsage()
	s.PeakMemoryBytes, s.PeakReservedBytes = max(run.PeakInUse, u.PeakInUse), max(run.PeakReserved, u.PeakReserved)
	s.TrainPeakMemoryBytes, s.TrainPeakReservedBytes = run.TrainPeakInUse, run.TrainPeakReserved
	s.DeviceMemoryBytes = max(run.DeviceTotal, u.DeviceTotal)
	return memoryLine(run.Backend, s.PeakMemoryBytes, s.PeakReservedBytes, s.TrainPeakMemoryBytes, s.TrainPeakReservedBytes, s.DeviceMemoryBytes)
}

// memoryLine says how much memory a run took on backend name: "peak
// memory on cuda: 3.2 GiB held by tensors, 3.6 GiB reserved, of the
// device's 139.8 GiB (training steps: ...)". Reserved is said only where
// it differs from in use (a device pool's cache, the CPU's scratch), the
// training steps only where some trained, and on the CPU what the figure
// leaves out.
func memoryLine(name string, inUse, reserved, trainInUse, trainReserved, total int64) string {
	pair := func(in, res int64) string {
		if res == in {
			return hostmem.FormatSize(in)
		}
		return fmt.Sprintf("%s, %s reserved", hostmem.FormatSize(in), hostmem.FormatSize(res))
	}
	line := fmt.Sprintf("peak memory on %s: %s held by tensors", name, hostmem.FormatSize(inUse))
	if reserved != inUse {
		line += fmt.Sprintf(", %s reserved", hostmem.FormatSize(reserved))
	}
	if total > 0 {
		line += fmt.Sprintf(", of the device's %s", hostmem.FormatSize(total))
	}
	if trainInUse > 0 {
		line += fmt.Sprintf(" (training steps: %s)", pair(trainInUse, trainReserved))
	}
	if name == "cpu" {
		line += "; the Go heap beside them (the tokenizer, the data, the model file while it loads) is not counted"
	}
	return line
}

// byDevice says, for the line that ends a resumed run, how fast the steps
// trained on each backend and device where they trained on more than one
// (spans, run.json's device_history, of a run of steps steps): the mean
// over all of them mixes the devices. "" when there is nothing to say.
func byDevice(spans []train.DeviceSpan, steps int) string {
	if len(spans) < 2 {
		return ""
	}
	parts := make([]string, len(spans))
	for i, sp := range spans {
		end := steps
		if i+1 < len(spans) {
			end = spans[i+1].FromStep - 1
		}
		which := fmt.Sprintf("steps %d to %d", sp.FromStep, end)
		if sp.FromStep == end {
			which = fmt.Sprintf("step %d", end)
		}
		on := sp.Backend
		if slices.ContainsFunc(spans, func(o train.DeviceSpan) bool { return o.Backend == sp.Backend && o.Device != sp.Device }) {
			// Two devices of one backend: named by the device too.
			on += " (" + sp.Device + ")"
		}
		parts[i] = fmt.Sprintf("%s on %s, %.1f ms/step", which, on, sp.StepMillis)
	}
	return "; by device: " + strings.Join(parts, ", ")
}

// evalSplitName is the name, without its extension, of the file in the
// output folder that holds the rows --eval-split held out.
const evalSplitName = "eval-split"

// evalSplit is what --eval-split held out of --data: run.json's
// eval_split.
type evalSplit struct {
	// Split is --eval-split as data.Holdout writes it: a fraction of the
	// rows ("0.05") or a number of rows ("200").
	Split string `json:"split"`
	// Rows is the number of rows held out, and TrainRows the number left
	// to train on; --max-eval and --max-train sample from them, and
	// --max-len may leave some out (eval_sequences and train_sequences
	// count what the run used).
	Rows      int `json:"rows"`
	TrainRows int `json:"train_rows"`
	// Stratified says whether each label was held out in proportion
	// (--task classify).
	Stratified bool `json:"stratified_by_label"`
	// File holds the rows held out, in --data's layout, each as it was
	// written there, in the order of the file.
	File string `json:"file"`

	content []byte // File's
}

// splitData reads --data, holds out --eval-split of its rows at random
// (seeded by --seed, stratified by label for classification) and encodes
// both parts, sampling --max-train and --max-eval rows from them as from
// --data and --eval-data. usage reports an --eval-split that the data
// cannot be split by.
func (f *finetuneFlags) splitData(task train.Task, tok data.Encoder, chats *chatSource, maxLen int) (trainSet, evalSet *taskData, split *evalSplit, usage bool, err error) {
	rows, b, err := readTaskRows(f.data, task, chats)
	if err != nil {
		return nil, nil, nil, false, err
	}
	n := rows.len()
	k, err := f.holdout.Size(n)
	if err != nil {
		return nil, nil, nil, true, fmt.Errorf("--eval-split %s: %s: %v", f.evalSplit, f.data, err)
	}
	labels := rows.labels()
	trainIdx, heldIdx, err := data.Split(n, k, f.seed, labels)
	if err != nil {
		return nil, nil, nil, false, err
	}
	raw, err := data.ReadRows(b, f.data)
	if err != nil {
		return nil, nil, nil, false, err
	}
	if len(raw.Rows) != n {
		// The readers and ReadRows count rows alike (FuzzReadRows).
		return nil, nil, nil, false, fmt.Errorf("%s: %d rows read, but %d rows as written: cannot write the held-out rows", f.data, n, len(raw.Rows))
	}
	content, err := raw.Subset(heldIdx)
	if err != nil {
		return nil, nil, nil, false, err
	}
	split = &evalSplit{Split: f.holdout.String(), Rows: k, TrainRows: n - k, Stratified: labels != nil,
		File: filepath.Join(f.out, evalSplitName+raw.Layout.Ext()), content: content}
	trainPart := rows.subset(trainIdx, fmt.Sprintf("the %d rows of %s left to train on by --eval-split %s", n-k, f.data, f.evalSplit))
	heldPart := rows.subset(heldIdx, fmt.Sprintf("the %d rows of %s held out by --eval-split %s", k, f.data, f.evalSplit))
	if trainSet, err = trainPart.encode(task, tok, maxLen, f.maxTrain, f.seed); err != nil {
		return nil, nil, nil, false, err
	}
	if evalSet, err = heldPart.encode(task, tok, maxLen, f.maxEval, f.seed+1); err != nil {
		return nil, nil, nil, false, err
	}
	return trainSet, evalSet, split, false, nil
}

// writeEvalSplit writes the rows split held out into out (split.File),
// atomically, and for a fresh run (not resume) removes the files of held-out
// rows that an earlier run in out wrote in another layout (eval-split.json,
// .jsonl or .tsv), or in any layout where this run holds out nothing
// (split nil): they are not this run's evaluation data. It returns the
// names it removed. (A resume keeps the split its checkpoint records.)
func writeEvalSplit(out string, split *evalSplit, resume bool) (removed []string, err error) {
	if split != nil {
		if err := atomicfile.WriteFile(split.File, split.content); err != nil {
			return nil, err
		}
	}
	if resume {
		return nil, nil
	}
	for _, l := range []data.Layout{data.JSONList, data.JSONLines, data.TSV} {
		path := filepath.Join(out, evalSplitName+l.Ext())
		if split != nil && path == split.File {
			continue
		}
		if err := os.Remove(path); err == nil {
			removed = append(removed, filepath.Base(path))
		} else if !errors.Is(err, os.ErrNotExist) {
			return removed, fmt.Errorf("removing the held-out rows of an earlier run: %w", err)
		}
	}
	return removed, nil
}

// describe says what the split held out, for the run's output.
func (s *evalSplit) describe(f *finetuneFlags) string {
	how := fmt.Sprintf("at random (--seed %d)", f.seed)
	if s.Stratified {
		how = fmt.Sprintf("at random (--seed %d), each label in proportion", f.seed)
	}
	msg := fmt.Sprintf("eval split: %d of the %d rows of %s held out %s by --eval-split %s, never trained on; %d left to train on. "+
		"They are written to %s now, before training, for \"sora eval --data %s\"", s.Rows, s.Rows+s.TrainRows, f.data, how, f.evalSplit, s.TrainRows, s.File, s.File)
	if f.maxEval > 0 && f.maxEval < s.Rows {
		msg += fmt.Sprintf(" (with --max-eval %d: the run evaluates %d of them, the ones \"sora eval --max-eval %d\" draws)", f.maxEval, f.maxEval, f.maxEval)
	}
	return msg
}

// answerScoring decides, when the evaluation data of an LM run loads,
// whether the answers generated after training can be scored against the
// rows' gold answers, and returns a note for the user ("" when every row
// can be): not when no row has an answer (a blank "answer" counts as
// none, see answered) or when the answers are of no kind
// data.NewExtractor can extract. Rows without one leave the accuracy to
// the others (as "sora eval" does; see answerNote), and the note is
// printed once, here.
func answerScoring(set *taskData) (score bool, note string) {
	if !set.lm.Format.Generates() {
		return false, fmt.Sprintf("%v: the answers are not scored after training (the held-out loss is)", data.ErrNoGeneration)
	}
	_, golds, _ := answered(set)
	if len(golds) == 0 {
		return false, fmt.Sprintf("no row has an %s: the answers are not scored after training (the held-out loss is)", goldName(set.lm.Format))
	}
	if _, err := data.NewExtractor(golds); err != nil {
		return false, fmt.Sprintf("the answers are not scored after training (the held-out loss is): %v", err)
	}
	return true, answerNote(set, train.LM)
}

// written lists what a run that ended with res wrote into its output
// folder, for its last line: the adapter (as savedWhat names it), best/
// (of best, with --keep-best), the checkpoints, the metrics log, the plots
// the trainer drew (the spectra are not drawn with --no-spectrum, nor
// when a signal arrived during the last step) and run.json.
func written(res *train.Result, adapter string, best *train.Best) []string {
	out := []string{adapter}
	if res.BestDir != "" && best != nil {
		out = append(out, fmt.Sprintf("best/ (step %d, %s %.4f)", best.Step, best.Metric, best.Value))
	}
	out = append(out, "checkpoints/", train.MetricsFile)
	if res.LossPlot {
		out = append(out, train.LossPlot)
	}
	if res.Spectra {
		out = append(out, train.SpectrumPlot, train.SpectrumJSON)
	}
	return append(out, "run.json")
}

// savedWhat names what the run left in adapter/: an adapter for every
// method but full fine-tuning, which saves the whole model there in the
// base model's format (see saveFullModel), to be used with --model, and a
// classifier's score head beside it in headFile, which "sora eval --model"
// finds there.
func savedWhat(method peft.Method, task train.Task, modelPath string) string {
	if method != peft.Full {
		return "adapter/"
	}
	p := "adapter/model.bin"
	if st, err := os.Stat(modelPath); err == nil && st.IsDir() {
		p = "adapter/model/"
	}
	s := p + " (the whole fine-tuned model, for --model: full fine-tuning makes no adapter"
	if task == train.Classify {
		s += "; its classification head is beside it in adapter/" + headFile + ", where \"sora eval --model\" finds it"
	}
	return s + ")"
}

// describeData writes the line that describes a data set; whole says
// that training trains every token (--train-on-inputs), whatever the
// encoding marked.
func describeData(w io.Writer, what, path string, td *taskData, task train.Task, maxLen, modelLen int, whole bool) {
	msg := fmt.Sprintf("%s data: %s, %d sequences, %d tokens", what, path, len(td.seqs), td.stats.Tokens)
	if task == train.Classify {
		counts := make([]int, len(td.classes))
		for _, s := range td.seqs {
			counts[s.Label]++
		}
		var parts []string
		for i, c := range td.classes {
			parts = append(parts, fmt.Sprintf("%s %d", c, counts[i]))
		}
		msg += " (" + strings.Join(parts, ", ") + ")"
	} else {
		if whole {
			// Every token but each sequence's first.
			msg += fmt.Sprintf(" (%s rows), %d trained tokens (prompts included: --train-on-inputs)", td.lm.Format, td.stats.Tokens-len(td.seqs))
		} else {
			msg += fmt.Sprintf(" (%s rows), %d trained tokens", td.lm.Format, td.stats.Trained)
		}
		if td.stats.Split > 0 {
			msg += fmt.Sprintf("; in %d a token spans the edge of the trained text (it is trained)", td.stats.Split)
		}
	}
	if note := td.lengthNote(maxLen, modelLen); note != "" {
		msg += "; " + note
	}
	fmt.Fprintln(w, msg)
}

// cutRows returns the number of the data set's sequences that were cut
// short to fit --max-len, losing the end of what they train (an LM row's
// output and EOS); rows left out whole are not among them.
func (td *taskData) cutRows() int {
	// Encoding counts a left-out row as cut too (see lengthNote).
	return td.stats.Truncated - td.stats.Dropped
}

// cutNote is the caveat of an LM evaluation of n sequences, cut of which
// --max-len maxLen cut short: their loss and exact match cover only the
// beginning of the output, which may leave out the answer itself, and so
// can look far better than the answers are.
func cutNote(cut, n, maxLen int) string {
	which := fmt.Sprintf("%d of %d rows", cut, n)
	if cut == n {
		which = fmt.Sprintf("all %d rows", n)
	}
	return fmt.Sprintf("%s cut at --max-len %d: loss and exact match score only the part of their outputs that fits, perhaps not the answer", which, maxLen)
}

// lengthNote says what fitting the rows into maxLen tokens cost ("" when
// nothing): how many were cut short, and how many were left out because
// their prompt alone fills maxLen. Left-out rows are easy to miss (a
// --max-eval 20 that scores 1 row), so when the model takes longer
// sequences than maxLen the note names the --max-len that keeps more.
func (td *taskData) lengthNote(maxLen, modelLen int) string {
	// Encoding counts a left-out row as cut too; report the two apart.
	cut, dropped := td.stats.Truncated-td.stats.Dropped, td.stats.Dropped
	var parts []string
	if cut > 0 {
		parts = append(parts, fmt.Sprintf("%d cut to --max-len %d", cut, maxLen))
	}
	if dropped > 0 {
		rows := len(td.seqs) + dropped
		parts = append(parts, fmt.Sprintf("%d of %d rows left out (prompt alone fills --max-len %d)", dropped, rows, maxLen))
	}
	if len(parts) > 0 && maxLen < modelLen {
		parts = append(parts, fmt.Sprintf("the model takes up to %d positions: --max-len %d keeps more", modelLen, modelLen))
	}
	return strings.Join(parts, "; ")
}

// describeBest says which evaluation during training was the best, where
// its weights are (dir, with keepBest) and how to use them, and whether
// it beat the zero-shot evaluation, which is no candidate (see
// train.Options.BestMetric).
func describeBest(b *train.Best, dir string, keepBest bool, zeroShot *train.EvalResult) string {
	s := fmt.Sprintf("%s %.4f at step %d", b.Metric, b.Value, b.Step)
	switch {
	case dir != "" && fullModel(dir) != "":
		s += fmt.Sprintf("; the whole model at that step is in %s (sora eval --model %s)", dir, fullModel(dir))
	case dir != "":
		s += fmt.Sprintf("; its adapter is in %s (sora eval --adapter %s)", dir, dir)
	case keepBest:
		s += "; best/ does not hold its weights (see the warning above)"
	}
	if m, err := train.ParseMetric(b.Metric); err == nil && zeroShot != nil {
		z, err := m.Value(zeroShot)
		switch {
		case err != nil:
		case math.IsNaN(z):
			// No value to compare with: a NaN beats nothing and is beaten
			// by nothing.
			s += fmt.Sprintf("; the zero-shot %s was NaN, so there is nothing to compare it with", b.Metric)
		case (z >= b.Value) == m.HigherIsBetter() || z == b.Value:
			s += fmt.Sprintf("; no evaluation during training beat the zero-shot %s %.4f", b.Metric, z)
		}
	}
	return s
}

func describeEval(e *train.EvalResult, task train.Task) string {
	if task == train.Classify {
		return fmt.Sprintf("loss %.4f, accuracy %.4f, MCC %.4f (%d sequences)", e.Loss, e.Accuracy, *e.MCC, e.Sequences)
	}
	return fmt.Sprintf("loss %.4f per answer token; whole output predicted exactly in %.4f (%d sequences)", e.Loss, e.Accuracy, e.Sequences)
}

// newProgress returns a progress bar when w is a terminal, log lines
// otherwise.
func newProgress(w io.Writer, every int) train.Progress {
	if f, ok := w.(*os.File); ok {
		return train.NewProgress(f, every)
	}
	return train.NewLog(w, every)
}

// saveAdapter writes the trained adapter into dir: the Hugging Face PEFT
// files for the adapter methods, a classifier's score head inside them as
// PEFT stores it (modules_to_save ["score"], tensor
// base_model.model.score.weight), and for full fine-tuning the whole model
// with the trained weights in the base model's own format, with a
// classifier's head beside it in headFile, since that format has no room
// for it. chatTemplate, where not nil, is the chat template the data was
// rendered with, which a fully fine-tuned Hugging Face folder holds in
// place of its base's: eval and generate read it from there.
func saveAdapter(dir string, m *llama.Model, pm *peft.Model, meta adapter.Meta, base *baseModel, chatTemplate []byte) error {
	if pm.Config().Method == peft.Full {
		if err := saveFullModel(dir, m, base, chatTemplate); err != nil {
			return err
		}
		if m.Score != nil {
			return saveHead(filepath.Join(dir, headFile), m)
		}
		return nil
	}
	if m.Score != nil {
		meta.ModulesToSave = []string{llama.ScoreModule}
	}
	return adapter.Save(dir, pm, meta)
}

// staleRunJSON returns the temporaries of run.json, and of the rows
// --eval-split held out (eval-split.json, .jsonl or .tsv), in out that a
// process killed while writing them left behind: regular files that
// atomicfile.Temporary knows as its temporaries of those files.
func staleRunJSON(out string) []string {
	ents, err := os.ReadDir(out)
	if err != nil {
		return nil
	}
	var stale []string
	for _, e := range ents {
		target, old, ok := atomicfile.Temporary(e.Name())
		ours := target == "run.json" || strings.TrimSuffix(target, filepath.Ext(target)) == evalSplitName
		if ok && ours && !old && e.Type().IsRegular() {
			stale = append(stale, filepath.Join(out, e.Name()))
		}
	}
	return stale
}

// writeJSON writes v as indented JSON to path through a temporary file
// renamed into place, creating path's folder if needed
// (atomicfile.WriteJSON). Its errors name path.
func writeJSON(path string, v any) error {
	return atomicfile.WriteJSON(path, v)
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// checkDemo validates the numbers the demonstration takes, naming the
// first flag out of range with its value. Given, they must be positive
// (and finite: the flag package parses NaN and +Inf), as in a real run,
// except --steps, whose 0 keeps the demonstration's own number of steps,
// as the flag's usage says.
func (f *finetuneFlags) checkDemo() error {
	switch {
	case f.set["rank"] && f.rank < 1:
		return fmt.Errorf("--rank %d: want at least 1", f.rank)
	case f.set["alpha"] && !positive(f.alpha):
		return fmt.Errorf("--alpha %g: want a finite positive number", f.alpha)
	case f.set["rotation-rank"] && f.rotationRank < 1:
		return fmt.Errorf("--rotation-rank %d: want at least 1", f.rotationRank)
	case f.set["lr"] && !positive(f.lr):
		return fmt.Errorf("--lr %g: want a finite positive learning rate", f.lr)
	case f.steps < 0:
		return fmt.Errorf("--steps %d: want 0 (the demonstration's %d fine-tuning steps per run) or a positive number", f.steps, demo.DefaultFinetuneSteps)
	case f.pretrainSteps < 1:
		return fmt.Errorf("--pretrain-steps %d: want at least 1", f.pretrainSteps)
	case f.repeats < 1:
		return fmt.Errorf("--repeats %d: want at least 1", f.repeats)
	}
	return nil
}

// batchNote says when a batch of batch sequences is larger than the rows
// trained on: the batches then hold rows more than once each step, at
// batch/rows times the compute of a batch of the rows, which --batch's
// default of 16 does with a small file unnoticed; "" otherwise.
func batchNote(batch, rows int) string {
	if rows <= 0 || batch <= rows {
		return ""
	}
	return fmt.Sprintf("--batch %d is more than the %d rows trained on: each step's batch holds some rows more than once (--batch %d takes every row once a step, for %d/%d of the compute)",
		batch, rows, rows, rows, batch)
}

// runDemo runs the built-in demonstration.
func runDemo(f *finetuneFlags, stdout, stderr io.Writer) int {
	o := demo.Options{Seed: f.seed, Log: stdout}
	if !f.set["seed"] {
		o.Seed = 1
	}
	if f.set["method"] {
		for _, s := range splitList(f.method) {
			m, err := peft.ParseMethod(s)
			if err != nil {
				fmt.Fprintf(stderr, "sora finetune: --method: %v\n", err)
				return exitUsage
			}
			o.Methods = append(o.Methods, m)
		}
	}
	if f.set["rank"] {
		o.Rank = f.rank
	}
	if f.set["alpha"] {
		o.Alpha = f.alpha
	}
	if f.set["rotation-rank"] {
		o.RotationRank = f.rotationRank
	}
	if f.set["lr"] {
		o.FinetuneLR = f.lr
	}
	if f.set["steps"] {
		o.FinetuneSteps = f.steps
	}
	o.PretrainSteps, o.Repeats = f.pretrainSteps, f.repeats
	if err := f.checkDemo(); err != nil {
		fmt.Fprintf(stderr, "sora finetune: %v\n", err)
		return exitUsage
	}
	o.Progress = func(stage string) train.Progress {
		if fl, ok := stdout.(*os.File); ok {
			return train.NewProgress(fl, 1<<30) // a bar on a terminal; otherwise the stage lines suffice
		}
		return nil
	}
	b, code := openBackend(f.backend, stderr)
	if b == nil {
		return code
	}
	defer b.Close()
	fmt.Fprintln(stdout, "sora finetune: the built-in demonstration (no --model given; \"sora finetune --help\" shows how to train on your data)")
	ctx, stop := interruptible(stderr, "stopping")
	defer stop()
	rep, err := demo.Run(ctx, b, o)
	if err != nil {
		fmt.Fprintf(stderr, "sora finetune: %v\n", err)
		if ctx.Err() != nil {
			return exitInterrupted
		}
		return exitFailure
	}
	rep.WriteTable(stdout)
	if f.out != "" {
		if err := writeJSON(filepath.Join(f.out, "demo.json"), rep); err != nil {
			fmt.Fprintf(stderr, "sora finetune: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(f.out, "demo.json"))
	}
	return exitOK
}

// finetuneInterrupts is sora finetune's handling of Ctrl-C (SIGINT) and
// SIGTERM, from before it takes its output folder until it ends. While it
// trains, the first signal stops the training at the end of a step, with a
// checkpoint (the context given to training is cancelled). Any other
// signal, before or after training or a second one while training, ends
// the process at once, as it would end without the handling, but releases
// the folder first: where the lock does not end with the process
// (train.LockOutput), a run killed holding it would keep every later run
// out.
type finetuneInterrupts struct {
	stderr  io.Writer
	signals chan os.Signal
	done    chan struct{}

	// mu is held while the process ends, so that the run cannot go on
	// with its folder released.
	mu sync.Mutex
	// lock is released before the process ends, until training starts:
	// from then on the process may be writing into the folder when a
	// signal ends it, so lock is nil and the lock is left for the system
	// to release with the process (flock and LockFileEx end with it)
	// rather than released first, which would let another run in while
	// files are half written. Where the folder is held by its lock file
	// alone, that file then stays, and the next run says to remove it.
	lock    *train.OutputLock
	cancel  context.CancelFunc // while training, until the first signal
	next    string             // what the first signal in training does
	stopped bool               // stop has run
	ending  string             // what an end of the process now says
}

// catchInterrupts starts catching Ctrl-C and SIGTERM for finetune; stop
// lets go of them.
func catchInterrupts(stderr io.Writer) *finetuneInterrupts {
	in := &finetuneInterrupts{stderr: stderr, signals: make(chan os.Signal, 1), done: make(chan struct{}),
		ending: "interrupted before training: stopped"}
	signal.Notify(in.signals, os.Interrupt, syscall.SIGTERM)
	go in.wait()
	return in
}

// wait handles the signals until stop.
func (in *finetuneInterrupts) wait() {
	for {
		select {
		case <-in.done:
			return
		case <-in.signals:
		}
		in.mu.Lock()
		if in.cancel != nil {
			in.cancel()
			in.cancel = nil
			in.ending = "interrupted again: stopped at once"
			fmt.Fprintf(in.stderr, "\ninterrupted: %s (Ctrl-C again to quit at once)\n", in.next)
			in.mu.Unlock()
			continue
		}
		in.lock.Unlock() // nil-safe: nil once training has started
		fmt.Fprintf(in.stderr, "\n%s\n", in.ending)
		os.Exit(exitInterrupted)
	}
}

// lockOutput takes the output folder (train.LockOutput) with signals held
// off, so that one that ends the process finds the lock taken, or not.
func (in *finetuneInterrupts) lockOutput(out string) (*train.OutputLock, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	lock, err := train.LockOutput(out)
	in.lock = lock
	if err == nil {
		in.ending = fmt.Sprintf("interrupted before training: stopped, writing nothing into %s", out)
	}
	return lock, err
}

// training returns the context to train (or score answers) under, which
// the first signal cancels, saying that the run is next doing next; done
// ends the phase and reports whether a signal cancelled it.
func (in *finetuneInterrupts) training(next string) (ctx context.Context, done func() (signalled bool)) {
	in.mu.Lock()
	defer in.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel, in.next, in.lock = cancel, next, nil
	return ctx, func() bool {
		in.mu.Lock()
		defer in.mu.Unlock()
		// The signal handler clears in.cancel when it cancels.
		signalled := in.cancel == nil
		if !signalled {
			in.ending = "interrupted after training: stopped before run.json was written (--resume with the same flags writes it)"
		}
		in.cancel = nil
		cancel()
		return signalled
	}
}

// stop lets go of the signals: the default handling is back.
func (in *finetuneInterrupts) stop() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.stopped {
		in.stopped = true
		signal.Stop(in.signals)
		close(in.done)
	}
}

// interruptible returns a context cancelled by the first Ctrl-C (SIGINT)
// or SIGTERM, which also prints what happens next; a second Ctrl-C then
// ends the process at once. stop releases the signals.
func interruptible(stderr io.Writer, next string) (ctx context.Context, stop func()) {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	finished := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			select {
			case <-finished:
				return
			default:
			}
			cancel() // the default handling again: a second Ctrl-C quits
			fmt.Fprintf(stderr, "\ninterrupted: %s (Ctrl-C again to quit at once)\n", next)
		case <-finished:
		}
	}()
	var once bool
	return ctx, func() {
		if !once {
			once = true
			close(finished)
			cancel()
		}
	}
}

// attentionPath names how training on b computes attention, for run.json:
// "fused" (the backend's kernel) or "composed" (products and a softmax:
// the backend lacks the kernel, or SORA_ATTENTION=unfused), since the two
// round differently and differ in memory.
func attentionPath(b backend.Backend) string {
	g := graph.New(b)
	defer g.Close()
	if g.FusedAttention() {
		return "fused"
	}
	return "composed"
}
