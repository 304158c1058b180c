package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/atomicfile"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/safetensors"
)

// headFile is the file, beside the whole model that "sora finetune
// --method full --task classify" writes (adapter/model.bin, or the Hugging
// Face folder adapter/model/), that holds the trained classification head:
// a llama2.c checkpoint has no place for it, and the Hugging Face folder is
// written as a causal language model. It holds one tensor, score.weight [classes, dim], under the
// name Hugging Face's LlamaForSequenceClassification gives it in a whole
// model's weights (a PEFT adapter stores the same tensor as
// base_model.model.score.weight).
const headFile = llama.ScoreModule + ".safetensors"

// headKey is the head's tensor in headFile.
const headKey = llama.ScoreModule + ".weight"

// headPath returns where the classification head of the model at
// modelPath (a file or a Hugging Face folder) lies: headFile in the folder
// that holds the model.
func headPath(modelPath string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(modelPath)), headFile)
}

// findHead returns the classification head that lies beside the whole
// model at modelPath (headPath's file), or "" when there is none. "sora
// eval" scores such a model as a classifier with it, and "sora finetune
// --task classify" continues training it.
func findHead(modelPath string) string {
	if p := headPath(modelPath); fileExists(p) {
		return p
	}
	return ""
}

// fileExists reports whether path exists; a file it may not read counts,
// so that reading it reports why.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || errors.Is(err, fs.ErrPermission)
}

// saveHead writes m's classification head to path (through a temporary
// file renamed into place, as safetensors.Write does).
func saveHead(path string, m *llama.Model) error {
	d, ok := m.Score.(*graph.Dense)
	if !ok || d == nil || d.W == nil || d.B != nil {
		return fmt.Errorf("saving the classification head to %s: the model's score layer is a %T, not a dense layer without bias", path, m.Score)
	}
	w, err := d.W.Download()
	if err != nil {
		return fmt.Errorf("saving the classification head to %s: %w", path, err)
	}
	shape := []int(d.W.Shape())
	return safetensors.Write(path, []safetensors.Tensor{{Name: headKey, Shape: shape, Data: w}}, map[string]string{"format": "pt"})
}

// readHead reads and checks the classification head at path for a model of
// width dim: exactly one tensor, score.weight, of shape [classes ≥ 2, dim]
// with finite values. It returns the number of classes and the weights,
// row-major. Its errors name path.
func readHead(path string, dim int) (classes int, w []float32, err error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return 0, nil, fmt.Errorf("classification head: %w", err)
	}
	defer f.Close()
	return parseHead(f, path, dim)
}

// parseHead is readHead on an opened file.
func parseHead(f *safetensors.File, path string, dim int) (classes int, w []float32, err error) {
	want := fmt.Sprintf("one tensor %q of shape [classes ≥ 2, %d] (the head that \"sora finetune --method full --task classify\" saves)", headKey, dim)
	ts := f.Tensors()
	info, ok := f.Info(headKey)
	switch {
	case !ok:
		names := make([]string, 0, min(3, len(ts)))
		for _, t := range ts[:min(3, len(ts))] {
			names = append(names, fmt.Sprintf("%q", t.Name))
		}
		return 0, nil, fmt.Errorf("classification head %s: no tensor %q (the file holds %d tensors %v); want %s", path, headKey, len(ts), names, want)
	case len(ts) != 1:
		return 0, nil, fmt.Errorf("classification head %s: %d tensors; want %s", path, len(ts), want)
	case len(info.Shape) != 2 || info.Shape[0] < 2 || info.Shape[1] != dim:
		return 0, nil, fmt.Errorf("classification head %s: %q has shape %v; want %s", path, headKey, info.Shape, want)
	}
	w, err = f.Float32(headKey)
	if err != nil {
		return 0, nil, fmt.Errorf("classification head: %w", err)
	}
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return 0, nil, fmt.Errorf("classification head %s: %q element %d (class %d) is %v", path, headKey, i, i/dim, v)
		}
	}
	return info.Shape[0], w, nil
}

// setHead gives m a classification head holding w ([classes, dim],
// row-major, as readHead returns it).
func setHead(m *llama.Model, classes int, w []float32) error {
	if err := m.AddScoreHead(classes, 0); err != nil {
		return err
	}
	d := m.Score.(*graph.Dense) // AddScoreHead makes a dense layer
	b := d.W.Backend()
	b.Upload(d.W.Tensor(), w)
	if err := b.Sync(); err != nil {
		return fmt.Errorf("uploading the classification head: %w", err)
	}
	return nil
}

// labelsFile is the file, in the folder that holds a classification head
// (an adapter's folder, or the folder that holds a fully fine-tuned model
// and its headFile), that names the head's classes in order, as the
// training data named them: {"labels": ["unacceptable", "acceptable"]}.
// The head's weights say only how many classes there are, and a CoLA head
// evaluated on BoolQ would silently read unacceptable as false.
const labelsFile = llama.ScoreModule + "_labels.json"

// headLabels is labelsFile's content.
type headLabels struct {
	Labels []string `json:"labels"`
}

// writeHeadLabels records labels, the names of a classification head's
// classes in order, in dir's labelsFile (through a temporary file renamed
// into place), for eval to check data against.
func writeHeadLabels(dir string, labels []string) error {
	return atomicfile.WriteJSON(filepath.Join(dir, labelsFile), headLabels{Labels: labels})
}

// readHeadLabels returns the class names that dir's labelsFile records,
// nil without error where there is no such file (a head saved before
// the names were recorded). Its errors name the file.
func readHeadLabels(dir string) ([]string, error) {
	p := filepath.Join(dir, labelsFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("classification head labels: %w", err)
	}
	return parseHeadLabels(b, p)
}

// parseHeadLabels parses labelsFile's content b, read from path: at least
// two distinct, non-empty names.
func parseHeadLabels(b []byte, path string) ([]string, error) {
	var h headLabels
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("classification head labels %s: %v; want {\"labels\": [two or more class names]}", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("classification head labels %s: data after the JSON object", path)
	}
	if len(h.Labels) < 2 {
		return nil, fmt.Errorf("classification head labels %s: %d labels; want two or more class names", path, len(h.Labels))
	}
	for i, l := range h.Labels {
		if strings.TrimSpace(l) == "" {
			return nil, fmt.Errorf("classification head labels %s: label %d is blank", path, i)
		}
		if slices.Contains(h.Labels[:i], l) {
			return nil, fmt.Errorf("classification head labels %s: label %q appears twice", path, l)
		}
	}
	return h.Labels, nil
}

// checkHeadLabels checks the classification head in dir against classes,
// the labels of the data at dataPath in order. The head's labels are those
// its labelsFile records, else those of the data that run, the "sora
// finetune" run that wrote it (nil if none), trained on, where that file
// still reads. A head trained on other labels is an error naming both
// sets, even where the counts agree: its classes would be read as the
// data's. A head whose labels cannot be known loads, with note saying
// whose names its classes take.
func checkHeadLabels(dir string, run *trainingRun, classes []string, dataPath string) (note string, err error) {
	labels, err := readHeadLabels(dir)
	if err != nil {
		return "", err
	}
	from := filepath.Join(dir, labelsFile)
	if labels == nil && run != nil && run.Task == "classify" && run.Data != "" {
		// The run's data names the classes as it named them in training.
		if set, err := data.LoadClassification(run.Data); err == nil {
			labels, from = set.Classes, fmt.Sprintf("those of %s, which %s says it was trained on", run.Data, run.path)
		}
	}
	switch {
	case labels == nil:
		return fmt.Sprintf("the classification head in %s records no class names (no %s, nor the run.json of a \"sora finetune\" run whose training data still reads): its %d classes are taken to be %s's %s, in that order",
			dir, labelsFile, len(classes), dataPath, strings.Join(classes, ", ")), nil
	case !slices.Equal(labels, classes):
		return "", fmt.Errorf("the classification head in %s was trained on the labels %s (%s), and %s has the labels %s: its classes would be read as the wrong labels; evaluate it on data with its labels, or train a head for these",
			dir, strings.Join(labels, ", "), from, dataPath, strings.Join(classes, ", "))
	}
	return "", nil
}
