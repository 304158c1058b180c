package safetensors_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/sora-go/sora/safetensors"
)

func Example() {
	dir, err := os.MkdirTemp("", "safetensors-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "adapter.safetensors")

	err = safetensors.Write(path, []safetensors.Tensor{
		{Name: "lora_A.weight", Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}},
	}, map[string]string{"format": "pt"})
	if err != nil {
		log.Fatal(err)
	}

	f, err := safetensors.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	for _, info := range f.Tensors() {
		data, err := f.Float32(info.Name)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(info.Name, info.DType, info.Shape, data)
	}
	fmt.Println(f.Metadata()["format"])
	// Output:
	// lora_A.weight F32 [2 3] [1 2 3 4 5 6]
	// pt
}
