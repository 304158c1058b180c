package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestOutWritableChecked checks that merge and convert refuse an --out
// they cannot write before they read, merge or convert the model (they
// used to do the work, then fail writing): a .bin, .gguf or Hugging Face
// folder --out in /proc, where no file can be created, and, for a user
// other than root, in a folder without write permission.
func TestOutWritableChecked(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	ad := filepath.Join(dir, "adapter")
	rankOneAdapter(t, model, ad)
	hfBase := filepath.Join(dir, "hf")
	if code, stdout, errOut := runCLI(t, "convert", "--model", model, "--tokenizer", tok, "--out", hfBase); code != exitOK {
		t.Fatalf("convert: status %d\n%s\n%s", code, stdout, errOut)
	}
	var places []string // folders where --out cannot be written
	if runtime.GOOS == "linux" {
		places = append(places, "/proc")
	}
	if runtime.GOOS != "windows" && os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		places = append(places, ro)
	}
	if len(places) == 0 {
		t.Skip("no folder here that refuses a new file")
	}
	for _, place := range places {
		for _, c := range []struct {
			name    string
			args    []string
			out     string // --out, under place
			written string // the file that cannot be created
		}{
			{"merge .bin", []string{"merge", "--backend", "cpu", "--model", model, "--adapter", ad}, "nope/m.bin", "nope/m.bin"},
			{"merge .gguf", []string{"merge", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--adapter", ad}, "m.gguf", "m.gguf"},
			{"merge folder", []string{"merge", "--backend", "cpu", "--model", hfBase, "--adapter", ad}, "merged", "merged/config.json"},
			{"convert folder", []string{"convert", "--model", model}, "nope/hf", "nope/hf/config.json"},
			{"convert .gguf", []string{"convert", "--model", model, "--tokenizer", tok}, "x.gguf", "x.gguf"},
		} {
			out := filepath.Join(place, c.out)
			code, stdout, errOut := runCLI(t, append(c.args, "--out", out)...)
			want := "--out: cannot write " + filepath.Join(place, c.written) + ": no file can be created in " + place
			if code != exitUsage || !strings.Contains(errOut, want) {
				t.Errorf("%s --out %s: status %d, stderr %q; want %d and %q", c.name, out, code, errOut, exitUsage, want)
			}
			if stdout != "" {
				t.Errorf("%s --out %s: it ran before refusing the path: stdout %q", c.name, out, stdout)
			}
		}
	}
}
