package cuda

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// searchDir is one folder of the library search.
type searchDir struct {
	path string
	// origin says why the folder is searched when that is not obvious from
	// the path (e.g. "SORA_CUDA_PATH"); empty for the fixed folders.
	origin string
	// missing is set for folders named by an environment variable that do
	// not exist, so that a typo shows in the report.
	missing bool
	// file is set for a missing folder that is a file (a library named
	// where its folder was wanted).
	file bool
	// python marks the nvidia/*/lib folders of Python environments.
	python bool
}

// label is how the folder appears in the list of what was tried.
func (d searchDir) label() string {
	s := d.path
	if d.origin != "" {
		s += " ($" + d.origin + ")"
	}
	switch {
	case d.missing && d.file:
		s += " (a file, not a folder: name its folder, " + filepath.Dir(d.path) + ")"
	case d.missing:
		s += " (no such folder)"
	}
	return s
}

// searchEnv is what the search depends on, so that tests can point every
// part of it at a temporary tree.
type searchEnv struct {
	getenv func(string) string
	// root prefixes every fixed absolute folder (/usr/local/cuda/lib64,
	// /usr/lib/..., the Python prefixes); "" in production.
	root string
	// goarch picks the Debian multiarch triplet of the system folders
	// (on Windows, the toolkit's and the wheels' architecture folders).
	goarch string
	// goos selects the library names and folders: "windows" for
	// Windows's, anything else for Linux's.
	goos string
	// linker enables the last step: dlopen by bare name, which searches the
	// dynamic linker's cache (on Windows, LoadLibrary's search).
	linker bool
}

// systemEnv is the search of a real process.
func systemEnv() searchEnv {
	return searchEnv{getenv: os.Getenv, goarch: runtime.GOARCH, goos: runtime.GOOS, linker: true}
}

// linkerName names the last step of the search in messages.
func (e searchEnv) linkerName() string {
	if e.goos == "windows" {
		return "system DLL search"
	}
	return "dynamic linker"
}

// multiarchTriplet is the Debian/Ubuntu library folder name for goarch.
func multiarchTriplet(goarch string) string {
	switch goarch {
	case "arm64":
		return "aarch64-linux-gnu"
	case "ppc64le":
		return "powerpc64le-linux-gnu"
	default:
		return "x86_64-linux-gnu"
	}
}

// dirList collects search folders in priority order, without duplicates
// (two paths naming the same folder through a symbolic link, as /lib and
// /usr/lib do on merged-/usr systems, count once).
type dirList struct {
	dirs []searchDir
	seen map[string]bool
}

// add appends path. Folders that do not exist are left out, unless
// fromEnv: folders named by environment variables are kept and marked
// missing, so that a typo shows in the report.
func (l *dirList) add(path, origin string, fromEnv, python bool) {
	if path == "" {
		return
	}
	path = filepath.Clean(path)
	key := path
	if real, err := filepath.EvalSymlinks(path); err == nil {
		key = real
	}
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	if l.seen[key] {
		return
	}
	exists := isDir(path)
	if !exists && !fromEnv {
		return
	}
	l.seen[key] = true
	l.dirs = append(l.dirs, searchDir{path: path, origin: origin, missing: !exists, file: !exists && isFile(path), python: python})
}

// addIfDir adds a subfolder only when it exists: it is a guess, not
// something the user named.
func (l *dirList) addIfDir(path, origin string) {
	if isDir(path) {
		l.add(path, origin, true, false)
	}
}

// searchDirs returns the folders to search, in priority order, without
// duplicates. Fixed folders that do not exist are left out; folders named
// by environment variables are kept and marked missing.
func (e searchEnv) searchDirs() []searchDir {
	if e.goos == "windows" {
		return e.windowsDirs()
	}
	var l dirList
	add, addIfDir := l.add, l.addIfDir
	fixed := func(path string) string { return filepath.Join(e.root, path) }

	// 1. SORA_CUDA_PATH: folders the user points at directly.
	for _, p := range filepath.SplitList(e.getenv("SORA_CUDA_PATH")) {
		if p == "" {
			continue
		}
		add(p, "SORA_CUDA_PATH", true, false)
		addIfDir(filepath.Join(p, "lib64"), "SORA_CUDA_PATH")
		addIfDir(filepath.Join(p, "lib"), "SORA_CUDA_PATH")
	}
	// 2. Toolkit roots.
	for _, v := range []string{"CUDA_HOME", "CUDA_PATH"} {
		root := e.getenv(v)
		if root == "" {
			continue
		}
		lib64, lib := filepath.Join(root, "lib64"), filepath.Join(root, "lib")
		if !isDir(lib64) && isDir(lib) {
			add(lib, v, true, false)
			continue
		}
		add(lib64, v, true, false) // kept, and reported missing, when absent
		addIfDir(lib, v)
	}
	// 3. LD_LIBRARY_PATH.
	for _, p := range filepath.SplitList(e.getenv("LD_LIBRARY_PATH")) {
		if p != "" {
			add(p, "LD_LIBRARY_PATH", true, false)
		}
	}
	// 4. The toolkit's default place.
	add(fixed("/usr/local/cuda/lib64"), "", false, false)
	// 5. System library folders, where the driver installs libcuda.so.1.
	triplet := multiarchTriplet(e.goarch)
	for _, p := range []string{
		"/usr/lib/" + triplet, "/lib/" + triplet, "/usr/lib64", "/lib64", "/usr/lib",
		"/usr/lib/wsl/lib", "/usr/local/nvidia/lib64", "/usr/local/nvidia/lib",
	} {
		add(fixed(p), "", false, false)
	}
	// 6. pip-installed CUDA wheels put their libraries in
	// <site-packages>/nvidia/<component>/lib (CUDA 12: nvidia/cublas/lib,
	// nvidia/cuda_nvrtc/lib, ...; CUDA 13: nvidia/cu13/lib).
	for _, sp := range e.sitePackages() {
		for _, lib := range globDirs(filepath.Join(sp.path, "nvidia", "*", "lib")) {
			add(lib, sp.origin, false, true)
		}
	}
	if conda := e.getenv("CONDA_PREFIX"); conda != "" {
		// conda's CUDA packages install into the environment's lib.
		addIfDir(filepath.Join(conda, "lib"), "CONDA_PREFIX")
	}
	return l.dirs
}

// sitePackages lists the Python package folders that can be found without
// running Python, in the order they are searched.
func (e searchEnv) sitePackages() []searchDir {
	var out []searchDir
	glob := func(pattern, origin string) {
		for _, d := range globDirs(pattern) {
			out = append(out, searchDir{path: d, origin: origin})
		}
	}
	if venv := e.getenv("VIRTUAL_ENV"); venv != "" {
		glob(filepath.Join(venv, "lib", "python3*", "site-packages"), "VIRTUAL_ENV")
	}
	if conda := e.getenv("CONDA_PREFIX"); conda != "" {
		glob(filepath.Join(conda, "lib", "python3*", "site-packages"), "CONDA_PREFIX")
	}
	if home := e.getenv("HOME"); home != "" {
		glob(filepath.Join(home, ".local", "lib", "python3*", "site-packages"), "")
	}
	// The environment of the first python3 on PATH, activated or not (an
	// image's /opt/conda, a venv run as venv/bin/python3): its prefix is
	// the folder above bin, read without running it.
	for _, dir := range filepath.SplitList(e.getenv("PATH")) {
		if dir != "" && isFile(filepath.Join(dir, "python3")) {
			glob(filepath.Join(filepath.Dir(dir), "lib", "python3*", "site-packages"), "python3 on PATH")
			break
		}
	}
	for _, prefix := range []string{"/usr/local/lib", "/usr/lib"} {
		for _, kind := range []string{"dist-packages", "site-packages"} {
			glob(filepath.Join(e.root, prefix, "python3*", kind), "")
		}
	}
	if home := e.getenv("HOME"); home != "" {
		glob(filepath.Join(home, ".pyenv", "versions", "*", "lib", "python3*", "site-packages"), "")
	}
	return out
}

// globDirs returns the folders matching pattern, sorted with the highest
// version first where names differ by a version (python3.12 before
// python3.9), so that the newest interpreter's packages win.
func globDirs(pattern string) []string {
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return nil
	}
	var dirs []string
	for _, m := range matches {
		if isDir(m) {
			dirs = append(dirs, m)
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return versionLess(dirs[j], dirs[i]) })
	return dirs
}

// versionLess orders strings comparing runs of digits by numeric value,
// so that "python3.9" < "python3.12".
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitPrefix(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}
