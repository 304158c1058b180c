package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeFiles writes each name (a path under dir) with its content.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// listDir returns the names in dir, sorted; nil where it does not exist
// or is a file.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	if st, err := os.Stat(dir); os.IsNotExist(err) || err == nil && !st.IsDir() {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestConvertOut checks what convert does with each kind of --out: it
// wrote into any existing folder, the source's own included, and removed
// the side files of whatever was there without a word (generation_config.json,
// chat_template.jinja, ...), though its help said only that files in it
// are replaced atomically.
func TestConvertOut(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFiles(t, src, map[string]string{"notes.txt": "mine"})
	srcModel := filepath.Join(src, "stories260K.bin")
	copyFile(t, model, srcModel)
	// An earlier checkpoint, as convert --tokenizer wrote it, with side
	// files added by hand and a file of the user's.
	ckpt := filepath.Join(dir, "ckpt")
	if code, _, errOut := runCLI(t, "convert", "--model", model, "--tokenizer", tok, "--out", ckpt); code != 0 {
		t.Fatalf("convert: status %d\n%s", code, errOut)
	}
	writeFiles(t, ckpt, map[string]string{"generation_config.json": "{}", "chat_template.jinja": "x", "README.md": "keep"})
	ckptNoTok := filepath.Join(dir, "ckpt2")
	if code, _, errOut := runCLI(t, "convert", "--model", model, "--tokenizer", tok, "--out", ckptNoTok); code != 0 {
		t.Fatalf("convert: status %d\n%s", code, errOut)
	}
	other := filepath.Join(dir, "other")
	writeFiles(t, other, map[string]string{"tokenizer.json": "mine", "generation_config.json": "{}", "data.json": "[]"})
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file.bin")
	writeFiles(t, dir, map[string]string{"file.bin": "x"})

	for _, tc := range []struct {
		name      string
		model     string
		out       string
		tok       bool
		code      int
		want      []string // in stdout for success, stderr otherwise
		after     []string // the folder's files after
		unchanged bool     // the folder (or file) is as it was
	}{
		{"new folder", model, filepath.Join(dir, "new", "hf"), true, 0, []string{"with its tokenizer"},
			[]string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}, false},
		{"empty folder", model, empty, false, 0, nil, []string{"config.json", "model.safetensors"}, false},
		{"checkpoint, with --tokenizer", model, ckpt, true, 0,
			[]string{"replacing the checkpoint that was there", "removed from " + ckpt + " the replaced checkpoint's chat_template.jinja, generation_config.json, which would describe another model"},
			[]string{"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}, false},
		{"checkpoint, without --tokenizer", model, ckptNoTok, false, 0,
			[]string{"removed from " + ckptNoTok + " the replaced checkpoint's tokenizer.json, tokenizer_config.json", "this conversion writes no tokenizer"},
			[]string{"config.json", "model.safetensors"}, false},
		{"the source's folder", srcModel, src, false, exitUsage, []string{"--out " + src + " is the folder that holds --model"}, nil, true},
		{"a folder of other files", model, other, false, exitUsage, []string{"holds other things (data.json, generation_config.json, tokenizer.json)", "no Hugging Face checkpoint"}, nil, true},
		{"a file", model, file, false, exitUsage, []string{"--out " + file + " is a file"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := listDir(t, tc.out)
			var beforeFile []byte
			if st, err := os.Stat(tc.out); err == nil && !st.IsDir() {
				beforeFile = readFile(t, tc.out)
			}
			args := []string{"convert", "--model", tc.model, "--out", tc.out}
			if tc.tok {
				args = append(args, "--tokenizer", tok)
			}
			code, stdout, errOut := runCLI(t, args...)
			if code != tc.code {
				t.Fatalf("status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, errOut)
			}
			msg := stdout
			if code != 0 {
				msg = errOut
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("output %q does not say %q", msg, w)
				}
			}
			if tc.unchanged {
				if got := listDir(t, tc.out); !slices.Equal(got, before) {
					t.Errorf("%s holds %v, was %v", tc.out, got, before)
				}
				if beforeFile != nil && string(readFile(t, tc.out)) != string(beforeFile) {
					t.Errorf("%s was changed", tc.out)
				}
				if got := listDir(t, dir); slices.ContainsFunc(got, func(n string) bool { return strings.HasPrefix(n, ".") }) {
					t.Errorf("a temporary was left in %s: %v", dir, got)
				}
				return
			}
			if got := listDir(t, tc.out); !slices.Equal(got, tc.after) {
				t.Errorf("%s holds %v, want %v", tc.out, got, tc.after)
			}
		})
	}
	// The replaced checkpoint generates as the source does.
	if text, _ := generateCLI(t, "--model", ckpt, "--prompt", "Once upon a time", "--steps", "60"); text != want60 {
		t.Errorf("the replaced checkpoint generates %q, want %q", text, want60)
	}
}

// TestMergeOut checks merge with each kind of --out for each kind of base:
// a folder --out for a .bin base merged everything, then failed with
// "rename ./.merged.tmp-NNN merged: file exists"; a file --out for a
// folder base, and a folder of other things, went as far or further.
func TestMergeOut(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := writeCatRows(t, dir)
	hfBase := storiesHF(t)
	binRun, hfRun := filepath.Join(dir, "bin-run"), filepath.Join(dir, "hf-run")
	finetuneCLI(t, "--model", model, "--tokenizer", tok, "--data", rows, "--method", "lora", "--steps", "2", "--out", binRun)
	finetuneCLI(t, "--model", hfBase, "--data", rows, "--method", "lora", "--steps", "2", "--out", hfRun)

	// The places --out may name; each case gets its own copy.
	kinds := map[string]func(t *testing.T, p string){
		"missing": func(*testing.T, string) {},
		"file": func(t *testing.T, p string) {
			writeFiles(t, filepath.Dir(p), map[string]string{filepath.Base(p): "old"})
		},
		"checkpoint file": func(t *testing.T, p string) { copyFile(t, model, p) },
		"empty folder": func(t *testing.T, p string) {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		},
		"checkpoint folder": func(t *testing.T, p string) {
			if code, _, errOut := runCLI(t, "convert", "--model", model, "--tokenizer", tok, "--out", p); code != 0 {
				t.Fatalf("convert: %s", errOut)
			}
			writeFiles(t, p, map[string]string{"tokenizer.model": "old", "notes.txt": "keep"})
		},
		"folder of other files": func(t *testing.T, p string) { writeFiles(t, p, map[string]string{"notes.txt": "keep"}) },
	}
	for _, tc := range []struct {
		base, out string
		code      int
		want      string
	}{
		{"bin", "missing", 0, "(llama2.c legacy checkpoint)"},
		{"bin", "file", exitUsage, "exists and is not a llama2.c checkpoint, which the merge would replace"},
		{"bin", "checkpoint file", 0, "replacing the file that was there"},
		{"bin", "empty folder", exitUsage, "is a folder: a llama2.c base (a .bin file) merges into a checkpoint file, so --out must be a file path"},
		{"bin", "checkpoint folder", exitUsage, "--out must be a file path"},
		{"bin", "folder of other files", exitUsage, "--out must be a file path"},
		{"hf", "missing", 0, "(Hugging Face folder)"},
		{"hf", "file", exitUsage, "is a file: a Hugging Face base merges into a folder"},
		{"hf", "empty folder", 0, "(Hugging Face folder)"},
		{"hf", "checkpoint folder", 0, "the replaced checkpoint's tokenizer.model, which would describe another model"},
		{"hf", "folder of other files", exitUsage, "holds other things (notes.txt) and no Hugging Face checkpoint"},
	} {
		t.Run(tc.base+" base, "+tc.out, func(t *testing.T) {
			ad := filepath.Join(binRun, "adapter")
			if tc.base == "hf" {
				ad = filepath.Join(hfRun, "adapter")
			}
			out := filepath.Join(t.TempDir(), "merged")
			kinds[tc.out](t, out)
			before := listDir(t, out)
			code, stdout, errOut := runCLI(t, "merge", "--adapter", ad, "--out", out)
			if code != tc.code {
				t.Fatalf("status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, errOut)
			}
			if code != 0 {
				if !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "rename") {
					t.Errorf("stderr %q; want it to say %q", errOut, tc.want)
				}
				if got := listDir(t, out); !slices.Equal(got, before) {
					t.Errorf("the refused merge changed %s: %v, was %v", out, got, before)
				}
				if got := listDir(t, filepath.Dir(out)); len(got) > 1 {
					t.Errorf("the refused merge left %v beside --out", got)
				}
				return
			}
			if !strings.Contains(stdout, tc.want) {
				t.Errorf("stdout %q does not say %q", stdout, tc.want)
			}
			// What was written is the merged model: it generates what the
			// adapter generates.
			args := []string{"--model", out, "--prompt", catPrompt, "--steps", "30"}
			if tc.base == "bin" {
				args = append(args, "--tokenizer", tok)
			}
			got, _ := generateCLI(t, args...)
			want, _ := generateCLI(t, "--adapter", ad, "--tokenizer", tok, "--prompt", catPrompt, "--steps", "30")
			if got != want {
				t.Errorf("the merged model generates %q, the adapter %q", got, want)
			}
			if tc.out == "checkpoint folder" {
				names := listDir(t, out)
				if slices.Contains(names, "tokenizer.model") || !slices.Contains(names, "notes.txt") || !slices.Contains(names, "tokenizer.json") {
					t.Errorf("the replaced checkpoint holds %v; want the base's tokenizer.json and notes.txt, and no tokenizer.model", names)
				}
			}
		})
	}
}

// TestConvertHelpNamesRemovedFiles checks that convert's help names every
// file of a replaced checkpoint that it may remove.
func TestConvertHelpNamesRemovedFiles(t *testing.T) {
	for _, cmd := range []string{"convert", "merge"} {
		_, out, _ := runCLI(t, cmd, "--help")
		text := strings.Join(strings.Fields(out), " ")
		for _, name := range hfSideNames {
			if !strings.Contains(text, name) {
				t.Errorf("%s --help does not name %s among the files it removes", cmd, name)
			}
		}
		if !strings.Contains(text, "Other files in DIR are left alone") && !strings.Contains(text, "other files are left alone") {
			t.Errorf("%s --help does not say that other files are left alone", cmd)
		}
	}
}
