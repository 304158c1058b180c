package data

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Labeled is one example of a sentence classification task: a text and
// its class in [0, number of classes).
type Labeled struct {
	Text  string
	Label int
}

// ClassifySet is a sentence classification data set.
type ClassifySet struct {
	// Examples in file order.
	Examples []Labeled
	// Classes names the labels: Classes[i] is the name of label i.
	Classes []string
}

// CoLA's two classes: 0 unacceptable, 1 acceptable.
var colaClasses = []string{"unacceptable", "acceptable"}

// BoolQ's two classes: 0 false, 1 true.
var boolClasses = []string{"false", "true"}

// LoadCoLA reads a CoLA TSV file (see [ParseCoLA]).
func LoadCoLA(path string) (*ClassifySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return ParseCoLA(b, path)
}

// ParseCoLA parses the CoLA release's TSV format: one row per line with
// four tab-separated fields, source (the sentence's origin, e.g. "gj04"),
// label (1 acceptable, 0 unacceptable), the original author's mark (empty or
// "*", "?", "??", …; not used) and the sentence. Blank lines are skipped; a
// UTF-8 byte-order mark and Windows line ends are accepted. Errors name the
// file, the line and the field.
func ParseCoLA(b []byte, name string) (*ClassifySet, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	set := &ClassifySet{Classes: colaClasses}
	for i, line := range bytes.Split(b, []byte{'\n'}) {
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		n := i + 1
		if !utf8.Valid(line) {
			return nil, fmt.Errorf("data: %s:%d: the row is not valid UTF-8 text", name, n)
		}
		f := strings.Split(string(line), "\t")
		if len(f) != 4 {
			return nil, fmt.Errorf("data: %s:%d: expected 4 tab-separated fields (source, label, mark, sentence), found %d", name, n, len(f))
		}
		var label int
		switch strings.TrimSpace(f[1]) {
		case "0":
			label = 0
		case "1":
			label = 1
		default:
			return nil, fmt.Errorf("data: %s:%d: field 2 (label) is %q; expected 0 (unacceptable) or 1 (acceptable)", name, n, f[1])
		}
		text := strings.TrimSpace(f[3])
		if text == "" {
			return nil, fmt.Errorf("data: %s:%d: field 4 (sentence) is empty", name, n)
		}
		set.Examples = append(set.Examples, Labeled{Text: text, Label: label})
	}
	if len(set.Examples) == 0 {
		return nil, fmt.Errorf("data: %s: no rows; expected CoLA's tab-separated source, label, mark, sentence", name)
	}
	return set, nil
}

// boolqQuestion finds the question inside LLM-Adapters' BoolQ instruction
// "Please answer the following question with true or false, question:
// …?\n\nAnswer format: true/false".
var boolqQuestion = regexp.MustCompile(`(?s)question:\s*(.*?)\s*(?:\n\s*Answer format:.*)?$`)

// BoolQClassification turns LLM-Adapters BoolQ rows into a two-class task
// (0 false, 1 true, from the answer field, or from the output when the
// answer is absent). The text is the question found in the instruction, or
// the whole instruction (and input) when it does not have BoolQ's form.
// name is used in errors, which name the row and the field.
func BoolQClassification(rows []Example, name string) (*ClassifySet, error) {
	return boolqClassification(rows, nil, name)
}

// boolqClassification is BoolQClassification, whose errors also name the
// line row i starts on, lines[i], where lines is not nil.
func boolqClassification(rows []Example, lines []int, name string) (*ClassifySet, error) {
	set := &ClassifySet{Classes: boolClasses}
	for i, r := range rows {
		ans, field := r.Answer, "answer"
		if ans == "" {
			ans, field = r.Output, "output"
			if m := firstMatch(reBool, strings.TrimSpace(r.Output)); m != "" {
				ans = m
			}
		}
		var label int
		switch strings.ToLower(strings.TrimSpace(ans)) {
		case "true", "yes":
			label = 1
		case "false", "no":
			label = 0
		default:
			where := name
			if i < len(lines) {
				where = fmt.Sprintf("%s:%d", name, lines[i])
			}
			return nil, fmt.Errorf("data: %s: row %d: field %q is %q; expected true or false for a two-class task", where, i+1, field, ans)
		}
		text := r.Instruction
		if m := boolqQuestion.FindStringSubmatch(r.Instruction); m != nil && strings.TrimSpace(m[1]) != "" {
			text = m[1]
		}
		if r.Input != "" {
			text += "\n" + r.Input
		}
		set.Examples = append(set.Examples, Labeled{Text: text, Label: label})
	}
	if len(set.Examples) == 0 {
		return nil, fmt.Errorf("data: %s: no rows", name)
	}
	return set, nil
}

// LoadClassification reads a classification data set by its extension:
// .tsv is CoLA's format, .json is LLM-Adapters JSON with true/false
// answers (BoolQ).
func LoadClassification(path string) (*ClassifySet, error) {
	if err := classificationExt(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return ParseClassification(b, path)
}

// ParseClassification parses the classification data set b, read from the
// file name, as [LoadClassification] reads that file: by name's extension.
// Errors name the file, the line a row starts on, the row and the field.
func ParseClassification(b []byte, name string) (*ClassifySet, error) {
	if err := classificationExt(name); err != nil {
		return nil, err
	}
	if strings.EqualFold(filepath.Ext(name), ".tsv") {
		return ParseCoLA(b, name)
	}
	rows, lines, err := parseAdapters(b, name)
	if err != nil {
		return nil, err
	}
	return boolqClassification(rows, lines, name)
}

// classificationExt refuses a file name whose extension names no
// classification format.
func classificationExt(name string) error {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".tsv", ".json":
		return nil
	}
	return fmt.Errorf("data: %s: unknown classification format; expected a CoLA .tsv file or an LLM-Adapters .json file with true/false answers", name)
}

// Counts returns the number of examples of each class.
func (s *ClassifySet) Counts() []int {
	c := make([]int, len(s.Classes))
	for _, e := range s.Examples {
		if e.Label >= 0 && e.Label < len(c) {
			c[e.Label]++
		}
	}
	return c
}

// Labels returns the label of every example.
func (s *ClassifySet) Labels() []int {
	l := make([]int, len(s.Examples))
	for i, e := range s.Examples {
		l[i] = e.Label
	}
	return l
}
