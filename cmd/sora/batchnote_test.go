package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestBatchNote checks the note on a --batch larger than the rows trained
// on, whose batches then repeat rows (--batch's default of 16 does that
// with a small file, silently before).
func TestBatchNote(t *testing.T) {
	for _, c := range []struct {
		batch, rows int
		want        string
	}{
		{16, 10, "--batch 16 is more than the 10 rows trained on: each step's batch holds some rows more than once (--batch 10 takes every row once a step, for 10/16 of the compute)"},
		{2, 1, "--batch 2 is more than the 1 rows trained on"},
		{10, 10, ""},
		{4, 10, ""},
		{4, 0, ""},
	} {
		if got := batchNote(c.batch, c.rows); !strings.HasPrefix(got, c.want) || (c.want == "") != (got == "") {
			t.Errorf("batchNote(%d, %d) = %q; want %q", c.batch, c.rows, got, c.want)
		}
	}

	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := filepath.Join(dir, "train.json")
	writeVariedRows(t, rows, 6)
	for i, c := range []struct {
		batch string
		note  bool
	}{{"8", true}, {"6", false}} {
		out := filepath.Join(dir, "run"+c.batch)
		code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
			"--method", "lora", "--steps", "1", "--batch", c.batch, "--no-spectrum", "--out", out)
		if code != exitOK {
			t.Fatalf("run %d: status %d\n%s\n%s", i, code, stdout, errOut)
		}
		if got := strings.Contains(stdout, "note: --batch "+c.batch+" is more than the 6 rows trained on"); got != c.note {
			t.Errorf("--batch %s of 6 rows: note %v, want %v; stdout:\n%s", c.batch, got, c.note, stdout)
		}
	}
}
