package main

import (
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/models/llama2c"
	"github.com/sora-go/sora/models/tokenizer"
	"github.com/sora-go/sora/peft/adapter"
)

func TestFinetuneHelpListsEveryFlag(t *testing.T) {
	code, out, _ := runCLI(t, "finetune", "--help")
	if code != 0 {
		t.Fatalf("exit status %d", code)
	}
	for _, f := range []string{"backend", "model", "tokenizer", "data", "eval-data", "eval-split", "task", "method", "rank", "alpha",
		"rotation-rank", "target", "lr", "epochs", "steps", "batch", "micro-batch", "max-len", "warmup", "schedule",
		"weight-decay", "seed", "out", "resume", "save-every", "dropout", "exact-rotation", "group-by-length", "packing", "train-on-inputs",
		"clip", "loraplus-ratio", "max-new-tokens", "keep-best", "early-stopping", "best-metric"} {
		if !strings.Contains(out, "--"+f+" ") && !strings.Contains(out, "--"+f+"\n") {
			t.Errorf("--help does not explain --%s", f)
		}
	}
	for _, m := range []string{"lora", "dora", "dora-peft", "prediag", "sora", "preortho", "postortho", "oft", "loraplus", "full"} {
		if !strings.Contains(out, m) {
			t.Errorf("--help does not name method %s", m)
		}
	}
}

func TestFinetuneBadFlags(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "m.bin")
	// A file that exists: without --tokenizer, a llama2.c checkpoint needs
	// one (for a model that does not exist, that is what is said).
	existing := filepath.Join(dir, "exists.bin")
	if err := os.WriteFile(existing, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--data", "x.json"}, "--data needs --model"},
		{[]string{"--model", existing, "--data", "x.json"}, "--tokenizer is required"},
		{[]string{"--model", model, "--data", "x.json"}, "m.bin does not exist"},
		{[]string{"--model", model, "--tokenizer", "t.bin"}, "--data is required"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--rank", "0"}, "--rank"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "bogus"}, "unknown method"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--schedule", "step"}, "--schedule"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--batch", "4", "--micro-batch", "8"}, "--micro-batch"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--task", "regress"}, "unknown task"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--lr", "NaN"}, "--lr NaN"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--alpha", "+Inf"}, "--alpha +Inf"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--epochs", "Inf"}, "--epochs +Inf"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--weight-decay", "NaN"}, "--weight-decay NaN"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--clip", "NaN"}, "--clip NaN"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--eval-every", "5"}, "--eval-every and --max-eval need --eval-data"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--max-eval", "5"}, "--eval-every and --max-eval need --eval-data"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--dropout", "1"}, "--dropout 1: want a probability"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--dropout", "NaN"}, "--dropout NaN"},
		// Combinations a method refuses are found before anything loads.
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "oft", "--dropout", "0.1"}, "--dropout is the dropout on the low-rank path's input; --method oft has none"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "lora", "--exact-rotation"}, "--exact-rotation is the choice of rotation, exp(S) or I + S; --method lora has none"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "full", "--exact-rotation"}, "--method full has none (use --method sora, preortho or postortho)"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "lora", "--target", "all"}, `--target all (every parameter) is --method full's`},
		// The adapter's target_modules could not say this: refused before
		// training, not when the adapter is saved.
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "lora", "--target", "all-linear,lm_head"}, `--target all-linear,lm_head cannot be saved with the adapter`},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "oft", "--target", "all"}, `--target all (every parameter) is --method full's`},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "full", "--target", "all,q_proj"}, "--target all,q_proj: all selects every parameter; give it alone"},
		{[]string{"--dropout", "0.1"}, "--dropout needs --model"},
		{[]string{"--no-spectrum"}, "--no-spectrum needs --model"}, // the demonstration reports its spectra
		{[]string{"--rslora"}, "--rslora needs --model"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "oft", "--rslora"}, "--rslora is rank-stabilized LoRA's scale of the low-rank update; --method oft has none"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "full", "--rslora"}, "--rslora is rank-stabilized LoRA's scale of the low-rank update; --method full has none (use --method lora, lora+, dora, dora-peft, prediag, sora, preortho or postortho)"},
		// A flag only other methods use is refused, even at its default
		// value, when given; left out, its default does not count.
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "lora", "--rotation-rank", "8"}, "--rotation-rank is the rank of the rotation factors C and D; --method lora has none (use --method sora, preortho or postortho)"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "dora", "--rotation-rank", "4"}, "--rotation-rank is the rank of the rotation factors C and D; --method dora has none"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "prediag", "--exact-rotation=false"}, "--exact-rotation is the choice of rotation, exp(S) or I + S; --method prediag has none (use --method sora, preortho or postortho)"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "oft", "--alpha", "16"}, "--alpha is lora_alpha, the scale of the low-rank update; --method oft has none"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "full", "--rank", "8"}, "--rank is the rank of the low-rank update (oft: its number of blocks); --method full has none (use --method lora, lora+, dora, dora-peft, prediag, sora, preortho, postortho or oft)"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "full", "--dropout", "0"}, "--dropout is the dropout on the low-rank path's input; --method full has none"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--method", "sora", "--loraplus-ratio", "16"}, "--loraplus-ratio is LoRA+'s ratio of the B matrices' learning rate; --method sora has none (use --method lora+)"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--task", "classify", "--target", "q_proj,score"}, `selects the classification head "score"`},
		// The backend is checked before anything loads (m.bin does not exist).
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--backend", "nope"}, `unknown backend "nope"`},
		{[]string{"--method", "lora,bogus"}, "unknown method"},
		// The demonstration's numbers: the first one out of range is
		// named with its value; a given 0 is refused as in a real run,
		// but --steps 0 is the demonstration's default.
		{[]string{"--lr", "NaN"}, "--lr NaN: want a finite positive learning rate"},
		{[]string{"--lr", "0"}, "--lr 0: want a finite positive learning rate"},
		{[]string{"--rank", "0"}, "--rank 0: want at least 1"},
		{[]string{"--rank", "4", "--rotation-rank", "-1"}, "--rotation-rank -1: want at least 1"},
		{[]string{"--alpha", "+Inf"}, "--alpha +Inf: want a finite positive number"},
		{[]string{"--steps", "-1"}, "--steps -1: want 0 (the demonstration's 300 fine-tuning steps per run) or a positive number"},
		{[]string{"--steps", "0", "--pretrain-steps", "0"}, "--pretrain-steps 0: want at least 1"},
		{[]string{"--repeats", "-2"}, "--repeats -2: want at least 1"},
		// A real run's step and row counts, each named alone.
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--save-every", "-1"}, "--save-every -1: want 0"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--eval-every", "-5"}, "--eval-every -5: want 0"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--max-train", "-1"}, "--max-train -1: want 0 (all rows)"},
		{[]string{"--model", model, "--tokenizer", "t.bin", "--data", "x", "--max-eval", "-3"}, "--max-eval -3: want 0 (all rows)"},
		{[]string{"stray"}, "unexpected argument"},
	}
	for _, c := range cases {
		code, _, errOut := runCLI(t, append([]string{"finetune"}, c.args...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("finetune %v: status %d, stderr %q; want status %d and %q", c.args, code, errOut, exitUsage, c.want)
		}
	}
}

// writeBoolQ writes n BoolQ-like rows in LLM-Adapters JSON.
func writeBoolQ(t *testing.T, path string, n int) {
	t.Helper()
	var rows []data.Example
	for i := range n {
		ans := []string{"true", "false"}[i%3%2]
		rows = append(rows, data.Example{
			Instruction: fmt.Sprintf("Please answer the following question with true or false, question: is %d a small number?\n\nAnswer format: true/false", i),
			Output:      "the correct answer is " + ans, Answer: ans})
	}
	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeBoolQPair writes nTrain rows (writeBoolQ) to dir/train.json and
// nEval to dir/test.json, and returns the two paths.
func writeBoolQPair(t *testing.T, dir string, nTrain, nEval int) (trainPath, evalPath string) {
	t.Helper()
	trainPath, evalPath = filepath.Join(dir, "train.json"), filepath.Join(dir, "test.json")
	writeBoolQ(t, trainPath, nTrain)
	writeBoolQ(t, evalPath, nEval)
	return trainPath, evalPath
}

// TestFinetuneEvalMergeSpectrum runs the whole tool chain on stories260K:
// finetune with checkpoints, a refused second run into the same folder,
// eval with the adapter, spectrum, and merge, whose checkpoint must
// generate the same greedy text as the base model with the adapter.
func TestFinetuneEvalMergeSpectrum(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath, evalPath := writeBoolQPair(t, dir, 24, 6)
	out := filepath.Join(dir, "run")
	args := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath, "--eval-data", evalPath,
		"--method", "sora", "--steps", "6", "--batch", "4", "--micro-batch", "2", "--lr", "1e-2", "--save-every", "3", "--out", out}
	code, stdout, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("finetune: status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, errOut)
	}
	for _, want := range []string{"zero-shot", "held-out loss", "answer accuracy", "majority baseline", "trainable params"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("finetune output lacks %q:\n%s", want, stdout)
		}
	}
	var sum runSummary
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	if sum.Steps != 6 || sum.ZeroShot == nil || sum.Final == nil || !(sum.Final.Loss < sum.ZeroShot.Loss) {
		t.Errorf("run.json: steps %d, zero-shot %+v, final %+v; want 6 steps and a lower final loss", sum.Steps, sum.ZeroShot, sum.Final)
	}
	for _, f := range []string{"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "metrics.jsonl", "loss.png",
		"spectrum.png", "spectrum.json", "checkpoints/step-000003/adapter/adapter_model.safetensors", "checkpoints/step-000006/trainer_state.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("output lacks %s: %v", f, err)
		}
	}
	// A second fresh run into the same folder is refused, before the
	// model loads and the zero-shot evaluation runs.
	if code, stdout, errOut := runCLI(t, args...); code != exitFailure || !strings.Contains(errOut, "--resume") || stdout != "" {
		t.Errorf("second run: status %d, stdout %q, stderr %q; want a failure pointing to --resume and nothing done", code, stdout, errOut)
	}
	// So is --resume into a folder without checkpoints.
	if code, stdout, errOut := runCLI(t, append(args[:len(args)-1:len(args)-1], filepath.Join(dir, "empty"), "--resume")...); code != exitFailure ||
		!strings.Contains(errOut, "no checkpoint to resume from") || stdout != "" {
		t.Errorf("--resume without checkpoints: status %d, stdout %q, stderr %q", code, stdout, errOut)
	}
	// Resuming a finished run does no more steps and succeeds.
	if code, stdout, errOut := runCLI(t, append(args, "--resume")...); code != 0 || !strings.Contains(stdout, "nothing left to train: the run had finished its 6 steps") {
		t.Errorf("resume of a finished run: status %d\n%s\n%s", code, stdout, errOut)
	}

	adapterDir := filepath.Join(out, "adapter")
	evalJSON := filepath.Join(dir, "eval.json")
	code, stdout, errOut = runCLI(t, "eval", "--backend", "cpu", "--tokenizer", tok, "--adapter", adapterDir, "--data", evalPath,
		"--json", evalJSON, "--max-new-tokens", "12")
	if code != 0 {
		t.Fatalf("eval: status %d\n%s\n%s", code, stdout, errOut)
	}
	var rep evalReport
	readJSON(t, evalJSON, &rep)
	if rep.Rows != 6 || len(rep.Predictions) != 6 || rep.AnswerKind != "true/false" || rep.Majority != 4.0/6 || rep.Method != "sora" {
		t.Errorf("eval report: %d rows, %d predictions, kind %q, majority %v, method %q", rep.Rows, len(rep.Predictions), rep.AnswerKind, rep.Majority, rep.Method)
	}
	correct := 0
	for _, p := range rep.Predictions {
		if p.Correct {
			correct++
		}
	}
	if math.Abs(rep.Accuracy-float64(correct)/6) > 1e-12 {
		t.Errorf("accuracy %v but %d of 6 predictions correct", rep.Accuracy, correct)
	}

	plot := filepath.Join(dir, "spec.png")
	code, stdout, errOut = runCLI(t, "spectrum", "--backend", "cpu", "--adapter", adapterDir, "--plot", plot)
	if code != 0 || !strings.Contains(stdout, "model.layers.4.mlp.down_proj") || !strings.Contains(stdout, "mean of 35 layers") {
		t.Fatalf("spectrum: status %d\n%s\n%s", code, stdout, errOut)
	}
	checkPNG(t, plot)

	merged := filepath.Join(dir, "merged.bin")
	code, stdout, errOut = runCLI(t, "merge", "--backend", "cpu", "--model", model, "--adapter", adapterDir, "--out", merged)
	if code != 0 {
		t.Fatalf("merge: status %d\n%s\n%s", code, stdout, errOut)
	}
	checkMergedGeneration(t, model, merged, tok, adapterDir)
}

// checkMergedGeneration compares greedy generation of the merged
// checkpoint with that of the base model carrying the adapter unmerged,
// and checks that the adapter changed the weights.
func checkMergedGeneration(t *testing.T, basePath, mergedPath, tokPath, adapterDir string) {
	t.Helper()
	b := testbackend.Open(t, "cpu")
	tk, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	prompt := tk.Encode(data.Prompt("Please answer the following question with true or false, question: is 3 a small number?\n\nAnswer format: true/false", ""), true, false)
	gen := func(m *llama.Model) []int {
		g, err := m.NewGenerator(len(prompt) + 40)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		seq, err := g.Generate(prompt, llama.GenerateOptions{Steps: len(prompt) + 40}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return seq[len(prompt):]
	}
	bw, format, err := llama2c.Load(basePath)
	if err != nil {
		t.Fatal(err)
	}
	mw, mformat, err := llama2c.Load(mergedPath)
	if err != nil {
		t.Fatal(err)
	}
	if format != mformat {
		t.Errorf("merged checkpoint is %v, the base %v", mformat, format)
	}
	var maxDelta float64
	for i, p := range bw.Params() {
		for j := range p.Data {
			maxDelta = math.Max(maxDelta, math.Abs(float64(p.Data[j]-mw.Params()[i].Data[j])))
		}
	}
	if maxDelta < 1e-3 {
		t.Fatalf("merged weights differ from the base by at most %g: the adapter did nothing, the test would prove little", maxDelta)
	}
	base, err := llama.New(b, bw)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Free()
	baseText := gen(base)
	pm, _, err := adapter.Load(adapterDir, base)
	if err != nil {
		t.Fatal(err)
	}
	withAdapter := gen(base)
	pm.Unload()
	m, err := llama.New(b, mw)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	fromMerged := gen(m)
	if fmt.Sprint(withAdapter) != fmt.Sprint(fromMerged) {
		t.Errorf("greedy text differs:\nbase + adapter: %q\nmerged:         %q", tk.DecodeAll(withAdapter), tk.DecodeAll(fromMerged))
	}
	if fmt.Sprint(withAdapter) == fmt.Sprint(baseText) {
		t.Logf("note: the adapter did not change the greedy text of this prompt (%q)", tk.DecodeAll(baseText))
	}
}

// TestFinetuneClassify trains a CoLA-format classifier briefly and
// evaluates it with its saved score head.
func TestFinetuneClassify(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	path := writeCoLA(t, dir, 20)
	out := filepath.Join(dir, "run")
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--task", "classify",
		"--data", path, "--eval-data", path, "--method", "prediag", "--steps", "8", "--batch", "10", "--lr", "1e-2", "--out", out)
	if code != 0 {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}
	if !strings.Contains(stdout, "MCC") || !strings.Contains(stdout, "majority-class baseline accuracy: 0.5000") {
		t.Errorf("output lacks MCC or the majority baseline:\n%s", stdout)
	}
	// The head is in the adapter's files, as Hugging Face PEFT keeps it.
	_, meta, err := adapter.ReadConfig(filepath.Join(out, "adapter"))
	if err != nil {
		t.Fatal(err)
	}
	shape, ok, err := adapter.ModuleShape(filepath.Join(out, "adapter"), "score")
	if err != nil || !ok || fmt.Sprint(meta.ModulesToSave) != "[score]" || fmt.Sprint(shape) != "[2 64]" {
		t.Fatalf("saved adapter: modules_to_save %v, score head %v %v %v; want [score] and [2 64]", meta.ModulesToSave, shape, ok, err)
	}
	rep, sum, _ := evalRun(t, out, filepath.Join(dir, "eval.json"), "--backend", "cpu", "--model", model, "--tokenizer", tok,
		"--adapter", filepath.Join(out, "adapter"), "--data", path)
	if rep.Task != "classify" || rep.MCC == nil || rep.Rows != 20 || rep.Majority != 0.5 {
		t.Fatalf("eval report: %+v", rep)
	}
	// The head's class names are saved beside it, for eval's label check.
	if labels, err := readHeadLabels(filepath.Join(out, "adapter")); err != nil || fmt.Sprint(labels) != "[unacceptable acceptable]" {
		t.Errorf("saved head labels %v, %v; want [unacceptable acceptable]", labels, err)
	}
	// The same data scored by finetune at the end and by eval from the
	// saved files must agree.
	if math.Abs(rep.Accuracy-sum.Final.Accuracy) > 1e-12 || sum.Final.MCC == nil || math.Abs(*rep.MCC-*sum.Final.MCC) > 1e-9 || math.Abs(rep.Loss-sum.Final.Loss) > 1e-4 {
		t.Errorf("eval from the saved adapter: accuracy %v MCC %v loss %v; at the end of training: %v %v %v",
			rep.Accuracy, *rep.MCC, rep.Loss, sum.Final.Accuracy, fmtMCC(sum.Final.MCC), sum.Final.Loss)
	}
	// A classifier does not merge into an LM checkpoint.
	if code, _, errOut := runCLI(t, "merge", "--model", model, "--adapter", filepath.Join(out, "adapter"), "--out", filepath.Join(dir, "m.bin")); code != exitFailure || !strings.Contains(errOut, "classification head") {
		t.Errorf("merge of a classifier: status %d, %q", code, errOut)
	}
	// Its weight updates can be analysed like a language model's: the
	// score head is loaded, and is not one of the analysed layers.
	code, stdout, errOut = runCLI(t, "spectrum", "--model", model, "--adapter", filepath.Join(out, "adapter"), "--plot", "")
	if code != exitOK || !strings.Contains(stdout, "mean of") || strings.Contains(stdout, llama.ScoreModule) {
		t.Errorf("spectrum of a classifier: status %d\nstdout %s\nstderr %s", code, stdout, errOut)
	}
}

func TestFinetuneMalformedData(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("[{\"instruction\": \"a\", \"output\": \"b\"},\n{\"instruction\": \"c\"}]"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "finetune", "--model", model, "--tokenizer", tok, "--data", bad, "--out", filepath.Join(dir, "o"))
	if code != exitFailure || !strings.Contains(errOut, "bad.json:2") || !strings.Contains(errOut, "row 2") || !strings.Contains(errOut, `"output"`) {
		t.Errorf("status %d, stderr %q; want the file, line, row and field", code, errOut)
	}
	badTSV := filepath.Join(dir, "bad.tsv")
	if err := os.WriteFile(badTSV, []byte("a\t1\t\tfine.\nb\t2\t\tnot fine.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "finetune", "--model", model, "--tokenizer", tok, "--task", "classify", "--data", badTSV, "--out", filepath.Join(dir, "o"))
	if code != exitFailure || !strings.Contains(errOut, "bad.tsv:2") || !strings.Contains(errOut, "label") {
		t.Errorf("status %d, stderr %q; want the file, line and field", code, errOut)
	}
	// Rows that train fine but carry no answer are scored for their loss
	// alone, with a note naming the file and the field (more in
	// TestEvalMissingAnswers).
	noAnswer := filepath.Join(dir, "no-answer.json")
	if err := os.WriteFile(noAnswer, []byte(`[{"instruction": "a", "output": "b"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, errOut := runCLI(t, "eval", "--model", model, "--tokenizer", tok, "--data", noAnswer, "--json", "")
	if code != exitOK || !strings.Contains(stdout, "note: "+noAnswer+`: no row has an "answer" field`) {
		t.Errorf("eval without answers: status %d, stdout %q, stderr %q; want 0 and a note naming the file and field", code, stdout, errOut)
	}
}

func TestFinetuneDemoFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cut-down demonstration")
	}
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--method", "lora,prediag", "--steps", "5", "--pretrain-steps", "20", "--repeats", "1", "--seed", "2")
	if code != 0 {
		t.Fatalf("status %d\n%s", code, errOut)
	}
	for _, want := range []string{"built-in demonstration", "lora", "prediag", "held-out accuracy", "SVD entropy"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "\nsora ") {
		t.Errorf("the table has a sora row though --method named lora and prediag:\n%s", stdout)
	}
}

// evalRun runs "sora eval" with args, writing its report to evalJSON, and
// returns the report, the run.json of the fine-tuning run in runDir and
// what eval printed.
func evalRun(t *testing.T, runDir, evalJSON string, args ...string) (evalReport, runSummary, string) {
	t.Helper()
	code, stdout, errOut := runCLI(t, append(append([]string{"eval"}, args...), "--json", evalJSON)...)
	if code != 0 {
		t.Fatalf("eval: status %d\n%s\n%s", code, stdout, errOut)
	}
	var rep evalReport
	readJSON(t, evalJSON, &rep)
	var sum runSummary
	readJSON(t, filepath.Join(runDir, "run.json"), &sum)
	return rep, sum, stdout
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("%s: %v", path, err)
	}
}

// TestFinetuneNoSpectrum checks that --no-spectrum leaves out the spectra
// (their files and the line that announces them), and that a run without
// it announces them before writing them.
func TestFinetuneNoSpectrum(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := filepath.Join(dir, "train.json")
	writeBoolQ(t, rows, 8)
	for _, skip := range []bool{false, true} {
		out := filepath.Join(dir, fmt.Sprintf("run-%v", skip))
		args := []string{"finetune", "--model", model, "--tokenizer", tok, "--data", rows, "--steps", "2", "--batch", "4", "--method", "sora", "--out", out}
		if skip {
			args = append(args, "--no-spectrum")
		}
		code, stdout, errOut := runCLI(t, args...)
		if code != exitOK {
			t.Fatalf("finetune (--no-spectrum %v): status %d; stderr:\n%s", skip, code, errOut)
		}
		for _, name := range []string{"spectrum.png", "spectrum.json"} {
			if _, err := os.Stat(filepath.Join(out, name)); (err == nil) == skip {
				t.Errorf("--no-spectrum %v: %s exists: %v", skip, name, err == nil)
			}
		}
		if announced := strings.Contains(stdout, "spectra: analysing the updates of 35 layers"); announced == skip {
			t.Errorf("--no-spectrum %v: spectra announced: %v\n%s", skip, announced, stdout)
		}
		if listed := strings.Contains(stdout, "spectrum.png"); listed == skip {
			t.Errorf("--no-spectrum %v: spectrum.png in the list of what was written: %v\n%s", skip, listed, stdout)
		}
	}
}
