package cuda

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// The Windows loader, on kernel32.dll, which every Windows (and Wine) has,
// as TestLinkerFallback uses libm on Linux: by folder, by name through
// the system's search, missing symbols, an absent DLL, a file that is no
// DLL, and calls through the loaded addresses.
func TestWindowsLoader(t *testing.T) {
	sys := filepath.Join(os.Getenv("SystemRoot"), "System32")
	kernel32 := filepath.Join(sys, "kernel32.dll")
	env := searchEnv{getenv: os.Getenv, goos: runtime.GOOS, goarch: runtime.GOARCH}
	spec := libSpec{role: "the kernel", candidates: []candidate{{name: "kernel32.dll"}}, symbols: []string{"MulDiv", "lstrlenA"}}

	out := load(spec, []searchDir{{path: sys}}, env, majorCap{})
	if out.lib == nil {
		t.Fatalf("kernel32.dll not loaded from %s: %q", sys, out.problems)
	}
	if !strings.EqualFold(out.lib.path, kernel32) {
		t.Errorf("loaded from %q, want %q", out.lib.path, kernel32)
	}
	// The addresses work with the package's two ways of calling C.
	if got := int32(syscallN(out.lib.sym("MulDiv"), 6, 7, 2)); got != 21 {
		t.Errorf("MulDiv(6, 7, 2) through syscallN = %d, want 21", got)
	}
	var strlen func(s *byte) int32
	registerFunc(&strlen, out.lib.sym("lstrlenA"))
	if got := strlen(unsafe.StringData("sora\x00")); got != 4 {
		t.Errorf(`lstrlenA("sora") through registerFunc = %d, want 4`, got)
	}

	// By name, through LoadLibrary's search; the path comes from the loader.
	env.linker = true
	out = load(spec, nil, env, majorCap{})
	if out.lib == nil {
		t.Fatalf("kernel32.dll not loaded by name: %q", out.problems)
	}
	if !strings.EqualFold(out.lib.path, kernel32) {
		t.Errorf("loaded by name from %q, want %q (GetModuleFileNameW)", out.lib.path, kernel32)
	}

	spec.symbols = []string{"MulDiv", "sora_no_such_symbol", "lstrlenA", "sora_nor_this"}
	out = load(spec, nil, env, majorCap{})
	if out.lib != nil || len(out.problems) != 1 || !strings.HasSuffix(out.problems[0], " lacks symbols sora_no_such_symbol, sora_nor_this") {
		t.Errorf("with missing symbols: lib %v, problems %q", out.lib, out.problems)
	}

	spec.candidates = []candidate{{name: "sora-no-such-library.dll"}}
	if out = load(spec, nil, env, majorCap{}); out.lib != nil || out.found || len(out.problems) != 0 {
		t.Errorf("absent DLL: lib %v, found %v, problems %q", out.lib, out.found, out.problems)
	}

	dir := t.TempDir()
	fake := filepath.Join(dir, "nvcuda.dll")
	if err := os.WriteFile(fake, []byte("not a DLL"), 0o644); err != nil {
		t.Fatal(err)
	}
	env.linker = false
	out = load(driverSpecWindows, []searchDir{{path: dir}}, env, majorCap{})
	if out.lib != nil || !out.found || len(out.problems) != 1 || !strings.HasPrefix(out.problems[0], fake+": ") {
		t.Errorf("a file that is no DLL: lib %v, found %v, problems %q; want one problem starting %q", out.lib, out.found, out.problems, fake+": ")
	}
	t.Logf("a file that is no DLL: %s", out.problems)
}
