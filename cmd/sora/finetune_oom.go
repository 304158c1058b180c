package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/hostmem"
	"github.com/sora-go/sora/peft"
)

// outOfMemory reports whether err is an allocation that failed for lack
// of memory, on any backend (backend.ErrOutOfMemory: a CUDA driver,
// cuBLAS or NVRTC allocation, an Ascend one, or the CPU backend's refusal
// of a buffer larger than the platform can address; the Go runtime ends
// the process when memory runs out for one it can, so that leaves no
// error). The packages between the backend and here wrap errors with %w,
// which keeps the backend's error in the chain.
func outOfMemory(err error) bool { return errors.Is(err, backend.ErrOutOfMemory) }

// oomPhase is the part of a run that ran out of memory, which decides
// what helps.
type oomPhase int

const (
	// oomLoad: building the model on the backend (its weights, an
	// adapter's or a head's).
	oomLoad oomPhase = iota
	// oomTrain: training (the steps, the optimizer's state).
	oomTrain
	// oomEval: an evaluation of the held-out data (zero-shot, during
	// training or the final one), which keeps nothing for a backward
	// pass.
	oomEval
	// oomAnswers: generating the answers scored after training.
	oomAnswers
)

// oomRun is what the advice after running out of memory depends on: the
// settings of the run that can lower its peak, as they are.
type oomRun struct {
	// backend is the backend's name: the CPU's memory is the host's.
	backend string
	method  peft.Method
	// bf16 is whether the base weights are stored in bfloat16 already.
	bf16 bool
	// batch is --batch, and microBatch the sequences run at once
	// (--micro-batch, or --batch).
	batch, microBatch int
	// checkpointing, packing and groupByLength are the flags as given;
	// canPack whether the backend can pack (fused attention).
	checkpointing, packing, groupByLength, canPack bool
	// maxLen is --max-len as the run took it (capped at the model's
	// positions); longest and longestEval are the longest training and
	// evaluation sequence, in tokens (0: none).
	maxLen, longest, longestEval int
	// resumable is whether the output folder holds a checkpoint: a fresh
	// run into it is refused, and --resume keeps every setting but
	// --gradient-checkpointing (of those that lower the peak).
	resumable bool
	// rankCap, where --rank is more than every adapted layer can use, is
	// the largest min(in, out) of those layers, the most rank any of them
	// can take (0 otherwise): a rank above it only adds memory.
	rankCap int
	// out is --out.
	out string
	// held is the most the backend held from the device before the
	// failure (its peak reserved bytes, backend.MemoryTracker), and total
	// the device's memory; 0 where the backend does not tell them.
	held, total int64
}

// oomAdvice returns what to try after err, where the part of run r given
// by phase failed, when err is an allocation that ran out of memory (""
// otherwise): only the flags that can lower this run's peak there and are
// not already as low as they go (no --base-dtype bf16 where the weights
// are bfloat16 already or for --method full, no --packing where the
// backend cannot pack, …); where the output folder holds a checkpoint,
// which settings a --resume may change and which need a fresh run.
func oomAdvice(err error, phase oomPhase, r oomRun) string {
	if !outOfMemory(err) {
		return ""
	}
	what := "out of device memory"
	if r.backend == "cpu" {
		what = "out of memory"
	}
	switch phase {
	case oomLoad:
		what += " loading the model"
	case oomEval:
		what += " evaluating"
	}
	if r.held > 0 {
		// How close the run came says whether a small change can do.
		what += fmt.Sprintf(" (it held %s", hostmem.FormatSize(r.held))
		if r.total > 0 {
			what += fmt.Sprintf(" of the device's %s", hostmem.FormatSize(r.total))
		}
		what += " at most)"
	}
	bf16 := !r.bf16 && r.method != peft.Full
	smaller := func(why string) string {
		if r.microBatch < 2 {
			return ""
		}
		return fmt.Sprintf("a smaller --micro-batch (%d, with the same --batch %d: %s)", r.microBatch/2, r.batch, why)
	}
	maxLen := func(what string, longest int) string {
		if longest < 2 {
			return ""
		}
		return fmt.Sprintf("a shorter --max-len (now %d; the longest %s sequence has %d tokens)", r.maxLen, what, longest)
	}
	// What to try, in order; resumable items are those a --resume may
	// change (the others it refuses: they change the result).
	type item struct {
		text      string
		resumable bool
	}
	var items []item
	add := func(text string, resumable bool) {
		if text != "" {
			items = append(items, item{text, resumable})
		}
	}
	if r.rankCap > 0 && phase != oomLoad && phase != oomAnswers {
		add(fmt.Sprintf("--rank %d or less (no adapted layer can use more: above min(in, out) the rank adds memory but no update)", r.rankCap), false)
	}
	switch phase {
	case oomLoad:
		if !bf16 {
			how := "float32: --method full trains the weights, so an adapter method with --base-dtype bf16 stores them in half the memory"
			if r.bf16 {
				how = "bfloat16 already"
			}
			return fmt.Sprintf("%s: its weights alone do not fit (stored in %s); a device with more memory, or a smaller model", what, how)
		}
		add("--base-dtype bf16 (the frozen weights in half the memory)", false)
	case oomTrain:
		add(smaller("the same training, in more passes"), false)
		if !r.checkpointing {
			add("--gradient-checkpointing", true)
		}
		if bf16 {
			add("--base-dtype bf16", false)
		}
		if !r.packing && !r.groupByLength && r.canPack {
			add("--packing", false)
		}
		add(maxLen("training", r.longest), false)
		if r.method == peft.Full {
			add("an adapter method (--method lora, …: full fine-tuning keeps 16 bytes per parameter, the weights, their gradients and AdamW's two moments)", false)
		}
	case oomEval:
		// The evaluations run micro-batches too (train.Options.EvalBatch).
		add(smaller("evaluations run --micro-batch sequences at a time"), false)
		if bf16 {
			add("--base-dtype bf16", false)
		}
		add(maxLen("evaluation", r.longestEval), false)
	case oomAnswers:
		return fmt.Sprintf("%s generating the answers: the trained weights are saved in %s; \"sora eval\" scores them with a smaller --batch (this run generated %d at a time) or --max-new-tokens", what, r.out, r.microBatch)
	}
	var all, resume, fresh []string
	for _, it := range items {
		all = append(all, it.text)
		if it.resumable {
			resume = append(resume, it.text)
		} else {
			fresh = append(fresh, it.text)
		}
	}
	switch {
	case len(all) == 0:
		return fmt.Sprintf("%s: this run's settings already keep its memory as low as they can; a device with more memory, or a smaller model", what)
	case !r.resumable:
		return fmt.Sprintf("%s: try %s", what, orList(all))
	case len(fresh) == 0:
		return fmt.Sprintf("%s: --resume with %s goes on from the newest checkpoint in %s", what, orList(resume), r.out)
	case len(resume) == 0:
		return fmt.Sprintf("%s: a --resume keeps the settings that lower the peak; a fresh run into another --out can try %s", what, orList(fresh))
	}
	return fmt.Sprintf("%s: --resume with %s goes on from the newest checkpoint in %s; a fresh run into another --out can also try %s (a resume keeps them)", what, orList(resume), r.out, orList(fresh))
}

// orList joins items as "a", "a or b", "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}
