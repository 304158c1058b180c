package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sharedData returns the path of rel inside the project's shared data
// folder ($SORA_DATA, else ../shared/data beside the module root), skipping
// t with a message when it is absent.
func sharedData(t *testing.T, rel string) string {
	t.Helper()
	dir := os.Getenv("SORA_DATA")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(filepath.Dir(d), "shared", "data")
				break
			}
			if filepath.Dir(d) == d {
				t.Skipf("shared data not found: no go.mod above %s and SORA_DATA unset (needed %s)", wd, rel)
			}
		}
	}
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared data file %s is absent (%v); skipping", p, err)
	}
	return p
}

func stories260K(t *testing.T) (model, tok string) {
	t.Helper()
	return sharedData(t, "models/stories260K/stories260K.bin"), sharedData(t, "models/stories260K/tok512.bin")
}

// runcText is the exact output of llama2.c's test (test_all.py) for
// "./run stories260K.bin -z tok512.bin -t 0.0 -n 200" from BOS. Greedy
// decoding from BOS chooses "Once upon a time" itself, so runs prompted
// with it print prefixes of this text.
const runcText = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"\nLily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\nLily didn't want to help her mom, so she"

// want60 is what llama2.c's run prints for the prompt "Once upon a time",
// -t 0 -n 60 (checked byte for byte against run.c built from llama2.c).
const want60 = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high\n"

func TestGenerateStories260K(t *testing.T) {
	model, tok := stories260K(t)
	code, out, errOut := runCLI(t, "generate", "--model", model, "--tokenizer", tok,
		"--prompt", "Once upon a time", "--steps", "60", "--temperature", "0", "--backend", "cpu")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, errOut)
	}
	if out != want60 {
		t.Fatalf("stdout\n%q\nwant llama2.c's\n%q", out, want60)
	}
	if !strings.HasPrefix(runcText, strings.TrimSuffix(out, "\n")) {
		t.Fatalf("output is not a prefix of llama2.c's 200-step fixture")
	}
	if !strings.Contains(errOut, "60 tokens in") || !strings.Contains(errOut, "tokens/s") {
		t.Errorf("stderr lacks the speed line:\n%s", errOut)
	}
	// From BOS alone, 200 steps give llama2.c's test fixture exactly.
	code, out, errOut = runCLI(t, "generate", "--model", model, "--tokenizer", tok, "--steps", "200", "--temperature", "0")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, errOut)
	}
	if out != runcText+"\n" {
		t.Fatalf("200 steps from BOS:\n%q\nwant llama2.c's test fixture\n%q", out, runcText+"\n")
	}
}

// TestConvertRoundTrip converts stories260K to the Hugging Face layout and
// checks that generating from the folder prints the same text, and that
// a sharded conversion loads too.
func TestConvertRoundTrip(t *testing.T) {
	model, tok := stories260K(t)
	for _, shard := range []string{"0", "300000"} {
		dir := filepath.Join(t.TempDir(), "stories260K-hf")
		code, out, errOut := runCLI(t, "convert", "--model", model, "--out", dir, "--shard-size", shard)
		if code != 0 {
			t.Fatalf("convert: exit status %d; stderr:\n%s", code, errOut)
		}
		if !strings.Contains(out, "260032 parameters") {
			t.Errorf("convert summary lacks the parameter count:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); (err == nil) != (shard == "0") {
			t.Errorf("shard size %s: model.safetensors present: %v", shard, err == nil)
		}
		code, out, errOut = runCLI(t, "generate", "--model", dir, "--tokenizer", tok,
			"--prompt", "Once upon a time", "--steps", "60", "--temperature", "0")
		if code != 0 {
			t.Fatalf("generate from %s: exit status %d; stderr:\n%s", dir, code, errOut)
		}
		if out != want60 {
			t.Fatalf("generate from the converted folder:\n%q\nwant\n%q", out, want60)
		}
	}
}

// TestGenerateSampling checks that a seed reproduces a sampled
// generation.
func TestGenerateSampling(t *testing.T) {
	model, tok := stories260K(t)
	args := []string{"generate", "--model", model, "--tokenizer", tok, "--prompt", "Lily", "--steps", "80",
		"--temperature", "1", "--top-p", "0.9", "--seed", "12345"}
	code, a, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, errOut)
	}
	_, b, _ := runCLI(t, args...)
	if a != b {
		t.Fatalf("seed 12345 gave two texts:\n%q\n%q", a, b)
	}
	if !strings.HasPrefix(a, "Lily") || len(a) < 40 {
		t.Fatalf("sampled text %q does not continue the prompt", a)
	}
}

func TestGenerateAndConvertBadInput(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.bin")
	if err := os.WriteFile(junk, []byte("not a checkpoint"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.bin")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no model", []string{"generate", "--tokenizer", "t.bin"}, 2, "--model is required"},
		{"no tokenizer", []string{"generate", "--model", "m.bin"}, 2, "--tokenizer is required"},
		{"negative steps", []string{"generate", "--model", "m", "--tokenizer", "t", "--steps", "-1"}, 2, "--steps -1"},
		{"negative temperature", []string{"generate", "--model", "m", "--tokenizer", "t", "--temperature", "-0.5"}, 2, "temperature -0.5"},
		{"top-p above 1", []string{"generate", "--model", "m", "--tokenizer", "t", "--top-p", "2"}, 2, "top-p 2"},
		{"missing model", []string{"generate", "--model", missing, "--tokenizer", junk}, 1, missing},
		{"junk model", []string{"generate", "--model", junk, "--tokenizer", junk}, 1, junk},
		{"extra argument", []string{"generate", "--model", "m", "--tokenizer", "t", "extra"}, 2, `unexpected argument "extra"`},
		{"convert without out", []string{"convert", "--model", "m.bin"}, 2, "--out is required"},
		{"convert without model", []string{"convert", "--out", dir}, 2, "--model is required"},
		{"convert junk", []string{"convert", "--model", junk, "--out", filepath.Join(dir, "o")}, 1, junk},
		{"convert negative shards", []string{"convert", "--model", junk, "--out", dir, "--shard-size", "-5"}, 2, "--shard-size -5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit status %d (want %d), stderr %q (want it to mention %q)", code, tc.code, errOut, tc.want)
			}
		})
	}
	model, tok := stories260K(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown backend", []string{"generate", "--model", model, "--tokenizer", tok, "--backend", "nope"}, 2, `unknown backend "nope"`},
		{"tokenizer as model", []string{"generate", "--model", tok, "--tokenizer", tok}, 1, tok},
		{"model as tokenizer", []string{"generate", "--model", model, "--tokenizer", model}, 1, model},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit status %d (want %d), stderr %q (want it to mention %q)", code, tc.code, errOut, tc.want)
			}
		})
	}
}
