package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/optim"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/train"
)

func init() {
	registerBench(command{
		name:    "train",
		summary: "training steps per second of a LLaMA-shaped model for each PEFT method",
		run:     runBenchTrain,
	})
}

var benchTrainDoc = usageDoc{
	synopsis: "bench train [--backend NAME] [--methods LIST] [--dim 512 --layers 8 --heads 8 --kv-heads 4 --hidden 1376 --vocab 512 --seq 256 --batch 4] [--steps N] [--rounds N] [--threads N] [--gradient-checkpointing] [--attention auto|fused|unfused|both] [--base-dtype f32|bf16] [--json]",
	description: "Times optimizer steps of a LLaMA-shaped model built in memory (random weights; RMSNorm, rotary " +
		"embeddings, grouped-query attention, SwiGLU) trained as a causal language model on random tokens, with " +
		"every method's adapters on all seven linear layers of every block (r = --rank, alpha = --alpha, " +
		"rotation rank --rotation-rank). A step is the forward pass with the loss over every position, the " +
		"backward pass and the AdamW update, as a training loop runs it; full fine-tuning trains every " +
		"parameter (embedding and norms too). Each method gets one untimed warm-up step; then the methods take " +
		"turns, --rounds times, each timing --steps steps, and each keeps its fastest round (so that load from " +
		"other processes does not land on one method): the mean milliseconds per step with its forward, backward " +
		"and optimizer parts, " +
		"tokens per second, the ratio to LoRA's step time measured in the same run, the most memory the " +
		"step's tape held (activations, gradients and the buffers it pooled for reuse; the weights and the " +
		"optimizer state are not counted), and the most the method's own tensors held on the backend over its steps " +
		"(peak MiB: the weights, adapters and optimizer state too, and the ops' scratch from the backend's allocator; " +
		"not the other methods' models, nor the Go heap; for backends that keep memory peaks: cpu, cuda, ascend). With --gradient-checkpointing every method also runs with each " +
		"decoder layer and the head's logits recomputed in the backward pass (method+gc), timed in the same " +
		"turns, with its step time and tape memory over the plain run's. Attention is the backend's fused kernel where it has " +
		"one (no [batch·heads, seq, seq] scores kept for the backward pass; SORA_ATTENTION=unfused turns it off) and " +
		"composed from matrix products and a softmax elsewhere; --attention fused or unfused picks one (fused needs a " +
		"backend with the kernel), and --attention both runs every method (and method+gc) both ways, timed in the same " +
		"turns, the fused run reporting its step time and tape memory over the unfused one's. --base-dtype bf16 stores the frozen linear " +
		"layers' weights in bfloat16 (not for full fine-tuning): run it once with and once without to compare. The PyTorch column " +
		"quotes the rates issue 7 reports for PyTorch 1.13 on a 2-core machine of this project for the default " +
		"shape on the CPU backend (not measured here; compare only on that machine and shape; empty on other backends). With --json each result is one " +
		"JSON object per line.",
	examples: []string{
		"sora bench train",
		"sora bench train --methods lora,sora --rounds 5 --json",
		"sora bench train --dim 256 --layers 4 --hidden 688 --seq 128",
		"sora bench train --methods lora --seq 1024 --vocab 32000 --gradient-checkpointing",
		"sora bench train --methods lora --seq 1024 --attention both",
	},
}

// pytorchTokensPerSec are the rates issue 7 quotes for PyTorch 1.13 (2
// threads) on the default configuration.
var pytorchTokensPerSec = map[string]float64{"lora": 251, "dora": 154, "prediag": 214, "sora": 147, "full": 259}

// trainResult is one line of "sora bench train --json".
type trainResult struct {
	Method       string  `json:"method"`
	Trainable    int64   `json:"trainable_params"`
	Steps        int     `json:"steps"`
	MsPerStep    fixed1  `json:"ms_per_step"`
	ForwardMs    fixed1  `json:"forward_ms"`
	BackwardMs   fixed1  `json:"backward_ms"`
	OptimizerMs  fixed1  `json:"optimizer_ms"`
	TokensPerSec fixed1  `json:"tokens_per_s"`
	VsLoRA       fixed3  `json:"step_time_vs_lora,omitempty"`
	PyTorch      float64 `json:"pytorch_tokens_per_s,omitempty"`
	VsPyTorch    fixed3  `json:"speedup_vs_pytorch,omitempty"`
	Dim          int     `json:"dim"`
	Layers       int     `json:"layers"`
	Seq          int     `json:"seq"`
	Batch        int     `json:"batch"`
	Threads      int     `json:"threads"`
	Loss         fixed3  `json:"final_loss"`
	// PeakTapeMiB is the most the step's tape held (Tape.Stats.PeakBytes).
	PeakTapeMiB fixed1 `json:"peak_tape_mib"`
	// PeakBackendMiB is the most the method's own tensors held on the
	// backend (backend.MemoryTracker's in-use bytes): its weights,
	// adapters, gradients, optimizer state, the tape's buffers and the
	// ops' scratch blocks where the backend takes them from its pool,
	// over its warm-up and timed steps. The other methods' models, which
	// share the backend in the same process, are not counted. Absent for
	// a backend that keeps no peaks.
	PeakBackendMiB fixed1 `json:"peak_backend_mib,omitempty"`
	// Checkpointing marks the run with gradient checkpointing; TimeVsPlain
	// and PeakVsPlain are its step time and tape peak over the plain run's.
	Checkpointing bool   `json:"gradient_checkpointing,omitempty"`
	BaseDType     string `json:"base_dtype"`
	TimeVsPlain   fixed3 `json:"step_time_vs_plain,omitempty"`
	PeakVsPlain   fixed3 `json:"peak_tape_vs_plain,omitempty"`
	// Attention says how the run computed attention: "fused" (the
	// backend's kernel) or "unfused" (composed from MatMul and Softmax).
	// With --attention both, a fused run's TimeVsUnfused and
	// PeakVsUnfused are its step time and tape peak over its unfused
	// twin's.
	Attention     string `json:"attention"`
	TimeVsUnfused fixed3 `json:"step_time_vs_unfused,omitempty"`
	PeakVsUnfused fixed3 `json:"peak_tape_vs_unfused,omitempty"`
}

// attentionModes are the values of bench train's --attention: which
// attention paths each run takes (true: fused), nil for the tape's own
// choice.
var attentionModes = map[string][]bool{"auto": nil, "fused": {true}, "unfused": {false}, "both": {true, false}}

func runBenchTrain(args []string, stdout, stderr io.Writer) (status int) {
	fs := newFlagSet("bench train")
	name := addBackendFlag(fs)
	methodsFlag := fs.String("methods", "lora,dora,prediag,sora,full", "comma-separated `LIST` of methods: "+methodNames()+" (full trains every parameter)")
	dim := fs.Int("dim", 512, "model width `N`")
	layers := fs.Int("layers", 8, "decoder layers `N`")
	heads := fs.Int("heads", 8, "query heads `N`")
	kvHeads := fs.Int("kv-heads", 4, "key/value heads `N`")
	hidden := fs.Int("hidden", 1376, "SwiGLU hidden width `N`")
	vocab := fs.Int("vocab", 512, "vocabulary size `N`")
	seq := fs.Int("seq", 256, "sequence length `N`")
	batch := fs.Int("batch", 4, "sequences per step `N`")
	rank := fs.Int("rank", 8, "LoRA rank `r`")
	alpha := fs.Float64("alpha", 16, "lora_alpha `A`")
	rotRank := fs.Int("rotation-rank", 4, "rotation rank `r_p` (sora, preortho, postortho)")
	steps := fs.Int("steps", 2, "timed steps per method and round, `N`")
	rounds := fs.Int("rounds", 3, "timing `ROUNDS`: the methods are timed in turn, round after round, and each reports its fastest round")
	threads := fs.Int("threads", 0, "`N` threads for the CPU backend and GOMAXPROCS; 0 keeps the defaults")
	var dtName string
	baseDTypeFlagVar(fs, &dtName)
	checkpointing := fs.Bool("gradient-checkpointing", false, "also run every method with gradient checkpointing (method+gc) and compare its step time and tape memory with the plain run's")
	attention := fs.String("attention", "auto", "attention `PATH`: auto (the backend's fused kernel where it has one, unless SORA_ATTENTION=unfused), fused, unfused, or both (every run twice, compared)")
	asJSON := fs.Bool("json", false, "print one JSON object per method instead of a table")
	profile := cpuProfileFlag(fs)
	if code, ok := parseFlags(fs, benchTrainDoc, args, stdout, stderr); !ok {
		return code
	}
	for _, v := range []struct {
		name string
		v    int
	}{{"dim", *dim}, {"layers", *layers}, {"heads", *heads}, {"kv-heads", *kvHeads}, {"hidden", *hidden}, {"vocab", *vocab},
		{"seq", *seq}, {"batch", *batch}, {"rank", *rank}, {"rotation-rank", *rotRank}, {"steps", *steps}, {"rounds", *rounds}} {
		if v.v < 1 {
			fmt.Fprintf(stderr, "sora bench train: --%s %d: want at least 1\n", v.name, v.v)
			return exitUsage
		}
	}
	if *threads < 0 {
		fmt.Fprintf(stderr, "sora bench train: --threads %d: want a positive number, or 0 for the defaults\n", *threads)
		return exitUsage
	}
	attnModes, ok := attentionModes[*attention]
	if !ok {
		fmt.Fprintf(stderr, "sora bench train: --attention %q: want auto, fused, unfused or both\n", *attention)
		return exitUsage
	}
	mopts, err := baseDType(dtName)
	if err != nil {
		fmt.Fprintf(stderr, "sora bench train: %v\n", err)
		return exitUsage
	}
	var methods []string
	for _, s := range splitList(*methodsFlag) {
		m, err := peft.ParseMethod(s)
		if err != nil {
			fmt.Fprintf(stderr, "sora bench train: --methods: %v\n", err)
			return exitUsage
		}
		if m == peft.Full && mopts.BaseDType == backend.BFloat16 {
			fmt.Fprintln(stderr, "sora bench train: --base-dtype bf16 stores the base weights frozen, and full fine-tuning trains them: leave full out of --methods")
			return exitUsage
		}
		methods = append(methods, string(m))
	}
	if len(methods) == 0 {
		fmt.Fprintln(stderr, "sora bench train: --methods is empty")
		return exitUsage
	}
	cfg := llama.Config{Dim: *dim, HiddenDim: *hidden, NumLayers: *layers, NumHeads: *heads, NumKVHeads: *kvHeads,
		VocabSize: *vocab, MaxSeqLen: *seq, NormEps: 1e-5, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "sora bench train: %v\n", err)
		return exitUsage
	}
	finish, code := startCPUProfile("bench train", *profile, stderr)
	if finish == nil {
		return code
	}
	defer finish(&status)
	b, nthreads, release, code := openBenchBackend(*name, *threads, stderr)
	if b == nil {
		return code
	}
	defer release()
	if slices.Contains(attnModes, true) && !(b.Supports(backend.OpAttention) && b.Supports(backend.OpAttentionGrad)) {
		fmt.Fprintf(stderr, "sora bench train: --attention %s: the %s backend has no fused attention kernel (it lacks the optional ops %s and %s); use auto or unfused\n",
			*attention, b.Name(), backend.OpAttention, backend.OpAttentionGrad)
		return exitFailure
	}
	w, err := train.InitWeights(cfg, 1)
	if err != nil {
		fmt.Fprintf(stderr, "sora bench train: %v\n", err)
		return exitFailure
	}
	if !*asJSON {
		storage := ""
		if mopts.BaseDType == backend.BFloat16 {
			storage = "; frozen linear weights in bfloat16"
		}
		fmt.Fprintf(stdout, "backend %s: %s\nmodel: dim %d, %d layers, %d heads / %d KV heads, SwiGLU %d, vocab %d (%s parameters); batch %d × %d tokens; adapters on all 7 linear layers, r=%d alpha=%g rotation rank %d%s\n\n",
			b.Name(), deviceLine(b), cfg.Dim, cfg.NumLayers, cfg.NumHeads, cfg.NumKVHeads, cfg.HiddenDim, cfg.VocabSize,
			commas(cfg.NumParams()), *batch, *seq, *rank, *alpha, *rotRank, storage)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	tokens := make([]int32, *batch**seq)
	for i := range tokens {
		tokens[i] = int32(rng.IntN(cfg.VocabSize))
	}
	bt := llama.Batch{Tokens: tokens, Size: *batch, Len: *seq}
	targets, _ := llama.LMTargets(bt, nil)
	// Every method's model is built first, then the methods are timed in
	// turn, round after round, and each keeps its best round: load from
	// other processes on a shared machine then slows all methods alike
	// instead of whichever ran at a bad moment.
	var runs []*trainRun
	paths := attnModes
	if paths == nil {
		paths = []bool{true} // the tape's choice: see newTrainRun
	}
	for _, method := range methods {
		for _, gc := range []bool{false, true} {
			if gc && !*checkpointing {
				continue
			}
			for _, fused := range paths {
				// The tape's own choice where --attention is auto.
				var force *bool
				if attnModes != nil {
					force = &fused
				}
				r, err := newTrainRun(b, w, method, gc, force, mopts, peft.Config{R: *rank, Alpha: *alpha, RotationRank: *rotRank, TargetModules: []string{peft.AllLinear}, Seed: 1}, bt, targets)
				if err != nil {
					for _, r := range runs {
						r.close()
					}
					fmt.Fprintf(stderr, "sora bench train: %s: %v\n", method, err)
					return exitFailure
				}
				runs = append(runs, r)
			}
		}
	}
	defer func() {
		for _, r := range runs {
			r.close()
		}
	}()
	for round := range *rounds {
		for _, r := range runs {
			// The backend's peak, outside the timed steps.
			if err := r.ownPeak(func() error { return r.time(*steps) }); err != nil {
				fmt.Fprintf(stderr, "sora bench train: %s, round %d: %v\n", r.res.Method, round+1, err)
				return exitFailure
			}
		}
	}
	// PyTorch's rates were measured on two CPU threads: a comparison only
	// for the CPU backend at the default shape.
	isDefault := *dim == 512 && *layers == 8 && *heads == 8 && *kvHeads == 4 && *hidden == 1376 && *vocab == 512 && *seq == 256 && *batch == 4 && *rank == 8 && *rotRank == 4 && b.Name() == "cpu"
	// A run's twins: the plain run of the same method and attention path
	// (for a checkpointed one), the unfused run of the same method and
	// checkpointing (for a fused one, with --attention both).
	type twinKey struct {
		method    string
		gc        bool
		attention string
	}
	byKey := map[twinKey]trainResult{}
	for _, run := range runs {
		byKey[twinKey{run.res.Method, run.res.Checkpointing, run.res.Attention}] = run.res
	}
	first := runs[0].res.Attention // the attention path of the baselines
	var results []trainResult
	var loraMs float64
	for _, run := range runs {
		r := run.res
		r.Steps = *steps * *rounds
		r.Dim, r.Layers, r.Seq, r.Batch, r.Threads = cfg.Dim, cfg.NumLayers, *seq, *batch, nthreads
		if len(attnModes) == 2 && r.Attention == "fused" {
			unfused := byKey[twinKey{r.Method, r.Checkpointing, "unfused"}]
			r.TimeVsUnfused = fixed3(float64(r.MsPerStep) / float64(unfused.MsPerStep))
			r.PeakVsUnfused = fixed3(float64(r.PeakTapeMiB) / float64(unfused.PeakTapeMiB))
		}
		if r.Checkpointing {
			plain := byKey[twinKey{r.Method, false, r.Attention}]
			r.TimeVsPlain = fixed3(float64(r.MsPerStep) / float64(plain.MsPerStep))
			r.PeakVsPlain = fixed3(float64(r.PeakTapeMiB) / float64(plain.PeakTapeMiB))
		}
		if !r.Checkpointing && r.Attention == first {
			if r.Method == "lora" {
				loraMs = float64(r.MsPerStep)
			}
			if pt, ok := pytorchTokensPerSec[r.Method]; ok && isDefault {
				r.PyTorch = pt
				r.VsPyTorch = fixed3(float64(r.TokensPerSec) / pt)
			}
		}
		results = append(results, r)
	}
	for i := range results {
		if loraMs > 0 && !results[i].Checkpointing && results[i].Attention == first {
			results[i].VsLoRA = fixed3(float64(results[i].MsPerStep) / loraMs)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				fmt.Fprintf(stderr, "sora bench train: %v\n", err)
				return exitFailure
			}
		}
		return exitOK
	}
	const row = "%-20s %11s %9s %9s %9s %9s %9s %9s %9s %10s %9s\n"
	fmt.Fprintf(stdout, row, "method", "trainable", "ms/step", "forward", "backward", "AdamW", "tokens/s", "tape MiB", "peak MiB", "vs LoRA", "vs PyTorch")
	ratio := func(v fixed3) string {
		if v > 0 {
			return fmt.Sprintf("%.2f×", float64(v))
		}
		return "-"
	}
	for _, r := range results {
		name, vsl := r.Method, ratio(r.VsLoRA)
		if r.Checkpointing {
			name += "+gc"
		}
		if len(attnModes) == 2 {
			name += " " + r.Attention
		}
		fmt.Fprintf(stdout, row, name, commas(r.Trainable), fmt.Sprintf("%.1f", float64(r.MsPerStep)), fmt.Sprintf("%.1f", float64(r.ForwardMs)),
			fmt.Sprintf("%.1f", float64(r.BackwardMs)), fmt.Sprintf("%.1f", float64(r.OptimizerMs)), fmt.Sprintf("%.1f", float64(r.TokensPerSec)),
			fmt.Sprintf("%.1f", float64(r.PeakTapeMiB)), mib(r.PeakBackendMiB), vsl, ratio(r.VsPyTorch))
	}
	if results[0].PeakBackendMiB > 0 {
		fmt.Fprintf(stdout, "\npeak MiB: the most the method's own tensors held on the %s backend over its steps (weights, adapters, gradients, optimizer state, the tape's buffers and the ops' scratch from the backend's allocator), of which tape MiB is the tape's part; the other methods' models are not counted.\n", b.Name())
	} else {
		fmt.Fprintf(stdout, "\npeak MiB: the %s backend keeps no memory peaks.\n", b.Name())
	}
	fmt.Fprintf(stdout, "attention: %s. vs LoRA: step time over LoRA's in this run. vs PyTorch: tokens/s over PyTorch 1.13's (issue 7, same shape, 2 threads; not measured in this run).\n", attentionNote(results))
	if *checkpointing {
		fmt.Fprintln(stdout, "method+gc: with gradient checkpointing, against the plain run of the method in this run:")
		for _, r := range results {
			if r.Checkpointing {
				fmt.Fprintf(stdout, "  %s+gc%s: %.2f× the step time, %.2f× the tape memory\n", r.Method, attentionSuffix(r, len(attnModes) == 2),
					float64(r.TimeVsPlain), float64(r.PeakVsPlain))
			}
		}
	}
	if len(attnModes) == 2 {
		fmt.Fprintln(stdout, "fused attention against the unfused (composed) run of the method in this run:")
		for _, r := range results {
			if r.Attention == "fused" {
				gc := ""
				if r.Checkpointing {
					gc = "+gc"
				}
				fmt.Fprintf(stdout, "  %s%s: %.2f× the step time, %.2f× the tape memory\n", r.Method, gc, float64(r.TimeVsUnfused), float64(r.PeakVsUnfused))
			}
		}
	}
	return exitOK
}

// mib writes a figure in MiB, "-" for none.
func mib(v fixed1) string {
	if v > 0 {
		return fmt.Sprintf("%.1f", float64(v))
	}
	return "-"
}

// attentionNote says how the results computed attention, for the table's
// footnote.
func attentionNote(results []trainResult) string {
	fused, unfused := false, false
	for _, r := range results {
		fused = fused || r.Attention == "fused"
		unfused = unfused || r.Attention == "unfused"
	}
	switch {
	case fused && unfused:
		return "each run fused (the backend's kernel) and unfused (composed from matrix products and a softmax)"
	case fused:
		return "fused (the backend's kernel)"
	default:
		return "unfused (composed from matrix products and a softmax)"
	}
}

// attentionSuffix names r's attention path where runs differ in it.
func attentionSuffix(r trainResult, both bool) string {
	if !both {
		return ""
	}
	return " " + r.Attention
}

func methodNames() string {
	var names []string
	for _, m := range peft.Methods {
		names = append(names, string(m))
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// trainRun is one method's model, optimizer and timings.
type trainRun struct {
	m       *llama.Model
	pm      *peft.Model
	opt     *optim.AdamW
	g       *graph.Tape
	bt      llama.Batch
	targets []int32
	res     trainResult
	best    time.Duration // fastest round's mean step time
	// mem, where the backend keeps peaks, tells this run's memory from
	// the other runs': own is the bytes this run's tensors hold between
	// its steps, peak the most they held (see ownPeak).
	mem       backend.MemoryTracker
	own, peak int64
}

// ownPeak measures what f allocates, when only this run's work runs in it
// (the runs take turns): the backend's in-use bytes less those of the
// other runs, which hold what they held before f, at f's peak and after.
func (r *trainRun) ownPeak(f func() error) error {
	if r.mem == nil {
		return f()
	}
	before := r.mem.MemoryUsage().InUse
	others := before - r.own
	r.mem.ResetPeakMemory()
	err := f()
	u := r.mem.MemoryUsage()
	r.peak = max(r.peak, u.PeakInUse-others)
	r.own += u.InUse - before
	r.res.PeakBackendMiB = fixed1(float64(r.peak) / (1 << 20))
	return err
}

// newTrainRun builds the model with the options o (its base weights'
// storage type) and the method applied, and gradient checkpointing where
// gc, its tape taking the fused attention path where *fused (the tape's
// own choice where fused is nil), and runs one untimed warm-up step
// (first-use allocations, packing buffers, optimizer state).
func newTrainRun(b backend.Backend, w *llama.Weights, method string, gc bool, fused *bool, o llama.Options, pc peft.Config, bt llama.Batch, targets []int32) (*trainRun, error) {
	r := &trainRun{bt: bt, targets: targets, res: trainResult{Method: method, Checkpointing: gc, BaseDType: train.BaseDTypeName(o.BaseDType)}}
	r.mem, _ = b.(backend.MemoryTracker)
	if err := r.ownPeak(func() error { return r.build(b, w, method, gc, fused, o, pc) }); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// build makes the run's model, adapters, optimizer and tape, and runs
// the warm-up step.
func (r *trainRun) build(b backend.Backend, w *llama.Weights, method string, gc bool, fused *bool, o llama.Options, pc peft.Config) error {
	m, err := llama.NewWithOptions(b, w, o)
	if err != nil {
		return err
	}
	r.m = m
	m.SetGradientCheckpointing(gc)
	var params []*graph.Value
	if method == "full" {
		for _, p := range m.Params() {
			if err := p.SetTrainable(true); err != nil {
				return err
			}
		}
		params = m.Trainable()
	} else {
		pc.Method = peft.Method(method)
		if r.pm, err = peft.Inject(m, pc); err != nil {
			return err
		}
		params = r.pm.Trainable()
	}
	for _, p := range params {
		r.res.Trainable += int64(p.Len())
	}
	if r.opt, err = optim.NewAdamW([]optim.Group{{Name: "all", Params: params, LR: 1e-4}}, optim.DefaultAdamWConfig(), nil); err != nil {
		return err
	}
	r.g = graph.New(b)
	if fused != nil {
		r.g.SetFusedAttention(*fused)
	}
	r.res.Attention = "unfused"
	if r.g.FusedAttention() {
		r.res.Attention = "fused"
	}
	if _, _, _, err := r.step(); err != nil {
		return err
	}
	return nil
}

func (r *trainRun) close() {
	if r.g != nil {
		r.g.Close()
	}
	if r.opt != nil {
		r.opt.Free()
	}
	if r.pm != nil {
		r.pm.Unload()
	}
	if r.m != nil {
		r.m.Free()
	}
}

// step runs one optimizer step and returns the time of its parts.
func (r *trainRun) step() (fwd, bwd, upd time.Duration, err error) {
	g := r.g
	t0 := time.Now()
	loss, err := r.m.LMLoss(g, r.bt, r.targets, graph.CrossEntropyOptions{})
	if err != nil {
		return 0, 0, 0, err
	}
	if err := g.Err(); err != nil { // waits for the forward on asynchronous backends
		return 0, 0, 0, err
	}
	t1 := time.Now()
	if err := g.Backward(loss); err != nil {
		return 0, 0, 0, err
	}
	l, err := loss.Item()
	if err != nil {
		return 0, 0, 0, err
	}
	r.res.Loss = fixed3(l)
	r.res.PeakTapeMiB = max(r.res.PeakTapeMiB, fixed1(float64(g.Stats().PeakBytes)/(1<<20)))
	g.Reset()
	t2 := time.Now()
	if err := r.opt.Step(); err != nil {
		return 0, 0, 0, err
	}
	r.opt.ZeroGrad()
	return t1.Sub(t0), t2.Sub(t1), time.Since(t2), nil
}

// time runs one round of steps and keeps it if it is the fastest so far.
func (r *trainRun) time(steps int) error {
	var fwd, bwd, upd time.Duration
	start := time.Now()
	for range steps {
		f, b, u, err := r.step()
		if err != nil {
			return err
		}
		fwd, bwd, upd = fwd+f, bwd+b, upd+u
	}
	n := time.Duration(steps)
	mean := time.Since(start) / n
	if r.best != 0 && mean >= r.best {
		return nil
	}
	r.best = mean
	ms := func(d time.Duration) fixed1 { return fixed1(float64(d.Microseconds()) / 1000) }
	r.res.MsPerStep, r.res.ForwardMs, r.res.BackwardMs, r.res.OptimizerMs = ms(mean), ms(fwd/n), ms(bwd/n), ms(upd/n)
	r.res.TokensPerSec = fixed1(float64(r.bt.Size*r.bt.Len) / mean.Seconds())
	return nil
}
