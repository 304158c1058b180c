//go:build !amd64 || noasm

package bf16

// simd is the assembly implementation; none off amd64 or with noasm.
var simd *Funcs
