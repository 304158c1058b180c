package main

// Flag conventions shared by every subcommand.
//
// A subcommand builds its flags with newFlagSet, adds the shared --backend
// flag with addBackendFlag when it runs ops, parses with parseFlags and opens
// its backend with openBackend. Exit statuses are the constants below, so
// scripts can tell a failed check from a typo or a missing GPU.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/train"
)

// Exit statuses of every subcommand.
const (
	exitOK          = 0 // success
	exitFailure     = 1 // the command ran and something failed (a check, a file, a device error)
	exitUsage       = 2 // bad flags or arguments, unknown command or backend name
	exitUnavailable = 3 // the backend is registered but cannot run on this machine
)

// defaultBackendEnv names the environment variable that sets the default of
// every --backend flag.
const defaultBackendEnv = "SORA_BACKEND"

// usageDoc is what "sora CMD --help" prints, besides the flags.
type usageDoc struct {
	// synopsis follows "Usage: sora ", e.g. "conformance [flags]".
	synopsis string
	// description is one paragraph saying what the command does; it is
	// word-wrapped when printed.
	description string
	// examples are full command lines, printed one per line.
	examples []string
}

// newFlagSet returns an empty flag set for the subcommand name. Its errors
// are reported by parseFlags; define flags on it, then call parseFlags.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("sora "+name, flag.ContinueOnError)
	fs.Usage = func() {} // parseFlags prints the usage itself, to the right stream
	return fs
}

// parseFlags parses args into fs. It returns ok when the command should go
// on; otherwise code is the exit status: 0 after printing the help that
// -h/--help asked for (to stdout), exitUsage after printing the error and
// the synopsis to stderr, or after naming a positional argument (no
// subcommand takes any).
func parseFlags(fs *flag.FlagSet, doc usageDoc, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(stderr) // the flag package prints parse errors here
	restore := explainValues(fs)
	err := fs.Parse(args)
	restore()
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout, fs, doc)
		return exitOK, false
	case err != nil:
		// The flag package has printed the error; a short pointer to the
		// help keeps the error itself in view.
		fmt.Fprintf(stderr, "usage: sora %s\nRun \"%s --help\" for details.\n", doc.synopsis, fs.Name())
		return exitUsage, false
	}
	// No subcommand takes positional arguments: a stray word is most often
	// a flag's value that lost its flag, so it is an error, not ignored.
	if !noArgs(fs, stderr) {
		return exitUsage, false
	}
	// A misspelt backend is a usage error, reported before the command
	// spends a while loading a model and data.
	if fl := fs.Lookup("backend"); fl != nil {
		if msg := unknownBackend(fl.Value.String()); msg != "" {
			fmt.Fprintln(stderr, msg)
			return exitUsage, false
		}
	}
	return exitOK, true
}

// explainValues makes the errors of fs's number, duration and boolean
// flags say what the flag wants: the flag package's own end in a bare
// "parse error" or "value out of range" ("invalid value "1.5" for flag
// -rank: parse error"). It wraps those flags' values for the parse and
// returns the function that puts the originals back, which the usage
// needs (it reads the values' types).
func explainValues(fs *flag.FlagSet) (restore func()) {
	var flags []*flag.Flag
	var orig []flag.Value
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		syntax, outOfRange := wantValue(g.Get())
		if syntax == "" {
			return
		}
		flags, orig = append(flags, f), append(orig, f.Value)
		v := explainedValue{Value: f.Value, syntax: syntax, outOfRange: outOfRange}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			f.Value = explainedBool{v} // so that a bare --flag still means true
		} else {
			f.Value = v
		}
	})
	return func() {
		for i, f := range flags {
			f.Value = orig[i]
		}
	}
}

// wantValue returns what a flag whose value has v's type wants, for a
// value that does not parse and for one out of the type's range; "" for
// types whose errors say it already.
func wantValue(v any) (syntax, outOfRange string) {
	switch v.(type) {
	case int:
		return "want a whole number", fmt.Sprintf("want a whole number from %d to %d", math.MinInt, math.MaxInt)
	case int64:
		return "want a whole number", fmt.Sprintf("want a whole number from %d to %d", int64(math.MinInt64), int64(math.MaxInt64))
	case uint:
		return "want a whole number ≥ 0", fmt.Sprintf("want a whole number from 0 to %d", uint(math.MaxUint))
	case uint64:
		return "want a whole number ≥ 0", fmt.Sprintf("want a whole number from 0 to %d", uint64(math.MaxUint64))
	case float64:
		return "want a number, such as 0.5 or 2e-3", "want a number between about -1.8e308 and 1.8e308"
	case time.Duration:
		return "want a duration such as 1s, 500ms or 2m30s", "want a duration such as 1s, 500ms or 2m30s"
	case bool:
		return "want true or false", "want true or false"
	}
	return "", ""
}

// explainedValue is a flag value whose parse errors say what it wants.
type explainedValue struct {
	flag.Value
	syntax, outOfRange string
}

// Set sets the value, replacing the flag package's "parse error" and
// "value out of range" (which its numeric, duration and boolean values
// return) with what the flag wants.
func (v explainedValue) Set(s string) error {
	err := v.Value.Set(s)
	switch {
	case err == nil:
		return nil
	case err.Error() == "parse error":
		return errors.New(v.syntax)
	case err.Error() == "value out of range":
		return errors.New(v.outOfRange)
	}
	return err
}

// explainedBool is an explainedValue of a boolean flag, which the flag
// package lets go without a value.
type explainedBool struct{ explainedValue }

// IsBoolFlag reports true: the flag package then takes a bare --flag as
// --flag=true.
func (explainedBool) IsBoolFlag() bool { return true }

// noArgs reports an error and returns false when fs has positional
// arguments left, for commands that take none.
func noArgs(fs *flag.FlagSet, stderr io.Writer) bool {
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (run \"%s --help\" for usage)\n", fs.Name(), fs.Arg(0), fs.Name())
		return false
	}
	return true
}

// printUsage writes the synopsis, the description, the flags (GNU style,
// with two dashes, which the flag package accepts as well as one) and the
// examples.
func printUsage(w io.Writer, fs *flag.FlagSet, doc usageDoc) {
	fmt.Fprintf(w, "Usage: sora %s\n\n", doc.synopsis)
	fmt.Fprintln(w, wrap(doc.description, 78, ""))
	var flags strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		head := "--" + f.Name
		if len(f.Name) == 1 {
			head = "-" + f.Name
		}
		if name != "" {
			head += " " + name
		}
		if !isZeroDefault(f) {
			usage += " (default " + quoteDefault(f) + ")"
		}
		fmt.Fprintf(&flags, "  %s\n%s\n", head, wrap(usage, 78, "        "))
	})
	if flags.Len() > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s", flags.String())
	}
	if len(doc.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, e := range doc.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

// quoteDefault returns f's default as the flag package prints it: quoted
// for a string flag, bare for numbers, booleans and durations.
func quoteDefault(f *flag.Flag) string {
	t := reflect.TypeOf(f.Value)
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.String {
		return strconv.Quote(f.DefValue)
	}
	return f.DefValue
}

// isZeroDefault reports whether f's default is its type's zero value, which
// the usage leaves unsaid (as the flag package does).
func isZeroDefault(f *flag.Flag) (zero bool) {
	if f.DefValue == "" {
		return true
	}
	// A fresh value of the flag's dynamic type prints as the zero value.
	// Some Value types cannot print when fresh; their default is then shown.
	defer func() {
		if recover() != nil {
			zero = false
		}
	}()
	t := reflect.TypeOf(f.Value)
	var z reflect.Value
	if t.Kind() == reflect.Pointer {
		z = reflect.New(t.Elem())
	} else {
		z = reflect.Zero(t)
	}
	zv, ok := z.Interface().(flag.Value)
	if !ok {
		return false
	}
	return f.DefValue == zv.String()
}

// wrap breaks text into lines of at most width runes (longer words stay
// whole), each prefixed with indent.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > width {
			b.WriteString(line)
			b.WriteByte('\n')
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	b.WriteString(line)
	return b.String()
}

// defaultBackend is the --backend default: $SORA_BACKEND, else "cpu".
func defaultBackend() string {
	if b := strings.TrimSpace(os.Getenv(defaultBackendEnv)); b != "" {
		return b
	}
	return "cpu"
}

// addBackendFlag defines the --backend flag that every subcommand running
// ops shares, defaulting to $SORA_BACKEND or "cpu".
func addBackendFlag(fs *flag.FlagSet) *string {
	p := new(string)
	backendFlagVar(fs, p)
	return p
}

// baseDTypeUsage says what --base-dtype stores; each command's flag adds
// what bf16 means for it.
const baseDTypeUsage = "storage `TYPE` of the base model's linear-layer weights and token embedding (and so a tied head) on the backend: f32, or bf16 for half their memory, rounded to bfloat16 (exact for checkpoints saved in bfloat16, as most Hugging Face ones are); norms and biases stay f32. bf16 needs a backend with bfloat16 products (op " + string(backend.OpMatMulBF16) + ")"

// baseDTypeFlagVar defines --base-dtype on fs, stored in p, for the
// commands that train (finetune, bench train): bf16 freezes the weights
// that full fine-tuning would train.
func baseDTypeFlagVar(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "base-dtype", "f32", baseDTypeUsage+" and an adapter method: bf16 weights are frozen, and full fine-tuning trains them")
}

// runBaseDTypeFlagVar defines --base-dtype on fs, stored in p, for the
// commands that run a model without training it (eval, generate), where
// bf16 works for any model, adapted or not.
func runBaseDTypeFlagVar(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "base-dtype", "f32", baseDTypeUsage+". It works with any model, with or without --adapter (a fully fine-tuned or merged model too), "+
		"and moves the outputs by the weights' rounding (losses by a few 1e-4). An adapter computes what it was trained to with the --base-dtype "+
		"of its training, which its run's run.json records; a note says when this one differs")
}

// baseDType returns the model options that a --base-dtype value s names,
// or a usage error naming the flag.
func baseDType(s string) (llama.Options, error) {
	dt, err := train.ParseBaseDType(s)
	if err != nil {
		return llama.Options{}, fmt.Errorf("--base-dtype %q: want f32 or bf16", s)
	}
	return llama.Options{BaseDType: dt}, nil
}

// noteTrainedBaseDType writes a note to w where the adapter in dir was
// trained (by the "sora finetune" run whose output folder holds it, as
// its run.json records: see findTrainingRun) on a base stored in another
// type than dt, the --base-dtype of command cmd: the adapter then meets
// weights rounded otherwise than in training, which moves losses by a few
// 1e-4.
func noteTrainedBaseDType(w io.Writer, cmd, dir, dt string) {
	run := findTrainingRun(dir)
	if run == nil || run.Config.BaseDType == "" || run.Config.BaseDType == dt {
		return // not a finetune output folder, or nothing to say
	}
	fmt.Fprintf(w, "sora %s: note: the adapter was trained on a base stored in %s (%s); this run stores it in %s (pass --base-dtype %s to evaluate it as trained)\n",
		cmd, run.Config.BaseDType, run.path, dt, run.Config.BaseDType)
}

// trainingRun is what the run.json of a "sora finetune" run records of the
// flags that shaped it, as far as the commands that use its output read
// them.
type trainingRun struct {
	path string // the run.json read
	// Data is the training data as --data named it (relative to the
	// folder the run was started in), and Task its task.
	Data   string `json:"data"`
	Task   string `json:"task"`
	Config struct {
		BaseDType string `json:"base_dtype"`
		MaxLen    int    `json:"max_len"`
		// Seed is the run's --seed (nil in a run.json without one), and
		// MaxNewTokens the --max-new-tokens of the answers it scored
		// after training (0 where it scored none).
		Seed         *uint64 `json:"seed"`
		MaxNewTokens int     `json:"max_new_tokens"`
	} `json:"config"`
}

// findTrainingRun returns the run.json of the "sora finetune" run whose
// output folder holds dir, the folder of an adapter or of a fully
// fine-tuned model: the run's adapter/ or best/ (run.json in the parent),
// or a checkpoint's checkpoints/step-N/adapter (three folders up). It
// returns nil where there is none, or the file is not a run.json of "sora
// finetune" (then dir may not come from a run at all, and nothing is
// assumed about it).
func findTrainingRun(dir string) *trainingRun {
	if dir == "" {
		return nil
	}
	// Joining ".." (not taking Dir) finds the parent of "." too, and
	// keeps a relative path relative for the note that names it.
	up := filepath.Join(dir, "..")
	cands := []string{up}
	if a, err := filepath.Abs(up); err == nil && strings.HasPrefix(filepath.Base(a), "step-") && filepath.Base(filepath.Dir(a)) == "checkpoints" {
		cands = append(cands, filepath.Join(up, "..", ".."))
	}
	for _, c := range cands {
		p := filepath.Join(c, "run.json")
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var run struct {
			trainingRun
			Command string `json:"command"`
		}
		if json.Unmarshal(data, &run) != nil || !strings.HasPrefix(run.Command, "sora finetune") {
			continue
		}
		run.trainingRun.path = p
		return &run.trainingRun
	}
	return nil
}

// backendFlagVar defines --backend on fs, stored in p, for commands that
// keep their flags in a struct.
func backendFlagVar(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "backend", defaultBackend(),
		"`NAME` of the backend to run on: "+strings.Join(backend.Names(), ", ")+
			" (\"sora backends\" says which work here); the default comes from $"+defaultBackendEnv+" when set")
}

// openBackend opens the backend called name. On failure it prints why to
// stderr, with the paths an unavailable backend tried one per line, and
// returns a nil Backend with the exit status: exitUsage for a name that is
// not registered, exitUnavailable for a backend that cannot run here,
// exitFailure otherwise.
func openBackend(name string, stderr io.Writer) (backend.Backend, int) {
	if msg := unknownBackend(name); msg != "" {
		fmt.Fprintln(stderr, msg)
		return nil, exitUsage
	}
	b, err := backend.Open(name)
	if err == nil {
		return b, exitOK
	}
	var u *backend.UnavailableError
	if errors.As(err, &u) {
		fmt.Fprintf(stderr, "sora: backend %s%s is unavailable: %s\n", name, fromEnv(name), u.Reason)
		if len(u.Tried) > 0 {
			fmt.Fprintln(stderr, "tried:")
			for _, t := range u.Tried {
				fmt.Fprintf(stderr, "  %s\n", t)
			}
		}
		return nil, exitUnavailable
	}
	fmt.Fprintf(stderr, "sora: opening backend %s: %v\n", name, err)
	return nil, exitFailure
}

// unknownBackend returns the error message for a backend name that is not
// registered, "" for one that is.
func unknownBackend(name string) string {
	if isRegistered(name) {
		return ""
	}
	return fmt.Sprintf("sora: unknown backend %q%s; registered backends: %s", name, fromEnv(name), strings.Join(backend.Names(), ", "))
}

// fromEnv returns " ($SORA_BACKEND)" when the backend name is the one that
// variable holds, "" otherwise. A name no --backend gave comes from the
// environment, which the user may have set long ago: errors about it say
// so.
func fromEnv(name string) string {
	if env := strings.TrimSpace(os.Getenv(defaultBackendEnv)); env != "" && name == env {
		return " ($" + defaultBackendEnv + ")"
	}
	return ""
}

func isRegistered(name string) bool {
	for _, n := range backend.Names() {
		if n == name {
			return true
		}
	}
	return false
}
