package cpu_test

import (
	"io"
	"testing"

	"github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/conformance"
)

// TestConformanceKernelSets runs the conformance suite with each row kernel
// set this CPU runs. The conformance package's own tests and "sora
// conformance" cover the sets a backend picks by default (the best one, or
// the portable one with SORA_CPU_PORTABLE=1); this covers the others, such
// as the AVX2 kernels on a CPU that also has AVX-512.
func TestConformanceKernelSets(t *testing.T) {
	if testing.Short() {
		t.Skip("the conformance suite per kernel set takes seconds; skipped with -short")
	}
	for _, name := range cpu.KernelSets() {
		t.Run(name, func(t *testing.T) {
			be := cpu.New(cpu.Options{Portable: name == "go"})
			defer be.Close()
			if err := cpu.UseKernels(be, name); err != nil {
				t.Fatal(err)
			}
			sum, err := conformance.Run(be, io.Discard, conformance.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Failed > 0 || sum.Passed == 0 {
				t.Errorf("kernel set %s: %v", name, sum)
			}
			t.Logf("kernel set %s: %v", name, sum)
		})
	}
}
