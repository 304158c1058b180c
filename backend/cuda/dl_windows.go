//go:build windows

package cuda

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"syscall"
	"unsafe"
)

// Windows has no dlopen: DLLs are loaded with LoadLibraryExW and their
// functions found with GetProcAddress, whose addresses purego calls as it
// does on Linux (purego.SyscallN and RegisterFunc work on windows/amd64
// and windows/arm64 with the platform's C calling convention).

var (
	kernel32               = syscall.NewLazyDLL("kernel32.dll")
	procLoadLibraryExW     = kernel32.NewProc("LoadLibraryExW")
	procGetModuleFileNameW = kernel32.NewProc("GetModuleFileNameW")
)

const (
	// loadWithAlteredSearchPath makes the loader look for the DLLs that a
	// DLL loaded by full path imports in that DLL's own folder first, as
	// Linux's $ORIGIN rpath does for the NVIDIA libraries. Without it the
	// folder of cublas64_12.dll would not be searched for cublasLt64_12.dll.
	loadWithAlteredSearchPath = 0x00000008

	errorModNotFound  = syscall.Errno(126) // ERROR_MOD_NOT_FOUND
	errorProcNotFound = syscall.Errno(127) // ERROR_PROC_NOT_FOUND
	errorBadExeFormat = syscall.Errno(193) // ERROR_BAD_EXE_FORMAT
)

// dlOpen loads a DLL by full path (with its own folder searched for its
// dependencies), or by bare name through the system's DLL search.
func dlOpen(name string) (uintptr, error) {
	if !filepath.IsAbs(name) {
		h, err := syscall.LoadLibrary(name)
		if err != nil {
			return 0, describe(err, false)
		}
		return uintptr(h), nil
	}
	p, err := syscall.UTF16PtrFromString(name)
	if err != nil {
		return 0, err
	}
	h, _, callErr := procLoadLibraryExW.Call(uintptr(unsafe.Pointer(p)), 0, loadWithAlteredSearchPath)
	if h == 0 {
		return 0, describe(callErr, true)
	}
	return h, nil
}

// describe replaces the system's text for the load failures it names
// badly: FormatMessage leaves ERROR_BAD_EXE_FORMAT's "%1" unfilled, and
// ERROR_MOD_NOT_FOUND for a file that exists (the search checked) means
// that a DLL it imports is missing. The code stays reachable with
// errors.Is.
func describe(err error, fullPath bool) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch {
	case errno == errorBadExeFormat:
		return &loadError{errno, fmt.Sprintf("not a DLL for %s/%s", runtime.GOOS, runtime.GOARCH)}
	case errno == errorModNotFound && fullPath:
		return &loadError{errno, "a DLL it imports was not found"}
	case errno == errorProcNotFound:
		// An import missing from a DLL it depends on: typically
		// cublas64_12.dll beside a cublasLt64_12.dll of another release.
		return &loadError{errno, "a function it imports is missing from the DLL that should export it (DLLs of different releases?)"}
	}
	return err
}

// loadError is a loader error code with a clearer text.
type loadError struct {
	errno syscall.Errno
	text  string
}

func (e *loadError) Error() string {
	return fmt.Sprintf("%s (Windows error %d)", e.text, uintptr(e.errno))
}

func (e *loadError) Unwrap() error { return e.errno }

// dlSym returns the address of the exported function name in the DLL h.
func dlSym(h uintptr, name string) (uintptr, error) {
	return syscall.GetProcAddress(syscall.Handle(h), name)
}

// dlClose unloads a DLL this package loaded but will not use.
func dlClose(h uintptr) { _ = syscall.FreeLibrary(syscall.Handle(h)) }

// notFoundByName tells whether err, from dlOpen(name) with a bare name,
// says that the system's search found no such DLL. ERROR_MOD_NOT_FOUND
// also covers a DLL found whose own imports are missing; the loader does
// not tell the two apart.
func notFoundByName(_ string, err error) bool {
	return errors.Is(err, errorModNotFound)
}

// loadedPath asks the loader for the file the DLL h was loaded from; ""
// when it cannot tell.
func loadedPath(h uintptr, _ string) string {
	buf := make([]uint16, syscall.MAX_LONG_PATH)
	n, _, _ := procGetModuleFileNameW.Call(h, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	if n == 0 || int(n) >= len(buf) {
		return ""
	}
	return syscall.UTF16ToString(buf[:n])
}
