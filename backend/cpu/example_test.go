package cpu_test

import (
	"fmt"
	"log"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
)

// Example multiplies two matrices on the CPU backend: open it by name,
// allocate device tensors, upload, compute, download.
func Example() {
	be, err := backend.Open("cpu")
	if err != nil {
		log.Fatal(err)
	}
	defer be.Close()

	a, err := be.Alloc(backend.Float32, 2, 3)
	if err != nil {
		log.Fatal(err)
	}
	b, err := be.Alloc(backend.Float32, 3, 2)
	if err != nil {
		log.Fatal(err)
	}
	c, err := be.Alloc(backend.Float32, 2, 2)
	if err != nil {
		log.Fatal(err)
	}
	be.Upload(a, []float32{1, 2, 3, 4, 5, 6})
	be.Upload(b, []float32{7, 8, 9, 10, 11, 12})
	be.MatMul(c, a, b, backend.MatMulParams{Alpha: 1})

	out := make([]float32, c.Len())
	if err := be.Download(out, c); err != nil { // reports any failed op
		log.Fatal(err)
	}
	fmt.Println(out)
	// Output: [58 64 139 154]
}
