package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/hf"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/peft/adapter"
)

// TestAdapterAcrossFormats: an adapter made on stories260K.bin (llama2.c's
// interleaved q/k rows) computes the same logits and greedy text on the
// model converted to a Hugging Face folder (half-split rows) as on the
// .bin, and one made on the folder (as Hugging Face PEFT's are) the same on
// the .bin, for every kind of tensor an adapter has on q_proj/k_proj;
// merged into the other format's checkpoint it gives that model too.
// Before adapter files held Hugging Face's row order whatever the base's
// format, the other format's logits differed by O(1).
func TestAdapterAcrossFormats(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	hfDir := filepath.Join(dir, "hf")
	if code, stdout, errOut := runCLI(t, "convert", "--model", model, "--out", hfDir); code != 0 {
		t.Fatalf("convert: status %d\n%s\n%s", code, stdout, errOut)
	}
	bw, _, err := llama2c.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	hw, err := hf.Load(hfDir)
	if err != nil {
		t.Fatal(err)
	}
	if bw.Config.RopeLayout != llama.RopeInterleaved || hw.Config.RopeLayout != llama.RopeHalfSplit {
		t.Fatalf("layouts %v and %v: the test needs the .bin interleaved and the folder half-split", bw.Config.RopeLayout, hw.Config.RopeLayout)
	}
	tk, err := tokenizer.Load(tok)
	if err != nil {
		t.Fatal(err)
	}
	prompt := tk.Encode("Once upon a time, there was a little girl named", true, false)
	b := testbackend.Open(t, "cpu")
	open := func(w *llama.Weights) *llama.Model { return newModel(t, b, w) }
	base := logits(t, open(bw), prompt)
	formats := []format{
		{"llama2.c file", "bin", model, bw, func(p string) (*llama.Weights, error) { w, _, err := llama2c.Load(p); return w, err }},
		{"Hugging Face folder", "hf", hfDir, hw, hf.Load},
	}

	qk := []string{"q_proj", "k_proj"}
	for i, cfg := range []peft.Config{
		{Method: peft.LoRA, R: 4, Alpha: 8, TargetModules: []string{peft.AllLinear}},
		{Method: peft.DoRA, R: 2, Alpha: 4, TargetModules: qk},
		{Method: peft.SORA, R: 2, Alpha: 4, RotationRank: 2, TargetModules: qk},
		{Method: peft.PreDiag, R: 2, Alpha: 4, TargetModules: qk},
		{Method: peft.PostOrtho, R: 2, Alpha: 4, RotationRank: 3, ExactRotation: true, TargetModules: qk},
		{Method: peft.OFT, OFTBlockSize: 4, TargetModules: qk},
	} {
		for _, from := range formats {
			t.Run(string(cfg.Method)+"/from "+from.name, func(t *testing.T) {
				adapterDir := filepath.Join(dir, fmt.Sprintf("adapter-%d-%s", i, from.short))
				src := open(from.w)
				pm, err := peft.Inject(src, cfg)
				if err != nil {
					t.Fatal(err)
				}
				perturbAdapter(t, b, pm, uint64(i))
				if err := adapter.Save(adapterDir, pm, adapter.Meta{BaseModel: from.path, TaskType: "CAUSAL_LM"}); err != nil {
					t.Fatal(err)
				}
				want := logits(t, src, prompt)
				wantText := greedy(t, src, prompt, 24)
				pm.Unload()
				if d := maxAbsDiff(want, base); d < 0.1 {
					t.Fatalf("the adapter moves the logits by at most %g: too little for the test to tell orders apart", d)
				}
				// The same format reproduces the training model exactly; the
				// other computes attention scores in another summation order.
				tol := func(to format) float64 {
					if to.short == from.short {
						return 0
					}
					return 1e-4 * (1 + maxAbs(want))
				}
				for _, to := range formats {
					m := open(to.w)
					pm, _, err := adapter.Load(adapterDir, m)
					if err != nil {
						t.Fatal(err)
					}
					got := logits(t, m, prompt)
					t.Logf("on the %s: logits differ by at most %.3g from the training model's (logits up to %.3g)", to.name, maxAbsDiff(got, want), maxAbs(want))
					if d := maxAbsDiff(got, want); d > tol(to) {
						t.Errorf("on the %s the adapted logits differ from the training model's by %g (logits up to %g)", to.name, d, maxAbs(want))
					}
					if text := greedy(t, m, prompt, 24); !slices.Equal(text, wantText) {
						t.Errorf("on the %s greedy decoding gives %q, the training model %q", to.name, tk.DecodeAll(text), tk.DecodeAll(wantText))
					}
					pm.Unload()
				}
				// Merged into the other format's checkpoint, by "sora merge".
				to := formats[0]
				if from.short == to.short {
					to = formats[1]
				}
				merged := filepath.Join(dir, fmt.Sprintf("merged-%d-%s", i, to.short))
				if to.short == "bin" {
					merged += ".bin"
				}
				if code, stdout, errOut := runCLI(t, "merge", "--backend", "cpu", "--model", to.path, "--adapter", adapterDir, "--out", merged); code != 0 {
					t.Fatalf("merge: status %d\n%s\n%s", code, stdout, errOut)
				}
				mw, err := to.load(merged)
				if err != nil {
					t.Fatal(err)
				}
				if got := logits(t, open(mw), prompt); maxAbsDiff(got, want) > tol(to) {
					t.Errorf("the adapter merged into the %s: logits differ from the training model's by %g", to.name, maxAbsDiff(got, want))
				}
			})
		}
	}
}

// format is a checkpoint format of stories260K.
type format struct {
	name, short string
	path        string // the base model in this format
	w           *llama.Weights
	load        func(path string) (*llama.Weights, error)
}

// TestFinetunedAdapterAcrossFormats is the user's path: "sora finetune" on
// the .bin, then "sora generate --adapter" on the .bin and on its
// conversion, and "sora merge" onto the folder (writing into a folder
// that does not exist yet), all printing one text (which differs from the
// base model's).
func TestFinetunedAdapterAcrossFormats(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath := filepath.Join(dir, "train.json")
	writeBoolQ(t, trainPath, 16)
	out := filepath.Join(dir, "run")
	if code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath,
		"--method", "lora", "--steps", "4", "--batch", "4", "--lr", "2e-2", "--out", out); code != 0 {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}
	hfDir := filepath.Join(dir, "hf")
	if code, stdout, errOut := runCLI(t, "convert", "--model", model, "--out", hfDir); code != 0 {
		t.Fatalf("convert: status %d\n%s\n%s", code, stdout, errOut)
	}
	adapterDir := filepath.Join(out, "adapter")
	// Into a folder that does not exist yet: merge must make it, as it
	// does for a .bin (it once failed here for a Hugging Face base).
	merged := filepath.Join(dir, "missing", "merged-hf")
	if code, stdout, errOut := runCLI(t, "merge", "--backend", "cpu", "--model", hfDir, "--adapter", adapterDir, "--out", merged); code != 0 {
		t.Fatalf("merge: status %d\n%s\n%s", code, stdout, errOut)
	}
	const prompt = "Once upon a time"
	gen := func(args ...string) string {
		text, _ := generateCLI(t, append(args, "--tokenizer", tok, "--prompt", prompt, "--steps", "60")...)
		return text
	}
	plain := gen("--model", model)
	onBin := gen("--model", model, "--adapter", adapterDir)
	onHF := gen("--model", hfDir, "--adapter", adapterDir)
	fromMerged := gen("--model", merged)
	if onBin == plain {
		t.Fatalf("the fine-tuned adapter does not change the greedy text (%q): the test would prove nothing", plain)
	}
	if onHF != onBin || fromMerged != onBin {
		t.Errorf("greedy text with the adapter:\n  .bin            %q\n  HF folder       %q\n  merged into HF  %q", onBin, onHF, fromMerged)
	}
	if !strings.HasPrefix(onBin, prompt) {
		t.Errorf("generated text %q does not start with the prompt", onBin)
	}
}

// perturbAdapter adds seeded noise to every adapter tensor, so that every
// kind of tensor (lora_B, magnitudes, diagonals, rotations) departs from
// its initial value and the order of its rows matters.
func perturbAdapter(t *testing.T, b backend.Backend, pm *peft.Model, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	for _, p := range pm.Trainable() {
		h, err := p.Download()
		if err != nil {
			t.Fatal(err)
		}
		for i := range h {
			h[i] += float32(0.2 * rng.NormFloat64())
		}
		b.Upload(p.Tensor(), h)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

// logits returns m's logits [len(prompt), vocab] for the prompt.
func logits(t *testing.T, m *llama.Model, prompt []int) []float32 {
	t.Helper()
	g := graph.New(m.Backend())
	defer g.Close()
	g.SetNoGrad(true)
	ids := make([]int32, len(prompt))
	for i, id := range prompt {
		ids[i] = int32(id)
	}
	v, err := m.Forward(g, llama.Batch{Tokens: ids, Size: 1, Len: len(ids)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := v.Download()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// greedy returns the n tokens m chooses greedily after the prompt.
func greedy(t *testing.T, m *llama.Model, prompt []int, n int) []int {
	t.Helper()
	g, err := m.NewGenerator(len(prompt) + n)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	seq, err := g.Generate(prompt, llama.GenerateOptions{Steps: len(prompt) + n}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return seq[len(prompt):]
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func maxAbs(a []float32) float64 {
	m := 0.0
	for _, v := range a {
		m = math.Max(m, math.Abs(float64(v)))
	}
	return m
}
