//go:build !darwin && !linux && !windows

package cuda

import (
	"errors"
	"runtime"
)

// On other systems (FreeBSD, NetBSD, OpenBSD, ...) there is no CUDA to load,
// and purego would need cgo or special compiler flags there (on FreeBSD,
// -gcflags=github.com/ebitengine/purego/internal/fakecgo=-std), so the
// package does without it: the driver reports the system as unsupported
// (unsupportedOS) before anything is loaded, and these keep the package
// building with CGO_ENABLED=0.

var errNoLoader = errors.New("no dynamic library loader on " + runtime.GOOS)

func dlOpen(string) (uintptr, error)         { return 0, errNoLoader }
func dlSym(uintptr, string) (uintptr, error) { return 0, errNoLoader }
func dlClose(uintptr)                        {}

// notFoundByName: nothing can be found where nothing can be loaded.
func notFoundByName(string, error) bool { return true }

func loadedPath(uintptr, string) string { return "" }

// syscallN and registerFunc are never reached: nothing loads, so no probe
// succeeds and no backend opens.
func syscallN(uintptr, ...uintptr) uintptr {
	panic("cuda: no C calls on " + runtime.GOOS)
}

func registerFunc(any, uintptr) {
	panic("cuda: no C calls on " + runtime.GOOS)
}
