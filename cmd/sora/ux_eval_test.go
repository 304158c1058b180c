package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestEvalJSONChecked checks that an --json path the report cannot be
// written to is refused before the evaluation runs (it used to run the
// whole evaluation, then fail), and that a report that replaces an
// earlier one says so (eval.json was overwritten without a word).
func TestEvalJSONChecked(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := writeCatRows(t, dir)
	notDir := filepath.Join(dir, "cat.jsonl", "eval.json") // under a file
	cases := []struct {
		name, path, want string
	}{
		{"under a file", notDir, "cannot write " + notDir + ": " + rows + " is not a folder"},
		{"deeper under a file", filepath.Join(rows, "a", "b", "eval.json"), "cannot write " + filepath.Join(rows, "a", "b", "eval.json") + ": " + rows + " is not a folder"},
		{"a folder", dir, dir + " is a folder; want the path of a file"},
	}
	if runtime.GOOS == "linux" {
		cases = append(cases, struct{ name, path, want string }{"in /proc", "/proc/nope/x.json", "cannot write /proc/nope/x.json: no file can be created in /proc"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, errOut := runCLI(t, "eval", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows, "--json", tc.path)
			if code != exitFailure || !strings.Contains(errOut, "sora eval: --json: "+tc.want) {
				t.Errorf("status %d, stderr %q; want %d and %q", code, errOut, exitFailure, tc.want)
			}
			if stdout != "" {
				t.Errorf("eval ran before refusing the path: stdout %q", stdout)
			}
		})
	}
	// The default folder's file is replaced, and the last line says so;
	// the check leaves no file behind.
	report := filepath.Join(dir, "reports", "eval.json")
	for i, want := range []string{"wrote " + report + "\n", "wrote " + report + " (replaced the earlier file)\n"} {
		code, stdout, errOut := runCLI(t, "eval", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows, "--json", report)
		if code != 0 || !strings.HasSuffix(stdout, want) {
			t.Errorf("run %d: status %d, stdout ends %q, want %q\n%s", i+1, code, lastLine(stdout), want, errOut)
		}
	}
	if got := listDir(t, filepath.Dir(report)); len(got) != 1 {
		t.Errorf("%s holds %v, want eval.json alone", filepath.Dir(report), got)
	}
}

// TestEvalMaxLenFromRun checks that eval evaluates a "sora finetune"
// output at the --max-len its run trained at, wherever in the run's
// folder the weights are (adapter/, best/, a checkpoint's adapter/, a
// full fine-tune's model), and that --max-len still wins: eval used its
// own default, 256, so a run trained at 512 scored rows cut or left out.
func TestEvalMaxLenFromRun(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := writeCatRows(t, dir)
	maxLen := promptLen(t, tok, catPrompt) + 1 // the prompt and one answer token: every row is cut
	lora, full := filepath.Join(dir, "lora"), filepath.Join(dir, "full")
	finetuneCLI(t, "--model", model, "--tokenizer", tok, "--data", rows, "--method", "lora", "--steps", "2", "--max-len", fmt.Sprint(maxLen),
		"--eval-data", rows, "--eval-every", "1", "--keep-best", "--out", lora)
	finetuneCLI(t, "--model", model, "--tokenizer", tok, "--data", rows, "--method", "full", "--steps", "2", "--max-len", fmt.Sprint(maxLen), "--out", full)
	fromRun := func(run string) string {
		return fmt.Sprintf("note: --max-len %d, as the training run recorded it in %s", maxLen, filepath.Join(run, "run.json"))
	}
	cut := fmt.Sprintf("16 cut to --max-len %d", maxLen)
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string
		notWant []string
	}{
		{"adapter", []string{"--adapter", filepath.Join(lora, "adapter")}, []string{fromRun(lora), cut}, nil},
		{"best", []string{"--adapter", filepath.Join(lora, "best")}, []string{fromRun(lora), cut}, nil},
		{"checkpoint", []string{"--adapter", filepath.Join(lora, "checkpoints", "step-000002", "adapter")}, []string{fromRun(lora), cut}, nil},
		{"full", []string{"--model", filepath.Join(full, "adapter", "model.bin")}, []string{fromRun(full), cut}, nil},
		{"explicit --max-len", []string{"--adapter", filepath.Join(lora, "adapter"), "--max-len", "256"}, nil, []string{"--max-len " + fmt.Sprint(maxLen), "cut to"}},
		{"explicit, equal", []string{"--adapter", filepath.Join(lora, "adapter"), "--max-len", fmt.Sprint(maxLen)}, []string{cut}, []string{"training run recorded"}},
		{"plain model", []string{"--model", model}, nil, []string{"training run", "cut to"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"eval", "--backend", "cpu", "--tokenizer", tok, "--data", rows, "--json", ""}, tc.args...)
			code, stdout, errOut := runCLI(t, args...)
			if code != 0 {
				t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout does not say %q:\n%s", w, stdout)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(stdout, w) {
					t.Errorf("stdout says %q:\n%s", w, stdout)
				}
			}
		})
	}
}

// TestEvalHeadLabels checks that a classification head trained on other
// labels than the data's is refused, though the class counts agree (a
// CoLA head scored BoolQ, its unacceptable/acceptable silently read as
// false/true): the labels come from the head's score_labels.json, else
// from the training data that its run's run.json names; a head with
// neither still loads, with a note.
func TestEvalHeadLabels(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	cola := writeCoLA(t, dir, 8)
	boolq := filepath.Join(dir, "boolq.json")
	writeBoolQ(t, boolq, 8)
	lora, full := filepath.Join(dir, "lora"), filepath.Join(dir, "full")
	finetuneCLI(t, "--model", model, "--tokenizer", tok, "--data", cola, "--task", "classify", "--method", "lora", "--steps", "2", "--out", lora)
	finetuneCLI(t, "--model", model, "--tokenizer", tok, "--data", cola, "--task", "classify", "--method", "full", "--steps", "2", "--out", full)
	// finetune saves the head's class names beside it; removed here, the
	// heads are those of runs from before it did, which the cases below
	// give a labels file, a run.json or neither.
	for _, run := range []string{lora, full} {
		p := filepath.Join(run, "adapter", labelsFile)
		if labels, err := readHeadLabels(filepath.Dir(p)); err != nil || fmt.Sprint(labels) != "[unacceptable acceptable]" {
			t.Fatalf("%s: labels %v, %v; want [unacceptable acceptable]", p, labels, err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	// The same heads outside their runs' folders: no run.json to go by.
	loneLora, loneFull := filepath.Join(dir, "lone-lora", "adapter"), filepath.Join(dir, "lone-full", "adapter")
	for from, to := range map[string]string{filepath.Join(lora, "adapter"): loneLora, filepath.Join(full, "adapter"): loneFull} {
		for _, name := range listDir(t, from) {
			if err := os.MkdirAll(to, 0o755); err != nil {
				t.Fatal(err)
			}
			copyFile(t, filepath.Join(from, name), filepath.Join(to, name))
		}
	}
	const colaLabels = "was trained on the labels unacceptable, acceptable"
	for _, tc := range []struct {
		name    string
		weights []string // --adapter DIR or --model FILE
		headDir string
		labels  bool   // write score_labels.json first
		refused string // in stderr on BoolQ; "" where it loads with a note
	}{
		{"adapter, labels file", []string{"--adapter", filepath.Join(lora, "adapter")}, filepath.Join(lora, "adapter"), true, colaLabels + " (" + filepath.Join(lora, "adapter", "score_labels.json") + ")"},
		{"adapter, run.json", []string{"--adapter", filepath.Join(lora, "adapter")}, filepath.Join(lora, "adapter"), false, colaLabels + " (those of " + cola + ", which " + filepath.Join(lora, "run.json") + " says it was trained on)"},
		{"adapter, neither", []string{"--adapter", loneLora}, loneLora, false, ""},
		{"adapter alone, labels file", []string{"--adapter", loneLora}, loneLora, true, colaLabels},
		{"full, labels file", []string{"--model", filepath.Join(full, "adapter", "model.bin")}, filepath.Join(full, "adapter"), true, colaLabels},
		{"full, run.json", []string{"--model", filepath.Join(full, "adapter", "model.bin")}, filepath.Join(full, "adapter"), false, colaLabels + " (those of " + cola + ", which " + filepath.Join(full, "run.json") + " says"},
		{"full, neither", []string{"--model", filepath.Join(loneFull, "model.bin")}, loneFull, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := func(data string) (int, string, string) {
				args := append([]string{"eval", "--backend", "cpu", "--tokenizer", tok, "--task", "classify", "--data", data, "--json", ""}, tc.weights...)
				return runCLI(t, args...)
			}
			labels := filepath.Join(tc.headDir, "score_labels.json")
			if tc.labels {
				if err := os.WriteFile(labels, []byte(`{"labels": ["unacceptable", "acceptable"]}`), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Remove(labels) })
			}
			code, stdout, errOut := run(boolq)
			if tc.refused != "" {
				if code != exitFailure || !strings.Contains(errOut, tc.refused) || !strings.Contains(errOut, boolq+" has the labels false, true") || strings.Contains(stdout, "accuracy") {
					t.Errorf("a CoLA head on BoolQ: status %d (want %d, saying %q)\nstdout:\n%s\nstderr:\n%s", code, exitFailure, tc.refused, stdout, errOut)
				}
			} else if code != 0 || !strings.Contains(stdout, "records no class names") || !strings.Contains(stdout, boolq+"'s false, true, in that order") {
				t.Errorf("a head without names on BoolQ: status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, errOut)
			}
			if code, stdout, errOut := run(cola); code != 0 || strings.Contains(stdout, "class names") != (tc.refused == "") {
				t.Errorf("the CoLA head on CoLA: status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, errOut)
			}
		})
	}
}

// TestParseHeadLabels covers the labels file's checks, and that what
// writeHeadLabels writes reads back.
func TestParseHeadLabels(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{`{"labels": ["false", "true"]}`, []string{"false", "true"}, ""},
		{`{"labels": ["a", "b", "c"]}`, []string{"a", "b", "c"}, ""},
		{`{"labels": ["a"]}`, nil, "1 labels; want two or more"},
		{`{"labels": []}`, nil, "0 labels"},
		{`{}`, nil, "0 labels"},
		{`{"labels": ["a", "a"]}`, nil, `label "a" appears twice`},
		{`{"labels": ["a", " "]}`, nil, "label 1 is blank"},
		{`{"labels": ["a", "b"], "x": 1}`, nil, `unknown field "x"`},
		{`{"labels": ["a", "b"]} {}`, nil, "data after the JSON object"},
		{`{"labels": "a,b"}`, nil, "want {\"labels\""},
		{`not json`, nil, "want {\"labels\""},
	} {
		got, err := parseHeadLabels([]byte(tc.in), "x/score_labels.json")
		switch {
		case tc.err == "" && (err != nil || !equalStrings(got, tc.want)):
			t.Errorf("%s: %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "x/score_labels.json")):
			t.Errorf("%s: error %v; want one naming the file and saying %q", tc.in, err, tc.err)
		}
	}
	dir := t.TempDir()
	if got, err := readHeadLabels(dir); got != nil || err != nil {
		t.Errorf("no file: %v, %v; want nil, nil", got, err)
	}
	want := []string{"unacceptable", "acceptable"}
	if err := writeHeadLabels(dir, want); err != nil {
		t.Fatal(err)
	}
	if got, err := readHeadLabels(dir); err != nil || !equalStrings(got, want) {
		t.Errorf("read back %v, %v; want %v", got, err, want)
	}
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}

// FuzzParseHeadLabels checks that no labels file makes the parser panic,
// and that what it accepts has two or more distinct non-blank names.
func FuzzParseHeadLabels(f *testing.F) {
	for _, s := range []string{`{"labels": ["false", "true"]}`, `{"labels": ["a"]}`, `{}`, `[`, `{"labels": ["a", "a"]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseHeadLabels(b, "f")
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, l := range got {
			if strings.TrimSpace(l) == "" || seen[l] {
				t.Fatalf("accepted %q", got)
			}
			seen[l] = true
		}
		if len(got) < 2 {
			t.Fatalf("accepted %q", got)
		}
	})
}

// TestFindTrainingRun checks where findTrainingRun looks for run.json:
// beside an adapter/ or best/ folder, three folders up from a checkpoint's
// adapter, from "." too, and never in the current folder for a plain model
// (""), nor in a run.json that "sora finetune" did not write.
func TestFindTrainingRun(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	writeFiles(t, run, map[string]string{
		"run.json":                    `{"command": "sora finetune --max-len 64", "config": {"max_len": 64, "base_dtype": "bf16"}}`,
		"adapter/adapter_config.json": "{}",
		"checkpoints/step-000010/adapter/README.md": "",
	})
	writeFiles(t, dir, map[string]string{"other/run.json": `{"command": "something else", "config": {"max_len": 8}}`, "other/adapter/x": "", "run.json": `{"command": "sora finetune", "config": {"max_len": 9}}`})
	for _, tc := range []struct {
		name, dir, chdir, path string
	}{
		{"adapter", filepath.Join(run, "adapter"), "", filepath.Join(run, "run.json")},
		{"best", filepath.Join(run, "best"), "", filepath.Join(run, "run.json")},
		{"checkpoint", filepath.Join(run, "checkpoints", "step-000010", "adapter"), "", filepath.Join(run, "run.json")},
		{"relative", filepath.Join("run", "adapter"), dir, filepath.Join("run", "run.json")},
		{"dot", ".", filepath.Join(run, "adapter"), filepath.Join("..", "run.json")},
		{"checkpoint, relative", "adapter", filepath.Join(run, "checkpoints", "step-000010"), filepath.Join("..", "..", "run.json")},
		{"plain model", "", run, ""},
		{"another tool's run.json", filepath.Join(dir, "other", "adapter"), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.chdir != "" {
				t.Chdir(tc.chdir)
			}
			got := findTrainingRun(tc.dir)
			switch {
			case tc.path == "" && got != nil:
				t.Errorf("found %s", got.path)
			case tc.path != "" && (got == nil || got.path != tc.path || got.Config.MaxLen != 64 || got.Config.BaseDType != "bf16"):
				t.Errorf("found %+v, want %s (max_len 64, bf16)", got, tc.path)
			}
		})
	}
}
