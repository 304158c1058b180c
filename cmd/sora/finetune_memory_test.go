package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/hostmem"
)

// TestFinetuneMemory runs a small fine-tuning on the CPU with an
// evaluation set: run.json records the backend's peak, at least the
// weights of the model (every parameter is a float32 tensor the backend
// holds throughout) and no smaller than the training steps' peak, with
// reserved above in use on the CPU (its scratch between ops), and the
// summary prints both with what it leaves out. A run on a backend that keeps no peaks (the CPU
// behind a wrapper) records none and prints no line.
func TestFinetuneMemory(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath, evalPath := writeBoolQPair(t, dir, 8, 4)
	args := func(be, out string) []string {
		return []string{"finetune", "--backend", be, "--model", model, "--tokenizer", tok, "--data", trainPath, "--eval-data", evalPath,
			"--method", "lora", "--steps", "2", "--batch", "2", "--no-spectrum", "--out", out}
	}
	out := filepath.Join(dir, "cpu")
	code, stdout, errOut := runCLI(t, args("cpu", out)...)
	if code != exitOK {
		t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
	}
	var sum runSummary
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	weights := 4 * sum.Total
	if sum.PeakMemoryBytes < weights || sum.TrainPeakMemoryBytes < weights || sum.TrainPeakMemoryBytes > sum.PeakMemoryBytes ||
		sum.PeakReservedBytes <= sum.PeakMemoryBytes || sum.TrainPeakReservedBytes <= sum.TrainPeakMemoryBytes || sum.DeviceMemoryBytes != 0 {
		t.Errorf("run.json's memory: peak %d (reserved %d), training steps %d (reserved %d), device %d; want the peaks at least the %d bytes of the model's %d float32 parameters, the run's no smaller than the steps', reserved above in use (the backend's scratch), no device total",
			sum.PeakMemoryBytes, sum.PeakReservedBytes, sum.TrainPeakMemoryBytes, sum.TrainPeakReservedBytes, sum.DeviceMemoryBytes, weights, sum.Total)
	}
	line := "peak memory on cpu: " + hostmem.FormatSize(sum.PeakMemoryBytes) + " held by tensors, " + hostmem.FormatSize(sum.PeakReservedBytes) + " reserved (training steps: " +
		hostmem.FormatSize(sum.TrainPeakMemoryBytes) + ", " + hostmem.FormatSize(sum.TrainPeakReservedBytes) + " reserved); the Go heap beside them"
	if strings.Count(stdout, line) != 1 {
		t.Errorf("the summary lacks (once) %q:\n%s", line, stdout)
	}
	// The field names users read.
	raw, err := os.ReadFile(filepath.Join(out, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"peak_memory_bytes", "peak_reserved_bytes", "train_peak_memory_bytes", "train_peak_reserved_bytes"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("run.json lacks %s", k)
		}
	}

	out = filepath.Join(dir, "wrapped")
	code, stdout, errOut = runCLI(t, args(testOtherCPU, out)...)
	if code != exitOK {
		t.Fatalf("wrapped CPU: status %d\n%s\n%s", code, stdout, errOut)
	}
	sum = runSummary{}
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	if sum.PeakMemoryBytes != 0 || sum.TrainPeakMemoryBytes != 0 || strings.Contains(stdout, "peak memory") {
		t.Errorf("a backend without peaks: run.json's peak %d, training %d; output:\n%s", sum.PeakMemoryBytes, sum.TrainPeakMemoryBytes, stdout)
	}
}

// TestMemoryLine: reserved is said where it differs from in use, the
// device's total where known, the training steps where some trained,
// and the CPU's caveat only on the CPU.
func TestMemoryLine(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		name                                      string
		inUse, reserved, trainIn, trainRes, total int64
		want                                      string
	}{
		{"cuda", 3 * gib, 4 * gib, 2 * gib, 4 * gib, 140 * gib,
			"peak memory on cuda: 3.0 GiB held by tensors, 4.0 GiB reserved, of the device's 140.0 GiB (training steps: 2.0 GiB, 4.0 GiB reserved)"},
		{"ascend", 3 * gib, 3 * gib, 0, 0, 0, "peak memory on ascend: 3.0 GiB held by tensors"},
		{"cpu", 1 << 20, 1 << 20, 1 << 19, 1 << 19, 0,
			"peak memory on cpu: 1.0 MiB held by tensors (training steps: 512.0 KiB); the Go heap beside them (the tokenizer, the data, the model file while it loads) is not counted"},
	} {
		if got := memoryLine(tc.name, tc.inUse, tc.reserved, tc.trainIn, tc.trainRes, tc.total); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}
