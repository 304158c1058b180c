package train

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

func requireFused(t *testing.T, b backend.Backend) {
	t.Helper()
	if err := CheckPacking(b); err != nil {
		t.Skipf("packing cannot run here: %v", err)
	}
}

// TestPackingMatchesUnpacked trains the same steps with and without
// packing, for causal LM (LoRA) and classification (full fine-tuning with
// a score head), and checks that the runs agree to float32 rounding: the
// weights after the steps, and each step's loss; that each step counts
// the same real tokens; and that packing ran fewer padded positions.
func TestPackingMatchesUnpacked(t *testing.T) {
	b := openCPU(t)
	requireFused(t, b)
	seqs := randomSeqs(13, tinyConfig().VocabSize, 5)
	for _, task := range []Task{LM, Classify} {
		t.Run(task.String(), func(t *testing.T) {
			type run struct {
				weights [][]float32
				records []Record
				res     *Result
			}
			do := func(packing bool) run {
				var m *llama.Model
				var pm *peft.Model
				var params func() []*graph.Value
				if task == LM {
					_, pm = tinyModel(t, b, peft.LoRA, 8)
					m = pm.Module().(*llama.Model)
					params = pm.Trainable
				} else {
					m, _ = tinyModel(t, b, "", 8)
					if err := m.AddScoreHead(2, 3); err != nil {
						t.Fatal(err)
					}
					params = m.Trainable
				}
				dir := t.TempDir()
				tr := &Trainer{Model: m, Adapter: pm, Task: task, Classes: 2, Train: seqs,
					Options: Options{Steps: 3, Batch: 6, MicroBatch: 3, LR: 1e-2, Schedule: "constant", Seed: 1, Out: dir, NoSpectra: true, Packing: packing}}
				res, err := tr.Run(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				rs, err := ReadMetrics(filepath.Join(dir, MetricsFile))
				if err != nil {
					t.Fatal(err)
				}
				return run{download(t, params()), rs, res}
			}
			plain, packed := do(false), do(true)
			var maxDiff, maxAbs float64
			for i := range plain.weights {
				for j := range plain.weights[i] {
					maxDiff = math.Max(maxDiff, math.Abs(float64(plain.weights[i][j]-packed.weights[i][j])))
					maxAbs = math.Max(maxAbs, math.Abs(float64(plain.weights[i][j])))
				}
			}
			if maxDiff > 1e-5*math.Max(1, maxAbs) {
				t.Errorf("weights after 3 steps differ by up to %g packed against unpacked (max |w| %g)", maxDiff, maxAbs)
			}
			steps := 0
			for k, r := range plain.records {
				if r.Loss == nil {
					continue
				}
				steps++
				p := packed.records[k]
				if p.Step != r.Step || p.Loss == nil || math.Abs(*p.Loss-*r.Loss) > 1e-5*math.Abs(*r.Loss) {
					t.Errorf("step %d: loss %v packed, %v unpacked", r.Step, ptrVal(p.Loss), *r.Loss)
				}
				if p.Tokens != r.Tokens || r.Tokens == 0 {
					t.Errorf("step %d: %d real tokens packed, %d unpacked", r.Step, p.Tokens, r.Tokens)
				}
				if p.Positions > r.Positions || p.Positions < p.Tokens {
					t.Errorf("step %d: %d positions packed (%d tokens), %d unpacked; want between the tokens and the unpacked positions", r.Step, p.Positions, p.Tokens, r.Positions)
				}
			}
			if steps != 3 {
				t.Fatalf("%d step records; want 3", steps)
			}
			if !(packed.res.Padding < plain.res.Padding) {
				t.Errorf("padding %.3f packed, %.3f unpacked; want less packed", packed.res.Padding, plain.res.Padding)
			}
			t.Logf("max weight difference %.3g (max |w| %.3g); padding %.1f%% unpacked, %.1f%% packed", maxDiff, maxAbs, 100*plain.res.Padding, 100*packed.res.Padding)
		})
	}
}

func ptrVal(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestPackedBatchesOfARun builds the batches of a run's first 13 steps as
// Run does (the data order, micro-batches of the step, each packed), 4
// epochs of 13 sequences, and checks that each micro-batch's packed rows
// hold exactly its sequences, whole, in rows no longer than the pack
// length and no more rows than sequences, with the targets Targets
// counts; that every sequence is trained once per epoch; and that the
// same seed makes the same batches.
func TestPackedBatchesOfARun(t *testing.T) {
	seqs := randomSeqs(13, tinyConfig().VocabSize, 5)
	const packLen = 20 // tinyConfig's MaxSeqLen is 24; the sequences have up to 16 tokens
	batches := func(seed uint64) []data.Batch {
		ord := newOrder(len(seqs), seed)
		var out []data.Batch
		seen := make([]int, len(seqs))
		for s := range 13 {
			for _, mb := range microBatches(ord.batch(s, 4), 3) {
				b, err := makeBatch(seqs, mb, packLen)
				if err != nil {
					t.Fatal(err)
				}
				var got []int
				for r, docs := range b.Docs {
					for _, d := range docs {
						got = append(got, d.Seq)
						if !reflect.DeepEqual(b.Tokens[r*b.Len+d.Start:r*b.Len+d.Start+d.Len], seqs[d.Seq].Tokens) {
							t.Fatalf("step %d: sequence %d is not whole in row %d", s, d.Seq, r)
						}
					}
				}
				want := slices.Clone(mb)
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("step %d: packed rows hold %v, the micro-batch %v", s, got, want)
				}
				if b.Len > packLen || b.Size > len(mb) {
					t.Fatalf("step %d: %d rows of %d for %d sequences of at most %d", s, b.Size, b.Len, len(mb), packLen)
				}
				if pos, _ := b.LossPositions(); len(pos) != data.Targets(seqs, mb, false) {
					t.Fatalf("step %d: %d loss positions, %d targets", s, len(pos), data.Targets(seqs, mb, false))
				}
				for _, i := range mb {
					seen[i]++
				}
				out = append(out, b)
			}
			// Each 13 positions of the stream are one epoch.
			if (s+1)*4%13 == 0 {
				for i, n := range seen {
					if n != (s+1)*4/13 {
						t.Fatalf("after step %d (epoch %d): sequence %d trained %d times", s, (s+1)*4/13, i, n)
					}
				}
			}
		}
		return out
	}
	a := batches(7)
	if !reflect.DeepEqual(a, batches(7)) {
		t.Error("the same seed made other packed batches")
	}
	if reflect.DeepEqual(a, batches(8)) {
		t.Error("another seed made the same packed batches")
	}
}

// noFused hides the fused attention ops of the backend it wraps.
type noFused struct{ backend.Backend }

func (n noFused) Supports(op backend.Op) bool {
	return op != backend.OpAttention && op != backend.OpAttentionGrad && n.Backend.Supports(op)
}

// TestPackingRefusalsAndResume checks the refusals of packing: with group-by-length,
// on a backend without fused attention or with it turned off by the
// environment (before any step), pack lengths beyond the model or short
// of a sequence, and a resume that turns packing on or off or changes the
// pack length; a resume that keeps it ends with the weights of an uninterrupted
// run, bit for bit.
func TestPackingRefusalsAndResume(t *testing.T) {
	b := openCPU(t)
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Steps: 2, Packing: true, GroupByLength: true}, "group-by-length"},
		{Options{Steps: 2, PackLen: 8}, "pack length = 8"},
		{Options{Steps: 2, Packing: true, PackLen: -1}, "pack length = -1"},
	} {
		if err := c.o.WithDefaults(10).Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v; want one containing %q", c.o, err, c.want)
		}
	}
	if err := CheckPacking(noFused{b}); err == nil || !strings.Contains(err.Error(), "backend has none") {
		t.Errorf("CheckPacking of a backend without the ops: %v", err)
	}
	requireFused(t, b)

	seqs := randomSeqs(13, tinyConfig().VocabSize, 5)
	for _, c := range []struct {
		packLen int
		want    string
	}{
		{25, "pack length 25: the model takes at most 24 positions"},
		{10, "more than a packed row's 10"},
	} {
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		_, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs,
			Options: Options{Steps: 1, Batch: 2, Packing: true, PackLen: c.packLen}}).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("pack length %d: error %v; want one containing %q", c.packLen, err, c.want)
		}
	}

	var last [][]float32 // the trainable weights after the last run
	runPacked := func(dir string, packing bool, packLen int, resume bool, stopAt int) error {
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		o := resumeOptions(dir)
		o.Packing, o.PackLen, o.Resume = packing, packLen, resume
		_, err := runStoppingAt(&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o}, stopAt)
		last = download(t, pm.Trainable())
		return err
	}
	run := func(dir string, packing, resume bool, stopAt int) error {
		return runPacked(dir, packing, 0, resume, stopAt)
	}
	t.Run("environment", func(t *testing.T) {
		t.Setenv(graph.AttentionEnv, "unfused")
		dir := t.TempDir()
		if err := run(dir, true, false, -1); err == nil || !strings.Contains(err.Error(), graph.AttentionEnv+"=unfused turns it off") {
			t.Errorf("packing with %s=unfused: %v; want an error naming it", graph.AttentionEnv, err)
		}
		if ck, _ := LatestCheckpoint(dir); ck != "" {
			t.Errorf("the refused run wrote %s", ck)
		}
	})
	for _, was := range []bool{false, true} {
		t.Run(fmt.Sprintf("resume from packing %v", was), func(t *testing.T) {
			dir := t.TempDir()
			if err := run(dir, was, false, 4); !IsInterrupted(err) {
				t.Fatalf("%v; want an interruption", err)
			}
			want := "packing false (now true, rows of up to 24 tokens)"
			if was {
				want = "packing true, rows of up to 24 tokens (now false)"
			}
			if err := run(dir, !was, true, -1); err == nil || !strings.Contains(err.Error(), "cannot resume") || !strings.Contains(err.Error(), want) {
				t.Errorf("resume with packing %v: %v; want a refusal saying %q", !was, err, want)
			}
			if was {
				if err := runPacked(dir, true, 20, true, -1); err == nil || !strings.Contains(err.Error(), "packing true, rows of up to 24 tokens (now true, rows of up to 20 tokens)") {
					t.Errorf("resume with another pack length: %v; want a refusal naming both", err)
				}
			}
			if err := run(dir, was, true, -1); err != nil {
				t.Fatalf("resume with the same packing: %v", err)
			}
			resumed := last
			if err := run(t.TempDir(), was, false, -1); err != nil {
				t.Fatal(err)
			}
			if i, j, ok := sameBits(resumed, last); !ok {
				t.Errorf("packing %v: the resumed run's weights differ from an uninterrupted run's at tensor %d element %d", was, i, j)
			}
		})
	}
}

// TestPackedPositions checks PackedPositions against runs of the trainer:
// the positions it counts packed and unpacked are those that a packed run
// and one without packing of the same steps record in metrics.jsonl. The
// data are long sequences (12 to 16 tokens) and two short ones (5 tokens)
// with rows of 16 tokens, so that only the two short ones can share a row
// and whether packing saves anything depends on whether the data order
// puts them in one micro-batch (with another sequence: two alone take as
// many positions packed as not); and then with micro-batches of one
// sequence, and without the short ones, where no two sequences fit
// together.
func TestPackedPositions(t *testing.T) {
	b := openCPU(t)
	requireFused(t, b)
	seqs := randomSeqs(10, tinyConfig().VocabSize, 7)
	for i := range seqs {
		n := 12 + i%5
		if i == 3 || i == 8 {
			n = 5
		}
		seqs[i].Tokens = seqs[i].Tokens[:min(n, len(seqs[i].Tokens))]
		for len(seqs[i].Tokens) < n {
			seqs[i].Tokens = append(seqs[i].Tokens, 4)
		}
		seqs[i].PromptLen = 2
	}
	long := slices.Concat(seqs[:3], seqs[4:8], seqs[9:])
	// positions returns the positions a run of o on train ran, from its
	// metrics.
	positions := func(train []data.Sequence, o Options) int {
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		o.Out, o.NoSpectra, o.LR = t.TempDir(), true, 1e-3
		tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: train, Options: o}
		if _, err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		rs, err := ReadMetrics(filepath.Join(o.Out, MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range rs {
			n += r.Positions
		}
		return n
	}
	saves := map[bool]bool{}
	cases := []struct {
		name  string
		train []data.Sequence
		o     Options
		order bool // whether the data order decides
	}{
		{name: "seed 1", train: seqs, o: Options{Seed: 1, MicroBatch: 3}, order: true},
		{name: "seed 2", train: seqs, o: Options{Seed: 2, MicroBatch: 3}, order: true},
		{name: "seed 9", train: seqs, o: Options{Seed: 9, MicroBatch: 3}, order: true},
		{name: "seed 10", train: seqs, o: Options{Seed: 10, MicroBatch: 3}, order: true},
		{name: "micro-batch 1", train: seqs, o: Options{Seed: 1, MicroBatch: 1}},
		{name: "no two fit", train: long, o: Options{Seed: 1, MicroBatch: 6}},
	}
	for _, c := range cases {
		o := c.o
		o.Steps, o.Batch, o.Packing, o.PackLen = 4, 6, true, 16
		packed, unpacked, err := PackedPositions(c.train, o.WithDefaults(len(c.train)))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		plain := o
		plain.Packing, plain.PackLen = false, 0
		if p, u := positions(c.train, o), positions(c.train, plain); packed != p || unpacked != u {
			t.Errorf("%s: PackedPositions %d packed, %d unpacked; the runs ran %d and %d", c.name, packed, unpacked, p, u)
		}
		if !c.order && packed != unpacked {
			t.Errorf("%s: %d positions packed, %d unpacked; packing can save nothing here", c.name, packed, unpacked)
		}
		if c.order {
			saves[packed < unpacked] = true
		}
	}
	if !saves[true] || !saves[false] {
		t.Errorf("the seeds' orders all gave savings %v: the case where the order decides is not tested both ways", saves)
	}
	if _, _, err := PackedPositions(seqs, Options{Steps: 1, Batch: 2}.WithDefaults(len(seqs))); err == nil {
		t.Error("PackedPositions without packing: no error")
	}
}
