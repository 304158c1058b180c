package llama_test

import (
	"fmt"
	"log"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
)

// Generating greedily for several prompts of different lengths at once:
// the prompts are left-padded to one length and SetPadding hides the
// padding, so that each row continues its prompt as it would alone. (Not
// run as a test: it needs the checkpoint files;
// TestCacheStoriesBatchedGreedy runs the same steps.)
func ExampleCache_SetPadding() {
	w, _, err := llama2c.Load("stories260K.bin")
	if err != nil {
		log.Fatal(err)
	}
	tok, err := tokenizer.Load("tok512.bin")
	if err != nil {
		log.Fatal(err)
	}
	b, err := backend.Open("cpu")
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	m, err := llama.New(b, w)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Free()
	prompts := [][]int{tok.Encode("Once upon a time", true, false), tok.Encode("Tom had a dog", true, false)}
	T := max(len(prompts[0]), len(prompts[1]))
	const steps = 40
	kc, err := m.NewCache(len(prompts), T+steps)
	if err != nil {
		log.Fatal(err)
	}
	defer kc.Free()
	ids := make([]int32, 0, len(prompts)*T)
	pad := make([]int, len(prompts))
	for i, p := range prompts {
		pad[i] = T - len(p)
		ids = append(ids, make([]int32, pad[i])...) // any valid id
		for _, t := range p {
			ids = append(ids, int32(t))
		}
	}
	if err := kc.SetPadding(pad); err != nil {
		log.Fatal(err)
	}
	g := graph.New(b)
	defer g.Close()
	V := m.Config().VocabSize
	greedy := &llama.Sampler{} // the zero Sampler picks the most likely token
	out := make([][]int, len(prompts))
	for n := T; kc.Len() < T+steps; n = 1 { // the prefill, then one token per row and step
		logits, err := m.Decode(g, kc, ids, n, false)
		if err != nil {
			log.Fatal(err)
		}
		z, err := logits.Download()
		if err != nil {
			log.Fatal(err)
		}
		g.Reset()
		ids = ids[:0]
		for i := range prompts {
			next := greedy.Sample(z[i*V : (i+1)*V])
			out[i] = append(out[i], next)
			ids = append(ids, int32(next))
		}
	}
	for i, p := range prompts {
		prev, text := p[len(p)-1], ""
		for _, t := range out[i] {
			text += tok.Decode(prev, t)
			prev = t
		}
		fmt.Printf("%d: %s\n", i, text)
	}
	// 0: , there was a little girl named Lily. She loved to play outside in the park. …
	// 1:  named Max. He loved to play with his toys and run around the house. …
}
