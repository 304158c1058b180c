package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/internal/testdata"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/peft/adapter"
	"github.com/sora-go/sora/train"
)

// newModel builds a model of w on b, freed when the test ends.
func newModel(t *testing.T, b backend.Backend, w *llama.Weights) *llama.Model {
	t.Helper()
	m, err := llama.New(b, w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

// newGenerator builds a model of w on b and a generator over its whole
// context; both are freed when the test ends, the generator first.
func newGenerator(t *testing.T, b backend.Backend, w *llama.Weights) *llama.Generator {
	t.Helper()
	g, err := newModel(t, b, w).NewGenerator(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// storiesHF converts stories260K with its tokenizer into a Hugging Face
// folder (config.json, model.safetensors, tokenizer.json and
// tokenizer_config.json) in a new temporary folder, and returns its path.
func storiesHF(t *testing.T) string {
	t.Helper()
	model, tok := stories260K(t)
	dir := filepath.Join(t.TempDir(), "stories260K-hf")
	if code, _, errOut := runCLI(t, "convert", "--model", model, "--tokenizer", tok, "--out", dir); code != 0 {
		t.Fatalf("convert: exit status %d; stderr:\n%s", code, errOut)
	}
	return dir
}

func stories260K(t *testing.T) (model, tok string) {
	t.Helper()
	return testdata.Stories260K(t)
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
// a sharded conversion loads too; --out's missing parent folders are
// made, as merge makes them.
func TestConvertRoundTrip(t *testing.T) {
	model, tok := stories260K(t)
	for _, shard := range []string{"0", "300000"} {
		dir := filepath.Join(t.TempDir(), "models", "stories260K-hf")
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
		{"no tokenizer", []string{"generate", "--model", junk}, 2, "--tokenizer is required"},
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

// TestGenerateAdapter trains a small adapter to answer BoolQ-like
// questions, then checks that "generate --adapter" applies it (the text
// changes from the base model's) and that the checkpoint "sora merge"
// writes from it generates the same text.
func TestGenerateAdapter(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath := filepath.Join(dir, "train.json")
	writeBoolQ(t, trainPath, 8)
	out := filepath.Join(dir, "run")
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath,
		"--method", "lora", "--rank", "8", "--steps", "16", "--batch", "4", "--lr", "2e-2", "--out", out)
	if code != 0 {
		t.Fatalf("finetune: status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, errOut)
	}
	adapterDir := filepath.Join(out, "adapter")
	merged := filepath.Join(dir, "merged.bin")
	if code, stdout, errOut := runCLI(t, "merge", "--model", model, "--adapter", adapterDir, "--out", merged); code != 0 {
		t.Fatalf("merge: status %d\n%s\n%s", code, stdout, errOut)
	}
	prompt := data.Prompt("Please answer the following question with true or false, question: is 2 a small number?\n\nAnswer format: true/false", "")
	steps := promptLen(t, tok, prompt) + 30
	base, nb := generateCLI(t, "--model", model, "--tokenizer", tok, "--prompt", prompt, "--steps", fmt.Sprint(steps))
	// The adapter's config names its base model: --model may be left out.
	withAdapter, na := generateCLI(t, "--adapter", adapterDir, "--tokenizer", tok, "--prompt", prompt, "--steps", fmt.Sprint(steps))
	fromMerged, nm := generateCLI(t, "--model", merged, "--tokenizer", tok, "--prompt", prompt, "--steps", fmt.Sprint(steps))
	if withAdapter == base {
		t.Fatalf("the adapter did not change the text:\n%q", base)
	}
	if !strings.Contains(withAdapter, "### Response:\nthe correct answer is") {
		t.Errorf("the adapter's text does not answer as trained:\n%q", withAdapter)
	}
	if withAdapter != fromMerged || na != nm || nb != steps || na != steps {
		t.Errorf("base + adapter (%d positions) and the merged model (%d) disagree:\n%q\n%q", na, nm, withAdapter, fromMerged)
	}
	// A classifier's adapter is no language model.
	cls := filepath.Join(dir, "cls")
	if err := os.MkdirAll(cls, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{adapter.ConfigFile, adapter.WeightsFile} {
		copyFile(t, filepath.Join(adapterDir, f), filepath.Join(cls, f))
	}
	markClassifier(t, cls)
	if code, _, errOut := runCLI(t, "generate", "--adapter", cls, "--tokenizer", tok); code != exitFailure || !strings.Contains(errOut, "classifier") {
		t.Errorf("generate with a classifier's adapter: status %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "generate", "--adapter", filepath.Join(dir, "none"), "--tokenizer", tok); code != exitFailure || !strings.Contains(errOut, "none") {
		t.Errorf("generate with a missing adapter: status %d, %q", code, errOut)
	}
}

// TestGenerateAdapterStopsAtEOS builds a model and an adapter whose only
// effect is to make EOS the most likely next token everywhere: with the
// adapter, generation stops right after the prompt, and so does the merged
// model, a plain llama2.c checkpoint that samples EOS there (it went on,
// printing EOS after EOS, while EOS stopped adapters alone).
func TestGenerateAdapterStopsAtEOS(t *testing.T) {
	_, tok := stories260K(t)
	dir := t.TempDir()
	// A random model with the tokenizer's vocabulary and its own output
	// head, in which residual coordinate 0 is 1 at every position: every
	// embedding has it and no block writes to it.
	cfg := llama.Config{Dim: 16, HiddenDim: 32, NumLayers: 2, NumHeads: 2, NumKVHeads: 2, VocabSize: 512, MaxSeqLen: 128,
		NormEps: llama.DefaultNormEps, RopeTheta: llama.DefaultRopeTheta}
	w, err := train.InitWeights(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	for v := range cfg.VocabSize {
		w.TokenEmbedding[v*cfg.Dim] = 1
	}
	for i := range w.Layers {
		l := &w.Layers[i]
		clear(l.Wo[:cfg.Dim])       // row 0 of o_proj [dim, dim]
		clear(l.W2[:cfg.HiddenDim]) // row 0 of down_proj [dim, hidden]
	}
	model := filepath.Join(dir, "toy.bin")
	if err := llama2c.Write(model, w, llama2c.Version1); err != nil {
		t.Fatal(err)
	}
	// LoRA on lm_head with A = e₀ and B = 50·e_EOS adds 50·s·h₀ > 0 to the
	// EOS logit only.
	b := testbackend.Open(t, "cpu")
	m := newModel(t, b, w)
	pm, err := peft.Inject(m, peft.Config{Method: peft.LoRA, R: 1, Alpha: 1, TargetModules: []string{llama.OutputModule}})
	if err != nil {
		t.Fatal(err)
	}
	l := pm.Layers()[0]
	a := make([]float32, cfg.Dim)
	a[0] = 1
	bm := make([]float32, cfg.VocabSize)
	bm[tokenizer.EOS] = 50
	for i, data := range [][]float32{a, bm} {
		p := l.Trainable()[i]
		b.Upload(p.Tensor(), data)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	adapterDir := filepath.Join(dir, "adapter")
	if err := adapter.Save(adapterDir, pm, adapter.Meta{BaseModel: model, TaskType: "CAUSAL_LM"}); err != nil {
		t.Fatal(err)
	}
	pm.Unload()
	merged := filepath.Join(dir, "merged.bin")
	if code, stdout, errOut := runCLI(t, "merge", "--model", model, "--adapter", adapterDir, "--out", merged); code != 0 {
		t.Fatalf("merge: status %d\n%s\n%s", code, stdout, errOut)
	}

	const prompt = "Once upon a time"
	n := promptLen(t, tok, prompt)
	const steps = 20
	base, nb := generateCLI(t, "--model", model, "--tokenizer", tok, "--prompt", prompt, "--steps", fmt.Sprint(steps))
	withAdapter, na := generateCLI(t, "--adapter", adapterDir, "--tokenizer", tok, "--prompt", prompt, "--steps", fmt.Sprint(steps))
	fromMerged, nm := generateCLI(t, "--model", merged, "--tokenizer", tok, "--prompt", prompt, "--steps", fmt.Sprint(steps))
	if withAdapter != prompt+"\n" || na != n {
		t.Errorf("with the adapter: %q in %d positions, want the prompt alone in %d (stopped at EOS)", withAdapter, na, n)
	}
	if fromMerged != withAdapter || nm != na {
		t.Errorf("merged: %q in %d positions, want what the adapter gives, %q in %d (stopped at EOS)", fromMerged, nm, withAdapter, na)
	}
	// (The random base model's tokens are mostly bytes that do not print;
	// it never samples EOS.)
	if nb != steps || strings.Contains(base, "</s>") {
		t.Errorf("base %q (%d positions); want %d positions without EOS", base, nb, steps)
	}
	// The merged model's first token is the EOS the adapter run stopped at.
	mw, _, err := llama2c.Load(merged)
	if err != nil {
		t.Fatal(err)
	}
	g := newGenerator(t, b, mw)
	tk, err := tokenizer.Load(tok)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := g.Generate(tk.Encode(prompt, true, false), llama.GenerateOptions{Steps: n + 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(seq) <= n || seq[n] != tokenizer.EOS {
		t.Errorf("the merged model continues the prompt with %v, want EOS (%d)", seq[n:], tokenizer.EOS)
	}
}

// generateCLI runs "sora generate" greedily on the CPU with args and
// returns its text and the number of positions it ran.
func generateCLI(t *testing.T, args ...string) (text string, positions int) {
	t.Helper()
	args = append([]string{"generate", "--backend", "cpu", "--temperature", "0"}, args...)
	code, stdout, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("%v: status %d\n%s", args, code, errOut)
	}
	if _, err := fmt.Sscanf(errOut, "sora generate: %d tokens in", &positions); err != nil {
		t.Fatalf("no token count in stderr %q: %v", errOut, err)
	}
	return stdout, positions
}

// promptLen returns the number of tokens of prompt with BOS.
func promptLen(t *testing.T, tokPath, prompt string) int {
	t.Helper()
	tk, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	return len(tk.Encode(prompt, true, false))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// markClassifier makes the adapter in dir a classifier's, as "sora
// finetune --task classify" writes it: modules_to_save lists its head.
func markClassifier(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, adapter.ConfigFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := json.Unmarshal(raw, &conf); err != nil {
		t.Fatal(err)
	}
	conf["modules_to_save"] = []string{"score"}
	if raw, err = json.Marshal(conf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestGenerateNonASCII checks that characters the vocabulary spells in
// byte tokens are printed, in the echoed prompt and in the continuation:
// printing each byte token alone, as llama2.c does, dropped them ("Le café
// ☕ 日本" came out as "Le café  "). The whole output must be the decoded
// greedy sequence, computed here with the model directly.
func TestGenerateNonASCII(t *testing.T) {
	model, tokPath := stories260K(t)
	const prompt = "Le café ☕ 日本"
	tk, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	ids := tk.Encode(prompt, true, false)
	steps := len(ids) + 20
	w, _, err := llama2c.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	g := newGenerator(t, testbackend.Open(t, "cpu"), w)
	seq, err := g.Generate(ids, llama.GenerateOptions{Steps: steps, Stop: []int{tokenizer.BOS}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := tk.DecodeAll(seq)
	if !strings.HasPrefix(want, prompt) || strings.ContainsFunc(want, func(r rune) bool { return r < ' ' && r != '\n' }) {
		t.Fatalf("the reference text %q should start with the prompt and hold no control characters", want)
	}
	got, n := generateCLI(t, "--model", model, "--tokenizer", tokPath, "--prompt", prompt, "--steps", fmt.Sprint(steps))
	if got != want+"\n" || n != steps {
		t.Errorf("printed (%d positions)\n%q\nwant (%d)\n%q", n, got, steps, want+"\n")
	}
}
