package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/train"
)

// splitFlags returns the flags of a run with --eval-split split on path,
// as check leaves them.
func splitFlags(t *testing.T, path, split string, seed uint64, maxTrain, maxEval int) *finetuneFlags {
	t.Helper()
	h, err := data.ParseHoldout(split)
	if err != nil {
		t.Fatal(err)
	}
	return &finetuneFlags{data: path, evalSplit: split, holdout: h, seed: seed, maxTrain: maxTrain, maxEval: maxEval,
		out: filepath.Join(t.TempDir(), "run"), set: map[string]bool{"eval-split": true}}
}

// fileRows returns the 1-based file rows of a data set's rows.
func fileRows(td *taskData) []int {
	n := len(td.seqs)
	if td.lm != nil {
		n = len(td.lm.Rows)
	} else if td.set != nil {
		n = len(td.set.Examples)
	}
	rows := make([]int, n)
	for i := range rows {
		rows[i] = td.fileRow(i)
	}
	return rows
}

// TestEvalSplitRows checks the rows --eval-split holds out of LM data
// whose answers name their file rows: the sizes (a fraction rounded up, a
// count), that the two parts are disjoint and cover the file, that each
// row's file row is the one it came from, that the file written holds
// exactly the held-out rows in --data's layout, that a seed always splits
// alike (and another seed otherwise, in a stream of its own), that
// --max-train and --max-eval sample after the split, and the refusals of
// a split that leaves no row to train on.
func TestEvalSplitRows(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "numbered.json")
	all := writeNumbered(t, path, 40)
	for _, c := range []struct {
		split string
		held  int
	}{{"0.25", 10}, {"0.01", 1}, {"0.5", 20}, {"7", 7}, {"39", 39}, {"0.975", 39}} {
		f := splitFlags(t, path, c.split, 42, 0, 0)
		trainSet, evalSet, split, usage, err := f.splitData(train.LM, byteEncoder{}, nil, 256)
		if err != nil || usage {
			t.Fatalf("--eval-split %s: %v (usage %v)", c.split, err, usage)
		}
		if split.Rows != c.held || split.TrainRows != 40-c.held || split.Stratified || split.File != filepath.Join(f.out, "eval-split.json") {
			t.Errorf("--eval-split %s: %+v; want %d rows held out of 40, not stratified, in eval-split.json", c.split, split, c.held)
		}
		trainRows, heldRows := fileRows(trainSet), fileRows(evalSet)
		if len(heldRows) != c.held || len(trainRows) != 40-c.held {
			t.Fatalf("--eval-split %s: %d held out, %d to train on", c.split, len(heldRows), len(trainRows))
		}
		if both := append(slices.Clone(trainRows), heldRows...); !slices.Equal(slices.Sorted(slices.Values(both)), seq(1, 40)) {
			t.Errorf("--eval-split %s: the parts are not disjoint or do not cover the file: train %v, held %v", c.split, trainRows, heldRows)
		}
		for _, td := range []*taskData{trainSet, evalSet} {
			for i, r := range td.lm.Rows {
				if r.Answer != all[td.fileRow(i)-1].Answer {
					t.Errorf("--eval-split %s: row %d answers %s, but names file row %d, which answers %s", c.split, i, r.Answer, td.fileRow(i), all[td.fileRow(i)-1].Answer)
				}
			}
		}
		// The file holds the held-out rows, in file order, as written.
		got, err := data.Parse(split.content, "eval-split.json")
		if err != nil {
			t.Fatalf("--eval-split %s: the held-out rows do not read back: %v", c.split, err)
		}
		if len(got.Rows) != len(heldRows) {
			t.Fatalf("--eval-split %s: %d rows in the file, %d held out", c.split, len(got.Rows), len(heldRows))
		}
		for j, r := range got.Rows {
			if r.Example() != all[heldRows[j]-1] || (j > 0 && heldRows[j] < heldRows[j-1]) {
				t.Errorf("--eval-split %s: file row %d is %+v; want the held-out row %d, %+v", c.split, j+1, r.Example(), heldRows[j], all[heldRows[j]-1])
			}
		}
	}
	for _, c := range []struct{ split, want string }{
		{"40", "--eval-split 40: " + path + ": 40 rows of 40 leaves no row to train on (hold out at most 39)"},
		{"41", "41 rows of 40 leaves no row to train on"},
		{"0.99", "0.99 of 40 rows is 40 rows, rounded up, leaving no row to train on"},
	} {
		f := splitFlags(t, path, c.split, 42, 0, 0)
		if _, _, _, usage, err := f.splitData(train.LM, byteEncoder{}, nil, 256); !usage || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--eval-split %s: %v (usage %v); want a usage error with %q", c.split, err, usage, c.want)
		}
	}

	held := func(seed uint64, maxTrain, maxEval int) (trainRows, heldRows []int) {
		t.Helper()
		tr, ev, _, _, err := splitFlags(t, path, "0.25", seed, maxTrain, maxEval).splitData(train.LM, byteEncoder{}, nil, 256)
		if err != nil {
			t.Fatal(err)
		}
		return fileRows(tr), fileRows(ev)
	}
	train42, held42 := held(42, 0, 0)
	if tr, h := held(42, 0, 0); !slices.Equal(h, held42) || !slices.Equal(tr, train42) {
		t.Errorf("seed 42 split twice: held %v then %v", held42, h)
	}
	if _, h := held(43, 0, 0); slices.Equal(h, held42) {
		t.Errorf("seeds 42 and 43 hold out the same rows %v", h)
	}
	// Not the rows that --max-eval's or --max-train's stream would draw
	// with the same seed.
	for _, s := range []uint64{42, 43} {
		_, pick := sample(seq(1, 40), 10, s)
		_, h := held(s, 0, 0)
		if slices.Equal(h, plus1(pick)) {
			t.Errorf("seed %d: the split holds out the rows a sample with that seed draws", s)
		}
	}
	// --max-train and --max-eval sample from the parts, after the split.
	trainSub, heldSub := held(42, 5, 3)
	if len(trainSub) != 5 || len(heldSub) != 3 {
		t.Fatalf("--max-train 5 --max-eval 3: %d and %d rows", len(trainSub), len(heldSub))
	}
	for _, r := range trainSub {
		if !slices.Contains(train42, r) {
			t.Errorf("--max-train drew row %d, which is not among the training rows %v", r, train42)
		}
	}
	// The same sample as sora eval --max-eval 3 draws from the file
	// written, with the run's seed + 1.
	_, idx := sample(held42, 3, 43)
	want := make([]int, len(idx))
	for j, i := range idx {
		want[j] = held42[i]
	}
	if !slices.Equal(heldSub, want) {
		t.Errorf("--max-eval 3 evaluates rows %v; sampling the held-out rows %v with seed 43 gives %v", heldSub, held42, want)
	}
}

// TestEvalSplitLayouts checks that the held-out rows are written in the
// layout of --data: JSON Lines as .jsonl, and CoLA's TSV as .tsv with each
// label held out in proportion.
func TestEvalSplitLayouts(t *testing.T) {
	dir := t.TempDir()
	jsonl := filepath.Join(dir, "rows.jsonl")
	var rows []map[string]any
	for i := range 20 {
		rows = append(rows, map[string]any{"prompt": fmt.Sprintf("Q%d:", i), "completion": fmt.Sprintf(" %d", i), "note": "unread"})
	}
	writeJSONL(t, jsonl, rows)
	f := splitFlags(t, jsonl, "0.2", 1, 0, 0)
	_, ev, split, _, err := f.splitData(train.LM, byteEncoder{}, nil, 256)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(split.File) != "eval-split.jsonl" || bytes.Count(split.content, []byte("\n")) != 4 || !bytes.Contains(split.content, []byte(`"note":"unread"`)) {
		t.Errorf("JSON Lines: %s holds\n%s", split.File, split.content)
	}
	for j, line := range strings.Split(strings.TrimSpace(string(split.content)), "\n") {
		if want := fmt.Sprintf(`"prompt":"Q%d:"`, ev.fileRow(j)-1); !strings.Contains(line, want) {
			t.Errorf("JSON Lines row %d: %s; want the row with %s", j+1, line, want)
		}
	}

	cola := writeCoLA(t, dir, 40) // labels alternate
	f = splitFlags(t, cola, "10", 3, 0, 0)
	tr, ev, split, _, err := f.splitData(train.Classify, byteEncoder{}, nil, 256)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(split.File) != "eval-split.tsv" || !split.Stratified {
		t.Errorf("CoLA: %+v; want a stratified split in eval-split.tsv", split)
	}
	got, err := data.ParseClassification(split.content, "eval-split.tsv")
	if err != nil {
		t.Fatal(err)
	}
	if c := got.Counts(); len(got.Examples) != 10 || c[0] != 5 || c[1] != 5 {
		t.Errorf("CoLA: %d rows held out, per label %v; want 10, 5 of each", len(got.Examples), c)
	}
	for j, e := range got.Examples {
		if e != ev.set.Examples[j] {
			t.Errorf("CoLA: file row %d is %+v; the run evaluates %+v", j+1, e, ev.set.Examples[j])
		}
	}
	if c := tr.set.Counts(); c[0] != 15 || c[1] != 15 {
		t.Errorf("CoLA: training rows per label %v; want 15 and 15", c)
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func plus1(xs []int) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = x + 1
	}
	return out
}

// TestFinetuneEvalSplitRefused: --eval-split with --eval-data, values out
// of range and a split that leaves no row to train on are usage errors
// naming the flag; the flags that need evaluation data take the split.
func TestFinetuneEvalSplitRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--eval-split", "0.1"}, "--eval-split needs --model"},
		{[]string{"--model", "m.bin", "--tokenizer", "t.bin", "--data", "x", "--eval-split", "0.1", "--eval-data", "y"}, "--eval-split and --eval-data both give the data to evaluate on: use one or the other"},
		{[]string{"--model", "m.bin", "--tokenizer", "t.bin", "--data", "x", "--eval-split", "0"}, "--eval-split: 0: want a fraction of the rows in (0, 1)"},
		{[]string{"--model", "m.bin", "--tokenizer", "t.bin", "--data", "x", "--eval-split", "1.0"}, "--eval-split: 1.0: a fraction must be below 1"},
		{[]string{"--model", "m.bin", "--tokenizer", "t.bin", "--data", "x", "--eval-split", "-5"}, "--eval-split: -5"},
		{[]string{"--model", "m.bin", "--tokenizer", "t.bin", "--data", "x", "--eval-split", "ten"}, `--eval-split: "ten" is not a number`},
		{[]string{"--model", "m.bin", "--tokenizer", "t.bin", "--data", "x", "--eval-split", "0.1", "--keep-best"}, "they need --eval-data (or --eval-split) and --eval-every N"},
	} {
		code, _, errOut := runCLI(t, append([]string{"finetune"}, c.args...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("finetune %v: status %d, stderr %q; want %d and %q", c.args, code, errOut, exitUsage, c.want)
		}
	}

	model, tok := stories260K(t)
	f := defineFinetuneFlags(newFlagSet("finetune"))
	f.model, f.tokenizer, f.data, f.evalSplit, f.evalEvery, f.maxEval, f.keepBest, f.earlyStopping = model, tok, "x", "0.1", 5, 3, true, 2
	f.set = map[string]bool{"eval-split": true, "eval-every": true, "max-eval": true, "keep-best": true, "early-stopping": true, "max-new-tokens": true}
	if err := f.check(); err != nil || f.holdout.String() != "0.1" {
		t.Errorf("--eval-split with --eval-every, --max-eval, --keep-best, --early-stopping and --max-new-tokens: %v (split %q)", err, f.holdout)
	}
	f.set["eval-split"] = false
	if err := f.check(); err == nil || !strings.Contains(err.Error(), "need --eval-data or --eval-split") {
		t.Errorf("the same flags without --eval-split: %v; want them refused", err)
	}
	dir := t.TempDir()
	rows := filepath.Join(dir, "rows.json")
	writeBoolQ(t, rows, 12)
	out := filepath.Join(dir, "run")
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
		"--eval-split", "12", "--steps", "1", "--out", out)
	if code != exitUsage || !strings.Contains(errOut, "--eval-split 12: "+rows+": 12 rows of 12 leaves no row to train on") {
		t.Errorf("--eval-split of every row: status %d\n%s\n%s", code, stdout, errOut)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("the refused run left %s behind", out)
	}
}

// TestFinetuneEvalSplit trains stories260K with --eval-split, --max-eval,
// --eval-every and --keep-best: run.json records the split and its file,
// which holds the held-out rows of the data (as data.Split draws them,
// recomputed here), and "sora eval" of the adapter on that file scores
// the run's final evaluation loss. A resume with another split or seed is
// refused before anything loads; one with the same flags writes the same
// file again.
func TestFinetuneEvalSplit(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := filepath.Join(dir, "rows.json")
	writeBoolQ(t, rows, 24)
	run := filepath.Join(dir, "run")
	args := []string{"finetune", "--backend", "cpu", "--no-spectrum", "--model", model, "--tokenizer", tok, "--data", rows,
		"--method", "lora", "--steps", "4", "--batch", "4", "--seed", "7", "--eval-split", "0.25", "--max-eval", "4",
		"--eval-every", "2", "--keep-best", "--max-new-tokens", "6", "--out", run}
	code, stdout, errOut := runCLI(t, args...)
	if code != exitOK {
		t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
	}
	file := filepath.Join(run, "eval-split.json")
	for _, want := range []string{"eval split: 6 of the 24 rows of " + rows + " held out at random (--seed 7) by --eval-split 0.25, never trained on; 18 left to train on",
		"eval data: the --eval-split rows of " + rows + ", 4 sequences", "train data: " + rows + ", 18 sequences", "eval at step 2:",
		"eval-split.json, run.json"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	var sum runSummary
	readJSON(t, filepath.Join(run, "run.json"), &sum)
	if sum.EvalSplit == nil || sum.EvalSplit.Split != "0.25" || sum.EvalSplit.Rows != 6 || sum.EvalSplit.TrainRows != 18 ||
		sum.EvalSplit.File != file || sum.EvalData != "" || sum.EvalRows != 4 || sum.TrainRows != 18 || sum.Final == nil || sum.ZeroShot == nil || sum.Best == nil {
		t.Fatalf("run.json: eval_split %+v, eval_data %q, %d eval and %d train sequences, final %v, zero-shot %v, best %v",
			sum.EvalSplit, sum.EvalData, sum.EvalRows, sum.TrainRows, sum.Final, sum.ZeroShot, sum.Best)
	}
	if _, err := os.Stat(filepath.Join(run, "best", "adapter_config.json")); err != nil {
		t.Errorf("--keep-best with --eval-split: %v", err)
	}
	// The file holds the rows data.Split holds out with the run's seed.
	_, heldIdx, err := data.Split(24, 6, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	all, err := data.Load(rows)
	if err != nil {
		t.Fatal(err)
	}
	written, err := data.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(written.Rows) != 6 {
		t.Fatalf("%s holds %d rows; want 6", file, len(written.Rows))
	}
	for j, i := range heldIdx {
		if written.Rows[j].Example() != all.Rows[i].Example() {
			t.Errorf("%s row %d is %+v; want row %d of the data, %+v", file, j+1, written.Rows[j].Example(), i+1, all.Rows[i].Example())
		}
	}
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	// sora eval of the file with the run's --max-eval scores the run's
	// final evaluation (its seed + 1 comes from run.json).
	evalJSON := filepath.Join(dir, "eval.json")
	code, evalOut, errOut := runCLI(t, "eval", "--backend", "cpu", "--tokenizer", tok, "--adapter", filepath.Join(run, "adapter"),
		"--data", file, "--max-eval", "4", "--json", evalJSON)
	if code != exitOK {
		t.Fatalf("eval: status %d\n%s\n%s", code, evalOut, errOut)
	}
	var rep evalReport
	readJSON(t, evalJSON, &rep)
	if rep.Rows != 4 || math.Abs(rep.Loss-sum.Final.Loss) > 1e-4 || sum.AnswerAccuracy == nil || math.Abs(rep.Accuracy-*sum.AnswerAccuracy) > 1e-12 {
		t.Errorf("eval of %s: %d rows, loss %v, accuracy %v; the run's final evaluation: loss %v, answer accuracy %v", file, rep.Rows, rep.Loss, rep.Accuracy, sum.Final.Loss, sum.AnswerAccuracy)
	}

	// A resume with another split or seed is refused before anything
	// loads; with the same flags it goes on and writes the same rows.
	for _, c := range []struct {
		change []string
		want   string
	}{
		{[]string{"--eval-split", "0.5"}, "eval-split 0.25 (now 0.5)"},
		{[]string{"--eval-split", "6"}, "eval-split 0.25 (now 6)"},
		{[]string{"--seed", "8"}, "it was made with seed 7 (now 8)"},
	} {
		resumed := append(slices.Clone(args), append(c.change, "--resume")...)
		code, stdout, errOut := runCLI(t, resumed...)
		if code != exitFailure || !strings.Contains(errOut, c.want) || stdout != "" {
			t.Errorf("--resume %v: status %d, stderr %q, stdout %q; want %d, %q and nothing loaded", c.change, code, errOut, stdout, exitFailure, c.want)
		}
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	code, stdout, errOut = runCLI(t, append(slices.Clone(args), "--resume")...)
	if code != exitOK || !strings.Contains(stdout, "nothing left to train") {
		t.Fatalf("--resume with the same flags: status %d\n%s\n%s", code, stdout, errOut)
	}
	if after, err := os.ReadFile(file); err != nil || !bytes.Equal(after, before) {
		t.Errorf("the resumed run wrote %s otherwise (%v):\n%s\nbefore:\n%s", file, err, after, before)
	}
}

// TestFinetuneEvalSplitClassify holds out a tenth of CoLA rows, stratified
// by label, for a classifier: the file is TSV, and sora eval of the
// adapter on it gives the run's final accuracy, MCC and loss.
func TestFinetuneEvalSplitClassify(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	cola := writeCoLA(t, dir, 40)
	run := filepath.Join(dir, "run")
	// What a kill while writing the held-out rows leaves is cleared.
	stale := filepath.Join(run, ".eval-split.tsv.tmp-77")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("src\t1"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--no-spectrum", "--model", model, "--tokenizer", tok, "--task", "classify",
		"--data", cola, "--eval-split", "0.1", "--method", "lora", "--steps", "3", "--batch", "8", "--lr", "1e-2", "--out", run)
	if code != exitOK {
		t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
	}
	if _, err := os.Stat(stale); err == nil || !strings.Contains(stdout, "removed "+stale+", left by an interrupted write of eval-split.tsv") {
		t.Errorf("the stale %s is still there, or not reported:\n%s", stale, stdout)
	}
	var sum runSummary
	readJSON(t, filepath.Join(run, "run.json"), &sum)
	file := filepath.Join(run, "eval-split.tsv")
	if sum.EvalSplit == nil || sum.EvalSplit.Rows != 4 || !sum.EvalSplit.Stratified || sum.EvalSplit.File != file || sum.Final == nil || sum.Final.MCC == nil {
		t.Fatalf("run.json: eval_split %+v, final %+v", sum.EvalSplit, sum.Final)
	}
	set, err := data.LoadClassification(file)
	if err != nil {
		t.Fatal(err)
	}
	if c := set.Counts(); c[0] != 2 || c[1] != 2 {
		t.Errorf("%s holds %v rows per label; want 2 and 2", file, c)
	}
	rep, _, _ := evalRun(t, run, filepath.Join(dir, "eval.json"), "--backend", "cpu", "--tokenizer", tok,
		"--adapter", filepath.Join(run, "adapter"), "--data", file)
	if rep.Rows != 4 || rep.MCC == nil || math.Abs(rep.Accuracy-sum.Final.Accuracy) > 1e-12 || math.Abs(*rep.MCC-*sum.Final.MCC) > 1e-9 || math.Abs(rep.Loss-sum.Final.Loss) > 1e-4 {
		t.Errorf("eval of %s: %d rows, accuracy %v, MCC %v, loss %v; the run's final: %+v MCC %v", file, rep.Rows, rep.Accuracy, fmtMCC(rep.MCC), rep.Loss, sum.Final, fmtMCC(sum.Final.MCC))
	}
}

// TestFinetuneEvalSplitChat holds out conversations (JSON Lines of
// messages, rendered with --chat-template): they are written as
// .jsonl, row for row, and sora eval scores the run's final loss on them.
func TestFinetuneEvalSplitChat(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "chat.jinja")
	if err := os.WriteFile(tmpl, []byte(chatDataTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for i := range 12 {
		ans := strconv.FormatBool(i%3 == 0)
		rows = append(rows, map[string]any{"messages": []map[string]string{
			{"role": "user", "content": fmt.Sprintf("is %d a multiple of 3? Answer true or false.", i)},
			{"role": "assistant", "content": "the answer is " + ans}}, "answer": ans})
	}
	path := filepath.Join(dir, "chat.jsonl")
	writeJSONL(t, path, rows)
	run := filepath.Join(dir, "run")
	finetuneCLI(t, "--model", model, "--tokenizer", tok, "--chat-template", tmpl, "--data", path, "--eval-split", "3", "--method", "lora", "--steps", "2", "--batch", "4", "--out", run)
	var sum runSummary
	readJSON(t, filepath.Join(run, "run.json"), &sum)
	file := filepath.Join(run, "eval-split.jsonl")
	if sum.EvalSplit == nil || sum.EvalSplit.File != file || sum.EvalRows != 3 || sum.Final == nil {
		t.Fatalf("run.json: eval_split %+v, %d eval sequences, final %v", sum.EvalSplit, sum.EvalRows, sum.Final)
	}
	written, err := data.Load(file)
	if err != nil || written.Format != data.FormatMessages || len(written.Rows) != 3 {
		t.Fatalf("%s: %v, %v", file, written, err)
	}
	rep, _, _ := evalRun(t, run, filepath.Join(dir, "eval.json"), "--backend", "cpu", "--tokenizer", tok, "--adapter", filepath.Join(run, "adapter"), "--data", file)
	if rep.Rows != 3 || math.Abs(rep.Loss-sum.Final.Loss) > 1e-4 {
		t.Errorf("eval of %s: %d rows, loss %v; the run's final loss %v", file, rep.Rows, rep.Loss, sum.Final.Loss)
	}
}

// TestFinetuneEvalSplitWrittenFirst: the held-out rows are written before
// training, so that a run that fails during it (a learning rate that
// diverges at once) leaves them beside its checkpoints; and a fresh run
// removes the held-out rows an earlier run in the folder wrote in another
// layout, or in any layout where it holds out none.
func TestFinetuneEvalSplitWrittenFirst(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := filepath.Join(dir, "rows.json")
	writeBoolQ(t, rows, 12)
	run := filepath.Join(dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"eval-split.tsv", "eval-split.jsonl"} {
		if err := os.WriteFile(filepath.Join(run, name), []byte("stale\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"finetune", "--backend", "cpu", "--no-spectrum", "--model", model, "--tokenizer", tok, "--data", rows,
		"--method", "lora", "--batch", "4", "--eval-split", "4", "--out", run}
	code, stdout, errOut := runCLI(t, append(slices.Clone(args), "--steps", "3", "--save-every", "1", "--lr", "1e30")...)
	if code != exitFailure || !strings.Contains(errOut, "NaN") && !strings.Contains(errOut, "Inf") {
		t.Fatalf("a diverging run: status %d, want %d and a non-finite loss or gradient\n%s\n%s", code, exitFailure, stdout, errOut)
	}
	if _, err := train.LatestCheckpoint(run); err != nil {
		t.Fatalf("the diverging run left no checkpoint: %v\n%s", err, errOut)
	}
	written, err := data.Load(filepath.Join(run, "eval-split.json"))
	if err != nil || len(written.Rows) != 4 {
		t.Errorf("the failed run's held-out rows: %v (%v); want 4 rows in eval-split.json", written, err)
	}
	for _, name := range []string{"eval-split.tsv", "eval-split.jsonl"} {
		if _, err := os.Stat(filepath.Join(run, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("an earlier run's %s outlived a fresh run with another layout: %v", name, err)
		}
	}
	if !strings.Contains(stdout, "removed eval-split.jsonl, eval-split.tsv, the held-out rows of an earlier run in "+run) {
		t.Errorf("the run does not say it removed the earlier held-out rows:\n%s", stdout)
	}
	if _, err := os.Stat(filepath.Join(run, "run.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed run wrote run.json: %v", err)
	}

	// A fresh run without --eval-split (checkpoints removed, as the
	// refusal advises) evaluates on other data: the rows it did not hold
	// out go.
	if err := os.RemoveAll(filepath.Join(run, train.CheckpointsDir)); err != nil {
		t.Fatal(err)
	}
	code, stdout, errOut = runCLI(t, "finetune", "--backend", "cpu", "--no-spectrum", "--model", model, "--tokenizer", tok, "--data", rows,
		"--method", "lora", "--batch", "4", "--steps", "1", "--out", run)
	if code != exitOK {
		t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
	}
	if _, err := os.Stat(filepath.Join(run, "eval-split.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an earlier run's eval-split.json outlived a fresh run without --eval-split: %v", err)
	}
}
