package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
	"github.com/sora-go/sora/train"
)

// writeRows writes rows as an LLM-Adapters JSON file in dir.
func writeRows(t *testing.T, dir, name string, rows []data.Example) string {
	t.Helper()
	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// longInstruction returns a question padded so that its prompt encodes to
// between lo and hi tokens with BOS.
func longInstruction(t *testing.T, tk *tokenizer.Tokenizer, lo, hi int) string {
	t.Helper()
	const q = "\n\nIs the fox quick? Answer format: true/false"
	pad := ""
	for _, w := range strings.Fields(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 200)) {
		n := len(tk.Encode(data.Prompt(pad+q, ""), true, false))
		if n >= lo {
			if n > hi {
				t.Fatalf("padding overshot: %d tokens, want %d to %d", n, lo, hi)
			}
			return pad + q
		}
		pad += w + " "
	}
	t.Fatalf("could not pad a prompt to %d tokens", lo)
	return ""
}

// TestEvalLongPrompts checks that eval generates from the whole prompt the
// loss scored, with as many tokens as fit in the model's positions, and
// says how many prompts had less room than --max-new-tokens. Prompts were
// cut from the left to seq_len − --max-new-tokens without a word: a
// 490-token prompt lost its start at --max-new-tokens 32, a 160-token one
// kept 131 tokens at --max-new-tokens 380 (and none was cut at 511 or
// more, where the limit fell to "none"). Each generation must equal the
// model's own greedy continuation of the whole prompt, computed here.
func TestEvalLongPrompts(t *testing.T) {
	model, tokPath := stories260K(t)
	dir := t.TempDir()
	tk, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	w, _, err := llama2c.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	seqLen := w.Config.MaxSeqLen
	rows := []data.Example{
		{Instruction: longInstruction(t, tk, seqLen-22, seqLen-12), Output: "the correct answer is true", Answer: "true"},
		{Instruction: longInstruction(t, tk, 150, 170), Output: "the correct answer is false", Answer: "false"},
		{Instruction: "Is 2 small? Answer format: true/false", Output: "the correct answer is true", Answer: "true"},
	}
	path := writeRows(t, dir, "test.json", rows)
	g := newGenerator(t, testbackend.Open(t, "cpu"), w)
	for _, tc := range []struct {
		maxNew int
		short  int // prompts with room for fewer than maxNew tokens
	}{{32, 1}, {380, 2}, {600, 3}} {
		t.Run(fmt.Sprint(tc.maxNew), func(t *testing.T) {
			js := filepath.Join(dir, fmt.Sprintf("eval%d.json", tc.maxNew))
			code, out, errOut := runCLI(t, "eval", "--backend", "cpu", "--model", model, "--tokenizer", tokPath, "--data", path,
				"--max-len", fmt.Sprint(seqLen), "--max-new-tokens", fmt.Sprint(tc.maxNew), "--show", "0", "--json", js)
			if code != 0 {
				t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			want := fmt.Sprintf("note: %s: %d of 3 prompts leave room for fewer than --max-new-tokens %d in the model's %d positions: they generate only as many tokens as fit\n", path, tc.short, tc.maxNew, seqLen)
			if !strings.Contains(out, want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
			if strings.Contains(out, "keep only their last") {
				t.Errorf("stdout says prompts were cut:\n%s", out)
			}
			var rep evalReport
			readJSON(t, js, &rep)
			if len(rep.Predictions) != len(rows) {
				t.Fatalf("%d predictions; want %d", len(rep.Predictions), len(rows))
			}
			for i, r := range rows {
				p := tk.Encode(r.Prompt(), true, false)
				seq, err := g.Generate(p, llama.GenerateOptions{Steps: min(len(p)+tc.maxNew, seqLen), Stop: []int{tokenizer.EOS, tokenizer.BOS}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := rep.Predictions[i].Output, tk.DecodeAll(seq[len(p):min(len(seq), len(p)+tc.maxNew)]); got != want {
					t.Errorf("row %d (%d-token prompt): generated\n%q\nwant the continuation of the whole prompt\n%q", i+1, len(p), got, want)
				}
			}
		})
	}
}

// TestEvalMissingAnswers checks that rows without an "answer" field, which
// the data format allows, are scored for their loss and left out of the
// answer accuracy, with a note before anything runs; eval refused the
// whole file before. The loss must be the one of the same rows with
// answers, which the loss does not read.
func TestEvalMissingAnswers(t *testing.T) {
	model, tokPath := stories260K(t)
	dir := t.TempDir()
	var all, some, none []data.Example
	for i := range 4 {
		r := data.Example{Instruction: fmt.Sprintf("Is %d a small number? Answer format: true/false", i), Output: "the correct answer is true"}
		none = append(none, r)
		r.Answer = []string{"true", "false"}[i%2]
		all = append(all, r)
		if i == 1 || i == 2 {
			some = append(some, r)
		} else {
			some = append(some, none[i])
		}
	}
	eval := func(name string, rows []data.Example) (evalReport, map[string]any, string) {
		t.Helper()
		path := writeRows(t, dir, name+".json", rows)
		js := filepath.Join(dir, name+".eval.json")
		code, out, errOut := runCLI(t, "eval", "--backend", "cpu", "--model", model, "--tokenizer", tokPath, "--data", path,
			"--max-new-tokens", "4", "--show", "0", "--json", js)
		if code != 0 {
			t.Fatalf("%s: status %d\nstdout:\n%s\nstderr:\n%s", name, code, out, errOut)
		}
		var rep evalReport
		readJSON(t, js, &rep)
		var raw map[string]any
		readJSON(t, js, &raw)
		return rep, raw, out
	}
	ref, _, _ := eval("all", all)
	if ref.AnswerRows != 4 || len(ref.Predictions) != 4 {
		t.Fatalf("all rows with answers: %d answer rows, %d predictions", ref.AnswerRows, len(ref.Predictions))
	}

	rep, raw, out := eval("none", none)
	note := `: no row has an "answer" field: reporting the loss of all 4 rows, and no answer accuracy` + "\n"
	if !strings.Contains(out, note) || strings.Contains(out, "generating") || !strings.Contains(out, "no answer accuracy: no row has an \"answer\" field\n") {
		t.Errorf("no answers: stdout lacks the note %q, or generated:\n%s", note, out)
	}
	if rep.Rows != 4 || rep.Loss != ref.Loss || len(rep.Predictions) != 0 {
		t.Errorf("no answers: %d rows, loss %v (want 4 and %v), %d predictions", rep.Rows, rep.Loss, ref.Loss, len(rep.Predictions))
	}
	for _, k := range []string{"accuracy", "majority_baseline", "majority_answer"} {
		if _, ok := raw[k]; ok {
			t.Errorf("no answers: the report has %q, which would read as a score: %v", k, raw)
		}
	}
	if n, ok := raw["answer_rows"]; !ok || n != 0.0 {
		t.Errorf("no answers: answer_rows %v; want 0", n)
	}

	rep, _, out = eval("some", some)
	note = `: 2 of 4 rows have no "answer" field: the answer accuracy is over the other 2, the loss over all 4` + "\n"
	if i, j := strings.Index(out, note), strings.Index(out, "generating"); i < 0 || j < 0 || i > j {
		t.Errorf("some answers: stdout lacks the note %q before generating:\n%s", note, out)
	}
	if rep.Rows != 4 || rep.AnswerRows != 2 || rep.Loss != ref.Loss || len(rep.Predictions) != 2 {
		t.Fatalf("some answers: %d rows, %d answer rows, loss %v (want 4, 2, %v), %d predictions", rep.Rows, rep.AnswerRows, rep.Loss, ref.Loss, len(rep.Predictions))
	}
	correct := 0
	for i, p := range rep.Predictions {
		want := ref.Predictions[i+1] // rows 2 and 3, generated alike
		if p != want {
			t.Errorf("prediction %+v; want %+v", p, want)
		}
		if p.Correct {
			correct++
		}
	}
	if rep.Accuracy != float64(correct)/2 || rep.Majority != 0.5 {
		t.Errorf("accuracy %v, majority %v; want %v and 0.5", rep.Accuracy, rep.Majority, float64(correct)/2)
	}
}

// TestEvalAfterTrainingNoAnswers checks what "sora finetune" gets at the
// end of training: errNoAnswers when no row has an answer, and a report
// over the rows that have one, with the note, otherwise.
func TestEvalAfterTrainingNoAnswers(t *testing.T) {
	model, tokPath := stories260K(t)
	dir := t.TempDir()
	w, tk, err := loadModelAndTokenizer(model, tokPath)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(t, testbackend.Open(t, "cpu"), w)
	rows := []data.Example{
		{Instruction: "Is 1 small? Answer format: true/false", Output: "the correct answer is true"},
		{Instruction: "Is 2 small? Answer format: true/false", Output: "the correct answer is true"},
	}
	for _, tc := range []struct {
		name    string
		answers []string
		err     error
	}{
		{"none", []string{"", ""}, errNoAnswers},
		{"blank", []string{"  ", "\t"}, errNoAnswers},
		{"some", []string{"", "true"}, nil},
		{"all", []string{"false", "true"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range rows {
				rows[i].Answer = tc.answers[i]
			}
			set, err := loadTaskData(writeRows(t, dir, tc.name+".json", rows), train.LM, tk, nil, 128, 0, 1)
			if err != nil {
				t.Fatal(err)
			}
			var log strings.Builder
			rep, err := evalAfterTraining(context.Background(), m, tk, train.LM, set, 2, 32, &log)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), set.path) {
					t.Fatalf("error %v; want %v naming %s", err, tc.err, set.path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// The note about rows without answers is sora finetune's to
			// print, once, when the data loads (answerScoring).
			if strings.Contains(log.String(), "note: ") {
				t.Errorf("log %q; want no note", log.String())
			}
			want := 0
			for _, a := range tc.answers {
				if a != "" {
					want++
				}
			}
			if rep.AnswerRows != want || len(rep.Predictions) != want || rep.Rows != 2 {
				t.Errorf("%d rows, %d answer rows, %d predictions; want 2, %d, %d", rep.Rows, rep.AnswerRows, len(rep.Predictions), want, want)
			}
		})
	}
}

// TestEvalSeedMatchesFinetune checks what the docs promise about --seed:
// "sora finetune --seed S" evaluates the --max-eval rows that
// "sora eval --seed S+1" scores (so eval's default 43 matches finetune's
// default 42, and only that one), by comparing the run's final held-out
// loss with eval's on the same adapter.
func TestEvalSeedMatchesFinetune(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	var rows []data.Example
	for i := range 12 {
		ans := []string{"true", "false"}[i%2]
		rows = append(rows, data.Example{
			Instruction: fmt.Sprintf("Is %d a small number?%s Answer format: true/false", i, strings.Repeat(" Think.", i)),
			Output:      strings.Repeat("Let me see. ", i%4) + "the correct answer is " + ans, Answer: ans})
	}
	path := writeRows(t, dir, "data.json", rows)
	out := filepath.Join(dir, "run")
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", path, "--eval-data", path,
		"--max-eval", "4", "--seed", "7", "--method", "lora", "--steps", "1", "--batch", "4", "--out", out)
	if code != 0 {
		t.Fatalf("finetune: status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, errOut)
	}
	losses := map[string]float64{}
	for _, seed := range []string{"8", "43"} {
		rep, sum, _ := evalRun(t, out, filepath.Join(dir, "eval"+seed+".json"), "--backend", "cpu", "--tokenizer", tok,
			"--adapter", filepath.Join(out, "adapter"), "--data", path, "--max-eval", "4", "--seed", seed, "--max-new-tokens", "1", "--show", "0")
		if sum.Final == nil || rep.Rows != 4 {
			t.Fatalf("seed %s: run.json final %+v, %d rows", seed, sum.Final, rep.Rows)
		}
		losses[seed] = rep.Loss - sum.Final.Loss
	}
	if math.Abs(losses["8"]) > 1e-4 {
		t.Errorf("eval --seed 8 scores a loss %.6f off the run's with --seed 7: not the same rows", losses["8"])
	}
	if math.Abs(losses["43"]) < 1e-3 {
		t.Errorf("eval --seed 43 scores the same loss as --seed 8 (off by %.6f): the test's rows do not tell the subsets apart", losses["43"])
	}
}

// TestEvalReportJSON pins the --json form of each kind of report byte for
// byte: a classification report and an LM report that scored answers have
// their accuracy and majority baseline, even when those are 0, and an LM
// report that scored no answers has answer_rows 0 and no accuracy,
// baseline or majority answer, which would read as scores. Each form also
// reads back into an evalReport that writes it again unchanged.
func TestEvalReportJSON(t *testing.T) {
	mcc, zero := 0.25, 0.0
	for _, tc := range []struct {
		name string
		rep  evalReport
		want string
	}{
		{"classify",
			evalReport{Model: "m.bin", Adapter: "run/adapter", Method: "sora", Data: "cola.tsv", Task: "classify", Rows: 4,
				Accuracy: 0.75, Majority: 0.5, MajorityAnswer: "1", MCC: &mcc, Loss: 0.5, Confusion: [][]int{{1, 1}, {0, 2}}, Seconds: 1.5,
				Predictions: []prediction{{Row: 1, Gold: "0", Pred: "0", Correct: true}, {Row: 2, Gold: "0", Pred: "1"}}},
			`{"model":"m.bin","adapter":"run/adapter","method":"sora","data":"cola.tsv","task":"classify","rows":4,"accuracy":0.75,"majority_baseline":0.5,"majority_answer":"1","mcc":0.25,"loss":0.5,"confusion":[[1,1],[0,2]],"seconds":1.5,"predictions":[{"row":1,"gold":"0","pred":"0","correct":true},{"row":2,"gold":"0","pred":"1","correct":false}]}`},
		{"classify with zero scores and a full fine-tune's head",
			evalReport{Model: "full/model.bin", Head: "full/score.safetensors", Data: "cola.tsv", Task: "classify", Rows: 2,
				MajorityAnswer: "0", MCC: &zero, Confusion: [][]int{{0, 0}, {2, 0}},
				Predictions: []prediction{{Row: 1, Gold: "1", Pred: "0"}, {Row: 2, Gold: "1", Pred: "0"}}},
			`{"model":"full/model.bin","head":"full/score.safetensors","data":"cola.tsv","task":"classify","rows":2,"accuracy":0,"majority_baseline":0,"majority_answer":"0","mcc":0,"loss":0,"confusion":[[0,0],[2,0]],"seconds":0,"predictions":[{"row":1,"gold":"1","pred":"0","correct":false},{"row":2,"gold":"1","pred":"0","correct":false}]}`},
		{"lm with answers",
			evalReport{Model: "m.bin", Adapter: "a", Method: "lora", Data: "boolq.json", Task: "lm", Rows: 3, AnswerKind: "true/false",
				AnswerRows: 2, Accuracy: 0.5, Majority: 1, MajorityAnswer: "true", Loss: 2.25, NoAnswer: 1, Seconds: 3,
				Predictions: []prediction{{Row: 1, Gold: "true", Pred: "true", Correct: true, Output: "the correct answer is true"}, {Row: 3, Gold: "true", Output: "hm"}}},
			`{"model":"m.bin","adapter":"a","method":"lora","data":"boolq.json","task":"lm","rows":3,"answer_kind":"true/false","answer_rows":2,"accuracy":0.5,"majority_baseline":1,"majority_answer":"true","loss":2.25,"no_answer":1,"seconds":3,"predictions":[{"row":1,"gold":"true","pred":"true","correct":true,"output":"the correct answer is true"},{"row":3,"gold":"true","pred":"","correct":false,"output":"hm"}]}`},
		{"lm with answers, none right",
			evalReport{Model: "m.bin", Data: "boolq.json", Task: "lm", Rows: 1, AnswerKind: "true/false",
				AnswerRows: 1, MajorityAnswer: "false", Loss: 1,
				Predictions: []prediction{{Row: 1, Gold: "false", Pred: "true", Output: "true"}}},
			`{"model":"m.bin","data":"boolq.json","task":"lm","rows":1,"answer_kind":"true/false","answer_rows":1,"accuracy":0,"majority_baseline":0,"majority_answer":"false","loss":1,"seconds":0,"predictions":[{"row":1,"gold":"false","pred":"true","correct":false,"output":"true"}]}`},
		{"lm without answers",
			evalReport{Model: "m.bin", Adapter: "a", Method: "dora", Data: "plain.json", Task: "lm", Rows: 4, Loss: 1.75, Seconds: 0.5,
				Predictions: []prediction{}},
			`{"model":"m.bin","adapter":"a","method":"dora","data":"plain.json","task":"lm","rows":4,"loss":1.75,"seconds":0.5,"predictions":[],"answer_rows":0}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(tc.rep)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("report written as\n%s\nwant\n%s", got, tc.want)
			}
			var back evalReport
			if err := json.Unmarshal([]byte(tc.want), &back); err != nil {
				t.Fatal(err)
			}
			if again, err := json.Marshal(back); err != nil || string(again) != tc.want {
				t.Errorf("read back and written again as\n%s (%v)\nwant\n%s", again, err, tc.want)
			}
		})
	}
}

// TestScoreSetInterrupted checks that sora eval's scoring stops in its
// loss pass when its context is cancelled (Ctrl-C), returning an error
// wrapping the context's, and never goes on to generate.
func TestScoreSetInterrupted(t *testing.T) {
	model, tokPath := stories260K(t)
	w, tk, err := loadModelAndTokenizer(model, tokPath)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(t, testbackend.Open(t, "cpu"), w)
	rows := []data.Example{
		{Instruction: "Is 1 small? Answer format: true/false", Output: "true", Answer: "true"},
		{Instruction: "Is 2 small? Answer format: true/false", Output: "false", Answer: "false"},
	}
	set, err := loadTaskData(writeRows(t, t.TempDir(), "rows.json", rows), train.LM, tk, nil, 128, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var log strings.Builder
	err = scoreSet(ctx, m, tk, train.LM, set, 1, 8, &evalReport{}, &log, 0)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v; want one wrapping %v", err, context.Canceled)
	}
	if strings.Contains(log.String(), "generating") {
		t.Errorf("log %q; want no generation after the interrupt", log.String())
	}
}
