package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/safetensors"
)

// writeCoLA writes n CoLA rows alternating acceptable and unacceptable
// sentences to dir/cola.tsv and returns its path.
func writeCoLA(t *testing.T, dir string, n int) string {
	t.Helper()
	var tsv strings.Builder
	for i := range n {
		if i%2 == 0 {
			fmt.Fprintf(&tsv, "src\t1\t\tThe cat sat on the mat number %d.\n", i)
		} else {
			fmt.Fprintf(&tsv, "src\t0\t*\tCat the on sat mat the %d.\n", i)
		}
	}
	path := filepath.Join(dir, "cola.tsv")
	if err := os.WriteFile(path, []byte(tsv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFinetuneFullClassify trains a classifier with full fine-tuning, on
// a llama2.c file and on a Hugging Face folder, and scores it afterwards
// with "sora eval --model adapter/model.bin" (or adapter/model/): the head
// must be saved beside the model, hold exactly the trained weights (those
// of the checkpoint, which --resume restores), and give the same scores as
// the end of training. Bad or missing head files must be refused with
// errors naming the file.
func TestFinetuneFullClassify(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	cola := writeCoLA(t, dir, 20)
	hfBase := filepath.Join(dir, "hf")
	if code, stdout, errOut := runCLI(t, "convert", "--model", model, "--out", hfBase); code != 0 {
		t.Fatalf("convert: status %d\n%s\n%s", code, stdout, errOut)
	}
	var evalArgs []string
	var head string
	for _, base := range []struct{ name, path, saved string }{{"llama2c", model, "model.bin"}, {"hf", hfBase, "model"}} {
		out := filepath.Join(dir, "run-"+base.name)
		fullModel := filepath.Join(out, "adapter", base.saved)
		head = filepath.Join(out, "adapter", headFile)
		evalArgs = checkFullClassify(t, base.path, tok, cola, out, fullModel, head)
	}

	// Bad head files: a failure naming the file, never a panic.
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"not safetensors", []byte("this is not a safetensors file"), head},
		{"three classes", headBytes(t, map[string][]int{headKey: {3, 64}}, 0), "has 3 classes"},
		{"wrong width", headBytes(t, map[string][]int{headKey: {2, 32}}, 0), "shape [2 32]"},
		{"NaN", headBytes(t, map[string][]int{headKey: {2, 64}}, float32(math.NaN())), "is NaN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(head, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, errOut := runCLI(t, evalArgs...)
			if code != exitFailure || !strings.Contains(errOut, head) || !strings.Contains(errOut, tc.want) {
				t.Errorf("status %d, stderr %q; want %d naming %s and %q", code, errOut, exitFailure, head, tc.want)
			}
		})
	}
	// Without the head, --task classify says which file it looked for.
	if err := os.Remove(head); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, append(evalArgs, "--task", "classify")...)
	if code != exitUsage || !strings.Contains(errOut, head) || !strings.Contains(errOut, "--method full --task classify") {
		t.Errorf("missing head: status %d, stderr %q", code, errOut)
	}
}

// checkFullClassify fine-tunes base fully as a classifier of cola into
// out, checks that the head saved at head is the trained one and that
// "sora eval --model fullModel" scores cola as the end of training did,
// and returns the eval command line.
func checkFullClassify(t *testing.T, base, tok, cola, out, fullModel, head string) []string {
	t.Helper()
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", base, "--tokenizer", tok, "--task", "classify",
		"--data", cola, "--eval-data", cola, "--method", "full", "--steps", "4", "--batch", "10", "--max-len", "24", "--lr", "1e-3", "--out", out)
	if code != 0 {
		t.Fatalf("finetune on %s: status %d\n%s\n%s", base, code, stdout, errOut)
	}
	if !strings.Contains(stdout, "adapter/"+headFile) {
		t.Errorf("finetune does not say where the head went:\n%s", stdout)
	}
	if got := headPath(fullModel); got != head {
		t.Fatalf("headPath(%s) = %s, want %s", fullModel, got, head)
	}
	// The saved head is the trained one, bit for bit.
	classes, saved, err := readHead(head, 64)
	if err != nil || classes != 2 {
		t.Fatalf("readHead: %d classes, %v", classes, err)
	}
	ck, err := safetensors.Open(filepath.Join(out, "checkpoints", "step-000004", "trainable.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	trained, err := ck.Float32(headKey)
	ck.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(trained) != len(saved) {
		t.Fatalf("head of %d values, checkpoint's %d", len(saved), len(trained))
	}
	for i := range saved {
		if math.Float32bits(saved[i]) != math.Float32bits(trained[i]) {
			t.Fatalf("head value %d is %v, the checkpoint's %v", i, saved[i], trained[i])
		}
	}

	// No --task: the head beside the model makes it a classification.
	evalJSON := filepath.Join(out, "eval.json")
	args := []string{"--backend", "cpu", "--model", fullModel, "--tokenizer", tok, "--data", cola, "--max-len", "24"}
	rep, sum, evalOut := evalRun(t, out, evalJSON, args...)
	if rep.Task != "classify" || rep.MCC == nil || rep.Rows != 20 || rep.Head != head || sum.Final == nil {
		t.Fatalf("eval report: task %q, MCC %v, %d rows, head %q; run.json final %+v", rep.Task, rep.MCC, rep.Rows, rep.Head, sum.Final)
	}
	if math.Abs(rep.Accuracy-sum.Final.Accuracy) > 1e-12 || sum.Final.MCC == nil || math.Abs(*rep.MCC-*sum.Final.MCC) > 1e-9 || math.Abs(rep.Loss-sum.Final.Loss) > 1e-4 {
		t.Errorf("eval from the saved model and head: accuracy %v MCC %v loss %v; at the end of training: %v %v %v",
			rep.Accuracy, *rep.MCC, rep.Loss, sum.Final.Accuracy, fmtMCC(sum.Final.MCC), sum.Final.Loss)
	}
	if !strings.Contains(evalOut, "with the classification head "+head) {
		t.Errorf("eval does not name the head it used:\n%s", evalOut)
	}
	return append(append([]string{"eval"}, args...), "--json", evalJSON)
}

// headBytes returns a safetensors file of F32 tensors of the given shapes
// whose values are all 0.01, except the fourth of each, which is bad.
func headBytes(t *testing.T, shapes map[string][]int, bad float32) []byte {
	t.Helper()
	var ts []safetensors.Tensor
	for name, shape := range shapes {
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = 0.01
		}
		if bad != 0 && n > 3 {
			data[3] = bad
		}
		ts = append(ts, safetensors.Tensor{Name: name, Shape: shape, Data: data})
	}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, ts, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawSafetensors returns a safetensors file with the given JSON header and
// data section, for dtypes safetensors.Encode does not write.
func rawSafetensors(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

func TestReadHead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, headFile)
	for _, tc := range []struct {
		name    string
		data    []byte // nil: no file
		classes int    // > 0: want success
		want    string // in the error
	}{
		{"good", headBytes(t, map[string][]int{headKey: {3, 4}}, 0), 3, ""},
		{"missing file", nil, 0, "no such file"},
		{"empty file", []byte{}, 0, "safetensors"},
		{"garbage", []byte("\xff\xff\xff\xff\xff\xff\xff\xffgarbage"), 0, "safetensors"},
		{"PEFT's name", headBytes(t, map[string][]int{"base_model.model.score.weight": {2, 4}}, 0), 0, `no tensor "score.weight"`},
		{"extra tensor", headBytes(t, map[string][]int{headKey: {2, 4}, "score.bias": {2}}, 0), 0, "2 tensors"},
		{"one class", headBytes(t, map[string][]int{headKey: {1, 4}}, 0), 0, "shape [1 4]"},
		{"wrong width", headBytes(t, map[string][]int{headKey: {2, 5}}, 0), 0, "shape [2 5]"},
		{"vector", headBytes(t, map[string][]int{headKey: {8}}, 0), 0, "shape [8]"},
		{"NaN", headBytes(t, map[string][]int{headKey: {2, 4}}, float32(math.NaN())), 0, "element 3 (class 0) is NaN"},
		{"infinity", headBytes(t, map[string][]int{headKey: {2, 4}}, float32(math.Inf(-1))), 0, "is -Inf"},
		{"integer dtype", rawSafetensors(`{"score.weight":{"dtype":"I32","shape":[2,4],"data_offsets":[0,32]}}`, make([]byte, 32)), 0, "dtype I32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(path)
			if tc.data != nil {
				if err := os.WriteFile(path, tc.data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			classes, w, err := readHead(path, 4)
			if tc.classes > 0 {
				if err != nil || classes != tc.classes || len(w) != tc.classes*4 || w[0] != 0.01 {
					t.Fatalf("readHead: %d classes, %d values, %v; want %d classes", classes, len(w), err, tc.classes)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("readHead: error %v; want one naming %s and saying %q", err, path, tc.want)
			}
		})
	}
}

// FuzzParseHead checks that no file makes parseHead panic, and that what
// it accepts is a well-formed head.
func FuzzParseHead(f *testing.F) {
	var good bytes.Buffer
	if err := safetensors.Encode(&good, []safetensors.Tensor{{Name: headKey, Shape: []int{2, 4}, Data: make([]float32, 8)}}, nil); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add(rawSafetensors(`{"score.weight":{"dtype":"F16","shape":[2,4],"data_offsets":[0,16]}}`, make([]byte, 16)))
	f.Add([]byte("not a file"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := safetensors.NewFile(bytes.NewReader(b), int64(len(b)), "fuzz")
		if err != nil {
			return
		}
		classes, w, err := parseHead(sf, "fuzz", 4)
		if err != nil {
			return
		}
		if classes < 2 || len(w) != classes*4 {
			t.Fatalf("accepted %d classes with %d values", classes, len(w))
		}
		for i, v := range w {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("accepted value %d = %v", i, v)
			}
		}
	})
}
