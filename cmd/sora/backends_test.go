package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	cpuBackend "github.com/sora-go/sora/backend/cpu"
)

// testKernels is a backend registered in the tests only: the CPU backend
// saying where its kernels came from, as the CUDA backend does.
const testKernels = "test-kernels"

type kernelsDriver struct{}

func (kernelsDriver) Probe() (string, error) { return "the CPU with compiled kernels", nil }

func (kernelsDriver) Open() (backend.Backend, error) {
	b, err := backend.Open("cpu")
	if err != nil {
		return nil, err
	}
	return withKernels{b, "cached in /cache/kernels-sm_90.cubin"}, nil
}

type withKernels struct {
	backend.Backend
	origin string
}

func (withKernels) Name() string      { return testKernels }
func (k withKernels) Kernels() string { return k.origin }

func init() { backend.Register(testKernels, kernelsDriver{}) }

// TestDeviceLine checks what the lines that name the device (sora
// finetune's model: line, the bench commands' backend line) say of it: the
// backend's Device, with where the kernels came from for a backend that
// says so, and the threads of one that shares work among goroutines (the
// CPU's, which its Device leaves out).
func TestDeviceLine(t *testing.T) {
	cpu, err := backend.Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	for _, c := range []struct {
		name string
		b    backend.Backend
		want string
	}{
		{"cpu", cpuBackend.New(cpuBackend.Options{Threads: 3}), cpu.Device() + ", 3 threads"},
		{"one thread", cpuBackend.New(cpuBackend.Options{Threads: 1}), cpu.Device() + ", 1 thread"},
		{"compiled", withKernels{cpu, "compiled by NVRTC, cached in /c/k.cubin"}, cpu.Device() + "; kernels compiled by NVRTC, cached in /c/k.cubin"},
		{"no origin", withKernels{cpu, ""}, cpu.Device()},
	} {
		if got := deviceLine(c.b); got != c.want {
			t.Errorf("%s: deviceLine = %q, want %q", c.name, got, c.want)
		}
	}
}

// TestFinetuneKernelsOrigin runs sora finetune on a backend that says
// where its kernels came from: the model: line says it, and run.json's
// device, which a resume compares, does not.
func TestFinetuneKernelsOrigin(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "train.json")
	writeBoolQ(t, data, 8)
	out := filepath.Join(dir, "run")
	code, stdout, errOut := runCLI(t, "finetune", "--backend", testKernels, "--model", model, "--tokenizer", tok, "--data", data,
		"--steps", "1", "--batch", "2", "--no-spectrum", "--out", out)
	if code != exitOK {
		t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
	}
	cpu, err := backend.Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	if want := " on " + cpu.Device() + "; kernels cached in /cache/kernels-sm_90.cubin\n"; !strings.Contains(stdout, want) {
		t.Errorf("stdout lacks %q:\n%s", want, stdout)
	}
	var sum runSummary
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	if sum.Device != cpu.Device() {
		t.Errorf("run.json's device %q; want the backend's Device, %q", sum.Device, cpu.Device())
	}
}

// TestCPUEnvNames checks that the variables the CLI names in its help and
// sets for --threads are the ones the CPU backend reads (the CLI keeps its
// own copies so as not to import a concrete backend).
func TestCPUEnvNames(t *testing.T) {
	for _, c := range []struct{ cli, backend string }{
		{cpuThreadsEnv, cpuBackend.EnvThreads},
		{cpuGemmKernelEnv, cpuBackend.EnvGemmKernel},
		{cpuRowKernelsEnv, cpuBackend.EnvRowKernels},
	} {
		if c.cli != c.backend {
			t.Errorf("the CLI names $%s where the CPU backend reads $%s", c.cli, c.backend)
		}
	}
}
