package acltest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompilerFromCC(t *testing.T) {
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
