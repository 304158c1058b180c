package cuda

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests run the Windows search on any system: only loading differs
// by build, and the folders here hold no loadable files.

// winEnv is a Windows search confined to the given variables.
func winEnv(goarch string, vars map[string]string) searchEnv {
	return searchEnv{getenv: func(k string) string { return vars[k] }, goos: "windows", goarch: goarch}
}

func labels(dirs []searchDir) []string {
	var out []string
	for _, d := range dirs {
		out = append(out, d.label())
	}
	return out
}

func TestWindowsSearchDirsOrder(t *testing.T) {
	tmp := t.TempDir()
	j := func(p ...string) string { return filepath.Join(append([]string{tmp}, p...)...) }
	toolkits := j("pf", "NVIDIA GPU Computing Toolkit", "CUDA")
	site := j("venv", "Lib", "site-packages", "nvidia")
	mkdirs(t,
		j("sora", "bin", "x64"), j("sora", "bin", "arm64"),
		j("cuda13", "bin", "x64"), j("cudahome"), j("path2"),
		filepath.Join(toolkits, "v12.8", "bin"), filepath.Join(toolkits, "v13.0", "bin", "x64"), filepath.Join(toolkits, "v9.2"),
		j("win", "System32"),
		filepath.Join(site, "cublas", "bin"), filepath.Join(site, "cu13", "bin", "x86_64"), filepath.Join(site, "cu13", "lib"),
		j("conda", "Library", "bin"),
	)
	touch(t, j("path1", "cublas64_12.dll"), j("path3", "nvcuda.dll"))
	list := func(p ...string) string { return strings.Join(p, string(filepath.ListSeparator)) }
	vars := map[string]string{
		"SORA_CUDA_PATH": list(j("sora"), j("typo")),
		"CUDA_HOME":      j("cudahome"),
		"CUDA_PATH":      j("cuda13"),
		// path2 holds no NVIDIA library and path4 does not exist: neither
		// is listed.
		"PATH":         list(j("path1"), j("path2"), j("path4"), j("path3")),
		"ProgramFiles": j("pf"),
		"SystemRoot":   j("win"),
		"VIRTUAL_ENV":  j("venv"),
		"CONDA_PREFIX": j("conda"),
	}
	want := []string{
		j("sora") + " ($SORA_CUDA_PATH)",
		j("sora", "bin", "x64") + " ($SORA_CUDA_PATH)",
		j("sora", "bin") + " ($SORA_CUDA_PATH)",
		j("typo") + " ($SORA_CUDA_PATH) (no such folder)",
		j("cudahome", "bin") + " ($CUDA_HOME) (no such folder)",
		j("cuda13", "bin", "x64") + " ($CUDA_PATH)",
		j("cuda13", "bin") + " ($CUDA_PATH)",
		j("path1") + " ($PATH)",
		j("path3") + " ($PATH)",
		filepath.Join(toolkits, "v13.0", "bin", "x64"),
		filepath.Join(toolkits, "v13.0", "bin"),
		filepath.Join(toolkits, "v12.8", "bin"),
		j("win", "System32"),
		filepath.Join(site, "cublas", "bin") + " ($VIRTUAL_ENV)",
		filepath.Join(site, "cu13", "bin", "x86_64") + " ($VIRTUAL_ENV)",
		filepath.Join(site, "cu13", "bin") + " ($VIRTUAL_ENV)",
		j("conda", "Library", "bin") + " ($CONDA_PREFIX)",
	}
	env := winEnv("amd64", vars)
	dirs := env.searchDirs()
	if got := labels(dirs); !slices.Equal(got, want) {
		t.Errorf("windows/amd64 folders:\n got %q\nwant %q", got, want)
	}
	for _, d := range dirs {
		if want := strings.Contains(d.path, filepath.Join("site-packages", "nvidia")); d.python != want {
			t.Errorf("%s: python = %v, want %v", d.path, d.python, want)
		}
	}
	// Python folders were found, so the tried list does not add the line
	// saying none were.
	if tried := triedList(dirs, env); slices.ContainsFunc(tried, func(s string) bool { return strings.HasPrefix(s, "Python") }) {
		t.Errorf("tried list %q mentions Python although folders were found", tried)
	}

	// On arm64 the toolkit's and the wheels' arm64 folders are searched.
	got := labels(winEnv("arm64", vars).searchDirs())
	if !slices.Contains(got, j("sora", "bin", "arm64")+" ($SORA_CUDA_PATH)") || slices.Contains(got, j("sora", "bin", "x64")+" ($SORA_CUDA_PATH)") {
		t.Errorf("windows/arm64 folders %q: want sora/bin/arm64 and not sora/bin/x64", got)
	}
	if slices.Contains(got, filepath.Join(site, "cu13", "bin", "x86_64")+" ($VIRTUAL_ENV)") {
		t.Errorf("windows/arm64 folders %q include the x86_64 wheel folder", got)
	}
}

func TestWindowsProbeNothingFound(t *testing.T) {
	tmp := t.TempDir()
	sys := filepath.Join(tmp, "System32")
	mkdirs(t, sys)
	env := winEnv("amd64", map[string]string{"SystemRoot": tmp})
	_, u := probeErr(t, env)
	wantReason := "nvcuda.dll (the NVIDIA driver API) not found; " +
		"cublas64_13.dll or cublas64_12.dll (cuBLAS) not found; " +
		"nvrtc64_130_0.dll or nvrtc64_120_0.dll (NVRTC) not found; " +
		"set SORA_CUDA_PATH to the folder that holds the missing libraries"
	if u.Reason != wantReason {
		t.Errorf("reason:\n got %q\nwant %q", u.Reason, wantReason)
	}
	wantTried := []string{sys, `Python environments (no nvidia\*\bin folder found)`}
	if !slices.Equal(u.Tried, wantTried) {
		t.Errorf("tried:\n got %q\nwant %q", u.Tried, wantTried)
	}
	env.linker = true
	if tried := triedList(env.searchDirs(), env); tried[len(tried)-1] != "the system's DLL search by name (LoadLibrary)" {
		t.Errorf("tried list %q does not end with LoadLibrary's search", tried)
	}
}

// TestWindowsCompanions: the Windows names of cuBLAS's and NVRTC's
// companions are looked for, and the CUDA version the driver supports
// is respected, as on Linux.
func TestWindowsCompanions(t *testing.T) {
	dir := t.TempDir()
	touch(t, filepath.Join(dir, "cublas64_12.dll"), filepath.Join(dir, "nvrtc64_130_0.dll"), filepath.Join(dir, "nvrtc-builtins64_130.dll"), filepath.Join(dir, "nvrtc64_120_0.dll"))
	env := winEnv("amd64", map[string]string{"SORA_CUDA_PATH": dir})
	dirs := env.searchDirs()
	_, blas, rtc := env.specs()

	out := load(blas, dirs, env, libraryCap(12000, 0, 0))
	want := []string{filepath.Join(dir, "cublas64_12.dll") + " needs cublasLt64_12.dll, which is in none of the folders searched"}
	if out.lib != nil || !out.found || !slices.Equal(out.problems, want) {
		t.Errorf("cuBLAS without cublasLt: lib %v, found %v, problems %q; want %q", out.lib, out.found, out.problems, want)
	}
	out = load(rtc, dirs, env, libraryCap(12000, 0, 0))
	want = []string{
		filepath.Join(dir, "nvrtc64_130_0.dll") + " skipped: the driver supports CUDA up to 12 (install the CUDA 12 libraries, or a newer driver)",
		filepath.Join(dir, "nvrtc64_120_0.dll") + " needs nvrtc-builtins64_12*.dll, which is in none of the folders searched",
	}
	if out.lib != nil || !slices.Equal(out.problems, want) {
		t.Errorf("NVRTC: lib %v, problems %q; want %q", out.lib, out.problems, want)
	}
}

func TestUnsupportedOS(t *testing.T) {
	for _, tc := range []struct {
		goos, want string
	}{
		{"linux", ""},
		{"windows", ""},
		{"darwin", "not available on darwin: NVIDIA's CUDA runs on Linux and Windows only (the last macOS release was CUDA 10.2)"},
		{"freebsd", "not available on freebsd: NVIDIA's CUDA runs on Linux and Windows only"},
	} {
		if got := unsupportedOS(tc.goos); got != tc.want {
			t.Errorf("unsupportedOS(%q) = %q, want %q", tc.goos, got, tc.want)
		}
	}
}
