package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testdata"
)

// TestFinetuneContinuesHead trains a CoLA classifier fully on stories260K,
// then fine-tunes the model it saved (adapter/model.bin) again, fully and
// with SORA: each continued run must start from the saved head, so its
// zero-shot scores on the same held-out rows are the first run's final
// scores exactly (a new random head scores otherwise). A head with another
// number of classes than the data is a usage error naming the file and
// both counts, and --new-head starts a random head instead.
func TestFinetuneContinuesHead(t *testing.T) {
	model, tok := stories260K(t)
	trainTSV := testdata.Path(t, "datasets/cola/in_domain_train.tsv")
	devTSV := testdata.Path(t, "datasets/cola/in_domain_dev.tsv")
	dir := t.TempDir()
	finetune := func(base, out string, extra ...string) (code int, stdout, stderr string) {
		args := append([]string{"finetune", "--backend", "cpu", "--model", base, "--tokenizer", tok, "--task", "classify",
			"--data", trainTSV, "--max-train", "20", "--eval-data", devTSV, "--max-eval", "20",
			"--batch", "10", "--max-len", "24", "--out", out}, extra...)
		return runCLI(t, args...)
	}

	first := filepath.Join(dir, "first")
	if code, stdout, errOut := finetune(model, first, "--method", "full", "--steps", "4", "--lr", "5e-3"); code != 0 {
		t.Fatalf("first run: status %d\n%s\n%s", code, stdout, errOut)
	}
	var was runSummary
	readJSON(t, filepath.Join(first, "run.json"), &was)
	if was.Final == nil || was.ZeroShot == nil || was.Head != "" {
		t.Fatalf("first run's run.json: final %+v, zero-shot %+v, head %q", was.Final, was.ZeroShot, was.Head)
	}
	saved := filepath.Join(first, "adapter", "model.bin")
	head := filepath.Join(first, "adapter", headFile)

	for _, method := range []string{"full", "sora"} {
		t.Run(method, func(t *testing.T) {
			out := filepath.Join(dir, "again-"+method)
			code, stdout, errOut := finetune(saved, out, "--method", method, "--steps", "1")
			if code != 0 {
				t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
			}
			if want := "classification head: continued from " + head + " (2 classes)\n"; !strings.Contains(stdout, want) {
				t.Errorf("the header does not say %q:\n%s", want, stdout)
			}
			var now runSummary
			readJSON(t, filepath.Join(out, "run.json"), &now)
			zs, fin := now.ZeroShot, was.Final
			if now.Head != head {
				t.Errorf("run.json: head %q, want %q", now.Head, head)
			}
			if zs == nil {
				t.Fatal("run.json has no zero-shot evaluation")
			}
			// Same weights, head, rows and batches: the same numbers.
			if zs.Sequences != fin.Sequences || zs.Loss != fin.Loss || zs.Accuracy != fin.Accuracy ||
				zs.MCC == nil || fin.MCC == nil || *zs.MCC != *fin.MCC {
				t.Errorf("zero-shot of the continued run: %d sequences, loss %v, accuracy %v, MCC %v; the first run ended with %d, %v, %v, %v",
					zs.Sequences, zs.Loss, zs.Accuracy, fmtMCC(zs.MCC), fin.Sequences, fin.Loss, fin.Accuracy, fmtMCC(fin.MCC))
			}
		})
	}

	// --new-head ignores the saved head: a fresh random one scores
	// otherwise, and the header says which head it is not.
	out := filepath.Join(dir, "new-head")
	code, stdout, errOut := finetune(saved, out, "--method", "full", "--steps", "1", "--new-head")
	if code != 0 {
		t.Fatalf("--new-head: status %d\n%s\n%s", code, stdout, errOut)
	}
	if want := "classification head: new (--new-head), not the one in " + head + "\n"; !strings.Contains(stdout, want) || strings.Contains(stdout, "continued from") {
		t.Errorf("--new-head: the header does not say %q (alone):\n%s", want, stdout)
	}
	var fresh runSummary
	readJSON(t, filepath.Join(out, "run.json"), &fresh)
	if fresh.Head != "" || fresh.ZeroShot == nil || fresh.ZeroShot.Loss == was.Final.Loss {
		t.Errorf("--new-head: run.json head %q, zero-shot %+v; want no head and a loss other than the saved head's %v", fresh.Head, fresh.ZeroShot, was.Final.Loss)
	}

	// A head of three classes for two-class data: a usage error before
	// training, naming the head file and both counts.
	other := filepath.Join(dir, "three")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, saved, filepath.Join(other, "model.bin"))
	badHead := filepath.Join(other, headFile)
	if err := os.WriteFile(badHead, headBytes(t, map[string][]int{headKey: {3, 64}}, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, errOut = finetune(filepath.Join(other, "model.bin"), filepath.Join(dir, "three-run"), "--method", "sora", "--steps", "1")
	if code != exitUsage || !strings.Contains(errOut, badHead) || !strings.Contains(errOut, "has 3 classes") ||
		!strings.Contains(errOut, trainTSV+" has 2") || !strings.Contains(errOut, "--new-head") {
		t.Errorf("three-class head: status %d, stderr %q; want %d naming %s, its 3 classes, the data's 2 and --new-head", code, errOut, exitUsage, badHead)
	}
	if strings.Contains(stdout, "training:") {
		t.Errorf("three-class head: the run went on to train:\n%s", stdout)
	}

	// --new-head belongs to classification only.
	code, _, errOut = runCLI(t, "finetune", "--model", saved, "--tokenizer", tok, "--data", trainTSV, "--new-head")
	if code != exitUsage || !strings.Contains(errOut, "--new-head needs --task classify") {
		t.Errorf("--new-head with --task lm: status %d, stderr %q", code, errOut)
	}
}

// fmtMCC formats an optional MCC for a test message.
func fmtMCC(m *float64) string {
	if m == nil {
		return "none"
	}
	return fmt.Sprint(*m)
}
