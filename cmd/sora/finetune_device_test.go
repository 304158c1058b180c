package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/train"
)

// testOtherCPU is a backend registered in the tests only: the CPU backend
// under another name and device, for runs that move between backends.
const testOtherCPU = "test-other-cpu"

type otherCPUDriver struct{}

func (otherCPUDriver) Probe() (string, error) { return "the CPU under another name", nil }

func (otherCPUDriver) Open() (backend.Backend, error) {
	b, err := backend.Open("cpu")
	if err != nil {
		return nil, err
	}
	return otherCPU{b}, nil
}

// otherCPU computes as the CPU backend it wraps.
type otherCPU struct{ backend.Backend }

func (otherCPU) Name() string   { return testOtherCPU }
func (otherCPU) Device() string { return "a CPU under another name" }

func init() { backend.Register(testOtherCPU, otherCPUDriver{}) }

// TestFinetuneResumeOnAnotherBackend trains 2 steps of a run on one
// backend and resumes it on the CPU with --steps 4 (a constant schedule
// without warm-up, so that it trains as a fresh 4-step run): the resume
// says that the backend changed, naming both and what it promises;
// run.json records from which step each backend trained, with each one's
// step time, and its mean step time is theirs over all steps; the losses
// are those of the uninterrupted run on the CPU (the other backend is the
// CPU under another name). A run on one backend throughout records no
// device history.
func TestFinetuneResumeOnAnotherBackend(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "train.json")
	writeBoolQ(t, data, 16)
	out := filepath.Join(dir, "run")
	args := func(be, out string, steps string, extra ...string) []string {
		return append([]string{"finetune", "--backend", be, "--model", model, "--tokenizer", tok, "--data", data, "--method", "lora",
			"--steps", steps, "--batch", "4", "--lr", "1e-2", "--schedule", "constant", "--warmup", "0", "--no-spectrum", "--out", out}, extra...)
	}
	if code, stdout, errOut := runCLI(t, args(testOtherCPU, out, "2")...); code != exitOK {
		t.Fatalf("first run: status %d\n%s\n%s", code, stdout, errOut)
	}
	var first runSummary
	readJSON(t, filepath.Join(out, "run.json"), &first)
	if first.DeviceHistory != nil || first.Device != "a CPU under another name" {
		t.Errorf("a run on one device: run.json's device %q, device_history %+v; want no history", first.Device, first.DeviceHistory)
	}
	code, stdout, errOut := runCLI(t, args("cpu", out, "4", "--resume")...)
	if code != exitOK {
		t.Fatalf("resume on the CPU: status %d\n%s\n%s", code, stdout, errOut)
	}
	var sum runSummary
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	for _, want := range []string{
		"on another backend: its steps 1 to 2 trained on " + testOtherCPU + " (a CPU under another name), and it goes on on cpu (" + sum.Device + ")",
		"A run goes on bit for bit only on the backend and device it was trained on",
		"; by device: steps 1 to 2 on " + testOtherCPU + ", ",
		" ms/step, steps 3 to 4 on cpu, ",
	} {
		if strings.Count(stdout, want) != 1 {
			t.Errorf("the resume's output lacks (once) %q:\n%s", want, stdout)
		}
	}
	h := sum.DeviceHistory
	if len(h) != 2 || h[0].FromStep != 1 || h[0].Backend != testOtherCPU || h[0].Device != "a CPU under another name" ||
		h[1].FromStep != 3 || h[1].Backend != "cpu" || h[1].Device != sum.Device {
		t.Fatalf("run.json's device_history %+v; want %s from step 1, cpu from step 3", h, testOtherCPU)
	}
	if mean := (h[0].StepMillis + h[1].StepMillis) / 2; !(h[0].StepMillis > 0 && h[1].StepMillis > 0) || mean-sum.StepMillis > 0.002 || sum.StepMillis-mean > 0.002 {
		t.Errorf("ms_per_step %.3f; the spans' %.3f and %.3f (2 steps each) average %.3f", sum.StepMillis, h[0].StepMillis, h[1].StepMillis, mean)
	}
	// The losses of an uninterrupted run on the CPU, bit for bit.
	fresh := filepath.Join(dir, "fresh")
	if code, stdout, errOut := runCLI(t, args("cpu", fresh, "4")...); code != exitOK {
		t.Fatalf("fresh run: status %d\n%s\n%s", code, stdout, errOut)
	}
	losses := func(out string) []float64 {
		rs, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		var l []float64
		for _, r := range rs {
			if r.Loss != nil {
				l = append(l, *r.Loss)
			}
		}
		return l
	}
	if a, b := losses(out), losses(fresh); len(a) != 4 || !slices.Equal(a, b) {
		t.Errorf("losses of the run resumed on another backend %v; of the uninterrupted run %v", a, b)
	}
}
