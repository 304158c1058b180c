package llama_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/models/hf"
	"github.com/sora-go/sora/models/internal/reference"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
)

// TestStories260KAgreesWithLlama2c checks the model on the real pretrained
// checkpoint against the host reference forward (which reproduces
// llama2.c): greedy generation from "Once upon a time" gives the same tokens
// for 100 steps, the logits at every position agree closely, and the text is
// llama2.c's. Both rotary layouts are run: the Hugging Face one on q/k rows
// permuted from the llama2.c file.
func TestStories260KAgreesWithLlama2c(t *testing.T) {
	w, tok := loadStories(t)
	const steps = 100
	prompt := tok.Encode("Once upon a time", true, false)
	ref, err := reference.New(w)
	if err != nil {
		t.Fatal(err)
	}
	want, err := reference.Greedy(ref, prompt, steps)
	if err != nil {
		t.Fatal(err)
	}
	if got := printed(tok, want); !strings.HasPrefix(got, knownText) {
		t.Fatalf("reference text %q does not start with llama2.c's %q", got, knownText)
	}
	b := openCPU(t)
	half, err := w.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if err := half.ToLayout(llama.RopeHalfSplit); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		w       *llama.Weights
		perHead bool
	}{{"interleaved", w, false}, {"half-split", half, false}, {"interleaved/per-head", w, true}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newModel(t, b, tc.w)
			llama.SetPerHeadAttention(m, tc.perHead)
			gen, err := m.NewGenerator(0)
			if err != nil {
				t.Fatal(err)
			}
			defer gen.Close()
			for _, byToken := range []bool{false, true} {
				got, err := gen.Generate(prompt, llama.GenerateOptions{Steps: steps, Stop: []int{tokenizer.BOS}, TokenByToken: byToken}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("token-by-token %v: tokens differ from the reference:\n got %v\nwant %v\ntext %q", byToken, got, want, printed(tok, got))
				}
			}
			if len(want) != steps+1 {
				t.Fatalf("reference stopped after %d tokens; the test wants %d steps", len(want), steps)
			}
			if got := printed(tok, want); !strings.HasPrefix(got, knownText) {
				t.Fatalf("text %q does not start with llama2.c's %q", got, knownText)
			}
			// Logits position by position along the greedy path.
			refm, err := reference.New(w)
			if err != nil {
				t.Fatal(err)
			}
			kc, err := m.NewCache(1, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer kc.Free()
			g := graph.New(b)
			defer g.Close()
			var worst float64
			for pos := 0; pos < steps; pos++ {
				lv, err := m.Decode(g, kc, []int32{int32(want[pos])}, 1, false)
				if err != nil {
					t.Fatal(err)
				}
				got := download(t, lv)
				g.Reset()
				rl, err := refm.Forward(want[pos], pos)
				if err != nil {
					t.Fatal(err)
				}
				worst = max(worst, maxRelDiff(got, rl))
			}
			t.Logf("%d positions: largest logit difference %.3g (relative to max(1, |logit|))", steps, worst)
			if worst > 1e-4 {
				t.Fatalf("logits differ from the reference by %.3g", worst)
			}
		})
	}
}

// TestForwardMatchesReference checks the training forward over whole
// sequences against the reference's one-position-at-a-time forward, on a
// tiny random model with grouped-query attention, tied and untied, in
// both rotary layouts.
func TestForwardMatchesReference(t *testing.T) {
	b := openCPU(t)
	for _, tied := range []bool{true, false} {
		for _, layout := range []llama.RopeLayout{llama.RopeInterleaved, llama.RopeHalfSplit} {
			cfg := tinyConfig(tied, layout)
			w := randomWeights(t, cfg, 11)
			m := newModel(t, b, w)
			rng := rand.New(rand.NewPCG(3, 4))
			const B, T = 3, 9
			ids := randomTokens(rng, B*T, cfg.VocabSize)
			g := graph.New(b)
			lv, err := m.Forward(g, llama.Batch{Tokens: ids, Size: B, Len: T})
			if err != nil {
				t.Fatal(err)
			}
			if s := lv.Shape(); len(s) != 3 || s[0] != B || s[1] != T || s[2] != cfg.VocabSize {
				t.Fatalf("logits shape %v, want [%d %d %d]", s, B, T, cfg.VocabSize)
			}
			got := download(t, lv)
			g.Close()
			samePositions(t, got, referenceLogits(t, w, ids, B), B, T, cfg.VocabSize, 1e-5,
				fmt.Sprintf("tied=%v %v: the training forward's logits", tied, layout), "the reference")
		}
	}
}

// TestDecodeMatchesForward checks that generation through the KV cache
// gives the training forward's logits at every position: one token at a
// time, and in chunks (a prefill, then single tokens, then a chunk that
// exercises the causal mask with a query offset), for a batch of two, with
// both ways the cache attends (all heads at once and per key/value head).
func TestDecodeMatchesForward(t *testing.T) {
	b := openCPU(t)
	for _, tied := range []bool{true, false} {
		for _, layout := range []llama.RopeLayout{llama.RopeInterleaved, llama.RopeHalfSplit} {
			for _, perHead := range []bool{false, true} {
				cfg := tinyConfig(tied, layout)
				m := newModel(t, b, randomWeights(t, cfg, 21))
				llama.SetPerHeadAttention(m, perHead)
				rng := rand.New(rand.NewPCG(5, 6))
				const B, T = 2, 11
				V := cfg.VocabSize
				ids := randomTokens(rng, B*T, V)
				g := graph.New(b)
				lv, err := m.Forward(g, llama.Batch{Tokens: ids, Size: B, Len: T})
				if err != nil {
					t.Fatal(err)
				}
				want := download(t, lv)
				g.Reset()
				for _, chunks := range [][]int{
					{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
					{4, 1, 1, 5},
					{11},
				} {
					got := decodeChunks(t, m, g, ids, B, T, chunks)
					samePositions(t, got, want, B, T, V, 1e-5, fmt.Sprintf("tied=%v %v per-head=%v chunks %v: cached logits", tied, layout, perHead, chunks), "the training forward")
					// The last-position form, over the prefix up to each
					// chunk's end, returns that chunk's last row.
					end := 0
					for _, n := range chunks {
						end += n
						if n == 1 {
							continue
						}
						kc, err := m.NewCache(B, 16)
						if err != nil {
							t.Fatal(err)
						}
						pre := make([]int32, 0, B*end)
						for row := range B {
							pre = append(pre, ids[row*T:row*T+end]...)
						}
						lv, err := m.Decode(g, kc, pre, end, false)
						if err != nil {
							t.Fatal(err)
						}
						last := download(t, lv)
						for row := range B {
							p := end - 1
							if d := maxRelDiff(last[row*V:(row+1)*V], want[(row*T+p)*V:(row*T+p+1)*V]); d > 1e-5 {
								t.Fatalf("last-position logits of row %d differ by %.3g", row, d)
							}
						}
						kc.Free()
						g.Reset()
					}
				}
				g.Close()
			}
		}
	}
}

// TestHuggingFaceRoundTrip writes a random untied model with grouped-query
// attention as a Hugging Face checkpoint (q/k rows permuted to the
// half-split layout) and checks that the model loaded from it computes the
// logits of the original, which runs in llama2.c's interleaved layout.
func TestHuggingFaceRoundTrip(t *testing.T) {
	b := openCPU(t)
	cfg := tinyConfig(false, llama.RopeInterleaved)
	w := randomWeights(t, cfg, 131)
	dir := filepath.Join(t.TempDir(), "hf")
	if err := hf.Write(dir, w, nil); err != nil {
		t.Fatal(err)
	}
	hw, err := hf.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if hw.Config.RopeLayout != llama.RopeHalfSplit {
		t.Fatalf("loaded layout %v, want half-split", hw.Config.RopeLayout)
	}
	rng := rand.New(rand.NewPCG(13, 14))
	bt := llama.Batch{Tokens: randomTokens(rng, 2*10, cfg.VocabSize), Size: 2, Len: 10}
	orig, loaded := forwardLogits(t, newModel(t, b, w), bt.Tokens, bt.Size), forwardLogits(t, newModel(t, b, hw), bt.Tokens, bt.Size)
	if d := maxRelDiff(loaded, orig); d > 1e-5 {
		t.Fatalf("the model loaded from the Hugging Face folder differs by %.3g", d)
	}
}
