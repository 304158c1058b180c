package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// TestClipOff checks the ways to leave the gradient norm unclipped: NoClip
// and a negative ClipNorm train the same weights, bit for bit, which
// differ from clipping at 1 (the step's norm is above 1), while a zero
// ClipNorm is the default, clipping at 1. The checkpoint records "off",
// a checkpoint that recorded a negative norm (as made before "off" was)
// resumes without clipping, and one that clipped is refused a resume
// without.
func TestClipOff(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(8, tinyConfig().VocabSize, 6)
	run := func(o Options, dir string) ([][]float32, []Record, error) {
		_, pm := tinyModel(t, b, peft.LoRA, 3)
		o.Steps, o.Batch, o.LR, o.Seed, o.Out, o.NoSpectra = 2, 4, 1e-2, 1, dir, true
		if _, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o}).Run(context.Background()); err != nil {
			return nil, nil, err
		}
		rs, err := ReadMetrics(filepath.Join(dir, MetricsFile))
		return download(t, pm.Trainable()), rs, err
	}
	dirs := map[string]string{}
	weights := map[string][][]float32{}
	for name, o := range map[string]Options{"zero": {}, "one": {ClipNorm: 1}, "noclip": {NoClip: true}, "negative": {ClipNorm: -1}} {
		dirs[name] = t.TempDir()
		w, rs, err := run(o, dirs[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "one" && (rs[0].GradNorm == nil || *rs[0].GradNorm <= 1) {
			t.Fatalf("step 1's gradient norm is %v; the test needs one above 1, where clipping at 1 changes the step", rs[0].GradNorm)
		}
		weights[name] = w
	}
	same := func(a, b string) bool { _, _, ok := sameBits(weights[a], weights[b]); return ok }
	if !same("zero", "one") {
		t.Error("ClipNorm 0 trained other weights than ClipNorm 1 (0 should take the default, 1)")
	}
	if !same("noclip", "negative") {
		t.Error("NoClip trained other weights than a negative ClipNorm; both turn clipping off")
	}
	if same("noclip", "one") {
		t.Error("NoClip trained the weights of clipping at 1")
	}
	setting := func(name string) string {
		ck, err := LatestCheckpoint(dirs[name])
		if err != nil {
			t.Fatal(err)
		}
		st, err := readState(ck)
		if err != nil {
			t.Fatal(err)
		}
		return st.Settings["clip"]
	}
	if got := [...]string{setting("zero"), setting("noclip"), setting("negative")}; got != [...]string{"1", "off", "off"} {
		t.Errorf("checkpoints record clip %q for ClipNorm 0, NoClip and ClipNorm -1; want 1, off, off", got)
	}

	resume := func(dir string, o Options) error {
		_, pm := tinyModel(t, b, peft.LoRA, 3)
		o.Steps, o.Batch, o.LR, o.Seed, o.Out, o.NoSpectra, o.Resume = 2, 4, 1e-2, 1, dir, true, true
		_, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o}).Run(context.Background())
		return err
	}
	// A checkpoint from before "off" was recorded holds the flag's value.
	ck, _ := LatestCheckpoint(dirs["negative"])
	setStateSetting(t, ck, "clip", "-0.5")
	if err := resume(dirs["negative"], Options{NoClip: true}); err != nil {
		t.Errorf("resume without clipping of a checkpoint recording clip -0.5: %v", err)
	}
	if err := resume(dirs["one"], Options{NoClip: true}); err == nil || !strings.Contains(err.Error(), "clip 1 (now off)") ||
		!strings.Contains(err.Error(), "if it was made with --clip 0 before --clip 0 meant no clipping, it clipped at 1 (as it records): resume it with --clip 1") {
		t.Errorf("resume without clipping of a run that clipped at 1: %v; want a refusal saying clip 1 (now off), with the hint to resume with --clip 1", err)
	}
	// Another clip is no old --clip 0: no hint.
	if err := resume(dirs["one"], Options{ClipNorm: 2}); err == nil || !strings.Contains(err.Error(), "clip 1 (now 2)") || strings.Contains(err.Error(), "--clip 0") {
		t.Errorf("resume clipping at 2 of a run that clipped at 1: %v; want a refusal saying clip 1 (now 2), without the --clip 0 hint", err)
	}
	o := Options{NoClip: true, ClipNorm: 2, Steps: 1}.WithDefaults(4)
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "no-clip") {
		t.Errorf("NoClip with ClipNorm 2 validated as %v; want a refusal", err)
	}
}

// setStateSetting sets one setting in the trainer state of checkpoint ck.
func setStateSetting(t *testing.T, ck, key, value string) {
	t.Helper()
	st, err := readState(ck)
	if err != nil {
		t.Fatal(err)
	}
	st.Settings[key] = value
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ck, stateFile), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCheckResumeEarly checks CheckResume, the look before the model
// loads: for each flag that changes the result it refuses the resume with
// the very message that the trainer's own check gives, and it passes what
// it cannot know yet (the evaluation data, the warm-up of a run whose
// steps the data decides) and what is unchanged.
func TestCheckResumeEarly(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(13, tinyConfig().VocabSize, 5)
	cfg := peft.Config{Method: peft.SORA, R: 4, Alpha: 8, RotationRank: 2, TargetModules: []string{peft.AllLinear}, Seed: 1}
	dir := t.TempDir()
	made := resumeOptions(dir)
	made.KeepBest, made.EvalEvery = true, 3
	run := func(c peft.Config, o Options, stopAt int) error {
		_, pm := tinyAdapted(t, b, 1, &c)
		_, err := runStoppingAt(&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Eval: seqs[:4], Options: o,
			SaveAdapter: saveTrainable(pm)}, stopAt)
		return err
	}
	if err := run(cfg, made, 4); !IsInterrupted(err) {
		t.Fatalf("%v; want an interruption", err)
	}
	resumed := made
	resumed.Resume = true
	plan := func(c peft.Config, o Options) ResumePlan {
		return ResumePlan{Task: LM, Options: o.WithDefaults(0), Adapter: &c, BaseDType: backend.Float32}
	}
	if err := CheckResume(plan(cfg, resumed)); err != nil {
		t.Fatalf("the same flags: %v", err)
	}
	cases := []struct {
		name string
		cfg  func(*peft.Config)
		opts func(*Options)
		want string
	}{
		{"seed", nil, func(o *Options) { o.Seed = 12 }, "seed 11 (now 12)"},
		{"batch", nil, func(o *Options) { o.Batch = 3; o.MicroBatch = 3 }, "batch 4 (now 3)"},
		{"steps", nil, func(o *Options) { o.Steps, o.Warmup = 3, 2 }, "with steps 3: the run has trained 5 steps already, of the 9 it was made for; resume it with at least 5 steps (9 finishes the run as it was made)"},
		{"rank", func(c *peft.Config) { c.R = 2 }, nil, "rank 4 (now 2)"},
		{"method", func(c *peft.Config) { c.Method = peft.LoRA }, nil, "method sora (now lora)"},
		{"clip", nil, func(o *Options) { o.NoClip = true }, "clip 1 (now off)"},
		{"warmup", nil, func(o *Options) { o.Warmup = 3 }, "warmup 2 (now 3)"},
		{"keep-best", nil, func(o *Options) { o.KeepBest = false; o.EarlyStopping = 2 }, "early-stopping 0 (now 2)"},
	}
	for _, c := range cases {
		co, o := cfg, resumed
		if c.cfg != nil {
			c.cfg(&co)
		}
		if c.opts != nil {
			c.opts(&o)
		}
		early := CheckResume(plan(co, o))
		late := run(co, o, -1)
		if early == nil || late == nil || early.Error() != late.Error() || !strings.Contains(early.Error(), c.want) {
			t.Errorf("%s: CheckResume says %v; the run says %v; want both, the same, saying %q", c.name, early, late, c.want)
		}
	}
	// Unknown before the data loads: the steps (and so the warm-up) of a
	// run by epochs, and the evaluation data.
	o := resumed
	o.Steps, o.Epochs, o.Warmup = 0, 3, 7
	if err := CheckResume(plan(cfg, o)); err != nil {
		t.Errorf("a resume by epochs with another warm-up: %v; the steps are not known yet", err)
	}
	if err := CheckResume(plan(cfg, made)); err != nil {
		t.Errorf("a fresh run: %v; CheckResume checks resumes only", err)
	}
	o = resumed
	o.Out = t.TempDir()
	if err := CheckResume(plan(cfg, o)); err == nil || !strings.Contains(err.Error(), "no checkpoint to resume") {
		t.Errorf("a resume from an empty folder: %v; want the trainer's refusal", err)
	}
}

// TestNonFiniteSaysCheckpointMayBeDiverged: a run whose loss turns NaN
// names the newest checkpoint with its step and its largest trainable
// weight (a learning rate that ends in NaN often blows the weights up
// first), and does not call it good.
func TestNonFiniteSaysCheckpointMayBeDiverged(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(8, tinyConfig().VocabSize, 9)
	_, pm := tinyModel(t, b, peft.LoRA, 3)
	dir := t.TempDir()
	victim := pm.Trainable()[0]
	var biggest float64
	tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: Options{Steps: 4, Batch: 4, LR: 1e-2, SaveEvery: 1, Out: dir},
		beforeStep: func(s int) {
			if s == 2 {
				// The weights that the checkpoint of step 2 holds: the
				// largest of every trainable tensor's.
				for _, w := range download(t, pm.Trainable()) {
					for _, v := range w {
						biggest = max(biggest, math.Abs(float64(v)))
					}
				}
				poison(victim)
			}
		}}
	nf, err := runNonFinite(t, tr)
	if nf.CheckpointStep != 2 || nf.LargestIn == "" || nf.Largest != biggest {
		t.Errorf("error names checkpoint step %d, largest weight %g in %q; want step 2 and %g", nf.CheckpointStep, nf.Largest, nf.LargestIn, biggest)
	}
	msg := err.Error()
	for _, want := range []string{"step-000002 (step 2)", "may have diverged", "largest trainable weight", nf.LargestIn} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "good checkpoint") {
		t.Errorf("error %q calls the checkpoint good", msg)
	}
}

// TestFailedRunLeavesNoTrace: a run that fails before it trains a step
// removes the metrics log it began (holding at most the zero-shot
// evaluation), and with it the folder it made and the parents it made for
// it, but nothing the folder held before; a run that trained a step keeps
// its log.
func TestFailedRunLeavesNoTrace(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(8, tinyConfig().VocabSize, 9)
	zs := &EvalResult{Loss: 3, Accuracy: 0, Targets: 10, Sequences: 2}
	// run trains into out, poisoning a weight before step nanAt+1.
	run := func(out string, nanAt int) error {
		_, pm := tinyModel(t, b, peft.LoRA, 3)
		victim := pm.Trainable()[0]
		tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, ZeroShot: zs,
			Options: Options{Steps: 4, Batch: 4, LR: 1e-2, Out: out},
			beforeStep: func(s int) {
				if s == nanAt {
					poison(victim)
				}
			}}
		_, err := runNonFinite(t, tr)
		return err
	}
	above := t.TempDir()
	made := filepath.Join(above, "new", "run")
	run(made, 0)
	// The folders the run made for it go too, empty (see
	// TestLockOutputRemovesParents); the one that was there stays.
	for _, dir := range []string{made, filepath.Dir(made)} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a run that made %s and failed at step 1 left %s (%v)", made, dir, err)
		}
	}
	if _, err := os.Stat(above); err != nil {
		t.Errorf("the folder that was there before the run: %v; only the folders the run made go", err)
	}

	theirs := t.TempDir()
	mine := filepath.Join(theirs, "notes.txt")
	if err := os.WriteFile(mine, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(theirs, 0)
	ents, err := os.ReadDir(theirs)
	if err != nil || len(ents) != 1 || ents[0].Name() != "notes.txt" {
		t.Errorf("a failed run into a folder holding notes.txt left %v (%v); want notes.txt alone", ents, err)
	}

	run(theirs, 1)
	rs, err := ReadMetrics(filepath.Join(theirs, MetricsFile))
	if err != nil || len(rs) != 2 || rs[0].Step != 0 || rs[0].EvalLoss == nil || rs[1].Loss == nil {
		t.Errorf("a run that failed at step 2 left the log %+v (%v); want the zero-shot evaluation and step 1", rs, err)
	}
}

// TestZeroShotLogged: the caller's zero-shot evaluation is logged as the
// evaluation of step 0 by a fresh run, which loss.png then draws, and kept,
// once, by a resume.
func TestZeroShotLogged(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(8, tinyConfig().VocabSize, 9)
	dir := t.TempDir()
	run := func(resume bool, stopAt int) (*Result, error) {
		_, pm := tinyModel(t, b, peft.LoRA, 3)
		m := pm.Module().(*llama.Model)
		zs, err := Evaluate(context.Background(), m, LM, seqs[:3], 3, 0)
		if err != nil {
			t.Fatal(err)
		}
		return runStoppingAt(&Trainer{Model: m, Adapter: pm, Train: seqs, Eval: seqs[:3], ZeroShot: zs,
			Options: Options{Steps: 4, Batch: 4, LR: 1e-2, Out: dir, Resume: resume, NoSpectra: true}}, stopAt)
	}
	if _, err := run(false, 2); !IsInterrupted(err) {
		t.Fatalf("%v; want an interruption", err)
	}
	res, err := run(true, -1)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ReadMetrics(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var evals []int
	for _, r := range rs {
		if r.EvalLoss != nil {
			evals = append(evals, r.Step)
		}
	}
	if len(evals) != 2 || evals[0] != 0 || evals[1] != 4 || rs[0].Step != 0 {
		t.Errorf("evaluations logged at steps %v; want 0 (first) and 4", evals)
	}
	curves := CurvesFromMetrics(rs, 1)
	if len(curves) != 2 || curves[1].Steps[0] != 0 {
		t.Errorf("loss curves %+v; want the evaluation curve to start at step 0", curves)
	}
	if !res.LossPlot || res.Spectra {
		t.Errorf("Result says loss plot %v, spectra %v; want true and false (NoSpectra)", res.LossPlot, res.Spectra)
	}
}

// TestEvalNote: the caller's caveat is said with every evaluation line.
func TestEvalNote(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(8, tinyConfig().VocabSize, 9)
	_, pm := tinyModel(t, b, peft.LoRA, 3)
	prog := &messages{}
	tr := &Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Eval: seqs[:3], EvalNote: "2 of 3 cut short", Progress: prog,
		Options: Options{Steps: 4, Batch: 4, LR: 1e-2, EvalEvery: 2}}
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range prog.got {
		if strings.HasPrefix(m, "eval at step") {
			n++
			if !strings.HasSuffix(m, "(2 of 3 cut short)") {
				t.Errorf("evaluation line %q lacks the note", m)
			}
		}
	}
	if n != 2 {
		t.Errorf("%d evaluation lines, want 2 (steps 2 and 4): %q", n, prog.got)
	}
}

// TestMetricsNonFinite: a NaN or infinite value, which a JSON number
// cannot hold, is logged (as text under non_finite) and read back as it
// was, so that a NaN evaluation neither fails the run nor loses its
// record.
func TestMetricsNonFinite(t *testing.T) {
	dir := t.TempDir()
	m, _, err := openMetrics(dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	nan, inf := math.NaN(), math.Inf(-1)
	in := []Record{
		{Step: 0, EvalLoss: &nan, EvalAccuracy: ptr(0)},
		{Step: 1, Loss: ptr(2.5), GradNorm: &inf, LR: ptr(1e-3)},
	}
	for _, r := range in {
		if err := m.add(r); err != nil {
			t.Fatalf("logging %+v: %v", r, err)
		}
	}
	if err := m.commit(); err != nil {
		t.Fatal(err)
	}
	m.close()
	raw, _ := os.ReadFile(filepath.Join(dir, MetricsFile))
	if !strings.Contains(string(raw), `"non_finite":{"eval_loss":"NaN"}`) {
		t.Errorf("metrics.jsonl:\n%s\nwant the NaN under non_finite", raw)
	}
	rs, err := ReadMetrics(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].EvalLoss == nil || !math.IsNaN(*rs[0].EvalLoss) || *rs[0].EvalAccuracy != 0 ||
		rs[1].GradNorm == nil || !math.IsInf(*rs[1].GradNorm, -1) || *rs[1].Loss != 2.5 || rs[0].NonFinite != nil {
		t.Errorf("read back %+v", rs)
	}
	// A resume keeps them too.
	if _, kept, err := openMetrics(dir, 1); err != nil || len(kept) != 2 || kept[0].EvalLoss == nil || !math.IsNaN(*kept[0].EvalLoss) {
		t.Errorf("a resume kept %+v (%v)", kept, err)
	}
	for _, bad := range []string{`{"step":1,"non_finite":{"loss":"7"}}`, `{"step":1,"non_finite":{"tokens":"NaN"}}`} {
		if err := os.WriteFile(filepath.Join(dir, MetricsFile), []byte(bad+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadMetrics(filepath.Join(dir, MetricsFile)); err == nil || !strings.Contains(err.Error(), ":1: not a metrics record") {
			t.Errorf("%s: %v; want an error naming the line", bad, err)
		}
	}
}

// FuzzReadMetrics: any file reads without a panic, and what it reads
// writes and reads back the same.
func FuzzReadMetrics(f *testing.F) {
	f.Add([]byte(`{"step":0,"epoch":0,"eval_loss":1.5,"eval_accuracy":0,"elapsed_s":0,"non_finite":{"eval_mcc":"NaN"}}` + "\n" +
		`{"step":1,"epoch":0.5,"loss":2,"lr":0.001,"grad_norm":3,"tokens":10,"elapsed_s":0.1}` + "\n"))
	f.Add([]byte(`{"step":1,"non_finite":{"loss":"+Inf"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, MetricsFile)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rs, err := ReadMetrics(path)
		if err != nil {
			return
		}
		m, _, err := openMetrics(dir, -1)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if err := m.add(r); err != nil {
				t.Fatalf("writing %+v read from %q: %v", r, b, err)
			}
		}
		if err := m.commit(); err != nil {
			t.Fatal(err)
		}
		m.close()
		if _, err := ReadMetrics(path); err != nil {
			t.Fatalf("reading back what %q read as: %v", b, err)
		}
	})
}

// TestFailedFreshRunKeepsEarlierRun: a fresh run into the folder of an
// earlier one (its checkpoints removed, as the refusal advises) that fails
// before its first step leaves the earlier run's metrics.jsonl and best/
// as they were, and nothing of its own; one that fails after a step has
// begun: its log replaced the earlier one and the earlier best/ is gone.
func TestFailedFreshRunKeepsEarlierRun(t *testing.T) {
	b := openCPU(t)
	out := filepath.Join(t.TempDir(), "run")
	tr, ev := selectData()
	o := Options{Steps: 4, Batch: 4, LR: 1e-2, Seed: 5, EvalEvery: 2, KeepBest: true, Out: out, NoSpectra: true}
	run := func(nanAt int) error {
		_, pm := tinyModel(t, b, peft.LoRA, 3)
		victim := pm.Trainable()[0]
		_, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: tr, Eval: ev, Options: o, SaveAdapter: saveTrainable(pm),
			ZeroShot: &EvalResult{Loss: 9, Targets: 1, Sequences: 1},
			beforeStep: func(s int) {
				if s == nanAt {
					poison(victim)
				}
			}}).Run(context.Background())
		return err
	}
	if err := run(-1); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(out, CheckpointsDir)); err != nil {
		t.Fatal(err)
	}
	log0, err := os.ReadFile(filepath.Join(out, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	best0 := readFiles(t, filepath.Join(out, BestDir))
	top0 := readFiles(t, out, BestDir, AdapterDir)

	var nf *NonFiniteError
	if err := run(0); !errors.As(err, &nf) || nf.Step != 1 {
		t.Fatalf("%v; want a NaN at step 1", err)
	}
	if log, _ := os.ReadFile(filepath.Join(out, MetricsFile)); !bytes.Equal(log, log0) {
		t.Errorf("a fresh run that failed at step 1 changed the earlier run's metrics.jsonl:\n%s\nwas:\n%s", log, log0)
	}
	if d := sameFiles(readFiles(t, filepath.Join(out, BestDir)), best0); d != "" {
		t.Errorf("a fresh run that failed at step 1 changed the earlier run's best/: %s", d)
	}
	if d := sameFiles(readFiles(t, out, BestDir, AdapterDir), top0); d != "" {
		t.Errorf("a fresh run that failed at step 1 left the folder otherwise than it was: %s", d)
	}

	if err := run(1); !errors.As(err, &nf) || nf.Step != 2 {
		t.Fatalf("%v; want a NaN at step 2", err)
	}
	rs, err := ReadMetrics(filepath.Join(out, MetricsFile))
	if err != nil || len(rs) != 2 || rs[0].Step != 0 || rs[1].Step != 1 || rs[1].Loss == nil {
		t.Errorf("a fresh run that failed at step 2 left the log %+v (%v); want its own: the zero-shot evaluation and step 1", rs, err)
	}
	if _, err := os.Stat(filepath.Join(out, BestDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the earlier run's best/ outlived a fresh run that trained a step: %v", err)
	}
}
