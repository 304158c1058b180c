package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/sora-go/sora/internal/atomicfile"
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
// reports whether out is replaced. The temporary files of out that an
// interrupted export left beside it (each as large as the model) are
// removed, each named on stderr.
func checkGGUFOut(out string, stderr io.Writer) (replacing bool, err error) {
	st, err := statOut(out)
	if err == nil && (st == nil || !st.IsDir()) {
		for _, p := range staleGGUFTemporaries(out) {
			if os.Remove(p) == nil {
				fmt.Fprintf(stderr, "removed %s, the unfinished file of an interrupted export to %s\n", p, out)
			}
		}
	}
	switch {
	case err != nil:
		return false, err
	case st == nil:
		return false, checkOutWritable(out)
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
	return true, checkOutWritable(out)
}

// staleGGUFTemporaries returns the paths of the temporary files beside out
// that the atomic write of out makes (see atomicfile.Temporary): regular
// files alone, never the folders another writer would make. One being
// written by an export to out that runs now would go too, which then fails
// when it renames it; two exports to one file race anyway.
func staleGGUFTemporaries(out string) []string {
	dir, base := filepath.Split(out)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var stale []string
	for _, e := range ents {
		target, old, ok := atomicfile.Temporary(e.Name())
		if ok && !old && target == base && e.Type().IsRegular() {
			stale = append(stale, filepath.Join(dir, e.Name()))
		}
	}
	return stale
}

// ggufTokenizerGiven checks, before anything is read, that the model at
// model has a tokenizer for its GGUF file: --tokenizer (tokPath), or a
// Hugging Face folder's own. A model that does not exist is left for the
// load to report.
func ggufTokenizerGiven(model, tokPath string) error {
	if _, err := os.Stat(model); err != nil {
		return nil
	}
	if _, err := tokenizerSource(model, tokPath); err != nil {
		return fmt.Errorf("a .gguf file holds the model's tokenizer: %w", err)
	}
	return nil
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
// text given (an adapter's, trained with) with the variables of the JSON
// object vars (its --chat-var values, nil where none), else the model
// folder's default chat template with those of the folder's
// adapterVarsFile (which merge writes beside a merged model's template),
// and the folder's pad_token. The variables are written into the template
// (see bakeChatVars), since llama.cpp renders it without them. A folder
// template that does not parse here is still written (llama.cpp has its
// own reader), with a warning on stderr. It returns what llama.cpp will
// do differently (variables it could not write), to be noted on stderr.
func ggufChat(o *gguf.Options, model string, template, vars []byte, stderr io.Writer) ([]string, error) {
	o.ChatTemplate = string(template)
	varsFrom := "the adapter's " + adapterVarsFile
	if st, err := os.Stat(model); err == nil && st.IsDir() {
		if o.ChatTemplate == "" {
			t, err := chat.LoadDir(model)
			switch {
			case err == nil:
				o.ChatTemplate = t.Text
				varsFrom = filepath.Join(model, adapterVarsFile)
				if vars, err = os.ReadFile(varsFrom); err != nil && !errors.Is(err, os.ErrNotExist) {
					return nil, err
				}
			case !errors.Is(err, chat.ErrNoTemplate):
				fmt.Fprintf(stderr, "warning: the chat template of %s is not written into the .gguf file: %v\n", model, err)
			}
		}
		o.PadToken = padToken(model)
		o.BOSID, o.EOSID = configTokenIDs(model)
	}
	if o.ChatTemplate == "" || len(vars) == 0 {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(vars, &m); err != nil || m == nil {
		return nil, fmt.Errorf("%s: expected a JSON object of chat template variables (%v)", varsFrom, err)
	}
	var notes []string
	o.ChatTemplate, notes = bakeChatVars(o.ChatTemplate, m)
	return notes, nil
}

// bakeChatVars returns the chat template tmpl with the variables vars (the
// --chat-var values it was trained with, as JSON decodes them) set before
// it, one {%- set NAME = VALUE %} line each, in name order, so that
// llama.cpp, which renders a GGUF file's template with no such variables,
// renders it as training did (Qwen3's enable_thinking, say). Each line
// ends in a newline that Jinja's trim_blocks, on in transformers and in
// llama.cpp, removes, so the template after them renders as it did, its
// leading whitespace included. Strings, numbers, booleans and null are
// written as Jinja literals; a variable of another kind (a list, an
// object), or whose name is not a Jinja identifier, is left out, and
// what it returns besides says so.
func bakeChatVars(tmpl string, vars map[string]any) (string, []string) {
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	var notes []string
	for _, n := range names {
		lit, ok := jinjaLiteral(vars[n])
		if !jinjaIdent.MatchString(n) || jinjaKeywords[n] {
			ok = false
		}
		if !ok {
			v, _ := json.Marshal(vars[n])
			notes = append(notes, fmt.Sprintf("the chat template variable %s = %s is not written into the template (only strings, numbers, booleans and null under a plain name are), so llama.cpp renders the template without it: pass it there yourself", n, v))
			continue
		}
		fmt.Fprintf(&b, "{%%- set %s = %s %%}\n", n, lit)
	}
	return b.String() + tmpl, notes
}

// jinjaIdent matches a name that Jinja takes as a variable.
var jinjaIdent = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// jinjaKeywords are the names Jinja reads as literals or operators.
var jinjaKeywords = map[string]bool{"true": true, "false": true, "none": true, "True": true, "False": true, "None": true,
	"and": true, "or": true, "not": true, "in": true, "is": true, "if": true, "else": true}

// jinjaLiteral returns v (as encoding/json decodes into an any) as a
// Jinja literal: a string in double quotes, with backslash escapes for
// the quote, the backslash, newline, carriage return and tab (other
// control characters are refused); a number (an integer where it is one,
// so that loop bounds and comparisons with integers work); true, false;
// none for null. It reports false for other values.
func jinjaLiteral(v any) (string, bool) {
	if n, ok := v.(json.Number); ok {
		// As the --chat-var values and chat_template_vars.json decode.
		if i, err := n.Int64(); err == nil {
			return strconv.FormatInt(i, 10), true
		}
		f, err := n.Float64()
		if err != nil {
			return "", false
		}
		v = f
	}
	switch v := v.(type) {
	case nil:
		return "none", true
	case bool:
		return strconv.FormatBool(v), true
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return "", false
		}
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return strconv.FormatInt(int64(v), 10), true
		}
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case string:
		var b strings.Builder
		b.WriteByte('"')
		for _, r := range v {
			switch r {
			case '"', '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				if r < 0x20 || r == 0x7f {
					return "", false
				}
				b.WriteRune(r)
			}
		}
		b.WriteByte('"')
		return b.String(), true
	}
	return "", false
}

// configTokenIDs returns the bos_token_id and eos_token_id of a model
// folder's config.json (the first of a list of EOS ids), nil where it
// names none; the export writes them where the tokenizer has no such
// token.
func configTokenIDs(dir string) (bos, eos *int) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, nil
	}
	var c struct {
		BOS json.RawMessage `json:"bos_token_id"`
		EOS json.RawMessage `json:"eos_token_id"`
	}
	if json.Unmarshal(b, &c) != nil {
		return nil, nil
	}
	id := func(raw json.RawMessage) *int {
		var n int
		if json.Unmarshal(raw, &n) == nil {
			return &n
		}
		var ns []int
		if json.Unmarshal(raw, &ns) == nil && len(ns) > 0 {
			return &ns[0]
		}
		return nil
	}
	return id(c.BOS), id(c.EOS)
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
// notes are more of them, from before the plan.
func writeGGUF(cmd, out string, src llama.Source, tok *tokenizer.Tokenizer, o gguf.Options, replacing bool, notes []string, stdout, stderr io.Writer) error {
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
	for _, n := range append(notes, plan.Notes...) {
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
	if err := ggufTokenizerGiven(model, tokPath); err != nil {
		return fail(exitUsage, err)
	}
	replacing, err := checkGGUFOut(out, stderr)
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
	o.Name = modelName(model)
	notes, err := ggufChat(&o, model, nil, nil, stderr)
	if err != nil {
		return fail(exitFailure, err)
	}
	if err := gguf.Check(bm.config(), tok, o); err != nil {
		return fail(exitFailure, err)
	}
	var src llama.Source = bm.src
	if bm.src == nil {
		if src, err = gguf.WeightsSource(bm.w); err != nil {
			return fail(exitFailure, err)
		}
	}
	if err := writeGGUF("convert", out, src, tok, o, replacing, notes, stdout, stderr); err != nil {
		return fail(exitFailure, err)
	}
	return exitOK
}

// modelName returns the name a GGUF file gives the model at path
// (general.name, which llama.cpp and its front ends show): its file name
// without a .bin, .gguf or .safetensors extension, or its folder's name.
func modelName(path string) string {
	name := filepath.Base(filepath.Clean(abs(path)))
	switch ext := filepath.Ext(name); strings.ToLower(ext) {
	case ".bin", ".gguf", ".safetensors":
		name = strings.TrimSuffix(name, ext)
	}
	return name
}
