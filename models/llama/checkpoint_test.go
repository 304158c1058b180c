package llama_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// checkpointRun is one training step's loss, trainable gradients by name
// and the tape's peak live bytes, of a fresh model over w, with gradient
// checkpointing on or off; with method set, a PEFT method with input
// dropout adapts every linear layer, else every parameter is trainable.
type checkpointRun struct {
	loss  float32
	grads map[string][]float32
	peak  int64
}

func runCheckpointStep(t *testing.T, w *llama.Weights, bt llama.Batch, targets []int32, method peft.Method, checkpoint bool) checkpointRun {
	t.Helper()
	b := openCPU(t)
	m := newModel(t, b, w)
	if method != "" {
		pm, err := peft.Inject(m, peft.Config{Method: method, R: 2, Alpha: 4, RotationRank: 2, Dropout: 0.3,
			TargetModules: []string{peft.AllLinear}, Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		pm.SetDropoutStep(3, 1)
	} else {
		for _, p := range m.Params() {
			if err := p.SetTrainable(true); err != nil {
				t.Fatal(err)
			}
		}
	}
	m.SetGradientCheckpointing(checkpoint)
	g := graph.New(b)
	t.Cleanup(g.Close)
	loss, err := m.LMLoss(g, bt, targets, graph.CrossEntropyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Backward(loss); err != nil {
		t.Fatal(err)
	}
	r := checkpointRun{grads: map[string][]float32{}, peak: g.Stats().PeakLiveBytes}
	if r.loss, err = loss.Item(); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Trainable() {
		if r.grads[p.Name()], err = p.DownloadGrad(); err != nil {
			t.Fatalf("%s: %v", p.Name(), err)
		}
	}
	return r
}

// TestGradientCheckpointing checks that checkpointing every decoder layer
// changes neither the loss nor any gradient, by a single bit, for each
// kind of layer (LLaMA, Qwen3's QK-norm, Gemma 3's and Gemma 2's with
// sliding windows and soft-caps) with every parameter trainable and with
// LoRA and SORA adapters whose input dropout must draw the same masks in
// the recomputation; and that it keeps fewer activations at the step's
// peak.
func TestGradientCheckpointing(t *testing.T) {
	configs := []namedConfig{
		{"llama", tinyConfig(false, llama.RopeInterleaved)},
		{"qwen3", qwen3Config(llama.RopeHalfSplit)},
		{"gemma3", gemmaConfig(llama.RopeHalfSplit)},
		{"gemma2", gemma2Config(llama.RopeHalfSplit)},
	}
	const B, T = 2, 9
	for _, nc := range configs {
		w := gemmaWeights(t, nc.cfg, 17)
		rng := rand.New(rand.NewPCG(4, 5))
		bt := llama.Batch{Tokens: randomTokens(rng, B*T, nc.cfg.VocabSize), Size: B, Len: T}
		targets, err := llama.LMTargets(bt, []int{2, 3})
		if err != nil {
			t.Fatal(err)
		}
		for _, method := range []peft.Method{"", peft.LoRA, peft.SORA} {
			name := nc.name + "/" + string(method)
			if method == "" {
				name = nc.name + "/every parameter"
			}
			t.Run(name, func(t *testing.T) {
				plain := runCheckpointStep(t, w, bt, targets, method, false)
				ckpt := runCheckpointStep(t, w, bt, targets, method, true)
				if ckpt.loss != plain.loss {
					t.Errorf("loss %v checkpointed, %v plain", ckpt.loss, plain.loss)
				}
				if len(ckpt.grads) != len(plain.grads) || len(plain.grads) == 0 {
					t.Fatalf("%d trainable tensors checkpointed, %d plain", len(ckpt.grads), len(plain.grads))
				}
				for name, want := range plain.grads {
					if !slices.Equal(ckpt.grads[name], want) {
						t.Errorf("%s: gradient differs with checkpointing (max relative %.3g)", name, maxRelDiff(ckpt.grads[name], want))
					}
				}
				t.Logf("loss %v; peak live bytes: %d checkpointed, %d plain", plain.loss, ckpt.peak, plain.peak)
				if !(ckpt.peak < plain.peak) {
					t.Errorf("peak live bytes %d checkpointed, not below the plain run's %d", ckpt.peak, plain.peak)
				}
			})
		}
	}
}

// TestCheckpointedHeadLoss checks the loss head in checkpointed chunks
// (LossAt with gradient checkpointing on, chunks of 3 rows of logits)
// against the plain model's single pass: the same loss and gradients but
// for the rounding of the chunks' sum (1e-6 relative), for a Gemma 2 model
// (soft-capped logits) with every parameter trainable and with LoRA, and
// a lower peak of live bytes where the logits outweigh the layers (a
// vocabulary of 3000 over two narrow layers).
func TestCheckpointedHeadLoss(t *testing.T) {
	defer llama.SetHeadChunkBytes(llama.SetHeadChunkBytes(3 * 4 * 3000))
	cfg := gemma2Config(llama.RopeHalfSplit)
	cfg.VocabSize, cfg.NumLayers, cfg.LayerKinds = 3000, 2, "sf"
	w := gemmaWeights(t, cfg, 19)
	const B, T = 2, 9
	rng := rand.New(rand.NewPCG(6, 7))
	bt := llama.Batch{Tokens: randomTokens(rng, B*T, cfg.VocabSize), Size: B, Len: T, Lengths: []int{9, 6}}
	targets, err := llama.LMTargets(bt, []int{2, 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []peft.Method{"", peft.LoRA} {
		plain := runCheckpointStep(t, w, bt, targets, method, false)
		ckpt := runCheckpointStep(t, w, bt, targets, method, true)
		if d := maxRelDiff([]float32{ckpt.loss}, []float32{plain.loss}); d > 1e-6 {
			t.Errorf("%q: loss %v in chunks, %v in one pass", method, ckpt.loss, plain.loss)
		}
		for name, want := range plain.grads {
			if d := maxRelDiff(ckpt.grads[name], want); d > 1e-5 {
				t.Errorf("%q: %s: gradient in chunks differs by %.3g", method, name, d)
			}
		}
		t.Logf("%q: peak live bytes %d in chunks, %d in one pass", method, ckpt.peak, plain.peak)
		if !(ckpt.peak < plain.peak) {
			t.Errorf("%q: peak live bytes %d in chunks, not below %d", method, ckpt.peak, plain.peak)
		}
	}
}

// TestLogitsAt checks that LogitsAt gives the rows of Forward's logits
// (soft-capped, for Gemma 2) at the positions asked for (to 1e-6), and that LossAt
// and LogitsAt refuse positions outside the batch and mismatched targets.
func TestLogitsAt(t *testing.T) {
	b := openCPU(t)
	cfg := gemma2Config(llama.RopeHalfSplit)
	m := newModel(t, b, gemmaWeights(t, cfg, 23))
	const B, T = 2, 5
	rng := rand.New(rand.NewPCG(8, 9))
	bt := llama.Batch{Tokens: randomTokens(rng, B*T, cfg.VocabSize), Size: B, Len: T}
	g := graph.New(b)
	defer g.Close()
	all, err := m.Forward(g, bt)
	if err != nil {
		t.Fatal(err)
	}
	full := download(t, all)
	rows := []int32{7, 0, 4, 4}
	at, err := m.LogitsAt(g, bt, rows)
	if err != nil {
		t.Fatal(err)
	}
	got := download(t, at)
	V := cfg.VocabSize
	for i, r := range rows {
		// The head's product over fewer rows may round differently.
		if d := maxRelDiff(got[i*V:(i+1)*V], full[int(r)*V:(int(r)+1)*V]); d > 1e-6 {
			t.Errorf("LogitsAt row %d (position %d) differs from Forward's by %.3g", i, r, d)
		}
	}
	for _, bad := range [][]int32{{10}, {-1}} {
		if _, err := m.LogitsAt(g, bt, bad); err == nil {
			t.Errorf("LogitsAt at %v: no error", bad)
		}
		if _, err := m.LossAt(g, bt, bad, []int32{1}, graph.CrossEntropyOptions{}); err == nil {
			t.Errorf("LossAt at %v: no error", bad)
		}
	}
	for _, tc := range []struct{ rows, targets []int32 }{{[]int32{1, 2}, []int32{3}}, {nil, nil}, {[]int32{1}, []int32{int32(V)}}} {
		if _, err := m.LossAt(g, bt, tc.rows, tc.targets, graph.CrossEntropyOptions{}); err == nil {
			t.Errorf("LossAt(%v, %v): no error", tc.rows, tc.targets)
		}
	}
}

// trainAll makes every parameter of m trainable and zeroes the gradients.
func trainAll(t *testing.T, m *llama.Model) {
	t.Helper()
	for _, p := range m.Params() {
		if err := p.SetTrainable(true); err != nil {
			t.Fatal(err)
		}
		p.ZeroGrad()
	}
}

// stepGrads runs one step of the loss build makes on a fresh tape and
// returns its loss, every trainable parameter's gradient by name (nil
// where none was written) and the step's peak live bytes; gradients are
// zeroed first.
func stepGrads(t *testing.T, m *llama.Model, build func(g *graph.Tape) (*graph.Value, error)) checkpointRun {
	t.Helper()
	for _, p := range m.Trainable() {
		p.ZeroGrad()
	}
	g := graph.New(m.Backend())
	defer g.Close()
	loss, err := build(g)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Backward(loss); err != nil {
		t.Fatal(err)
	}
	r := checkpointRun{grads: map[string][]float32{}, peak: g.Stats().PeakLiveBytes}
	if r.loss, err = loss.Item(); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Trainable() {
		if p.Grad().IsZero() {
			r.grads[p.Name()] = nil
			continue
		}
		if r.grads[p.Name()], err = p.DownloadGrad(); err != nil {
			t.Fatalf("%s: %v", p.Name(), err)
		}
	}
	return r
}

// TestLossAtTargetsReused checks that LossAt's checkpointed chunks do not
// read the caller's targets again when Backward recomputes them: a caller
// may reuse its slice once LossAt has returned (as it may after
// CrossEntropy or Gather), and the gradients must be those of the targets
// LossAt was given.
func TestLossAtTargetsReused(t *testing.T) {
	defer llama.SetHeadChunkBytes(llama.SetHeadChunkBytes(3 * 4 * 29))
	cfg := tinyConfig(true, llama.RopeInterleaved)
	m := newModel(t, openCPU(t), randomWeights(t, cfg, 31))
	trainAll(t, m)
	m.SetGradientCheckpointing(true)
	const B, T = 2, 6
	rng := rand.New(rand.NewPCG(2, 3))
	bt := llama.Batch{Tokens: randomTokens(rng, B*T, cfg.VocabSize), Size: B, Len: T}
	rows := []int32{0, 1, 2, 4, 6, 7, 8, 10}
	want := randomTokens(rng, len(rows), cfg.VocabSize)
	loss := func(reuse bool) func(g *graph.Tape) (*graph.Value, error) {
		return func(g *graph.Tape) (*graph.Value, error) {
			targets := slices.Clone(want)
			l, err := m.LossAt(g, bt, rows, targets, graph.CrossEntropyOptions{})
			if reuse {
				for i := range targets { // the caller's next batch, say
					targets[i] = (targets[i] + 1) % int32(cfg.VocabSize)
				}
			}
			return l, err
		}
	}
	kept, reused := stepGrads(t, m, loss(false)), stepGrads(t, m, loss(true))
	if reused.loss != kept.loss {
		t.Errorf("loss %v with the targets slice reused, %v kept", reused.loss, kept.loss)
	}
	for name, w := range kept.grads {
		if !slices.Equal(reused.grads[name], w) {
			t.Errorf("%s: the gradient changes when the caller reuses its targets slice after LossAt (max relative %.3g)",
				name, maxRelDiff(reused.grads[name], w))
		}
	}
}

// TestLMLossAllIgnored checks LMLoss on a batch with no counted target:
// a loss of 0 that Backward takes, writing a gradient of 0 to every
// trainable parameter, without the logits of the whole batch, which
// gradient checkpointing's chunked head exists to avoid (the step's peak
// stays within one chunk's logits of that of the same batch with every
// target counted).
func TestLMLossAllIgnored(t *testing.T) {
	cfg := tinyConfig(true, llama.RopeInterleaved)
	cfg.VocabSize = 1500
	m := newModel(t, openCPU(t), randomWeights(t, cfg, 37))
	trainAll(t, m)
	chunkBytes := 8 * 4 * cfg.VocabSize // 8 rows of logits
	defer llama.SetHeadChunkBytes(llama.SetHeadChunkBytes(chunkBytes))
	const B, T = 2, 32
	rng := rand.New(rand.NewPCG(4, 4))
	bt := llama.Batch{Tokens: randomTokens(rng, B*T, cfg.VocabSize), Size: B, Len: T}
	counted, err := llama.LMTargets(bt, nil)
	if err != nil {
		t.Fatal(err)
	}
	none := slices.Repeat([]int32{graph.IgnoreIndex}, B*T)
	for _, checkpoint := range []bool{false, true} {
		m.SetGradientCheckpointing(checkpoint)
		lm := func(targets []int32) func(g *graph.Tape) (*graph.Value, error) {
			return func(g *graph.Tape) (*graph.Value, error) {
				return m.LMLoss(g, bt, targets, graph.CrossEntropyOptions{})
			}
		}
		all, empty := stepGrads(t, m, lm(counted)), stepGrads(t, m, lm(none))
		if empty.loss != 0 {
			t.Errorf("checkpointing %v: loss %v with every target ignored, want 0", checkpoint, empty.loss)
		}
		for name, g := range empty.grads {
			if g == nil || slices.ContainsFunc(g, func(v float32) bool { return v != 0 }) {
				t.Errorf("checkpointing %v: %s: gradient %v..., want zeros", checkpoint, name, g[:min(3, len(g))])
			}
		}
		t.Logf("checkpointing %v: peak live bytes %d with every target ignored, %d with every target counted", checkpoint, empty.peak, all.peak)
		if checkpoint && empty.peak > all.peak+int64(chunkBytes) {
			t.Errorf("peak live bytes %d with every target ignored, above the %d of the batch with every target counted in chunks of %d bytes of logits: the whole batch's logits (%d bytes) were made",
				empty.peak, all.peak, chunkBytes, B*T*4*cfg.VocabSize)
		}
	}
}

// TestLMLossMatchesFullLogits checks LMLoss, which runs the head only at
// the counted positions, against what it computed before it did so: the
// cross-entropy of Forward's logits at every position with the ignored
// ones skipped. Without gradient checkpointing the loss and every
// gradient agree to float32 rounding (1e-6 and 1e-5 relative), for
// untied, tied and soft-capped (Gemma 2) heads, with label smoothing and
// a divisor too.
func TestLMLossMatchesFullLogits(t *testing.T) {
	configs := []namedConfig{
		{"llama", tinyConfig(false, llama.RopeInterleaved)},
		{"llama tied", tinyConfig(true, llama.RopeHalfSplit)},
		{"gemma2", gemma2Config(llama.RopeHalfSplit)},
	}
	const B, T = 3, 7
	for _, nc := range configs {
		m := newModel(t, openCPU(t), gemmaWeights(t, nc.cfg, 41))
		trainAll(t, m)
		rng := rand.New(rand.NewPCG(5, 6))
		bt := llama.Batch{Tokens: randomTokens(rng, B*T, nc.cfg.VocabSize), Size: B, Len: T, Lengths: []int{7, 4, 6}}
		targets, err := llama.LMTargets(bt, []int{2, 1, 3})
		if err != nil {
			t.Fatal(err)
		}
		for _, opts := range []graph.CrossEntropyOptions{{}, {Smoothing: 0.1, Divisor: 23}} {
			name := fmt.Sprintf("%s/%+v", nc.name, opts)
			full := stepGrads(t, m, func(g *graph.Tape) (*graph.Value, error) {
				logits, err := m.Forward(g, bt)
				if err != nil {
					return nil, err
				}
				return g.CrossEntropy(logits, targets, opts), nil
			})
			at := stepGrads(t, m, func(g *graph.Tape) (*graph.Value, error) { return m.LMLoss(g, bt, targets, opts) })
			if d := maxRelDiff([]float32{at.loss}, []float32{full.loss}); d > 1e-6 {
				t.Errorf("%s: loss %v at the counted positions, %v from every position's logits", name, at.loss, full.loss)
			}
			if len(full.grads) == 0 {
				t.Fatalf("%s: no trainable parameter", name)
			}
			for p, want := range full.grads {
				if want == nil || at.grads[p] == nil {
					t.Errorf("%s: %s: gradient written %v from every position's logits, %v at the counted positions", name, p, want != nil, at.grads[p] != nil)
					continue
				}
				if d := maxRelDiff(at.grads[p], want); d > 1e-5 {
					t.Errorf("%s: %s: gradient differs by %.3g", name, p, d)
				}
			}
		}
	}
}

// TestCheckpointedHeadManyChunks checks that the checkpointed head's
// memory does not grow with its number of chunks: the step's peak with
// one row of logits per chunk (62 chunks) is at most that with 8 rows
// per chunk, itself below the single pass's, but for the chunks' [1]
// losses. A chunk's backward must
// hold no more than its own rows (its slice of the hidden states adds
// into one gradient of them, not a full-size one per chunk), and the
// loss comes out the same to float32 rounding.
func TestCheckpointedHeadManyChunks(t *testing.T) {
	cfg := tinyConfig(true, llama.RopeInterleaved)
	cfg.VocabSize = 1500
	m := newModel(t, openCPU(t), randomWeights(t, cfg, 43))
	trainAll(t, m)
	m.SetGradientCheckpointing(true)
	const B, T = 2, 32
	rng := rand.New(rand.NewPCG(7, 7))
	bt := llama.Batch{Tokens: randomTokens(rng, B*T, cfg.VocabSize), Size: B, Len: T}
	targets, err := llama.LMTargets(bt, nil)
	if err != nil {
		t.Fatal(err)
	}
	peaks := map[int]checkpointRun{}
	for _, rows := range []int{B * T, 8, 1} {
		prev := llama.SetHeadChunkBytes(rows * 4 * cfg.VocabSize)
		peaks[rows] = stepGrads(t, m, func(g *graph.Tape) (*graph.Value, error) {
			return m.LMLoss(g, bt, targets, graph.CrossEntropyOptions{})
		})
		llama.SetHeadChunkBytes(prev)
		t.Logf("chunks of %d rows: peak live bytes %d", rows, peaks[rows].peak)
	}
	// Each chunk keeps its loss and the running sum, [1] each, to the end
	// of the forward: 8 bytes a chunk, all the growth allowed.
	const chunks = B*T - 2
	if one, eight, all := peaks[1], peaks[8], peaks[B*T]; one.peak > eight.peak+8*chunks || eight.peak >= all.peak {
		t.Errorf("peak live bytes %d with 1-row chunks, %d with 8-row chunks (+ %d bytes of chunk losses), %d in one pass; want them in that order",
			one.peak, eight.peak, 8*chunks, all.peak)
	}
	for _, rows := range []int{8, 1} {
		if d := maxRelDiff([]float32{peaks[rows].loss}, []float32{peaks[B*T].loss}); d > 1e-6 {
			t.Errorf("chunks of %d rows: loss %v, %v in one pass", rows, peaks[rows].loss, peaks[B*T].loss)
		}
	}
}
