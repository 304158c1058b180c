package train_test

import (
	"context"
	"fmt"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/train"
)

// shifted returns sequences BOS, x, sep, x+k, EOS whose loss falls on the
// answer x+k and EOS only.
func shifted(k int32) []data.Sequence {
	var seqs []data.Sequence
	for x := int32(3); x < 24; x++ {
		seqs = append(seqs, data.Sequence{Tokens: []int32{1, x, 30, x + k, 2}, PromptLen: 3})
	}
	return seqs
}

// Example pretrains a tiny model (every weight trainable, no adapter) to
// answer x with x+1, then fine-tunes it with a SORA adapter, the pretrained
// weights frozen, to answer x+2 instead.
func Example() {
	b, _ := backend.Open("cpu")
	defer b.Close()
	cfg := llama.Config{Dim: 32, HiddenDim: 64, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, VocabSize: 32,
		MaxSeqLen: 8, NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true}
	w, _ := train.InitWeights(cfg, 1)
	m, _ := llama.New(b, w)
	defer m.Free()
	for _, p := range m.Params() {
		p.SetTrainable(true)
	}
	pre := &train.Trainer{Model: m, Train: shifted(1), Options: train.Options{Steps: 150, Batch: 21, LR: 1e-2, Seed: 1}}
	if _, err := pre.Run(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	// Inject freezes every parameter of the model; only the adapter trains.
	pm, err := peft.Inject(m, peft.Config{Method: peft.SORA, R: 4, Alpha: 8, TargetModules: []string{peft.AllLinear}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pm.Unload()
	task := shifted(2)
	before, _ := train.Evaluate(context.Background(), m, train.LM, task, 32, 0)
	ft := &train.Trainer{Model: m, Adapter: pm, Train: task, Eval: task,
		Options: train.Options{Steps: 150, Batch: 21, LR: 1e-2, Seed: 1}}
	res, err := ft.Run(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("exact match before fine-tuning %.2f, after %.2f\n", before.Accuracy, res.Eval.Accuracy)
	// Output: exact match before fine-tuning 0.00, after 1.00
}
