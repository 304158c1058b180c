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

// archCase is an architecture the commands must read and write as
// itself: a Hugging Face folder of its shape is made from stories260K,
// with stories260K's tokenizer, and what the commands write from it must
// be a folder of the same architecture.
type archCase struct {
	name, arch string              // model_type and architectures[0] in config.json
	config     func(*llama.Config) // makes stories260K's config the architecture's
	seed       uint64              // the random tensors are drawn from PCG(seed, seed+1)
	// fill sets p, a tensor of the architecture's weights, from
	// stories260K's weights st or at random from rng.
	fill    func(p llama.Param, st *llama.Weights, rng *rand.Rand)
	json    []string // what config.json must say besides model_type and the architecture
	trained []string // tensors that full fine-tuning must change
}

// gemma3Window is the sliding window of the Gemma 3 folder's model:
// shorter than the BoolQ rows and prompts, so that it takes effect in
// training and in the logits compared.
const gemma3Window = 6

// archCases: Qwen2 (stories260K with random q/k/v biases), Mistral
// (stories260K labelled Mistral), Qwen3 (heads 12 wide over stories260K's
// width 64, so q_proj is [96, 64] and o_proj [64, 96], with QK-norm and
// Qwen3's rope theta and norm epsilon) and Gemma 3 (heads 12 wide, GeGLU,
// query_pre_attn_scalar 12, layers sliding, sliding, full, sliding, full
// with a window of gemma3Window, and Gemma's rotary bases), and Gemma 2
// (Gemma 3's layer without QK-norm, alternating sliding and full layers,
// one rotary base, the published soft-caps of 50 and 30). Their text is
// no story; the commands only need models of these shapes.
var archCases = []archCase{
	{
		name: "qwen2", arch: "Qwen2ForCausalLM", seed: 3,
		config: func(c *llama.Config) { c.AttentionBias = llama.BiasQKV },
		fill:   copyOrBias,
		// The k bias is not listed: a bias on every key adds the same
		// q·b to all of a query's scores, which the softmax ignores, so
		// its gradient is zero.
		trained: []string{"model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.v_proj.bias"},
	},
	{
		name: "mistral", arch: "MistralForCausalLM", seed: 3,
		config:  func(c *llama.Config) { c.Family = llama.FamilyMistral },
		fill:    copyOrBias,
		trained: []string{"model.layers.0.self_attn.q_proj.weight"},
	},
	{
		name: "qwen3", arch: "Qwen3ForCausalLM", seed: 5,
		config: func(c *llama.Config) {
			c.HeadWidth, c.QKNorm = 12, true
			c.RopeTheta, c.NormEps = 1e6, 1e-6
			c.RopeLayout = llama.RopeHalfSplit
		},
		// stories260K's embedding, norms and feed-forward, random
		// attention projections for the wider heads and random q_norm and
		// k_norm weights near one.
		fill: func(p llama.Param, st *llama.Weights, rng *rand.Rand) {
			if src, ok := st.Param(p.Name); ok && len(src.Data) == len(p.Data) && !strings.Contains(p.Name, ".self_attn.") {
				copy(p.Data, src.Data)
				return
			}
			if len(p.Shape) == 1 { // q_norm, k_norm
				for i := range p.Data {
					p.Data[i] = float32(1 + 0.3*rng.NormFloat64())
				}
				return
			}
			randomProjection(p, rng)
		},
		json:    []string{`"head_dim": 12`},
		trained: []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.o_proj.weight"},
	},
	{
		name: "gemma3_text", arch: "Gemma3ForCausalLM", seed: 7,
		config: func(c *llama.Config) {
			c.HeadWidth, c.QKNorm, c.Family, c.Activation = 12, true, llama.FamilyGemma3, llama.GELUTanh
			c.QueryPreAttnScalar, c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = 12, "ssfsf", gemma3Window, 1e4
			c.RopeTheta, c.NormEps, c.RopeLayout = 1e6, 1e-6, llama.RopeHalfSplit
		},
		fill:    gemmaFill,
		json:    []string{`"sliding_window": 6`, `"layer_types"`, `"hidden_activation": "gelu_pytorch_tanh"`, `"final_logit_softcapping": null`},
		trained: []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.2.mlp.gate_proj.weight"},
	},
	{
		name: "gemma2", arch: "Gemma2ForCausalLM", seed: 11,
		config: func(c *llama.Config) {
			c.HeadWidth, c.Family, c.Activation = 12, llama.FamilyGemma2, llama.GELUTanh
			c.QueryPreAttnScalar, c.LayerKinds, c.SlidingWindow, c.LocalRopeTheta = 12, "sfsfs", gemma3Window, c.RopeTheta
			c.AttnLogitSoftcap, c.FinalLogitSoftcap, c.NormEps, c.RopeLayout = 50, 30, 1e-6, llama.RopeHalfSplit
		},
		fill:    gemmaFill,
		json:    []string{`"sliding_window": 6`, `"layer_types"`, `"attn_logit_softcapping": 50.0`, `"final_logit_softcapping": 30.0`},
		trained: []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.2.mlp.gate_proj.weight"},
	},
}

// gemmaFill makes a Gemma folder's tensors from stories260K's: its
// embedding and feed-forward weights, its norms as Gemma's offsets
// (w − 1), random attention for the wider heads (q_proj [96, 64]), random
// output norms, q_norm and k_norm (Gemma 3's) around 0.
func gemmaFill(p llama.Param, st *llama.Weights, rng *rand.Rand) {
	// LLaMA's feed-forward norm is post_attention_layernorm, Gemma's
	// pre_feedforward_layernorm; Gemma's post_attention_layernorm is an
	// output norm LLaMA lacks.
	src, ok := st.Param(strings.Replace(p.Name, "pre_feedforward_layernorm", "post_attention_layernorm", 1))
	ok = ok && len(src.Data) == len(p.Data)
	switch {
	case ok && len(p.Shape) == 2 && !strings.Contains(p.Name, ".self_attn."):
		copy(p.Data, src.Data)
	case ok && len(p.Shape) == 1 && !strings.Contains(p.Name, "post_attention"):
		for i, v := range src.Data {
			p.Data[i] = v - 1 // LLaMA's w is Gemma's 1 + w
		}
	case len(p.Shape) == 1:
		for i := range p.Data {
			p.Data[i] = float32(0.3 * rng.NormFloat64())
		}
	default:
		randomProjection(p, rng)
	}
}

// copyOrBias copies stories260K's tensor of p's name and draws those it
// lacks (Qwen2's biases) from N(0, 0.05²).
func copyOrBias(p llama.Param, st *llama.Weights, rng *rand.Rand) {
	if src, ok := st.Param(p.Name); ok {
		copy(p.Data, src.Data)
		return
	}
	for i := range p.Data {
		p.Data[i] = float32(rng.NormFloat64() * 0.05)
	}
}

// randomProjection fills the matrix p from N(0, (8/columns)²): large
// enough that the random attention moves the logits.
func randomProjection(p llama.Param, rng *rand.Rand) {
	std := 1 / float64(p.Shape[1])
	for i := range p.Data {
		p.Data[i] = float32(8 * std * rng.NormFloat64())
	}
}

// archFolder writes a's folder from stories260K's weights st, with the
// tokenizer files, and returns it and its config as it reads back (in the
// half-split layout Hugging Face stores).
func archFolder(t *testing.T, a archCase, st *llama.Weights, files map[string][]byte) (string, llama.Config) {
	t.Helper()
	cfg := st.Config
	a.config(&cfg)
	w, err := llama.NewWeights(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(a.seed, a.seed+1))
	for _, p := range w.Params() {
		a.fill(p, st, rng)
	}
	dir := filepath.Join(t.TempDir(), a.name)
	if err := hf.Write(dir, w, &hf.WriteOptions{Files: files}); err != nil {
		t.Fatal(err)
	}
	cfg.RopeLayout = llama.RopeHalfSplit
	return dir, cfg
}

// checkArchFolder checks that folder holds a's architecture as
// transformers would read it (model_type, architectures and a.json in
// config.json) and that its config reads back as cfg, and returns its
// weights.
func checkArchFolder(t *testing.T, a archCase, cfg llama.Config, folder string) *llama.Weights {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(folder, hf.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range append([]string{`"model_type": "` + a.name + `"`, `"` + a.arch + `"`}, a.json...) {
		if !strings.Contains(string(raw), want) {
			t.Errorf("%s/config.json lacks %s:\n%s", folder, want, raw)
		}
	}
	got, err := hf.ParseConfig(raw, folder)
	if err != nil {
		t.Fatal(err)
	}
	if got != cfg {
		t.Errorf("%s reads back as\n%+v\nwant\n%+v", folder, got, cfg)
	}
	w, err := hf.Load(folder)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestArchFinetuneMerge runs the tool chain on a folder of each of
// archCases: finetune with LoRA and with SORA, merge each adapter, and check
// that the merged folder is of the same architecture (model_type and
// architectures in config.json, so that transformers and these commands
// read it as the model it came from), that its logits (over a prompt
// longer than any window) are those of the base model carrying the
// adapter unmerged, that the merge kept every norm weight (which no PEFT
// method trains) as stored, and that it holds the base's
// tokenizer; then a full fine-tune, whose saved model is a folder of the
// same architecture with every tensor of the base and trained weights.
func TestArchFinetuneMerge(t *testing.T) {
	model, tokPath := stories260K(t)
	st, _, err := llama2c.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	files, err := tk.HFFiles()
	if err != nil {
		t.Fatal(err)
	}
	prompt := tk.Encode("Once upon a time, there was a little girl named Lily. She", true, false)
	trainPath := filepath.Join(t.TempDir(), "train.json")
	writeBoolQ(t, trainPath, 16)
	b := testbackend.Open(t, "cpu")
	for _, a := range archCases {
		t.Run(a.name, func(t *testing.T) {
			dir, cfg := archFolder(t, a, st, files)
			base := checkArchFolder(t, a, cfg, dir)
			if len(prompt) <= 2*cfg.SlidingWindow {
				t.Fatalf("a prompt of %d tokens does not reach past the window of %d", len(prompt), cfg.SlidingWindow)
			}
			work := t.TempDir()
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
					mw := checkArchFolder(t, a, cfg, merged)
					got := logits(t, newModel(t, b, mw), prompt)
					t.Logf("merged logits differ from base + adapter by %.3g (logits up to %.3g; the adapter moved them by %.3g)",
						maxAbsDiff(got, want), maxAbs(want), maxAbsDiff(want, baseLogits))
					if d := maxAbsDiff(got, want); d > 1e-4*(1+maxAbs(want)) {
						t.Errorf("the merged model's logits differ from the base model's with the adapter by %g", d)
					}
					for _, p := range base.Params() {
						if q, ok := mw.Param(p.Name); strings.Contains(p.Name, "norm") && (!ok || !slices.Equal(q.Data, p.Data)) {
							t.Errorf("the merge changed %s", p.Name)
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
				saved := checkArchFolder(t, a, cfg, filepath.Join(out, "adapter", "model"))
				for _, p := range base.Params() {
					if q, ok := saved.Param(p.Name); !ok || !slices.Equal(q.Shape, p.Shape) {
						t.Fatalf("the saved model lacks %s %v", p.Name, p.Shape)
					}
				}
				for _, name := range a.trained {
					p, _ := base.Param(name)
					if q, _ := saved.Param(name); slices.Equal(q.Data, p.Data) {
						t.Errorf("the saved %s equals the base's: the trained weights were not saved", name)
					}
				}
				// Full fine-tuning trains every parameter: the embedding
				// and every norm (QK-norm's, Gemma's four per layer) too.
				// Only a key bias, whose gradient is zero (see qwen2's
				// case), stays.
				for _, p := range base.Params() {
					if q, _ := saved.Param(p.Name); !strings.HasSuffix(p.Name, "k_proj.bias") && slices.Equal(q.Data, p.Data) {
						t.Errorf("the saved %s equals the base's: full fine-tuning did not train it", p.Name)
					}
				}
			})
		})
	}
}
