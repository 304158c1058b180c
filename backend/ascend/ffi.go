//go:build darwin || linux || windows

package ascend

import "github.com/ebitengine/purego"

// syscallN calls the C function at fn with integer and pointer arguments
// and returns its integer result. Like purego.SyscallN it is marked
// uintptrescapes, so a pointer converted to uintptr in the argument list
// of a call to it stays alive, and in place, until the call returns.
//
//go:uintptrescapes
func syscallN(fn uintptr, args ...uintptr) uintptr {
	r, _, _ := purego.SyscallN(fn, args...)
	return r
}

// registerFunc makes *fptr, a Go function variable, call the C function
// at fn with the platform's C calling convention (float64 arguments in
// floating-point registers, which syscallN cannot pass).
func registerFunc(fptr any, fn uintptr) { purego.RegisterFunc(fptr, fn) }
