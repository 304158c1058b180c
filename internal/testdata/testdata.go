// Package testdata locates the project's shared data folder
// (../shared/data beside the module root) for tests, and skips a test with a
// clear message where the data is absent.
package testdata

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the shared data folder: $SORA_DATA if set, else ../shared/data
// relative to the module root (the nearest parent holding go.mod). It
// returns "" if the module root cannot be found.
func Dir() string {
	if d := os.Getenv("SORA_DATA"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(filepath.Dir(d), "shared", "data")
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// Path returns the path of the shared data file rel (slash-separated, e.g.
// "models/stories260K/tok512.bin"), skipping tb with a message naming the
// missing file if it is absent.
func Path(tb testing.TB, rel string) string {
	tb.Helper()
	dir := Dir()
	if dir == "" {
		tb.Skipf("shared data not found: no go.mod above the working directory and SORA_DATA unset (needed %s)", rel)
	}
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("shared data file %s is absent (%v); skipping", p, err)
	}
	return p
}

// Stories260K returns the paths of the stories260K checkpoint and its
// tokenizer, skipping tb if either is absent.
func Stories260K(tb testing.TB) (model, tokenizer string) {
	tb.Helper()
	return Path(tb, "models/stories260K/stories260K.bin"), Path(tb, "models/stories260K/tok512.bin")
}
