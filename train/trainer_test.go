package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/safetensors"
)

func openCPU(t testing.TB) backend.Backend { return testbackend.Open(t, "cpu") }

func tinyConfig() llama.Config {
	return llama.Config{Dim: 16, HiddenDim: 24, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, VocabSize: 23,
		MaxSeqLen: 24, NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true}
}

// tinyModel returns the same small random model for a seed, with method
// injected on every linear layer (nil adapter for method "").
func tinyModel(t testing.TB, b backend.Backend, method peft.Method, seed uint64) (*llama.Model, *peft.Model) {
	t.Helper()
	return tinyModelDropout(t, b, method, seed, 0)
}

// tinyModelDropout is tinyModel with the adapter's dropout p.
func tinyModelDropout(t testing.TB, b backend.Backend, method peft.Method, seed uint64, p float64) (*llama.Model, *peft.Model) {
	t.Helper()
	var cfg *peft.Config
	if method != "" {
		cfg = &peft.Config{Method: method, R: 4, Alpha: 8, RotationRank: 2, TargetModules: []string{peft.AllLinear}, Seed: seed, Dropout: p}
	}
	return tinyAdapted(t, b, seed, cfg)
}

// tinyAdapted is tinyModel with the adapter of cfg (none when nil).
func tinyAdapted(t testing.TB, b backend.Backend, seed uint64, cfg *peft.Config) (*llama.Model, *peft.Model) {
	t.Helper()
	return tinyAdaptedAs(t, b, seed, cfg, llama.Options{})
}

// tinyAdaptedAs is tinyAdapted with the model built with options o.
func tinyAdaptedAs(t testing.TB, b backend.Backend, seed uint64, cfg *peft.Config, o llama.Options) (*llama.Model, *peft.Model) {
	t.Helper()
	w, err := InitWeights(tinyConfig(), seed)
	if err != nil {
		t.Fatal(err)
	}
	// Larger weights than the 0.02 default, so the tiny model's updates
	// are not all in the noise.
	for _, p := range w.Params() {
		if len(p.Shape) == 2 {
			for i := range p.Data {
				p.Data[i] *= 10
			}
		}
	}
	m, err := llama.NewWithOptions(b, w, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	if cfg == nil {
		for _, p := range m.Params() {
			p.SetTrainable(true)
		}
		return m, nil
	}
	pm, err := peft.Inject(m, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, pm
}

// randomSeqs makes n LM sequences of 6 to 16 tokens with prompts of 2 to 5.
func randomSeqs(n int, vocab int, seed uint64) []data.Sequence {
	rng := rand.New(rand.NewPCG(seed, 3))
	out := make([]data.Sequence, n)
	for i := range out {
		l := 6 + rng.IntN(11)
		toks := make([]int32, l)
		toks[0] = 1
		for j := 1; j < l; j++ {
			toks[j] = int32(3 + rng.IntN(vocab-3))
		}
		out[i] = data.Sequence{Tokens: toks, PromptLen: 2 + rng.IntN(4), Label: rng.IntN(2), Row: i}
	}
	return out
}

func download(t testing.TB, ps []*graph.Value) [][]float32 {
	t.Helper()
	out := make([][]float32, len(ps))
	for i, p := range ps {
		h, err := p.Download()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = h
	}
	return out
}

func sameBits(a, b [][]float32) (int, int, bool) {
	for i := range a {
		for j := range a[i] {
			if math.Float32bits(a[i][j]) != math.Float32bits(b[i][j]) {
				return i, j, false
			}
		}
	}
	return 0, 0, true
}

func resumeOptions(out string) Options {
	return Options{Steps: 9, Batch: 4, MicroBatch: 2, LR: 3e-3, Warmup: 2, Schedule: "cosine",
		WeightDecay: 0.01, Seed: 11, SaveEvery: 3, Out: out}
}

// TestResumeBitIdentical interrupts a run (as Ctrl-C does, through its
// context) after step 5, resumes it in a fresh process state (a new model
// and adapter from the same seeds, a new trainer) and checks that the final
// trainable weights and the logged losses equal, bit for bit, those of an
// uninterrupted run, with dropout too (whose masks a resumed run must draw
// as the uninterrupted one does), and for full fine-tuning of every
// parameter (the tied embedding, the norms, and their optimizer state).
func TestResumeBitIdentical(t *testing.T) {
	b := openCPU(t)
	train := randomSeqs(13, tinyConfig().VocabSize, 5) // 13: batches cross epoch boundaries
	for _, c := range []struct {
		method  peft.Method
		dropout float64
		target  string
	}{
		{peft.SORA, 0, ""}, {peft.LoRAPlus, 0, ""}, {peft.SORA, 0.1, ""}, {peft.DoRAPEFT, 0.1, ""}, {peft.Full, 0, peft.AllParameters},
	} {
		method := c.method
		tinyModel := func(t testing.TB, b backend.Backend, method peft.Method, seed uint64) (*llama.Model, *peft.Model) {
			if c.target != "" {
				return tinyAdapted(t, b, seed, &peft.Config{Method: method, TargetModules: []string{c.target}, Seed: seed})
			}
			return tinyModelDropout(t, b, method, seed, c.dropout)
		}
		t.Run(fmt.Sprintf("%s/dropout=%g/%s", method, c.dropout, c.target), func(t *testing.T) {
			dirA, dirB := t.TempDir(), t.TempDir()
			_, pmA := tinyModel(t, b, method, 1)
			mA := pmA.Module().(*llama.Model)
			trA := &Trainer{Model: mA, Adapter: pmA, Train: train, Options: resumeOptions(dirA)}
			resA, err := trA.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := download(t, pmA.Trainable())
			if c.target == peft.AllParameters {
				// Every parameter of the model is among those compared.
				if n, all := len(pmA.Trainable()), len(mA.Params()); n != all {
					t.Fatalf("full fine-tuning trains %d of the model's %d parameters", n, all)
				}
			}

			// Interrupted run: the context is cancelled during step 5 (as
			// Ctrl-C would be); the run finishes that step and stops.
			_, pmB := tinyModel(t, b, method, 1)
			trB := &Trainer{Model: pmB.Module().(*llama.Model), Adapter: pmB, Train: train, Options: resumeOptions(dirB)}
			_, err = runStoppingAt(trB, 4)
			var ie *InterruptedError
			if !errors.As(err, &ie) {
				t.Fatalf("interrupted run returned %v, want an InterruptedError", err)
			}
			if ie.Step != 5 || filepath.Base(ie.Checkpoint) != "step-000005" {
				t.Fatalf("interrupted after step %d with checkpoint %q; want 5 and step-000005", ie.Step, ie.Checkpoint)
			}
			mid := download(t, pmB.Trainable())
			if _, _, same := sameBits(mid, want); same {
				t.Fatal("the interrupted run already has the final weights; the test would prove nothing")
			}

			// Resume in fresh objects: new model, new adapter (initialised
			// afresh, then overwritten from the checkpoint).
			_, pmC := tinyModel(t, b, method, 1)
			optC := resumeOptions(dirB)
			optC.Resume = true
			trC := &Trainer{Model: pmC.Module().(*llama.Model), Adapter: pmC, Train: train, Options: optC}
			resC, err := trC.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if resC.StartStep != 5 || resC.Steps != 9 {
				t.Errorf("resumed run went from step %d to %d; want 5 to 9", resC.StartStep, resC.Steps)
			}
			got := download(t, pmC.Trainable())
			if i, j, same := sameBits(got, want); !same {
				t.Fatalf("resumed weights differ from the uninterrupted run's: %s[%d] = %v, want %v",
					pmC.Trainable()[i].Name(), j, got[i][j], want[i][j])
			}
			if resC.Loss != resA.Loss {
				t.Errorf("mean loss of the last steps %v, uninterrupted %v", resC.Loss, resA.Loss)
			}
			// The logs agree step by step.
			ra, err := ReadMetrics(filepath.Join(dirA, MetricsFile))
			if err != nil {
				t.Fatal(err)
			}
			rb, err := ReadMetrics(filepath.Join(dirB, MetricsFile))
			if err != nil {
				t.Fatal(err)
			}
			la, lb := losses(ra), losses(rb)
			if len(la) != 9 || len(lb) != 9 {
				t.Fatalf("metrics hold %d and %d step losses; want 9 each", len(la), len(lb))
			}
			for i := range la {
				if la[i] != lb[i] {
					t.Errorf("step %d: loss %v uninterrupted, %v interrupted and resumed", i+1, la[i], lb[i])
				}
			}
			// Only the newest KeepCheckpoints (2) checkpoints remain.
			ents, _ := os.ReadDir(filepath.Join(dirB, CheckpointsDir))
			var names []string
			for _, e := range ents {
				if e.IsDir() {
					names = append(names, e.Name())
				}
			}
			if strings.Join(names, ",") != "step-000006,step-000009" {
				t.Errorf("checkpoints left: %v; want step-000006 and step-000009", names)
			}
		})
	}
}

func losses(rs []Record) []float64 {
	var out []float64
	for _, r := range rs {
		if r.Loss != nil {
			out = append(out, *r.Loss)
		}
	}
	return out
}

// TestNaNStopsAndKeepsCheckpoint poisons a trainable weight with NaN after
// the checkpoint of step 4: step 5's loss is NaN, the run must stop with a
// NonFiniteError naming that checkpoint, and leave it (and "latest")
// untouched, with finite weights from which a resumed run finishes exactly
// as an unpoisoned run does.
func TestNaNStopsAndKeepsCheckpoint(t *testing.T) {
	b := openCPU(t)
	train := randomSeqs(10, tinyConfig().VocabSize, 9)
	opts := func(out string) Options {
		return Options{Steps: 6, Batch: 3, LR: 1e-2, Seed: 2, SaveEvery: 2, Out: out}
	}
	clean := t.TempDir()
	_, pmA := tinyModel(t, b, peft.PreDiag, 3)
	if _, err := (&Trainer{Model: pmA.Module().(*llama.Model), Adapter: pmA, Train: train, Options: opts(clean)}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := download(t, pmA.Trainable())

	dir := t.TempDir()
	_, pm := tinyModel(t, b, peft.PreDiag, 3)
	victim := pm.Trainable()[0]
	tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: train, Options: opts(dir),
		beforeStep: func(s int) {
			if s == 4 {
				poison(victim)
			}
		}}
	nf, err := runNonFinite(t, tr)
	if nf.Step != 5 || filepath.Base(nf.Checkpoint) != "step-000004" {
		t.Errorf("error at step %d naming checkpoint %q; want step 5 and step-000004", nf.Step, nf.Checkpoint)
	}
	if !strings.Contains(err.Error(), "NaN") || !strings.Contains(err.Error(), "step-000004") {
		t.Errorf("error %q should say NaN and name the checkpoint", err)
	}
	latest, err := LatestCheckpoint(dir)
	if err != nil || filepath.Base(latest) != "step-000004" {
		t.Fatalf("latest checkpoint %q (%v); want step-000004", latest, err)
	}
	// Resume from the good checkpoint: the NaN is gone and the run ends
	// where the clean run ended.
	_, pm2 := tinyModel(t, b, peft.PreDiag, 3)
	o := opts(dir)
	o.Resume = true
	if _, err := (&Trainer{Model: pm2.Module().(*llama.Model), Adapter: pm2, Train: train, Options: o}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if i, j, same := sameBits(download(t, pm2.Trainable()), want); !same {
		t.Errorf("weights after resuming past the NaN differ from the clean run at %s[%d]", pm2.Trainable()[i].Name(), j)
	}
}

// poison sets the first element of v to NaN, as a step that diverged
// would leave it.
func poison(v *graph.Value) {
	h, _ := v.Download()
	h[0] = float32(math.NaN())
	v.Backend().Upload(v.Tensor(), h)
}

// runNonFinite runs tr and fails the test unless Run stops with a
// NonFiniteError, which it returns with the error.
func runNonFinite(t *testing.T, tr *Trainer) (*NonFiniteError, error) {
	t.Helper()
	_, err := tr.Run(context.Background())
	var nf *NonFiniteError
	if !errors.As(err, &nf) {
		t.Fatalf("Run returned %v; want a NonFiniteError", err)
	}
	return nf, err
}

// TestAccumulationMatchesBatch checks that micro-batches accumulate the
// gradient of the whole batch: one step with micro-batch 1 and one with
// the whole batch give the same weights (to float32 rounding).
func TestAccumulationMatchesBatch(t *testing.T) {
	b := openCPU(t)
	train := randomSeqs(6, tinyConfig().VocabSize, 4)
	var got [][][]float32
	for _, mb := range []int{6, 1} {
		_, pm := tinyModel(t, b, peft.LoRA, 8)
		// One warm step makes LoRA's B non-zero so that A gets gradients too.
		tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: train,
			Options: Options{Steps: 2, Batch: 6, MicroBatch: mb, LR: 1e-2, Schedule: "constant", Seed: 1}}
		if _, err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		got = append(got, download(t, pm.Trainable()))
	}
	var maxDiff, maxAbs float64
	for i := range got[0] {
		for j := range got[0][i] {
			maxDiff = math.Max(maxDiff, math.Abs(float64(got[0][i][j]-got[1][i][j])))
			maxAbs = math.Max(maxAbs, math.Abs(float64(got[0][i][j])))
		}
	}
	if maxDiff > 1e-5*math.Max(1, maxAbs) {
		t.Errorf("micro-batch 1 vs whole batch: weights differ by up to %g (max |w| %g)", maxDiff, maxAbs)
	}
}

// TestTrainingLowersLoss trains full fine-tuning of a tiny model on a
// learnable rule (answer = prompt shifted by one) and checks that the
// evaluation loss falls far below its starting value and accuracy rises.
func TestTrainingLowersLoss(t *testing.T) {
	b := openCPU(t)
	mk := func(n int, seed uint64) []data.Sequence {
		rng := rand.New(rand.NewPCG(seed, 1))
		out := make([]data.Sequence, n)
		for i := range out {
			x := int32(3 + rng.IntN(8))
			out[i] = data.Sequence{Tokens: []int32{1, x, 20, x + 1, 2}, PromptLen: 3}
		}
		return out
	}
	m, _ := tinyModel(t, b, "", 4)
	tr := &Trainer{Model: m, Train: mk(64, 1), Eval: mk(32, 2), Options: Options{Steps: 60, Batch: 16, LR: 1e-2, Seed: 1, EvalBatch: 32}}
	before, err := Evaluate(context.Background(), m, LM, tr.Eval, 32, 0)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Eval.Loss > before.Loss/4 || res.Eval.Accuracy < 0.9 {
		t.Errorf("eval loss %.4f → %.4f, accuracy %.2f → %.2f; want the loss below a quarter and accuracy ≥ 0.9",
			before.Loss, res.Eval.Loss, before.Accuracy, res.Eval.Accuracy)
	}
}

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		o    Options
		want string
	}{
		{Options{Steps: 5, Batch: 4, MicroBatch: 8}, "micro-batch"},
		{Options{Steps: 5, LR: -1}, "lr"},
		{Options{Steps: 5, Warmup: 9}, "warmup"},
		{Options{Steps: 5, Schedule: "step"}, "schedule"},
		{Options{Steps: 5, WeightDecay: math.NaN()}, "weight-decay"},
		{Options{Steps: 5, Resume: true}, "resume"},
		{Options{Steps: 5, SaveEvery: -2}, "save-every"},
		{Options{Epochs: 1e300, Batch: 4}, "epochs = 1e+300: makes 2.5e+300 steps"},
		{Options{Epochs: math.MaxInt64, Batch: 1}, "epochs"}, // steps = 10·2⁶³, just past int
		{Options{Steps: math.MaxInt/4 + 1, Batch: 4}, "steps"},
	}
	for _, c := range cases {
		err := c.o.WithDefaults(10).Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one about %s", c.o, err, c.want)
		}
	}
	o := Options{Epochs: 2.5, Batch: 4}.WithDefaults(10)
	if o.Steps != 7 || o.MicroBatch != 4 || o.Schedule != "linear" {
		t.Errorf("defaults: steps %d (want ceil(2.5·10/4) = 7), micro-batch %d, schedule %q", o.Steps, o.MicroBatch, o.Schedule)
	}
	if err := o.Validate(); err != nil {
		t.Error(err)
	}
}

func TestFreshRunRefusesExistingCheckpoints(t *testing.T) {
	b := openCPU(t)
	dir := t.TempDir()
	train := randomSeqs(4, tinyConfig().VocabSize, 1)
	for i, wantErr := range []bool{false, true} {
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		_, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: train, Options: Options{Steps: 1, Batch: 2, Out: dir}}).Run(context.Background())
		if (err != nil) != wantErr || (err != nil && !strings.Contains(err.Error(), "resume")) {
			t.Errorf("run %d: error %v; want error %v (pointing to resume)", i+1, err, wantErr)
		}
	}
}

// TestOutputFolder checks what a run leaves in its output folder: metrics
// for every step and the final evaluation, the plots as PNG images, the
// spectrum summary and a checkpoint.
func TestOutputFolder(t *testing.T) {
	b := openCPU(t)
	dir := t.TempDir()
	_, pm := tinyModel(t, b, peft.DoRA, 2)
	seqs := randomSeqs(12, tinyConfig().VocabSize, 2)
	saved := 0
	tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs[:8], Eval: seqs[8:], Options: Options{Steps: 5, Batch: 4, Out: dir, EvalEvery: 2},
		SaveAdapter: func(d string) error {
			saved++
			return os.WriteFile(filepath.Join(d, "adapter.txt"), []byte("x"), 0o644)
		}}
	res, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ReadMetrics(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	steps, evals := 0, 0
	for _, r := range rs {
		if r.Loss != nil {
			steps++
		}
		if r.EvalLoss != nil {
			evals++
		}
	}
	if steps != 5 || evals != 3 { // after steps 2 and 4, and at the end
		t.Errorf("metrics: %d step records and %d evaluations; want 5 and 3", steps, evals)
	}
	for _, name := range []string{LossPlot, SpectrumPlot} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r := img.Bounds(); r.Dx() < 200 || r.Dy() < 100 {
			t.Errorf("%s is %v", name, r)
		}
	}
	var sum Summary
	if raw, err := os.ReadFile(filepath.Join(dir, SpectrumJSON)); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.Layers) != 14 || !(sum.MeanEntropy > 0) {
		t.Errorf("spectrum.json: %d layers, mean entropy %v; want 14 layers and a positive entropy", len(sum.Layers), sum.MeanEntropy)
	}
	if res.Adapter != filepath.Join(dir, AdapterDir) || saved != 2 { // the final checkpoint and the adapter folder
		t.Errorf("adapter %q written %d times", res.Adapter, saved)
	}
	if _, err := os.Stat(filepath.Join(res.Checkpoint, adapterSub, "adapter.txt")); err != nil {
		t.Errorf("checkpoint lacks the adapter: %v", err)
	}
	// Nothing half-written is left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary %s left in the output folder", e.Name())
		}
	}
}

// TestLoadOptimizerRejectsForeignFiles checks that an optimizer checkpoint
// without sora's metadata, or with metadata that is not JSON, is an error
// naming the file and the metadata key.
func TestLoadOptimizerRejectsForeignFiles(t *testing.T) {
	ts := []safetensors.Tensor{{Name: "w/m", Shape: []int{2}, Data: []float32{1, 2}}}
	tests := []struct {
		name string
		meta map[string]string
		want string
	}{
		{"no state", map[string]string{"format": "pt"}, `has no "state" metadata`},
		{"bad state", map[string]string{"state": "{"}, `optimizer metadata "state"`},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "optimizer.safetensors")
		if err := safetensors.Write(path, ts, tt.meta); err != nil {
			t.Fatal(err)
		}
		_, err := loadOptimizer(path)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: got %v, want an error naming %s and saying %q", tt.name, err, path, tt.want)
		}
	}
}

// TestResumeRefusesOtherBase checks that a checkpoint made on one base
// model is not resumed on a base described differently (the same LLaMA in
// the other q/k row order would silently get its tensors misread), and is
// resumed on the same one.
func TestResumeRefusesOtherBase(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(13, tinyConfig().VocabSize, 5)
	dir := t.TempDir()
	run := func(base string, resume bool) error {
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		o := resumeOptions(dir)
		o.BaseModel, o.Resume = base, resume
		tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o}
		_, err := tr.Run(context.Background())
		return err
	}
	if err := run("llama q/k rows interleaved", false); err != nil {
		t.Fatal(err)
	}
	err := run("llama q/k rows half-split", true)
	if err == nil || !strings.Contains(err.Error(), "another base model") || !strings.Contains(err.Error(), "half-split") {
		t.Fatalf("resume on another base: %v, want an error naming both bases", err)
	}
	if err := run("llama q/k rows interleaved", true); err != nil {
		t.Errorf("resume on the same base: %v", err)
	}
}

// messages is a Progress that keeps the messages it is shown.
type messages struct {
	Quiet
	got []string
}

func (m *messages) Message(s string) { m.got = append(m.got, s) }

// runStoppingAt runs tr, cancelling its context (as Ctrl-C would) when
// the step that begins with stopAt steps done starts; never when
// stopAt < 0. It sets tr's beforeStep.
func runStoppingAt(tr *Trainer, stopAt int) (*Result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr.beforeStep = func(done int) {
		if done == stopAt {
			cancel()
		}
	}
	return tr.Run(ctx)
}

// warnings returns the messages that are warnings.
func (m *messages) warnings() []string {
	var w []string
	for _, s := range m.got {
		if strings.HasPrefix(s, "warning:") {
			w = append(w, s)
		}
	}
	return w
}

// TestResumeWarnsWithoutBase checks that a checkpoint that records no base
// model, as those made before checkpoints kept one, is resumed on the base
// the run names with a warning naming the checkpoint and the base (it
// cannot be checked); that the resumed run's checkpoints record the base,
// and keep it through a resume that names none, so that a later resume on
// another base is refused; and that resuming on the recorded base warns of
// nothing.
func TestResumeWarnsWithoutBase(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(13, tinyConfig().VocabSize, 5)
	dir := t.TempDir()
	const base = "llama q/k rows interleaved"
	// run trains (or resumes) on base, stopping after the step that
	// begins with stopAt steps done (none when stopAt < 0).
	run := func(base string, resume bool, stopAt int) (*messages, error) {
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		o := resumeOptions(dir)
		o.BaseModel, o.Resume = base, resume
		prog := &messages{}
		_, err := runStoppingAt(&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o, Progress: prog}, stopAt)
		return prog, err
	}
	latestState := func() (string, trainerState, []byte) {
		t.Helper()
		ck, err := LatestCheckpoint(dir)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(ck, stateFile))
		if err != nil {
			t.Fatal(err)
		}
		st, err := readState(ck)
		if err != nil {
			t.Fatal(err)
		}
		return ck, st, raw
	}

	// A run that names no base stops after step 5; its checkpoint's state
	// is what checkpoints were before they had a base_model field.
	if _, err := run("", false, 4); !IsInterrupted(err) {
		t.Fatalf("first run: %v, want an interruption", err)
	}
	old, st, raw := latestState()
	if st.Step != 5 || strings.Contains(string(raw), "base_model") {
		t.Fatalf("checkpoint %s at step %d holds %s; want step 5 and no base_model", old, st.Step, raw)
	}

	prog, err := run(base, true, 6)
	if !IsInterrupted(err) {
		t.Fatalf("resume on a base: %v, want it to run (and be interrupted after step 7)", err)
	}
	w := prog.warnings()
	if len(w) != 1 || !strings.Contains(w[0], old) || !strings.Contains(w[0], base) || !strings.Contains(w[0], "does not record its base model") {
		t.Fatalf("resume of a checkpoint without a base warned %q; want one warning naming %s and %q", w, old, base)
	}
	ck, st, _ := latestState()
	if st.Step != 7 || st.BaseModel != base {
		t.Fatalf("resumed run's checkpoint %s: step %d, base %q; want 7 and %q", ck, st.Step, st.BaseModel, base)
	}

	// A resume that names no base (library use) keeps the checkpoint's.
	if _, err := run("", true, 7); !IsInterrupted(err) {
		t.Fatalf("resume naming no base: %v, want it to run (and be interrupted after step 8)", err)
	}
	if ck, st, _ := latestState(); st.Step != 8 || st.BaseModel != base {
		t.Fatalf("checkpoint %s of a resume naming no base: step %d, base %q; want 8 and %q", ck, st.Step, st.BaseModel, base)
	}

	if _, err := run("llama q/k rows half-split", true, -1); err == nil || !strings.Contains(err.Error(), "another base model") {
		t.Fatalf("resume of the resumed run on another base: %v, want a refusal", err)
	}
	prog, err = run(base, true, -1)
	if err != nil {
		t.Fatalf("resume on the recorded base: %v", err)
	}
	if w := prog.warnings(); len(w) != 0 {
		t.Errorf("resume on the recorded base warned %q", w)
	}
}

// TestResumeReportsWholeRun interrupts a run after step 5 and resumes it,
// then resumes it again once finished: each resumed run reports the mean
// loss of the last LogEvery steps as the uninterrupted run does (bit for
// bit, though they span the resume), and a step time and throughput over
// all 9 steps as metrics.jsonl records them; the finished run's second
// resume adds no duplicate evaluation to the log.
func TestResumeReportsWholeRun(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(13, tinyConfig().VocabSize, 5)
	eval := randomSeqs(4, tinyConfig().VocabSize, 6)
	opts := func(dir string) Options {
		o := resumeOptions(dir)
		o.LogEvery = 6 // steps 4 to 9: across the resume after step 5
		return o
	}
	runIn := func(dir string, resume bool, stopAt int) (*Result, error) {
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		o := opts(dir)
		o.Resume = resume
		return runStoppingAt(&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Eval: eval, Options: o}, stopAt)
	}
	resA, err := runIn(t.TempDir(), false, -1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := runIn(dir, false, 4); !IsInterrupted(err) {
		t.Fatalf("first part: %v, want an interruption", err)
	}
	// whole checks a resumed run's figures against the log's 9 steps.
	whole := func(what string, res *Result) {
		t.Helper()
		rs, err := ReadMetrics(filepath.Join(dir, MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		var ms float64
		var steps, tokens, evals int
		for _, r := range rs {
			if r.Loss != nil {
				steps++
				ms += r.StepMillis
				tokens += r.Tokens
			}
			if r.EvalLoss != nil {
				evals++
			}
		}
		if steps != 9 || evals != 1 {
			t.Errorf("%s: the log holds %d steps and %d evaluations; want 9 and 1", what, steps, evals)
		}
		if res.Loss != resA.Loss {
			t.Errorf("%s: mean loss of the last 6 steps %v; uninterrupted %v", what, res.Loss, resA.Loss)
		}
		// The log keeps whole microseconds, so each step's record is up to
		// 1µs short of the time the run measured.
		mean := time.Duration(ms / 9 * float64(time.Millisecond))
		if d := res.StepTime - mean; d < -time.Microsecond || d > 2*time.Microsecond || res.StepTime <= 0 {
			t.Errorf("%s: step time %v; the log's 9 steps average %v", what, res.StepTime, mean)
		}
		// StepTime is the total divided by 9 in whole nanoseconds: up to
		// 9ns short over the 9 steps.
		tol := float64(tokens) * (float64(10*time.Nanosecond)/float64(9*res.StepTime) + 1e-9)
		if got := res.TokensPerSec * (res.StepTime * 9).Seconds(); math.Abs(got-float64(tokens)) > tol {
			t.Errorf("%s: throughput %v tokens/s over 9 steps of %v makes %.1f tokens; the log's steps hold %d", what, res.TokensPerSec, res.StepTime, got, tokens)
		}
		if res.Eval == nil {
			t.Errorf("%s: no final evaluation", what)
		}
	}
	resC, err := runIn(dir, true, -1)
	if err != nil {
		t.Fatal(err)
	}
	whole("resumed after step 5", resC)
	resD, err := runIn(dir, true, -1)
	if err != nil {
		t.Fatal(err)
	}
	if resD.StartStep != 9 || resD.Steps != 9 {
		t.Errorf("resume of the finished run went from step %d to %d; want 9 to 9", resD.StartStep, resD.Steps)
	}
	whole("resumed when finished", resD)
	if resD.Eval != nil && resC.Eval != nil && (resD.Eval.Loss != resC.Eval.Loss || resD.Eval.Accuracy != resC.Eval.Accuracy) {
		t.Errorf("the finished run's evaluation %+v differs from the one at its end %+v", *resD.Eval, *resC.Eval)
	}
}

// TestEvaluateReportsZeroMCC checks that a classification evaluation
// reports its Matthews correlation even when it is 0, as it is where every
// sequence has the same label (the correlation's denominator is 0, and
// data.MCC calls that 0), and that an LM evaluation has none.
func TestEvaluateReportsZeroMCC(t *testing.T) {
	b := openCPU(t)
	m, _ := tinyModel(t, b, "", 4)
	if err := m.AddScoreHead(2, 1); err != nil {
		t.Fatal(err)
	}
	seqs := []data.Sequence{{Tokens: []int32{1, 5, 6}}, {Tokens: []int32{1, 7, 8}}, {Tokens: []int32{1, 9, 4}}, {Tokens: []int32{1, 3, 3}}}
	ev, err := Evaluate(context.Background(), m, Classify, seqs, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if ev.MCC == nil || *ev.MCC != 0 {
		t.Fatalf("MCC %v, want 0 for data of one label", ev.MCC)
	}
	b2, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b2), `"mcc":0`) {
		t.Errorf("classification result %s leaves out its MCC of 0", b2)
	}
	lm, err := Evaluate(context.Background(), m, LM, []data.Sequence{{Tokens: []int32{1, 5, 6, 2}, PromptLen: 2}}, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	if lm.MCC != nil {
		t.Errorf("LM evaluation has an MCC (%v)", *lm.MCC)
	}
}

// TestEvaluateLossMask checks that a sequence's loss mask (Trained) puts
// the loss on exactly the tokens it marks, through an identity with the
// prompt-length rule, a different code path: the tokens from p on have the
// summed loss S(p) = Loss(PromptLen p)·(n − p), the same tokens being
// predicted from the same context, so a mask of the spans [a, b) and
// [c, n) sums to S(a) − S(b) + S(c), to float32 rounding (each run takes
// the output head's product over another set of rows).
func TestEvaluateLossMask(t *testing.T) {
	b := openCPU(t)
	m, _ := tinyModel(t, b, "", 6)
	toks := []int32{1, 5, 6, 9, 3, 7, 4, 8, 2}
	n := len(toks)
	sum := func(p int) float64 {
		ev, err := Evaluate(context.Background(), m, LM, []data.Sequence{{Tokens: toks, PromptLen: p}}, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Targets != n-p {
			t.Fatalf("PromptLen %d: %d targets, want %d", p, ev.Targets, n-p)
		}
		return ev.Loss * float64(n-p)
	}
	a, bEnd, c := 2, 4, 6
	mask := make([]bool, n)
	for i := range mask {
		mask[i] = (i >= a && i < bEnd) || i >= c
	}
	ev, err := Evaluate(context.Background(), m, LM, []data.Sequence{{Tokens: toks, PromptLen: 1, Trained: mask}}, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := (bEnd - a) + (n - c); ev.Targets != want {
		t.Fatalf("masked sequence: %d targets, want %d", ev.Targets, want)
	}
	want := sum(a) - sum(bEnd) + sum(c)
	if got := ev.Loss * float64(ev.Targets); math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) {
		t.Errorf("masked summed loss %.12g, want S(a) − S(b) + S(c) = %.12g", got, want)
	}
}

// TestInterruptAfterLastStepSkipsSpectra: a cancellation that arrives
// during the last step finishes the run (adapter, evaluation, loss plot)
// but leaves out the spectra, which take minutes on a large model, saying
// so; an uninterrupted run writes them.
func TestInterruptAfterLastStepSkipsSpectra(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(8, tinyConfig().VocabSize, 4)
	for _, interrupt := range []bool{false, true} {
		dir := t.TempDir()
		_, pm := tinyModel(t, b, peft.SORA, 5)
		var log strings.Builder
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Progress: NewLog(&log, 1),
			Options: Options{Steps: 3, Batch: 4, LR: 1e-3, Out: dir}}
		tr.beforeStep = func(done int) {
			if interrupt && done == 2 {
				cancel()
			}
		}
		res, err := tr.Run(ctx)
		if err != nil {
			t.Fatalf("interrupt %v: %v", interrupt, err)
		}
		if res.Steps != 3 {
			t.Fatalf("interrupt %v: %d steps, want 3", interrupt, res.Steps)
		}
		_, serr := os.Stat(filepath.Join(dir, SpectrumJSON))
		if (serr == nil) == interrupt {
			t.Errorf("interrupt %v: %s written: %v", interrupt, SpectrumJSON, serr == nil)
		}
		if _, err := os.Stat(filepath.Join(dir, LossPlot)); err != nil {
			t.Errorf("interrupt %v: no %s: %v", interrupt, LossPlot, err)
		}
		// What the caller lists as written (sora finetune's last line).
		if !res.LossPlot || res.Spectra == interrupt {
			t.Errorf("interrupt %v: Result says loss plot %v, spectra %v", interrupt, res.LossPlot, res.Spectra)
		}
		if skipped := strings.Contains(log.String(), "spectra: skipped (interrupted)"); skipped != interrupt {
			t.Errorf("interrupt %v: skip announced %v:\n%s", interrupt, skipped, log.String())
		}
	}
}

// TestNoSpectraRemovesOlder: a run with NoSpectra into a folder whose
// earlier run wrote spectra removes them, saying so, since they describe
// other weights than the adapter it saves.
func TestNoSpectraRemovesOlder(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(8, tinyConfig().VocabSize, 4)
	dir := t.TempDir()
	for _, no := range []bool{false, true} {
		_, pm := tinyModel(t, b, peft.LoRA, 5)
		var log strings.Builder
		tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Progress: NewLog(&log, 1),
			Options: Options{Steps: 2, Batch: 4, LR: 1e-3, Out: dir, NoSpectra: no, Resume: no}}
		if _, err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{SpectrumPlot, SpectrumJSON} {
			if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) == no {
				t.Errorf("NoSpectra %v: %s present: %v", no, name, err == nil)
			}
		}
		if said := strings.Contains(log.String(), "removed the older "+SpectrumJSON); said != no {
			t.Errorf("NoSpectra %v: removal announced %v:\n%s", no, said, log.String())
		}
	}
}

// TestEvaluateCancelled checks that a cancelled context stops Evaluate
// before its next batch, with an error wrapping the context's and no
// result, and that the same call with a live context evaluates.
func TestEvaluateCancelled(t *testing.T) {
	b := openCPU(t)
	m, _ := tinyModel(t, b, "", 4)
	seqs := []data.Sequence{{Tokens: []int32{1, 5, 6, 2}, PromptLen: 2}, {Tokens: []int32{1, 7, 8, 3}, PromptLen: 2}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ev, err := Evaluate(ctx, m, LM, seqs, 1, 0)
	if !errors.Is(err, context.Canceled) || ev != nil {
		t.Errorf("cancelled: result %v, error %v; want none and one wrapping %v", ev, err, context.Canceled)
	}
	if err != nil && !strings.Contains(err.Error(), "after 0 of 2 batches") {
		t.Errorf("error %q; want it to say how far it got", err)
	}
	if ev, err := Evaluate(context.Background(), m, LM, seqs, 1, 0); err != nil || ev.Sequences != 2 {
		t.Errorf("live context: result %+v, error %v; want 2 sequences evaluated", ev, err)
	}
}
