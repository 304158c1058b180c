package cuda

import "path/filepath"

// The Windows search. It lives in a file without a build constraint so
// that its folder logic is tested on every system; only loading (dl_*.go)
// differs by build.

// windowsDirs is searchDirs for Windows: the same order of precedence as
// on Linux, with Windows's folders.
func (e searchEnv) windowsDirs() []searchDir {
	var l dirList
	arch := windowsToolkitArch(e.goarch)
	// toolkit adds the DLL folders of a CUDA installation: bin\<arch>,
	// where CUDA 13 puts them, and bin, where CUDA 12 does. A root named
	// by a variable with neither is reported as missing its bin.
	toolkit := func(root, origin string, fromEnv bool) {
		archBin, bin := filepath.Join(root, "bin", arch), filepath.Join(root, "bin")
		if fromEnv && !isDir(archBin) && !isDir(bin) {
			l.add(bin, origin, true, false)
			return
		}
		l.add(archBin, origin, false, false)
		l.add(bin, origin, false, false)
	}
	fixed := func(envVar, def string) string {
		if v := e.getenv(envVar); v != "" {
			return v
		}
		return filepath.Join(e.root, def)
	}

	// 1. SORA_CUDA_PATH: folders the user points at directly.
	for _, p := range filepath.SplitList(e.getenv("SORA_CUDA_PATH")) {
		if p == "" {
			continue
		}
		l.add(p, "SORA_CUDA_PATH", true, false)
		l.addIfDir(filepath.Join(p, "bin", arch), "SORA_CUDA_PATH")
		l.addIfDir(filepath.Join(p, "bin"), "SORA_CUDA_PATH")
	}
	// 2. Toolkit roots; the installer sets CUDA_PATH.
	for _, v := range []string{"CUDA_HOME", "CUDA_PATH"} {
		if root := e.getenv(v); root != "" {
			toolkit(root, v, true)
		}
	}
	// 3. PATH, where the installer puts the toolkit's bin. PATH is long on
	// Windows, so only its folders that hold an NVIDIA library are listed;
	// LoadLibrary's search (the last step) covers it all anyway.
	for _, p := range filepath.SplitList(e.getenv("PATH")) {
		if p != "" && holdsWindowsCUDALibrary(p) {
			l.add(p, "PATH", false, false)
		}
	}
	// 4. The toolkit's default places, newest release first.
	programFiles := fixed("ProgramFiles", `C:\Program Files`)
	for _, root := range globDirs(filepath.Join(programFiles, "NVIDIA GPU Computing Toolkit", "CUDA", "v*")) {
		toolkit(root, "", false)
	}
	// 5. The system folder, where the driver installs nvcuda.dll.
	l.add(filepath.Join(fixed("SystemRoot", `C:\Windows`), "System32"), "", false, false)
	// 6. pip-installed CUDA wheels: <site-packages>\nvidia\<component>\bin
	// (CUDA 12: nvidia\cublas\bin, ...) and nvidia\cu13\bin\<arch> (CUDA 13).
	wheelArch := windowsWheelArch(e.goarch)
	for _, sp := range e.windowsSitePackages(programFiles) {
		for _, bin := range globDirs(filepath.Join(sp.path, "nvidia", "*", "bin")) {
			l.add(filepath.Join(bin, wheelArch), sp.origin, false, true)
			l.add(bin, sp.origin, false, true)
		}
	}
	if conda := e.getenv("CONDA_PREFIX"); conda != "" {
		// conda's CUDA packages install their DLLs into Library\bin.
		l.addIfDir(filepath.Join(conda, "Library", "bin"), "CONDA_PREFIX")
	}
	return l.dirs
}

// windowsSitePackages lists the Python package folders of a Windows
// machine that can be found without running Python, in search order.
func (e searchEnv) windowsSitePackages(programFiles string) []searchDir {
	var out []searchDir
	glob := func(pattern, origin string) {
		for _, d := range globDirs(pattern) {
			out = append(out, searchDir{path: d, origin: origin})
		}
	}
	if venv := e.getenv("VIRTUAL_ENV"); venv != "" {
		glob(filepath.Join(venv, "Lib", "site-packages"), "VIRTUAL_ENV")
	}
	if conda := e.getenv("CONDA_PREFIX"); conda != "" {
		glob(filepath.Join(conda, "Lib", "site-packages"), "CONDA_PREFIX")
	}
	if appData := e.getenv("APPDATA"); appData != "" { // pip install --user
		glob(filepath.Join(appData, "Python", "Python3*", "site-packages"), "")
	}
	if local := e.getenv("LOCALAPPDATA"); local != "" { // python.org's per-user install
		glob(filepath.Join(local, "Programs", "Python", "Python3*", "Lib", "site-packages"), "")
	}
	glob(filepath.Join(programFiles, "Python3*", "Lib", "site-packages"), "") // all-users install
	return out
}

// windowsToolkitArch is the name of the toolkit's bin subfolder for goarch.
func windowsToolkitArch(goarch string) string {
	if goarch == "arm64" {
		return "arm64"
	}
	return "x64"
}

// windowsWheelArch is the name of the CUDA 13 wheels' bin subfolder for
// goarch.
func windowsWheelArch(goarch string) string {
	if goarch == "arm64" {
		return "arm64"
	}
	return "x86_64"
}

// holdsWindowsCUDALibrary tells whether dir has one of the DLLs the
// backend loads.
func holdsWindowsCUDALibrary(dir string) bool {
	for _, spec := range []libSpec{driverSpecWindows, cublasSpecWindows, nvrtcSpecWindows} {
		for _, c := range spec.candidates {
			if isFile(filepath.Join(dir, c.name)) {
				return true
			}
		}
	}
	return false
}
