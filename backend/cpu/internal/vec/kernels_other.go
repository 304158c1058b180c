//go:build (!amd64 && !arm64) || noasm

package vec

// Other architectures have no assembly kernels yet, and -tags noasm
// leaves them out on amd64 and arm64: these builds run [Go].

func simdAll() []*Kernels { return nil }

func simd() *Kernels { return nil }
