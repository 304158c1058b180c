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

// gemma3Window is the sliding window of gemma3Folder's model: shorter than
// the BoolQ rows and prompts, so that it takes effect in training and in
// the logits compared.
const gemma3Window = 6

// gemma3Folder writes a Gemma-3-shaped Hugging Face folder with
// stories260K's tokenizer: stories260K's embedding and feed-forward
// weights, its norms as Gemma's offsets (w − 1), random attention for
// heads 12 wide (q_proj [96, 64]), random output norms, q_norm and k_norm
// around 0, GeGLU, query_pre_attn_scalar 12, layers sliding, sliding,
// full, sliding, full with a window of gemma3Window and Gemma's rotary
// bases. Its text is no story; the commands only need a model of Gemma
// 3's shape.
func gemma3Folder(t *testing.T) string {
	t.Helper()
	model, tokPath := stories260K(t)
	w, _, err := llama2c.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	cfg := w.Config
	cfg.HeadWidth, cfg.QKNorm, cfg.Family, cfg.Activation = 12, true, llama.FamilyGemma3, llama.GELUTanh
	cfg.QueryPreAttnScalar, cfg.LayerKinds, cfg.SlidingWindow, cfg.LocalRopeTheta = 12, "ssfsf", gemma3Window, 1e4
	cfg.RopeTheta, cfg.NormEps, cfg.RopeLayout = 1e6, 1e-6, llama.RopeHalfSplit
	gw, err := llama.NewWeights(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, p := range gw.Params() {
		src, ok := w.Param(p.Name)
		switch {
		case ok && len(src.Data) == len(p.Data) && !strings.Contains(p.Name, ".self_attn.") && len(p.Shape) == 2:
			copy(p.Data, src.Data)
		case len(p.Shape) == 1 && ok && len(src.Data) == len(p.Data) && !strings.Contains(p.Name, "post_attention"):
			for i, v := range src.Data {
				p.Data[i] = v - 1 // LLaMA's w is Gemma's 1 + w
			}
		case len(p.Shape) == 1:
			for i := range p.Data {
				p.Data[i] = float32(0.3 * rng.NormFloat64())
			}
		default:
			std := 1 / float64(p.Shape[1])
			for i := range p.Data {
				p.Data[i] = float32(8 * std * rng.NormFloat64())
			}
		}
	}
	// LLaMA's feed-forward norm is post_attention_layernorm, Gemma's
	// pre_feedforward_layernorm.
	for i := range gw.Layers {
		for j, v := range w.Layers[i].FFNNorm {
			gw.Layers[i].FFNNorm[j] = v - 1
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
	dir := filepath.Join(t.TempDir(), "gemma3")
	if err := hf.Write(dir, gw, &hf.WriteOptions{Files: files}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkGemma3Folder checks that folder holds a Gemma 3 text model as
// transformers would read it (model_type gemma3_text, Gemma3ForCausalLM,
// layer_types, sliding_window, null soft-capping) that loads back as
// Gemma 3 with the base's layers and window, and returns its weights.
func checkGemma3Folder(t *testing.T, folder string) *llama.Weights {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(folder, hf.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := hf.ParseConfig(raw, folder)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"model_type": "gemma3_text"`, `"Gemma3ForCausalLM"`, `"sliding_window": 6`, `"layer_types"`,
		`"hidden_activation": "gelu_pytorch_tanh"`, `"final_logit_softcapping": null`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("%s/config.json lacks %s:\n%s", folder, want, raw)
		}
	}
	if cfg.Family != llama.FamilyGemma3 || cfg.LayerKinds != "ssfsf" || cfg.SlidingWindow != gemma3Window || cfg.HeadDim() != 12 {
		t.Errorf("%s reads back as %+v; want Gemma 3, layers ssfsf, window %d, heads 12 wide", folder, cfg, gemma3Window)
	}
	w, err := hf.Load(folder)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// sameNorms fails t where a layer's norm weights in got differ from want's.
func sameNorms(t *testing.T, got, want *llama.Weights, what string) {
	t.Helper()
	for i := range want.Layers {
		g, w := &got.Layers[i], &want.Layers[i]
		for _, p := range [][2][]float32{{g.AttnNorm, w.AttnNorm}, {g.PostAttnNorm, w.PostAttnNorm}, {g.FFNNorm, w.FFNNorm},
			{g.PostFFNNorm, w.PostFFNNorm}, {g.QNorm, w.QNorm}, {g.KNorm, w.KNorm}} {
			if !slices.Equal(p[0], p[1]) {
				t.Errorf("layer %d: %s changed a norm weight", i, what)
			}
		}
	}
	if !slices.Equal(got.FinalNorm, want.FinalNorm) {
		t.Errorf("%s changed the final norm", what)
	}
}

// TestGemma3FinetuneMerge runs the tool chain on a Gemma-3-shaped folder:
// finetune with LoRA and with SORA, merge each adapter, and check that the
// merged folder is a Gemma 3 model whose logits (over a prompt longer than
// the window) are those of the base model carrying the adapter unmerged,
// and that the merge kept every norm weight as stored; then a full
// fine-tune, whose saved model is a Gemma 3 folder with trained weights.
func TestGemma3FinetuneMerge(t *testing.T) {
	dir := gemma3Folder(t)
	base := checkGemma3Folder(t, dir)
	tk, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	prompt := tk.Encode("Once upon a time, there was a little girl named Lily. She", true, false)
	if len(prompt) <= 2*gemma3Window {
		t.Fatalf("a prompt of %d tokens does not reach past the window of %d", len(prompt), gemma3Window)
	}
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
			mw := checkGemma3Folder(t, merged)
			got := logits(t, newModel(t, b, mw), prompt)
			t.Logf("merged logits differ from base + adapter by %.3g (logits up to %.3g; the adapter moved them by %.3g)",
				maxAbsDiff(got, want), maxAbs(want), maxAbsDiff(want, baseLogits))
			if d := maxAbsDiff(got, want); d > 1e-4*(1+maxAbs(want)) {
				t.Errorf("the merged model's logits differ from the base model's with the adapter by %g", d)
			}
			sameNorms(t, mw, base, "the merge")
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
		saved := checkGemma3Folder(t, filepath.Join(out, "adapter", "model"))
		if slices.Equal(saved.Layers[0].Wq, base.Layers[0].Wq) || slices.Equal(saved.Layers[2].W1, base.Layers[2].W1) {
			t.Error("the saved q_proj or gate_proj equals the base's: the trained weights were not saved")
		}
		for i := range base.Layers {
			if saved.Layers[i].PostFFNNorm == nil || saved.Layers[i].QNorm == nil {
				t.Fatalf("layer %d of the saved model has no Gemma norms", i)
			}
		}
	})
}
