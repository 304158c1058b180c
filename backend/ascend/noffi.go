//go:build !darwin && !linux && !windows

package ascend

import (
	"errors"
	"runtime"
)

// On other systems (FreeBSD, NetBSD, OpenBSD, ...) there is no CANN to
// load, and purego would need cgo or special compiler flags there (on
// FreeBSD, -gcflags=github.com/ebitengine/purego/internal/fakecgo=-std), so
// the package does without it: loadLibrary reports the system as
// unsupported (unsupportedOS) before anything is loaded, and these keep
// the package building with CGO_ENABLED=0.

var errNoLoader = errors.New(unsupportedOS(runtime.GOOS))

func dlOpen(string) (uintptr, error)         { return 0, errNoLoader }
func dlSym(uintptr, string) (uintptr, error) { return 0, errNoLoader }

// syscallN and registerFunc are never reached: no library loads, so no
// backend opens.
func syscallN(uintptr, ...uintptr) uintptr {
	panic("ascend: no C calls on " + runtime.GOOS)
}

func registerFunc(any, uintptr) {
	panic("ascend: no C calls on " + runtime.GOOS)
}
