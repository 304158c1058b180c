package conformance_test

import (
	"errors"
	"flag"
	"testing"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/ascend"
	"github.com/sora-go/sora/backend/ascend/acltest"
	_ "github.com/sora-go/sora/backend/cpu"
	_ "github.com/sora-go/sora/backend/cuda"
	"github.com/sora-go/sora/conformance"
)

var (
	backendName = flag.String("backend", "cpu", "registered backend to check (see \"sora backends\")")
	seed        = flag.Int64("seed", 0, "seed of the random inputs (0: the fixed default)")
)

// openBackend opens the backend named by -backend, skipping the test with
// the reason when it is unavailable here.
func openBackend(t *testing.T, name string) backend.Backend {
	t.Helper()
	b, err := backend.Open(name)
	if name == "ascend" && backend.IsUnavailable(err) {
		// No Ascend libraries here: run through the ACL test double, built
		// with the system C compiler. Real libraries, when present, win.
		if _, derr := acltest.UseDouble(t.TempDir()); derr == nil {
			t.Log("no Ascend libraries: using the ACL test double")
			b, err = backend.Open(name)
		} else if !errors.Is(derr, acltest.ErrNoCompiler) {
			t.Fatal(derr)
		}
	}
	if err != nil {
		if backend.IsUnavailable(err) {
			t.Skipf("backend %s: %v", name, err)
		}
		t.Fatalf("opening backend %s: %v", name, err)
	}
	if b == nil {
		t.Fatalf("opening backend %s: Open returned neither a backend nor an error", name)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// TestConformance runs every registered case against the backend named by
// -backend, one subtest per case, so that -run selects cases by name:
//
//	go test ./conformance -backend=cpu -run 'TestConformance/softmax/'
func TestConformance(t *testing.T) {
	b := openBackend(t, *backendName)
	t.Logf("backend %s: %s", b.Name(), b.Device())
	var sum conformance.Summary
	for _, c := range conformance.Cases() {
		t.Run(c.Name, func(t *testing.T) {
			o := conformance.RunCase(b, c, *seed)
			switch o.Status {
			case conformance.Skipped:
				sum.Skipped++
				t.Skip(o.Reason)
			case conformance.Failed:
				sum.Failed++
				t.Error(o.Reason)
			default:
				sum.Passed++
				if testing.Verbose() {
					t.Log(o)
				}
			}
		})
	}
	t.Logf("backend %s: %s", b.Name(), sum)
}

// TestCaseCount checks that the suite is as broad as promised: at least
// 150 cases, and cases for every op of the interface.
func TestCaseCount(t *testing.T) {
	cases := conformance.Cases()
	if len(cases) < 150 {
		t.Errorf("%d cases registered, want at least 150", len(cases))
	}
	perOp := map[backend.Op]int{}
	for _, c := range cases {
		perOp[c.Op]++
	}
	for _, op := range append(backend.AllOps, backend.OptionalOps...) {
		if perOp[op] == 0 {
			t.Errorf("no case checks op %s", op)
		}
	}
	if perOp[""] == 0 {
		t.Errorf("no case checks Upload/Download alone")
	}
	t.Logf("%d cases", len(cases))
}
