package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/internal/atomicfile"
	"github.com/sora-go/sora/models/gguf"
	"github.com/sora-go/sora/models/hf"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/peft/adapter"
)

func init() {
	register(command{
		name:    "merge",
		summary: "fold an adapter into its base model's weights and write a plain checkpoint",
		run:     runMerge,
	})
}

var mergeDoc = usageDoc{
	synopsis: "merge --adapter DIR --out FILE|DIR|FILE.gguf [--model FILE|DIR] [--tokenizer PATH] [--gguf-type TYPE] [--backend NAME]",
	description: "Applies the adapter in DIR (as written by \"sora finetune\": adapter_config.json and " +
		"adapter_model.safetensors in Hugging Face PEFT's layout) to the base model, folds every adapted layer " +
		"into one dense weight W' (as PEFT's merge_and_unload does; for SORA W' = R·(diag(d)·W0 + s·B·A)) and " +
		"writes the result in the base model's own format: a llama2.c checkpoint file (same format version) for " +
		"a .bin base, a Hugging Face folder for a folder base (with the chat template the adapter was trained with, where it has one). The merged model computes what base + adapter " +
		"computes, at the base model's cost, and \"sora generate\" runs it like any other checkpoint, giving the text that \"sora generate --adapter\" gives (ending at the same EOS); an adapter on the output head (lm_head) " +
		"of a model whose head is tied to the token embedding is merged into an untied head (the embedding keeps the base's weights, " +
		"where PEFT's merge_and_unload would change the shared weight), which merge says when it happens. " +
		"--model defaults to the adapter's base_model_name_or_path, as in eval, generate and spectrum. " +
		"Classification adapters (with a score head) cannot be merged into a language model checkpoint. " +
		"--out must suit the base, which is checked before anything is merged: a file path for a .bin base (an earlier llama2.c " +
		"checkpoint there is replaced; any other file, or a folder, is refused); for a folder base a folder that does not exist yet (made with its parents), an empty one, " +
		"or one holding a Hugging Face checkpoint (config.json or weights), which is replaced: its config.json and weights are replaced, " +
		"the base's side files written, and the old checkpoint's files among " + strings.Join(hfSideNames, ", ") +
		" that the base lacks removed, each named on stdout; other files are left alone. A file, or a folder that holds other things, is refused. " +
		"An --out ending in .gguf writes instead one GGUF file that llama.cpp, Ollama and LM Studio run, whatever the base's format: the merged " +
		"weights (as --gguf-type, f16 by default), the tokenizer (the base folder's, or --tokenizer, which a llama2.c base needs) and the chat " +
		"template (the adapter's, else the base folder's, with the --chat-var values it was trained with set at its start, since llama.cpp renders it without them); a GGUF file there is replaced, any other file refused. What llama.cpp cannot run as " +
		"this project does (a Gemma layer pattern other than llama.cpp's, say) is refused before anything is merged, and what it runs differently " +
		"is noted on stderr (see docs/finetune.md, \"Running the model elsewhere (GGUF)\").",
	examples: []string{
		"sora merge --model stories260K.bin --adapter runs/boolq-sora/adapter --out stories260K-boolq.bin",
		"sora merge --model stories260K.bin --tokenizer tok512.bin --adapter runs/boolq-sora/adapter --out stories260K-boolq.gguf",
		"sora generate --model stories260K-boolq.bin --tokenizer tok512.bin --temperature 0 --prompt \"...\"",
	},
}

func runMerge(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("merge")
	name := addBackendFlag(fs)
	model := fs.String("model", "", "`PATH` of the base model: a llama2.c checkpoint file or a Hugging Face folder (default: the base_model_name_or_path of --adapter)")
	adapterDir := fs.String("adapter", "", "`DIR` of the adapter to fold in (required)")
	out := fs.String("out", "", "`PATH` to write the merged model to (required): for a llama2.c base a file path (a llama2.c checkpoint there is replaced, any other file refused); for a Hugging Face base a new or empty folder, or one holding a Hugging Face checkpoint, which is replaced (see above); for either, a FILE.gguf (see above)")
	tokPath := fs.String("tokenizer", "", "`PATH` of the tokenizer written into a .gguf --out (default: the base folder's; a llama2.c base needs its tokenizer.bin)")
	var gf ggufFlags
	gf.add(fs)
	if code, ok := parseFlags(fs, mergeDoc, args, stdout, stderr); !ok {
		return code
	}
	switch {
	case *adapterDir == "":
		fmt.Fprintln(stderr, "sora merge: --adapter is required (a folder with adapter_config.json)")
		return exitUsage
	case *out == "":
		fmt.Fprintln(stderr, "sora merge: --out is required")
		return exitUsage
	}
	ad, err := readAdapter("merge", *adapterDir)
	if err != nil {
		fmt.Fprintf(stderr, "sora merge: %v\n", err)
		return exitFailure
	}
	if ad.head {
		fmt.Fprintf(stderr, "sora merge: %s holds a classification head (modules_to_save %q); only language-model adapters merge into a llama2.c or Hugging Face LM checkpoint\n", *adapterDir, ad.meta.ModulesToSave)
		return exitFailure
	}
	if *model, err = ad.modelPath(*model); err != nil {
		fmt.Fprintf(stderr, "sora merge: %v\n", err)
		return exitUsage
	}
	if samePath(*out, *model) {
		fmt.Fprintln(stderr, "sora merge: --out must not be the base model itself")
		return exitUsage
	}
	// What --out must be depends on the base's format; a wrong kind would
	// otherwise fail only once the merge is done, or write into a folder
	// that holds other things.
	var replacing bool
	if isGGUF(*out) {
		if _, err = gf.options(); err == nil {
			err = ggufTokenizerGiven(*model, *tokPath)
		}
		if err == nil {
			replacing, err = checkGGUFOut(*out, stderr)
		}
	} else if *tokPath != "" || gf.typ != defaultGGUFType {
		err = fmt.Errorf("--tokenizer and --gguf-type are for a .gguf --out; %s is written in the base model's own format", *out)
	} else {
		replacing, err = checkMergeOut(*model, *out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sora merge: %v\n", err)
		return exitUsage
	}
	b, code := openBackend(*name, stderr)
	if b == nil {
		return code
	}
	defer b.Close()
	base, err := openBase(*model)
	if err != nil {
		fmt.Fprintf(stderr, "sora merge: %v\n", err)
		return exitFailure
	}
	defer base.close()
	// The template the adapter was trained with (see chatSource.saveTemplate)
	// goes into the merged folder, which eval and generate take as --model.
	tmpl, err := os.ReadFile(filepath.Join(*adapterDir, adapterTemplateFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "sora merge: %v\n", err)
		return exitFailure
	}
	// So do the --chat-var variables it was rendered with, if any.
	vars, err := os.ReadFile(filepath.Join(*adapterDir, adapterVarsFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "sora merge: %v\n", err)
		return exitFailure
	}
	// A GGUF file's tokenizer, chat template, padding token and what
	// llama.cpp can run are checked before the merge, on the merged
	// model's configuration: the base's, its head untied where the
	// adapter adapts a tied one (see untieHead).
	var ggufTok *tokenizer.Tokenizer
	var ggufOpts gguf.Options
	var ggufNotes []string
	if isGGUF(*out) {
		if ggufOpts, err = gf.options(); err == nil {
			ggufTok, err = ggufTokenizer(*model, *tokPath, base.config().VocabSize)
		}
		if err == nil {
			ggufOpts.Name = modelName(*out)
			if len(tmpl) == 0 {
				vars = nil // they go with the adapter's template alone
			}
			ggufNotes, err = ggufChat(&ggufOpts, *model, tmpl, vars, stderr)
		}
		if err == nil {
			err = gguf.Check(mergedConfig(base.config(), *adapterDir), ggufTok, ggufOpts)
		}
		if err != nil {
			fmt.Fprintf(stderr, "sora merge: %v\n", err)
			return exitFailure
		}
	}
	m, release, code := openBaseModel("merge", b, base, llama.Options{}, stderr)
	if m == nil {
		return code
	}
	defer release()
	pm, _, err := adapter.Load(*adapterDir, m)
	if err != nil {
		fmt.Fprintf(stderr, "sora merge: %v\n", err)
		return exitFailure
	}
	method, layers := pm.Config().Method, len(pm.Layers())
	// A head tied to the embedding is one weight: merged in place, the
	// embedding would become W' too. The merged model unties them
	// instead, keeping the embedding's W0 (read before the merge).
	var embed []float32
	if m.Config().TiedEmbeddings && adaptsHead(pm) {
		if embed, err = m.Embed.Download(); err != nil {
			fmt.Fprintf(stderr, "sora merge: %v\n", err)
			return exitFailure
		}
	}
	if err := pm.MergeAndUnload(); err != nil {
		fmt.Fprintf(stderr, "sora merge: %v\n", err)
		return exitFailure
	}
	merged, err := m.Weights()
	if err != nil {
		fmt.Fprintf(stderr, "sora merge: %v\n", err)
		return exitFailure
	}
	if embed != nil {
		if merged, err = untieHead(merged, embed); err != nil {
			fmt.Fprintf(stderr, "sora merge: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stderr, "sora merge: note: the adapter adapts %s, which the base model ties to its token embedding: the merged model unties them (%s holds W', the embedding keeps the base's weights), so it computes what base + adapter computes; it is larger by one vocab×dim matrix (Hugging Face PEFT's merge would change the shared weight, embedding included)\n", llama.OutputModule, llama.OutputName)
	}
	if ggufTok != nil {
		src, err := gguf.WeightsSource(merged)
		if err == nil {
			err = writeGGUF("merge", *out, src, ggufTok, ggufOpts, replacing, ggufNotes, stdout, stderr)
		}
		if err != nil {
			fmt.Fprintf(stderr, "sora merge: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "merged the %s adapter of %d layers from %s into %s\n", method, layers, *adapterDir, *model)
		return exitOK
	}
	var removed []string
	if base.hf {
		files, err := base.sideFiles(tmpl)
		if err != nil {
			fmt.Fprintf(stderr, "sora merge: %v\n", err)
			return exitFailure
		}
		if vars != nil {
			files[adapterVarsFile] = vars
		}
		removed = staleSideFiles(*out, files)
	}
	if err := base.writeWith(*out, merged, tmpl); err != nil {
		fmt.Fprintf(stderr, "sora merge: %v\n", err)
		return exitFailure
	}
	if base.hf && vars != nil {
		if err := atomicfile.WriteFile(filepath.Join(*out, adapterVarsFile), vars); err != nil {
			fmt.Fprintf(stderr, "sora merge: %v\n", err)
			return exitFailure
		}
	}
	what := ""
	switch {
	case replacing && base.hf:
		what = ", replacing the checkpoint that was there"
	case replacing:
		what = ", replacing the file that was there"
	}
	fmt.Fprintf(stdout, "merged the %s adapter of %d layers from %s into %s: wrote %s (%s%s)\n", method, layers, *adapterDir, *model, *out, base.formatName(), what)
	printRemoved(stdout, *out, removed, "the base model has none of them")
	if dt := storedDType(base); base.hf && dt != "" && dt != "float32" {
		fmt.Fprintf(stdout, "note: the base stores its weights in %s; the merged folder holds float32 (W0 + the update, unrounded), about twice the size: transformers' from_pretrained(..., torch_dtype=torch.%s) loads it at the base's size, or --out model.gguf --gguf-type bf16|f16 writes a smaller file\n", dt, dt)
	}
	return exitOK
}

// storedDType returns the torch_dtype (or dtype) that a Hugging Face
// base's config.json records, "" where it records none or cannot be read.
func storedDType(bm *baseModel) string {
	b, err := os.ReadFile(filepath.Join(bm.path, "config.json"))
	if err != nil {
		return ""
	}
	var c struct {
		TorchDType string `json:"torch_dtype"`
		DType      string `json:"dtype"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return cmp.Or(c.DType, c.TorchDType)
}

// checkMergeOut checks that out is a place the merge of an adapter into
// the base model at model can be written to, before anything is merged:
// for a llama2.c base (a file), a file path, missing or an earlier
// checkpoint file that is replaced; for a Hugging Face base (a folder), a
// folder path (see checkHFOut). It reports whether out is replaced. A base
// that cannot be read is left for the load to report.
func checkMergeOut(model, out string) (replacing bool, err error) {
	st, err := os.Stat(model)
	if err != nil {
		return false, nil
	}
	if st.IsDir() {
		return checkHFOut(out, "a Hugging Face base merges into a folder, written as the base is")
	}
	switch ost, err := statOut(out); {
	case err != nil:
		return false, err
	case ost == nil && (strings.HasSuffix(out, "/") || strings.HasSuffix(out, string(filepath.Separator))):
		return false, fmt.Errorf("--out %s names a folder: a llama2.c base (a .bin file) merges into a checkpoint file, so --out must be a file path", out)
	case ost == nil:
		return false, checkOutWritable(out)
	case ost.IsDir():
		return false, fmt.Errorf("--out %s is a folder: a llama2.c base (a .bin file) merges into a checkpoint file, so --out must be a file path, such as %s", out, filepath.Join(out, strings.TrimSuffix(filepath.Base(model), filepath.Ext(model))+"-merged.bin"))
	}
	// Only a checkpoint is replaced: --out naming the tokenizer beside
	// the model, say, is a slip.
	if _, _, err := llama2c.Stat(out); err != nil {
		return false, fmt.Errorf("--out %s exists and is not a llama2.c checkpoint, which the merge would replace (%v): give a new path, or remove the file first", out, err)
	}
	return true, checkOutWritable(out)
}

// checkOutWritable checks that the file --out names can be written (see
// checkOutputFile: a file can be created in its folder, or in the nearest
// folder above it that exists, where the folders are still to be made), so
// that a folder without write permission fails before the model is read,
// converted or merged, not after. For a folder --out, out names a file to
// be written in it.
func checkOutWritable(out string) error {
	if _, err := checkOutputFile(out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

// statOut returns what the path out given as --out holds: its FileInfo,
// nil where nothing is there yet (which every --out takes), or an error
// naming --out where it cannot be looked at.
func statOut(out string) (os.FileInfo, error) {
	st, err := os.Stat(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("--out %s: %w", out, err)
	}
	return st, nil
}

// checkHFOut checks that out can take a Hugging Face checkpoint, before
// anything is written: missing (it is made, with its parent folders), an
// empty folder, or a folder holding a Hugging Face checkpoint (config.json
// or weights: see isHFCheckpoint), which is replaced. A file, or a folder
// that holds other things, is refused, its error ending with why (a
// sentence saying what --out must be), and so is a folder no file can be
// written in. It reports whether out holds a checkpoint that is replaced.
func checkHFOut(out, why string) (replacing bool, err error) {
	if replacing, err = hfOutReplaces(out, why); err != nil {
		return false, err
	}
	return replacing, checkOutWritable(filepath.Join(out, hf.ConfigFile))
}

// hfOutReplaces is checkHFOut but for the check that the folder can be
// written.
func hfOutReplaces(out, why string) (bool, error) {
	st, err := statOut(out)
	switch {
	case err != nil || st == nil:
		return false, err
	case !st.IsDir():
		return false, fmt.Errorf("--out %s is a file: %s", out, why)
	}
	if isHFCheckpoint(out) {
		return true, nil
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return false, fmt.Errorf("--out %s: %w", out, err)
	}
	if len(ents) > 0 {
		names := make([]string, 0, 3)
		for _, e := range ents[:min(3, len(ents))] {
			names = append(names, e.Name())
		}
		more := ""
		if len(ents) > 3 {
			more = fmt.Sprintf(" and %d more", len(ents)-3)
		}
		return false, fmt.Errorf("--out %s is a folder that holds other things (%s%s) and no Hugging Face checkpoint: writing one into it would mix the two; give a new or empty folder, or one that holds a checkpoint to replace", out, strings.Join(names, ", "), more)
	}
	return false, nil
}

// isHFCheckpoint reports whether the folder dir holds a Hugging Face
// checkpoint, which writing one replaces: its config.json, or weights
// (model.safetensors or the shards' index) that a write interrupted before
// its config.json left.
func isHFCheckpoint(dir string) bool {
	for _, name := range []string{hf.ConfigFile, hf.WeightsFile, hf.IndexFile} {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// staleSideFiles returns the paths of the side files (hfSideNames) in the
// folder out that hf.Write removes, as WriteOptions.Stale, when it writes
// files (by name) there: those of the checkpoint it replaces that the new
// one lacks.
func staleSideFiles(out string, files map[string][]byte) []string {
	var stale []string
	for _, name := range hfSideNames {
		if _, ok := files[name]; ok {
			continue
		}
		if st, err := os.Stat(filepath.Join(out, name)); err == nil && !st.IsDir() {
			stale = append(stale, filepath.Join(out, name))
		}
	}
	return stale
}

// printRemoved says on w which side files of the checkpoint replaced in
// the folder out were removed (removed: their paths), and why they were
// not rewritten (a clause).
func printRemoved(w io.Writer, out string, removed []string, why string) {
	if len(removed) == 0 {
		return
	}
	names := make([]string, len(removed))
	for i, p := range removed {
		names[i] = filepath.Base(p)
	}
	fmt.Fprintf(w, "removed from %s the replaced checkpoint's %s, which would describe another model (%s)\n", out, strings.Join(names, ", "), why)
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// samePath reports whether the paths a and b name the same file or
// folder: the same one through a symbolic link or another spelling too,
// where both exist, and the same absolute path otherwise.
func samePath(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	return abs(a) == abs(b)
}

// baseModel is a base checkpoint, read (loadBase) or opened (openBase),
// and how to write one like it.
type baseModel struct {
	path string
	// w holds the host weights of a checkpoint that was read whole: what
	// loadBase gives, and openBase for a llama2.c file. newModel lets it
	// go.
	w *llama.Weights
	// src is the Hugging Face folder openBase opened, whose tensors
	// newModel reads a slab of rows at a time as it uploads them; nil
	// otherwise.
	src    *hf.Source
	hf     bool
	format llama2c.Format
}

// loadBase reads a llama2.c checkpoint file or a Hugging Face folder,
// remembering its format.
func loadBase(path string) (*baseModel, error) {
	return readBase(path, false)
}

// openBase is loadBase for commands that only need the model on a
// backend (see newModel): a Hugging Face folder is opened and checked
// (hf.Open) but its tensors are left in the files until newModel reads
// them, a slab of rows at a time, so neither the whole model nor one
// whole tensor sits in float32 on the host. A llama2.c checkpoint is read whole, as loadBase reads it. Close
// the result when done.
func openBase(path string) (*baseModel, error) {
	return readBase(path, true)
}

func readBase(path string, stream bool) (*baseModel, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("model %s does not exist", path)
	case err != nil:
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	if st.IsDir() {
		if err := checkModelFolder(path); err != nil {
			return nil, err
		}
		if stream {
			src, err := hf.Open(path)
			if err != nil {
				return nil, err
			}
			return &baseModel{path: path, src: src, hf: true}, nil
		}
		w, err := hf.Load(path)
		if err != nil {
			return nil, err
		}
		return &baseModel{path: path, w: w, hf: true}, nil
	}
	w, format, err := llama2c.Load(path)
	if err != nil {
		return nil, err
	}
	return &baseModel{path: path, w: w, format: format}, nil
}

// checkModelFolder refuses a --model folder without config.json, which
// no Hugging Face checkpoint lacks, naming the .bin files it holds: the
// likely mistake is the folder of a llama2.c checkpoint given for the
// checkpoint file, which hf's failure to open config.json would not say.
func checkModelFolder(dir string) error {
	_, err := os.Stat(filepath.Join(dir, hf.ConfigFile))
	if !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	msg := fmt.Sprintf("model %s is a folder without %s, so not a Hugging Face checkpoint", dir, hf.ConfigFile)
	bins, _ := filepath.Glob(filepath.Join(dir, "*.bin"))
	if len(bins) == 0 {
		return errors.New(msg)
	}
	names := make([]string, len(bins))
	for i, p := range bins {
		names[i] = filepath.Base(p)
	}
	return fmt.Errorf("%s; a llama2.c checkpoint is given as its file, not its folder (this one holds %s)", msg, strings.Join(names, ", "))
}

// config returns the base model's configuration.
func (bm *baseModel) config() llama.Config {
	if bm.src != nil {
		return bm.src.Config()
	}
	return bm.w.Config
}

// newModel builds the base model on b with the options o: from the opened
// folder, each tensor uploaded as it is read (llama.NewFromSource), or
// from the host weights, which it then drops (the caller must hold no
// other reference to them for their memory to go). It can be called once:
// an opened folder's files are closed when it returns.
func (bm *baseModel) newModel(b backend.Backend, o llama.Options) (*llama.Model, error) {
	if bm.src != nil {
		// Built once: the files are of no more use, and a fine-tune
		// would otherwise hold them open for hours.
		defer bm.src.Close()
		return llama.NewFromSource(b, bm.src, o)
	}
	if bm.w == nil {
		return nil, fmt.Errorf("model %s: its weights were already uploaded", bm.path)
	}
	m, err := llama.NewWithOptions(b, bm.w, o)
	bm.w = nil
	return m, err
}

// close closes the files of an opened folder; the format stays known.
func (bm *baseModel) close() {
	if bm.src != nil {
		bm.src.Close()
	}
}

func (bm *baseModel) formatName() string {
	if bm.hf {
		return "Hugging Face folder"
	}
	return "llama2.c " + bm.format.String() + " checkpoint"
}

// write writes w in the base model's format to path (both writers are
// atomic and create path's missing parent folders). A Hugging Face folder
// takes the base folder's tokenizer and generation files along (see
// hfSideFiles), so that it is as complete a model as its base.
func (bm *baseModel) write(path string, w *llama.Weights) error {
	return bm.writeWith(path, w, nil)
}

// writeWith is write with the chat template chatTemplate, where not nil,
// as the Hugging Face folder's chat_template.jinja (which a loader prefers
// to tokenizer_config.json's) in place of the base's; a llama2.c
// checkpoint has no place for one.
func (bm *baseModel) writeWith(path string, w *llama.Weights, chatTemplate []byte) error {
	if !bm.hf {
		return llama2c.Write(path, w, bm.format)
	}
	files, err := bm.sideFiles(chatTemplate)
	if err != nil {
		return err
	}
	// The side files of a checkpoint at path that the base lacks go (see
	// staleSideFiles): they belong to the model replaced.
	return hf.Write(path, w, &hf.WriteOptions{Files: files, Stale: hfSideNames})
}

// sideFiles returns the side files that writeWith writes into a Hugging
// Face folder: the base folder's (hfSideFiles), with chatTemplate, where
// not nil, as chat_template.jinja.
func (bm *baseModel) sideFiles(chatTemplate []byte) (map[string][]byte, error) {
	files, err := hfSideFiles(bm.path)
	if err != nil {
		return nil, err
	}
	if chatTemplate != nil {
		files["chat_template.jinja"] = chatTemplate
	}
	return files, nil
}

// hfSideNames are the files of a Hugging Face model folder besides its
// config and weights that a written copy of the model keeps: its tokenizer
// (the slow tokenizers' vocab.json and merges.txt too), its chat template
// (which transformers writes on its own since 4.50) and its generation
// settings.
var hfSideNames = []string{"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
	"special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
	"chat_template.jinja", "chat_template.json", adapterVarsFile, "generation_config.json"}

// hfSideFiles reads those of hfSideNames that the folder dir has.
func hfSideFiles(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, name := range hfSideNames {
		b, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return nil, err
		}
		files[name] = b
	}
	return files, nil
}

// saveFullModel writes the model trained by full fine-tuning, every
// parameter as it is now on the device (full fine-tuning trains the
// model's own tensors in place; those it left frozen hold their pretrained
// values), in the base model's format (model.bin or a Hugging Face folder
// "model" inside dir). bm gives the format alone: its host weights are not
// needed, nor kept. chatTemplate, where not nil, replaces the base
// folder's chat template (see writeWith).
func saveFullModel(dir string, m *llama.Model, bm *baseModel, chatTemplate []byte) error {
	w, err := m.Weights()
	if err != nil {
		return err
	}
	if bm.hf {
		return bm.writeWith(filepath.Join(dir, "model"), w, chatTemplate)
	}
	return bm.write(filepath.Join(dir, "model.bin"), w)
}

// untieHead returns w, whose tied head and embedding hold the merged
// head's W', as weights with an untied head holding W' and the embedding
// embed (the base's).
func untieHead(w *llama.Weights, embed []float32) (*llama.Weights, error) {
	cfg := w.Config
	cfg.TiedEmbeddings = false
	u, err := llama.NewWeights(cfg)
	if err != nil {
		return nil, err
	}
	for _, p := range u.Params() {
		src := embed
		if p.Name != llama.EmbedName {
			name := p.Name
			if name == llama.OutputName {
				name = llama.EmbedName // W', where the tied weights keep it
			}
			q, ok := w.Param(name)
			if !ok {
				return nil, fmt.Errorf("untying the head: the merged weights have no %s", name)
			}
			src = q.Data
		}
		if len(src) != len(p.Data) {
			return nil, fmt.Errorf("untying the head: %s has %d values, want %d", p.Name, len(src), len(p.Data))
		}
		copy(p.Data, src)
	}
	return u, nil
}

// adaptsHead reports whether pm adapts the model's output head.
func adaptsHead(pm *peft.Model) bool {
	for _, l := range pm.Layers() {
		if l.Name() == llama.OutputModule {
			return true
		}
	}
	return false
}

// mergedConfig returns the configuration of the model that merging the
// adapter in adapterDir into a base of configuration c gives: c, its head
// untied where c ties it and the adapter targets the head (runMerge
// unties it then). An adapter whose configuration cannot be read is left
// for its load to report.
func mergedConfig(c llama.Config, adapterDir string) llama.Config {
	cfg, _, err := adapter.ReadConfig(adapterDir)
	if err != nil || !c.TiedEmbeddings {
		return c
	}
	if ok, err := peft.Match(cfg.TargetModules, llama.OutputModule); err == nil && ok {
		c.TiedEmbeddings = false
	}
	return c
}
