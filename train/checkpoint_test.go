package train

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// TestGradientCheckpointingRun checks that a run with
// Options.GradientCheckpointing (LoRA with dropout, micro-batches) ends
// with the trainable weights of one without, bit for bit (the tiny
// vocabulary keeps the head in one chunk, so only the layers are
// recomputed), and that the trainer leaves the model's own setting as it
// found it.
func TestGradientCheckpointingRun(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(8, tinyConfig().VocabSize, 6)
	var got [][][]float32
	for _, on := range []bool{false, true} {
		m, pm := tinyModelDropout(t, b, peft.LoRA, 9, 0.2)
		m.SetGradientCheckpointing(!on) // the run's option rules, and the model's own setting is back after
		o := Options{Steps: 3, Batch: 4, MicroBatch: 2, LR: 1e-2, Seed: 2, GradientCheckpointing: on}
		tr := &Trainer{Model: m, Adapter: pm, Train: seqs, Options: o}
		if _, err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if m.GradientCheckpointing() != !on {
			t.Errorf("after a run with GradientCheckpointing %v the model's setting is %v, not its own %v", on, m.GradientCheckpointing(), !on)
		}
		got = append(got, download(t, pm.Trainable()))
	}
	if i, j, ok := sameBits(got[0], got[1]); !ok {
		t.Errorf("tensor %d element %d: %v with gradient checkpointing, %v without", i, j, got[1][i][j], got[0][i][j])
	}
}

// TestStepLossCapsLogits checks that the trainer's loss and evaluation go
// through the model's own head, Gemma 2's final soft-cap included: the
// step loss equals the model's LMLoss over the same batch, and it would
// not without the cap (the cap of 2 bends these logits).
func TestStepLossCapsLogits(t *testing.T) {
	b := openCPU(t)
	cfg := llama.Config{Dim: 16, HiddenDim: 24, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, HeadWidth: 8, VocabSize: 23,
		MaxSeqLen: 24, NormEps: 1e-6, RopeTheta: 1e4, TiedEmbeddings: true, Family: llama.FamilyGemma2,
		Activation: llama.GELUTanh, QueryPreAttnScalar: 8, LayerKinds: "sf", SlidingWindow: 4, LocalRopeTheta: 1e4,
		RopeLayout: llama.RopeHalfSplit, AttnLogitSoftcap: 3, FinalLogitSoftcap: 2}
	w, err := InitWeights(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range w.Params() {
		for i := range p.Data {
			p.Data[i] *= 20 // logits well past the cap
		}
	}
	m, err := llama.New(b, w)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	seqs := randomSeqs(3, cfg.VocabSize, 8)
	batch, err := data.MakeBatch(seqs, []int{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	g := graph.New(b)
	defer g.Close()
	g.SetNoGrad(true)
	loss, n, err := stepLoss(g, m, LM, batch, 0)
	if err != nil {
		t.Fatal(err)
	}
	rows, targets := batch.LossPositions()
	all := make([]int32, batch.Size*batch.Len)
	for i := range all {
		all[i] = graph.IgnoreIndex
	}
	for k, r := range rows {
		all[r] = targets[k]
	}
	want, err := m.LMLoss(g, toLlama(batch), all, graph.CrossEntropyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	uncapped := uncappedLoss(t, g, m, batch, rows, targets)
	got, wl := item(t, loss), item(t, want)
	// stepLoss divides by the divisor it is given, 0 here: the count.
	if n != len(rows) || math.Abs(got-wl) > 1e-6*wl {
		t.Errorf("step loss %v over %d targets; LMLoss %v over %d", got, n, wl, len(rows))
	}
	if math.Abs(uncapped-wl) < 1e-2*wl {
		t.Fatalf("the cap moves the loss only from %v to %v; the test cannot tell them apart", uncapped, wl)
	}
	res, err := Evaluate(context.Background(), m, LM, seqs, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(res.Loss-wl) > 1e-5*wl {
		t.Errorf("Evaluate's loss %v, LMLoss %v", res.Loss, wl)
	}
}

// uncappedLoss is the mean cross-entropy of the output head's logits
// without the final soft-cap.
func uncappedLoss(t *testing.T, g *graph.Tape, m *llama.Model, b data.Batch, rows, targets []int32) float64 {
	t.Helper()
	h, err := m.Hidden(g, toLlama(b))
	if err != nil {
		t.Fatal(err)
	}
	sel := g.Gather(g.Reshape(h, b.Size*b.Len, m.Config().Dim), rows)
	return item(t, g.CrossEntropy(m.Output.Forward(g, sel), targets, graph.CrossEntropyOptions{}))
}

func item(t *testing.T, v *graph.Value) float64 {
	t.Helper()
	x, err := v.Item()
	if err != nil {
		t.Fatal(err)
	}
	return float64(x)
}

// TestPruneCheckpointsNumeric checks that pruning keeps the newest
// checkpoints by step number, past the six digits of step-NNNNNN (where
// string order puts step-1000000 before step-999999), never removes the
// latest, and leaves folders that are not step-N alone.
func TestPruneCheckpointsNumeric(t *testing.T) {
	cases := []struct {
		name         string
		dirs         []string
		latest       string
		keep         int
		wantRemained []string
	}{
		{"past six digits", []string{"step-999998", "step-999999", "step-1000000"}, "step-1000000", 2,
			[]string{"step-1000000", "step-999999"}},
		{"seven digits only", []string{"step-1000000", "step-1000001", "step-999999", "step-1200000"}, "step-1200000", 1,
			[]string{"step-1200000"}},
		{"latest kept though older", []string{"step-000003", "step-000005", "step-000007"}, "step-000003", 1,
			[]string{"step-000003", "step-000007"}},
		{"not ours", []string{"step-000001", "step-000002", "step-x", "step-", "steps-000001"}, "step-000002", 1,
			[]string{"step-", "step-000002", "step-x", "steps-000001"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for _, d := range c.dirs {
				if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			pruneCheckpoints(root, c.latest, c.keep)
			ents, err := os.ReadDir(root)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range ents {
				got = append(got, e.Name())
			}
			want := slices.Sorted(slices.Values(c.wantRemained))
			if !slices.Equal(got, want) {
				t.Errorf("left %v; want %v", got, want)
			}
		})
	}
}

// TestStaleTemporariesRemoved plants what a process killed while saving
// leaves (temporary checkpoint, adapter and file copies, a replaced
// folder moved aside) among look-alikes that are not the trainer's, runs
// a fresh run and then a resume into the folder, and checks that each
// removes exactly the stale temporaries and says so, and that a fresh run
// refused because the folder holds a run removes nothing.
func TestStaleTemporariesRemoved(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(6, tinyConfig().VocabSize, 3)
	dir := t.TempDir()
	ck := filepath.Join(dir, CheckpointsDir)
	// plant makes the stale entries and returns them, relative to dir.
	plant := func() []string {
		t.Helper()
		dirs := []string{"checkpoints/.step-000004.tmp-123", "checkpoints/.step-1000000.tmp-9", ".adapter.tmp-77",
			".adapter.old-78"} // stale: adapter/ exists (made below, then by the runs)
		files := []string{"checkpoints/.latest.tmp-5", ".metrics.jsonl.tmp-6", ".loss.png.tmp-7", ".spectrum.png.tmp-8", ".spectrum.json.tmp-9"}
		for _, d := range dirs {
			if err := os.MkdirAll(filepath.Join(dir, d, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte("partial"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return append(dirs, files...)
	}
	// Not the trainer's: other names, a suffix that is not a number, a
	// file where the trainer writes folders, a folder where it writes
	// files, and an old checkpoint whose replacement is not in place (the
	// only copy after a kill between ReplaceDir's two renames).
	keepDirs := []string{".adapter.tmp-x1", "checkpoints/.step-000002.tmp-", ".mydata.tmp-3", "checkpoints/.latest.tmp-4",
		"checkpoints/.step-000003.old-5"}
	keepFiles := []string{".step-000001.tmp-1", "checkpoints/.step-000009.tmp-2", "notes.tmp-3", ".run.json.tmp-4x", ".loss.png.tmp-"}
	if err := os.MkdirAll(ck, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range keepDirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range keepFiles {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, AdapterDir), 0o755); err != nil { // so that .adapter.old-78 is stale
		t.Fatal(err)
	}
	for i, resume := range []bool{false, true} {
		stale := plant()
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		prog := &messages{}
		o := Options{Steps: 2, Batch: 3, Out: dir, Resume: resume}
		if _, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o, Progress: prog}).Run(context.Background()); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		var note string
		for _, m := range prog.got {
			if strings.HasPrefix(m, "removed what an interrupted save left") {
				note = m
			}
		}
		for _, s := range stale {
			if _, err := os.Lstat(filepath.Join(dir, s)); err == nil {
				t.Errorf("run %d left the stale %s", i+1, s)
			}
			if !strings.Contains(note, filepath.FromSlash(s)) {
				t.Errorf("run %d: the note %q does not name %s", i+1, note, s)
			}
		}
		for _, k := range append(append([]string(nil), keepDirs...), keepFiles...) {
			if _, err := os.Lstat(filepath.Join(dir, k)); err != nil {
				t.Errorf("run %d removed %s, which is not its temporary: %v", i+1, k, err)
			}
		}
	}
	// A fresh run refused because the folder holds a run touches nothing:
	// the temporaries may be that run's, saving now.
	stale := plant()
	_, pm := tinyModel(t, b, peft.LoRA, 1)
	_, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: Options{Steps: 2, Batch: 3, Out: dir}}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "already holds checkpoints") {
		t.Fatalf("fresh run into a run's folder: %v, want a refusal", err)
	}
	for _, s := range stale {
		if _, err := os.Lstat(filepath.Join(dir, s)); err != nil {
			t.Errorf("the refused run removed %s: %v", s, err)
		}
	}
}

// TestDigestLossMask checks that the data digest a checkpoint records
// tells sequences apart by their loss masks, and that a sequence without
// one keeps the digest it had before masks existed (a literal taken from
// this build's predecessor), so that older runs can still be resumed.
func TestDigestLossMask(t *testing.T) {
	plain := []data.Sequence{{Tokens: []int32{1, 5, 6, 2}, PromptLen: 2}}
	if got, want := digest(plain), "e206ec769ceba917"; got != want {
		t.Errorf("digest of a sequence without a mask is %s; want %s as before masks existed", got, want)
	}
	masks := [][]bool{{false, false, true, true}, {false, true, false, true}, {false, false, false, true}}
	seen := map[string]bool{digest(plain): true}
	for _, m := range masks {
		d := digest([]data.Sequence{{Tokens: plain[0].Tokens, PromptLen: 2, Trained: m}})
		if seen[d] {
			t.Errorf("mask %v: digest %s repeats another's", m, d)
		}
		seen[d] = true
	}
}
