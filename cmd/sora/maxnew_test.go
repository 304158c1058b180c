package main

import (
	"strings"
	"testing"
)

// TestGenerateMaxNewTokens checks that --max-new-tokens N ends greedy
// generation N tokens after the prompt, as --steps (which counts the
// prompt's positions, BOS included) does at the prompt's length + N, and
// that the smaller of the two limits wins.
func TestGenerateMaxNewTokens(t *testing.T) {
	model, tok := stories260K(t)
	gen := func(args ...string) string {
		t.Helper()
		all := append([]string{"generate", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--prompt", "Once upon a time", "--temperature", "0"}, args...)
		code, stdout, errOut := runCLI(t, all...)
		if code != exitOK {
			t.Fatalf("generate %v: status %d\n%s\n%s", args, code, stdout, errOut)
		}
		return stdout
	}
	// "Once upon a time" is 4 tokens after BOS.
	for _, tc := range []struct {
		limit, same []string
	}{
		{[]string{"--max-new-tokens", "5"}, []string{"--steps", "10"}},
		{[]string{"--max-new-tokens", "1"}, []string{"--steps", "6"}},
		{[]string{"--steps", "8", "--max-new-tokens", "50"}, []string{"--steps", "8"}},
		{[]string{"--steps", "0", "--max-new-tokens", "12"}, []string{"--steps", "17"}},
	} {
		got, want := gen(tc.limit...), gen(tc.same...)
		if got != want || !strings.HasPrefix(got, "Once upon a time") {
			t.Errorf("%v: %q; %v: %q", tc.limit, got, tc.same, want)
		}
	}
	if a, b := gen("--max-new-tokens", "3"), gen("--max-new-tokens", "4"); a == b || !strings.HasPrefix(b, strings.TrimSuffix(a, "\n")) {
		t.Errorf("3 new tokens %q, 4 new tokens %q: want the first a shorter prefix of the second", a, b)
	}
	code, _, errOut := runCLI(t, "generate", "--model", model, "--tokenizer", tok, "--max-new-tokens", "-1")
	if code != exitUsage || !strings.Contains(errOut, "--max-new-tokens -1") {
		t.Errorf("--max-new-tokens -1: status %d, %q", code, errOut)
	}
}
