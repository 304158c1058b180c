package cpu_test

import (
	"fmt"
	"log"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu"
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

// ExampleNew configures a backend in code rather than from the
// environment: here the portable kernels on one thread, as a reproducible
// reference run would use.
func ExampleNew() {
	be := cpu.New(cpu.Options{Portable: true, Threads: 1})
	x, err := be.Alloc(backend.Float32, 2, 3)
	if err != nil {
		log.Fatal(err)
	}
	y, err := be.Alloc(backend.Float32, 2, 3)
	if err != nil {
		log.Fatal(err)
	}
	be.Upload(x, []float32{1, 2, 3, 1, 1, 1})
	be.Softmax(y, x, backend.SoftmaxParams{Causal: true})

	out := make([]float32, y.Len())
	if err := be.Download(out, y); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%.4f\n", out)
	fmt.Println(be.Portable())
	// Output:
	// [1.0000 0.0000 0.0000 0.5000 0.5000 0.0000]
	// true
}

// ExampleLoadBLAS hands the matrix multiply to OpenBLAS where it is
// installed and keeps the package's own kernels where it is not; the
// product is the same either way.
func ExampleLoadBLAS() {
	var opts cpu.Options
	if lib, err := cpu.LoadBLAS("openblas"); err == nil {
		opts.BLAS = lib
	} else {
		log.Printf("the built-in matrix multiply: %v", err)
	}
	be := cpu.New(opts)
	defer be.Close()
	log.Print(be.Device()) // "..., simd (matmul blas libopenblas.so.0 (OpenBLAS ...), rows ...)"

	a, err := be.Alloc(backend.Float32, 2, 2)
	if err != nil {
		log.Fatal(err)
	}
	c, err := be.Alloc(backend.Float32, 2, 2)
	if err != nil {
		log.Fatal(err)
	}
	be.Upload(a, []float32{1, 2, 3, 4})
	be.MatMul(c, a, a, backend.MatMulParams{Alpha: 1}) // A·A
	out := make([]float32, 4)
	if err := be.Download(out, c); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
	// Output: [7 10 15 22]
}

// Example_bfloat16Weights keeps a frozen weight W in bfloat16, at half
// the memory, and computes y = x·Wᵀ with it. Upload rounds W to 8
// significant bits, ties to even: 1.00390625 becomes 1, and 3.0078125 and
// 3.0234375, both halfway between two bfloat16 values, become the even
// one, 3 and 3.03125. MatMul widens the stored values exactly.
func Example_bfloat16Weights() {
	be := cpu.New(cpu.Options{})
	if !be.Supports(backend.OpMatMulBF16) {
		log.Fatal("no bfloat16 weights on this backend")
	}
	w, err := be.Alloc(backend.BFloat16, 3, 3) // [out, in]
	if err != nil {
		log.Fatal(err)
	}
	x, err := be.Alloc(backend.Float32, 1, 3)
	if err != nil {
		log.Fatal(err)
	}
	y, err := be.Alloc(backend.Float32, 1, 3)
	if err != nil {
		log.Fatal(err)
	}
	be.Upload(w, []float32{
		1.00390625, 0, 0,
		0, 3.0078125, 0,
		0, 0, 3.0234375,
	})
	be.Upload(x, []float32{1, 1, 1})
	be.MatMul(y, x, w, backend.MatMulParams{TransB: true, Alpha: 1})
	out := make([]float32, 3)
	if err := be.Download(out, y); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out, be.BytesInUse()) // 9·2 bytes of W, 6·4 of x and y
	// Output: [1 3 3.03125] 42
}
