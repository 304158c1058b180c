package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/train"
)

// byteEncoder encodes text as its bytes (plus BOS 1 and EOS 2): enough
// for loadTaskData, which needs no real vocabulary.
type byteEncoder struct{}

func (byteEncoder) Encode(text string, bos, eos bool) []int {
	var out []int
	if bos {
		out = append(out, 1)
	}
	for _, c := range []byte(text) {
		out = append(out, 3+int(c))
	}
	if eos {
		out = append(out, 2)
	}
	return out
}

// writeNumbered writes n LLM-Adapters rows whose answers are their file
// row numbers plus 1000, so that a row can be told from its answer.
func writeNumbered(t *testing.T, path string, n int) []data.Example {
	t.Helper()
	var rows []data.Example
	for i := range n {
		ans := strconv.Itoa(1001 + i)
		rows = append(rows, data.Example{Instruction: fmt.Sprintf("What is %d plus 1000?", i+1), Output: "It is " + ans + ".", Answer: ans})
	}
	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestSubsetRowsAreFileRows checks that the rows of a --max-train or
// --max-eval subset report their rows in the file: fileRow of each row
// kept names the file row it came from, for LM and classification data,
// and is the position itself without a subset.
func TestSubsetRowsAreFileRows(t *testing.T) {
	dir := t.TempDir()
	lm := filepath.Join(dir, "numbered.json")
	all := writeNumbered(t, lm, 40)
	cola := writeCoLA(t, dir, 40)
	colaAll, err := data.LoadClassification(cola)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		path  string
		task  train.Task
		limit int
	}{
		{"lm subset", lm, train.LM, 7},
		{"lm all", lm, train.LM, 0},
		{"classify subset", cola, train.Classify, 9},
		{"classify all", cola, train.Classify, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			td, err := loadTaskData(c.path, c.task, byteEncoder{}, nil, 256, c.limit, 5)
			if err != nil {
				t.Fatal(err)
			}
			n, moved := 0, 0
			if c.task == train.LM {
				n = len(td.lm.Rows)
			}
			if c.task == train.Classify {
				n = len(td.set.Examples)
			}
			if want := c.limit; want > 0 && n != want || want == 0 && n != 40 {
				t.Fatalf("%d rows kept", n)
			}
			for i := range n {
				r := td.fileRow(i)
				if r < 1 || r > 40 {
					t.Fatalf("row %d: file row %d outside 1..40", i, r)
				}
				if c.task == train.Classify {
					if td.set.Examples[i] != colaAll.Examples[r-1] {
						t.Errorf("row %d is %+v; file row %d is %+v", i, td.set.Examples[i], r, colaAll.Examples[r-1])
					}
				} else if ex := td.lm.Rows[i].Example(); ex != all[r-1] {
					t.Errorf("row %d answers %s; file row %d answers %s", i, ex.Answer, r, all[r-1].Answer)
				}
				if r != i+1 {
					moved++
				}
			}
			if (c.limit > 0) != (moved > 0) {
				t.Errorf("%d of %d rows have a file row other than their position; want some with a subset, none without", moved, n)
			}
		})
	}
}

// TestEvalSubsetReportsFileRows runs "sora eval --max-eval" on rows whose
// answers name their file rows: every prediction in its report must carry
// the gold answer of the file row it names.
func TestEvalSubsetReportsFileRows(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "numbered.json")
	all := writeNumbered(t, path, 30)
	out := filepath.Join(dir, "eval.json")
	code, stdout, errOut := runCLI(t, "eval", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", path,
		"--max-eval", "5", "--max-new-tokens", "2", "--json", out)
	if code != exitOK {
		t.Fatalf("eval: status %d\n%s\n%s", code, stdout, errOut)
	}
	var rep evalReport
	readJSON(t, out, &rep)
	if len(rep.Predictions) != 5 {
		t.Fatalf("%d predictions; want 5", len(rep.Predictions))
	}
	moved := 0
	for _, p := range rep.Predictions {
		if p.Row < 1 || p.Row > len(all) || all[p.Row-1].Answer != p.Gold {
			t.Errorf("prediction for row %d has gold %q; file row %d answers %q", p.Row, p.Gold, p.Row, all[min(max(p.Row, 1), len(all))-1].Answer)
		}
		if p.Row > 5 {
			moved++
		}
	}
	if moved == 0 {
		t.Error("the subset is the file's first 5 rows: the test tells nothing apart")
	}
}

// TestFinetuneEvalWithoutAnswers trains with --eval-data whose rows lack
// "answer" (all of them, some of them, or one blank): the run says before
// training whether the answers will be scored, finishes with status 0 and
// writes run.json with the final evaluation, the answer accuracy only
// where rows have answers, and the note.
func TestFinetuneEvalWithoutAnswers(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath := filepath.Join(dir, "train.json")
	writeBoolQ(t, trainPath, 8)
	evalRows := func(answers ...string) string {
		var rows []map[string]string
		for i, a := range answers {
			r := map[string]string{"instruction": fmt.Sprintf("Is %d small? Answer format: true/false", i), "output": "the correct answer is true"}
			if a != "-" {
				r["answer"] = a
			}
			rows = append(rows, r)
		}
		b, err := json.Marshal(rows)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("eval-%d.json", len(answers)))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cases := []struct {
		name     string
		eval     string
		accuracy bool
		note     string
	}{
		{"none", evalRows("-", "-", "-"), false, `no row has an "answer" field`},
		{"some", evalRows("true", "-", "false", "-"), true, `2 of 4 rows have no "answer" field`},
		// A blank answer counts as none.
		{"blank", evalRows("true", "false", "true", "  ", "false"), true, `1 of 5 rows have no "answer" field`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, "run-"+c.name)
			code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath,
				"--eval-data", c.eval, "--steps", "2", "--batch", "4", "--out", out)
			if code != exitOK {
				t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
			}
			before, _, _ := strings.Cut(stdout, "training:")
			if !strings.Contains(before, "note: "+c.eval+": "+c.note) {
				t.Errorf("no note %q before training:\n%s", c.note, stdout)
			}
			if n := strings.Count(stdout, "note: "+c.eval+": "+c.note); n != 1 {
				t.Errorf("the note %q is printed %d times, want once:\n%s", c.note, n, stdout)
			}
			var sum runSummary
			readJSON(t, filepath.Join(out, "run.json"), &sum)
			if sum.Final == nil || (sum.AnswerAccuracy != nil) != c.accuracy || !strings.Contains(sum.AnswerNote, c.note) {
				t.Errorf("run.json: final %+v, answer accuracy %v, note %q; want a final evaluation, accuracy %v and the note",
					sum.Final, sum.AnswerAccuracy, sum.AnswerNote, c.accuracy)
			}
		})
	}
}
