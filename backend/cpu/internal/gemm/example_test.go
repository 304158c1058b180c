package gemm_test

import (
	"fmt"

	"github.com/sora-go/sora/backend/cpu/internal/gemm"
)

func ExampleEngine_Sgemm() {
	e := gemm.NewEngine(gemm.Config{})
	// A is 2×3, B is stored as its transpose (2×3), so C = A·Bᵀ is 2×2.
	a := []float32{
		1, 2, 3,
		4, 5, 6,
	}
	bT := []float32{
		1, 0, 1,
		0, 1, 0,
	}
	c := []float32{
		100, 100,
		100, 100,
	}
	// C = 1·A·Bᵀ + 0.5·C
	e.Sgemm(false, true, 2, 2, 3, 1, a, 3, bT, 3, 0.5, c, 2)
	fmt.Println(c)
	// Output: [54 52 60 55]
}

func ExampleEngine_SgemmBF16() {
	e := gemm.NewEngine(gemm.Config{})
	// The same product with Bᵀ stored as bfloat16: each value is the top
	// half of a float32's bits (0x3f80 is 1).
	a := []float32{
		1, 2, 3,
		4, 5, 6,
	}
	bT := []uint16{
		0x3f80, 0, 0x3f80,
		0, 0x3f80, 0,
	}
	c := make([]float32, 4)
	e.SgemmBF16(false, true, 2, 2, 3, 1, a, 3, bT, 3, 0, c, 2)
	fmt.Println(c)
	// Output: [4 2 10 5]
}
