package train

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// renamed is a backend that computes as the one it wraps but names
// itself and its device otherwise: another backend, as far as the trainer
// can tell.
type renamed struct {
	backend.Backend
	name, device string
}

func (r renamed) Name() string   { return r.name }
func (r renamed) Device() string { return r.device }

// TestResumeOnAnotherDevice trains 2 steps of a 4-step run on one backend
// and resumes it on another (the CPU under other names), then on the same
// one: the resume onto another backend or device says so in a note
// naming both and that the run goes on bit for bit only on the same one;
// the checkpoints and the Result record from which step each trained,
// with each span's own step time; a resume on the same backend and device
// says nothing and adds no span.
func TestResumeOnAnotherDevice(t *testing.T) {
	cpu := openCPU(t)
	seqs := randomSeqs(8, tinyConfig().VocabSize, 5)
	out := t.TempDir()
	laptop := renamed{cpu, "cuda", "Laptop GPU, 4 SMs; driver CUDA 12.8; matmul fp32"}
	run := func(b backend.Backend, steps int, resume bool) (*Result, *messages) {
		t.Helper()
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		msgs := &messages{}
		tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Progress: msgs,
			Options: Options{Steps: steps, Batch: 2, LR: 1e-2, Seed: 3, Out: out, Resume: resume, NoSpectra: true, SaveEvery: 1}}
		stopAt := -1
		if !resume {
			stopAt = 1 // after step 2
		}
		res, err := runStoppingAt(tr, stopAt)
		if !resume {
			if !IsInterrupted(err) {
				t.Fatalf("first run: %v; want it interrupted after step 2", err)
			}
			return res, msgs
		}
		if err != nil {
			t.Fatal(err)
		}
		return res, msgs
	}
	first, _ := run(laptop, 4, false)
	if want := []DeviceSpan{{FromStep: 1, Backend: "cuda", Device: laptop.device}}; !slices.Equal(first.Devices, want) {
		t.Errorf("first run's devices %+v; want %+v", first.Devices, want)
	}
	st, err := readState(mustLatest(t, out))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Devices) != 1 || st.Devices[0].Backend != "cuda" || st.Devices[0].StepMillis != 0 {
		t.Errorf("checkpoint's device_history %+v; want the one span, without timings", st.Devices)
	}

	res, msgs := run(cpu, 4, true)
	var note string
	for _, m := range msgs.got {
		if strings.Contains(m, "on another backend") {
			note = m
		}
	}
	for _, want := range []string{"note: resuming ", "on another backend: its steps 1 to 2 trained on cuda (Laptop GPU, 4 SMs; driver CUDA 12.8; matmul fp32), and it goes on on cpu (" + cpu.Device() + ")",
		"goes on bit for bit only on the backend and device it was trained on"} {
		if !strings.Contains(note, want) {
			t.Errorf("resume on another backend: note %q lacks %q (messages %q)", note, want, msgs.got)
		}
	}
	if res.Memory == nil {
		t.Fatal("a run on the CPU has no Memory")
	}
	if len(res.Devices) != 2 || res.Devices[0].Backend != "cuda" || res.Devices[0].FromStep != 1 ||
		res.Devices[1] != (DeviceSpan{FromStep: 3, Backend: "cpu", Device: cpu.Device(), StepMillis: res.Devices[1].StepMillis, TokensPerSec: res.Devices[1].TokensPerSec,
			PeakMemoryBytes: res.Memory.TrainPeakInUse, PeakReservedBytes: res.Memory.TrainPeakReserved}) {
		t.Fatalf("devices after the resume: %+v (memory %+v); want cuda from step 1, cpu from step 3 with the training steps' peak", res.Devices, res.Memory)
	}
	// The renamed backend keeps no peaks (the wrapper hides the CPU's):
	// its span has none; the CPU's has the steps' peak.
	if first.Memory != nil || res.Devices[0].PeakMemoryBytes != 0 || res.Devices[1].PeakMemoryBytes <= 0 {
		t.Errorf("memory of the first run %+v, spans %+v; want none for the renamed backend, a peak for the CPU", first.Memory, res.Devices)
	}
	for _, d := range res.Devices {
		if !(d.StepMillis > 0 && d.TokensPerSec > 0) {
			t.Errorf("span %+v has no step time", d)
		}
	}
	// The run's mean step time is the steps' mean over both spans.
	if mean := (res.Devices[0].StepMillis + res.Devices[1].StepMillis) / 2; math.Abs(float64(res.StepTime.Microseconds())/1000-mean) > 0.002 {
		t.Errorf("run's step time %v; the two spans' (2 steps each) average %.3f ms", res.StepTime, mean)
	}
	if st, err = readState(mustLatest(t, out)); err != nil || len(st.Devices) != 2 || st.Devices[1].FromStep != 3 ||
		st.Devices[1].PeakMemoryBytes != res.Devices[1].PeakMemoryBytes {
		t.Errorf("the last checkpoint's device_history %+v (%v); want both spans, the CPU's with its peak %d", st.Devices, err, res.Devices[1].PeakMemoryBytes)
	}
	cpuPeak := res.Devices[1].PeakMemoryBytes

	// Longer, on the same CPU: no note, no new span.
	res, msgs = run(cpu, 6, true)
	for _, m := range msgs.got {
		if strings.Contains(m, "another backend") || strings.Contains(m, "another device") {
			t.Errorf("resume on the same device: %q", m)
		}
	}
	if len(res.Devices) != 2 || res.Devices[1].FromStep != 3 {
		t.Errorf("devices after a resume on the same device: %+v; want the two spans", res.Devices)
	}
	// The span's peak is the larger of the two processes'.
	if p := res.Devices[1].PeakMemoryBytes; p != max(cpuPeak, res.Memory.TrainPeakInUse) {
		t.Errorf("the CPU span's peak after a resume on it: %d; want the larger of the earlier %d and this run's %d", p, cpuPeak, res.Memory.TrainPeakInUse)
	}
	// Another device of the same backend: "another device".
	if note := deviceNote("ckpt", []DeviceSpan{{FromStep: 1, Backend: "cuda", Device: "A100"}}, 1, DeviceSpan{Backend: "cuda", Device: "H200"}); !strings.Contains(note, "on another device: its step 1 trained on cuda (A100), and it goes on on cuda (H200)") {
		t.Errorf("another device of the same backend: note %q", note)
	}
}

// mustLatest returns the newest checkpoint in out.
func mustLatest(t *testing.T, out string) string {
	t.Helper()
	dir, err := LatestCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDeviceTimes checks the spans' step times against sums worked by
// hand: steps 1 and 2 (10 and 20 ms, 100 tokens each) on one device, step
// 3 recorded on another (30 ms, 300 tokens), and steps 4 and 5 trained
// by this run on that one (60 ms in all, 400 tokens); an evaluation
// record counts for nothing.
func TestDeviceTimes(t *testing.T) {
	loss := 1.0
	kept := []Record{
		{Step: 0, EvalLoss: &loss},
		{Step: 1, Loss: &loss, StepMillis: 10, Tokens: 100},
		{Step: 2, Loss: &loss, StepMillis: 20, Tokens: 100},
		{Step: 2, EvalLoss: &loss},
		{Step: 3, Loss: &loss, StepMillis: 30, Tokens: 300},
	}
	spans := []DeviceSpan{{FromStep: 1, Backend: "a"}, {FromStep: 3, Backend: "b"}}
	got := deviceTimes(spans, kept, 3, 5, 60*time.Millisecond, 400)
	want := []DeviceSpan{{FromStep: 1, Backend: "a", StepMillis: 15, TokensPerSec: 200 / 0.030}, {FromStep: 3, Backend: "b", StepMillis: 30, TokensPerSec: 700 / 0.090}}
	for i := range want {
		if got[i].FromStep != want[i].FromStep || math.Abs(got[i].StepMillis-want[i].StepMillis) > 1e-9 || math.Abs(got[i].TokensPerSec-want[i].TokensPerSec) > 1e-6 {
			t.Errorf("span %d: %+v; want %+v", i, got[i], want[i])
		}
	}
	if spans[0].StepMillis != 0 {
		t.Error("deviceTimes changed its argument")
	}
}

// emulatedGPU is what the CUDA backend's Device says on its emulated
// device (backend/cuda's TestKernelCache pins it), and what a checkpoint
// made at 44e7151, before Device left out where the kernels came from,
// recorded for it: oldDeviceHistory, copied from that checkpoint's
// state.json, where train had taken out of "…; driver CUDA 12.8, cuBLAS
// 12, NVRTC 12.8; kernels compiled by NVRTC, cached in /root/.cache/sora/
// cuda/kernels-sm_80-….cubin; matmul fp32" the kernels' clause.
const (
	emulatedGPU      = "Emulated GPU, compute capability 8.0, 1.0 GiB, 2 SMs; driver CUDA 12.8, cuBLAS 12, NVRTC 12.8; matmul fp32"
	oldDeviceHistory = `[
    {
      "from_step": 1,
      "backend": "cuda",
      "device": "Emulated GPU, compute capability 8.0, 1.0 GiB, 2 SMs; driver CUDA 12.8, cuBLAS 12, NVRTC 12.8; matmul fp32"
    }
  ]`
)

// TestResumeFromOldCheckpoint resumes a run from a checkpoint whose
// device_history an older sora wrote, on the device it names as its
// backend describes it now: the resume goes on with no note and no new
// span. On the same GPU in another matrix-product mode it notes the
// change.
func TestResumeFromOldCheckpoint(t *testing.T) {
	cpu := openCPU(t)
	seqs := randomSeqs(8, tinyConfig().VocabSize, 5)
	gpu := renamed{cpu, "cuda", emulatedGPU}
	for _, c := range []struct {
		now      string
		wantNote bool
	}{
		{emulatedGPU, false},
		{strings.Replace(emulatedGPU, "matmul fp32", "matmul tf32", 1), true},
	} {
		out := t.TempDir()
		run := func(b backend.Backend, resume bool) (*Result, *messages, error) {
			_, pm := tinyModel(t, b, peft.LoRA, 1)
			msgs := &messages{}
			tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Progress: msgs,
				Options: Options{Steps: 3, Batch: 2, LR: 1e-2, Seed: 3, Out: out, Resume: resume, NoSpectra: true, SaveEvery: 1}}
			stopAt := -1
			if !resume {
				stopAt = 1
			}
			res, err := runStoppingAt(tr, stopAt)
			return res, msgs, err
		}
		if _, _, err := run(gpu, false); !IsInterrupted(err) {
			t.Fatalf("first run: %v; want it interrupted after step 2", err)
		}
		// The checkpoint's device_history as the older sora wrote it.
		path := filepath.Join(mustLatest(t, out), stateFile)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var state map[string]json.RawMessage
		if err := json.Unmarshal(raw, &state); err != nil {
			t.Fatal(err)
		}
		state["device_history"] = json.RawMessage(oldDeviceHistory)
		if raw, err = json.Marshal(state); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}

		res, msgs, err := run(renamed{cpu, "cuda", c.now}, true)
		if err != nil {
			t.Fatal(err)
		}
		var notes []string
		for _, m := range msgs.got {
			if strings.Contains(m, "on another device") || strings.Contains(m, "on another backend") {
				notes = append(notes, m)
			}
		}
		if got := len(notes) > 0; got != c.wantNote {
			t.Errorf("resume on %q: notes %q; want a note: %v", c.now, notes, c.wantNote)
		}
		want := []DeviceSpan{{FromStep: 1, Backend: "cuda", Device: emulatedGPU}}
		if c.wantNote {
			want = append(want, DeviceSpan{FromStep: 3, Backend: "cuda", Device: c.now})
		}
		if len(res.Devices) != len(want) {
			t.Fatalf("resume on %q: devices %+v; want %+v", c.now, res.Devices, want)
		}
		for i, d := range res.Devices {
			if d.FromStep != want[i].FromStep || d.Backend != want[i].Backend || d.Device != want[i].Device {
				t.Errorf("resume on %q: span %d is %+v; want %+v", c.now, i, d, want[i])
			}
		}
	}
}
