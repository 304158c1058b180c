package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/peft/adapter"
	"github.com/sora-go/sora/train"
)

// writeAdapterConfig writes a LoRA adapter_config.json into dir naming
// base as its base model; the commands below fail before they need the
// weights.
func writeAdapterConfig(t *testing.T, dir, base string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := `{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "target_modules": "all-linear", "base_model_name_or_path": ` +
		strconv.Quote(base) + `}`
	if err := os.WriteFile(filepath.Join(dir, adapter.ConfigFile), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAdapterPathMistakes covers two slips a user makes with --adapter:
// passing the output folder of "sora finetune" instead of its adapter/,
// and running from another folder than the training did, so that the
// relative base model path recorded in the adapter no longer resolves.
// Both must say what to pass instead, with a usage or failure status,
// rather than "no such file" about a path the user never typed.
func TestAdapterPathMistakes(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	writeAdapterConfig(t, filepath.Join(run, "adapter"), "../nowhere/stories260K.bin")
	ad := filepath.Join(run, "adapter")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"eval on run folder", []string{"eval", "--tokenizer", "t.bin", "--data", "d.json", "--adapter", run}, exitFailure,
			[]string{"a \"sora finetune\" output folder?", "--adapter " + ad}},
		{"generate on run folder", []string{"generate", "--tokenizer", "t.bin", "--adapter", run}, exitFailure,
			[]string{"--adapter " + ad}},
		{"spectrum on run folder", []string{"spectrum", "--adapter", run}, exitFailure, []string{"--adapter " + ad}},
		{"merge on run folder", []string{"merge", "--model", "m.bin", "--out", filepath.Join(dir, "o.bin"), "--adapter", run}, exitFailure,
			[]string{"--adapter " + ad}},
		{"eval, stale base path", []string{"eval", "--tokenizer", "t.bin", "--data", "d.json", "--adapter", ad}, exitUsage,
			[]string{`base_model_name_or_path "../nowhere/stories260K.bin"`, "relative to the folder the adapter was trained in", "pass --model"}},
		{"generate, stale base path", []string{"generate", "--tokenizer", "t.bin", "--adapter", ad}, exitUsage,
			[]string{"../nowhere/stories260K.bin", "pass --model"}},
		{"spectrum, stale base path", []string{"spectrum", "--adapter", ad}, exitUsage,
			[]string{"../nowhere/stories260K.bin", "pass --model"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d; stderr %q", code, tc.code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not mention %q", errOut, w)
				}
			}
		})
	}
	// "sora finetune --method full" leaves a whole model in adapter/.
	full := filepath.Join(dir, "full", "adapter")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "model.bin"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "eval", "--tokenizer", "t.bin", "--data", "d.json", "--adapter", full)
	if code != exitFailure || !strings.Contains(errOut, "--method full") || !strings.Contains(errOut, "use --model "+filepath.Join(full, "model.bin")) {
		t.Errorf("adapter/ of a full fine-tuning: status %d, stderr %q", code, errOut)
	}
	// Each command says what to do with it in its own terms: merge has
	// nothing to fold, spectrum no adapter to analyse.
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"generate", "--adapter", full, "--prompt", "x"}, []string{"use --model " + filepath.Join(full, "model.bin")}},
		{[]string{"merge", "--adapter", full, "--out", filepath.Join(dir, "m.bin")}, []string{"nothing to merge", "--model " + filepath.Join(full, "model.bin")}},
		{[]string{"spectrum", "--adapter", full}, []string{"spectrum.json", "W − W0"}},
		// The output folder of the run instead of its adapter/.
		{[]string{"eval", "--tokenizer", "t.bin", "--data", "d.json", "--adapter", filepath.Dir(full)}, []string{"--method full", "use --model " + filepath.Join(full, "model.bin")}},
		{[]string{"merge", "--adapter", filepath.Dir(full), "--out", filepath.Join(dir, "m.bin")}, []string{"nothing to merge"}},
	} {
		code, _, errOut := runCLI(t, c.args...)
		bad := code != exitFailure
		for _, w := range c.want {
			bad = bad || !strings.Contains(errOut, w)
		}
		if bad || (c.args[0] != "eval" && c.args[0] != "generate" && strings.Contains(errOut, "use --model")) {
			t.Errorf("%v on a full fine-tune's folder: status %d, stderr %q; want %q", c.args, code, errOut, c.want)
		}
	}
	// A folder that holds neither keeps the plain error.
	code, _, errOut = runCLI(t, "spectrum", "--adapter", filepath.Join(dir, "none"))
	if code != exitFailure || strings.Contains(errOut, "output folder") || !strings.Contains(errOut, filepath.Join(dir, "none")) {
		t.Errorf("missing adapter: status %d, stderr %q", code, errOut)
	}
}

func TestSavedWhat(t *testing.T) {
	dir := t.TempDir() // a folder base model
	for _, tc := range []struct {
		method peft.Method
		task   train.Task
		model  string
		want   string
	}{
		{peft.SORA, train.LM, "m.bin", "adapter/"},
		{peft.LoRA, train.Classify, "m.bin", "adapter/"},
		{peft.Full, train.LM, "m.bin", "adapter/model.bin (the whole fine-tuned model, for --model: full fine-tuning makes no adapter)"},
		{peft.Full, train.LM, dir, "adapter/model/ (the whole fine-tuned model, for --model: full fine-tuning makes no adapter)"},
		{peft.Full, train.Classify, "m.bin", "adapter/model.bin (the whole fine-tuned model, for --model: full fine-tuning makes no adapter; its classification head is beside it in adapter/score.safetensors, where \"sora eval --model\" finds it)"},
		{peft.Full, train.Classify, dir, "adapter/model/ (the whole fine-tuned model, for --model: full fine-tuning makes no adapter; its classification head is beside it in adapter/score.safetensors, where \"sora eval --model\" finds it)"},
	} {
		if got := savedWhat(tc.method, tc.task, tc.model); got != tc.want {
			t.Errorf("savedWhat(%s, %s, %s) = %q, want %q", tc.method, tc.task, tc.model, got, tc.want)
		}
	}
}

// TestSmallOutputMistakes covers three slips outside --adapter: merging
// into a folder that does not exist yet, converting a folder, and a
// --steps shorter than the prompt.
func TestSmallOutputMistakes(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	ad := filepath.Join(dir, "run", "adapter")
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", writeBoolQFile(t, dir),
		"--method", "lora", "--steps", "1", "--batch", "2", "--out", filepath.Join(dir, "run"))
	if code != 0 {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}
	merged := filepath.Join(dir, "new", "sub", "merged.bin")
	if code, _, errOut := runCLI(t, "merge", "--model", model, "--adapter", ad, "--out", merged); code != 0 {
		t.Errorf("merge into a new folder: status %d, stderr %q", code, errOut)
	} else if _, err := os.Stat(merged); err != nil {
		t.Errorf("merge reported success but: %v", err)
	}
	// Without --model, merge takes the base the adapter names, as eval,
	// generate and spectrum do, and writes the same checkpoint.
	merged2 := filepath.Join(dir, "merged2.bin")
	if code, _, errOut := runCLI(t, "merge", "--adapter", ad, "--out", merged2); code != 0 {
		t.Errorf("merge without --model: status %d, stderr %q", code, errOut)
	} else if a, b := readFile(t, merged), readFile(t, merged2); !bytes.Equal(a, b) {
		t.Errorf("merge without --model wrote %d bytes that differ from the %d of merge with it", len(b), len(a))
	}
	if code, _, errOut := runCLI(t, "convert", "--model", dir, "--out", filepath.Join(dir, "hf")); code != exitUsage ||
		!strings.Contains(errOut, dir+" is a folder; convert reads a llama2.c checkpoint file") {
		t.Errorf("convert of a folder: status %d, stderr %q", code, errOut)
	}
	code, stdout, errOut = runCLI(t, "generate", "--model", model, "--tokenizer", tok, "--prompt", "Once upon a time there was", "--steps", "3", "--temperature", "0")
	if code != 0 || stdout != "Once upon a\n" || !strings.Contains(errOut, "--steps 3 is less than the prompt's") || strings.Contains(errOut, "tokens/s") {
		t.Errorf("generate with --steps below the prompt: status %d, stdout %q, stderr %q", code, stdout, errOut)
	}
}

func writeBoolQFile(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "train.json")
	writeBoolQ(t, p, 4)
	return p
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
