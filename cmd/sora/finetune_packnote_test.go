package main

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/train"
)

// TestFinetunePackingSavesNothing runs --packing where it packs nothing and
// checks that one line says so and why: rows of about 140 tokens
// (writeVariedRows) at --max-len 200, where no two fit in a row, at 256,
// where the shortest two would fit but the one step's micro-batch holds
// no two that do, and micro-batches of one sequence; at --max-len 512,
// where two or three share a row, the note gives the share of the
// positions packing saves, counting the positions the run ran.
func TestFinetunePackingSavesNothing(t *testing.T) {
	model, tok := stories260K(t)
	if err := train.CheckPacking(testbackend.Open(t, "cpu")); err != nil {
		t.Skipf("packing cannot run here: %v", err)
	}
	dir := t.TempDir()
	rows := filepath.Join(dir, "train.json")
	writeVariedRows(t, rows, 12)
	for _, c := range []struct {
		name string
		args []string
		want string // "": no note
	}{
		{"no two fit", []string{"--max-len", "200", "--micro-batch", "4"}, "note: packing saves nothing: no two rows fit in --max-len 200 (the two shortest training sequences have "},
		// The two shortest rows would share a row of 256, but the step's
		// micro-batch holds no two that do.
		{"none meet", []string{"--max-len", "256", "--micro-batch", "4"}, "note: packing saves nothing: no micro-batch of the run's 1 step holds sequences that take fewer positions packed into rows of --max-len 256 than one to a row"},
		{"micro-batch 1", []string{"--max-len", "512", "--micro-batch", "1"}, "note: packing saves nothing: each micro-batch holds one sequence (--micro-batch 1), and packing shares rows among a micro-batch's sequences"},
		{"packs", []string{"--max-len", "512", "--micro-batch", "4"}, "note: packing saves "},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "run")
			args := append([]string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows, "--packing",
				"--method", "lora", "--steps", "1", "--batch", "4", "--no-spectrum", "--out", out}, c.args...)
			code, stdout, errOut := runCLI(t, args...)
			if code != exitOK {
				t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
			}
			nothing := strings.Count(stdout, "packing saves nothing")
			if strings.Count(stdout, "note: packing saves") != 1 || !strings.Contains(stdout, c.want) || (c.name == "packs") != (nothing == 0) {
				t.Errorf("stdout lacks (once) %q:\n%s", c.want, stdout)
			}
			if c.name == "packs" {
				// The positions the note counts packed are those the
				// run ran.
				m := regexp.MustCompile(`packing saves [0-9.]+% of the positions over the run's 1 step \(([0-9,]+) packed, [0-9,]+ one sequence to a row\)`).FindStringSubmatch(stdout)
				if m == nil {
					t.Fatalf("no share in the note:\n%s", stdout)
				}
				rs, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
				if err != nil {
					t.Fatal(err)
				}
				ran := 0
				for _, r := range rs {
					ran += r.Positions
				}
				if got := strings.ReplaceAll(m[1], ",", ""); got != strconv.Itoa(ran) {
					t.Errorf("the note counts %s packed positions; the run ran %d", m[1], ran)
				}
			}
		})
	}
}
