package cpu

import (
	"fmt"

	"github.com/sora-go/sora/backend/cpu/internal/vec"
)

// KernelSets names the row kernel sets this CPU runs, "go" first.
func KernelSets() []string {
	var names []string
	for _, k := range vec.All() {
		names = append(names, k.Name)
	}
	return names
}

// UseKernels makes be run the named row kernel set (the matrix multiply
// is left as it is).
func UseKernels(be *Backend, name string) error {
	for _, k := range vec.All() {
		if k.Name == name {
			be.kern = k
			return nil
		}
	}
	return fmt.Errorf("no kernel set %q here", name)
}
