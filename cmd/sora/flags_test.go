package main

import (
	"flag"
	"strings"
	"testing"
)

// TestFlagValueErrors checks that a number, duration or boolean flag given
// a value it cannot take says what it wants, instead of the flag
// package's bare "parse error" or "value out of range", and that a bare
// boolean flag still parses as true.
func TestFlagValueErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // in stderr, after the flag's name
	}{
		{[]string{"finetune", "--rank", "1.5"}, `"1.5" for flag -rank: want a whole number`},
		{[]string{"finetune", "--steps", "1e3"}, `"1e3" for flag -steps: want a whole number`},
		{[]string{"finetune", "--steps", "99999999999999999999"}, `for flag -steps: want a whole number from -9223372036854775808 to 9223372036854775807`},
		{[]string{"finetune", "--seed", "-1"}, `"-1" for flag -seed: want a whole number ≥ 0`},
		{[]string{"eval", "--seed", "18446744073709551616"}, `for flag -seed: want a whole number from 0 to 18446744073709551615`},
		{[]string{"conformance", "--seed", "x"}, `"x" for flag -seed: want a whole number`},
		{[]string{"finetune", "--lr", "2e-3x"}, `"2e-3x" for flag -lr: want a number, such as 0.5 or 2e-3`},
		{[]string{"generate", "--temperature", "1e999"}, `for flag -temperature: want a number between about -1.8e308 and 1.8e308`},
		{[]string{"bench", "gemm", "--time", "5"}, `"5" for flag -time: want a duration such as 1s, 500ms or 2m30s`},
		{[]string{"finetune", "--keep-best=maybe"}, `"maybe" for -keep-best: want true or false`},
	} {
		code, _, errOut := runCLI(t, c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) || strings.Contains(errOut, "parse error") || strings.Contains(errOut, "value out of range") {
			t.Errorf("sora %s: status %d, stderr %q; want status %d and %q", strings.Join(c.args, " "), code, errOut, exitUsage, c.want)
		}
	}
	// Bare boolean flags are still true: the run gets past parsing, to
	// finetune's check that they need --model.
	code, _, errOut := runCLI(t, "finetune", "--rslora", "--keep-best")
	if code != exitUsage || !strings.Contains(errOut, "needs --model") {
		t.Errorf("sora finetune --rslora --keep-best: status %d, stderr %q; want the flags parsed and refused without --model", code, errOut)
	}
}

// TestExplainValuesRestores checks that the values explainValues wraps are
// the flag set's own again after the parse, which the usage needs to show
// the flags' defaults.
func TestExplainValuesRestores(t *testing.T) {
	fs := newFlagSet("test")
	n := fs.Int("n", 3, "")
	b := fs.Bool("b", false, "")
	before := map[string]any{}
	fs.VisitAll(func(f *flag.Flag) { before[f.Name] = f.Value })
	restore := explainValues(fs)
	if err := fs.Parse([]string{"-n", "5", "-b"}); err != nil {
		t.Fatal(err)
	}
	restore()
	if *n != 5 || !*b {
		t.Errorf("parsed n=%d b=%v; want 5 true", *n, *b)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Value != before[f.Name] {
			t.Errorf("flag %s: value %T after restore; want the original %T", f.Name, f.Value, before[f.Name])
		}
	})
}
