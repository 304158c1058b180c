package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMergeOutIsBaseThroughLink checks that merge and convert refuse an
// --out that is the base model (or, for convert, its folder) under
// another name, a symbolic link: merge used to write the merged weights
// over a Hugging Face base reached through a link to it.
func TestMergeOutIsBaseThroughLink(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	hfBase := storiesHF(t)
	rows := writeCatRows(t, dir)
	run := filepath.Join(dir, "run")
	finetuneCLI(t, "--model", hfBase, "--data", rows, "--method", "lora", "--steps", "2", "--no-spectrum", "--out", run)
	weights := filepath.Join(hfBase, "model.safetensors")
	before, err := os.ReadFile(weights)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link-to-base")
	if err := os.Symlink(hfBase, link); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
	code, stdout, errOut := runCLI(t, "merge", "--adapter", filepath.Join(run, "adapter"), "--model", hfBase, "--out", link)
	if code != exitUsage || !strings.Contains(errOut, "--out must not be the base model itself") {
		t.Errorf("merge --out through a link to the base: status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, errOut)
	}
	if after, err := os.ReadFile(weights); err != nil || !bytes.Equal(after, before) {
		t.Errorf("the base's weights changed (%v)", err)
	}

	// convert into the model's own folder, through a link to it.
	local := filepath.Join(dir, "models")
	if err := os.MkdirAll(local, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, model, filepath.Join(local, "stories260K.bin"))
	folderLink := filepath.Join(dir, "link-to-models")
	if err := os.Symlink(local, folderLink); err != nil {
		t.Fatal(err)
	}
	code, stdout, errOut = runCLI(t, "convert", "--model", filepath.Join(local, "stories260K.bin"), "--tokenizer", tok, "--out", folderLink)
	if code != exitUsage || len(listDir(t, local)) != 1 {
		t.Errorf("convert --out through a link to the model's folder: status %d, folder now %v\nstdout:\n%s\nstderr:\n%s", code, listDir(t, local), stdout, errOut)
	}
}

// TestMergeNotesStoredDType checks that merging into a Hugging Face base
// whose config.json records bfloat16 weights says that the merged folder
// holds float32, about twice the size, and that a float32 base draws no
// such note.
func TestMergeNotesStoredDType(t *testing.T) {
	dir := t.TempDir()
	hfBase := storiesHF(t)
	rows := writeCatRows(t, dir)
	run := filepath.Join(dir, "run")
	finetuneCLI(t, "--model", hfBase, "--data", rows, "--method", "lora", "--steps", "1", "--no-spectrum", "--out", run)
	ad := filepath.Join(run, "adapter")
	code, stdout, errOut := runCLI(t, "merge", "--adapter", ad, "--model", hfBase, "--out", filepath.Join(dir, "m32"))
	if code != exitOK || strings.Contains(stdout, "note: the base stores") {
		t.Errorf("merge of a float32 base: status %d\n%s\n%s", code, stdout, errOut)
	}
	cfgPath := filepath.Join(hfBase, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	bf16 := bytes.Replace(raw, []byte(`"torch_dtype": "float32"`), []byte(`"torch_dtype": "bfloat16"`), 1)
	if bytes.Equal(bf16, raw) {
		t.Fatalf("%s records no float32 torch_dtype to change:\n%s", cfgPath, raw)
	}
	if err := os.WriteFile(cfgPath, bf16, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, errOut = runCLI(t, "merge", "--adapter", ad, "--model", hfBase, "--out", filepath.Join(dir, "m16"))
	if code != exitOK || !strings.Contains(stdout, "note: the base stores its weights in bfloat16; the merged folder holds float32") ||
		!strings.Contains(stdout, "torch_dtype=torch.bfloat16") {
		t.Errorf("merge of a bfloat16 base: status %d\n%s\n%s", code, stdout, errOut)
	}
}
