package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Example is one row of an LLM-Adapters data file: an instruction, an
// optional input that gives it context, the output the model should
// produce, and the short gold answer that evaluation compares extracted
// predictions with ("true", "answer3", "576.0").
type Example struct {
	Instruction string `json:"instruction"`
	Input       string `json:"input"`
	Output      string `json:"output"`
	Answer      string `json:"answer,omitempty"`
}

// Prompt returns the example's prompt: the Alpaca template filled with its
// instruction and input (see the package documentation).
func (e Example) Prompt() string { return Prompt(e.Instruction, e.Input) }

// Text returns the prompt followed by the output: the text a causal
// language model is trained on.
func (e Example) Text() string { return e.Prompt() + e.Output }

// The two forms of the prompt template.
const (
	promptHead      = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
	promptHeadInput = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n"
)

// Prompt fills the Alpaca template with instruction and, when it is not
// empty, input. The result ends with "### Response:\n", after which the
// model writes its answer.
func Prompt(instruction, input string) string {
	if input == "" {
		return promptHead + "### Instruction:\n" + instruction + "\n\n" + responseMarker + "\n"
	}
	return promptHeadInput + "### Instruction:\n" + instruction + "\n\n### Input:\n" + input + "\n\n" + responseMarker + "\n"
}

// responseMarker ends every prompt of the Alpaca template.
const responseMarker = "### Response:"

// ScoredResponse returns the part of a generated response that
// LLM-Adapters' evaluation scripts extract the answer from: the text
// before a further "### Response:", where a model that goes on writing
// another example after its answer starts a second one. (They split the
// decoded prompt and generation at the marker and take the text after the
// prompt's, up to the next.) generated is the text after the prompt.
func ScoredResponse(generated string) string {
	if i := strings.Index(generated, responseMarker); i >= 0 {
		return generated[:i]
	}
	return generated
}

// LoadAdapters reads an LLM-Adapters JSON file (see [ParseAdapters]).
func LoadAdapters(path string) ([]Example, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return ParseAdapters(b, path)
}

// ParseAdapters parses LLM-Adapters JSON: a list of objects with the string
// fields "instruction" (required, not empty), "input" (optional), "output"
// (required) and "answer" (optional; a number is accepted and kept as
// written). Other fields are ignored. name (usually the file's path) is
// used in error messages, which name the row (1-based), the line it starts
// on and the field.
func ParseAdapters(b []byte, name string) ([]Example, error) {
	out, _, err := parseAdapters(b, name)
	return out, err
}

// parseAdapters is ParseAdapters that also returns the line each row
// starts on.
func parseAdapters(b []byte, name string) ([]Example, []int, error) {
	var (
		out   []Example
		lines []int
	)
	err := eachArrayRow(b, name, "a JSON list of objects with instruction, input, output and answer", func(raw json.RawMessage, row, line int) error {
		ex, err := parseExample(raw)
		if err != nil {
			return fmt.Errorf("data: %s:%d: row %d: %w", name, line, row, err)
		}
		out = append(out, ex)
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, lines, nil
}

// eachArrayRow calls each with every element of the JSON list b, its
// 1-based row number and the line it starts on, and stops at the first
// error. want describes the list for errors about its shape.
func eachArrayRow(b []byte, name, want string, each func(raw json.RawMessage, row, line int) error) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return jsonErr(b, name, 0, err, want)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("data: %s: expected %s; found %s", name, want, describeToken(tok))
	}
	rows := 0
	for row := 1; dec.More(); row++ {
		start := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return jsonErr(b, name, row, err, "an object")
		}
		if err := each(raw, row, lineAt(b, start)); err != nil {
			return err
		}
		rows = row
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return jsonErr(b, name, rows+1, err, "',' or ']'")
	}
	if _, err := dec.Token(); err != io.EOF {
		off := dec.InputOffset()
		return fmt.Errorf("data: %s:%d: unexpected content after the closing ']' of the list", name, lineAt(b, off))
	}
	return nil
}

// parseExample checks the fields of one row.
func parseExample(raw json.RawMessage) (Example, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return Example{}, fmt.Errorf("expected an object with instruction, input, output and answer; found %s", describeRaw(raw))
	}
	var ex Example
	str := func(key string, required, number bool) (string, error) {
		return stringField(fields, key, required, number)
	}
	var err error
	if ex.Instruction, err = str("instruction", true, false); err != nil {
		return ex, err
	}
	if strings.TrimSpace(ex.Instruction) == "" {
		return ex, fmt.Errorf("field \"instruction\" is empty")
	}
	if ex.Input, err = str("input", false, false); err != nil {
		return ex, err
	}
	if ex.Output, err = str("output", true, false); err != nil {
		return ex, err
	}
	if ex.Answer, err = str("answer", false, true); err != nil {
		return ex, err
	}
	return ex, nil
}

// jsonErr turns a decoding error into one that names the file, the line
// and, when known, the row.
func jsonErr(b []byte, name string, row int, err error, want string) error {
	off := int64(len(b))
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		if len(bytes.TrimSpace(b)) == 0 {
			return fmt.Errorf("data: %s: the file is empty; expected %s", name, want)
		}
		return fmt.Errorf("data: %s:%d: the file ends in the middle of row %d; expected %s", name, lineAt(b, off), max(row, 1), want)
	}
	where := ""
	if row > 0 {
		where = fmt.Sprintf(" row %d:", row)
	}
	return fmt.Errorf("data: %s:%d:%s invalid JSON (%v); expected %s", name, lineAt(b, off), where, err, want)
}

// lineAt returns the 1-based line of the first non-blank byte at or after
// offset off (the decoder's offsets point before separators and spaces).
func lineAt(b []byte, off int64) int {
	if off < 0 {
		off = 0
	}
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	for off < int64(len(b)) && strings.IndexByte(" \t\r\n,", b[off]) >= 0 {
		off++
	}
	return 1 + bytes.Count(b[:off], []byte{'\n'})
}

func describeToken(t json.Token) string {
	switch v := t.(type) {
	case json.Delim:
		return fmt.Sprintf("%q", string(v))
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", t)
}

func describeRaw(v json.RawMessage) string {
	s := bytes.TrimSpace(v)
	if len(s) == 0 {
		return "nothing"
	}
	switch s[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}
