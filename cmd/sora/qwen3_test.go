package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/hf"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
	"github.com/sora-go/sora/peft/adapter"
)

// qwen3Width is the head width of qwen3Folder's model: stories260K's 8
// heads over a width of 64 are 8 wide; these are 12 wide, so q_proj is
// [96, 64] and o_proj [64, 96].
const qwen3Width = 12

// qwen3Folder writes a Qwen3-shaped Hugging Face folder with stories260K's
// tokenizer: stories260K's embedding, norms and feed-forward, and random
// attention projections for heads qwen3Width wide, with random q_norm and
// k_norm weights near one and Qwen3's rope theta and norm epsilon. Its
// text is no story; the commands only need a model of Qwen3's shape.
func qwen3Folder(t *testing.T) string {
	t.Helper()
	model, tokPath := stories260K(t)
	w, _, err := llama2c.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	cfg := w.Config
	cfg.HeadWidth, cfg.QKNorm = qwen3Width, true
	cfg.RopeTheta, cfg.NormEps = 1e6, 1e-6
	cfg.RopeLayout = llama.RopeHalfSplit
	q, err := llama.NewWeights(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, p := range q.Params() {
		if src, ok := w.Param(p.Name); ok && len(src.Data) == len(p.Data) && !strings.Contains(p.Name, ".self_attn.") {
			copy(p.Data, src.Data)
			continue
		}
		if len(p.Shape) == 1 { // q_norm, k_norm
			for i := range p.Data {
				p.Data[i] = float32(1 + 0.3*rng.NormFloat64())
			}
			continue
		}
		std := 1 / float64(p.Shape[1])
		for i := range p.Data {
			p.Data[i] = float32(8 * std * rng.NormFloat64())
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
	dir := filepath.Join(t.TempDir(), "qwen3")
	if err := hf.Write(dir, q, &hf.WriteOptions{Files: files}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkQwen3Folder checks that folder holds a Qwen3 model as transformers
// would read it (model_type qwen3, Qwen3ForCausalLM, head_dim) that loads
// back with QK-norm and the base's head width, and returns its weights.
func checkQwen3Folder(t *testing.T, folder string) *llama.Weights {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(folder, hf.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := hf.ParseConfig(raw, folder)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"model_type": "qwen3"`, `"Qwen3ForCausalLM"`, `"head_dim": 12`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("%s/config.json lacks %s:\n%s", folder, want, raw)
		}
	}
	if !cfg.QKNorm || cfg.HeadDim() != qwen3Width || cfg.HeadWidth != qwen3Width {
		t.Errorf("%s reads back as %+v; want QK-norm and heads %d wide", folder, cfg, qwen3Width)
	}
	w, err := hf.Load(folder)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestQwen3FinetuneMerge runs the tool chain on a Qwen3-shaped folder:
// finetune with LoRA and with SORA, merge each adapter, and check that the
// merged folder is a Qwen3 model whose logits are those of the base model
// carrying the adapter unmerged, and that the merge kept q_norm and k_norm
// (which no PEFT method trains); then a full fine-tune, whose saved model
// is a Qwen3 folder too.
func TestQwen3FinetuneMerge(t *testing.T) {
	dir := qwen3Folder(t)
	base := checkQwen3Folder(t, dir)
	tok := filepath.Join(dir, "tokenizer.json")
	tk, err := tokenizer.Load(tok)
	if err != nil {
		t.Fatal(err)
	}
	prompt := tk.Encode("Once upon a time, there was a little girl named", true, false)
	work := t.TempDir()
	trainPath := filepath.Join(work, "train.json")
	writeBoolQ(t, trainPath, 16)
	b := testbackend.Open(t, "cpu")
	baseLogits := logits(t, newModel(t, b, base), prompt)

	for _, method := range []string{"lora", "sora"} {
		t.Run(method, func(t *testing.T) {
			out := filepath.Join(work, method)
			if code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", dir, "--data", trainPath,
				"--method", method, "--steps", "3", "--batch", "4", "--lr", "2e-2", "--out", out); code != 0 {
				t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
			}
			adapterDir := filepath.Join(out, "adapter")
			m := newModel(t, b, base)
			pm, _, err := adapter.Load(adapterDir, m)
			if err != nil {
				t.Fatal(err)
			}
			want := logits(t, m, prompt)
			pm.Unload()
			if d := maxAbsDiff(want, baseLogits); d < 1e-3 {
				t.Fatalf("the trained adapter moves the logits by at most %g: the test would prove little", d)
			}
			merged := filepath.Join(work, method+"-merged")
			if code, stdout, errOut := runCLI(t, "merge", "--backend", "cpu", "--model", dir, "--adapter", adapterDir, "--out", merged); code != 0 {
				t.Fatalf("merge: status %d\n%s\n%s", code, stdout, errOut)
			}
			mw := checkQwen3Folder(t, merged)
			got := logits(t, newModel(t, b, mw), prompt)
			t.Logf("merged logits differ from base + adapter by %.3g (logits up to %.3g; the adapter moved them by %.3g)",
				maxAbsDiff(got, want), maxAbs(want), maxAbsDiff(want, baseLogits))
			if d := maxAbsDiff(got, want); d > 1e-4*(1+maxAbs(want)) {
				t.Errorf("the merged model's logits differ from the base model's with the adapter by %g", d)
			}
			for i := range base.Layers {
				if !slices.Equal(mw.Layers[i].QNorm, base.Layers[i].QNorm) || !slices.Equal(mw.Layers[i].KNorm, base.Layers[i].KNorm) {
					t.Errorf("layer %d: the merge changed q_norm or k_norm", i)
				}
			}
			if _, err := os.Stat(filepath.Join(merged, "tokenizer.json")); err != nil {
				t.Errorf("the merged folder lacks the base's tokenizer: %v", err)
			}
		})
	}

	t.Run("full", func(t *testing.T) {
		out := filepath.Join(work, "full")
		if code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", dir, "--data", trainPath,
			"--method", "full", "--steps", "2", "--batch", "4", "--lr", "1e-3", "--out", out); code != 0 {
			t.Fatalf("finetune --method full: status %d\n%s\n%s", code, stdout, errOut)
		}
		saved := checkQwen3Folder(t, filepath.Join(out, "adapter", "model"))
		if slices.Equal(saved.Layers[0].Wq, base.Layers[0].Wq) || slices.Equal(saved.Layers[0].Wo, base.Layers[0].Wo) {
			t.Error("the saved q_proj or o_proj equals the base's: the trained weights were not saved")
		}
		for i := range base.Layers {
			if saved.Layers[i].QNorm == nil || saved.Layers[i].KNorm == nil {
				t.Fatalf("layer %d of the saved model has no QK-norm weights", i)
			}
		}
	})
}
