package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/train"
)

// TestFinetunePackingFlags checks the usage errors of --packing: without
// --model, with --group-by-length, and where fused attention is off
// (SORA_ATTENTION=unfused), that last one said before the model loads (the
// model file does not exist, and that is not what is said).
func TestFinetunePackingFlags(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "m.bin")
	base := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", "t.bin", "--data", "x.json", "--out", filepath.Join(dir, "run"), "--packing"}
	for _, c := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"no model", "", []string{"finetune", "--packing"}, "--packing needs --model"},
		{"group-by-length", "", append(base[:len(base):len(base)], "--group-by-length"), "--packing and --group-by-length both cut padding"},
		{"unfused", "unfused", base, `--packing: train: packing needs the backend's fused attention, which keeps each packed sequence to its own tokens, and SORA_ATTENTION=unfused turns it off`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(graph.AttentionEnv, c.env)
			code, stdout, errOut := runCLI(t, c.args...)
			if code != exitUsage || !strings.Contains(errOut, c.want) {
				t.Errorf("status %d, stderr %q; want status %d and %q", code, errOut, exitUsage, c.want)
			}
			if strings.Contains(stdout+errOut, "does not exist") {
				t.Errorf("the model was looked for before the error:\n%s%s", stdout, errOut)
			}
		})
	}
}

// writeVariedRows writes n instruction rows of varied lengths (a question
// of 1 to 30 words; about 140 tokens each with stories260K's tokenizer, so
// that two or three share a row of 512, none one of 256).
func writeVariedRows(t *testing.T, path string, n int) {
	t.Helper()
	var rows []data.Example
	for i := range n {
		words := strings.Repeat("very ", 1+(i*7)%30)
		rows = append(rows, data.Example{Instruction: fmt.Sprintf("Is %d a %ssmall number?", i, words), Output: "the answer is true", Answer: "true"})
	}
	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFinetunePacking trains stories260K the same steps with and without
// --packing and checks that the final training losses agree to float32
// rounding while packing pads less, that the run says it packs and
// run.json records it, and that a --resume without --packing is refused
// naming it.
func TestFinetunePacking(t *testing.T) {
	model, tok := stories260K(t)
	if err := train.CheckPacking(testbackend.Open(t, "cpu")); err != nil {
		t.Skipf("packing cannot run here: %v", err)
	}
	dir := t.TempDir()
	rows := filepath.Join(dir, "train.json")
	writeVariedRows(t, rows, 24)
	run := func(name string, extra ...string) (stdout string, sum runSummary) {
		t.Helper()
		out := filepath.Join(dir, name)
		args := append([]string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
			"--method", "lora", "--steps", "3", "--batch", "8", "--micro-batch", "4", "--lr", "1e-2", "--max-len", "512", "--no-spectrum", "--out", out}, extra...)
		code, stdout, errOut := runCLI(t, args...)
		if code != exitOK {
			t.Fatalf("%s: status %d\n%s\n%s", name, code, stdout, errOut)
		}
		readJSON(t, filepath.Join(out, "run.json"), &sum)
		return stdout, sum
	}
	lossOf := func(stdout string) float64 {
		t.Helper()
		v, err := strconv.ParseFloat(finalLoss(t, stdout), 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	plainOut, plain := run("plain")
	packedOut, packed := run("packed", "--packing")
	if lp, lu := lossOf(packedOut), lossOf(plainOut); math.Abs(lp-lu) > 2e-4*math.Abs(lu) {
		t.Errorf("final training loss %v packed, %v unpacked", lp, lu)
	}
	if !(packed.Padding < plain.Padding) || plain.Padding <= 0 {
		t.Errorf("padding %.3f packed, %.3f unpacked; want less packed", packed.Padding, plain.Padding)
	}
	if !strings.Contains(packedOut, "packing: each micro-batch's sequences share rows of up to") || strings.Contains(plainOut, "packing:") {
		t.Errorf("only the packed run should announce packing:\n%s\n---\n%s", packedOut, plainOut)
	}
	if packed.Config["packing"] != true || plain.Config["packing"] != false {
		t.Errorf("run.json records packing %v (packed run), %v (plain run)", packed.Config["packing"], plain.Config["packing"])
	}
	if packed.Config["attention"] != "fused" || plain.Config["attention"] != "fused" {
		t.Errorf("run.json records attention %v (packed run), %v (plain run); want fused for both on the CPU backend", packed.Config["attention"], plain.Config["attention"])
	}
	t.Logf("padding %.1f%% unpacked, %.1f%% packed", 100*plain.Padding, 100*packed.Padding)

	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
		"--method", "lora", "--steps", "3", "--batch", "8", "--micro-batch", "4", "--lr", "1e-2", "--max-len", "512", "--no-spectrum", "--out", filepath.Join(dir, "packed"), "--resume")
	if code == exitOK || !strings.Contains(errOut, "packing true, rows of up to 512 tokens (now false)") {
		t.Errorf("resume without --packing: status %d, stderr %q; want a refusal naming packing\n%s", code, errOut, stdout)
	}
}

// TestBadAttentionEnv checks that every command refuses a mistyped
// SORA_ATTENTION at start, generation included (whose cache would
// otherwise quietly compose attention).
func TestBadAttentionEnv(t *testing.T) {
	t.Setenv(graph.AttentionEnv, "fast")
	for _, args := range [][]string{{"backends"}, {"generate", "--model", "m.bin"}, {"finetune"}} {
		code, _, errOut := runCLI(t, args...)
		if code != exitUsage || !strings.Contains(errOut, `SORA_ATTENTION="fast"`) {
			t.Errorf("sora %v: status %d, stderr %q; want status %d naming SORA_ATTENTION", args, code, errOut, exitUsage)
		}
	}
}
