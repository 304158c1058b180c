package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testdata"
	"github.com/sora-go/sora/models/hf"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
)

// qwen2Folder writes stories260K as a Qwen2-shaped Hugging Face folder:
// its weights, plus random q/k/v biases, with its tokenizer.
func qwen2Folder(t *testing.T) string {
	t.Helper()
	return familyFolder(t, func(c *llama.Config) { c.AttentionBias = llama.BiasQKV })
}

// familyFolder writes stories260K as a Hugging Face folder of the family
// that family sets in its config, with its tokenizer: its weights, plus
// random values for any tensor the family adds (Qwen2's biases).
func familyFolder(t *testing.T, family func(*llama.Config)) string {
	t.Helper()
	model, tokPath := stories260K(t)
	w, _, err := llama2c.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	cfg := w.Config
	family(&cfg)
	q, err := llama.NewWeights(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, p := range q.Params() {
		if src, ok := w.Param(p.Name); ok {
			copy(p.Data, src.Data)
			continue
		}
		for i := range p.Data { // a bias
			p.Data[i] = float32(rng.NormFloat64() * 0.05)
		}
	}
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	files, err := tok.HFFiles()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "model")
	if err := hf.Write(dir, q, &hf.WriteOptions{Files: files}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestFullFinetuneQwen2 checks that full fine-tuning of a model with
// attention biases saves the trained biases with the trained weights, in
// a folder that loads as the same architecture.
func TestFullFinetuneQwen2(t *testing.T) {
	dir := qwen2Folder(t)
	base, err := hf.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	code, _, errOut := runCLI(t, "finetune", "--model", dir, "--data", testdata.Path(t, "datasets/llm-adapters/boolq/train.json"),
		"--max-train", "16", "--steps", "2", "--batch", "8", "--method", "full", "--lr", "1e-3", "--out", out)
	if code != 0 {
		t.Fatalf("finetune --method full: exit status %d; stderr:\n%s", code, errOut)
	}
	saved, err := hf.Load(filepath.Join(out, "adapter", "model"))
	if err != nil {
		t.Fatal(err)
	}
	if saved.Config.AttentionBias != llama.BiasQKV {
		t.Fatalf("the saved model's attention bias is %v, want q/k/v biases", saved.Config.AttentionBias)
	}
	cfgJSON, err := os.ReadFile(filepath.Join(out, "adapter", "model", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfgJSON), `"qwen2"`) {
		t.Errorf("the saved config.json does not name qwen2:\n%s", cfgJSON)
	}
	changed := 0
	for _, p := range base.Params() {
		if !strings.HasSuffix(p.Name, ".bias") {
			continue
		}
		s, ok := saved.Param(p.Name)
		if !ok {
			t.Fatalf("the saved model lacks %s", p.Name)
		}
		for i := range p.Data {
			if s.Data[i] != p.Data[i] {
				changed++
				break
			}
		}
	}
	if changed == 0 {
		t.Error("no saved bias differs from the base's: the trained biases were not saved")
	}
}

// TestMergeKeepsFamily checks that an adapter merged into a Qwen2 or
// Mistral folder, and a full fine-tune of one, are written back as that
// architecture (model_type and architectures in config.json), so that
// transformers and these commands read them as the model they came from.
func TestMergeKeepsFamily(t *testing.T) {
	data := testdata.Path(t, "datasets/llm-adapters/boolq/train.json")
	for _, tc := range []struct {
		name, arch string
		family     func(*llama.Config)
	}{
		{"qwen2", "Qwen2ForCausalLM", func(c *llama.Config) { c.AttentionBias = llama.BiasQKV }},
		{"mistral", "MistralForCausalLM", func(c *llama.Config) { c.Family = llama.FamilyMistral }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := familyFolder(t, tc.family)
			runs := t.TempDir()
			for _, method := range []string{"lora", "full"} {
				out := filepath.Join(runs, method)
				if code, _, errOut := runCLI(t, "finetune", "--model", dir, "--data", data, "--max-train", "8",
					"--steps", "1", "--batch", "8", "--method", method, "--out", out); code != 0 {
					t.Fatalf("finetune --method %s: exit status %d; stderr:\n%s", method, code, errOut)
				}
			}
			merged := filepath.Join(runs, "merged")
			if code, _, errOut := runCLI(t, "merge", "--model", dir, "--adapter", filepath.Join(runs, "lora", "adapter"), "--out", merged); code != 0 {
				t.Fatalf("merge: exit status %d; stderr:\n%s", code, errOut)
			}
			for _, folder := range []string{merged, filepath.Join(runs, "full", "adapter", "model")} {
				b, err := os.ReadFile(filepath.Join(folder, "config.json"))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), `"model_type": "`+tc.name+`"`) || !strings.Contains(string(b), tc.arch) {
					t.Errorf("%s/config.json does not say %s / %s:\n%s", folder, tc.name, tc.arch, b)
				}
			}
		})
	}
}
