package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sora-go/sora/models/hf"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
)

func init() {
	register(command{
		name:    "convert",
		summary: "convert a llama2.c checkpoint to a Hugging Face LLaMA folder, or a model to a GGUF file for llama.cpp",
		run:     runConvert,
	})
}

var convertDoc = usageDoc{
	synopsis: "convert --model FILE.bin [--tokenizer FILE.bin] --out DIR [--shard-size BYTES]\n       sora convert --model FILE.bin|DIR [--tokenizer PATH] --out FILE.gguf [--gguf-type TYPE]",
	description: "Reads a llama2.c checkpoint (legacy or version 1) and writes it as a Hugging Face LLaMA " +
		"checkpoint into DIR: config.json and float32 weights in model.safetensors (or shards with " +
		"model.safetensors.index.json when --shard-size is set), with Hugging Face's tensor names, q_proj and " +
		"k_proj rows permuted to the half-split rotary layout, and no lm_head.weight when the classifier is " +
		"tied to the embedding. With --tokenizer, the llama2.c tokenizer.bin is written beside them as the " +
		"tokenizer.json and tokenizer_config.json that transformers writes for LLaMA (LlamaTokenizerFast), which " +
		"encode text as the tokenizer.bin does (strings such as \"<s>\" and \"</s>\" in the text become the " +
		"special tokens, as in transformers), so that the folder is a whole model that the commands (and transformers) " +
		"take without --tokenizer. \"sora generate --model DIR\" gives the same text from the folder as from the " +
		"original file. DIR is created, with its missing parent folders, if it does not exist (completely or not at all); " +
		"it may also be an empty folder, or a folder holding a Hugging Face checkpoint (config.json or weights), which is replaced: " +
		"config.json and the weights (model.safetensors, or the shards and their index; old weight files the new ones do not use go too) " +
		"are replaced file by file, config.json last, and the old checkpoint's files among " + strings.Join(hfSideNames, ", ") +
		" that this conversion does not write are removed, each named on stdout, since they would describe another model " +
		"(with --tokenizer it writes tokenizer.json and tokenizer_config.json; without it, none of them). Other files in DIR are left alone. " +
		"A file, a folder that holds other things, and the folder that holds --model are refused before anything is written. " +
		"An --out ending in .gguf writes instead one GGUF file that llama.cpp, Ollama and LM Studio run, from a llama2.c checkpoint " +
		"(with --tokenizer, required) or a Hugging Face folder (its own tokenizer and chat template, or --tokenizer), read a slab of rows " +
		"at a time: the weights as --gguf-type (f16 by default), the tokenizer and the chat template; a GGUF file there is replaced, any " +
		"other file refused. What llama.cpp cannot run as this project does is refused, and what it runs differently noted on stderr " +
		"(see docs/finetune.md, \"Running the model elsewhere (GGUF)\"); --shard-size does not apply.",
	examples: []string{
		"sora convert --model stories260K.bin --tokenizer tok512.bin --out stories260K-hf",
		"sora convert --model stories260K.bin --tokenizer tok512.bin --out stories260K.gguf --gguf-type q8_0",
	},
}

func runConvert(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("convert")
	model := fs.String("model", "", "`PATH` of the model to convert (required): a llama2.c checkpoint file; for a .gguf --out, that or a Hugging Face folder")
	out := fs.String("out", "", "`PATH` to write to (required): a folder for the Hugging Face checkpoint, new, empty or holding a Hugging Face checkpoint to replace (see above for the files removed); or a FILE.gguf, one GGUF file (a GGUF file there is replaced)")
	shard := fs.Int64("shard-size", 0, "split the weights into shards of at most `BYTES` each; 0 writes one model.safetensors")
	tokPath := fs.String("tokenizer", "", "`FILE` of the model's llama2.c tokenizer.bin, written into the folder as Hugging Face's tokenizer.json and tokenizer_config.json (none: the folder has no tokenizer, and the commands then need --tokenizer with it); for a .gguf --out, the tokenizer to write (a llama2.c checkpoint needs it; a folder's own is the default)")
	var gf ggufFlags
	gf.add(fs)
	if code, ok := parseFlags(fs, convertDoc, args, stdout, stderr); !ok {
		return code
	}
	if isGGUF(*out) && *model != "" {
		return convertGGUF(*model, *tokPath, *out, *shard, gf, stdout, stderr)
	}
	if gf.typ != defaultGGUFType {
		fmt.Fprintf(stderr, "sora convert: --gguf-type is for a .gguf --out; %s is a Hugging Face folder\n", *out)
		return exitUsage
	}
	switch {
	case *model == "":
		fmt.Fprintln(stderr, "sora convert: --model is required (a llama2.c .bin checkpoint)")
		return exitUsage
	case *out == "":
		fmt.Fprintln(stderr, "sora convert: --out is required (the folder to write)")
		return exitUsage
	case *shard < 0:
		fmt.Fprintf(stderr, "sora convert: --shard-size %d: want 0 (one file) or a positive number of bytes\n", *shard)
		return exitUsage
	}
	if st, err := os.Stat(*model); err == nil && st.IsDir() {
		// The wrong kind of argument: a usage error.
		fmt.Fprintf(stderr, "sora convert: %s is a folder; convert reads a llama2.c checkpoint file (a Hugging Face folder needs no conversion: every command takes it as --model)\n", *model)
		return exitUsage
	}
	// The folder is written into in place when it exists: refuse one whose
	// files are not a checkpoint's (the source's own folder, say) before
	// reading anything.
	if samePath(*out, filepath.Dir(*model)) {
		fmt.Fprintf(stderr, "sora convert: --out %s is the folder that holds --model %s: write the Hugging Face checkpoint into a folder of its own, such as %s\n", *out, *model, filepath.Join(*out, strings.TrimSuffix(filepath.Base(*model), filepath.Ext(*model))+"-hf"))
		return exitUsage
	}
	replacing, err := checkHFOut(*out, "convert writes a Hugging Face checkpoint, a folder")
	if err != nil {
		fmt.Fprintf(stderr, "sora convert: %v\n", err)
		return exitUsage
	}
	w, format, err := llama2c.Load(*model)
	if err != nil {
		fmt.Fprintf(stderr, "sora convert: %v\n", err)
		return exitFailure
	}
	// The side files of a checkpoint replaced go, named: they belong to
	// another model, and the commands would read a tokenizer, chat template
	// or generation settings left there as this model's.
	opts := &hf.WriteOptions{MaxShardSize: *shard, Stale: hfSideNames}
	if *tokPath != "" {
		if opts.Files, err = hfTokenizerFiles(*tokPath, w.Config.VocabSize); err != nil {
			fmt.Fprintf(stderr, "sora convert: %v\n", err)
			return exitFailure
		}
	}
	var removed []string
	if replacing {
		removed = staleSideFiles(*out, opts.Files)
	}
	// hf.Write makes the folder's missing parents and writes the folder
	// whole through a temporary one beside it.
	if err := hf.Write(*out, w, opts); err != nil {
		fmt.Fprintf(stderr, "sora convert: %v\n", err)
		return exitFailure
	}
	c := w.Config
	tied := "separate classifier"
	if c.TiedEmbeddings {
		tied = "tied embeddings"
	}
	withTok := ""
	if *tokPath != "" {
		withTok = ", with its tokenizer"
	}
	if replacing {
		withTok += ", replacing the checkpoint that was there"
	}
	fmt.Fprintf(stdout, "converted %s (llama2.c %s) to %s: %d parameters, dim %d, %d layers, %d heads (%d key/value), vocab %d, %s, rotary layout %s%s\n",
		*model, format, filepath.Clean(*out), c.NumParams(), c.Dim, c.NumLayers, c.NumHeads, c.NumKVHeads, c.VocabSize, tied, llama.RopeHalfSplit, withTok)
	why := "this conversion writes no tokenizer"
	if *tokPath != "" {
		why = "this conversion writes tokenizer.json and tokenizer_config.json, and no other side file"
	}
	printRemoved(stdout, *out, removed, why)
	return exitOK
}

// hfTokenizerFiles reads the llama2.c tokenizer at path, checks it against
// the model's vocabulary size and returns it as Hugging Face's tokenizer
// files (see tokenizer.HFFiles).
func hfTokenizerFiles(path string, vocabSize int) (map[string][]byte, error) {
	tok, err := tokenizer.Load(path)
	if err != nil {
		return nil, err
	}
	if tok.HuggingFace() {
		return nil, fmt.Errorf("--tokenizer %s: convert takes the llama2.c tokenizer.bin of the checkpoint (a Hugging Face tokenizer can be copied into the folder as it is)", path)
	}
	if err := tok.CheckVocab(vocabSize); err != nil {
		return nil, err
	}
	return tok.HFFiles()
}
