//go:build goexperiment.simd && amd64

package gemm

import (
	"simd/archsimd"
	"slices"
	"testing"
)

// TestGoSIMDKernelsFor checks which go-simd kernels a CPU gets for each
// feature set.
func TestGoSIMDKernelsFor(t *testing.T) {
	tests := []struct {
		avx512, avx2fma bool
		want            []string
	}{
		{false, false, nil},
		{false, true, []string{"gosimd"}},
		{true, false, nil},
		{true, true, []string{"gosimd512", "gosimd"}},
	}
	for _, tt := range tests {
		var got []string
		for _, k := range goSIMDKernelsFor(tt.avx512, tt.avx2fma) {
			got = append(got, k.id)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("avx512=%v avx2+fma=%v: go-simd kernels %v, want %v", tt.avx512, tt.avx2fma, got, tt.want)
		}
	}
}

// TestGoSIMDKernelsTested checks that in a GOEXPERIMENT=simd build the
// go-simd kernels this CPU supports are among the kernels that every test
// of this package iterates over (kernelsUnderTest), that they are never
// the default, and that their names are known to KernelNames; it skips,
// saying so, on a CPU that runs none of them, where those tests cover no
// go-simd code.
func TestGoSIMDKernelsTested(t *testing.T) {
	var want []string
	avx2fma := archsimd.X86.AVX2() && archsimd.X86.FMA()
	if archsimd.X86.AVX512() && avx2fma {
		want = append(want, "gosimd512")
	}
	if avx2fma {
		want = append(want, "gosimd")
	}
	if len(want) == 0 {
		t.Skip("this CPU has neither AVX-512 nor AVX2 with FMA: no go-simd kernel runs here, and none is tested")
	}
	var tested []string
	for _, k := range kernelsUnderTest() {
		tested = append(tested, k.id)
	}
	for _, id := range want {
		if !slices.Contains(tested, id) {
			t.Errorf("this CPU runs %s, but the kernels under test are %v", id, tested)
		}
		if !slices.Contains(KernelNames, id) {
			t.Errorf("%s is missing from KernelNames %v", id, KernelNames)
		}
		if got := NewEngine(Config{Kernel: id}).k.id; got != id {
			t.Errorf("Config{Kernel: %q} runs %q", id, got)
		}
	}
	// With assembly (not in a noasm build) the SSE kernel always runs,
	// and it and the others must come first.
	if i := slices.Index(tested, "sse"); i >= 0 {
		for _, id := range want {
			if j := slices.Index(tested, id); j < i {
				t.Errorf("kernels %v: %s comes before the assembly ones", tested, id)
			}
		}
	}
}
