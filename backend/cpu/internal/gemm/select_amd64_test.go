//go:build !noasm

package gemm

import (
	"slices"
	"testing"
)

// TestKernelsFor checks which kernel an amd64 CPU gets first for each
// feature set: in particular that one without AVX2 and FMA gets the SSE
// kernel, not the pure-Go one, and that go-simd kernels (a stand-in for
// them here, as this test runs in every build) come after all assembly.
func TestKernelsFor(t *testing.T) {
	goSIMD := []*kernel{{id: "gosimd-standin"}}
	tests := []struct {
		avx512, avx2fma bool
		goSIMD          []*kernel
		want            []string
	}{
		{false, false, nil, []string{"sse", "go"}},
		{false, true, nil, []string{"avx2", "sse", "go"}},
		{true, true, nil, []string{"avx512", "avx2", "sse", "go"}},
		{false, false, goSIMD, []string{"sse", "gosimd-standin", "go"}},
		{true, true, goSIMD, []string{"avx512", "avx2", "sse", "gosimd-standin", "go"}},
	}
	for _, tt := range tests {
		var got []string
		for _, k := range kernelsFor(tt.avx512, tt.avx2fma, tt.goSIMD) {
			got = append(got, k.id)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("avx512=%v avx2+fma=%v go-simd=%d: kernels %v, want %v", tt.avx512, tt.avx2fma, len(tt.goSIMD), got, tt.want)
		}
	}
}
