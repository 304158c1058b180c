package cuda

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testEnv is a search confined to root and the given variables, without
// the dynamic linker's search (which would find this machine's libraries).
func testEnv(root string, vars map[string]string) searchEnv {
	return searchEnv{
		getenv: func(k string) string { return vars[k] },
		root:   root,
		goarch: "amd64",
	}
}

func mkdirs(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// touch creates empty files: they exist, so the search finds them, but
// they are not shared objects, so dlopen rejects them.
func touch(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		mkdirs(t, filepath.Dir(p))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSearchDirsOrder(t *testing.T) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	j := filepath.Join
	sora, soraMissing := j(tmp, "sora"), j(tmp, "sora-typo")
	cudaHome, cudaPath := j(tmp, "cuda-home"), j(tmp, "cuda-path")
	ld1, ld2 := j(tmp, "ld1"), j(tmp, "ld2")
	venv, conda, home := j(tmp, "venv"), j(tmp, "conda"), j(tmp, "home")
	sep := string(filepath.ListSeparator) // ':', or ';' where the test runs on Windows
	mkdirs(t,
		sora, j(sora, "lib64"),
		j(cudaHome, "lib64"), j(cudaHome, "lib"),
		cudaPath, // no lib64 or lib: reported missing
		ld1, ld2,
		j(root, "usr/local/cuda/lib64"),
		j(root, "usr/lib/x86_64-linux-gnu"),
		j(root, "usr/lib64"),
		j(root, "usr/lib/wsl/lib"),
		j(root, "usr/lib/aarch64-linux-gnu"), // another architecture: not searched
		j(venv, "lib/python3.11/site-packages/nvidia/cublas/lib"),
		j(conda, "lib/python3.10/site-packages/nvidia/cuda_nvrtc/lib"),
		j(home, ".local/lib/python3.9/site-packages/nvidia/cublas/lib"),
		j(home, ".local/lib/python3.12/site-packages/nvidia/cu13/lib"),
		j(home, ".local/lib/python3.12/site-packages/nvidia/cu13/include"), // not a lib folder
		j(root, "usr/local/lib/python3.12/dist-packages/nvidia/cublas/lib"),
		j(root, "usr/lib/python3/dist-packages/nvidia/cuda_nvrtc/lib"),
		j(home, ".pyenv/versions/3.11.4/lib/python3.11/site-packages/nvidia/cublas/lib"),
	)
	env := testEnv(root, map[string]string{
		"SORA_CUDA_PATH":  sora + sep + soraMissing,
		"CUDA_HOME":       cudaHome,
		"CUDA_PATH":       cudaPath,
		"LD_LIBRARY_PATH": ld1 + sep + sep + ld2 + sep + sora, // the repeat of sora counts once
		"VIRTUAL_ENV":     venv,
		"CONDA_PREFIX":    conda,
		"HOME":            home,
	})
	type want struct {
		path, origin    string
		missing, python bool
	}
	wants := []want{
		{path: sora, origin: "SORA_CUDA_PATH"},
		{path: j(sora, "lib64"), origin: "SORA_CUDA_PATH"},
		{path: soraMissing, origin: "SORA_CUDA_PATH", missing: true},
		{path: j(cudaHome, "lib64"), origin: "CUDA_HOME"},
		{path: j(cudaHome, "lib"), origin: "CUDA_HOME"},
		{path: j(cudaPath, "lib64"), origin: "CUDA_PATH", missing: true},
		{path: ld1, origin: "LD_LIBRARY_PATH"},
		{path: ld2, origin: "LD_LIBRARY_PATH"},
		{path: j(root, "usr/local/cuda/lib64")},
		{path: j(root, "usr/lib/x86_64-linux-gnu")},
		{path: j(root, "usr/lib64")},
		{path: j(root, "usr/lib")},
		{path: j(root, "usr/lib/wsl/lib")},
		{path: j(venv, "lib/python3.11/site-packages/nvidia/cublas/lib"), origin: "VIRTUAL_ENV", python: true},
		{path: j(conda, "lib/python3.10/site-packages/nvidia/cuda_nvrtc/lib"), origin: "CONDA_PREFIX", python: true},
		{path: j(home, ".local/lib/python3.12/site-packages/nvidia/cu13/lib"), python: true},
		{path: j(home, ".local/lib/python3.9/site-packages/nvidia/cublas/lib"), python: true},
		{path: j(root, "usr/local/lib/python3.12/dist-packages/nvidia/cublas/lib"), python: true},
		{path: j(root, "usr/lib/python3/dist-packages/nvidia/cuda_nvrtc/lib"), python: true},
		{path: j(home, ".pyenv/versions/3.11.4/lib/python3.11/site-packages/nvidia/cublas/lib"), python: true},
		{path: j(conda, "lib"), origin: "CONDA_PREFIX"},
	}
	got := env.searchDirs()
	var gotW []want
	for _, d := range got {
		gotW = append(gotW, want{d.path, d.origin, d.missing, d.python})
	}
	if !slices.Equal(gotW, wants) {
		t.Errorf("search order:\ngot:")
		for _, g := range gotW {
			t.Errorf("  %+v", g)
		}
		t.Errorf("want:")
		for _, w := range wants {
			t.Errorf("  %+v", w)
		}
	}
}

func TestSearchDirsSkipsSymlinkedDuplicates(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	mkdirs(t, real, filepath.Join(root, "lib"))
	// A merged-/usr system: /lib/x86_64-linux-gnu is the same folder.
	if err := os.Symlink(real, filepath.Join(root, "lib/x86_64-linux-gnu")); err != nil {
		t.Skip("cannot create symbolic links here:", err)
	}
	got := testEnv(root, nil).searchDirs()
	var paths []string
	for _, d := range got {
		paths = append(paths, d.path)
	}
	want := []string{real, filepath.Join(root, "usr/lib")}
	if !slices.Equal(paths, want) {
		t.Errorf("got %v, want %v", paths, want)
	}
}

func TestSearchDirsArchitecture(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, filepath.Join(root, "usr/lib/x86_64-linux-gnu"), filepath.Join(root, "usr/lib/aarch64-linux-gnu"))
	for _, tc := range []struct{ goarch, want string }{
		{"amd64", "usr/lib/x86_64-linux-gnu"},
		{"arm64", "usr/lib/aarch64-linux-gnu"},
	} {
		env := testEnv(root, nil)
		env.goarch = tc.goarch
		got := env.searchDirs()
		if len(got) == 0 || got[0].path != filepath.Join(root, tc.want) {
			t.Errorf("%s: first folder %v, want %s", tc.goarch, got, tc.want)
		}
		for _, d := range got[1:] {
			if strings.Contains(d.path, "linux-gnu") {
				t.Errorf("%s: searches the other architecture's folder %s", tc.goarch, d.path)
			}
		}
	}
}

func TestSearchDirLabels(t *testing.T) {
	for _, tc := range []struct {
		d    searchDir
		want string
	}{
		{searchDir{path: "/usr/lib64"}, "/usr/lib64"},
		{searchDir{path: "/opt/cuda", origin: "SORA_CUDA_PATH"}, "/opt/cuda ($SORA_CUDA_PATH)"},
		{searchDir{path: "/opt/cudaa", origin: "SORA_CUDA_PATH", missing: true}, "/opt/cudaa ($SORA_CUDA_PATH) (no such folder)"},
		{searchDir{path: "/opt/cuda/libcuda.so.1", origin: "SORA_CUDA_PATH", missing: true, file: true},
			"/opt/cuda/libcuda.so.1 ($SORA_CUDA_PATH) (a file, not a folder: name its folder, /opt/cuda)"},
	} {
		if got := tc.d.label(); got != tc.want {
			t.Errorf("label of %+v = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"python3.9", "python3.12", true},
		{"python3.12", "python3.9", false},
		{"python3", "python3.9", true},
		{"libnvrtc-builtins.so.12.4", "libnvrtc-builtins.so.12.10", true},
		{"libnvrtc-builtins.so.12.10", "libnvrtc-builtins.so.12.4", false},
		{"a007", "a7", false},
		{"a7", "a007", false},
		{"abc", "abd", true},
		{"same", "same", false},
	} {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestSearchPythonOnPath: the environment of the first python3 on PATH is
// searched although it is not activated (no VIRTUAL_ENV or CONDA_PREFIX),
// as in an image whose /opt/conda/bin is on PATH; a later python3 is not.
func TestSearchPythonOnPath(t *testing.T) {
	root := t.TempDir()
	j := filepath.Join
	conda, other := j(root, "opt/conda"), j(root, "opt/other")
	lib := j(conda, "lib/python3.11/site-packages/nvidia/cublas/lib")
	mkdirs(t, j(root, "nobin"), j(conda, "bin"), lib, j(other, "bin"), j(other, "lib/python3.12/site-packages/nvidia/cu13/lib"))
	for _, py := range []string{j(conda, "bin/python3"), j(other, "bin/python3")} {
		if err := os.WriteFile(py, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sep := string(filepath.ListSeparator)
	env := testEnv(root, map[string]string{"PATH": j(root, "nobin") + sep + j(conda, "bin") + sep + j(other, "bin")})
	var python []searchDir
	for _, d := range env.searchDirs() {
		if d.python {
			python = append(python, d)
		}
	}
	want := []searchDir{{path: lib, origin: "python3 on PATH", python: true}}
	if !slices.Equal(python, want) {
		t.Errorf("Python folders searched: %+v, want %+v", python, want)
	}
}

func TestDLReason(t *testing.T) {
	for _, tc := range []struct{ path, err, want string }{
		{"/x/libcuda.so.1", "/x/libcuda.so.1: file too short", "file too short"},
		{"/x/libcuda.so.1", "libcudart.so.12: cannot open shared object file", "libcudart.so.12: cannot open shared object file"},
	} {
		if got := dlReason(tc.path, errors.New(tc.err)); got != tc.want {
			t.Errorf("dlReason(%q, %q) = %q, want %q", tc.path, tc.err, got, tc.want)
		}
	}
}
