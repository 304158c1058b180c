package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
)

func TestLengthNote(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		kept, truncated, dropped int
		maxLen, modelLen         int
		want                     string
	}{
		{"nothing cut", 10, 0, 0, 256, 512, ""},
		{"cut only, at the model's limit", 10, 3, 0, 512, 512, "3 cut to --max-len 512"},
		{"cut only, model takes more", 10, 3, 0, 256, 512,
			"3 cut to --max-len 256; the model takes up to 512 positions: --max-len 512 keeps more"},
		// Encoding counts a left-out row among the cut ones as well.
		{"left out", 47, 392, 353, 256, 512,
			"39 cut to --max-len 256; 353 of 400 rows left out (prompt alone fills --max-len 256); the model takes up to 512 positions: --max-len 512 keeps more"},
		{"left out at the model's limit", 1, 19, 19, 512, 512, "19 of 20 rows left out (prompt alone fills --max-len 512)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td := &taskData{seqs: make([]data.Sequence, tc.kept), stats: data.EncodeStats{Truncated: tc.truncated, Dropped: tc.dropped}}
			if got := td.lengthNote(tc.maxLen, tc.modelLen); got != tc.want {
				t.Errorf("lengthNote(%d, %d) = %q\nwant %q", tc.maxLen, tc.modelLen, got, tc.want)
			}
		})
	}
}

// TestEvalSaysRowsLeftOut checks that "sora eval" says so when rows are
// left out because their prompt fills --max-len: the table alone then
// scores fewer rows than --max-eval asked for, with no other sign.
func TestEvalSaysRowsLeftOut(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	long := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 30)
	rows := []data.Example{
		{Instruction: "Is 1 small? Answer format: true/false", Output: "the correct answer is true", Answer: "true"},
		{Instruction: long, Output: "the correct answer is false", Answer: "false"},
		{Instruction: "Is 2 small? Answer format: true/false", Output: "the correct answer is true", Answer: "true"},
	}
	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "test.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "eval", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", path,
		"--max-len", "128", "--max-new-tokens", "2", "--show", "0", "--json", "")
	if code != 0 {
		t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// (The two short rows lose part of their answer at 128 tokens too.)
	for _, want := range []string{"note: " + path + ": ", "; 1 of 3 rows left out (prompt alone fills --max-len 128); the model takes up to 512 positions: --max-len 512 keeps more\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "(lm, 2 rows)") {
		t.Errorf("stdout does not score the 2 rows kept:\n%s", out)
	}
}

// TestNoUsableRows checks the two ways a data file yields nothing to
// train on or score: no rows at all, and rows whose prompts all fill
// --max-len. An empty file used to be blamed on --max-len.
func TestNoUsableRows(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, []byte("[]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.json")
	writeBoolQ(t, short, 3)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"empty eval", []string{"eval", "--data", empty}, empty + " holds no rows"},
		{"empty finetune", []string{"finetune", "--data", empty, "--out", filepath.Join(dir, "r1")}, empty + " holds no rows"},
		{"all too long", []string{"eval", "--data", short, "--max-len", "8"}, short + ": no usable rows: in all 3 the prompt alone fills --max-len 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "--model", model, "--tokenizer", tok)
			code, _, errOut := runCLI(t, args...)
			if code != exitFailure || !strings.Contains(errOut, tc.want) {
				t.Errorf("status %d, stderr %q; want %d and %q", code, errOut, exitFailure, tc.want)
			}
		})
	}
}
