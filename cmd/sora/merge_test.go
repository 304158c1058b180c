package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// TestMergeTiedHead checks merging an adapter on the output head of a
// model whose head is the token embedding (stories260K): the merged model
// unties them, says so, and scores what base + adapter scores (a merge
// into the shared weight would change the embedding too and score
// otherwise); an adapter without the head merges as before, quietly.
func TestMergeTiedHead(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := filepath.Join(dir, "train.json")
	writeVariedRows(t, rows, 8)
	loss := func(args ...string) float64 {
		t.Helper()
		out := filepath.Join(dir, "eval.json")
		args = append([]string{"eval", "--backend", "cpu", "--tokenizer", tok, "--data", rows, "--max-new-tokens", "1", "--json", out}, args...)
		if code, stdout, errOut := runCLI(t, args...); code != exitOK {
			t.Fatalf("%v: status %d\n%s\n%s", args, code, stdout, errOut)
		}
		var rep struct{ Loss float64 }
		readJSON(t, out, &rep)
		return rep.Loss
	}
	for _, c := range []struct {
		target string
		untie  bool
	}{{"q_proj,lm_head", true}, {"q_proj", false}} {
		run := filepath.Join(dir, strings.ReplaceAll(c.target, ",", "-"))
		code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
			"--method", "lora", "--target", c.target, "--steps", "3", "--lr", "3e-2", "--batch", "4", "--no-spectrum", "--out", run)
		if code != exitOK {
			t.Fatalf("finetune --target %s: status %d\n%s\n%s", c.target, code, stdout, errOut)
		}
		merged := filepath.Join(dir, "merged.bin")
		code, stdout, errOut = runCLI(t, "merge", "--backend", "cpu", "--model", model, "--adapter", filepath.Join(run, "adapter"), "--out", merged)
		if code != exitOK {
			t.Fatalf("merge --target %s: status %d\n%s\n%s", c.target, code, stdout, errOut)
		}
		if got := strings.Contains(errOut, "the merged model unties them"); got != c.untie {
			t.Errorf("--target %s: note about untying %v, want %v; stderr:\n%s", c.target, got, c.untie, errOut)
		}
		adapted := loss("--model", model, "--adapter", filepath.Join(run, "adapter"))
		folded := loss("--model", merged)
		base := loss("--model", model)
		if math.Abs(folded-adapted) > 1e-4*adapted || math.Abs(adapted-base) < 1e-3*base {
			t.Errorf("--target %s: loss %.6f merged, %.6f base + adapter, %.6f base; want the first two equal and apart from the base", c.target, folded, adapted, base)
		}
	}
}
