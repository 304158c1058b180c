//go:build darwin || linux

package ascend

import (
	"github.com/ebitengine/purego"

	"github.com/sora-go/sora/backend/internal/dl"
)

// dlopenMode resolves every symbol at load time, so that a broken library
// fails here with the linker's message, and makes the runtime's symbols
// global: the operator libraries resolve theirs against them.
const dlopenMode = purego.RTLD_NOW | purego.RTLD_GLOBAL

// dlOpen loads the shared library at path.
func dlOpen(path string) (uintptr, error) { return dl.Open(path, dlopenMode) }

// dlSym returns the address of symbol name in the library h.
func dlSym(h uintptr, name string) (uintptr, error) { return dl.Sym(h, name) }
