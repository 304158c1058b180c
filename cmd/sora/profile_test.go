package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCPUProfile checks --cpuprofile on the commands that take it: the
// file is a gzip stream (as pprof writes its protobuf) holding a profile
// of some samples' size, and a missing folder or a folder for a file is
// a usage error that runs nothing.
func TestCPUProfile(t *testing.T) {
	dir := t.TempDir()
	tiny := []string{"--backend", "cpu", "--dim", "32", "--layers", "2", "--heads", "4", "--kv-heads", "2",
		"--hidden", "48", "--vocab", "40", "--seq", "16", "--batch", "2", "--steps", "2", "--rounds", "1", "--methods", "lora"}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"bench train", append([]string{"bench", "train"}, tiny...)},
		{"finetune demo", []string{"finetune", "--backend", "cpu", "--method", "lora", "--steps", "2", "--pretrain-steps", "2",
			"--repeats", "1", "--out", filepath.Join(dir, "demo")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".pprof")
			code, out, errOut := runCLI(t, append(tc.args, "--cpuprofile", path)...)
			if code != 0 {
				t.Fatalf("status %d\n%s\n%s", code, out, errOut)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("%s is not a gzip stream as pprof writes: %v", path, err)
			}
			pb, err := io.ReadAll(zr)
			if err != nil || len(pb) < 100 {
				t.Fatalf("%s: %d bytes of profile, %v", path, len(pb), err)
			}
			for _, bad := range []string{filepath.Join(dir, "no-such-folder", "cpu.pprof"), dir} {
				code, out, errOut = runCLI(t, append(tc.args, "--cpuprofile", bad)...)
				if code != exitUsage || !strings.Contains(errOut, "--cpuprofile "+bad) || out != "" {
					t.Errorf("--cpuprofile %s: status %d, stdout %q, stderr %q; want a usage error naming it and no run", bad, code, out, errOut)
				}
			}
		})
	}
}
