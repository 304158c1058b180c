//go:build !noasm

package gemm

import (
	"slices"
	"testing"
)

// TestARM64Kernels checks that an arm64 build runs the NEON kernel by
// default and still lets the pure-Go one be chosen, by name or with
// Portable.
func TestARM64Kernels(t *testing.T) {
	if got, want := Kernels(), []string{"neon", "go"}; !slices.Equal(got, want) {
		t.Fatalf("Kernels() = %v, want %v", got, want)
	}
	t.Setenv(EnvKernel, "")
	tests := []struct {
		cfg  Config
		want *kernel
	}{
		{Config{}, neonKernel},
		{Config{Kernel: "go"}, goKernel},
		{Config{Portable: true}, goKernel},
		{Config{Kernel: "avx2"}, neonKernel}, // not runnable here: the fastest instead
	}
	for _, tt := range tests {
		if got := NewEngine(tt.cfg).k; got != tt.want {
			t.Errorf("%+v runs %s, want %s", tt.cfg, got.name, tt.want.name)
		}
	}
}
