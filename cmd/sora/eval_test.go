package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
)

// writeRows writes rows as an LLM-Adapters JSON file in dir.
func writeRows(t *testing.T, dir, name string, rows []data.Example) string {
	t.Helper()
	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// longInstruction returns a question padded so that its prompt encodes to
// between lo and hi tokens with BOS.
func longInstruction(t *testing.T, tk *tokenizer.Tokenizer, lo, hi int) string {
	t.Helper()
	const q = "\n\nIs the fox quick? Answer format: true/false"
	pad := ""
	for _, w := range strings.Fields(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 200)) {
		n := len(tk.Encode(data.Prompt(pad+q, ""), true, false))
		if n >= lo {
			if n > hi {
				t.Fatalf("padding overshot: %d tokens, want %d to %d", n, lo, hi)
			}
			return pad + q
		}
		pad += w + " "
	}
	t.Fatalf("could not pad a prompt to %d tokens", lo)
	return ""
}

// TestEvalLongPrompts checks that eval generates from the whole prompt the
// loss scored, with as many tokens as fit in the model's positions, and
// says how many prompts had less room than --max-new-tokens. Prompts were
// cut from the left to seq_len − --max-new-tokens without a word: a
// 490-token prompt lost its start at --max-new-tokens 32, a 160-token one
// kept 131 tokens at --max-new-tokens 380 (and none was cut at 511 or
// more, where the limit fell to "none"). Each generation must equal the
// model's own greedy continuation of the whole prompt, computed here.
func TestEvalLongPrompts(t *testing.T) {
	model, tokPath := stories260K(t)
	dir := t.TempDir()
	tk, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	w, _, err := llama2c.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	seqLen := w.Config.MaxSeqLen
	rows := []data.Example{
		{Instruction: longInstruction(t, tk, seqLen-22, seqLen-12), Output: "the correct answer is true", Answer: "true"},
		{Instruction: longInstruction(t, tk, 150, 170), Output: "the correct answer is false", Answer: "false"},
		{Instruction: "Is 2 small? Answer format: true/false", Output: "the correct answer is true", Answer: "true"},
	}
	path := writeRows(t, dir, "test.json", rows)
	m, err := llama.New(testbackend.Open(t, "cpu"), w)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	g, err := m.NewGenerator(0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, tc := range []struct {
		maxNew int
		short  int // prompts with room for fewer than maxNew tokens
	}{{32, 1}, {380, 2}, {600, 3}} {
		t.Run(fmt.Sprint(tc.maxNew), func(t *testing.T) {
			js := filepath.Join(dir, fmt.Sprintf("eval%d.json", tc.maxNew))
			code, out, errOut := runCLI(t, "eval", "--backend", "cpu", "--model", model, "--tokenizer", tokPath, "--data", path,
				"--max-len", fmt.Sprint(seqLen), "--max-new-tokens", fmt.Sprint(tc.maxNew), "--show", "0", "--json", js)
			if code != 0 {
				t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			want := fmt.Sprintf("note: %s: %d of 3 prompts leave room for fewer than --max-new-tokens %d in the model's %d positions: they generate only as many tokens as fit\n", path, tc.short, tc.maxNew, seqLen)
			if !strings.Contains(out, want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
			if strings.Contains(out, "keep only their last") {
				t.Errorf("stdout says prompts were cut:\n%s", out)
			}
			var rep evalReport
			readJSON(t, js, &rep)
			if len(rep.Predictions) != len(rows) {
				t.Fatalf("%d predictions; want %d", len(rep.Predictions), len(rows))
			}
			for i, r := range rows {
				p := tk.Encode(r.Prompt(), true, false)
				seq, err := g.Generate(p, llama.GenerateOptions{Steps: min(len(p)+tc.maxNew, seqLen), Stop: []int{tokenizer.EOS, tokenizer.BOS}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := rep.Predictions[i].Output, tk.DecodeAll(seq[len(p):min(len(seq), len(p)+tc.maxNew)]); got != want {
					t.Errorf("row %d (%d-token prompt): generated\n%q\nwant the continuation of the whole prompt\n%q", i+1, len(p), got, want)
				}
			}
		})
	}
}
