//go:build darwin || linux

package dl

import (
	"runtime"

	"github.com/ebitengine/purego"
)

// Open loads a shared library by path, or by bare name through the
// dynamic linker's search, with dlopen's mode flags (purego.RTLD_NOW and
// the like).
//
// dlerror's message belongs to the thread that made the failed call, and
// purego reads it in a second call, so Open and Sym keep the goroutine on
// one thread: otherwise the message can come back empty, or be another
// thread's (seen as a rare failure of the CUDA backend's TestLoadOrder,
// and it would make a caller misjudge why a library did not load).
func Open(name string, mode int) (uintptr, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return purego.Dlopen(name, mode)
}

// Sym returns the address of symbol name in the library h.
func Sym(h uintptr, name string) (uintptr, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return purego.Dlsym(h, name)
}
