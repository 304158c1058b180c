package cuda_test

import (
	"fmt"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cuda"
)

// Open the CUDA backend through the registry, as programs do, and multiply
// two matrices on the GPU. Where no GPU or library is found, Open says
// what is missing and what was searched.
func Example() {
	b, err := backend.Open("cuda")
	if err != nil {
		fmt.Println(err) // e.g. "cuda unavailable: libcuda.so.1 (the NVIDIA driver API) not found; ..."
		return
	}
	defer b.Close()
	fmt.Println(b.Device())

	a, _ := b.Alloc(backend.Float32, 2, 3)
	w, _ := b.Alloc(backend.Float32, 3, 2)
	c, _ := b.Alloc(backend.Float32, 2, 2)
	b.Upload(a, []float32{1, 2, 3, 4, 5, 6})
	b.Upload(w, []float32{1, 0, 0, 1, 1, 1})
	b.MatMul(c, a, w, backend.MatMulParams{Alpha: 1})
	out := make([]float32, 4)
	if err := b.Download(out, c); err != nil { // waits, and reports any op's failure
		fmt.Println(err)
		return
	}
	fmt.Println(out) // [4 5 10 11]
}
