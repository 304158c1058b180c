package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// catPrompt and catRows are the reviewer's reproduction of a model that
// learns to answer and end with EOS: 16 identical prompt/completion rows.
const catPrompt = "Q: what is the cat? A:"

func writeCatRows(t *testing.T, dir string) string {
	t.Helper()
	line := fmt.Sprintf(`{"prompt":%q,"completion":" a cat"}`+"\n", catPrompt)
	p := filepath.Join(dir, "cat.jsonl")
	if err := os.WriteFile(p, []byte(strings.Repeat(line, 16)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// finetuneCLI runs "sora finetune" on the CPU with args and fails the test
// on a non-zero status.
func finetuneCLI(t *testing.T, args ...string) {
	t.Helper()
	args = append([]string{"finetune", "--backend", "cpu", "--no-spectrum"}, args...)
	if code, stdout, errOut := runCLI(t, args...); code != 0 {
		t.Fatalf("%v: status %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout, errOut)
	}
}

// TestFineTunedModelsStopAtEOS trains stories260K to answer " a cat" and
// end with EOS, as an adapter, as the llama2.c checkpoint merged from it
// and by full fine-tuning, and checks that generate stops at EOS for each:
// the merged and fully fine-tuned models are plain llama2.c checkpoints,
// which generate ran past EOS (printing "</s>" again and again) while it
// stopped the adapter. Each must also give the answer eval extracts from
// the same prompt, eval having always stopped at EOS.
func TestFineTunedModelsStopAtEOS(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := writeCatRows(t, dir)
	lora, full := filepath.Join(dir, "lora"), filepath.Join(dir, "full")
	finetuneCLI(t, "--model", model, "--tokenizer", tok, "--data", rows, "--method", "lora",
		"--target", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head", "--lr", "1e-2", "--steps", "40", "--out", lora)
	finetuneCLI(t, "--model", model, "--tokenizer", tok, "--data", rows, "--method", "full", "--lr", "1e-3", "--steps", "40", "--out", full)
	merged := filepath.Join(dir, "merged.bin")
	if code, stdout, errOut := runCLI(t, "merge", "--adapter", filepath.Join(lora, "adapter"), "--out", merged); code != 0 {
		t.Fatalf("merge: status %d\n%s\n%s", code, stdout, errOut)
	}
	const steps = 40
	n := promptLen(t, tok, catPrompt)
	for _, tc := range []struct {
		name  string
		model []string
	}{
		{"adapter", []string{"--adapter", filepath.Join(lora, "adapter")}},
		{"merged", []string{"--model", merged}},
		{"full", []string{"--model", filepath.Join(full, "adapter", "model.bin")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, tc.model...), "--tokenizer", tok, "--prompt", catPrompt, "--steps", fmt.Sprint(steps))
			text, positions := generateCLI(t, args...)
			if want := catPrompt + " a cat\n"; text != want || positions >= steps {
				t.Errorf("generate printed %q in %d of %d positions; want %q, stopped at EOS", text, positions, steps, want)
			}
			// The prompt, " a cat" (two tokens here, or a few) and EOS: the
			// run stopped at the first EOS it sampled.
			if positions < n+1 || positions > n+4 {
				t.Errorf("%d positions for a prompt of %d tokens and a two-word answer", positions, n)
			}
			report := filepath.Join(t.TempDir(), "eval.json")
			evalArgs := append(append([]string{"eval", "--backend", "cpu"}, tc.model...), "--tokenizer", tok, "--data", rows, "--max-eval", "1", "--json", report)
			if code, stdout, errOut := runCLI(t, evalArgs...); code != 0 {
				t.Fatalf("eval: status %d\n%s\n%s", code, stdout, errOut)
			}
			var rep struct {
				Predictions []prediction `json:"predictions"`
			}
			if err := json.Unmarshal(readFile(t, report), &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Predictions) != 1 || catPrompt+rep.Predictions[0].Output+"\n" != text {
				t.Errorf("eval generated %+v, generate %q: they must agree", rep.Predictions, text)
			}
		})
	}
}

// TestGenerateNoRoomForPrompt checks what generate says when the prompt
// does not fit in the positions the run may take: before, a prompt longer
// than the model's seq_len was printed cut mid-word with "0 tokens" and no
// word of why, and the note for a short --steps asked to raise --steps
// even where the model's seq_len left no room.
func TestGenerateNoRoomForPrompt(t *testing.T) {
	model, tok := stories260K(t)
	long := strings.Repeat("Once upon a time there was a little girl named Lily. ", 60)
	n := promptLen(t, tok, long)
	if n <= 512 {
		t.Fatalf("the long prompt has %d tokens; the test needs more than stories260K's seq_len 512", n)
	}
	short := "Once upon a time there was"
	for _, tc := range []struct {
		name, prompt, steps string
		want                []string
	}{
		{"beyond seq_len, --steps 0", long, "0", []string{fmt.Sprintf("the prompt's %d tokens (BOS included) are more than the model's seq_len of 512 positions: nothing was generated", n), "shorten the prompt to fewer than 512 tokens"}},
		{"beyond seq_len, --steps above it", long, "1000", []string{"more than the model's seq_len of 512", "shorten the prompt"}},
		{"beyond seq_len, default --steps", long, "256", []string{fmt.Sprintf("--steps 256 is less than the prompt's %d tokens", n), "the model's seq_len is 512, so shorten the prompt"}},
		{"beyond --steps", short, "3", []string{"--steps 3 is less than the prompt's 7 tokens", "raise --steps to at least 7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, errOut := runCLI(t, "generate", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--prompt", tc.prompt,
				"--steps", tc.steps, "--temperature", "0.8")
			if code != 0 {
				t.Fatalf("status %d\n%s", code, errOut)
			}
			for _, w := range append(tc.want, "the prompt printed above is cut short") {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not say %q", errOut, w)
				}
			}
			// Nothing was sampled: no seed, no speed.
			if strings.Contains(errOut, "tokens/s") || strings.Contains(errOut, "seed") {
				t.Errorf("stderr reports a run that did not happen: %q", errOut)
			}
			if !strings.HasPrefix(tc.prompt, strings.TrimSuffix(stdout, "\n")) || len(stdout) >= len(tc.prompt) {
				t.Errorf("stdout %q is not the prompt cut short", stdout)
			}
		})
	}
	if n := promptLen(t, tok, short); n != 7 {
		t.Errorf("%q has %d tokens with BOS; the cases above expect 7", short, n)
	}
}

// TestGenerateFlagsBeforeSeed checks that flag errors are reported before
// anything else: "sora generate: seed N" used to come first, from a seed
// picked for a sampler the flags then refused, and --steps was checked
// only after the adapter was read.
func TestGenerateFlagsBeforeSeed(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.bin")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"negative temperature", []string{"--model", missing, "--tokenizer", missing, "--temperature", "-1"}, "temperature -1"},
		{"top-p above 1", []string{"--model", missing, "--tokenizer", missing, "--top-p", "1.5"}, "top-p 1.5"},
		{"NaN temperature", []string{"--model", missing, "--tokenizer", missing, "--temperature", "NaN"}, "temperature NaN"},
		{"negative steps, missing adapter", []string{"--adapter", filepath.Join(dir, "none"), "--tokenizer", missing, "--steps", "-2"}, "--steps -2"},
		{"bad temperature, missing adapter", []string{"--adapter", filepath.Join(dir, "none"), "--temperature", "-3"}, "temperature -3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, errOut := runCLI(t, append([]string{"generate"}, tc.args...)...)
			if code != exitUsage || stdout != "" {
				t.Errorf("status %d (want %d), stdout %q", code, exitUsage, stdout)
			}
			if !strings.HasPrefix(errOut, "sora generate: ") || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "seed") {
				t.Errorf("stderr %q; want the flag error (%q) alone, with no seed line", errOut, tc.want)
			}
		})
	}
}

// TestAdapterFolderSuggestions checks what --adapter of a "sora finetune"
// output folder suggests: its adapter/, and best/ where --keep-best wrote
// one (which the message left out), and for full fine-tuning the models
// in them.
func TestAdapterFolderSuggestions(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, files ...string) string {
		run := filepath.Join(dir, name)
		for _, f := range files {
			if strings.HasSuffix(f, "/") {
				writeAdapterConfig(t, filepath.Join(run, f), "base.bin")
				continue
			}
			if err := os.MkdirAll(filepath.Join(run, filepath.Dir(f)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(run, f), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return run
	}
	for _, tc := range []struct {
		name    string
		run     string
		want    []string
		notWant string
	}{
		{"adapter only", mk("a", "adapter/"), []string{"its adapter/ folder does", "--adapter " + filepath.Join(dir, "a", "adapter")}, "best"},
		{"adapter and best", mk("ab", "adapter/", "best/"), []string{"adapter/ and best/ folders do", "--adapter " + filepath.Join(dir, "ab", "adapter"),
			"--adapter " + filepath.Join(dir, "ab", "best") + " for those of the best evaluation (--keep-best)"}, ""},
		{"best only", mk("b", "best/"), []string{"its best/ folder does", "--adapter " + filepath.Join(dir, "b", "best")}, "adapter/ folder"},
		{"full with best", mk("f", "adapter/model.bin", "best/model.bin"), []string{"--model " + filepath.Join(dir, "f", "adapter", "model.bin"),
			"(or " + filepath.Join(dir, "f", "best", "model.bin") + ", the best evaluation's)"}, ""},
		{"full without best", mk("g", "adapter/model.bin"), []string{"--model " + filepath.Join(dir, "g", "adapter", "model.bin")}, "best"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAdapter("generate", tc.run)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.notWant != "" && strings.Contains(err.Error(), tc.notWant) {
				t.Errorf("error %q mentions %q", err, tc.notWant)
			}
		})
	}
}

// TestBaseDTypeHelp checks that each command's --base-dtype help fits it:
// eval and generate train nothing, so "an adapter method (not --method
// full)" meant nothing there.
func TestBaseDTypeHelp(t *testing.T) {
	for _, tc := range []struct {
		cmd           string
		want, notWant string
	}{
		{"generate", "works with any model, with or without --adapter", "--method full"},
		{"eval", "works with any model, with or without --adapter", "--method full"},
		{"finetune", "and an adapter method: bf16 weights are frozen, and full fine-tuning trains them", "works with any model"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			_, out, _ := runCLI(t, tc.cmd, "--help")
			i := strings.Index(out, "--base-dtype TYPE")
			if i < 0 {
				t.Fatalf("%s --help has no --base-dtype", tc.cmd)
			}
			text := out[i:]
			text = strings.Join(strings.Fields(text[:strings.Index(text, "(default")]), " ")
			if !strings.Contains(text, tc.want) || strings.Contains(text, tc.notWant) {
				t.Errorf("%s --base-dtype help %q; want it to say %q and not %q", tc.cmd, text, tc.want, tc.notWant)
			}
		})
	}
}
