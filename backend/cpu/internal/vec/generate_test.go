package vec

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/klauspost/cpuid/v2"
)

// TestGeneratedFilesUpToDate reruns the generators and checks that the
// committed coeffs.go, kernels_amd64.s, stubs_amd64.go, kernels_arm64.s
// and stubs_arm64.go are what they produce, so that the assembly, its Go
// declarations and the fitted coefficients cannot drift from their
// sources. coeffs.go is compared only where fit_coeffs.go reproduces it
// (see there): built for GOAMD64=v1, whatever this test was built for,
// and run on an amd64 CPU with FMA.
func TestGeneratedFilesUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generators with the go tool; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	dir := t.TempDir()
	run := func(env []string, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(goTool, args...)
		// The generators run on this machine, whatever the test was
		// built for (GOARCH=arm64 under an emulator, say): empty, the
		// variables mean the host's.
		host := []string{"GOOS=", "GOARCH="}
		cmd.Env = append(append(os.Environ(), host...), env...)
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
	for gen, names := range map[string][]string{
		"gen_amd64.go": {"kernels_amd64.s", "stubs_amd64.go"},
		"gen_arm64.go": {"kernels_arm64.s", "stubs_arm64.go"},
	} {
		run(nil, "run", gen, "-dir", dir)
		for _, name := range names {
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			same(name, got)
		}
	}
	if runtime.GOARCH != "amd64" || !cpuid.CPU.Supports(cpuid.AVX, cpuid.FMA3) {
		t.Skipf("coeffs.go not compared: fit_coeffs.go reproduces it only on amd64 with FMA (GOARCH=%s)", runtime.GOARCH)
	}
	same("coeffs.go", run([]string{"GOAMD64=v1"}, "run", "fit_coeffs.go"))
}

// TestGenerateRunsARM64Generator checks that go generate, run on this
// machine for its own architecture, reruns gen_arm64.go: the NEON files
// are edited on amd64 machines, where a directive in an _arm64.go file is
// never reached (and GOARCH=arm64 go generate builds the generator for
// arm64, which the host then cannot run).
func TestGenerateRunsARM64Generator(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	cmd := exec.Command(goTool, "generate", "-n", "-run", "gen_arm64", ".")
	cmd.Env = append(os.Environ(), "GOOS=", "GOARCH=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go generate -n: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("go run gen_arm64.go")) {
		t.Errorf("go generate on this machine does not run gen_arm64.go; it would run:\n%s", out)
	}
}
