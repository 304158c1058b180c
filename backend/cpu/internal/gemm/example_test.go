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
