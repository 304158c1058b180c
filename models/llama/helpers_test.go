package llama_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/internal/stories"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
)

func openCPU(tb testing.TB) backend.Backend { return testbackend.Open(tb, "cpu") }

// tinyConfig is a small model with grouped-query attention (4 query heads
// over 2 key/value heads) and dimensions that are neither powers of two nor
// multiples of the matrix kernels' tiles.
func tinyConfig(tied bool, layout llama.RopeLayout) llama.Config {
	return llama.Config{
		Dim: 24, HiddenDim: 37, NumLayers: 2, NumHeads: 4, NumKVHeads: 2,
		VocabSize: 29, MaxSeqLen: 32, NormEps: 1e-5, RopeTheta: 10000,
		TiedEmbeddings: tied, RopeLayout: layout,
	}
}

// randomWeights fills weights for cfg from a seeded generator: projections
// with a scale that keeps activations of order one, norms near one, and
// attention biases (where cfg has them) of order one half, large enough to
// change every logit.
func randomWeights(tb testing.TB, cfg llama.Config, seed uint64) *llama.Weights {
	tb.Helper()
	w, err := llama.NewWeights(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, p := range w.Params() {
		if strings.HasSuffix(p.Name, ".bias") {
			for i := range p.Data {
				p.Data[i] = float32(0.5 * rng.NormFloat64())
			}
			continue
		}
		if len(p.Shape) == 1 { // norm weights
			for i := range p.Data {
				p.Data[i] = float32(1 + 0.2*rng.NormFloat64())
			}
			continue
		}
		std := 1 / math.Sqrt(float64(p.Shape[1]))
		if p.Name == llama.EmbedName {
			std = 1
		}
		for i := range p.Data {
			p.Data[i] = float32(std * rng.NormFloat64())
		}
	}
	return w
}

func newModel(tb testing.TB, b backend.Backend, w *llama.Weights) *llama.Model {
	tb.Helper()
	m, err := llama.New(b, w)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Free)
	return m
}

func loadStories(tb testing.TB) (*llama.Weights, *tokenizer.Tokenizer) {
	tb.Helper()
	return stories.Load(tb)
}

func randomTokens(rng *rand.Rand, n, vocab int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(rng.IntN(vocab))
	}
	return ids
}

func download(tb testing.TB, v *graph.Value) []float32 {
	tb.Helper()
	h, err := v.Download()
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// maxRelDiff returns max |a−b| / max(1, max|b|) over the two slices,
// in float64 whatever their element types (the model's float32 logits
// against float64 references, or two of either).
func maxRelDiff[A, B float32 | float64](a []A, b []B) float64 {
	var scale, d float64
	for i := range b {
		scale = max(scale, math.Abs(float64(b[i])))
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d / max(1, scale)
}

// samePositions fails tb at the first of the B·T positions whose logits in
// got ([B, T, V]) differ from want's by more than tol, each position
// measured on its own by maxRelDiff; what names the run and ref the
// reference in the message.
func samePositions[W float32 | float64](tb testing.TB, got []float32, want []W, B, T, V int, tol float64, what, ref string) {
	tb.Helper()
	for row := range B {
		for p := range T {
			k := row*T + p
			if d := maxRelDiff(got[k*V:(k+1)*V], want[k*V:(k+1)*V]); d > tol {
				tb.Fatalf("%s: row %d position %d: cached logits differ from %s by %.3g", what, row, p, ref, d)
			}
		}
	}
}

// decodeChunks runs the B rows of ids ([B·T]) through a fresh KV cache of
// m, the chunks' lengths (summing to T) at a time, asking for every
// position's logits, and returns them laid out as the training forward's,
// [B, T, vocab]. The cache is longer than T, as generation leaves it.
func decodeChunks(tb testing.TB, m *llama.Model, g *graph.Tape, ids []int32, B, T int, chunks []int) []float32 {
	tb.Helper()
	V := m.Config().VocabSize
	kc, err := m.NewCache(B, T+5)
	if err != nil {
		tb.Fatal(err)
	}
	defer kc.Free()
	out := make([]float32, B*T*V)
	pos := 0
	for _, n := range chunks {
		chunk := make([]int32, 0, B*n)
		for row := range B {
			chunk = append(chunk, ids[row*T+pos:row*T+pos+n]...)
		}
		lv, err := m.Decode(g, kc, chunk, n, true)
		if err != nil {
			tb.Fatal(err)
		}
		got := download(tb, lv)
		for row := range B {
			copy(out[(row*T+pos)*V:(row*T+pos+n)*V], got[row*n*V:(row+1)*n*V])
		}
		g.Reset()
		pos += n
	}
	if pos != T || kc.Len() != T {
		tb.Fatalf("chunks %v: cache length %d after %d positions, want %d", chunks, kc.Len(), pos, T)
	}
	return out
}

// fdProbe evaluates the language-model loss of a model on one batch, with
// every parameter trainable, to check the backward against central
// differences of the loss.
type fdProbe struct {
	tb      testing.TB
	b       backend.Backend
	m       *llama.Model
	g       *graph.Tape
	bt      llama.Batch
	targets []int32
}

// newFDProbe makes every parameter of m trainable and takes bt's targets
// from LMTargets(bt, prompts).
func newFDProbe(tb testing.TB, b backend.Backend, m *llama.Model, bt llama.Batch, prompts []int) *fdProbe {
	tb.Helper()
	for _, p := range m.Params() {
		if err := p.SetTrainable(true); err != nil {
			tb.Fatal(err)
		}
	}
	targets, err := llama.LMTargets(bt, prompts)
	if err != nil {
		tb.Fatal(err)
	}
	g := graph.New(b)
	tb.Cleanup(g.Close)
	return &fdProbe{tb: tb, b: b, m: m, g: g, bt: bt, targets: targets}
}

// loss is the loss at the parameters' current values, without recording
// anything for a backward.
func (f *fdProbe) loss() float64 {
	f.tb.Helper()
	f.g.Reset()
	prev := f.g.SetNoGrad(true)
	defer f.g.SetNoGrad(prev)
	l, err := f.m.LMLoss(f.g, f.bt, f.targets, graph.CrossEntropyOptions{})
	if err != nil {
		f.tb.Fatal(err)
	}
	v, err := l.Item()
	if err != nil {
		f.tb.Fatal(err)
	}
	return float64(v)
}

// grads runs the backward of the loss from zeroed gradients (Backward
// accumulates) and returns the gradients of the trainable parameters by
// name.
func (f *fdProbe) grads() map[string][]float32 {
	f.tb.Helper()
	for _, p := range f.m.Params() {
		p.ZeroGrad()
	}
	f.g.Reset()
	loss, err := f.m.LMLoss(f.g, f.bt, f.targets, graph.CrossEntropyOptions{})
	if err != nil {
		f.tb.Fatal(err)
	}
	if err := f.g.Backward(loss); err != nil {
		f.tb.Fatal(err)
	}
	grads := map[string][]float32{}
	for _, p := range f.m.Params() {
		if p.Trainable() {
			if grads[p.Name()], err = p.DownloadGrad(); err != nil {
				f.tb.Fatalf("%s: %v", p.Name(), err)
			}
		}
	}
	return grads
}

// check compares grads at samples elements of each of params, drawn from
// rng, with the central difference of the loss over a step of ±1e-2,
// allowing 2e-3 plus 2% of the difference; label starts each message.
func (f *fdProbe) check(label string, params []*graph.Value, grads map[string][]float32, samples int, rng *rand.Rand) {
	f.tb.Helper()
	const h = 1e-2
	for _, p := range params {
		data := download(f.tb, p)
		for k := range samples {
			i := rng.IntN(len(data))
			orig := data[i]
			set := func(v float32) {
				data[i] = v
				f.b.Upload(p.Tensor(), data)
			}
			set(orig + h)
			up := f.loss()
			set(orig - h)
			down := f.loss()
			set(orig)
			fd := (up - down) / (2 * h)
			if an := float64(grads[p.Name()][i]); math.Abs(fd-an) > 2e-3+0.02*math.Abs(fd) {
				f.tb.Errorf("%s %s[%d] (sample %d): gradient %.6g, finite difference %.6g", label, p.Name(), i, k, an, fd)
			}
		}
	}
}

// knownText is what llama2.c's run.c prints for stories260K at temperature
// 0 from the prompt "Once upon a time" (the data README and the issue).
const knownText = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."

// printed decodes a sequence as run.c prints it: piece by piece, each
// decoded after its predecessor, skipping unprintable single bytes.
func printed(tok *tokenizer.Tokenizer, seq []int) string {
	var s []byte
	for i := 1; i < len(seq); i++ {
		if p := tok.Decode(seq[i-1], seq[i]); tokenizer.IsPrintable(p) {
			s = append(s, p...)
		}
	}
	return string(s)
}
