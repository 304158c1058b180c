package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/ascend"
	"github.com/sora-go/sora/backend/cuda"
	"github.com/sora-go/sora/peft"
)

// testSmallMemory is a backend registered in the tests only: the CPU
// backend with a device whose buffers hold at most smallMemoryCap bytes
// each, refusing larger ones with the error an Ascend device gives when
// its memory runs out (an *ascend.ACLError, which matches
// backend.ErrOutOfMemory), so that the advice depends on the error's
// chain surviving every package between the backend and the command.
const testSmallMemory = "test-small-memory"

// smallMemoryCap is the largest buffer testSmallMemory allocates, in
// bytes (0: any).
var smallMemoryCap atomic.Int64

type smallMemoryDriver struct{}

func (smallMemoryDriver) Probe() (string, error) { return "the CPU with small buffers", nil }

func (smallMemoryDriver) Open() (backend.Backend, error) {
	b, err := backend.Open("cpu")
	if err != nil {
		return nil, err
	}
	return smallMemory{b}, nil
}

type smallMemory struct{ backend.Backend }

func (smallMemory) Name() string { return testSmallMemory }

// MemoryUsage and ResetPeakMemory pass on the CPU backend's figures, so
// that the advice can say how much the run held.
func (m smallMemory) MemoryUsage() backend.MemoryUsage {
	return m.Backend.(backend.MemoryTracker).MemoryUsage()
}
func (m smallMemory) ResetPeakMemory() { m.Backend.(backend.MemoryTracker).ResetPeakMemory() }

func (m smallMemory) Alloc(dt backend.DType, shape ...int) (backend.Tensor, error) {
	n := int64(dt.Size())
	for _, d := range shape {
		n *= int64(d)
	}
	if c := smallMemoryCap.Load(); c > 0 && n > c {
		return backend.Tensor{}, fmt.Errorf("%s: Alloc %v: %w", testSmallMemory, backend.Shape(shape),
			&ascend.ACLError{Call: "aclrtMalloc", Status: 207001, Message: fmt.Sprintf("injected: %d bytes, over the test's %d", n, c)})
	}
	return m.Backend.Alloc(dt, shape...)
}

func init() { backend.Register(testSmallMemory, smallMemoryDriver{}) }

// TestFinetuneOutOfMemoryAdvice runs sora finetune on a device whose
// buffers are small (testSmallMemory), so that it runs out of memory
// loading the model, in the zero-shot evaluation and in the first step,
// and checks that the error is followed by the advice of that part of the
// run, naming the flags that apply; that the run leaves no output folder;
// and that the run the advice suggests (half the --micro-batch) then
// trains.
func TestFinetuneOutOfMemoryAdvice(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath, evalPath := writeBoolQPair(t, dir, 16, 4)
	t.Cleanup(func() { smallMemoryCap.Store(0) })
	cases := []struct {
		name      string
		cap       int64
		extra     []string
		want      []string
		wantNot   []string
		okWithout bool // passes with --micro-batch 4
	}{
		// The embedding alone is 131,072 bytes.
		{name: "load", cap: 100_000, want: []string{"sora finetune: out of device memory loading the model: try --base-dtype bf16"}},
		{name: "zero-shot evaluation", cap: 400_000, extra: []string{"--eval-data", evalPath},
			want:    []string{"sora finetune: out of device memory evaluating (it held ", " at most): try a smaller --micro-batch (4, with the same --batch 8", "--base-dtype bf16", "a shorter --max-len (now 256; the longest evaluation sequence has "},
			wantNot: []string{"--gradient-checkpointing", "--packing"}},
		{name: "step", cap: 1 << 20,
			want:      []string{"sora finetune: out of device memory (it held ", " at most): try a smaller --micro-batch (4, with the same --batch 8", "--gradient-checkpointing", "--base-dtype bf16", "--packing", "a shorter --max-len (now 256"},
			okWithout: true},
		{name: "step, bf16 and checkpointing already", cap: 1 << 20, extra: []string{"--base-dtype", "bf16", "--gradient-checkpointing"},
			want: []string{"try a smaller --micro-batch (4,"}, wantNot: []string{"--base-dtype", "--gradient-checkpointing"}},
		{name: "full fine-tuning", cap: 1 << 20, extra: []string{"--method", "full"},
			want: []string{"an adapter method (--method lora"}, wantNot: []string{"--base-dtype"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			smallMemoryCap.Store(c.cap)
			out := filepath.Join(t.TempDir(), "run")
			args := append([]string{"finetune", "--backend", testSmallMemory, "--model", model, "--tokenizer", tok, "--data", trainPath,
				"--steps", "1", "--batch", "8", "--no-spectrum", "--out", out}, c.extra...)
			code, stdout, errOut := runCLI(t, args...)
			if code != exitFailure || !strings.Contains(errOut, "ACL_ERROR_RT_MEMORY_ALLOCATION") {
				t.Fatalf("status %d, stderr %q; want status %d and the allocation's error\n%s", code, errOut, exitFailure, stdout)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			advice := lines[len(lines)-1]
			t.Log(advice)
			for _, w := range c.want {
				if !strings.Contains(advice, w) {
					t.Errorf("advice %q lacks %q", advice, w)
				}
			}
			for _, w := range c.wantNot {
				if strings.Contains(advice, w) {
					t.Errorf("advice %q names %q, which does not apply", advice, w)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("the failed run left %s (%v)", out, err)
			}
			if c.okWithout {
				if code, stdout, errOut := runCLI(t, append(args, "--micro-batch", "4")...); code != exitOK {
					t.Errorf("with --micro-batch 4 as advised: status %d\n%s\n%s", code, stdout, errOut)
				}
			}
		})
	}
}

// TestOutOfMemory checks which errors count as running out of memory:
// each backend's (an Ascend allocation's, cuBLAS's and NVRTC's statuses
// as *cuda.Error values, the CPU backend's refusal of a buffer it cannot
// address, made by a real Alloc), wrapped as the packages on the way wrap
// them; not other failures of the same libraries, nor others, nor an
// error whose chain a wrapper cut by formatting it with %v (the status
// name in a message no longer counts: the chain is what says it).
func TestOutOfMemory(t *testing.T) {
	cpu, err := backend.Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	// More elements than a 64-bit platform can address (see
	// backend.MaxElements); a 32-bit one could try to allocate them.
	huge := []int{backend.MaxElements}
	if strconv.IntSize < 64 {
		huge = nil
	}
	_, cpuOOM := cpu.Alloc(backend.Float32, huge...)
	cpuClosed, _ := backend.Open("cpu")
	cpuClosed.Close()
	_, closedErr := cpuClosed.Alloc(backend.Float32, 4)
	cublas := &cuda.Error{Call: "cublasSgemm_v2", Code: 3, Name: "CUBLAS_STATUS_ALLOC_FAILED"}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"ascend, as the run reports it", fmt.Errorf("train: step 1, micro-batch 1: graph: allocating [694, 16]: ascend: Alloc [694, 16]: %w", &ascend.ACLError{Call: "aclrtMalloc", Status: 207001, Message: "out of memory"}), true},
		{"ascend, bad alloc", &backend.OpError{Op: "matmul", Err: &ascend.ACLError{Call: "aclrtMalloc", Status: 200000}}, true},
		{"cublas", fmt.Errorf("cuda: matmul: %w", cublas), true},
		{"nvrtc", fmt.Errorf("cuda: compiling the kernels: %w", &cuda.Error{Call: "nvrtcCompileProgram", Code: 1, Name: "NVRTC_ERROR_OUT_OF_MEMORY"}), true},
		{"cpu", fmt.Errorf("graph: allocating %v: %w", backend.Shape(huge), cpuOOM), strconv.IntSize == 64},
		{"cublas, formatted", fmt.Errorf("graph: %v", cublas), false},
		{"cuda, another failure", fmt.Errorf("cuda: %w", &cuda.Error{Call: "cublasSgemm_v2", Code: 13, Name: "CUBLAS_STATUS_EXECUTION_FAILED"}), false},
		{"ascend, another failure", &ascend.ACLError{Call: "aclnnMm", Status: 561103, Message: "shape"}, false},
		{"cpu, closed", closedErr, false},
		{"data", errors.New("data: open train.json: no such file or directory"), false},
		{"nil", nil, false},
	} {
		if got := outOfMemory(c.err); got != c.want {
			t.Errorf("%s: outOfMemory(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// TestOOMAdvice checks the advice after running out of memory for runs
// that differ in one setting each from one whose every setting can lower
// its peak: each names what applies and leaves out what does not (already
// set, not for the method, not on that backend, nothing a resume may
// change).
func TestOOMAdvice(t *testing.T) {
	oom := &ascend.ACLError{Call: "aclrtMalloc", Status: 207001}
	base := oomRun{backend: "cuda", method: peft.LoRA, batch: 16, microBatch: 8, canPack: true, maxLen: 512, longest: 498, longestEval: 300, out: "runs/x"}
	with := func(f func(*oomRun)) oomRun { r := base; f(&r); return r }
	for _, c := range []struct {
		name    string
		phase   oomPhase
		r       oomRun
		err     error
		want    string
		wantNot []string
	}{
		{name: "every setting", phase: oomTrain, r: base,
			want: "out of device memory: try a smaller --micro-batch (4, with the same --batch 16: the same training, in more passes), --gradient-checkpointing, --base-dtype bf16, --packing or a shorter --max-len (now 512; the longest training sequence has 498 tokens)"},
		{name: "bf16 already", phase: oomTrain, r: with(func(r *oomRun) { r.bf16 = true }), want: "--packing", wantNot: []string{"--base-dtype"}},
		{name: "full", phase: oomTrain, r: with(func(r *oomRun) { r.method = peft.Full }), want: "an adapter method", wantNot: []string{"--base-dtype"}},
		{name: "micro-batch 1", phase: oomTrain, r: with(func(r *oomRun) { r.microBatch = 1 }), want: "try --gradient-checkpointing, ", wantNot: []string{"--micro-batch"}},
		{name: "checkpointing", phase: oomTrain, r: with(func(r *oomRun) { r.checkpointing = true }), want: "--packing", wantNot: []string{"--gradient-checkpointing"}},
		{name: "packing", phase: oomTrain, r: with(func(r *oomRun) { r.packing = true }), want: "--base-dtype bf16 or a shorter", wantNot: []string{"--packing"}},
		{name: "group-by-length", phase: oomTrain, r: with(func(r *oomRun) { r.groupByLength = true }), want: "--base-dtype bf16 or a shorter", wantNot: []string{"--packing"}},
		{name: "cannot pack", phase: oomTrain, r: with(func(r *oomRun) { r.canPack = false }), want: "--base-dtype bf16 or a shorter", wantNot: []string{"--packing"}},
		{name: "rank above every layer", phase: oomTrain, r: with(func(r *oomRun) { r.rankCap = 64 }),
			want: "out of device memory: try --rank 64 or less (no adapted layer can use more: above min(in, out) the rank adds memory but no update), a smaller --micro-batch"},
		{name: "rank above every layer, evaluating", phase: oomEval, r: with(func(r *oomRun) { r.rankCap = 64 }), want: "try --rank 64 or less ("},
		{name: "rank above every layer, loading", phase: oomLoad, r: with(func(r *oomRun) { r.rankCap = 64 }), want: "loading the model: try --base-dtype bf16", wantNot: []string{"--rank"}},
		{name: "cpu", phase: oomTrain, r: with(func(r *oomRun) { r.backend = "cpu" }), want: "out of memory: try", wantNot: []string{"device"}},
		{name: "held", phase: oomEval, r: with(func(r *oomRun) { r.held, r.total = 78<<30+1<<29, 80<<30 }),
			want: "out of device memory evaluating (it held 78.5 GiB of the device's 80.0 GiB at most): try a smaller --micro-batch"},
		{name: "held, no total", phase: oomTrain, r: with(func(r *oomRun) { r.held = 3 << 20 }), want: "out of device memory (it held 3.0 MiB at most): try"},
		{name: "resumable", phase: oomTrain, r: with(func(r *oomRun) { r.resumable = true }),
			want: "out of device memory: --resume with --gradient-checkpointing goes on from the newest checkpoint in runs/x; a fresh run into another --out can also try a smaller --micro-batch (4, with the same --batch 16: the same training, in more passes), --base-dtype bf16, --packing or a shorter --max-len (now 512; the longest training sequence has 498 tokens) (a resume keeps them)"},
		{name: "resumable, checkpointing", phase: oomTrain, r: with(func(r *oomRun) { r.resumable, r.checkpointing = true, true }),
			want: "out of device memory: a --resume keeps the settings that lower the peak; a fresh run into another --out can try a smaller --micro-batch"},
		{name: "nothing left but the method", phase: oomTrain, r: oomRun{backend: "cuda", method: peft.Full, batch: 1, microBatch: 1, checkpointing: true, packing: true},
			want: "out of device memory: try an adapter method"},
		{name: "nothing left", phase: oomTrain, r: oomRun{backend: "cuda", method: peft.LoRA, bf16: true, batch: 1, microBatch: 1, checkpointing: true, packing: true},
			want: "out of device memory: this run's settings already keep its memory as low as they can; a device with more memory, or a smaller model"},
		{name: "evaluation", phase: oomEval, r: base,
			want:    "out of device memory evaluating: try a smaller --micro-batch (4, with the same --batch 16: evaluations run --micro-batch sequences at a time), --base-dtype bf16 or a shorter --max-len (now 512; the longest evaluation sequence has 300 tokens)",
			wantNot: []string{"--gradient-checkpointing", "--packing"}},
		{name: "load", phase: oomLoad, r: base, want: "out of device memory loading the model: try --base-dtype bf16 (the frozen weights in half the memory)", wantNot: []string{"--micro-batch"}},
		{name: "load, bf16", phase: oomLoad, r: with(func(r *oomRun) { r.bf16 = true }), want: "out of device memory loading the model: its weights alone do not fit (stored in bfloat16 already)"},
		{name: "load, full", phase: oomLoad, r: with(func(r *oomRun) { r.method = peft.Full }), want: "its weights alone do not fit (stored in float32: --method full trains the weights, so an adapter method with --base-dtype bf16"},
		{name: "load, resumable", phase: oomLoad, r: with(func(r *oomRun) { r.resumable = true }), want: "a --resume keeps the settings that lower the peak; a fresh run into another --out can try --base-dtype bf16"},
		{name: "answers", phase: oomAnswers, r: base, want: "out of device memory generating the answers: the trained weights are saved in runs/x; \"sora eval\" scores them with a smaller --batch (this run generated 8 at a time)"},
		{name: "not out of memory", phase: oomTrain, r: base, err: errors.New("data: open x.json: no such file"), want: ""},
	} {
		err := c.err
		if err == nil {
			err = oom
		}
		got := oomAdvice(err, c.phase, c.r)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: advice %q; want it to contain %q", c.name, got, c.want)
		}
		for _, w := range c.wantNot {
			if strings.Contains(got, w) {
				t.Errorf("%s: advice %q names %q, which does not apply", c.name, got, w)
			}
		}
	}
}

// TestFinetuneCPUMemoryLimit: on the CPU backend, a run whose tensors
// would pass SORA_CPU_MEMORY_LIMIT stops with the allocation's error,
// which names the variable, and the advice of the step, instead of being
// killed by the operating system when the host's memory runs out; it
// leaves no output folder. A value the variable cannot take is refused,
// naming it.
func TestFinetuneCPUMemoryLimit(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath, _ := writeBoolQPair(t, dir, 16, 4)
	for _, c := range []struct {
		name, limit string
		extra       []string
		code        int
		want        []string
	}{
		{"3MiB", "3MiB", nil, exitFailure, []string{"would pass its memory limit of 3.0 MiB (SORA_CPU_MEMORY_LIMIT;",
			"sora finetune: out of memory (it held ", " at most): try a smaller --micro-batch (4, with the same --batch 8"}},
		// stories260K's layers are all at least 64 wide both ways.
		{"rank 200", "12MiB", []string{"--rank", "200"}, exitFailure, []string{"sora finetune: out of memory (it held ",
			" at most): try --rank 64 or less (no adapted layer can use more"}},
		{"3MB", "3MB", nil, exitFailure, []string{`SORA_CPU_MEMORY_LIMIT="3MB": want a positive byte count such as 16GiB`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("SORA_CPU_MEMORY_LIMIT", c.limit)
			out := filepath.Join(t.TempDir(), "run")
			code, stdout, errOut := runCLI(t, append([]string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath,
				"--steps", "1", "--batch", "8", "--no-spectrum", "--out", out}, c.extra...)...)
			if code != c.code {
				t.Fatalf("status %d, want %d\n%s\n%s", code, c.code, stdout, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("the failed run left %s (%v)", out, err)
			}
		})
	}
}
