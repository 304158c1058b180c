package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestFinetuneFailureLeavesNoFolders runs "sora finetune" into output
// folders that do not exist yet, deep/a/b/c or the default runs/<method>-
// <task>, in runs that fail before they train: on a backend this machine
// cannot run (status 3) and with --data missing (status 1). Each must
// leave the folder it ran in as it found it, without the output folder
// and without the parents that the run made for it; a parent that was
// there before stays.
func TestFinetuneFailureLeavesNoFolders(t *testing.T) {
	model, tok := stories260K(t)
	cases := []struct {
		name   string
		args   []string
		before []string // folders made before the run, in its working folder
		code   int
	}{
		{"backend unavailable, deep --out", []string{"--backend", testUnavailable, "--out", filepath.Join("deep", "a", "b", "c")}, nil, exitUnavailable},
		{"backend unavailable, default --out", []string{"--backend", testUnavailable}, nil, exitUnavailable},
		{"data missing, deep --out", []string{"--backend", "cpu", "--out", filepath.Join("deep", "a", "b", "c")}, nil, exitFailure},
		{"data missing, default --out", []string{"--backend", "cpu"}, nil, exitFailure},
		{"data missing, a parent there before", []string{"--backend", "cpu", "--out", filepath.Join("deep", "a", "b", "c")}, []string{filepath.Join("deep", "a")}, exitFailure},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wd := t.TempDir()
			t.Chdir(wd)
			for _, d := range c.before {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			args := append([]string{"finetune", "--model", model, "--tokenizer", tok, "--data", filepath.Join(t.TempDir(), "absent.json")}, c.args...)
			code, stdout, errOut := runCLI(t, args...)
			if code != c.code {
				t.Fatalf("status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, stdout, errOut)
			}
			var left []string
			filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
				if err == nil && p != "." {
					left = append(left, p)
				}
				return err
			})
			var want []string
			for _, d := range c.before {
				for p := d; p != "."; p = filepath.Dir(p) {
					want = append(want, p)
				}
			}
			slices.Sort(want)
			if !slices.Equal(left, want) {
				t.Errorf("the failed run left %v in its working folder; want %v\nstderr: %s", left, want, errOut)
			}
		})
	}
}
