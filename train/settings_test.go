package train

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// TestResumeRefusesOtherSettings interrupts runs after step 5 and tries
// to resume them with one setting changed: each setting that changes the
// result is refused with a message naming it, its old and its new value;
// a changed learning rate is taken, with a note, and recorded in the
// checkpoints that follow; and a checkpoint without recorded settings (as
// made before they were kept) is resumed with a warning.
func TestResumeRefusesOtherSettings(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(13, tinyConfig().VocabSize, 5)
	sora := peft.Config{Method: peft.SORA, R: 4, Alpha: 8, RotationRank: 2, TargetModules: []string{peft.AllLinear}, Seed: 1, Dropout: 0.1}
	dora := peft.Config{Method: peft.DoRA, R: 4, Alpha: 8, TargetModules: []string{peft.AllLinear}, Seed: 1}
	full := peft.Config{Method: peft.Full, TargetModules: []string{peft.AllLinear}}
	// run trains (or resumes) in dir, stopping after the step that begins
	// with stopAt steps done (none when stopAt < 0).
	run := func(dir string, cfg peft.Config, o Options, stopAt int) (*messages, error) {
		_, pm := tinyAdapted(t, b, 1, &cfg)
		o.Out = dir
		prog := &messages{}
		_, err := runStoppingAt(&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o, Progress: prog}, stopAt)
		return prog, err
	}
	made := map[string]string{} // method → folder of a run interrupted after step 5
	for _, cfg := range []peft.Config{sora, dora, full} {
		dir := t.TempDir()
		if _, err := run(dir, cfg, resumeOptions(dir), 4); !IsInterrupted(err) {
			t.Fatalf("%s: %v, want an interruption", cfg.Method, err)
		}
		made[string(cfg.Method)] = dir
	}
	resume := func(o Options) Options { o.Resume = true; return o }
	cases := []struct {
		name string
		from peft.Config
		cfg  func(*peft.Config)
		opts func(*Options)
		want string
	}{
		{"alpha", sora, func(c *peft.Config) { c.Alpha = 16 }, nil, "alpha 8 (now 16)"},
		{"dropout", sora, func(c *peft.Config) { c.Dropout = 0 }, nil, "dropout 0.1 (masks seeded 1) (now 0)"},
		{"dropout seed", sora, func(c *peft.Config) { c.Seed = 2 }, nil, "dropout 0.1 (masks seeded 1) (now 0.1 (masks seeded 2))"},
		{"exact rotation", sora, func(c *peft.Config) { c.ExactRotation = true }, nil, "exact-rotation false (now true)"},
		{"rotation rank", sora, func(c *peft.Config) { c.RotationRank = 3 }, nil, "rotation-rank 2 (now 3)"},
		{"dora to dora-peft", dora, func(c *peft.Config) { c.Method = peft.DoRAPEFT }, nil, "method dora (now dora-peft)"},
		{"schedule", sora, nil, func(o *Options) { o.Schedule = "linear" }, "schedule cosine (now linear)"},
		{"warmup", sora, nil, func(o *Options) { o.Warmup = 3 }, "warmup 2 (now 3)"},
		{"clip", sora, nil, func(o *Options) { o.ClipNorm = 0.5 }, "clip 1 (now 0.5)"},
		{"weight decay", sora, nil, func(o *Options) { o.WeightDecay = 0.02 }, "weight-decay 0.01 (now 0.02)"},
		{"micro-batch", sora, nil, func(o *Options) { o.MicroBatch = 4 }, "micro-batch 2 (now 4)"},
		{"eval split", sora, nil, func(o *Options) { o.EvalSplit = "0.1" }, "eval-split none (now 0.1)"},
		// A run of the linear layers made when that was full fine-tuning's
		// default, resumed with the same flags, meets the new default.
		{"full's target", full, func(c *peft.Config) { c.TargetModules = []string{peft.AllParameters} }, nil,
			"target all-linear (now all); full fine-tuning with the target all trains every parameter: a run of the linear layers alone goes on with --target all-linear"},
		{"two at once", sora, func(c *peft.Config) { c.Alpha = 4 }, func(o *Options) { o.ClipNorm = 2 }, "alpha 8 (now 4), clip 1 (now 2)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := made[string(c.from.Method)]
			cfg, o := c.from, resume(resumeOptions(dir))
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			if c.opts != nil {
				c.opts(&o)
			}
			_, err := run(dir, cfg, o, -1)
			if err == nil || !strings.Contains(err.Error(), "cannot resume") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("resume with another %s: %v; want a refusal saying %q", c.name, err, c.want)
			}
		})
	}

	// The learning rate may change: the usual remedy after a NaN.
	dir := made["sora"]
	o := resume(resumeOptions(dir))
	o.LR = 1e-3
	prog, err := run(dir, sora, o, 6)
	if !IsInterrupted(err) {
		t.Fatalf("resume with a lower learning rate: %v, want it to run (and be interrupted after step 7)", err)
	}
	if len(prog.got) == 0 || !strings.Contains(strings.Join(prog.got, "\n"), "learning rate 0.001 where it was made with 0.003") {
		t.Errorf("resume with another learning rate said %q; want a note naming both", prog.got)
	}
	ck, err := LatestCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := readState(ck); err != nil || st.Step != 7 || st.Settings["lr"] != "0.001" {
		t.Fatalf("checkpoint after the change: step %d, settings %v (%v); want step 7 and lr 0.001", st.Step, st.Settings, err)
	}
	if prog, err := run(dir, sora, o, -1); err != nil || strings.Contains(strings.Join(prog.got, "\n"), "learning rate") {
		t.Errorf("resume with the new learning rate: %v, notes %q; want no note", err, prog.got)
	}

	// A checkpoint that predates the record is resumed with a warning.
	dir = made["dora"]
	ck = dropStateField(t, dir, "settings")
	prog, err = run(dir, dora, resume(resumeOptions(dir)), -1)
	if err != nil {
		t.Fatalf("resume of a checkpoint without settings: %v", err)
	}
	if w := prog.warnings(); len(w) != 1 || !strings.Contains(w[0], ck) || !strings.Contains(w[0], "does not record its settings") {
		t.Errorf("resume of a checkpoint without settings warned %q; want one warning naming %s", w, ck)
	}
	ck, _ = LatestCheckpoint(dir)
	if st, err := readState(ck); err != nil || st.Settings["method"] != "dora" {
		t.Errorf("the resumed run's checkpoint %s records settings %v (%v); want them recorded", ck, st.Settings, err)
	}
}

// TestResumeRefusalListsEverySetting resumes an interrupted run with its
// task, its seed and a setting changed at once: the trainer refuses it
// naming all three in one list, in the settings' style ("name was (now
// is)"), as CheckResume does before anything loads, which with the batch
// changed too names the four of them and the micro-batch that follows.
func TestResumeRefusalListsEverySetting(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(13, tinyConfig().VocabSize, 5)
	dir := t.TempDir()
	_, pm := tinyModel(t, b, peft.LoRA, 4)
	if _, err := runStoppingAt(&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: resumeOptions(dir)}, 4); !IsInterrupted(err) {
		t.Fatalf("%v; want an interruption", err)
	}
	o := resumeOptions(dir)
	o.Resume, o.Seed, o.WeightDecay = true, 12, 0.1
	const advice = "; resuming needs the settings it was made with (only the learning rate and the number of steps may change)"
	m, cls := tinyClassifier(t, b)
	_, err := (&Trainer{Model: m, Adapter: cls, Task: Classify, Classes: 2, Train: seqs, Options: o}).Run(context.Background())
	if want := "it was made with task lm (now classify), seed 11 (now 12), weight-decay 0.01 (now 0.1)" + advice; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("resume with another task, seed and weight decay: %v; want %q", err, want)
	}
	o.Batch, o.MicroBatch = 3, 3
	cfg := cls.Config()
	err = CheckResume(ResumePlan{Task: Classify, Options: o.WithDefaults(0), Adapter: &cfg, BaseDType: backend.Float32})
	if want := "it was made with task lm (now classify), seed 11 (now 12), batch 4 (now 3), micro-batch 2 (now 3), weight-decay 0.01 (now 0.1)" + advice; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("CheckResume with another task, seed, batch and weight decay: %v; want %q", err, want)
	}
}

// TestResumeLearningRates checks the record of the peak learning rates a
// run's steps trained with (Result.LRs, and each checkpoint's): a resume
// with another rate adds a span from its first step; one with the same
// rate, or one that trains nothing (a finished run, with a note saying
// so), adds none; a run interrupted before its first step records no
// rate; and a checkpoint made before checkpoints kept the record is taken
// to have trained with the rate its settings record.
func TestResumeLearningRates(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(13, tinyConfig().VocabSize, 5)
	// run trains (or resumes) in dir with peak rate lr, stopping after the
	// step that begins with stopAt steps done (none when stopAt < 0).
	// A stopAt of -2 cancels the run before its first step.
	run := func(dir string, resume bool, lr float64, stopAt int) (*Result, *messages) {
		t.Helper()
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		o := resumeOptions(dir)
		o.Resume, o.LR = resume, lr
		prog := &messages{}
		tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o, Progress: prog}
		var res *Result
		var err error
		if stopAt == -2 {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			res, err = tr.Run(ctx)
		} else {
			res, err = runStoppingAt(tr, stopAt)
		}
		if stopAt != -1 && !IsInterrupted(err) || stopAt == -1 && err != nil {
			t.Fatalf("run in %s (resume %v, lr %g, stop at %d): %v", dir, resume, lr, stopAt, err)
		}
		return res, prog
	}
	check := func(what string, got []LRSpan, want ...LRSpan) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: learning rates %+v, want %+v", what, got, want)
		}
	}
	checkpoint := func(dir string) trainerState {
		t.Helper()
		ck, err := LatestCheckpoint(dir)
		if err != nil {
			t.Fatal(err)
		}
		st, err := readState(ck)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	first, second := LRSpan{1, 3e-3}, LRSpan{6, 1e-3}

	dir := t.TempDir()
	res, _ := run(dir, false, 3e-3, 4)
	check("interrupted after step 5", res.LRs, first)
	check("its checkpoint", checkpoint(dir).LRs, first)
	res, _ = run(dir, true, 1e-3, 6)
	check("resumed with another rate, interrupted after step 7", res.LRs, first, second)
	check("its checkpoint", checkpoint(dir).LRs, first, second)
	res, _ = run(dir, true, 1e-3, -1)
	check("resumed with the same rate to the end", res.LRs, first, second)
	check("its checkpoint", checkpoint(dir).LRs, first, second)
	res, prog := run(dir, true, 5e-4, -1)
	check("the finished run resumed with a third rate", res.LRs, first, second)
	if note := strings.Join(prog.got, "\n"); !strings.Contains(note, "learning rate 0.0005 where it was made with 0.001: the run had finished its 9 steps, so no step trains with the new rate") {
		t.Errorf("resume of the finished run with another rate said %q; want a note that nothing trains with it", note)
	}

	// Interrupted before step 1: the step-0 checkpoint has no rate, and
	// the resume's rate is that of every step.
	dir = t.TempDir()
	res, _ = run(dir, false, 3e-3, -2)
	if res.Steps != 0 || checkpoint(dir).Step != 0 {
		t.Fatalf("the run cancelled at once took %d steps, or its checkpoint is not at step 0", res.Steps)
	}
	check("interrupted before step 1", res.LRs)
	check("its checkpoint", checkpoint(dir).LRs)
	res, _ = run(dir, true, 1e-3, -1)
	check("resumed from step 0 with another rate", res.LRs, LRSpan{1, 1e-3})

	// A checkpoint without the record.
	dir = t.TempDir()
	run(dir, false, 3e-3, 4)
	dropStateField(t, dir, "lr_history")
	res, _ = run(dir, true, 1e-3, -1)
	check("resumed with another rate from a checkpoint without the record", res.LRs, first, second)
}

// dropStateField removes field from the trainer state of the newest
// checkpoint in dir, as a checkpoint written before the field existed
// lacks it (the field must be there to begin with), and returns that
// checkpoint's path.
func dropStateField(t *testing.T, dir, field string) string {
	t.Helper()
	ck, err := LatestCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(ck, stateFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	if _, ok := fields[field]; !ok {
		t.Fatalf("%s records no %s", path, field)
	}
	delete(fields, field)
	if raw, err = json.Marshal(fields); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return ck
}

// TestCompareSettingsUnsetFollows checks that a setting the run's method
// does not use (recorded by the checkpoint, absent from the run) is not
// listed beside the change that explains it, and is listed when it is the
// only difference.
func TestCompareSettingsUnsetFollows(t *testing.T) {
	sora := map[string]string{"method": "sora", "rank": "8", "rotation-rank": "4", "exact-rotation": "false"}
	for _, c := range []struct {
		name string
		is   map[string]string
		want []string
	}{
		{"method changed", map[string]string{"method": "lora", "rank": "8"}, []string{"method sora (now lora)"}},
		{"method and rank changed", map[string]string{"method": "lora", "rank": "4"}, []string{"method sora (now lora)", "rank 8 (now 4)"}},
		{"only an unset one", map[string]string{"method": "sora", "rank": "8", "exact-rotation": "false"}, []string{"rotation-rank 4 (now unset)"}},
		{"same", sora, nil},
	} {
		diffs, _, _, _ := compareSettings(sora, c.is)
		if !slices.Equal(diffs, c.want) {
			t.Errorf("%s: diffs %q, want %q", c.name, diffs, c.want)
		}
	}
}
