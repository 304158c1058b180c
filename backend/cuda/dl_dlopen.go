//go:build darwin || linux

package cuda

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"

	"github.com/ebitengine/purego"

	"github.com/sora-go/sora/backend/internal/dl"
)

// dlopen flags: resolve everything now, so that a broken library fails
// here with the linker's message rather than at the first call.
const dlopenMode = purego.RTLD_NOW | purego.RTLD_LOCAL

// dlOpen loads a shared library by path, or by bare name through the
// dynamic linker's search. dl.Open keeps dlerror's message the failing
// thread's, which notFoundByName relies on to tell a library the linker
// does not know.
func dlOpen(name string) (uintptr, error) { return dl.Open(name, dlopenMode) }

// dlSym returns the address of symbol name in the library h.
func dlSym(h uintptr, name string) (uintptr, error) { return dl.Sym(h, name) }

// dlClose unloads a library this package loaded but will not use.
func dlClose(h uintptr) { _ = purego.Dlclose(h) }

// notFoundByName tells whether err, from dlOpen(name) with a bare name,
// says only that the dynamic linker knows no such library:
// "NAME: cannot open shared object file". Anything else (a library it
// needs is missing, a wrong architecture) means it found a file that does
// not load.
func notFoundByName(name string, err error) bool {
	return strings.HasPrefix(err.Error(), name+": cannot open shared object file")
}

// loadedPath finds where the dynamic linker loaded the library called name
// from, by reading the process's memory map; "" when it cannot tell (no
// /proc, as on macOS). The file mapped may carry a longer version than the
// name asked for (libcuda.so.1 is usually a link to libcuda.so.<driver
// version>), so any file of the same stem counts. The handle is not
// needed here; the Windows version asks the loader about it.
func loadedPath(_ uintptr, name string) string {
	stem := name
	if i := strings.Index(name, ".so"); i >= 0 {
		stem = name[:i+len(".so")]
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		p := fields[len(fields)-1]
		base := filepath.Base(p)
		if base == stem || strings.HasPrefix(base, stem+".") {
			return p
		}
	}
	return ""
}
