//go:build !noasm

package gemm

import (
	"slices"
	"testing"
)

// TestKernelsFor checks which kernel an amd64 CPU gets first for each
// feature set: in particular that one without AVX2 and FMA gets the SSE
// kernel, not the pure-Go one.
func TestKernelsFor(t *testing.T) {
	tests := []struct {
		avx512, avx2fma bool
		want            []string
	}{
		{false, false, []string{"sse", "go"}},
		{false, true, []string{"avx2", "sse", "go"}},
		{true, true, []string{"avx512", "avx2", "sse", "go"}},
	}
	for _, tt := range tests {
		var got []string
		for _, k := range kernelsFor(tt.avx512, tt.avx2fma) {
			got = append(got, k.id)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("avx512=%v avx2+fma=%v: kernels %v, want %v", tt.avx512, tt.avx2fma, got, tt.want)
		}
	}
}
