package cuda

import (
	"strings"
	"testing"

	"github.com/sora-go/sora/conformance"
)

// TestConformanceEmulated runs every case of the conformance suite on the
// emulated device (see emulator_test.go): the kernels' arithmetic, the
// cuBLAS mapping and the host code, against the suite's float64
// references, guards and sticky-error checks. It is not a substitute for
// the suite on a GPU.
func TestConformanceEmulated(t *testing.T) {
	b := openFake(t, Options{})
	cases := conformance.Cases()
	if testing.Short() {
		var keep []conformance.Case
		for _, c := range cases {
			if !strings.HasPrefix(c.Name, "grad/") {
				keep = append(keep, c)
			}
		}
		cases = keep
	}
	passed := 0
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			out := conformance.RunCase(b, c, conformance.DefaultSeed)
			switch out.Status {
			case conformance.Passed:
				passed++
			case conformance.Skipped:
				if !conformance.SkippedOptional(b, c) {
					t.Errorf("skipped: %s (the backend supports every op but the optional ones)", out.Reason)
				}
			default:
				t.Errorf("%v", out)
			}
		})
	}
	t.Logf("%d of %d cases passed on the emulated device", passed, len(cases))
}
