package acltest

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestCompilerFromCC(t *testing.T) {
	if unsupportedOS != "" {
		// Where the double cannot be loaded no compiler is looked for,
		// and the error says why, as ErrNoCompiler so that tests skip.
		_, err := Compiler()
		if !errors.Is(err, ErrNoCompiler) || !strings.Contains(err.Error(), runtime.GOOS) || strings.Contains(err.Error(), "no C compiler") {
			t.Fatalf("Compiler on %s: %v; want ErrNoCompiler naming the system, not a compiler", runtime.GOOS, err)
		}
		return
	}
	t.Setenv("CC", "/nonexistent/cc -O2")
	if _, err := Compiler(); !errors.Is(err, ErrNoCompiler) || !strings.Contains(err.Error(), "/nonexistent/cc") {
		t.Fatalf("Compiler with a bad CC: %v", err)
	}
	if _, err := Build(t.TempDir()); !errors.Is(err, ErrNoCompiler) {
		t.Fatalf("Build with a bad CC: %v", err)
	}
}

func TestBuildFiles(t *testing.T) {
	if _, err := Compiler(); err != nil {
		t.Skip(err)
	}
	dir, err := BuildLayout(t.TempDir(), Split)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"libascendcl.so", "libnnopbase.so", "libopapi_math.so", "libopapi_nn.so", "libopapi_transformer.so"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s missing: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "libopapi.so")); err == nil {
		t.Error("the split layout has libopapi.so")
	}
}

func TestAttachRefusesOtherLibraries(t *testing.T) {
	dir := t.TempDir()
	if _, err := Attach(dir); err == nil || !strings.Contains(err.Error(), "libascendcl.so") {
		t.Fatalf("Attach of an empty folder: %v", err)
	}
}

func TestUseDoubleKeepsSetting(t *testing.T) {
	t.Setenv("SORA_ASCEND_PATH", "/somewhere/else")
	got, err := UseDouble(t.TempDir())
	if err != nil || got != "/somewhere/else" {
		t.Fatalf("UseDouble = %q, %v; want the existing SORA_ASCEND_PATH", got, err)
	}
}

// TestCompilerTarget: a compiler that builds for another architecture than
// the test binary's is no compiler for the double (its libraries could not
// be loaded), and one for the same architecture is taken. The compilers
// are shell scripts that answer -dumpmachine as gcc does.
func TestCompilerTarget(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the stand-in compilers are shell scripts")
	}
	triples := map[string]string{"amd64": "x86_64-linux-gnu", "386": "i686-linux-gnu", "arm64": "aarch64-linux-gnu"}
	own, ok := triples[runtime.GOARCH]
	if !ok {
		t.Skipf("no target triple known for GOARCH %s here", runtime.GOARCH)
	}
	other := triples["386"]
	if runtime.GOARCH == "386" {
		other = triples["amd64"]
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name, triple string
		wrong        bool
	}{
		{"same", own, false},
		{"other", other, true},
		{"unknown", "mystery-unknown-elf", false}, // cannot tell: the build decides
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := filepath.Join(dir, "cc-"+tc.name)
			if err := os.WriteFile(cc, []byte("#!/bin/sh\necho "+tc.triple+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("CC", cc)
			got, err := Compiler()
			if !tc.wrong {
				if err != nil || got != cc {
					t.Fatalf("Compiler() = %q, %v; want %s", got, err, cc)
				}
				return
			}
			if !errors.Is(err, ErrNoCompiler) || !strings.Contains(err.Error(), cc) || !strings.Contains(err.Error(), tc.triple) ||
				!strings.Contains(err.Error(), "GOARCH "+runtime.GOARCH) {
				t.Fatalf("Compiler() = %q, %v; want ErrNoCompiler naming %s, %s and GOARCH %s", got, err, cc, tc.triple, runtime.GOARCH)
			}
		})
	}
	for triple, want := range map[string]string{"x86_64-pc-linux-gnu": "amd64", "i386-linux-gnu": "386", "arm64-apple-darwin23.0.0": "arm64",
		"powerpc64le-linux-gnu": "ppc64le", "loongarch64-linux-gnu": "loong64", "riscv64-linux-gnu": "riscv64", "sparc-sun-solaris": ""} {
		if got := tripleGOARCH(triple); got != want {
			t.Errorf("tripleGOARCH(%q) = %q, want %q", triple, got, want)
		}
	}
}
