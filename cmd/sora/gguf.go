package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sora-go/sora/models/chat"
	"github.com/sora-go/sora/models/gguf"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
)

// The GGUF output of merge and convert: an --out ending in .gguf writes
// one file for llama.cpp, Ollama and LM Studio (package gguf) instead of
// the base model's own format.

// defaultGGUFType is the tensor type of a .gguf --out without --gguf-type:
// f16, as llama.cpp's converter writes by default, at half the size of
// f32 and accurate enough that stories260K continues 500 of 500 greedy
// tokens as in f32 in llama.cpp; every llama.cpp build runs it (bf16 needs
// a CPU with bfloat16 support to run fast).
const defaultGGUFType = "f16"

// ggufFlags are the flags of a command that can write a .gguf --out.
type ggufFlags struct{ typ string }

func (g *ggufFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&g.typ, "gguf-type", defaultGGUFType, "tensor `TYPE` of a .gguf --out: f16, bf16, q8_0 (8-bit blocks, about half f16's size, a little less accurate) or f32; norms and biases stay f32, and q8_0 matrices whose rows are not a multiple of 32 long are written f16")
}

// isGGUF reports whether out names a GGUF file (by its extension).
func isGGUF(out string) bool { return strings.EqualFold(filepath.Ext(out), ".gguf") }

// ggufOptions checks the flags and returns the export options.
func (g *ggufFlags) options() (gguf.Options, error) {
	t, err := gguf.ParseType(g.typ)
	if err != nil {
		return gguf.Options{}, fmt.Errorf("--gguf-type %q: expected f16, bf16, q8_0 or f32", g.typ)
	}
	return gguf.Options{Type: t}, nil
}

// checkGGUFOut checks that out can take a GGUF file before anything is
// read: a file path, missing (its parent folders are made) or a GGUF file,
// which is replaced. A folder, or a file of another kind, is refused. It
// reports whether out is replaced.
func checkGGUFOut(out string) (replacing bool, err error) {
	st, err := statOut(out)
	switch {
	case err != nil || st == nil:
		return false, err
	case st.IsDir():
		return false, fmt.Errorf("--out %s is a folder; a .gguf --out is one file", out)
	}
	f, err := os.Open(out)
	if err != nil {
		return false, fmt.Errorf("--out %s: %w", out, err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || string(magic) != gguf.Magic {
		return false, fmt.Errorf("--out %s exists and is not a GGUF file; refusing to replace it (give a new path, or remove it first)", out)
	}
	return true, nil
}

// ggufTokenizer loads the tokenizer that goes into the GGUF file of the
// model at model: tokPath, else the model's Hugging Face folder's (a
// llama2.c checkpoint needs tokPath), checked against the vocabulary.
func ggufTokenizer(model, tokPath string, vocab int) (*tokenizer.Tokenizer, error) {
	src, err := tokenizerSource(model, tokPath)
	if err != nil {
		return nil, fmt.Errorf("a .gguf file holds the model's tokenizer: %w", err)
	}
	tok, err := tokenizer.Load(src)
	if err != nil {
		return nil, err
	}
	if err := tok.CheckVocab(vocab); err != nil {
		return nil, fmt.Errorf("tokenizer %s does not fit model %s: %w", src, model, err)
	}
	return tok, nil
}

// ggufChat fills in o's chat template and padding token: the template
// text given (an adapter's, trained with), else the model folder's
// default chat template (where it has one), and the folder's pad_token.
// A folder template that does not parse here is still written (llama.cpp
// has its own reader), with a warning on stderr.
func ggufChat(o *gguf.Options, model string, template []byte, stderr io.Writer) {
	o.ChatTemplate = string(template)
	st, err := os.Stat(model)
	if err != nil || !st.IsDir() {
		return
	}
	if o.ChatTemplate == "" {
		t, err := chat.LoadDir(model)
		switch {
		case err == nil:
			o.ChatTemplate = t.Text
		case !errors.Is(err, chat.ErrNoTemplate):
			fmt.Fprintf(stderr, "warning: the chat template of %s is not written into the .gguf file: %v\n", model, err)
		}
	}
	o.PadToken = padToken(model)
}

// padToken returns the pad_token of a model folder's tokenizer_config.json
// or special_tokens_map.json (a string or {"content": ...}), "" where
// neither names one.
func padToken(dir string) string {
	for _, name := range []string{"tokenizer_config.json", "special_tokens_map.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		var v struct {
			Pad json.RawMessage `json:"pad_token"`
		}
		if json.Unmarshal(b, &v) != nil || len(v.Pad) == 0 {
			continue
		}
		var s string
		if json.Unmarshal(v.Pad, &s) == nil {
			return s
		}
		var obj struct {
			Content string `json:"content"`
		}
		if json.Unmarshal(v.Pad, &obj) == nil && obj.Content != "" {
			return obj.Content
		}
	}
	return ""
}

// writeGGUF exports src with tok to out and says what it wrote on stdout
// and what llama.cpp will do differently (the plan's notes) on stderr.
func writeGGUF(cmd, out string, src llama.Source, tok *tokenizer.Tokenizer, o gguf.Options, replacing bool, stdout, stderr io.Writer) error {
	plan, err := gguf.ExportSource(out, src, tok, o)
	if err != nil {
		return err
	}
	var size int64
	if st, err := os.Stat(out); err == nil {
		size = st.Size()
	}
	what := ""
	if replacing {
		what = ", replacing the file that was there"
	}
	tmpl := "no chat template"
	if o.ChatTemplate != "" {
		tmpl = "its chat template"
	}
	fmt.Fprintf(stdout, "wrote %s (%.1f MB%s): GGUF for llama.cpp, architecture %s, %d tensors in %s (norms and biases f32), tokenizer %s with %s\n",
		out, float64(size)/1e6, what, plan.Arch, len(plan.Tensors), o.Type, tok.Name(), tmpl)
	for _, n := range plan.Notes {
		fmt.Fprintf(stderr, "sora %s: note: %s\n", cmd, n)
	}
	return nil
}

// convertGGUF is "sora convert" with a .gguf --out: the llama2.c checkpoint
// (with its tokenizer) or Hugging Face folder at model, written as one
// GGUF file.
func convertGGUF(model, tokPath, out string, shard int64, gf ggufFlags, stdout, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "sora convert: %v\n", err)
		return code
	}
	if shard != 0 {
		return fail(exitUsage, fmt.Errorf("--shard-size %d: a .gguf --out is one file", shard))
	}
	o, err := gf.options()
	if err != nil {
		return fail(exitUsage, err)
	}
	if abs(out) == abs(model) {
		return fail(exitUsage, fmt.Errorf("--out must not be the model itself"))
	}
	replacing, err := checkGGUFOut(out)
	if err != nil {
		return fail(exitUsage, err)
	}
	bm, err := openBase(model)
	if err != nil {
		return fail(exitFailure, err)
	}
	defer bm.close()
	tok, err := ggufTokenizer(model, tokPath, bm.config().VocabSize)
	if err != nil {
		return fail(exitFailure, err)
	}
	if err := gguf.Check(bm.config(), tok, o); err != nil {
		return fail(exitFailure, err)
	}
	ggufChat(&o, model, nil, stderr)
	var src llama.Source = bm.src
	if bm.src == nil {
		if src, err = gguf.WeightsSource(bm.w); err != nil {
			return fail(exitFailure, err)
		}
	}
	if err := writeGGUF("convert", out, src, tok, o, replacing, stdout, stderr); err != nil {
		return fail(exitFailure, err)
	}
	return exitOK
}
