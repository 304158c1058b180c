package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/train"
)

// TestFinetuneClipZeroIsOff: --clip 0 turns gradient clipping off, as
// Hugging Face's max_grad_norm 0 does, training the weights of a negative
// --clip, not those of --clip 1 (the steps' gradient norms are above 1);
// run.json records the clip used, 0 for none, and the checkpoint "off".
func TestFinetuneClipZeroIsOff(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := filepath.Join(dir, "train.json")
	writeBoolQ(t, rows, 12)
	adapters := map[string][]byte{}
	for _, clip := range []string{"0", "-1", "1"} {
		out := filepath.Join(dir, "clip"+clip)
		code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
			"--method", "lora", "--steps", "3", "--batch", "4", "--lr", "1e-2", "--clip", clip, "--no-spectrum", "--out", out)
		if code != exitOK {
			t.Fatalf("--clip %s: status %d\n%s\n%s", clip, code, stdout, errOut)
		}
		b, err := os.ReadFile(filepath.Join(out, "adapter", "adapter_model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		adapters[clip] = b
		var sum runSummary
		readJSON(t, filepath.Join(out, "run.json"), &sum)
		want := 0.0
		if clip == "1" {
			want = 1
		}
		if got, ok := sum.Config["clip"].(float64); !ok || got != want {
			t.Errorf("--clip %s: run.json records clip %v; want %v", clip, sum.Config["clip"], want)
		}
		ck, err := train.LatestCheckpoint(out)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Settings map[string]string `json:"settings"`
		}
		readJSON(t, filepath.Join(ck, "trainer_state.json"), &st)
		if wantS := map[bool]string{true: "1", false: "off"}[clip == "1"]; st.Settings["clip"] != wantS {
			t.Errorf("--clip %s: the checkpoint records clip %q; want %q", clip, st.Settings["clip"], wantS)
		}
		if clip == "1" {
			rs, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if r.GradNorm != nil && *r.GradNorm <= 1 {
					t.Fatalf("step %d's gradient norm is %v: the test needs norms above 1, where --clip 1 clips", r.Step, *r.GradNorm)
				}
			}
		}
	}
	if !bytes.Equal(adapters["0"], adapters["-1"]) {
		t.Error("--clip 0 trained another adapter than --clip -1; both turn clipping off")
	}
	if bytes.Equal(adapters["0"], adapters["1"]) {
		t.Error("--clip 0 trained the adapter of --clip 1: it clipped")
	}
}

// writeHugeModel writes a copy of stories260K whose every weight is ±3e38:
// finite, as the loader demands, but its forward pass overflows, so the
// loss of step 1 is NaN.
func writeHugeModel(t *testing.T, model, path string) {
	t.Helper()
	b, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	const header = 7 * 4 // llama2.c's header: seven int32
	for i := header; i+4 <= len(b); i += 4 {
		v := float32(3e38)
		if (i/4)%2 == 0 {
			v = -v
		}
		binary.LittleEndian.PutUint32(b[i:], math.Float32bits(v))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFinetuneNaNAdvice: after a NaN the message says that the newest
// checkpoint may hold diverged weights (with its largest weight), how to
// resume and how to start afresh; a run that fails at step 1 leaves no
// trace: the folder it made is gone, and a folder the user had keeps
// exactly what it held (a zero-shot evaluation logged before the failure
// goes too).
func TestFinetuneNaNAdvice(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows, evalRows := writeBoolQPair(t, dir, 16, 4)
	out := filepath.Join(dir, "diverged")
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
		"--method", "lora", "--steps", "5", "--batch", "4", "--lr", "1e6", "--save-every", "1", "--out", out)
	if code != exitFailure {
		t.Fatalf("--lr 1e6: status %d, want %d (a NaN)\n%s\n%s", code, exitFailure, stdout, errOut)
	}
	for _, want := range []string{"is NaN at step 2", "step-000001 (step 1)", "may have diverged", "its largest trainable weight is 1e+06",
		"a lower --lr", "another --out, or remove " + filepath.Join(out, "checkpoints")} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the NaN's message lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "good checkpoint") {
		t.Errorf("the NaN's message calls a checkpoint of diverged weights good:\n%s", errOut)
	}

	huge := filepath.Join(dir, "huge.bin")
	writeHugeModel(t, model, huge)
	made := filepath.Join(dir, "made", "run")
	theirs := filepath.Join(dir, "theirs")
	if err := os.MkdirAll(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(theirs, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{made, theirs} {
		code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", huge, "--tokenizer", tok, "--data", rows, "--eval-data", evalRows,
			"--method", "lora", "--steps", "2", "--batch", "4", "--out", out)
		if code != exitFailure || !strings.Contains(errOut, "NaN at step 1") {
			t.Fatalf("a model that overflows: status %d, want %d and a NaN at step 1\n%s\n%s", code, exitFailure, stdout, errOut)
		}
	}
	if _, err := os.Stat(made); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run made %s and failed at step 1; the folder is still there (%v)", made, err)
	}
	if ents, err := os.ReadDir(theirs); err != nil || len(ents) != 1 || ents[0].Name() != "notes.txt" {
		t.Errorf("a run that failed at step 1 in a folder holding notes.txt left %v (%v); want notes.txt alone", ents, err)
	}
}

// TestFinetuneWritten: the last line lists the files the run wrote, the
// spectra only where they were drawn (not when a Ctrl-C during the last
// step skipped them), and best/ only where it holds the best's weights.
func TestFinetuneWritten(t *testing.T) {
	best := &train.Best{Step: 4, Metric: "eval_loss", Value: 0.25}
	cases := []struct {
		res  train.Result
		want string
	}{
		{train.Result{LossPlot: true, Spectra: true}, "adapter/, checkpoints/, metrics.jsonl, loss.png, spectrum.png, spectrum.json, run.json"},
		{train.Result{LossPlot: true}, "adapter/, checkpoints/, metrics.jsonl, loss.png, run.json"},
		{train.Result{LossPlot: true, BestDir: "runs/x/best"}, "adapter/, best/ (step 4, eval_loss 0.2500), checkpoints/, metrics.jsonl, loss.png, run.json"},
	}
	for _, c := range cases {
		if got := strings.Join(written(&c.res, "adapter/", best), ", "); got != c.want {
			t.Errorf("%+v: %q, want %q", c.res, got, c.want)
		}
	}
}

// writeLongOutputs writes n LLM-Adapters rows with short prompts and
// outputs of about 80 tokens whose answer comes last, as math rows.
func writeLongOutputs(t *testing.T, path string, n int) {
	t.Helper()
	var rows []data.Example
	for i := range n {
		ans := fmt.Sprint(i % 7)
		rows = append(rows, data.Example{Instruction: fmt.Sprintf("How many cats are there, %d?", i),
			Output: strings.Repeat("One cat sat on the mat and then another cat came. ", 6) + "The answer is " + ans, Answer: ans})
	}
	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFinetuneEvalCutNote: where --max-len cuts the outputs of evaluation
// rows, every evaluation line says so (the loss and exact match then
// score a beginning, perhaps not the answer), and run.json counts them;
// rows that fit carry no note. And where the outputs are longer than
// --max-new-tokens, the run says that the answers will be cut short.
func TestFinetuneEvalCutNote(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows, long := filepath.Join(dir, "train.json"), filepath.Join(dir, "long.json")
	writeBoolQ(t, rows, 8)
	writeLongOutputs(t, long, 3)
	for _, c := range []struct {
		name, eval     string
		maxLen, maxNew string
		cut            int
	}{{"fits", rows, "256", "24", 0}, {"cut", long, "120", "4", 3}} {
		out := filepath.Join(dir, c.name)
		code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", c.eval, "--eval-data", c.eval,
			"--method", "lora", "--steps", "2", "--batch", "4", "--eval-every", "1", "--max-len", c.maxLen, "--max-new-tokens", c.maxNew, "--no-spectrum", "--out", out)
		if code != exitOK {
			t.Fatalf("%s: status %d\n%s\n%s", c.name, code, stdout, errOut)
		}
		note := fmt.Sprintf("all %d rows cut at --max-len %s: loss and exact match score only the part of their outputs that fits", c.cut, c.maxLen)
		for _, line := range strings.Split(stdout, "\n") {
			if strings.HasPrefix(line, "eval at step") || strings.HasPrefix(line, "before training") || strings.HasPrefix(line, "after training") {
				if has := strings.Contains(line, "cut at --max-len"); has != (c.cut > 0) || (has && !strings.Contains(line, note)) {
					t.Errorf("%s: the evaluation line %q; want the note %v", c.name, line, c.cut > 0)
				}
			}
		}
		var sum runSummary
		readJSON(t, filepath.Join(out, "run.json"), &sum)
		if sum.EvalCut != c.cut {
			t.Errorf("%s: run.json counts %d cut rows, want %d", c.name, sum.EvalCut, c.cut)
		}
		if got, ok := sum.Config["max_new_tokens"].(float64); !ok || fmt.Sprint(got) != c.maxNew {
			t.Errorf("%s: run.json records max_new_tokens %v, want %s", c.name, sum.Config["max_new_tokens"], c.maxNew)
		}
		if !strings.Contains(stdout, "generating up to "+c.maxNew+" tokens") {
			t.Errorf("%s: the answers were not generated up to --max-new-tokens %s:\n%s", c.name, c.maxNew, stdout)
		}
		if said := strings.Contains(stdout, "are generated up to --max-new-tokens "+c.maxNew+" tokens"); said != (c.name == "cut") {
			t.Errorf("%s: note that the outputs outrun --max-new-tokens: %v, want %v\n%s", c.name, said, c.name == "cut", stdout)
		}
	}
}

// TestFinetuneOddFlags: flags that would do nothing, or nothing useful,
// are said: a --warmup longer than the run, a --rank above a layer's
// width (a warning naming a layer), a --loraplus-ratio for another method
// (refused), and a method's refusal in the flags' names.
func TestFinetuneOddFlags(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := filepath.Join(dir, "train.json")
	writeBoolQ(t, rows, 8)
	base := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows, "--batch", "4", "--no-spectrum"}
	code, stdout, errOut := runCLI(t, append(base, "--method", "lora", "--steps", "2", "--warmup", "1000", "--rank", "100", "--out", filepath.Join(dir, "odd"))...)
	if code != exitOK {
		t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
	}
	if !strings.Contains(stdout, "note: --warmup 1000 is more than the run's 2 steps") {
		t.Errorf("no note of the warm-up longer than the run:\n%s", stdout)
	}
	if !strings.Contains(errOut, "warning: --rank 100 is more than min(in, out) of every adapted layer (35), e.g. model.layers.0.self_attn.q_proj (64 in, 64 out)") {
		t.Errorf("no warning of the rank above the layers' width:\n%s", errOut)
	}
	code, stdout, errOut = runCLI(t, append(base, "--method", "lora", "--steps", "1", "--rank", "32", "--out", filepath.Join(dir, "fits"))...)
	if code != exitOK || strings.Contains(errOut, "warning: --rank") || strings.Contains(stdout, "--warmup") {
		t.Errorf("--rank 32 (the narrowest layer's width) with the default warm-up: status %d, warned\n%s\n%s", code, stdout, errOut)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--method", "lora", "--loraplus-ratio", "4"}, "--loraplus-ratio is LoRA+'s ratio of the B matrices' learning rate; --method lora has none"},
		{[]string{"--method", "lora", "--rotation-rank", "8"}, "--rotation-rank is the rank of the rotation factors C and D; --method lora has none (use --method sora, preortho or postortho)"},
		{[]string{"--method", "lora", "--exact-rotation"}, "--exact-rotation is the choice of rotation, exp(S) or I + S; --method lora has none (use --method sora, preortho or postortho)"},
		{[]string{"--method", "oft", "--dropout", "0.1"}, "--dropout is the dropout on the low-rank path's input; --method oft has none"},
		{[]string{"--method", "full", "--rslora"}, "--rslora is rank-stabilized LoRA's scale of the low-rank update; --method full has none"},
		{[]string{"--task", "classify", "--max-new-tokens", "8", "--eval-data", rows}, "--max-new-tokens is how far the answers are generated, with --task lm"},
		{[]string{"--max-new-tokens", "8"}, "--max-new-tokens is how far the answers of the evaluation data are generated after training; it needs --eval-data or --eval-split"},
		{[]string{"--max-new-tokens", "0", "--eval-data", rows}, "--max-new-tokens 0: want at least 1"},
	} {
		code, _, errOut := runCLI(t, append(base, c.args...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) || strings.Contains(errOut, "Config.") {
			t.Errorf("%v: status %d, stderr %q; want status %d and %q, in the flags' words", c.args, code, errOut, exitUsage, c.want)
		}
	}
	if code, _, _ := runCLI(t, append(base, "--method", "lora+", "--loraplus-ratio", "4", "--steps", "1", "--out", filepath.Join(dir, "plus"))...); code != exitOK {
		t.Errorf("--method lora+ --loraplus-ratio 4: status %d", code)
	}
}

// TestFinetuneResumeRefusedEarly: a --resume with a flag the checkpoint was
// not made with is refused before the data and model load (nothing is
// printed before the refusal), with the trainer's own message; one with
// the same flags goes on.
func TestFinetuneResumeRefusedEarly(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := filepath.Join(dir, "train.json")
	writeBoolQ(t, rows, 8)
	out := filepath.Join(dir, "run")
	args := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows, "--eval-data", rows,
		"--method", "lora", "--batch", "4", "--no-spectrum", "--out", out}
	if code, stdout, errOut := runCLI(t, append(args, "--steps", "2")...); code != exitOK {
		t.Fatalf("status %d\n%s\n%s", code, stdout, errOut)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--steps", "2", "--rank", "4"}, "it was made with rank 8 (now 4)"},
		{[]string{"--steps", "1"}, "with steps 1: the run has trained 2 steps already, of the 2 it was made for; resume it with 2 steps, as it was made (it has finished), or more to train it longer"},
		{[]string{"--steps", "2", "--clip", "0"}, "it was made with clip 1 (now off); if it was made with --clip 0 before --clip 0 meant no clipping, it clipped at 1 (as it records): resume it with --clip 1"},
		{[]string{"--steps", "2", "--seed", "7"}, "it was made with seed 42 (now 7)"},
		{[]string{"--steps", "2", "--method", "dora"}, "method lora (now dora)"},
	} {
		code, stdout, errOut := runCLI(t, append(slices.Clone(args), append(c.args, "--resume")...)...)
		if code != exitFailure || !strings.Contains(errOut, c.want) {
			t.Errorf("--resume %v: status %d, stderr %q; want %d and %q", c.args, code, errOut, exitFailure, c.want)
		}
		if stdout != "" {
			t.Errorf("--resume %v was refused only after loading:\n%s", c.args, stdout)
		}
	}
	if code, stdout, errOut := runCLI(t, append(args, "--steps", "2", "--resume")...); code != exitOK || !strings.Contains(stdout, "nothing left to train") {
		t.Errorf("--resume with the same flags: status %d\n%s\n%s", code, stdout, errOut)
	}
}
