//go:build darwin || linux

package ascend

import (
	"runtime"

	"github.com/ebitengine/purego"
)

// dlopenMode resolves every symbol at load time, so that a broken library
// fails here with the linker's message, and makes the runtime's symbols
// global: the operator libraries resolve theirs against them.
const dlopenMode = purego.RTLD_NOW | purego.RTLD_GLOBAL

// dlOpen loads the shared library at path. The goroutine stays on one
// thread until purego has read dlerror's message, which belongs to the
// thread that failed (otherwise it can come back empty).
func dlOpen(path string) (uintptr, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return purego.Dlopen(path, dlopenMode)
}

// dlSym returns the address of symbol name in the library h.
func dlSym(h uintptr, name string) (uintptr, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return purego.Dlsym(h, name)
}
