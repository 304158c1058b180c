package ascend

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/ascend/acltest"
)

func TestProbe(t *testing.T) {
	_, d := openDouble(t, Options{})
	desc, err := driver{}.Probe()
	if err != nil || !strings.Contains(desc, "1 device(s)") || !strings.Contains(desc, "operators from libopapi.so") ||
		!strings.HasPrefix(desc, acltest.DefaultSocName+",") {
		t.Fatalf("Probe = %q, %v", desc, err)
	}
	d.SetDeviceCount(0)
	defer d.SetDeviceCount(1)
	_, err = driver{}.Probe()
	if !backend.IsUnavailable(err) || !strings.Contains(err.Error(), "no Ascend device") {
		t.Fatalf("Probe with no device: %v", err)
	}
}

func TestRegistered(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	b, err := backend.Open("ascend")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Name() != "ascend" {
		t.Errorf("Name() = %q", b.Name())
	}
	for _, op := range backend.AllOps {
		if !b.Supports(op) {
			t.Errorf("Supports(%s) = false", op)
		}
	}
	if b.Supports("no_such_op") {
		t.Error("Supports an unknown op")
	}
}

// TestFinalize runs in a child process: aclFinalize ends ACL for the
// process (the double, unlike CANN, then allows aclInit again).
func TestFinalize(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	if os.Getenv("ACLTEST_CHILD") == "finalize" {
		b, err := Open(Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := Finalize(); err != nil {
			t.Fatalf("Finalize: %v", err)
		}
		if err := Finalize(); err != nil {
			t.Fatalf("second Finalize (no-op): %v", err)
		}
		return
	}
	if os.Getenv("ACLTEST_CHILD") != "" {
		t.Skip("child process for another test")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFinalize$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "ACLTEST_CHILD=finalize", "SORA_ASCEND_PATH="+doubleDir)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS: TestFinalize") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestUseAfterClose(t *testing.T) {
	b, _ := openDouble(t, Options{})
	x := upload(t, b, []float32{1, 2}, 2)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	b.Free(x) // nothing left to free: no error
	if _, err := b.Alloc(backend.Float32, 2); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Alloc after Close: %v", err)
	}
	b.Unary(backend.Exp, x, x)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("op after Close: %v", err)
	}
	if err := b.Download(make([]float32, 2), x); err == nil {
		t.Error("Download after Close succeeded")
	}
}
