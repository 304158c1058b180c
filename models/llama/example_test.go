package llama_test

import (
	"fmt"
	"log"
	"os"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
	"github.com/sora-go/sora/peft"
)

// Loading a llama2.c checkpoint onto a backend and generating greedily,
// as "sora generate" does. (Not run as a test: it needs the checkpoint
// files; TestStories260KAgreesWithLlama2c runs the same steps.)
func Example() {
	w, _, err := llama2c.Load("stories260K.bin") // or hf.Load("folder") for a Hugging Face checkpoint
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
	m, err := llama.New(b, w) // uploads the weights once; w can be dropped
	if err != nil {
		log.Fatal(err)
	}
	defer m.Free()
	gen, err := m.NewGenerator(0)
	if err != nil {
		log.Fatal(err)
	}
	defer gen.Close()
	prompt := tok.Encode("Once upon a time", true, false)
	prev := prompt[0]
	_, err = gen.Generate(prompt, llama.GenerateOptions{Steps: 60, Stop: []int{tokenizer.BOS}}, func(t int) error {
		fmt.Fprint(os.Stdout, tok.Decode(prev, t))
		prev = t
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println()
	// Once upon a time, there was a little girl named Lily. She loved to play outside in the park. …
}

// The training forward over a right-padded batch and an answer-only
// causal-LM loss, with the output head made trainable.
func ExampleModel_LMLoss() {
	cfg := llama.Config{Dim: 16, HiddenDim: 40, NumLayers: 2, NumHeads: 4, NumKVHeads: 2,
		VocabSize: 32, MaxSeqLen: 64, NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true}
	w, err := llama.NewWeights(cfg) // zero weights: enough to show the shapes
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
	if err := m.Embed.SetTrainable(true); err != nil {
		log.Fatal(err)
	}
	// Two sequences: "1 5 6 | 7 8" (prompt of 3) and "1 9 | 4" (prompt of
	// 2), padded with 0 to length 5.
	bt := llama.Batch{
		Tokens:  []int32{1, 5, 6, 7, 8, 1, 9, 4, 0, 0},
		Size:    2,
		Len:     5,
		Lengths: []int{5, 3},
	}
	targets, err := llama.LMTargets(bt, []int{3, 2})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("targets:", targets)
	g := graph.New(b)
	defer g.Close()
	loss, err := m.LMLoss(g, bt, targets, graph.CrossEntropyOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if err := g.Backward(loss); err != nil {
		log.Fatal(err)
	}
	l, err := loss.Item()
	if err != nil {
		log.Fatal(err)
	}
	// With zero weights every token is equally likely: the loss is ln 32.
	fmt.Printf("loss %.4f, embedding gradient %v\n", l, m.Embed.Grad().Shape())
	// Output:
	// targets: [-100 -100 7 8 -100 -100 4 -100 -100 -100]
	// loss 3.4657, embedding gradient [32, 16]
}

// A model whose linear layers' weights and embedding are stored in
// bfloat16, at half their memory, adapted with LoRA (which trains in
// float32 beside them), as "sora finetune --base-dtype bf16" builds it.
func ExampleNewWithOptions() {
	cfg := llama.Config{Dim: 16, HiddenDim: 40, NumLayers: 2, NumHeads: 4, NumKVHeads: 2,
		VocabSize: 32, MaxSeqLen: 64, NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true}
	w, err := llama.NewWeights(cfg) // zero weights: enough to count bytes
	if err != nil {
		log.Fatal(err)
	}
	b, err := backend.Open("cpu")
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	m, err := llama.NewWithOptions(b, w, llama.Options{BaseDType: backend.BFloat16})
	if err != nil {
		log.Fatal(err) // a backend without backend.OpMatMulBF16 says so here
	}
	defer m.Free()
	q := m.Blocks[0].Q.(*graph.Dense).W
	fmt.Println(q.Name(), q.DType(), "|", m.Embed.Name(), m.Embed.DType())
	// 2 × 2,688 linear weights and the embedding's 512 (the tied head's
	// too) at 2 bytes each, the norms' 80 parameters at 4.
	fmt.Printf("%d parameters in %d bytes (float32: %d)\n", cfg.NumParams(), b.BytesInUse(), 4*cfg.NumParams())
	pm, err := peft.Inject(m, peft.Config{Method: peft.LoRA, TargetModules: []string{peft.AllLinear}})
	if err != nil {
		log.Fatal(err)
	}
	defer pm.Unload()
	fmt.Println(pm.Report())
	// Output:
	// model.layers.0.self_attn.q_proj.weight bfloat16 | model.embed_tokens.weight bfloat16
	// 5968 parameters in 12096 bytes (float32: 23872)
	// lora on 14 layers: trainable params: 4,480 || all params: 10,448 || trainable%: 42.8790 || of the base model's 5,968: 75.0670%
}
