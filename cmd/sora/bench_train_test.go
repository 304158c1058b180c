package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
)

func TestBenchTrainJSON(t *testing.T) {
	rs := benchTrainLines(t, "--dim", "32", "--layers", "2", "--heads", "4", "--kv-heads", "2",
		"--hidden", "48", "--vocab", "40", "--seq", "16", "--batch", "2", "--steps", "1", "--rounds", "2", "--methods", "lora,sora,full")
	if len(rs) != 3 {
		t.Fatalf("%d results, want one per method: %+v", len(rs), rs)
	}
	for _, r := range rs {
		if !(r.MsPerStep > 0 && r.TokensPerSec > 0 && r.Trainable > 0 && r.Steps == 2 && r.Dim == 32) {
			t.Errorf("%s: %+v", r.Method, r)
		}
		// tokens/s and ms/step describe the same step (ms/step is printed
		// to 0.1 ms, which the bounds allow for).
		ms := float64(r.MsPerStep)
		lo, hi := 32/((ms+0.051)/1000), 32/(max(ms-0.051, 1e-3)/1000)
		if tps := float64(r.TokensPerSec); tps < lo*0.999 || tps > hi*1.001 {
			t.Errorf("%s: %v tokens/s but %v ms per 32-token step (want %.1f to %.1f)", r.Method, r.TokensPerSec, r.MsPerStep, lo, hi)
		}
		if r.PyTorch != 0 {
			t.Errorf("%s: a PyTorch reference quoted for a non-default shape", r.Method)
		}
	}
	if rs[0].Method != "lora" || rs[0].VsLoRA != 1 || rs[2].Trainable <= rs[1].Trainable || rs[1].Trainable <= rs[0].Trainable {
		t.Errorf("methods %s %s %s, trainable %d %d %d, LoRA ratio %v", rs[0].Method, rs[1].Method, rs[2].Method,
			rs[0].Trainable, rs[1].Trainable, rs[2].Trainable, rs[0].VsLoRA)
	}
	// Random tokens over 40 ids: the loss stays near ln 40 ≈ 3.7.
	for _, r := range rs {
		if !(r.Loss > 0 && r.Loss < 10) {
			t.Errorf("%s: loss %v", r.Method, r.Loss)
		}
	}
}

func TestBenchTrainBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--methods", "lora,nope"}, "unknown method"},
		{[]string{"--dim", "0"}, "--dim"},
		{[]string{"--heads", "3"}, "not a multiple"},
		{[]string{"--threads", "-1"}, "--threads"},
		{[]string{"--attention", "flash"}, "--attention \"flash\""},
	} {
		code, _, errOut := runCLI(t, append([]string{"bench", "train"}, c.args...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: status %d, %q; want %d and %q", c.args, code, errOut, exitUsage, c.want)
		}
	}
}

// TestBenchTrainCheckpointing checks --gradient-checkpointing: each method
// is followed by its checkpointed run, which reports its step time and
// tape memory over the plain run's, the memory lower (four layers of
// activations are not kept), the loss the same (to print precision).
func TestBenchTrainCheckpointing(t *testing.T) {
	rs := benchTrainLines(t, "--dim", "32", "--layers", "4", "--heads", "4", "--kv-heads", "2",
		"--hidden", "48", "--vocab", "40", "--seq", "32", "--batch", "2", "--steps", "1", "--rounds", "1", "--methods", "lora,full",
		"--gradient-checkpointing")
	if len(rs) != 4 {
		t.Fatalf("%d results, want lora, lora+gc, full, full+gc: %+v", len(rs), rs)
	}
	for i := 0; i < 4; i += 2 {
		plain, gc := rs[i], rs[i+1]
		if plain.Checkpointing || !gc.Checkpointing || plain.Method != gc.Method || plain.TimeVsPlain != 0 {
			t.Errorf("results %d, %d: %+v then %+v; want the plain run, then its checkpointed twin", i, i+1, plain, gc)
		}
		if !(plain.PeakTapeMiB > 0 && gc.PeakTapeMiB < plain.PeakTapeMiB) {
			t.Errorf("%s: tape peak %v MiB checkpointed, %v plain; want it lower", gc.Method, gc.PeakTapeMiB, plain.PeakTapeMiB)
		}
		// The MiB figures are printed to 0.05 MiB, the ratio from the
		// exact ones.
		g, p := float64(gc.PeakTapeMiB), float64(plain.PeakTapeMiB)
		if r := float64(gc.PeakVsPlain); r < (g-0.05)/(p+0.05)-1e-3 || r > (g+0.05)/(p-0.05)+1e-3 || gc.TimeVsPlain <= 0 {
			t.Errorf("%s: tape ratio %v for %v MiB over %v, time ratio %v", gc.Method, r, g, p, gc.TimeVsPlain)
		}
		if gc.Loss != plain.Loss || gc.VsLoRA != 0 {
			t.Errorf("%s: loss %v checkpointed, %v plain; vs LoRA %v", gc.Method, gc.Loss, plain.Loss, gc.VsLoRA)
		}
	}
}

// TestBenchTrainBaseDType checks --base-dtype on bench train: the results
// say which storage the base weights had, and bfloat16 with full
// fine-tuning is refused.
func TestBenchTrainBaseDType(t *testing.T) {
	for _, dt := range []string{"f32", "bf16"} {
		rs := benchTrainLines(t, "--dim", "32", "--layers", "2", "--heads", "4", "--kv-heads", "2",
			"--hidden", "48", "--vocab", "40", "--seq", "16", "--batch", "2", "--steps", "1", "--rounds", "1", "--methods", "lora", "--base-dtype", dt)
		if len(rs) != 1 || rs[0].BaseDType != dt || !(rs[0].Loss > 0) {
			t.Errorf("--base-dtype %s: results %+v; want one, with that storage and a loss", dt, rs)
		}
	}
	code, _, errOut := runCLI(t, "bench", "train", "--methods", "lora,full", "--base-dtype", "bf16")
	if code != exitUsage || !strings.Contains(errOut, "full") {
		t.Errorf("bf16 with full: status %d, %q; want a usage error naming full", code, errOut)
	}
}

// benchTrainLines runs bench train with args and --json and decodes its
// results.
func benchTrainLines(t *testing.T, args ...string) []trainResult {
	t.Helper()
	code, out, errOut := runCLI(t, append([]string{"bench", "train", "--backend", "cpu", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("%v: status %d\n%s", args, code, errOut)
	}
	var rs []trainResult
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r trainResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// TestBenchTrainAttention checks --attention: auto takes the backend's
// fused kernel where it has one, unfused and SORA_ATTENTION=unfused the
// composition, and both runs each method (and its checkpointed twin) both
// ways, the fused run reporting its step time and tape memory over the
// unfused one's, the memory lower (the scores of 64 positions outweigh
// this narrow model's other activations) and the loss the same to print
// precision. On a backend without the kernel, fused and both are refused.
func TestBenchTrainAttention(t *testing.T) {
	t.Setenv("SORA_ATTENTION", "")
	cpu := testbackend.Open(t, "cpu")
	hasKernel := cpu.Supports(backend.OpAttention) && cpu.Supports(backend.OpAttentionGrad)
	shape := []string{"--dim", "32", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--hidden", "48", "--vocab", "40",
		"--seq", "64", "--batch", "2", "--steps", "1", "--rounds", "1", "--methods", "lora,full"}
	want := map[bool]string{true: "fused", false: "unfused"}[hasKernel]
	for _, r := range benchTrainLines(t, shape...) {
		if r.Attention != want || r.TimeVsUnfused != 0 {
			t.Errorf("--attention auto: %s ran %q (vs unfused %v); the backend's kernel: %v", r.Method, r.Attention, r.TimeVsUnfused, hasKernel)
		}
	}
	t.Setenv("SORA_ATTENTION", "unfused")
	for _, args := range [][]string{shape, append([]string{"--attention", "unfused"}, shape...)} {
		for _, r := range benchTrainLines(t, args...) {
			if r.Attention != "unfused" {
				t.Errorf("%v with SORA_ATTENTION=unfused: %s ran %q", args[:2], r.Method, r.Attention)
			}
		}
	}
	t.Setenv("SORA_ATTENTION", "")
	if !hasKernel {
		for _, mode := range []string{"fused", "both"} {
			code, _, errOut := runCLI(t, append([]string{"bench", "train", "--backend", "cpu", "--attention", mode}, shape...)...)
			if code != exitFailure || !strings.Contains(errOut, "no fused attention kernel") {
				t.Errorf("--attention %s without the kernel: status %d, %q", mode, code, errOut)
			}
		}
		t.Skip("the cpu backend has no fused attention kernel: --attention both is not compared")
	}
	rs := benchTrainLines(t, append([]string{"--attention", "both", "--gradient-checkpointing"}, shape...)...)
	if len(rs) != 8 {
		t.Fatalf("%d results, want lora, lora unfused, lora+gc, lora+gc unfused, and the same for full", len(rs))
	}
	for i := 0; i < 8; i += 2 {
		fused, unfused := rs[i], rs[i+1]
		if fused.Attention != "fused" || unfused.Attention != "unfused" || fused.Method != unfused.Method ||
			fused.Checkpointing != unfused.Checkpointing || fused.Checkpointing != (i%4 == 2) {
			t.Fatalf("results %d, %d: %+v then %+v; want a fused run, then its unfused twin", i, i+1, fused, unfused)
		}
		if unfused.TimeVsUnfused != 0 || unfused.PeakVsUnfused != 0 || !(fused.TimeVsUnfused > 0) {
			t.Errorf("%s: ratios %v, %v fused; %v, %v unfused", fused.Method, fused.TimeVsUnfused, fused.PeakVsUnfused, unfused.TimeVsUnfused, unfused.PeakVsUnfused)
		}
		f, u := float64(fused.PeakTapeMiB), float64(unfused.PeakTapeMiB)
		if !(f < u) {
			t.Errorf("%s (checkpointing %v): tape peak %v MiB fused, %v unfused; want it lower", fused.Method, fused.Checkpointing, f, u)
		}
		if r := float64(fused.PeakVsUnfused); r < (f-0.05)/(u+0.05)-1e-3 || r > (f+0.05)/(u-0.05)+1e-3 {
			t.Errorf("%s: tape ratio %v for %v MiB over %v", fused.Method, r, f, u)
		}
		if math.Abs(float64(fused.Loss-unfused.Loss)) > 0.0011 {
			t.Errorf("%s: loss %v fused, %v unfused", fused.Method, fused.Loss, unfused.Loss)
		}
		if fused.Checkpointing && !(fused.TimeVsPlain > 0 && unfused.TimeVsPlain > 0) {
			t.Errorf("%s+gc: vs plain %v fused, %v unfused", fused.Method, fused.TimeVsPlain, unfused.TimeVsPlain)
		}
	}
	if rs[0].VsLoRA != 1 || rs[1].VsLoRA != 0 || rs[4].VsLoRA == 0 {
		t.Errorf("vs LoRA %v, %v, %v: want it on the fused plain runs only", rs[0].VsLoRA, rs[1].VsLoRA, rs[4].VsLoRA)
	}
}

// TestBenchTrainBackendPeak checks the backend's peak of each method: at
// least its tape's peak with the model's weights beside it (and, for full
// fine-tuning, AdamW's two moments of every weight too), and its own:
// LoRA's is the same whether or not full fine-tuning's model shares the
// backend in the same process.
func TestBenchTrainBackendPeak(t *testing.T) {
	shape := []string{"--dim", "32", "--layers", "2", "--heads", "4", "--kv-heads", "2",
		"--hidden", "48", "--vocab", "40", "--seq", "16", "--batch", "2", "--steps", "1", "--rounds", "2"}
	both := benchTrainLines(t, append(shape, "--methods", "lora,full")...)
	alone := benchTrainLines(t, append(shape, "--methods", "lora")...)
	if len(both) != 2 || len(alone) != 1 {
		t.Fatalf("%d and %d results", len(both), len(alone))
	}
	cfg := llama.Config{Dim: 32, HiddenDim: 48, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, VocabSize: 40}
	weights := float64(4*cfg.NumParams()) / (1 << 20)
	for _, r := range both {
		need := float64(r.PeakTapeMiB) + weights
		if r.Method == "full" {
			need += 2 * weights
		}
		// Each figure is rounded to 0.1 MiB.
		if got := float64(r.PeakBackendMiB); got < need-0.1 {
			t.Errorf("%s: backend peak %.1f MiB; want at least %.2f (tape %.1f, weights %.2f)", r.Method, got, need, float64(r.PeakTapeMiB), weights)
		}
	}
	if both[0].PeakBackendMiB != alone[0].PeakBackendMiB {
		t.Errorf("LoRA's backend peak %.1f MiB beside full fine-tuning, %.1f alone; want the same", float64(both[0].PeakBackendMiB), float64(alone[0].PeakBackendMiB))
	}
	code, out, errOut := runCLI(t, append([]string{"bench", "train", "--backend", "cpu", "--methods", "lora"}, shape...)...)
	if code != exitOK || !strings.Contains(out, " peak MiB ") || !strings.Contains(out, "peak MiB: the most the method's own tensors held on the cpu backend") {
		t.Errorf("table: status %d, output:\n%s\n%s", code, out, errOut)
	}
}
