//go:build !amd64

package vec

// Other architectures have no assembly kernels yet: they run [Go].

func simdAll() []*Kernels { return nil }

func simd() *Kernels { return nil }
