package gguf

// The tests here run exported files in llama.cpp itself, through the
// prebuilt binaries of the npm package node-llama-cpp and the driver
// scripts/llamacpp/run.mjs. They are opt-in:
//
//	scripts/fetch-llamacpp.sh .llamacpp
//	SORA_LLAMACPP_DIR=$PWD/.llamacpp go test ./models/gguf/ -run LlamaCpp -v
//
// and skip, saying how to enable them, without SORA_LLAMACPP_DIR.

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"math/rand/v2"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/internal/stories"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
	"github.com/sora-go/sora/peft"
)

func loadStories(tb testing.TB) (*llama.Weights, *tokenizer.Tokenizer) { return stories.Load(tb) }

// lcRequest and lcResponse are run.mjs's input and output.
type lcRequest struct {
	Model        string   `json:"model"`
	ContextSize  int      `json:"contextSize,omitempty"`
	ParseSpecial *bool    `json:"parseSpecial,omitempty"`
	Tokenize     []string `json:"tokenize,omitempty"`
	Generate     []lcJob  `json:"generate,omitempty"`
	Next         []lcJob  `json:"next,omitempty"`
}

type lcJob struct {
	Tokens []int `json:"tokens"`
	Max    int   `json:"max,omitempty"`
	Top    int   `json:"top,omitempty"`
}

type lcResponse struct {
	Architecture string  `json:"architecture"`
	ChatTemplate *string `json:"chatTemplate"`
	BOS          *int    `json:"bos"`
	EOS          *int    `json:"eos"`
	AddBos       bool    `json:"addBos"`
	Tokenize     [][]int `json:"tokenize"`
	Generate     []struct {
		Tokens []int `json:"tokens"`
		EOG    bool  `json:"eog"`
	} `json:"generate"`
	Next []struct {
		IDs   []int     `json:"ids"`
		Probs []float64 `json:"probs"`
	} `json:"next"`
}

// llamaCppDir returns SORA_LLAMACPP_DIR, skipping the test where it is
// unset or node is missing.
func llamaCppDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SORA_LLAMACPP_DIR")
	if dir == "" {
		t.Skip("SORA_LLAMACPP_DIR is not set: run scripts/fetch-llamacpp.sh DIR and set SORA_LLAMACPP_DIR=DIR to run exported GGUF files in llama.cpp")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed; the llama.cpp tests run it")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "node-llama-cpp")); err != nil {
		t.Fatalf("SORA_LLAMACPP_DIR=%s has no node-llama-cpp (run scripts/fetch-llamacpp.sh %s): %v", dir, dir, err)
	}
	return dir
}

// runLlamaCpp sends req to the driver and returns llama.cpp's answers.
func runLlamaCpp(t *testing.T, dir string, req lcRequest) lcResponse {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "request.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join("..", "..", "scripts", "llamacpp", "run.mjs"), path)
	cmd.Env = append(os.Environ(), "SORA_LLAMACPP_DIR="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("llama.cpp on %s: %v\n%s", req.Model, err, stderr.String())
	}
	var resp lcResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("llama.cpp's answer: %v\n%s", err, out)
	}
	if len(resp.Tokenize) != len(req.Tokenize) || len(resp.Generate) != len(req.Generate) || len(resp.Next) != len(req.Next) {
		t.Fatalf("llama.cpp answered %d/%d/%d of %d/%d/%d jobs", len(resp.Tokenize), len(resp.Generate), len(resp.Next), len(req.Tokenize), len(req.Generate), len(req.Next))
	}
	return resp
}

// agreement compares a greedy continuation of this project's (ours, at
// least as long) with llama.cpp's: the number of leading tokens that agree.
func agreement(ours, theirs []int) int {
	n := 0
	for n < len(theirs) && n < len(ours) && ours[n] == theirs[n] {
		n++
	}
	return n
}

// distError compares llama.cpp's next-token distribution (its top ids and
// probabilities) with this project's log-probabilities: whether the top
// token agrees, and the largest difference of log-probabilities over
// llama.cpp's top ids.
func distError(ours []float64, ids []int, probs []float64) (top1 bool, maxErr float64) {
	best, _ := argmax(ours)
	top1 = len(ids) > 0 && ids[0] == best
	for i, id := range ids {
		maxErr = math.Max(maxErr, math.Abs(ours[id]-math.Log(probs[i])))
	}
	return top1, maxErr
}

// corpusTexts returns the texts of the tokenizer package's test corpora.
func corpusTexts(t *testing.T) []string {
	t.Helper()
	var texts []string
	for _, name := range []string{"corpus.json", "corpus-random.json", "corpus-norm.json", "corpus-nasty.json"} {
		b, err := os.ReadFile(filepath.Join("..", "tokenizer", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		var items []struct{ Text string }
		if err := json.Unmarshal(b, &items); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, it := range items {
			texts = append(texts, it.Text)
		}
	}
	return texts
}

// checkTokenize compares llama.cpp's tokenization of texts with the
// tokenizer's (no BOS), returning the number that agree and describing the
// first few that do not. Texts for which excuse returns a reason are
// counted apart (excused) rather than described.
func checkTokenize(t *testing.T, tok *tokenizer.Tokenizer, texts []string, got [][]int, excuse func(string) bool) (same, excused int, diffs []string) {
	t.Helper()
	for i, text := range texts {
		want := tok.Encode(text, false, false)
		if fmt.Sprint(want) == fmt.Sprint(got[i]) {
			same++
			continue
		}
		if excuse != nil && excuse(text) {
			excused++
			continue
		}
		if len(diffs) < 8 {
			n := agreement(want, got[i])
			diffs = append(diffs, fmt.Sprintf("%.80q: from token %d on, ours %v, llama.cpp's %v", text, n, clip(want[n:], 8), clip(got[i][n:], 8)))
		}
	}
	return same, excused, diffs
}

func clip(x []int, n int) []int {
	if len(x) <= n {
		return x
	}
	return x[:n]
}

// typeCheck is what an exported type must show against this project's
// model: F32 must agree exactly (greedy) and to float32 rounding
// (distributions); the 16- and 8-bit types are reported, and held only to
// bounds that catch a broken file (wrong layout, wrong scales), not the
// rounding they bring.
type typeCheck struct {
	typ          Type
	exactGreedy  bool    // every greedy token must agree
	maxLogErr    float64 // bound on log-probability differences (nats)
	minTop1Share float64 // least share of prompts whose top token agrees
}

var typeChecks = []typeCheck{
	{F32, true, 2e-3, 1},
	{F16, false, 0.25, 0.6},
	{BF16, false, 0.5, 0.5},
	{Q8_0, false, 0.5, 0.5},
}

// TestLlamaCppStories260K exports stories260K, a pretrained llama2.c
// checkpoint, with its tokenizer, in each type, and runs it in llama.cpp:
// greedy continuations of 100 tokens from several prompts, next-token
// distributions along a text, and the tokenization of the test corpora
// must be this project's.
func TestLlamaCppStories260K(t *testing.T) {
	dir := llamaCppDir(t)
	w, tok := loadStories(t)
	b := openCPU(t)
	m := soraModel(t, b, w)
	prompts := [][]int{{tokenizer.BOS}}
	for _, s := range []string{"Once upon a time", "The little dog", "Lily and Ben went to", "One day, a big"} {
		prompts = append(prompts, tok.Encode(s, true, false))
	}
	// Distributions after every 8th prefix of a story.
	story := tok.Encode("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.", true, false)
	var cuts [][]int
	for n := 2; n <= len(story); n += 4 {
		cuts = append(cuts, story[:n])
	}
	const steps = 100
	want := make([][]int, len(prompts))
	for i, p := range prompts {
		want[i] = soraGreedy(t, m, p, steps)
	}
	wantDist := make([][]float64, len(cuts))
	for i, c := range cuts {
		wantDist[i] = soraLogProbs(t, m, c)
	}
	texts := corpusTexts(t)
	no := false

	for _, tc := range typeChecks {
		t.Run(tc.typ.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "stories260K-"+tc.typ.String()+".gguf")
			plan, err := Export(path, w, tok, Options{Type: tc.typ, Name: "stories260K"})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range plan.Notes {
				t.Logf("note: %s", n)
			}
			req := lcRequest{Model: path, ParseSpecial: &no}
			if tc.typ == F32 {
				req.Tokenize = texts
			}
			for _, p := range prompts {
				req.Generate = append(req.Generate, lcJob{Tokens: p, Max: steps})
			}
			for _, c := range cuts {
				req.Next = append(req.Next, lcJob{Tokens: c, Top: 20})
			}
			resp := runLlamaCpp(t, dir, req)
			if resp.BOS == nil || *resp.BOS != tokenizer.BOS || resp.EOS == nil || *resp.EOS != tokenizer.EOS || !resp.AddBos {
				t.Errorf("llama.cpp reads BOS %v, EOS %v, add BOS %v; want 1, 2, true", resp.BOS, resp.EOS, resp.AddBos)
			}
			compareRuns(t, tc, b, path, w.Config, prompts, want, cuts, wantDist, resp)
			if tc.typ == F32 {
				// llama.cpp's SentencePiece tokenizer writes spaces as
				// "▁" before it merges, so a "▁" in the text is a space
				// to it, where llama2.c keeps it a character of its own.
				hasMeta := func(s string) bool { return strings.Contains(s, "▁") }
				same, excused, diffs := checkTokenize(t, tok, texts, resp.Tokenize, hasMeta)
				t.Logf("tokenization: %d of %d corpus texts as llama2.c's tokenizer here; %d texts holding U+2581 \"▁\" differ, as llama.cpp reads it as a space", same, len(texts), excused)
				for _, d := range diffs {
					t.Errorf("tokenization differs: %s", d)
				}
			}
		})
	}
}

// compareRuns checks llama.cpp's greedy continuations and distributions
// (resp) for the file at path against this project's model (want,
// wantDist), as tc requires, and reports how close they are, and how close
// llama.cpp is to this project's decoder running the file's own
// (dequantized) weights.
func compareRuns(t *testing.T, tc typeCheck, b backend.Backend, path string, cfg llama.Config, prompts, want [][]int, cuts [][]int, wantDist [][]float64, resp lcResponse) {
	t.Helper()
	defer compareFileWeights(t, tc, b, path, cfg, prompts, cuts, resp)
	totalAgree, total := 0, 0
	for i, g := range resp.Generate {
		n := agreement(want[i], g.Tokens)
		totalAgree += n
		total += len(g.Tokens)
		if n < len(g.Tokens) {
			msg := fmt.Sprintf("prompt %d: llama.cpp's greedy continuation agrees for %d of %d tokens (ours %v..., llama.cpp's %v...)", i, n, len(g.Tokens), clip(want[i][n:], 5), clip(g.Tokens[n:], 5))
			if tc.exactGreedy {
				t.Error(msg)
			} else {
				t.Log(msg)
			}
		}
		if len(g.Tokens) == 0 {
			t.Errorf("prompt %d: llama.cpp generated nothing", i)
		}
	}
	top1, worst := 0, 0.0
	for i, d := range resp.Next {
		ok, e := distError(wantDist[i], d.IDs, d.Probs)
		if ok {
			top1++
		}
		worst = math.Max(worst, e)
	}
	share := float64(top1) / float64(len(resp.Next))
	t.Logf("%s: greedy tokens agreeing %d/%d; next-token top-1 agreement %d/%d; largest log-probability difference over llama.cpp's top 20: %.3g nats",
		tc.typ, totalAgree, total, top1, len(resp.Next), worst)
	if worst > tc.maxLogErr {
		t.Errorf("%s: log-probabilities differ by up to %.3g nats; bound %.3g", tc.typ, worst, tc.maxLogErr)
	}
	if share < tc.minTop1Share {
		t.Errorf("%s: top-1 agreement %.2f; bound %.2f", tc.typ, share, tc.minTop1Share)
	}
}

// compareFileWeights checks how close llama.cpp's runs (resp) are to this
// project's decoder running the weights the file holds (read back by this
// package and dequantized), and reports it: what remains is llama.cpp's own
// arithmetic, not the export's rounding. It checks this package's reading
// of the file against llama.cpp's, which compareRuns, comparing with the
// weights before the export, does not separate from the rounding.
//
// The tolerance is tc's, the bounds the type is held to against the
// original weights: llama.cpp rounds the activations to the weights' own
// type for its products (f16, bf16, q8_0 blocks of 32 with a scale), so
// what it adds is of the order of the export's rounding, which those
// bounds allow; measured here (x86-64, AVX-512), the largest
// log-probability differences are 0.006 (f16), 0.04 (bf16) and 0.19 nats
// (q8_0) against bounds of 0.25, 0.5 and 0.5. A file this package read
// otherwise than llama.cpp (another layout, scale or element type) differs
// by nats. Greedy continuations are reported only, as in compareRuns for
// these types: a near tie between two tokens may go either way under
// rounding, and the continuations part from there on.
func compareFileWeights(t *testing.T, tc typeCheck, b backend.Backend, path string, cfg llama.Config, prompts, cuts [][]int, resp lcResponse) {
	t.Helper()
	if tc.typ == F32 || t.Failed() {
		return // F32's file holds the original weights; or compareRuns failed already
	}
	m := modelFromFile(t, b, path, cfg)
	agree, total := 0, 0
	for i, g := range resp.Generate {
		agree += agreement(soraGreedy(t, m, prompts[i], len(g.Tokens)), g.Tokens)
		total += len(g.Tokens)
	}
	top1, worst := 0, 0.0
	for i, d := range resp.Next {
		ok, e := distError(soraLogProbs(t, m, cuts[i]), d.IDs, d.Probs)
		if ok {
			top1++
		}
		worst = math.Max(worst, e)
	}
	t.Logf("%s, against our decoder on the file's own weights: greedy tokens agreeing %d/%d; top-1 %d/%d; largest log-probability difference %.3g nats", tc.typ, agree, total, top1, len(resp.Next), worst)
	if worst > tc.maxLogErr {
		t.Errorf("%s, against our decoder on the file's own weights: log-probabilities differ by up to %.3g nats; bound %.3g", tc.typ, worst, tc.maxLogErr)
	}
	if share := float64(top1) / float64(len(resp.Next)); share < tc.minTop1Share {
		t.Errorf("%s, against our decoder on the file's own weights: top-1 agreement %.2f; bound %.2f", tc.typ, share, tc.minTop1Share)
	}
}

// TestLlamaCppMergedAdapter fine-tunes nothing but does what sora merge
// does after a fine-tune: a SORA adapter on every linear layer of
// stories260K, moved off its identity start, merged into the weights and
// exported (f32). llama.cpp must continue and score text as this project's
// model does with the adapter unmerged.
func TestLlamaCppMergedAdapter(t *testing.T) {
	dir := llamaCppDir(t)
	w, tok := loadStories(t)
	b := openCPU(t)
	base := soraModel(t, b, w)
	prompts := [][]int{{tokenizer.BOS}, tok.Encode("Once upon a time", true, false), tok.Encode("The cat sat", true, false)}
	const steps = 100

	m, err := llama.New(b, w)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	pm, err := peft.Inject(m, peft.Config{Method: peft.SORA, R: 4, Alpha: 8, RotationRank: 2, TargetModules: []string{peft.AllLinear}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(21, 22))
	for _, l := range pm.Layers() {
		for _, nt := range l.Tensors() {
			data, err := nt.Value.Download()
			if err != nil {
				t.Fatal(err)
			}
			for i := range data {
				data[i] += float32(0.05 * rng.NormFloat64())
			}
			b.Upload(nt.Value.Tensor(), data)
		}
	}
	want := make([][]int, len(prompts))
	wantDist := make([][]float64, len(prompts))
	changed := 0
	for i, p := range prompts {
		want[i] = soraGreedy(t, m, p, steps)
		wantDist[i] = soraLogProbs(t, m, p)
		if agreement(soraGreedy(t, base, p, steps), want[i]) < steps {
			changed++
		}
	}
	if changed == 0 {
		t.Fatal("the adapter changes no greedy continuation: the test would not tell merged from base weights")
	}
	if err := pm.MergeAndUnload(); err != nil {
		t.Fatal(err)
	}
	merged, err := m.Weights()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "stories260K-sora-merged.gguf")
	if _, err := Export(path, merged, tok, Options{Type: F32}); err != nil {
		t.Fatal(err)
	}
	req := lcRequest{Model: path}
	for _, p := range prompts {
		req.Generate = append(req.Generate, lcJob{Tokens: p, Max: steps})
		req.Next = append(req.Next, lcJob{Tokens: p, Top: 20})
	}
	resp := runLlamaCpp(t, dir, req)
	t.Logf("the adapter changes %d of %d greedy continuations of the base model", changed, len(prompts))
	compareRuns(t, typeChecks[0], b, path, merged.Config, prompts, want, prompts, wantDist, resp)
}

// hfCase is a random-weight model of one architecture's shape with a real
// tokenizer: tok names a folder of scripts/fetch-tokenizers.sh's
// (SORA_TOKENIZER_DIR), mini the small tokenizer of the tokenizer
// package's test data used where that is unset.
type hfCase struct {
	name, tok, mini string
	// vocab, where not 0, is the model's vocabulary in place of the
	// tokenizer's size.
	vocab int
	cfg   func(vocab int) llama.Config
	// steps is the greedy continuation's length; the prompts are short,
	// so a sliding window of 8 is crossed.
	steps int
	// checkNote, where set, is a note the export must make.
	checkNote string
}

func hfCases() []hfCase {
	gemmaKinds := func(layers, period int) string {
		k := make([]byte, layers)
		for l := range k {
			k[l] = llama.LayerSliding
			if (l+1)%period == 0 {
				k[l] = llama.LayerFull
			}
		}
		return string(k)
	}
	return []hfCase{
		{name: "llama3-rope-scaling", tok: "llama3.2", mini: "bl-llama3-mini", steps: 40, cfg: func(v int) llama.Config {
			return llama.Config{Dim: 64, HiddenDim: 96, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, VocabSize: v, MaxSeqLen: 256,
				NormEps: 1e-5, RopeTheta: 500000, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit,
				RopeScaling: llama.RopeScaling{Type: llama.RopeScalingLlama3, Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 64}}
		}},
		{name: "llama-bias-linear-rope", tok: "mistral", mini: "sp-metaspace", steps: 40, cfg: func(v int) llama.Config {
			return llama.Config{Dim: 48, HiddenDim: 80, NumLayers: 2, NumHeads: 3, NumKVHeads: 1, VocabSize: v, MaxSeqLen: 256,
				NormEps: 1e-6, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit, AttentionBias: llama.BiasQKVO,
				RopeScaling: llama.RopeScaling{Type: llama.RopeScalingLinear, Factor: 4}}
		}},
		{name: "mistral-window", tok: "mistral", mini: "sp-metaspace", steps: 40, checkNote: "no sliding window", cfg: func(v int) llama.Config {
			return llama.Config{Dim: 64, HiddenDim: 96, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, VocabSize: v, MaxSeqLen: 1024,
				NormEps: 1e-5, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit, Family: llama.FamilyMistral,
				LayerKinds: "ss", SlidingWindow: 64, LocalRopeTheta: 10000}
		}},
		{name: "nemo-head-dim", tok: "mistral-nemo", mini: "bl-tekken-mini", steps: 40, cfg: func(v int) llama.Config {
			return llama.Config{Dim: 64, HiddenDim: 96, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, HeadWidth: 24, VocabSize: v, MaxSeqLen: 256,
				NormEps: 1e-5, RopeTheta: 1e6, RopeLayout: llama.RopeHalfSplit, Family: llama.FamilyMistral}
		}},
		{name: "llama2-sentencepiece", tok: "llama2-sp", steps: 40, cfg: func(v int) llama.Config {
			return llama.Config{Dim: 64, HiddenDim: 96, NumLayers: 2, NumHeads: 4, NumKVHeads: 4, VocabSize: v, MaxSeqLen: 256,
				NormEps: 1e-5, RopeTheta: 10000, RopeLayout: llama.RopeHalfSplit}
		}},
		{name: "gpt2-tokenizer", tok: "gpt2", mini: "bl-gpt2-mini", steps: 40, cfg: func(v int) llama.Config {
			return llama.Config{Dim: 64, HiddenDim: 96, NumLayers: 2, NumHeads: 4, NumKVHeads: 4, VocabSize: v, MaxSeqLen: 256,
				NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true, RopeLayout: llama.RopeInterleaved}
		}},
		{name: "qwen2", tok: "qwen2.5", mini: "bl-qwen3-mini", steps: 40, cfg: func(v int) llama.Config {
			return llama.Config{Dim: 64, HiddenDim: 96, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, VocabSize: v, MaxSeqLen: 256,
				NormEps: 1e-6, RopeTheta: 1e6, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit, AttentionBias: llama.BiasQKV}
		}},
		{name: "qwen3-interleaved", tok: "qwen3", mini: "bl-qwen3-mini", steps: 40, cfg: func(v int) llama.Config {
			// Interleaved rows, as if converted from llama2.c: the export
			// permutes q/k and the QK-norm weights to NeoX order.
			return llama.Config{Dim: 64, HiddenDim: 96, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, HeadWidth: 32, VocabSize: v, MaxSeqLen: 256,
				NormEps: 1e-6, RopeTheta: 1e6, RopeLayout: llama.RopeInterleaved, QKNorm: true}
		}},
		{name: "gemma2", tok: "gemma2", mini: "sp-metaspace", steps: 40, cfg: func(v int) llama.Config {
			return llama.Config{Dim: 64, HiddenDim: 96, NumLayers: 4, NumHeads: 4, NumKVHeads: 2, HeadWidth: 32, VocabSize: v, MaxSeqLen: 256,
				NormEps: 1e-6, RopeTheta: 10000, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit, Family: llama.FamilyGemma2,
				Activation: llama.GELUTanh, QueryPreAttnScalar: 32, LayerKinds: gemmaKinds(4, 2), SlidingWindow: 8, LocalRopeTheta: 10000,
				AttnLogitSoftcap: 50, FinalLogitSoftcap: 30}
		}},
		{name: "gemma3", tok: "gemma3", mini: "sp-metaspace", vocab: 262144, steps: 40, cfg: func(v int) llama.Config {
			return llama.Config{Dim: 64, HiddenDim: 96, NumLayers: 6, NumHeads: 4, NumKVHeads: 1, HeadWidth: 32, VocabSize: v, MaxSeqLen: 256,
				NormEps: 1e-6, RopeTheta: 1e6, TiedEmbeddings: true, RopeLayout: llama.RopeHalfSplit, Family: llama.FamilyGemma3, QKNorm: true,
				Activation: llama.GELUTanh, QueryPreAttnScalar: 32, LayerKinds: gemmaKinds(6, 6), SlidingWindow: 8, LocalRopeTheta: 10000,
				RopeScaling: llama.RopeScaling{Type: llama.RopeScalingLinear, Factor: 8}}
		}},
		{name: "gemma3-untied", tok: "gemma3", mini: "sp-metaspace", vocab: 262144, steps: 40, cfg: func(v int) llama.Config {
			return llama.Config{Dim: 64, HiddenDim: 96, NumLayers: 6, NumHeads: 4, NumKVHeads: 1, HeadWidth: 32, VocabSize: v, MaxSeqLen: 256,
				NormEps: 1e-6, RopeTheta: 1e6, RopeLayout: llama.RopeInterleaved, Family: llama.FamilyGemma3, QKNorm: true,
				Activation: llama.GELUTanh, QueryPreAttnScalar: 32, LayerKinds: gemmaKinds(6, 6), SlidingWindow: 8, LocalRopeTheta: 10000}
		}},
	}
}

// loadCaseTokenizer loads a case's tokenizer: the real one where
// SORA_TOKENIZER_DIR has it, else its mini stand-in. real says which.
func loadCaseTokenizer(t *testing.T, c hfCase) (tok *tokenizer.Tokenizer, real bool) {
	t.Helper()
	if dir := os.Getenv("SORA_TOKENIZER_DIR"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, c.tok)); err == nil {
			tok, err := tokenizer.LoadDir(filepath.Join(dir, c.tok))
			if err != nil {
				t.Fatal(err)
			}
			return tok, true
		}
	}
	if c.mini == "" {
		t.Skipf("%s needs the real %s tokenizer (SORA_TOKENIZER_DIR from scripts/fetch-tokenizers.sh)", c.name, c.tok)
	}
	tok, err := tokenizer.LoadHF(filepath.Join("..", "tokenizer", "testdata", c.mini, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	return tok, false
}

// TestLlamaCppArchitectures exports random-weight models of every
// architecture's shape (Llama 3 with its rope scaling, LLaMA with biases and
// linear rope scaling, Mistral with a sliding window, Mistral Nemo's head
// width, Qwen2 with q/k/v biases, Qwen3 from interleaved rows, Gemma 2 and
// Gemma 3 with sliding windows crossed by the prompts, Gemma 3 untied) with
// real tokenizers (SORA_TOKENIZER_DIR; the tokenizer package's small test
// tokenizers otherwise), and checks in llama.cpp: the tokenization of the
// test corpora, greedy continuations and next-token distributions.
func TestLlamaCppArchitectures(t *testing.T) {
	dir := llamaCppDir(t)
	if os.Getenv("SORA_TOKENIZER_DIR") == "" {
		t.Log("SORA_TOKENIZER_DIR is not set: the models get the tokenizer package's small test tokenizers (scripts/fetch-tokenizers.sh fetches the real ones)")
	}
	texts := corpusTexts(t)
	b := openCPU(t)
	for _, c := range hfCases() {
		t.Run(c.name, func(t *testing.T) {
			tok, real := loadCaseTokenizer(t, c)
			vocab := tok.VocabSize()
			if c.vocab != 0 && real {
				vocab = c.vocab
			}
			cfg := c.cfg(vocab)
			w := randomWeights(t, cfg, 1)
			m := soraModel(t, b, w)
			path := filepath.Join(t.TempDir(), c.name+".gguf")
			const tmpl = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
			plan, err := Export(path, w, tok, Options{Type: F32, Name: c.name, ChatTemplate: tmpl})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: llama.cpp architecture %q, tokenizer %s (%d tokens)", c.name, plan.Arch, tok.Name(), vocab)
			found := c.checkNote == ""
			for _, n := range plan.Notes {
				t.Logf("note: %s", n)
				found = found || strings.Contains(n, c.checkNote)
			}
			if !found {
				t.Errorf("no note says %q", c.checkNote)
			}
			var prompts [][]int
			for _, s := range []string{"Hello, world", "The quick brown fox jumps over", "1 2 3"} {
				p := tok.Encode(s, true, false)
				if len(p) == 0 {
					p = []int{0}
				}
				prompts = append(prompts, p)
			}
			want := make([][]int, len(prompts))
			wantDist := make([][]float64, len(prompts))
			for i, p := range prompts {
				want[i] = soraGreedy(t, m, p, c.steps)
				wantDist[i] = soraLogProbs(t, m, p)
			}
			req := lcRequest{Model: path, Tokenize: texts}
			for _, p := range prompts {
				req.Generate = append(req.Generate, lcJob{Tokens: p, Max: c.steps})
				req.Next = append(req.Next, lcJob{Tokens: p, Top: 20})
			}
			resp := runLlamaCpp(t, dir, req)
			if wantBOS := tok.BOS(); (wantBOS >= 0) != resp.AddBos || wantBOS >= 0 && (resp.BOS == nil || *resp.BOS != wantBOS) {
				t.Errorf("llama.cpp adds BOS %v (id %v); the tokenizer's BOS is %d", resp.AddBos, resp.BOS, wantBOS)
			}
			if resp.Architecture != plan.Arch || resp.ChatTemplate == nil || *resp.ChatTemplate != tmpl {
				t.Errorf("node-llama-cpp reads architecture %q and chat template %v; want %q and %q", resp.Architecture, resp.ChatTemplate, plan.Arch, tmpl)
			}
			if resp.EOS == nil || *resp.EOS != tok.EOS() {
				t.Errorf("llama.cpp's EOS is %v; the tokenizer's is %d", resp.EOS, tok.EOS())
			}
			// A continuation may stop early at a token llama.cpp takes
			// for the end of generation; ours goes on, so compare only
			// as far as llama.cpp went.
			tc := typeChecks[0]
			if cfg.Activation == llama.GELUTanh {
				// ggml's CPU GELU looks its result up in a table indexed
				// by the input rounded to float16 (GGML_GELU_FP16), about
				// 1e-3 relative; the log-probabilities move by a few 1e-3.
				tc.maxLogErr = 5e-3
			}
			compareRuns(t, tc, b, path, cfg, prompts, want, prompts, wantDist, resp)
			excuse, why := excuses(t, tok, plan.Notes)
			same, excused, diffs := checkTokenize(t, tok, texts, resp.Tokenize, excuse)
			t.Logf("tokenization: %d of %d corpus texts as this project's tokenizer; %d differ as the export's notes say (%s)", same, len(texts), excused, why)
			for _, d := range diffs {
				t.Errorf("tokenization differs: %s", d)
			}
		})
	}
}

// excuses returns a predicate of the texts whose tokenization in llama.cpp
// the export's notes say may differ, and the notes' kinds: texts not in
// NFC (NFC-normalizing tokenizers), holding combining marks (tekken),
// starting with a space or holding an added token (Metaspace), or spelling
// out a token llama.cpp re-types as a control token.
func excuses(t *testing.T, tok *tokenizer.Tokenizer, notes []string) (func(string) bool, string) {
	t.Helper()
	var preds []func(string) bool
	var kinds []string
	for _, n := range notes {
		switch {
		case strings.HasPrefix(n, noteNFC):
			preds = append(preds, func(s string) bool { return !norm.NFC.IsNormalString(s) })
		case strings.HasPrefix(n, noteMarks):
			preds = append(preds, func(s string) bool {
				return strings.IndexFunc(s, func(r rune) bool { return unicode.Is(unicode.M, r) }) >= 0
			})
		case strings.HasPrefix(n, noteMetaspace):
			added := addedTexts(t, tok)
			preds = append(preds, func(s string) bool {
				if strings.HasPrefix(s, " ") || strings.HasPrefix(s, "▁") {
					return true
				}
				for _, a := range added {
					if strings.Contains(s, a) {
						return true
					}
				}
				return false
			})
		case strings.HasPrefix(n, noteControlLooking):
			var texts []string
			for _, q := range strings.Split(n[strings.Index(n, "tokens ")+len("tokens "):strings.Index(n, " control tokens")], ", ") {
				if u, err := strconv.Unquote(q); err == nil {
					texts = append(texts, u)
				}
			}
			preds = append(preds, func(s string) bool {
				for _, x := range texts {
					if strings.Contains(s, x) {
						return true
					}
				}
				return false
			})
		default:
			continue
		}
		kinds = append(kinds, strings.SplitN(n, ":", 2)[0])
	}
	if len(kinds) == 0 {
		kinds = []string{"none"}
	}
	return func(s string) bool {
		for _, p := range preds {
			if p(s) {
				return true
			}
		}
		return false
	}, strings.Join(kinds, "; ")
}

// addedTexts returns the contents of the tokenizer's added tokens.
func addedTexts(t *testing.T, tok *tokenizer.Tokenizer) []string {
	t.Helper()
	raw, err := tok.MarshalHF()
	if err != nil {
		t.Fatal(err)
	}
	var j tokenizerJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range j.AddedTokens {
		out = append(out, a.Content)
	}
	return out
}
