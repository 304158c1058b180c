package graph_test

import (
	"fmt"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
)

// A two-layer residual model whose layers are checkpointed segments: each
// layer's intermediates are freed when it returns and recomputed during
// Backward. The loss and the gradients are those of the plain forward
// (and of central differences of the model in float64, which print the
// same digits).
func ExampleTape_Checkpoint() {
	b, err := backend.Open("cpu")
	if err != nil {
		panic(err)
	}
	defer b.Close()
	w1, _ := graph.UploadParam(b, "layers.0.w", []float32{0.5, -0.2, 0.1, 0.3}, graph.Trainable, 2, 2)
	w2, _ := graph.UploadParam(b, "layers.1.w", []float32{-0.4, 0.2, 0.6, 0.1}, graph.Trainable, 2, 2)
	defer w1.Free()
	defer w2.Free()

	// forward runs the layers, each as one segment when checkpoint is
	// set. The layer's function gets the residual stream as its input
	// (not through a captured variable, which the loop reassigns) and
	// captures its weight, which stays as it is until Backward.
	forward := func(g *graph.Tape, x *graph.Value, checkpoint bool) *graph.Value {
		for _, w := range []*graph.Value{w1, w2} {
			layer := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
				h := in[0]
				return []*graph.Value{g.Add(h, g.Tanh(g.Linear(h, w, nil)))}
			}
			if checkpoint {
				x = g.Checkpoint(layer, x)[0]
			} else {
				x = layer(g, []*graph.Value{x})[0]
			}
		}
		return g.Mean(g.Square(x))
	}

	g := graph.New(b)
	defer g.Close()
	for _, checkpoint := range []bool{false, true} {
		x := g.Input([]float32{1, 2, -1, 0.5}, 2, 2)
		loss := forward(g, x, checkpoint)
		ops := g.Stats().Ops // a checkpointed layer records one op
		if err := g.Backward(loss); err != nil {
			panic(err)
		}
		l, _ := loss.Item()
		d1, _ := w1.DownloadGrad()
		d2, _ := w2.DownloadGrad()
		fmt.Printf("checkpoint %-5v ops %2d  loss %.6f  dW1 %.6f  dW2 %.6f\n", checkpoint, ops, l, d1, d2)
		g.Reset()
		w1.ZeroGrad()
		w2.ZeroGrad()
	}
	// Output:
	// checkpoint false ops 11  loss 3.337173  dW1 [1.082235 1.508771 1.316353 2.295291]  dW2 [1.078857 1.371889 0.924772 2.029859]
	// checkpoint true  ops  7  loss 3.337173  dW1 [1.082235 1.508771 1.316353 2.295291]  dW2 [1.078857 1.371889 0.924772 2.029859]
}
