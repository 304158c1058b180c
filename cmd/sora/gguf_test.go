package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/float16"
	"github.com/sora-go/sora/models/gguf"
	"github.com/sora-go/sora/models/llama2c"
)

// openGGUF opens a written GGUF file, closing it when the test ends.
func openGGUF(t *testing.T, path string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestMergeGGUF merges a LoRA adapter trained on stories260K into a .gguf
// --out: f16 weights that are the merged checkpoint's rounded to half
// precision, the tokenizer, llama.cpp's architecture; and checks the
// refusals: no tokenizer for a llama2.c base, the GGUF flags without a
// .gguf --out, a file there that is not a GGUF file.
func TestMergeGGUF(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows := filepath.Join(dir, "train.json")
	writeVariedRows(t, rows, 8)
	run := filepath.Join(dir, "run")
	if code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
		"--method", "lora", "--steps", "3", "--lr", "3e-2", "--batch", "4", "--no-spectrum", "--out", run); code != exitOK {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}
	adapterDir := filepath.Join(run, "adapter")
	bin := filepath.Join(dir, "merged.bin")
	if code, stdout, errOut := runCLI(t, "merge", "--backend", "cpu", "--model", model, "--adapter", adapterDir, "--out", bin); code != exitOK {
		t.Fatalf("merge to .bin: status %d\n%s\n%s", code, stdout, errOut)
	}
	out := filepath.Join(dir, "gguf", "merged.gguf")
	code, stdout, errOut := runCLI(t, "merge", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--adapter", adapterDir, "--out", out)
	if code != exitOK {
		t.Fatalf("merge to .gguf: status %d\n%s\n%s", code, stdout, errOut)
	}
	if !strings.Contains(stdout, "architecture llama") || !strings.Contains(stdout, "in f16") || !strings.Contains(stdout, "merged the lora adapter") {
		t.Errorf("stdout does not say what was written:\n%s", stdout)
	}
	w, _, err := llama2c.Load(bin)
	if err != nil {
		t.Fatal(err)
	}
	f := openGGUF(t, out)
	if v, _ := f.Get("general.architecture"); v.String() != `"llama"` {
		t.Errorf("architecture %v", v)
	}
	if v, _ := f.Get("tokenizer.ggml.tokens"); v.Len() != 512 {
		t.Errorf("%d tokens, want 512", v.Len())
	}
	half := func(x []float32) []float32 {
		out := make([]float32, len(x))
		for i, v := range x {
			out[i] = float16.HalfToFloat32(float16.HalfBits(v))
		}
		return out
	}
	for name, want := range map[string][]float32{
		"token_embd.weight": half(w.TokenEmbedding), "blk.0.attn_q.weight": half(w.Layers[0].Wq),
		"blk.4.ffn_down.weight": half(w.Layers[4].W2), "blk.2.attn_norm.weight": w.Layers[2].AttnNorm,
	} {
		got, err := f.ReadFloat32(name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s is not the merged checkpoint's (in f16 for matrices, f32 for norms)", name)
		}
	}

	// Replacing the file says so.
	code, stdout, errOut = runCLI(t, "merge", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--adapter", adapterDir, "--out", out, "--gguf-type", "q8_0")
	if code != exitOK || !strings.Contains(stdout, "replacing the file that was there") || !strings.Contains(errOut, "f16 instead of q8_0") {
		t.Errorf("replacing with q8_0: status %d\n%s\n%s", code, stdout, errOut)
	}

	notGGUF := filepath.Join(dir, "notes.gguf")
	if err := os.WriteFile(notGGUF, []byte("my notes"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--model", model, "--out", filepath.Join(dir, "x.gguf")}, exitUsage, "--tokenizer is required"},
		{[]string{"--model", model, "--tokenizer", tok, "--out", filepath.Join(dir, "x.bin")}, exitUsage, "are for a .gguf --out"},
		{[]string{"--model", model, "--gguf-type", "q4_0", "--tokenizer", tok, "--out", filepath.Join(dir, "x.gguf")}, exitUsage, "--gguf-type \"q4_0\""},
		{[]string{"--model", model, "--tokenizer", tok, "--out", notGGUF}, exitUsage, "not a GGUF file"},
		{[]string{"--model", model, "--tokenizer", tok, "--out", filepath.Join(dir, "folder.gguf")}, exitUsage, ""},
	} {
		if c.want == "" { // a folder named *.gguf
			if err := os.MkdirAll(c.args[len(c.args)-1], 0o755); err != nil {
				t.Fatal(err)
			}
			c.want = "is a folder"
		}
		args := append([]string{"merge", "--backend", "cpu", "--adapter", adapterDir}, c.args...)
		code, stdout, errOut := runCLI(t, args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: status %d (want %d), stderr %q (want %q)\n%s", c.args, code, c.code, errOut, c.want, stdout)
		}
	}
	if b, _ := os.ReadFile(notGGUF); string(b) != "my notes" {
		t.Error("the file that is not a GGUF file was changed")
	}
}

// TestConvertGGUF writes stories260K as GGUF from its llama2.c file and
// from its Hugging Face conversion (whose q/k rows are half-split and go
// back to llama.cpp's interleaved order): the two files hold the same
// tensors, bit for bit; the folder's chat template and pad token go in.
func TestConvertGGUF(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	direct := filepath.Join(dir, "direct.gguf")
	if code, stdout, errOut := runCLI(t, "convert", "--model", model, "--tokenizer", tok, "--out", direct, "--gguf-type", "f32"); code != exitOK {
		t.Fatalf("convert .bin to .gguf: status %d\n%s\n%s", code, stdout, errOut)
	}
	folder := filepath.Join(dir, "hf")
	if code, stdout, errOut := runCLI(t, "convert", "--model", model, "--tokenizer", tok, "--out", folder); code != exitOK {
		t.Fatalf("convert to a folder: status %d\n%s\n%s", code, stdout, errOut)
	}
	const tmpl = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
	if err := os.WriteFile(filepath.Join(folder, "chat_template.jinja"), []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	viaHF := filepath.Join(dir, "via-hf.gguf")
	code, stdout, errOut := runCLI(t, "convert", "--model", folder, "--out", viaHF, "--gguf-type", "f32")
	if code != exitOK {
		t.Fatalf("convert folder to .gguf: status %d\n%s\n%s", code, stdout, errOut)
	}
	if !strings.Contains(stdout, "with its chat template") {
		t.Errorf("stdout does not mention the chat template:\n%s", stdout)
	}
	a, b := openGGUF(t, direct), openGGUF(t, viaHF)
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d tensors from the .bin, %d from the folder", len(a.Tensors), len(b.Tensors))
	}
	for _, ti := range a.Tensors {
		x, err := a.ReadFloat32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		y, err := b.ReadFloat32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(x, y) {
			t.Errorf("%s differs between the two routes", ti.Name)
		}
	}
	if v, _ := b.Get("tokenizer.chat_template"); func() string { s, _ := v.Str(); return s }() != tmpl {
		t.Errorf("chat template %v, want %q", v, tmpl)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--model", model, "--out", filepath.Join(dir, "x.gguf")}, exitUsage, "--tokenizer is required"},
		{[]string{"--model", model, "--tokenizer", tok, "--out", filepath.Join(dir, "x.gguf"), "--shard-size", "1000"}, exitUsage, "one file"},
		{[]string{"--model", model, "--tokenizer", tok, "--out", filepath.Join(dir, "y"), "--gguf-type", "q8_0"}, exitUsage, "--gguf-type is for a .gguf --out"},
	} {
		code, stdout, errOut := runCLI(t, append([]string{"convert"}, c.args...)...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: status %d (want %d), stderr %q (want %q)\n%s", c.args, code, c.code, errOut, c.want, stdout)
		}
	}
}
