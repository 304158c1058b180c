package llama_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/internal/reference"
	"github.com/sora-go/sora/models/internal/stories"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
	"github.com/sora-go/sora/peft"
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
// measured on its own by maxRelDiff; what names the run and the logits
// got holds, ref the reference, in the message.
func samePositions[W float32 | float64](tb testing.TB, got []float32, want []W, B, T, V int, tol float64, what, ref string) {
	tb.Helper()
	for row := range B {
		for p := range T {
			k := row*T + p
			if d := maxRelDiff(got[k*V:(k+1)*V], want[k*V:(k+1)*V]); d > tol {
				tb.Fatalf("%s differ from %s by %.3g at row %d position %d", what, ref, d, row, p)
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
	kc, err := m.NewCache(B, T+5)
	if err != nil {
		tb.Fatal(err)
	}
	defer kc.Free()
	return decodeInto(tb, m, g, kc, ids, B, T, chunks, nil)
}

// decodeInto is decodeChunks through the empty cache kc, calling before(c)
// (where not nil) ahead of chunk c.
func decodeInto(tb testing.TB, m *llama.Model, g *graph.Tape, kc *llama.Cache, ids []int32, B, T int, chunks []int, before func(c int)) []float32 {
	tb.Helper()
	V := m.Config().VocabSize
	out := make([]float32, B*T*V)
	pos := 0
	for c, n := range chunks {
		if before != nil {
			before(c)
		}
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

// forwardLogits returns the logits [B, T, vocab] of the training forward
// over ids, B rows of equal length.
func forwardLogits(t *testing.T, m *llama.Model, ids []int32, B int) []float32 {
	t.Helper()
	g := graph.New(m.Backend())
	defer g.Close()
	lv, err := m.Forward(g, llama.Batch{Tokens: ids, Size: B, Len: len(ids) / B})
	if err != nil {
		t.Fatal(err)
	}
	return download(t, lv)
}

// inLayout returns a copy of w converted to layout l.
func inLayout(tb testing.TB, w *llama.Weights, l llama.RopeLayout) *llama.Weights {
	tb.Helper()
	c, err := w.Clone()
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.ToLayout(l); err != nil {
		tb.Fatal(err)
	}
	return c
}

// bothLayouts are the two rotary layouts, the Hugging Face one first.
var bothLayouts = []llama.RopeLayout{llama.RopeHalfSplit, llama.RopeInterleaved}

// referenceLogits runs the float32 reference of w (reference.New) over
// each of the B rows of ids, one position at a time through its cache,
// and returns the logits [B, T, vocab].
func referenceLogits(t *testing.T, w *llama.Weights, ids []int32, B int) []float32 {
	t.Helper()
	T := len(ids) / B
	var out []float32
	for row := range B {
		ref, err := reference.New(w)
		if err != nil {
			t.Fatal(err)
		}
		for pos := range T {
			rl, err := ref.Forward(int(ids[row*T+pos]), pos)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, rl...)
		}
	}
	return out
}

// rows64 is a float64 forward over the B rows of ids, such as
// forwardRows64: the logits [B, T, vocab].
type rows64 func(w *llama.Weights, ids []int32, B int) []float64

// checkForward64 converts w to each rotary layout (ToLayout) and checks,
// for the converted weights lw, that ref(lw) gives want (to 1e-9: the
// conversion changes no function), and that the backend model's training
// forward and the float32 reference, one position at a time, each give
// want to tol (maxRelDiff, the reference position by position). ids holds
// B rows of T tokens; label starts each message.
func checkForward64(t *testing.T, b backend.Backend, w *llama.Weights, ids []int32, B int, want []float64,
	ref rows64, tol float64, label string) {
	t.Helper()
	T, V := len(ids)/B, w.Config.VocabSize
	for _, layout := range bothLayouts {
		lw := inLayout(t, w, layout)
		if d := maxRelDiff(ref(lw, ids, B), want); d > 1e-9 {
			t.Errorf("%s%v: the float64 forward of the converted weights differs by %.3g", label, layout, d)
		}
		d := maxRelDiff(forwardLogits(t, newModel(t, b, lw), ids, B), want)
		t.Logf("%s%v: forward differs from the float64 reference by %.3g", label, layout, d)
		if d > tol {
			t.Errorf("%s%v: forward differs from the float64 reference by %.3g", label, layout, d)
		}
		samePositions(t, referenceLogits(t, lw, ids, B), want, B, T, V, tol, fmt.Sprintf("%s%v: the float32 reference's logits", label, layout), "the float64 reference")
	}
}

// checkLayoutRoundTrip checks that ToLayout to the interleaved layout and
// back is the identity on every tensor of w (in the half-split layout).
func checkLayoutRoundTrip(t *testing.T, w *llama.Weights, label string) {
	t.Helper()
	back := inLayout(t, inLayout(t, w, llama.RopeInterleaved), llama.RopeHalfSplit)
	for i, p := range back.Params() {
		if !slices.Equal(p.Data, w.Params()[i].Data) {
			t.Errorf("%s%s changed after ToLayout there and back", label, p.Name)
		}
	}
}

// checkDecode runs the B rows of ids ([B·T]) through the KV cache of a
// model of w, both ways the cache attends (all heads at once and per
// key/value head), in each of chunkings (decodeChunks), and checks every
// position's logits against want's (to 1e-5, samePositions); where greedy,
// it also checks generation through the cache (checkGreedy). label starts
// each message and ref names want's source.
func checkDecode[W float32 | float64](t *testing.T, b backend.Backend, w *llama.Weights, ids []int32, B, T int, want []W,
	chunkings [][]int, greedy bool, label, ref string) {
	t.Helper()
	V := w.Config.VocabSize
	for _, perHead := range []bool{false, true} {
		m := newModel(t, b, w)
		llama.SetPerHeadAttention(m, perHead)
		g := graph.New(b)
		for _, chunks := range chunkings {
			got := decodeChunks(t, m, g, ids, B, T, chunks)
			samePositions(t, got, want, B, T, V, 1e-5, fmt.Sprintf("%s per-head=%v chunks %v: cached logits", label, perHead, chunks), ref)
		}
		if greedy {
			checkGreedy(t, m, g, fmt.Sprintf("%s per-head=%v", label, perHead))
		}
		g.Close()
	}
}

// checkDecode64 is checkDecode of w on two rows of 11 random tokens
// (seeded 9, 10) against ref's float64 logits.
func checkDecode64(t *testing.T, b backend.Backend, w *llama.Weights, ref rows64, chunkings [][]int, greedy bool, label string) {
	t.Helper()
	const B, T = 2, 11
	ids := randomTokens(rand.New(rand.NewPCG(9, 10)), B*T, w.Config.VocabSize)
	checkDecode(t, b, w, ids, B, T, ref(w, ids, B), chunkings, greedy, label, "the float64 reference")
}

// checkGreedy checks that greedy generation through m's cache, token by
// token and in one call, picks for 20 steps after a prompt of 3 tokens
// the tokens that argmax of the full forward, rerun on g over the whole
// sequence so far at every step, picks.
func checkGreedy(t *testing.T, m *llama.Model, g *graph.Tape, label string) {
	t.Helper()
	V := m.Config().VocabSize
	prompt := []int{3, 17, 5}
	const steps = 20
	seq := slices.Clone(prompt)
	for len(seq) < steps+1 {
		toks := make([]int32, len(seq))
		for i, v := range seq {
			toks[i] = int32(v)
		}
		g.Reset()
		lv, err := m.Forward(g, llama.Batch{Tokens: toks, Size: 1, Len: len(toks)})
		if err != nil {
			t.Fatal(err)
		}
		l := download(t, lv)
		seq = append(seq, reference.Argmax(l[(len(seq)-1)*V:]))
	}
	g.Reset()
	gen, err := m.NewGenerator(0)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	for _, byToken := range []bool{false, true} {
		got, err := gen.Generate(prompt, llama.GenerateOptions{Steps: steps, TokenByToken: byToken}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, seq) {
			t.Errorf("%s token-by-token=%v: cached greedy tokens %v, full forward's %v", label, byToken, got, seq)
		}
	}
}

// paddedProbe builds a model of w and an fdProbe over two rows of n
// random tokens drawn from rng, the second padded after n−2, with prompts
// of 2 and 1 tokens, and returns the probe and the gradients of the loss.
func paddedProbe(t *testing.T, b backend.Backend, w *llama.Weights, n int, rng *rand.Rand) (*llama.Model, *fdProbe, map[string][]float32) {
	t.Helper()
	m := newModel(t, b, w)
	bt := llama.Batch{Tokens: randomTokens(rng, 2*n, w.Config.VocabSize), Size: 2, Len: n, Lengths: []int{n, n - 2}}
	f := newFDProbe(t, b, m, bt, []int{2, 1})
	return m, f, f.grads()
}

// nonzero fails the test for each of params whose gradient in grads is
// all zeros: a sampled finite-difference check could pass on a parameter
// that the backward does not reach at all where the loss is flat.
func (f *fdProbe) nonzero(label string, params []*graph.Value, grads map[string][]float32) {
	f.tb.Helper()
	for _, p := range params {
		var n float64
		for _, v := range grads[p.Name()] {
			n += float64(v) * float64(v)
		}
		if n == 0 {
			f.tb.Errorf("%s: %s has a zero gradient", label, p.Name())
		}
	}
}

// checkPEFTMerge injects method into a model of w on every linear layer
// and checks what PEFT does to it: no norm weight is trainable; the
// adapted layers are the 7 linear layers of each block; with every adapter
// tensor moved off its identity start (by 0.2·N(0, 1) from rng) the
// logits over bt move from ref's for w by at least 1e-2; and merging leaves
// every norm weight as it was and gives weights whose ref logits are the
// adapted model's, to 1e-4.
func checkPEFTMerge(t *testing.T, b backend.Backend, w *llama.Weights, bt llama.Batch, method peft.Method, ref rows64, rng *rand.Rand) {
	t.Helper()
	m := newModel(t, b, w)
	pm, err := peft.Inject(m, peft.Config{Method: method, R: 2, Alpha: 4, RotationRank: 2, TargetModules: []string{peft.AllLinear}, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Trainable() {
		if strings.Contains(p.Name(), "norm") {
			t.Errorf("%v: %s is trainable under PEFT", method, p.Name())
		}
	}
	if len(pm.Layers()) != 7*w.Config.NumLayers {
		t.Errorf("%v: %d adapted layers; want the 7 linear layers of each block", method, len(pm.Layers()))
	}
	for _, l := range pm.Layers() {
		for _, nt := range l.Tensors() {
			data := download(t, nt.Value)
			for i := range data {
				data[i] += float32(0.2 * rng.NormFloat64())
			}
			b.Upload(nt.Value.Tensor(), data)
		}
	}
	adapted := forwardLogits(t, m, bt.Tokens, bt.Size)
	if d := maxRelDiff(adapted, ref(w, bt.Tokens, bt.Size)); d < 1e-2 {
		t.Fatalf("%v: the adapters move the logits by only %.3g", method, d)
	}
	if err := pm.MergeAndUnload(); err != nil {
		t.Fatal(err)
	}
	mw, err := m.Weights()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range w.Params() {
		if q, ok := mw.Param(p.Name); strings.Contains(p.Name, "norm") && (!ok || !slices.Equal(q.Data, p.Data)) {
			t.Errorf("%v: merging changed %s", method, p.Name)
		}
	}
	if d := maxRelDiff(ref(mw, bt.Tokens, bt.Size), adapted); d > 1e-4 {
		t.Errorf("%v: the merged weights compute logits %.3g from the adapted model's", method, d)
	}
}

// namedConfig is one model of a table of configurations.
type namedConfig struct {
	name string
	cfg  llama.Config
}

// checkParamCounts checks c's LayerParams and NumParams against counts
// worked out by hand.
func checkParamCounts(t *testing.T, c llama.Config, perLayer, total int64, label string) {
	t.Helper()
	if got := c.LayerParams(); got != perLayer {
		t.Errorf("%sLayerParams = %d, want %d", label, got, perLayer)
	}
	if got := c.NumParams(); got != total {
		t.Errorf("%sNumParams = %d, want %d", label, got, total)
	}
}

// configError is a change to a valid config that Validate must refuse with
// an error containing want.
type configError struct {
	name string
	edit func(*llama.Config)
	want string
}

// checkConfigErrors applies each case's edit to a copy of base and checks
// Validate's error.
func checkConfigErrors(t *testing.T, base llama.Config, cases []configError) {
	t.Helper()
	for _, tc := range cases {
		c := base
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
