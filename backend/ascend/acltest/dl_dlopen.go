//go:build darwin || linux

package acltest

import (
	"runtime"

	"github.com/ebitengine/purego"
)

// dlOpenGlobal loads the double's library at path as the backend does
// (RTLD_GLOBAL), so that both find the same copy.
// The goroutine stays on one thread until purego has read dlerror's
// message, which belongs to the thread that failed.
func dlOpenGlobal(path string) (uintptr, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// dlSym returns the address of symbol name in the library h.
func dlSym(h uintptr, name string) (uintptr, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return purego.Dlsym(h, name)
}

// registerLibFunc binds *fptr to the function name of the library h.
func registerLibFunc(fptr any, h uintptr, name string) { purego.RegisterLibFunc(fptr, h, name) }

// unsupportedOS is why the double cannot be used on this system; "" here.
const unsupportedOS = ""
