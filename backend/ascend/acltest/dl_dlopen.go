//go:build darwin || linux

package acltest

import (
	"github.com/ebitengine/purego"

	"github.com/sora-go/sora/backend/internal/dl"
)

// dlOpenGlobal loads the double's library at path as the backend does
// (RTLD_GLOBAL), so that both find the same copy.
func dlOpenGlobal(path string) (uintptr, error) {
	return dl.Open(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// dlSym returns the address of symbol name in the library h.
func dlSym(h uintptr, name string) (uintptr, error) { return dl.Sym(h, name) }

// registerLibFunc binds *fptr to the function name of the library h.
func registerLibFunc(fptr any, h uintptr, name string) { purego.RegisterLibFunc(fptr, h, name) }

// unsupportedOS is why the double cannot be used on this system; "" here.
const unsupportedOS = ""
