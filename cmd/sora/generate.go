package main

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/chat"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/peft/adapter"
	"github.com/sora-go/sora/train"
)

func init() {
	register(command{
		name:    "generate",
		summary: "generate text with a LLaMA, Qwen, Mistral or Gemma 2/3 model (llama2.c checkpoint or Hugging Face folder)",
		run:     runGenerate,
	})
}

var generateDoc = usageDoc{
	synopsis: "generate --model FILE|DIR [--tokenizer PATH] [--adapter DIR] [--prompt TEXT] [--steps N] [--temperature T] [--top-p P] [--seed S] [--chat [--system TEXT] [--chat-template FILE] [--chat-var NAME=VALUE]...] [--backend NAME]",
	description: "Continues a prompt with a LLaMA, Qwen, Mistral or Gemma 2/3 model as llama2.c's run does: the prompt is encoded with BOS, " +
		"run through the model in one batched pass, and each following token is sampled from the logits of the " +
		"last (greedy at temperature 0, else from softmax(logits/T), restricted to the top-p nucleus when " +
		"0 < P < 1), with a key/value cache, until N positions (prompt included) have run or the model emits BOS or EOS. " +
		"The prompt and its continuation are printed to stdout as they are produced (a character the vocabulary " +
		"spells in byte tokens once its last byte arrives; bytes that are not valid UTF-8 and control characters " +
		"other than whitespace are left out, as llama2.c leaves them out); the speed, in tokens per " +
		"second over every position run, goes to stderr. --model is a llama2.c checkpoint (.bin, legacy or " +
		"version 1) or a Hugging Face folder holding config.json and model.safetensors (or shards with an " +
		"index). --tokenizer is the model's tokenizer: a llama2.c tokenizer.bin, or a Hugging Face tokenizer.json, " +
		"tokenizer.model or folder; a Hugging Face model folder brings its own, used when --tokenizer is not given. " +
		"Generation stops at BOS (llama2.c's models start a new story with it), at EOS, which fine-tuning teaches a model " +
		"to end its answers with (llama2.c's run stops at BOS alone, but its pretrained models never emit EOS), and at every eos_token_id " +
		"that a Hugging Face folder's generation_config.json or config.json lists; \"sora eval\" stops its answers at the same tokens. " +
		"A prompt that does not fit in N positions (or the model's seq_len) is printed cut short, nothing is generated, " +
		"and a note on stderr says what to change. A tokenizer without BOS (add_bos_token " +
		"false in tokenizer_config.json) needs a --prompt to start from. --adapter applies a " +
		"language-model adapter (as \"sora finetune\" writes it, or Hugging Face PEFT's LoRA/DoRA/OFT files) to the " +
		"base model without merging it; --model then defaults to the adapter's base_model_name_or_path. The model " +
		"computes what the checkpoint \"sora merge\" writes from the adapter computes (to float32 rounding), at a little " +
		"more cost per token: the two give the same text, ending at the same EOS. " +
		"The prompt is used as given: an adapter trained on LLM-Adapters data expects its Alpaca template. " +
		"With --chat the prompt is the user's message of a conversation (after a --system message, if given), rendered " +
		"with the model's chat template as transformers' apply_chat_template renders it, ending with the header of the " +
		"assistant's turn (add_generation_prompt), and encoded as \"sora finetune\" and \"sora eval\" encode a conversation's prompt: BOS " +
		"(where the tokenizer has one) and the text, less the BOS text the template writes first (the same tokens as " +
		"apply_chat_template's for templates that write BOS first, and for tokenizers without BOS); only the " +
		"reply is printed, without special tokens. The template is the tokenizer folder's (chat_template.jinja, " +
		"chat_template.json, or tokenizer_config.json's chat_template), or --chat-template's file; --chat-var sets " +
		"template variables such as enable_thinking=false.",
	examples: []string{
		"sora generate --model stories260K.bin --tokenizer tok512.bin --prompt \"Once upon a time\" --steps 60 --temperature 0",
		"sora generate --adapter runs/boolq-sora/adapter --tokenizer tok512.bin --temperature 0 --prompt \"...\"",
		"sora generate --model stories260K-hf --temperature 0.8 --top-p 0.9 --seed 42",
		"sora generate --model Qwen3-0.6B --chat --chat-var enable_thinking=false --prompt \"Name three colours.\"",
	},
}

func runGenerate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("generate")
	name := addBackendFlag(fs)
	modelPath := fs.String("model", "", "`PATH` of a llama2.c checkpoint file or a Hugging Face checkpoint folder (required; default with --adapter: its base_model_name_or_path)")
	tokPath := fs.String("tokenizer", "", "`PATH` of the model's tokenizer: a llama2.c tokenizer.bin, or a Hugging Face tokenizer.json, tokenizer.model or model folder (default: the --model folder's own, for a Hugging Face model; required for a llama2.c checkpoint)")
	adapterDir := fs.String("adapter", "", "`DIR` of a language-model adapter to apply to the base model, unmerged (none: the model alone)")
	prompt := fs.String("prompt", "", "`TEXT` to continue; empty starts from BOS alone")
	steps := fs.Int("steps", 256, "`N` positions to run, the prompt's included; 0 or more than the model's seq_len means seq_len")
	maxNew := fs.Int("max-new-tokens", 0, "generate at most `N` tokens after the prompt, as sora eval's flag does (0: as many as --steps leaves room for); with --chat the template's tokens are part of the prompt, so this is the simpler limit there")
	temperature := fs.Float64("temperature", 1.0, "sampling temperature `T` ≥ 0; 0 is greedy (always the most likely token)")
	topP := fs.Float64("top-p", 0.9, "nucleus sampling threshold `P` in [0, 1]; 0 or 1 samples from every token")
	seed := fs.Uint64("seed", 0, "random seed `S` of the sampler; 0 picks one from the clock and prints it to stderr")
	var dtName string
	runBaseDTypeFlagVar(fs, &dtName)
	var cf chatFlags
	cf.add(fs)
	if code, ok := parseFlags(fs, generateDoc, args, stdout, stderr); !ok {
		return code
	}
	mopts, err := baseDType(dtName)
	if err != nil {
		fmt.Fprintf(stderr, "sora generate: %v\n", err)
		return exitUsage
	}
	if err := cf.check(); err != nil {
		fmt.Fprintf(stderr, "sora generate: %v\n", err)
		return exitUsage
	}
	if *maxNew < 0 {
		fmt.Fprintf(stderr, "sora generate: --max-new-tokens %d: want 0 (no limit but --steps) or a positive number\n", *maxNew)
		return exitUsage
	}
	if *steps < 0 {
		fmt.Fprintf(stderr, "sora generate: --steps %d: want 0 (the model's seq_len) or a positive number\n", *steps)
		return exitUsage
	}
	// The sampler checks --temperature and --top-p, before anything is
	// read; a seed picked from the clock is printed once generation starts.
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	sampler, err := llama.NewSampler(*temperature, *topP, s)
	if err != nil {
		fmt.Fprintf(stderr, "sora generate: %v\n", err)
		return exitUsage
	}
	var ad *adapterInfo
	if *adapterDir != "" {
		a, err := readAdapter("generate", *adapterDir)
		if err != nil {
			fmt.Fprintf(stderr, "sora generate: %v\n", err)
			return exitFailure
		}
		if a.head {
			fmt.Fprintf(stderr, "sora generate: %s holds a classifier (a score head); generate needs a language-model adapter\n", *adapterDir)
			return exitFailure
		}
		if *modelPath, err = a.modelPath(*modelPath); err != nil {
			fmt.Fprintf(stderr, "sora generate: %v\n", err)
			return exitUsage
		}
		ad, cf.adapter = &a, a.dir
		noteTrainedBaseDType(stderr, "generate", a.dir, train.BaseDTypeName(mopts.BaseDType))
	}
	if *modelPath == "" {
		fmt.Fprintln(stderr, "sora generate: --model is required (a llama2.c .bin file or a Hugging Face folder, or an --adapter whose config names its base model)")
		return exitUsage
	}
	tokSrc, err := tokenizerSource(*modelPath, *tokPath)
	if err != nil {
		fmt.Fprintf(stderr, "sora generate: %v\n", err)
		return exitUsage
	}
	var tmpl *chat.Template
	if cf.enabled() {
		// The template is read before the model, which may be large.
		if tmpl, err = cf.template(tokSrc, "give one with --chat-template FILE, or leave out --chat"); err != nil {
			fmt.Fprintf(stderr, "sora generate: %v\n", err)
			return exitFailure
		}
	}

	b, code := openBackend(*name, stderr)
	if b == nil {
		return code
	}
	defer b.Close()
	base, tok, err := openBaseAndTokenizer(*modelPath, *tokPath)
	if err != nil {
		fmt.Fprintf(stderr, "sora generate: %v\n", err)
		return exitFailure
	}
	defer base.close()
	m, release, code := openBaseModel("generate", b, base, mopts, stderr)
	if m == nil {
		return code
	}
	defer release()
	if ad != nil {
		pm, _, err := ad.apply(m)
		if err != nil {
			fmt.Fprintf(stderr, "sora generate: %v\n", err)
			return exitFailure
		}
		defer pm.Unload()
	}
	stop := stopTokens(tok)
	out := bufio.NewWriter(stdout)
	var ids []int
	// echo counts the tokens Generate emits that are the prompt's: all
	// but the first are printed, as llama2.c prints them, except in a
	// chat, whose output is the reply alone.
	echo := 0
	if tmpl != nil {
		// As evaluation encodes a conversation's prompt (see encode).
		if ids, err = cf.encode(tmpl, tok, tok.BOS() >= 0, *prompt); err != nil {
			fmt.Fprintf(stderr, "sora generate: %v\n", err)
			return exitFailure
		}
		echo = len(ids) - 1
	} else {
		ids = tok.Encode(*prompt, true, false)
	}
	if len(ids) == 0 {
		fmt.Fprintf(stderr, "sora generate: the tokenizer %s has no BOS token to start from: give a --prompt\n", tok.Name())
		return exitUsage
	}
	// The positions the run takes: --steps, less where --max-new-tokens
	// ends it sooner. The cache holds those, not the model's whole
	// seq_len, which for long-context models (Llama 3.1's 131072) would
	// take gigabytes the run never touches.
	seqLen := m.Config().MaxSeqLen
	limit := *steps
	if *maxNew > 0 && (limit == 0 || limit > len(ids)+*maxNew) {
		limit = len(ids) + *maxNew
	}
	positions := 0 // the model's seq_len
	if limit > 0 && limit < seqLen {
		positions = limit
	}
	gen, err := m.NewGenerator(positions)
	if err != nil {
		fmt.Fprintf(stderr, "sora generate: %v\n", err)
		return exitFailure
	}
	defer gen.Close()
	// The printer holds back the byte tokens of a character until it is
	// whole, where llama2.c drops them one by one.
	pr := tok.NewPrinter(ids[0])
	if tok.BOS() < 0 && tmpl == nil {
		// Generate emits the tokens after the first, which is the
		// prompt's own first token when there is no BOS before it.
		pr = tok.NewPrinter(-1)
		out.WriteString(pr.Next(ids[0]))
	}
	if tmpl != nil {
		// The reply's first token decodes as the start of a text.
		pr = tok.NewPrinter(-1)
	}
	emit := func(t int) error {
		if echo > 0 {
			echo--
			return nil
		}
		out.WriteString(pr.Next(t))
		// Flushing each token streams the text; the write error, if any,
		// ends the generation.
		return out.Flush()
	}
	// A prompt longer than the positions the run may take leaves nothing
	// to sample: there is no seed to report.
	fits := len(ids) <= cmp.Or(positions, seqLen)
	if fits && *seed == 0 && *temperature != 0 {
		fmt.Fprintf(stderr, "sora generate: seed %d\n", s)
	}
	start := time.Now()
	_, err = gen.Generate(ids, llama.GenerateOptions{Steps: limit, Sampler: sampler, Stop: stop}, emit)
	elapsed := time.Since(start)
	out.WriteString("\n")
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(stderr, "sora generate: %v\n", err)
		return exitFailure
	}
	if !fits {
		// As llama2.c does, the prompt was printed up to the last
		// position and nothing ran; say why rather than report 0 tokens/s.
		fmt.Fprintf(stderr, "sora generate: %s\n", noRoomNote(len(ids), *steps, seqLen, tmpl == nil))
		return exitOK
	}
	// Every position run counts: the prompt's and the sampled ones.
	n := gen.Positions()
	fmt.Fprintf(stderr, "sora generate: %d tokens in %.3fs, %.1f tokens/s on %s (%s)\n",
		n, elapsed.Seconds(), float64(n)/max(elapsed.Seconds(), 1e-9), m.Backend().Name(), deviceLine(m.Backend()))
	return exitOK
}

// noRoomNote says why nothing was generated for a prompt of n tokens (BOS
// included) with --steps steps in a model of seqLen positions, when n is
// more than the positions the run may take (steps, where 0 < steps <
// seqLen, else seqLen): the prompt was cut there (and printed so, as
// llama2.c's run prints it, unless printed is false: a chat prints the
// reply alone), and what would leave room for an answer.
func noRoomNote(n, steps, seqLen int, printed bool) string {
	limited := steps > 0 && steps < seqLen
	s := fmt.Sprintf("the prompt's %d tokens (BOS included) are more than the model's seq_len of %d positions: nothing was generated", n, seqLen)
	if limited {
		s = fmt.Sprintf("--steps %d is less than the prompt's %d tokens (BOS included): nothing was generated", steps, n)
	}
	if printed {
		s += " (the prompt printed above is cut short there)"
	}
	switch {
	case n <= seqLen:
		// Steps alone stand in the way: n positions generate one token.
		return s + fmt.Sprintf("; raise --steps to at least %d, which generates one token (--steps counts the prompt's positions; 0 means the model's %d)", n, seqLen)
	case limited:
		return s + fmt.Sprintf("; the model's seq_len is %d, so shorten the prompt below that and raise --steps", seqLen)
	}
	return s + fmt.Sprintf("; shorten the prompt to fewer than %d tokens, to leave room for an answer", seqLen)
}

// tokenizerSource returns where the tokenizer of the model at modelPath
// is read from (see tokenizer.Load): tokPath when given, else the model's
// own folder when it is a Hugging Face folder holding tokenizer.json or
// tokenizer.model. A llama2.c checkpoint holds no tokenizer, so it needs
// tokPath.
func tokenizerSource(modelPath, tokPath string) (string, error) {
	if tokPath != "" {
		return tokPath, nil
	}
	st, err := os.Stat(modelPath)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("model %s does not exist", modelPath)
	}
	if err == nil && st.IsDir() {
		if _, ok := tokenizer.DirFile(modelPath); ok {
			return modelPath, nil
		}
		if err := checkModelFolder(modelPath); err != nil {
			return "", err
		}
		return "", fmt.Errorf("--tokenizer is required: the Hugging Face folder %s has neither tokenizer.json nor tokenizer.model", modelPath)
	}
	return "", fmt.Errorf("--tokenizer is required with --model %s: only a Hugging Face folder holding tokenizer.json or tokenizer.model brings its own (a llama2.c checkpoint needs its tokenizer.bin)", modelPath)
}

// openBaseAndTokenizer loads the tokenizer (see tokenizerSource) and opens
// the base model at modelPath (openBase: a Hugging Face folder's tensors
// are read as openBaseModel uploads them), and checks that the tokenizer
// fits the model's vocabulary. The tokenizer is read once the model is
// known to exist but before it is opened: it is small, and a bad one is
// then reported before a large model is read. Close the base model when
// done.
func openBaseAndTokenizer(modelPath, tokPath string) (*baseModel, *tokenizer.Tokenizer, error) {
	return baseAndTokenizer(modelPath, tokPath, openBase)
}

// baseAndTokenizer is openBaseAndTokenizer with load reading the model
// (tests read it whole with loadBase).
func baseAndTokenizer(modelPath, tokPath string, load func(string) (*baseModel, error)) (*baseModel, *tokenizer.Tokenizer, error) {
	if st, err := os.Stat(modelPath); errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("model %s does not exist", modelPath)
	} else if err == nil && st.IsDir() {
		// Before the tokenizer is read: a folder that cannot be a
		// checkpoint is the first thing to say, whatever --tokenizer is.
		if err := checkModelFolder(modelPath); err != nil {
			return nil, nil, err
		}
	}
	src, err := tokenizerSource(modelPath, tokPath)
	if err != nil {
		return nil, nil, err
	}
	tok, err := tokenizer.Load(src)
	if err != nil {
		return nil, nil, err
	}
	bm, err := load(modelPath)
	if err != nil {
		return nil, nil, err
	}
	if err := tok.CheckVocab(bm.config().VocabSize); err != nil {
		bm.close()
		return nil, nil, fmt.Errorf("tokenizer %s does not fit model %s: %w", src, modelPath, err)
	}
	return bm, tok, nil
}

// stopTokens returns the ids that end a generation: BOS, with which
// llama2.c's models start a new story, and EOS with the other
// end-of-sequence ids a Hugging Face folder lists (see
// tokenizer.Tokenizer.Stops: Llama 3 Instruct ends its turns with
// <|eot_id|> whichever EOS its tokenizer_config.json names). EOS stops
// every model, llama2.c's included: fine-tuning appends it to every answer
// (as LLM-Adapters does), so an adapter, the checkpoint merged from it and
// a fully fine-tuned model all end their answers with it, and must stop
// there alike, in generate as in eval. llama2.c's run stops at BOS alone,
// but its pretrained models never emit EOS (their stories are delimited
// by BOS), so their text is run's. Ids the tokenizer lacks (-1) are left
// out.
func stopTokens(tok *tokenizer.Tokenizer) []int {
	var stop []int
	if id := tok.BOS(); id >= 0 {
		stop = append(stop, id)
	}
	for _, id := range tok.Stops() {
		if !slices.Contains(stop, id) {
			stop = append(stop, id)
		}
	}
	return stop
}

// openBaseModel builds the base model that openBase (or loadBase) gave on
// the backend b with the options o (--base-dtype; see baseModel.newModel:
// an opened Hugging Face folder is read tensor by tensor as it is
// uploaded, and host weights are dropped once uploaded). The commands open
// b before they read the model, so that a backend this machine cannot run
// is reported at once rather than after a long load. On failure it prints
// why to stderr, prefixed with "sora cmd:", and returns a nil model and
// the exit status; otherwise release frees the model (the caller closes
// b).
func openBaseModel(cmd string, b backend.Backend, bm *baseModel, o llama.Options, stderr io.Writer) (m *llama.Model, release func(), code int) {
	m, err := bm.newModel(b, o)
	if err != nil {
		fmt.Fprintf(stderr, "sora %s: loading %s on %s: %v\n", cmd, bm.path, b.Name(), err)
		return nil, nil, exitFailure
	}
	return m, m.Free, exitOK
}

// adapterInfo is what an adapter folder says before the base model is
// loaded: its metadata and whether it carries a classification head.
type adapterInfo struct {
	dir  string
	meta adapter.Meta
	head bool
}

// readAdapter reads the config of the adapter in dir (see
// [adapter.ReadConfig]) for command cmd. Where dir holds the whole model
// that "sora finetune --method full" writes instead (or is the output
// folder of such a run), the error says what cmd can do with it.
func readAdapter(cmd, dir string) (adapterInfo, error) {
	_, meta, err := adapter.ReadConfig(dir)
	if err != nil {
		// Passing the output folder of "sora finetune" instead of its
		// adapter/ (or best/, which --keep-best writes as adapter/ is) is
		// an easy slip; name the folders meant.
		inner, best := filepath.Join(dir, "adapter"), filepath.Join(dir, "best")
		if _, serr := os.Stat(filepath.Join(dir, adapter.ConfigFile)); errors.Is(serr, os.ErrNotExist) {
			hasInner, hasBest := fileExists(filepath.Join(inner, adapter.ConfigFile)), fileExists(filepath.Join(best, adapter.ConfigFile))
			switch {
			case hasInner && hasBest:
				return adapterInfo{}, fmt.Errorf("%s holds no %s, but its adapter/ and best/ folders do (a \"sora finetune\" output folder?): use --adapter %s for the final weights, or --adapter %s for those of the best evaluation (--keep-best)", dir, adapter.ConfigFile, inner, best)
			case hasInner:
				return adapterInfo{}, fmt.Errorf("%s holds no %s, but its adapter/ folder does (a \"sora finetune\" output folder?): use --adapter %s", dir, adapter.ConfigFile, inner)
			case hasBest:
				return adapterInfo{}, fmt.Errorf("%s holds no %s, but its best/ folder does (a \"sora finetune --keep-best\" output folder?): use --adapter %s", dir, adapter.ConfigFile, best)
			}
			if model := fullModel(dir); model != "" {
				return adapterInfo{}, fullModelError(cmd, dir, model, "")
			}
			if model := fullModel(inner); model != "" {
				return adapterInfo{}, fullModelError(cmd, inner, model, fullModel(best))
			}
			if model := fullModel(best); model != "" {
				return adapterInfo{}, fullModelError(cmd, best, model, "")
			}
		}
		return adapterInfo{}, err
	}
	return adapterInfo{dir: dir, meta: meta, head: slices.Contains(meta.ModulesToSave, llama.ScoreModule)}, nil
}

// fullModel returns the model that "sora finetune --method full" leaves
// in dir (its adapter/ folder), "" where there is none.
func fullModel(dir string) string {
	for _, m := range []struct{ probe, model string }{{"model.bin", "model.bin"}, {filepath.Join("model", "config.json"), "model"}} {
		if _, err := os.Stat(filepath.Join(dir, m.probe)); err == nil {
			return filepath.Join(dir, m.model)
		}
	}
	return ""
}

// fullModelError says, for command cmd, that dir holds the whole model
// (at model) of a full fine-tuning rather than an adapter; best, where not
// "", is the model of the run's best evaluation (in best/), named beside
// it.
func fullModelError(cmd, dir, model, best string) error {
	what := fmt.Sprintf("%s holds no adapter but the whole model that \"sora finetune --method full\" trains", dir)
	orBest := ""
	if best != "" {
		orBest = fmt.Sprintf(" (or %s, the best evaluation's)", best)
	}
	switch cmd {
	case "merge":
		return fmt.Errorf("%s: there is nothing to merge; it is a plain model already, which eval and generate take as --model %s%s", what, model, orBest)
	case "spectrum":
		return fmt.Errorf("%s: sora spectrum analyses adapters; the run wrote the spectra of its linear layers' W − W0 into spectrum.json and spectrum.png in its output folder (unless --no-spectrum)", what)
	}
	return fmt.Errorf("%s: use --model %s%s", what, model, orBest)
}

// baseModel returns the base model named by the adapter's config
// (base_model_name_or_path), for commands run without --model; "" when it
// names none. "sora finetune" records --model as it was given, so a
// relative path only resolves from the folder the training ran in: when the
// path does not exist, the error says where it came from and asks for
// --model rather than reporting a missing model the user never named.
func (a adapterInfo) baseModel() (string, error) {
	p := a.meta.BaseModel
	if p == "" {
		return "", nil
	}
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		where := ""
		if !filepath.IsAbs(p) {
			where = ", relative to the folder the adapter was trained in"
		}
		return "", fmt.Errorf("no --model given, and the base model that %s names (base_model_name_or_path %q%s) does not exist here: pass --model", filepath.Join(a.dir, adapter.ConfigFile), p, where)
	}
	return p, nil
}

// modelPath returns flag, the --model given, or when that is empty the
// base model the adapter names (see baseModel), or an error saying that
// --model is needed.
func (a adapterInfo) modelPath(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	p, err := a.baseModel()
	if err == nil && p == "" {
		err = fmt.Errorf("--model is required: %s names no base model", filepath.Join(a.dir, adapter.ConfigFile))
	}
	return p, err
}

// apply loads the adapter onto m without merging it, first giving m a
// score head of the saved size when the adapter has one (classes is then
// its number of classes, else 0; adapter.Load fills it in). The caller
// unloads pm, before or after freeing m.
func (a adapterInfo) apply(m *llama.Model) (pm *peft.Model, classes int, err error) {
	if a.head {
		shape, ok, err := adapter.ModuleShape(a.dir, llama.ScoreModule)
		if err != nil {
			return nil, 0, err
		}
		want := fmt.Sprintf("a score head %s of shape [classes ≥ 2, %d]", adapter.Key(llama.ScoreModule, "weight"), m.Config().Dim)
		if !ok {
			return nil, 0, fmt.Errorf("%s: modules_to_save lists %q but the weights hold no %s", filepath.Join(a.dir, adapter.WeightsFile), llama.ScoreModule, want)
		}
		if len(shape) != 2 || shape[0] < 2 || shape[1] != m.Config().Dim {
			return nil, 0, fmt.Errorf("%s: %s has shape %v; want %s", filepath.Join(a.dir, adapter.WeightsFile), adapter.Key(llama.ScoreModule, "weight"), shape, want)
		}
		classes = shape[0]
		if err := m.AddScoreHead(classes, 0); err != nil {
			return nil, 0, err
		}
	}
	pm, _, err = adapter.Load(a.dir, m)
	if err != nil {
		return nil, 0, err
	}
	return pm, classes, nil
}
