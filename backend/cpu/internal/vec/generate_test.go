package vec

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedFilesUpToDate reruns the generators and checks that the
// committed coeffs.go, kernels_amd64.s and stubs_amd64.go are what they
// produce, so that the assembly, its Go declarations and the fitted
// coefficients cannot drift from their sources.
func TestGeneratedFilesUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generators with the go tool; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	dir := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(goTool, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, stderr.Bytes())
		}
		return out
	}
	same := func(name string, got []byte) {
		t.Helper()
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what its generator writes now; rerun go generate", name)
		}
	}
	run("run", "gen_amd64.go", "-dir", dir)
	for _, name := range []string{"kernels_amd64.s", "stubs_amd64.go"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		same(name, got)
	}
	same("coeffs.go", run("run", "fit_coeffs.go"))
}
