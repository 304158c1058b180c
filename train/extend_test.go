package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// wantFactor is the learning-rate factor of the step that follows step
// steps taken, in a run of total steps with warmup warm-up steps, written
// out from the Hugging Face schedulers' definitions (not from package
// optim), for the tests to check the rates a run logs against.
func wantFactor(schedule string, step, warmup, total int) float64 {
	if step < warmup {
		return float64(step) / float64(warmup)
	}
	switch schedule {
	case "linear":
		return math.Max(0, float64(total-step)/float64(total-warmup))
	case "cosine":
		return math.Max(0, 0.5*(1+math.Cos(math.Pi*float64(step-warmup)/float64(total-warmup))))
	}
	return 1
}

// stepLRs returns the learning rate metrics.jsonl logs for each step, by
// step, and fails on a step logged twice.
func stepLRs(t *testing.T, out string) map[int]float64 {
	t.Helper()
	rs, err := ReadMetrics(filepath.Join(out, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	lrs := map[int]float64{}
	for _, r := range rs {
		if r.Loss == nil {
			continue
		}
		if _, dup := lrs[r.Step]; dup {
			t.Errorf("metrics.jsonl logs step %d twice", r.Step)
		}
		lrs[r.Step] = *r.LR
	}
	return lrs
}

// TestResumeExtendsSteps trains a run of 4 steps to its end, then resumes
// it in fresh objects with 8: steps 5 to 8 train at the rates of the
// schedule computed for 8 steps (checked against the schedulers'
// formulas), steps 1 to 4 kept those of the 4-step one, a note says what
// happened to the schedule (naming the steps a fresh 8-step run would
// have trained at other rates), and the checkpoints record the new length
// and its history. With the constant schedule, whose rates do not depend
// on the length, the weights equal bit for bit those of a fresh 8-step
// run with the same warm-up (the data order and the optimizer state go
// on as they would have), as the note says;
// with the others they differ. A second resume with 8 steps trains
// nothing; one with fewer steps than trained is refused naming both.
func TestResumeExtendsSteps(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(13, tinyConfig().VocabSize, 5)
	const lr, warmup = 1e-2, 1
	opts := func(out, schedule string, steps int, resume bool) Options {
		return Options{Steps: steps, Batch: 4, MicroBatch: 2, LR: lr, Warmup: warmup, Schedule: schedule, Seed: 11,
			SaveEvery: 3, Out: out, Resume: resume, NoSpectra: true}
	}
	run := func(o Options, prog Progress) (*Result, [][]float32, error) {
		_, pm := tinyModelDropout(t, b, peft.SORA, 1, 0.1)
		res, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o, Progress: prog}).Run(context.Background())
		return res, download(t, pm.Trainable()), err
	}
	for _, schedule := range []string{"constant", "linear", "cosine"} {
		t.Run(schedule, func(t *testing.T) {
			dir := t.TempDir()
			short, fresh := filepath.Join(dir, "short"), filepath.Join(dir, "fresh")
			if _, _, err := run(opts(short, schedule, 4, false), nil); err != nil {
				t.Fatal(err)
			}
			var msgs messages
			res, got, err := run(opts(short, schedule, 8, true), &msgs)
			if err != nil {
				t.Fatal(err)
			}
			if res.StartStep != 4 || res.Steps != 8 {
				t.Errorf("the extended run went from step %d to %d; want 4 to 8", res.StartStep, res.Steps)
			}
			lrs := stepLRs(t, short)
			for s := 1; s <= 8; s++ {
				total := 4
				if s > 4 {
					total = 8
				}
				want := lr * wantFactor(schedule, s-1, warmup, total)
				if got, ok := lrs[s]; !ok || math.Abs(got-want) > 1e-12*lr {
					t.Errorf("step %d trained at %v (logged: %v); want %v, the %d-step schedule's", s, got, ok, want, total)
				}
			}
			note := ""
			for _, m := range msgs.got {
				if strings.Contains(m, "made for 4 steps, with 8") {
					note = m
				}
			}
			// Steps 1 and 2 train in the warm-up and at the peak after
			// it, whatever the number of steps; 3 and 4 decay later in
			// the 8-step schedule.
			wantNote := fmt.Sprintf("is computed again for 8 steps and goes on from step 4, as Hugging Face's Trainer does: step 5 trains at %.4g × the peak rate 0.01, where the 4-step schedule had come to its end; "+
				"so the run differs from a fresh 8-step run, whose steps 3 to 4 would have trained at higher rates", wantFactor(schedule, 4, warmup, 8))
			if schedule == "constant" {
				wantNote = "the constant schedule (with 1 step of warm-up) does not depend on the number of steps, so the run trains as a fresh 8-step run with 1 step of warm-up would"
			}
			if !strings.Contains(note, wantNote) {
				t.Errorf("messages %q; want a note saying %q", msgs.got, wantNote)
			}

			wantHistory := []StepsSpan{{FromStep: 1, Steps: 4}, {FromStep: 5, Steps: 8}}
			if !slices.Equal(res.StepsHistory, wantHistory) {
				t.Errorf("Result.StepsHistory %+v; want %+v", res.StepsHistory, wantHistory)
			}
			info, err := ReadCheckpoint(short)
			if err != nil {
				t.Fatal(err)
			}
			st, err := readState(info.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if info.Step != 8 || info.TotalSteps != 8 || info.MadeFor != 4 || info.Warmup != warmup || st.TotalSteps != 8 || !slices.Equal(st.StepsHistory, wantHistory) {
				t.Errorf("the final checkpoint %s: step %d of %d (made for %d), warm-up %d, history %+v; want 8 of 8 (made for 4), %d, %+v",
					info.Dir, info.Step, info.TotalSteps, info.MadeFor, info.Warmup, st.StepsHistory, warmup, wantHistory)
			}

			_, want, err := run(opts(fresh, schedule, 8, false), nil)
			if err != nil {
				t.Fatal(err)
			}
			i, j, same := sameBits(got, want)
			switch {
			case schedule == "constant" && !same:
				t.Errorf("the 4-step run extended to 8 differs from a fresh 8-step run at tensor %d[%d]: %v, want %v", i, j, got[i][j], want[i][j])
			case schedule != "constant" && same:
				t.Errorf("the 4-step run extended to 8 has the weights of a fresh 8-step run, which trained at other rates")
			}

			// Again with 8 steps: nothing to train; with fewer than
			// trained: refused, naming both numbers.
			res, _, err = run(opts(short, schedule, 8, true), nil)
			if err != nil || res.StartStep != 8 || res.Steps != 8 {
				t.Errorf("a second resume with 8 steps: %v, from step %d to %d; want nothing trained", err, res.StartStep, res.Steps)
			}
			_, _, err = run(opts(short, schedule, 6, true), nil)
			if err == nil || !strings.Contains(err.Error(), "with steps 6: the run has trained 8 steps already, of the 8 it was made for; resume it with 8 steps, as it was made (it has finished), or more") {
				t.Errorf("a resume with 6 steps after 8: %v; want a refusal naming 6 and 8", err)
			}
			if got := stepLRs(t, short); len(got) != 8 {
				t.Errorf("metrics.jsonl logs %d steps after the refused resume; want 8", len(got))
			}
		})
	}
}

// TestResumeChangesStepsOfInterruptedRun resumes a run of 9 steps (cosine
// schedule, 2 warm-up steps) interrupted after a step with other numbers
// of steps. After step 5: 12 trains steps 6 to 12 on the 12-step
// schedule, and the note names steps 4 and 5 as those a fresh 12-step
// run would have trained at other rates (1 to 3, in the warm-up and at
// the peak right after it, have the same rates); 5 ends the run at once,
// and its checkpoint then records 5 steps, so that a later resume sees
// the new length, but also the 9-step schedule its steps trained on: 9
// then takes that schedule on, and the run ends bit for bit where an
// uninterrupted 9-step run ends, as the note says; 7, interrupted again
// after step 6, and then 9 again: the note names step 6 alone as
// trained at other rates; 4, fewer than trained, is refused with
// CheckResume's message. After step 3: 12 gives the weights of a fresh
// 12-step run with the same warm-up, as the note says, and so does 12
// from the checkpoint of a run interrupted before its first step. After
// step 1: 1, which ends the run inside its warm-up, is refused saying so.
func TestResumeChangesStepsOfInterruptedRun(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(13, tinyConfig().VocabSize, 5)
	// run trains with resumeOptions(out) changed by steps (when not 0)
	// and resume, interrupted after step stopAt when not negative (the
	// step that begins with stopAt-1 done cancels the context, and the
	// run stops once it has trained it).
	run := func(t *testing.T, out string, steps int, resume bool, stopAt int) (*Result, *messages, [][]float32, error) {
		t.Helper()
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		o := resumeOptions(out)
		if steps > 0 {
			o.Steps = steps
		}
		o.Resume = resume
		var msgs messages
		res, err := runStoppingAt(&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o, Progress: &msgs}, max(-1, stopAt-1))
		if stopAt >= 0 {
			var ie *InterruptedError
			if !errors.As(err, &ie) || ie.Step != stopAt {
				t.Fatalf("%v; want an interruption after step %d", err, stopAt)
			}
			err = nil
		}
		return res, &msgs, download(t, pm.Trainable()), err
	}
	interrupted := func(t *testing.T, after int) string {
		out := t.TempDir()
		run(t, out, 0, false, after)
		return out
	}
	resume := func(t *testing.T, out string, steps int) (*Result, *messages, [][]float32, error) {
		t.Helper()
		return run(t, out, steps, true, -1)
	}
	fresh := func(t *testing.T, steps int) [][]float32 {
		t.Helper()
		_, _, w, err := run(t, filepath.Join(t.TempDir(), "fresh"), steps, false, -1)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	hasNote := func(t *testing.T, msgs *messages, want string) {
		t.Helper()
		if !slices.ContainsFunc(msgs.got, func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("messages %q; want one saying %q", msgs.got, want)
		}
	}
	same := func(t *testing.T, got, want [][]float32, what string) {
		t.Helper()
		if i, j, ok := sameBits(got, want); !ok {
			t.Errorf("%s: tensor %d[%d] is %v, want %v", what, i, j, got[i][j], want[i][j])
		}
	}
	o := resumeOptions("")

	t.Run("longer", func(t *testing.T) {
		out := interrupted(t, 5)
		res, msgs, _, err := resume(t, out, 12)
		if err != nil {
			t.Fatal(err)
		}
		lrs := stepLRs(t, out)
		var other []string
		for s := 1; s <= 12; s++ {
			total := 9
			if s > 5 {
				total = 12
			}
			want := o.LR * wantFactor(o.Schedule, s-1, o.Warmup, total)
			if math.Abs(lrs[s]-want) > 1e-12*o.LR {
				t.Errorf("step %d trained at %v; want %v, the %d-step schedule's", s, lrs[s], want, total)
			}
			if s <= 5 && wantFactor(o.Schedule, s-1, o.Warmup, 9) != wantFactor(o.Schedule, s-1, o.Warmup, 12) {
				other = append(other, fmt.Sprint(s))
			}
		}
		if !slices.Equal(other, []string{"4", "5"}) {
			t.Fatalf("the formulas give steps %v other rates in a 12-step run; the test expects 4 and 5", other)
		}
		hasNote(t, msgs, fmt.Sprintf("made for 9 steps, with 12: the cosine schedule (with 2 steps of warm-up) is computed again for 12 steps and goes on from step 5, as Hugging Face's Trainer does: step 6 trains at %.4g × the peak rate 0.003, where the 9-step schedule would have trained it at %.4g × the peak; "+
			"so the run differs from a fresh 12-step run, whose steps 4 to 5 would have trained at higher rates", wantFactor(o.Schedule, 5, o.Warmup, 12), wantFactor(o.Schedule, 5, o.Warmup, 9)))
		if h := []StepsSpan{{1, 9}, {6, 12}}; !slices.Equal(res.StepsHistory, h) {
			t.Errorf("steps history %+v; want %+v", res.StepsHistory, h)
		}
	})
	t.Run("ends at its step", func(t *testing.T) {
		out := interrupted(t, 5)
		res, msgs, _, err := resume(t, out, 5)
		if err != nil {
			t.Fatal(err)
		}
		hasNote(t, msgs, "made for 9 steps, with 5: the run ends at its checkpoint's step, with no step to train")
		info, err := ReadCheckpoint(out)
		if err != nil {
			t.Fatal(err)
		}
		if res.StartStep != 5 || res.Steps != 5 || info.Step != 5 || info.TotalSteps != 5 || info.ScheduleSteps != 9 {
			t.Errorf("resumed with 5 steps: trained %d to %d, the checkpoint records step %d of %d on the %d-step schedule; want 5 to 5, 5 of 5 on the 9-step one",
				res.StartStep, res.Steps, info.Step, info.TotalSteps, info.ScheduleSteps)
		}
		// The next resume with the run's first length trains it on:
		// the checkpoint's 5 steps are no longer its plan, and its
		// steps trained on the 9-step schedule, which simply goes on.
		res, msgs, got, err := resume(t, out, 9)
		if err != nil || res.Steps != 9 {
			t.Fatalf("resumed again with 9 steps: %v, %v", err, res)
		}
		hasNote(t, msgs, "made for 5 steps (steps 1 to 5 trained on the 9-step schedule), with 9: the 9-step cosine schedule that steps 1 to 5 trained on simply goes on, so the run trains as a fresh 9-step run with 2 steps of warm-up would")
		same(t, got, fresh(t, 9), "the run ended at step 5 and taken on to 9 against an uninterrupted 9-step run")
	})
	t.Run("shorter then longer", func(t *testing.T) {
		out := interrupted(t, 5)
		run(t, out, 7, true, 6)
		_, msgs, _, err := resume(t, out, 9)
		if err != nil {
			t.Fatal(err)
		}
		hasNote(t, msgs, "made for 7 steps (steps 1 to 5 trained on the 9-step schedule, step 6 on the 7-step one), with 9: the cosine schedule (with 2 steps of warm-up) is computed again for 9 steps and goes on from step 6")
		hasNote(t, msgs, "where the 7-step schedule would have trained it at")
		hasNote(t, msgs, "so the run differs from a fresh 9-step run, whose step 6 would have trained at higher rates")
	})
	t.Run("within the warm-up", func(t *testing.T) {
		// Step 3 trains at the rate that follows the 2 warm-up steps,
		// the peak, whatever the number of steps.
		out := interrupted(t, 3)
		_, msgs, got, err := resume(t, out, 12)
		if err != nil {
			t.Fatal(err)
		}
		hasNote(t, msgs, "made for 9 steps, with 12: steps 1 to 3 trained at the rates the 12-step cosine schedule gives them too (in its warm-up of 2 steps, and at the peak right after it, the rates do not depend on the number of steps), so the run trains as a fresh 12-step run with 2 steps of warm-up would")
		same(t, got, fresh(t, 12), "the run extended after step 3 to 12 against a fresh 12-step run")
		// With another peak rate too, the note does not call it the
		// fresh run.
		out = interrupted(t, 3)
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		o := resumeOptions(out)
		o.Steps, o.LR, o.Resume = 12, o.LR/2, true
		var lrMsgs messages
		if _, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o, Progress: &lrMsgs}).Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		hasNote(t, &lrMsgs, "so the run's schedule is that of a fresh 12-step run with 2 steps of warm-up (but not its peak rate, which changed: see the learning-rate note)")
	})
	t.Run("before its first step", func(t *testing.T) {
		// Interrupted before it trains a step, the run saves a
		// checkpoint at step 0; resumed with 12 steps, it keeps the
		// warm-up it was made with and is the fresh 12-step run with it.
		out := t.TempDir()
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: resumeOptions(out)}).Run(ctx)
		var ie *InterruptedError
		if !errors.As(err, &ie) || ie.Step != 0 {
			t.Fatalf("%v; want an interruption before step 1", err)
		}
		_, msgs, got, err := resume(t, out, 12)
		if err != nil {
			t.Fatal(err)
		}
		hasNote(t, msgs, "made for 9 steps, with 12: no step has trained yet, so the run trains as a fresh 12-step run with 2 steps of warm-up would")
		same(t, got, fresh(t, 12), "the run resumed from step 0 with 12 steps against a fresh 12-step run")
	})
	t.Run("ends inside its warm-up", func(t *testing.T) {
		out := interrupted(t, 1)
		_, pm := tinyModel(t, b, peft.LoRA, 1)
		o := resumeOptions(out)
		o.Steps, o.Warmup, o.Resume = 1, 1, true
		_, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o}).Run(context.Background())
		want := "with steps 1: the run cannot end before its warm-up of 2 steps does; resume it with at least 2 steps (9 finishes the run as it was made)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("resumed after step 1 with 1 step: %v; want %q", err, want)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		out := interrupted(t, 5)
		refused := func(o Options, want string) {
			t.Helper()
			_, pm := tinyModel(t, b, peft.LoRA, 1)
			o.Resume = true
			_, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: seqs, Options: o}).Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("resumed with %d steps: %v; want %q", o.Steps, err, want)
			}
		}
		o := resumeOptions(out)
		o.WeightDecay = 0.1
		refused(o, "it was made with weight-decay 0.01 (now 0.1); resuming needs the settings it was made with (only the learning rate and the number of steps may change)")
		// Ended at its step, the run is refused fewer steps with what
		// it was made for.
		if _, _, _, err := resume(t, out, 5); err != nil {
			t.Fatal(err)
		}
		o = resumeOptions(out)
		o.Steps = 3
		refused(o, "with steps 3: the run has trained 5 steps already, where an earlier resume ended it (it was made for 9); resume it with 5 steps, as it is, or more to train it longer (9 takes its schedule on as it was)")
		// A state that lost its total_steps is named as damaged.
		dir, err := LatestCheckpoint(out)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, stateFile)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]any
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		delete(st, "total_steps")
		if raw, err = json.Marshal(st); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		refused(resumeOptions(out), "checkpoint "+dir+" is damaged: its trainer_state.json records step 5 of a run of 0 steps (total_steps); want a step from 0 to the run's steps")
	})
	t.Run("fewer than trained", func(t *testing.T) {
		out := interrupted(t, 5)
		o := resumeOptions(out)
		o.Steps, o.Resume = 4, true
		early := CheckResume(ResumePlan{Task: LM, Options: o.WithDefaults(0), Adapter: &peft.Config{Method: peft.LoRA, R: 4, Alpha: 8, RotationRank: 2, TargetModules: []string{peft.AllLinear}, Seed: 1}})
		_, _, _, late := resume(t, out, 4)
		want := "with steps 4: the run has trained 5 steps already, of the 9 it was made for; resume it with at least 5 steps (9 finishes the run as it was made)"
		if early == nil || late == nil || early.Error() != late.Error() || !strings.Contains(late.Error(), want) {
			t.Errorf("CheckResume: %v; the run: %v; want both saying %q", early, late, want)
		}
	})
}

// TestSelectionAfterExtension trains a run that keeps its best and stops
// early (selectOptions: 40 steps, constant schedule), and then, for
// lengths short of its stop, a run of that length resumed with 40 steps:
// as the constant schedule makes the extended run the very run of 40
// steps, each must stop where that one stops, with the same best, best/
// and adapter byte for byte, and log the same evaluations: the best and
// the patience count went on through the extension. The lengths are
// taken from the 40-step run's stop, not from this machine's numbers:
// half-way, the evaluation before the stop, and the stop itself, where
// the short run's final evaluation runs out the patience (its loop never
// judges it) and the extension must stop at once, training nothing.
// Resuming a stopped run with yet more steps is refused (and
// CheckpointInfo says it stopped); with the same, it trains nothing.
func TestSelectionAfterExtension(t *testing.T) {
	patienceCount := regexp.MustCompile(`(\d+) of (\d+) evaluations without improvement`)
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	resA, err := runTo(t, selectOptions(a), -1)
	if err != nil {
		t.Fatal(err)
	}
	every := selectOptions(a).EvalEvery
	if resA.EarlyStop == nil || resA.Best == nil {
		t.Fatalf("the 40-step run: stop %+v, best %+v; the test needs an early stop (its evaluations turn up as the model learns the training half of them by heart)", resA.EarlyStop, resA.Best)
	}
	stop := resA.EarlyStop.Step
	evals := func(out string) []Record {
		rs, err := ReadMetrics(filepath.Join(out, MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		var ev []Record
		for _, r := range rs {
			if r.EvalLoss != nil {
				r.ElapsedSec = 0
				ev = append(ev, r)
			}
		}
		return ev
	}
	ea := evals(a)
	for _, short := range slices.Compact([]int{max(every, stop/2/every*every), stop - every, stop}) {
		t.Run(fmt.Sprintf("from %d", short), func(t *testing.T) {
			b := filepath.Join(dir, fmt.Sprint(short))
			o := selectOptions(b)
			o.Steps = short
			res, err := runTo(t, o, -1)
			if err != nil {
				t.Fatal(err)
			}
			if res.Steps != short || res.EarlyStop != nil {
				t.Fatalf("the %d-step run: %d steps, stop %+v; want all %d, no stop", short, res.Steps, res.EarlyStop, short)
			}
			o = selectOptions(b)
			o.Resume = true
			var msgs messages
			_, pm := tinyModel(t, openCPU(t), peft.LoRA, 3)
			tr, ev := selectData()
			resB, err := (&Trainer{Model: pm.Module().(*llama.Model), Adapter: pm, Train: tr, Eval: ev, Options: o, SaveAdapter: saveTrainable(pm), Progress: &msgs}).Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if resB.StartStep != short || resB.Steps != resA.Steps || resB.EarlyStop == nil || resB.EarlyStop.Step != stop ||
				resB.EarlyStop.Reason != resA.EarlyStop.Reason || resB.Best.Step != resA.Best.Step || resB.Best.Value != resA.Best.Value {
				t.Errorf("extended run: from step %d to %d, stop %+v, best %+v; the 40-step run: %d steps, stop %+v, best %+v",
					resB.StartStep, resB.Steps, resB.EarlyStop, resB.Best, resA.Steps, resA.EarlyStop, resA.Best)
			}
			for _, m := range msgs.got {
				var n, of int
				if c := patienceCount.FindStringSubmatch(m); c != nil {
					fmt.Sscan(c[1]+" "+c[2], &n, &of)
				}
				if n > of {
					t.Errorf("message %q counts past the patience", m)
				}
			}
			if short == stop {
				want := fmt.Sprintf("early stopping ends the run after step %d, where its evaluation ran out the patience, as in a run made for 40 steps: %s", stop, resA.EarlyStop.Reason)
				if !slices.ContainsFunc(msgs.got, func(m string) bool { return strings.Contains(m, want) }) {
					t.Errorf("messages %q; want one saying %q", msgs.got, want)
				}
			}
			for _, sub := range []string{BestDir, AdapterDir} {
				if d := sameFiles(readFiles(t, filepath.Join(a, sub)), readFiles(t, filepath.Join(b, sub))); d != "" {
					t.Errorf("%s/ of the extended run against the 40-step run's: %s", sub, d)
				}
			}
			eb := evals(b)
			if len(ea) != len(eb) {
				t.Fatalf("%d evaluations logged by the extended run, %d by the 40-step run", len(eb), len(ea))
			}
			for i := range ea {
				x, y := ea[i], eb[i]
				if x.Step != y.Step || *x.EvalLoss != *y.EvalLoss || x.Best != y.Best {
					t.Errorf("evaluation %d: step %d loss %v best %v extended; step %d loss %v best %v in the 40-step run", i, y.Step, *y.EvalLoss, y.Best, x.Step, *x.EvalLoss, x.Best)
				}
			}

			info, err := ReadCheckpoint(b)
			if err != nil {
				t.Fatal(err)
			}
			if info.StoppedEarly == nil || info.StoppedEarly.Step != stop || info.TotalSteps != 40 {
				t.Errorf("the checkpoint: stop %+v, %d steps; want the stop after step %d, 40 steps", info.StoppedEarly, info.TotalSteps, stop)
			}
			o.Steps = 60
			if _, err := runTo(t, o, -1); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("with steps 60: early stopping ended its run after step %d of the 40 it was made for", stop)) {
				t.Errorf("resuming the stopped run with 60 steps: %v; want a refusal", err)
			}
			o.Steps = 40
			if res, err := runTo(t, o, -1); err != nil || res.StartStep != stop || res.Steps != stop {
				t.Errorf("resuming the stopped run with its 40 steps: %v, %+v; want nothing trained", err, res)
			}
		})
	}
}

// TestZeroShotRecorded: the caller's zero-shot evaluation is kept in the
// checkpoints with the evaluation data it was taken on, and
// CheckpointInfo.ZeroShot gives it back, as it was, for those sequences
// only. A resume that is not given it keeps the record; one given it
// logs no second evaluation of step 0. A run given none records none.
func TestZeroShotRecorded(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(8, tinyConfig().VocabSize, 9)
	eval, other := seqs[:3], seqs[3:6]
	dir := t.TempDir()
	var zs *EvalResult
	run := func(out string, steps int, resume, withZeroShot bool) {
		t.Helper()
		_, pm := tinyModel(t, b, peft.LoRA, 3)
		m := pm.Module().(*llama.Model)
		tr := &Trainer{Model: m, Adapter: pm, Train: seqs, Eval: eval,
			Options: Options{Steps: steps, Batch: 4, LR: 1e-2, Out: out, Resume: resume, NoSpectra: true}}
		if withZeroShot {
			var err error
			if zs, err = Evaluate(context.Background(), m, LM, eval, 3, 0); err != nil {
				t.Fatal(err)
			}
			tr.ZeroShot = zs
		}
		if _, err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	recorded := func(out string, eval []data.Sequence) (*EvalResult, string) {
		t.Helper()
		info, err := ReadCheckpoint(out)
		if err != nil {
			t.Fatal(err)
		}
		return info.ZeroShot(eval)
	}
	out := filepath.Join(dir, "run")
	run(out, 2, false, true)
	want := *zs
	check := func(when string) {
		t.Helper()
		got, why := recorded(out, eval)
		if got == nil || got.Loss != want.Loss || got.Accuracy != want.Accuracy || got.Targets != want.Targets || got.Sequences != want.Sequences || why != "" {
			t.Errorf("%s: the recorded zero-shot evaluation %+v (%q); want %+v", when, got, why, want)
		}
		if got, why := recorded(out, other); got != nil || !strings.Contains(why, "was taken on other evaluation data (3 sequences, digest") {
			t.Errorf("%s: for other evaluation data: %+v, %q; want none, and why", when, got, why)
		}
	}
	check("after the first run")
	run(out, 4, true, false)
	check("after a resume not given it")
	run(out, 6, true, true)
	check("after a resume given it")
	rs, err := ReadMetrics(filepath.Join(out, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	zeros := 0
	for _, r := range rs {
		if r.Step == 0 && r.EvalLoss != nil {
			zeros++
			if *r.EvalLoss != want.Loss {
				t.Errorf("metrics.jsonl's step 0 loss %v; the zero-shot evaluation's %v", *r.EvalLoss, want.Loss)
			}
		}
	}
	if zeros != 1 {
		t.Errorf("metrics.jsonl holds %d evaluations of step 0; want 1", zeros)
	}

	none := filepath.Join(dir, "none")
	run(none, 2, false, false)
	if got, why := recorded(none, eval); got != nil || !strings.Contains(why, "records no zero-shot evaluation") {
		t.Errorf("a run given no zero-shot evaluation: %+v, %q; want none, and why", got, why)
	}
}

// TestZeroShotRecordDamaged: CheckpointInfo.ZeroShot gives back no
// recorded evaluation that cannot be one of the evaluation data by the
// run's task (a classifier's without its MCC, which a caller describing
// it reads, a language model's with one, another number of sequences, no
// targets, an accuracy or MCC out of range), saying why, so that the
// caller evaluates again; an intact record of either task is given back.
func TestZeroShotRecordDamaged(t *testing.T) {
	eval := randomSeqs(4, tinyConfig().VocabSize, 9)
	mcc := func(v float64) *float64 { return &v }
	for _, c := range []struct {
		name, task string
		ev         EvalResult
		want       string // "": given back
	}{
		{"classify", "classify", EvalResult{Loss: 0.7, Targets: 4, Accuracy: 0.5, MCC: mcc(0), Sequences: 4}, ""},
		{"lm", "lm", EvalResult{Loss: 4.2, Targets: 30, Accuracy: 0, Sequences: 4}, ""},
		{"classify without mcc", "classify", EvalResult{Loss: 0.7, Targets: 4, Accuracy: 0.5, Sequences: 4}, "is damaged: it has no mcc, which a classifier's evaluation has"},
		{"lm with mcc", "lm", EvalResult{Loss: 4.2, Targets: 30, MCC: mcc(0.1), Sequences: 4}, "is damaged: it has an mcc, which only a classifier's evaluation has"},
		{"mcc out of range", "classify", EvalResult{Loss: 0.7, Targets: 4, Accuracy: 0.5, MCC: mcc(3), Sequences: 4}, "its mcc 3 is outside -1 to 1"},
		{"other sequences", "lm", EvalResult{Loss: 4.2, Targets: 30, Sequences: 3}, "it covers 3 sequences, the evaluation data 4"},
		{"no targets", "lm", EvalResult{Loss: 4.2, Sequences: 4}, "it averages its loss over 0 targets"},
		{"accuracy out of range", "lm", EvalResult{Loss: 4.2, Targets: 30, Accuracy: math.NaN(), Sequences: 4}, "its accuracy NaN is outside 0 to 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev := c.ev
			info := &CheckpointInfo{Dir: "ck", task: c.task, zeroShot: &zeroShotRecord{Eval: &ev, EvalData: evalDataID(eval)}}
			got, why := info.ZeroShot(eval)
			switch {
			case c.want == "" && (got == nil || why != "" || got.Loss != c.ev.Loss):
				t.Errorf("ZeroShot: %+v, %q; want the record back", got, why)
			case c.want != "" && (got != nil || !strings.Contains(why, c.want)):
				t.Errorf("ZeroShot: %+v, %q; want none, and why: %q", got, why, c.want)
			}
		})
	}
}
