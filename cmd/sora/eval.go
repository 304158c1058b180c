package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/tokenizer"
	"github.com/sora-go/sora/train"
)

func init() {
	register(command{
		name:    "eval",
		summary: "score a model (with an adapter, unmerged) on LM or classification data: accuracy, MCC, baseline",
		run:     runEval,
	})
}

var evalDoc = usageDoc{
	synopsis: "eval --model FILE|DIR [--tokenizer PATH] --data FILE [--adapter DIR] [--task lm|classify] [flags]",
	description: "Evaluates a model, with the adapter in --adapter applied to the base weights without merging them, " +
		"on held-out data. For --task lm (JSON or JSON Lines rows, in any of the formats \"sora finetune\" trains on) each row's " +
		"prompt (an instruction row's Alpaca prompt, a prompt/completion row's prompt, a conversation's messages before its last " +
		"assistant message rendered with the chat template; text rows have none and are scored by their loss), whole as the loss scores it, " +
		"is continued greedily for up to --max-new-tokens tokens (stopping at EOS; fewer for a prompt that leaves " +
		"less room in the model's seq_len positions, counted in a note) and the answer is extracted from the text as LLM-Adapters' " +
		"evaluation scripts do: the first true/false for BoolQ, the first answer1…answer5 (or option/solution/" +
		"ending N) for multiple choice, the last number (within 0.001) for arithmetic, the first capital A to E for AQuA (and in a set " +
		"of numbers and letters, as math_10k is, each row's by its gold answer's kind); accuracy is compared with " +
		"the majority-answer baseline. The gold answer is a row's \"answer\" field, else a prompt/completion row's completion or a " +
		"conversation's last assistant message; gold answers that are not all of one of those kinds are compared whole instead " +
		"(this project's rule, not LLM-Adapters': the generated text, trimmed, must equal the gold answer, ignoring case). " +
		"Rows without a gold answer count in the loss but not in the accuracy, " +
		"and are not generated for; when no row has one, eval reports the loss alone, and says so before it runs. " +
		"For --task classify (CoLA TSV or BoolQ JSON, with an adapter trained by " +
		"\"sora finetune --task classify\", whose score head it loads, or without --adapter a --model that " +
		"\"sora finetune --method full --task classify\" wrote, whose head it loads from score.safetensors beside " +
		"the model) it reports accuracy, the Matthews " +
		"correlation and the majority-class baseline. A head trained on other labels than the data's is refused, even with as many " +
		"classes: its labels are those its folder's " + labelsFile + " records, else those of the training data its \"sora finetune\" " +
		"run.json names; a head with neither is taken to have the data's labels, with a note. " +
		"Both also give the loss per answer token or sequence. " +
		"An --adapter (or fully fine-tuned --model) in the output folder of \"sora finetune\" (adapter/, best/ or checkpoints/step-N/adapter/, " +
		"beside run.json) is evaluated at the --max-len the run trained at, which a note names, unless --max-len is given; " +
		"answers stop at EOS and BOS, as in \"sora generate\". " +
		"The table goes to stdout and every prediction to the --json file (eval.json in the current folder unless given), " +
		"whose folder is checked before the evaluation starts; an earlier file there is replaced, which the last line says.",
	examples: []string{
		"sora eval --model stories260K.bin --tokenizer tok512.bin --adapter runs/boolq-sora/adapter --data boolq/test.json --max-eval 500",
		"sora eval --model stories260K.bin --tokenizer tok512.bin --adapter runs/cola/adapter --task classify --data cola/in_domain_dev.tsv",
		"sora eval --model runs/cola-full/adapter/model.bin --tokenizer tok512.bin --data cola/in_domain_dev.tsv",
	},
}

// evalReport is what "sora eval" writes to --json.
type evalReport struct {
	Model      string `json:"model"`
	Adapter    string `json:"adapter,omitempty"`
	Head       string `json:"head,omitempty"` // a full fine-tune's classification head, read from beside the model
	Method     string `json:"method,omitempty"`
	Data       string `json:"data"`
	Task       string `json:"task"`
	Rows       int    `json:"rows"`
	AnswerKind string `json:"answer_kind,omitempty"`
	// AnswerRows is the number of LM rows with a gold answer, which the
	// accuracy is over; the loss is over all Rows.
	AnswerRows int     `json:"answer_rows,omitempty"`
	Accuracy   float64 `json:"accuracy"`
	Majority   float64 `json:"majority_baseline"`
	// MajorityAnswer is the answer (LM) or class (classification) the
	// baseline always gives.
	MajorityAnswer string       `json:"majority_answer"`
	MCC            *float64     `json:"mcc,omitempty"`
	Loss           float64      `json:"loss"`
	NoAnswer       int          `json:"no_answer,omitempty"`
	Confusion      [][]int      `json:"confusion,omitempty"`
	Seconds        float64      `json:"seconds"`
	Predictions    []prediction `json:"predictions"`
}

// MarshalJSON leaves the answer accuracy and its baseline out of an LM
// report that scored no answers, where they would read as 0.
func (r evalReport) MarshalJSON() ([]byte, error) {
	type plain evalReport // the fields without this method
	if r.Task != train.LM.String() || r.AnswerRows > 0 {
		return json.Marshal(plain(r))
	}
	return json.Marshal(struct {
		plain
		AnswerRows     int      `json:"answer_rows"`
		Accuracy       *float64 `json:"accuracy,omitempty"`
		Majority       *float64 `json:"majority_baseline,omitempty"`
		MajorityAnswer *string  `json:"majority_answer,omitempty"`
	}{plain: plain(r)})
}

type prediction struct {
	Row     int    `json:"row"`
	Gold    string `json:"gold"`
	Pred    string `json:"pred"`
	Correct bool   `json:"correct"`
	Output  string `json:"output,omitempty"`
}

func runEval(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("eval")
	name := addBackendFlag(fs)
	modelPath := fs.String("model", "", "`PATH` of the base model (a llama2.c file or Hugging Face folder); default: the base_model_name_or_path of --adapter")
	tokPath := fs.String("tokenizer", "", "`PATH` of the model's tokenizer: a llama2.c tokenizer.bin, or a Hugging Face tokenizer.json, tokenizer.model or model folder (default: the --model folder's own, for a Hugging Face model; required for a llama2.c checkpoint)")
	adapterDir := fs.String("adapter", "", "`DIR` of an adapter to apply to the base model, unmerged (none: the base model alone)")
	dataPath := fs.String("data", "", "`FILE` of evaluation data (required): for lm a JSON list or JSON Lines of rows, as \"sora finetune --data\" takes them; CoLA TSV or BoolQ JSON for --task classify")
	taskName := fs.String("task", "", "`TASK`: lm or classify (default: classify when the adapter has a score head, or without --adapter when the model has one beside it in "+headFile+", else lm)")
	maxEval := fs.Int("max-eval", 0, "evaluate a random subset of `N` rows (0: all)")
	seed := fs.Uint64("seed", 43, "`SEED` of the --max-eval subset; \"sora finetune --seed S\" draws its --max-eval rows with S+1, so the default matches its default 42, and for an --adapter (or a fully fine-tuned --model) in a \"sora finetune\" output folder it is the --seed its run.json records + 1")
	maxLen := fs.Int("max-len", 256, "longest prompt or sequence in `TOKENS` (capped at the model's seq_len); default for an --adapter (or a fully fine-tuned --model) in a \"sora finetune\" output folder: the --max-len its run.json records")
	maxNew := fs.Int("max-new-tokens", 32, "tokens to generate per prompt at most, `N` (lm); a prompt generates fewer when only fewer fit in the model's seq_len; default for an --adapter (or a fully fine-tuned --model) in a \"sora finetune\" output folder: the --max-new-tokens its run.json records")
	batch := fs.Int("batch", 16, "sequences per batch `N` for the loss, classification and generation (prompts generate N at a time, left-padded, each as it would alone)")
	jsonPath := fs.String("json", "eval.json", "`FILE` to write the report and every prediction to, replacing an earlier one (\"\" for none); its folder is checked before the evaluation starts")
	show := fs.Int("show", 3, "print the first `N` generations (lm)")
	var dtName string
	runBaseDTypeFlagVar(fs, &dtName)
	var cf chatFlags
	cf.addTemplate(fs, ", for data of conversations (messages rows)")
	if code, ok := parseFlags(fs, evalDoc, args, stdout, stderr); !ok {
		return code
	}
	mopts, err := baseDType(dtName)
	if err != nil {
		fmt.Fprintf(stderr, "sora eval: %v\n", err)
		return exitUsage
	}
	if code := evalCheck(*dataPath, *maxEval, *maxLen, *maxNew, *batch, stderr); code != exitOK {
		return code
	}
	// The report is written after the evaluation, which may take hours:
	// a path it cannot be written to is refused now.
	replacing := false
	if *jsonPath != "" {
		if replacing, err = checkOutputFile(*jsonPath); err != nil {
			fmt.Fprintf(stderr, "sora eval: --json: %v\n", err)
			return exitFailure
		}
	}
	var ad *adapterInfo
	hasHead := false
	if *adapterDir != "" {
		a, err := readAdapter("eval", *adapterDir)
		if err != nil {
			fmt.Fprintf(stderr, "sora eval: %v\n", err)
			return exitFailure
		}
		ad, hasHead, cf.adapter = &a, a.head, a.dir
		noteTrainedBaseDType(stderr, "eval", a.dir, train.BaseDTypeName(mopts.BaseDType))
		if *modelPath, err = a.modelPath(*modelPath); err != nil {
			fmt.Fprintf(stderr, "sora eval: %v\n", err)
			return exitUsage
		}
	}
	if *modelPath == "" {
		fmt.Fprintln(stderr, "sora eval: --model is required (or an --adapter whose config names its base model)")
		return exitUsage
	}
	tokSrc, err := tokenizerSource(*modelPath, *tokPath)
	if err != nil {
		fmt.Fprintf(stderr, "sora eval: %v\n", err)
		return exitUsage
	}
	// A whole model from "sora finetune --method full --task classify"
	// keeps its head beside it. With --adapter the adapter alone decides,
	// as it was trained on top of the model without that head.
	head := ""
	if ad == nil {
		head = findHead(*modelPath)
		hasHead = head != ""
	}
	// Rows the training kept whole would be cut at a shorter --max-len
	// (or left out): the run's own is the default. So are its answers'
	// length and, for a sample of the evaluation data, the sample
	// finetune drew (with its --seed + 1).
	run := findTrainingRun(trainedDir(ad, *modelPath))
	if run != nil {
		fromRun(stdout, fs, "max-len", maxLen, run.Config.MaxLen, run.Config.MaxLen >= 2,
			fmt.Sprintf("as the training run recorded it in %s (give --max-len to evaluate at another)", run.path))
		fromRun(stdout, fs, "max-new-tokens", maxNew, run.Config.MaxNewTokens, run.Config.MaxNewTokens > 0,
			fmt.Sprintf("as the training run recorded it in %s", run.path))
		if run.Config.Seed != nil {
			fromRun(stdout, fs, "seed", seed, *run.Config.Seed+1, *maxEval > 0,
				fmt.Sprintf("which draws the --max-eval rows the training run (--seed %d in %s) drew from the same data (give --seed to draw others)", *run.Config.Seed, run.path))
		}
	}
	task := train.LM
	if hasHead {
		task = train.Classify
	}
	if *taskName != "" {
		t, err := train.ParseTask(*taskName)
		if err != nil {
			fmt.Fprintf(stderr, "sora eval: --task: %v\n", err)
			return exitUsage
		}
		task = t
	}
	if task == train.Classify && !hasHead {
		if ad != nil {
			fmt.Fprintf(stderr, "sora eval: --task classify needs a classification head, and the adapter %s has none (an adapter trained with \"sora finetune --task classify\" lists \"score\" in modules_to_save)\n", ad.dir)
		} else {
			fmt.Fprintf(stderr, "sora eval: --task classify needs a classification head: an --adapter trained with \"sora finetune --task classify\", or a --model written by \"sora finetune --method full --task classify\", with its head beside it in %s (no such file)\n", headPath(*modelPath))
		}
		return exitUsage
	}
	if task != train.Classify {
		head = "" // not needed: leave the file unread
	}

	b, code := openBackend(*name, stderr)
	if b == nil {
		return code
	}
	defer b.Close()
	base, tok, err := openBaseAndTokenizer(*modelPath, *tokPath)
	if err != nil {
		fmt.Fprintf(stderr, "sora eval: %v\n", err)
		return exitFailure
	}
	defer base.close()
	cfg := base.config()
	var headClasses int
	var headW []float32
	if head != "" {
		if headClasses, headW, err = readHead(head, cfg.Dim); err != nil {
			fmt.Fprintf(stderr, "sora eval: %v\n", err)
			return exitFailure
		}
	}
	limit := min(*maxLen, cfg.MaxSeqLen)
	chats := &chatSource{flags: &cf, tokSrc: tokSrc, addsBOS: tok.BOS() >= 0}
	set, err := loadTaskData(*dataPath, task, tok, chats, limit, *maxEval, *seed)
	if err != nil {
		fmt.Fprintf(stderr, "sora eval: %v\n", err)
		return exitFailure
	}
	if note := set.lengthNote(limit, cfg.MaxSeqLen); note != "" {
		fmt.Fprintf(stdout, "note: %s: %s\n", *dataPath, note)
	}
	if note := answerNote(set, task); note != "" {
		fmt.Fprintf(stdout, "note: %s: %s\n", *dataPath, note)
	}
	if task == train.Classify {
		// Counts alone would let a head trained on other labels read the
		// data's classes as its own.
		dir := filepath.Dir(head)
		if ad != nil {
			dir = ad.dir
		}
		note, err := checkHeadLabels(dir, run, set.classes, *dataPath)
		if err != nil {
			fmt.Fprintf(stderr, "sora eval: %v\n", err)
			return exitFailure
		}
		if note != "" {
			fmt.Fprintf(stdout, "note: %s\n", note)
		}
	}
	if head != "" && headClasses != len(set.classes) {
		fmt.Fprintf(stderr, "sora eval: the classification head %s has %d classes, %s has %d\n", head, headClasses, *dataPath, len(set.classes))
		return exitFailure
	}
	m, release, code := openBaseModel("eval", b, base, mopts, stderr)
	if m == nil {
		return code
	}
	defer release()
	rep := &evalReport{Model: *modelPath, Adapter: *adapterDir, Head: head, Data: *dataPath, Task: task.String()}
	if head != "" {
		if err := setHead(m, headClasses, headW); err != nil {
			fmt.Fprintf(stderr, "sora eval: %s: %v\n", head, err)
			return exitFailure
		}
	}
	if ad != nil {
		pm, classes, err := ad.apply(m)
		if err != nil {
			fmt.Fprintf(stderr, "sora eval: %v\n", err)
			return exitFailure
		}
		defer pm.Unload()
		rep.Method = string(pm.Config().Method)
		if task == train.Classify && classes != len(set.classes) {
			fmt.Fprintf(stderr, "sora eval: the adapter's head has %d classes, %s has %d\n", classes, *dataPath, len(set.classes))
			return exitFailure
		}
	}
	start := time.Now()
	// Ctrl-C stops the answers' generation between decoding steps and
	// writes nothing; a second one quits at once.
	ctx, stop := interruptible(stderr, "stopping the evaluation; nothing will be written")
	err = scoreSet(ctx, m, tok, task, set, *batch, *maxNew, rep, stdout, *show)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err != nil && interrupted:
		fmt.Fprintln(stderr, "sora eval: interrupted: nothing written")
		return exitInterrupted
	case err != nil:
		fmt.Fprintf(stderr, "sora eval: %v\n", err)
		return exitFailure
	}
	rep.Seconds = time.Since(start).Seconds()
	printEval(stdout, rep)
	if *jsonPath != "" {
		if err := writeJSON(*jsonPath, rep); err != nil {
			fmt.Fprintf(stderr, "sora eval: %v\n", err)
			return exitFailure
		}
		if replacing {
			fmt.Fprintf(stdout, "wrote %s (replaced the earlier file)\n", *jsonPath)
		} else {
			fmt.Fprintf(stdout, "wrote %s\n", *jsonPath)
		}
	}
	return exitOK
}

func evalCheck(dataPath string, maxEval, maxLen, maxNew, batch int, stderr io.Writer) int {
	switch {
	case dataPath == "":
		fmt.Fprintln(stderr, "sora eval: --data is required (an LLM-Adapters .json or CoLA .tsv file)")
	case maxEval < 0:
		fmt.Fprintf(stderr, "sora eval: --max-eval %d: want 0 (all rows) or a positive number\n", maxEval)
	case maxLen < 2:
		fmt.Fprintf(stderr, "sora eval: --max-len %d: want at least 2\n", maxLen)
	case maxNew < 1:
		fmt.Fprintf(stderr, "sora eval: --max-new-tokens %d: want at least 1\n", maxNew)
	case batch < 1:
		fmt.Fprintf(stderr, "sora eval: --batch %d: want at least 1\n", batch)
	default:
		return exitOK
	}
	return exitUsage
}

// trainedDir returns the folder of what "sora eval" evaluates that a
// "sora finetune" run may have written: the adapter's folder, or without
// one the folder that holds a fully fine-tuned --model (see fullModel); ""
// for a plain model.
func trainedDir(ad *adapterInfo, modelPath string) string {
	if ad != nil {
		return ad.dir
	}
	if dir := filepath.Dir(filepath.Clean(modelPath)); fullModel(dir) == filepath.Clean(modelPath) {
		return dir
	}
	return ""
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// checkOutputFile checks that a file can be written to path later, as
// writeJSON writes it (a temporary file in its folder, renamed into place;
// missing folders made): path is no folder, and a file can be created in
// its folder, or where that is yet to be made, in its nearest existing
// parent. It reports whether path exists, for the file then replaces it.
func checkOutputFile(path string) (exists bool, err error) {
	switch st, err := os.Stat(path); {
	case err == nil && st.IsDir():
		return false, fmt.Errorf("%s is a folder; want the path of a file", path)
	case err == nil:
		exists = true
	case !errors.Is(err, iofs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
		return false, err // a part of the path that is a file is named below
	}
	dir := filepath.Dir(filepath.Clean(path))
	for {
		st, err := os.Stat(dir)
		if err == nil && !st.IsDir() {
			return false, fmt.Errorf("cannot write %s: %s is not a folder", path, dir)
		}
		if err == nil {
			break
		}
		up := filepath.Dir(dir)
		if !errors.Is(err, iofs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) || up == dir {
			return false, fmt.Errorf("cannot write %s: %w", path, err)
		}
		dir = up // to be made: its parent must take it
	}
	f, err := os.CreateTemp(dir, ".sora-write-check-*")
	if err != nil {
		var pe *iofs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return false, fmt.Errorf("cannot write %s: no file can be created in %s: %v", path, dir, err)
	}
	f.Close()
	return exists, os.Remove(f.Name())
}

// scoreSet evaluates m on set and fills rep: generation and answer
// extraction for LM data, arg-max classes for classification. A cancelled
// ctx stops the loss pass or the generation, at its next batch, with an
// error wrapping ctx's.
func scoreSet(ctx context.Context, m *llama.Model, tok *tokenizer.Tokenizer, task train.Task, set *taskData, batch, maxNew int, rep *evalReport, log io.Writer, show int) error {
	classes := len(set.classes)
	ev, err := train.Evaluate(ctx, m, task, set.seqs, batch, classes)
	if err != nil {
		return err
	}
	rep.Loss = ev.Loss
	rep.Rows = len(set.seqs)
	if task == train.Classify {
		rep.Accuracy = ev.Accuracy
		rep.MCC = ev.MCC
		gold := make([]int, len(set.seqs))
		for i, s := range set.seqs {
			gold[i] = s.Label
		}
		lbl, acc, err := data.Majority(gold)
		if err != nil {
			return err
		}
		rep.Majority, rep.MajorityAnswer = acc, set.classes[lbl]
		rep.Confusion = make([][]int, classes)
		for i := range rep.Confusion {
			rep.Confusion[i] = make([]int, classes)
		}
		for i, s := range set.seqs {
			p := ev.Predictions[i]
			rep.Confusion[s.Label][p]++
			rep.Predictions = append(rep.Predictions, prediction{Row: set.fileRow(s.Row), Gold: set.classes[s.Label], Pred: set.classes[p], Correct: p == s.Label})
		}
		return nil
	}
	// LM: generate and extract, only for the rows that were encoded and
	// have a gold answer to compare with (see answerNote).
	rows, golds, scored := answered(set)
	rep.AnswerRows = len(rows.Rows)
	if len(rows.Rows) == 0 {
		rep.Predictions = []prediction{} // the loss alone
		return nil
	}
	x, err := data.NewExtractor(golds)
	if err != nil {
		return fmt.Errorf("%s: %w", set.path, err)
	}
	rep.AnswerKind = x.Kind.String()
	ans, acc, err := data.MajorityAnswer(golds)
	if err != nil {
		return err
	}
	rep.Majority, rep.MajorityAnswer = acc, ans
	// Prompts go to the model whole, as the loss scored them, and each
	// generates what fits of maxNew in the model's positions (train.Generate
	// stops there); cutting them to leave room for maxNew would generate
	// from another prompt than the one scored.
	seqLen := m.Config().MaxSeqLen
	prompts, pst, err := rows.EncodePrompts(tok, set.chat, seqLen)
	if err != nil {
		return err
	}
	if note := generationNote(prompts, pst, maxNew, seqLen); note != "" {
		fmt.Fprintf(log, "note: %s: %s\n", set.path, note)
	}
	fmt.Fprintf(log, "generating up to %d tokens for %d prompts…\n", maxNew, len(prompts))
	outs, err := train.Generate(ctx, m, prompts, maxNew, batch, stopTokens(tok))
	if err != nil {
		return err
	}
	correct := 0
	for i, o := range outs {
		text := tok.DecodeAll(o)
		scoredText := text
		if set.lm.Format == data.FormatInstruction {
			// As LLM-Adapters' evaluation: not from a further example the
			// model went on to write.
			scoredText = data.ScoredResponse(text)
		}
		rx := x.For(golds[i])
		pred, ok := rx.Extract(scoredText)
		if !ok {
			rep.NoAnswer++
		}
		c := ok && rx.Correct(pred, golds[i])
		if c {
			correct++
		}
		row := set.fileRow(set.seqs[scored[i]].Row)
		rep.Predictions = append(rep.Predictions, prediction{Row: row, Gold: golds[i], Pred: pred, Correct: c, Output: text})
		if i < show {
			fmt.Fprintf(log, "  row %d: %q → %q (gold %q)\n", row, strings.TrimSpace(text), pred, golds[i])
		}
	}
	rep.Accuracy = float64(correct) / float64(len(outs))
	return nil
}

// fromRun sets *p, the value of the flag name, to v, what the training
// run recorded, where ok says the run recorded one, unless the flag was
// given or already holds v; it says so on w, with why.
func fromRun[T comparable](w io.Writer, fs *flag.FlagSet, name string, p *T, v T, ok bool, why string) {
	if !ok || *p == v || flagSet(fs, name) {
		return
	}
	*p = v
	fmt.Fprintf(w, "note: --%s %v, %s\n", name, v, why)
}

// answerNote says, for LM data, when rows have no gold answer: their
// loss is scored but not their answers, which are neither generated nor
// counted in the accuracy; "" when every row has one.
func answerNote(set *taskData, task train.Task) string {
	if task != train.LM {
		return ""
	}
	n := len(set.seqs)
	if !set.lm.Format.Generates() {
		return fmt.Sprintf("%v: reporting the loss of all %d rows, and no answer accuracy", data.ErrNoGeneration, n)
	}
	_, golds, _ := answered(set)
	gold := goldName(set.lm.Format)
	switch missing := n - len(golds); {
	case missing == 0:
		return ""
	case missing == n:
		return fmt.Sprintf("no row has an %s: reporting the loss of all %d rows, and no answer accuracy", gold, n)
	default:
		return fmt.Sprintf("%d of %d rows have no %s: the answer accuracy is over the other %d, the loss over all %d", missing, n, gold, n-missing, n)
	}
}

// goldName names, without an article, where the rows of a format take
// their gold answer from (see data.Set.Gold).
func goldName(f data.Format) string {
	switch f {
	case data.FormatPromptCompletion:
		return "\"answer\" field or completion"
	case data.FormatMessages, data.FormatChatPromptCompletion:
		return "\"answer\" field or last assistant message"
	}
	return "\"answer\" field"
}

// answered returns the encoded rows of set that have a gold answer to
// score a generation against (see data.Set.Gold; a blank one counts as
// missing), their answers, and their positions in set.seqs. Rows in the
// text format have none.
func answered(set *taskData) (rows *data.Set, golds []string, scored []int) {
	rows = &data.Set{Name: set.lm.Name, Format: set.lm.Format}
	for i, s := range set.seqs {
		if g := set.lm.Gold(s.Row); strings.TrimSpace(g) != "" {
			rows.Rows, golds, scored = append(rows.Rows, set.lm.Rows[s.Row]), append(golds, g), append(scored, i)
		}
	}
	return rows, golds, scored
}

// generationNote says how many prompts leave room for fewer than maxNew
// new tokens in the model's seqLen positions (a prompt of n tokens has
// room for seqLen − n + 1: the last position's logits give one more), and
// how many had to be cut to fit at all (possible only when a prompt's own
// encoding is longer than its tokens in the prompt + output the loss
// scored); "" when none.
func generationNote(prompts [][]int, st data.EncodeStats, maxNew, seqLen int) string {
	short := 0
	for _, p := range prompts {
		if seqLen-len(p)+1 < maxNew {
			short++
		}
	}
	var parts []string
	if short > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d prompts leave room for fewer than --max-new-tokens %d in the model's %d positions: they generate only as many tokens as fit", short, len(prompts), maxNew, seqLen))
	}
	if st.Truncated > 0 {
		parts = append(parts, fmt.Sprintf("%d prompts fill the model's %d positions and keep only their last %d tokens for generation", st.Truncated, seqLen, seqLen-2))
	}
	return strings.Join(parts, "; ")
}

func printEval(w io.Writer, r *evalReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	what := r.Model
	switch {
	case r.Adapter != "":
		what = r.Method + " adapter " + r.Adapter
	case r.Head != "":
		what += " with the classification head " + r.Head
	}
	fmt.Fprintf(w, "\n%s on %s (%s, %d rows)\n", what, r.Data, r.Task, r.Rows)
	switch {
	case r.Task == "classify":
		fmt.Fprintln(tw, "accuracy\tMCC\tmajority baseline\tloss\t")
		fmt.Fprintf(tw, "%.4f\t%.4f\t%.4f (%s)\t%.4f\t\n", r.Accuracy, *r.MCC, r.Majority, r.MajorityAnswer, r.Loss)
	case r.AnswerRows == 0:
		fmt.Fprintln(w, "no answer accuracy: no row has an \"answer\" field")
		fmt.Fprintln(tw, "loss/answer token\t")
		fmt.Fprintf(tw, "%.4f\t\n", r.Loss)
	default:
		if r.AnswerRows < r.Rows {
			fmt.Fprintf(w, "answer accuracy over the %d of %d rows with an \"answer\" field\n", r.AnswerRows, r.Rows)
		}
		fmt.Fprintln(tw, "accuracy\tmajority baseline\tno answer\tloss/answer token\t")
		fmt.Fprintf(tw, "%.4f\t%.4f (%s)\t%d\t%.4f\t\n", r.Accuracy, r.Majority, r.MajorityAnswer, r.NoAnswer, r.Loss)
	}
	tw.Flush()
}

// errNoAnswers is what evalAfterTraining returns when no row of the
// evaluation data has a gold answer to score generations against.
var errNoAnswers = errors.New("no row has an \"answer\" field: no answer accuracy to report")

// evalAfterTraining scores the trained model on the evaluation data the
// way "sora eval" does, for the end of "sora finetune", whose start has
// already said which rows have no answer (answerScoring). When no row has
// a gold answer it returns an error wrapping errNoAnswers before running
// anything; a cancelled ctx stops the generation (see scoreSet). maxNew
// is finetune's --max-new-tokens, as eval's.
func evalAfterTraining(ctx context.Context, m *llama.Model, tok *tokenizer.Tokenizer, task train.Task, set *taskData, batch, maxNew int, w io.Writer) (*evalReport, error) {
	if _, golds, _ := answered(set); task == train.LM && len(golds) == 0 {
		return nil, fmt.Errorf("%s: %w", set.path, errNoAnswers)
	}
	rep := &evalReport{Task: task.String()}
	if err := scoreSet(ctx, m, tok, task, set, batch, maxNew, rep, w, 0); err != nil {
		return nil, err
	}
	return rep, nil
}
