package graph_test

import (
	"fmt"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
)

// Causal attention of one sequence of two positions, one head of width 2.
// The queries are orthogonal to both keys, so every visible key gets the
// same weight: the first position sees only itself and returns its value,
// the second averages both values. The result is the same on the fused
// path and the composed one (SetFusedAttention(false)).
func ExampleTape_Attention() {
	b, err := backend.Open("cpu")
	if err != nil {
		panic(err)
	}
	defer b.Close()
	for _, fused := range []bool{true, false} {
		g := graph.New(b)
		g.SetFusedAttention(fused)
		q := g.Input([]float32{0, 1, 0, 1}, 1, 2, 1, 2) // [batch, queries, heads, headDim]
		k := g.Input([]float32{1, 0, 2, 0}, 1, 2, 1, 2) // [batch, keys, kvHeads, headDim]
		v := g.Input([]float32{1, 10, 3, 20}, 1, 2, 1, 2)
		out := g.Attention(q, k, v, backend.AttentionParams{Scale: 0.7, Causal: true})
		h, err := out.Download()
		if err != nil {
			panic(err)
		}
		fmt.Println(out.Shape(), h)
		g.Close()
	}
	// Output:
	// [1, 2, 1, 2] [1 10 2 15]
	// [1, 2, 1, 2] [1 10 2 15]
}
