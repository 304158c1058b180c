package ascend_test

import (
	"fmt"
	"log"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/ascend"
)

// Open a device directly, with the faster (reduced-precision) matrix
// products. backend.Open("ascend") does the same with the settings of
// SORA_ASCEND_DEVICE and SORA_ASCEND_MATMUL.
func ExampleOpen() {
	b, err := ascend.Open(ascend.Options{Device: 0, MatMul: ascend.MatMulFast})
	if backend.IsUnavailable(err) {
		fmt.Println(err) // names the missing libraries and every folder searched
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	x, err := b.Alloc(backend.Float32, 2, 2)
	if err != nil {
		log.Fatal(err)
	}
	y, err := b.Alloc(backend.Float32, 2, 2)
	if err != nil {
		log.Fatal(err)
	}
	b.Upload(x, []float32{1, 2, 3, 4})
	b.MatMul(y, x, x, backend.MatMulParams{Alpha: 1}) // queued on the stream
	out := make([]float32, 4)
	if err := b.Download(out, y); err != nil { // waits, then copies
		log.Fatal(err)
	}
	fmt.Println(out) // [7 10 15 22]
}
