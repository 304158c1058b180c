package graph_test

import (
	"fmt"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/optim"
)

// A linear classifier with a frozen weight and a trainable LoRA-style
// update: build it, compute a cross-entropy loss, run Backward and take one
// AdamW step.
func Example() {
	b, err := backend.Open("cpu")
	if err != nil {
		panic(err)
	}
	defer b.Close()

	// W0 [3 classes, 2 features] is frozen; A [1, 2] and B [3, 1] train.
	w0, _ := graph.UploadParam(b, "w0", []float32{1, 0, 0, 1, -1, -1}, graph.Frozen, 3, 2)
	a, _ := graph.UploadParam(b, "lora_A", []float32{0.5, -0.5}, graph.Trainable, 1, 2)
	bb, _ := graph.UploadParam(b, "lora_B", []float32{0, 0, 0}, graph.Trainable, 3, 1)
	opt, err := optim.NewAdamW([]optim.Group{{Params: []*graph.Value{a, bb}, LR: 0.1}},
		optim.DefaultAdamWConfig(), nil)
	if err != nil {
		panic(err)
	}

	g := graph.New(b)
	x := g.Input([]float32{2, 1, -1, 3}, 2, 2) // two examples
	// logits = x W0ᵀ + (x Aᵀ) Bᵀ. By hand: logits = [[2 1 −3] [−1 3 −2]],
	// x Aᵀ = [0.5 −2], and dL/dB = Σₙ (softmax − onehot)ₙ/2 · (x Aᵀ)ₙ.
	logits := g.Add(g.Linear(x, w0, nil), g.Linear(g.Linear(x, a, nil), bb, nil))
	loss := g.CrossEntropy(logits, []int32{0, 2}, graph.CrossEntropyOptions{})
	if err := g.Backward(loss); err != nil {
		panic(err)
	}
	l, _ := loss.Item()
	dB, _ := bb.DownloadGrad()
	fmt.Printf("loss %.4f\n", l)
	fmt.Printf("dL/dB %.4f\n", dB)
	fmt.Println("W0 has a gradient:", !w0.Grad().IsZero())
	g.Reset()

	if err := opt.Step(); err != nil {
		panic(err)
	}
	opt.ZeroGrad()
	// Adam's first step moves every element by lr against its gradient.
	newB, _ := bb.Download()
	fmt.Printf("B after one step %.4f\n", newB)
	// Output:
	// loss 2.6715
	// dL/dB [-0.0860 -0.9087 0.9947]
	// W0 has a gradient: false
	// B after one step [0.1000 0.1000 -0.1000]
}
