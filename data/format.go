package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Format is the row format of a language-modelling data file: which fields
// its rows have, and so how they are trained and evaluated (see the
// package documentation).
type Format uint8

// The row formats, told apart by the fields of the rows.
const (
	// FormatInstruction rows have instruction, input, output and answer
	// (LLM-Adapters, Alpaca): the Alpaca prompt, the output trained.
	FormatInstruction Format = iota + 1
	// FormatPromptCompletion rows have a prompt and a completion string
	// (TRL's prompt-completion format): the completion and EOS trained.
	FormatPromptCompletion
	// FormatText rows have one text (TRL's language-modelling format):
	// every token trained.
	FormatText
	// FormatMessages rows have a list of messages (TRL's conversational
	// format), rendered by a chat template: the assistant turns trained.
	FormatMessages
	// FormatChatPromptCompletion rows have a prompt and a completion that
	// are both lists of messages (TRL's conversational prompt-completion
	// format): the assistant turns of the completion trained.
	FormatChatPromptCompletion
)

func (f Format) String() string {
	switch f {
	case FormatInstruction:
		return "instruction"
	case FormatPromptCompletion:
		return "prompt/completion"
	case FormatText:
		return "text"
	case FormatMessages:
		return "messages"
	case FormatChatPromptCompletion:
		return "conversational prompt/completion"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// fields names the fields that mark the format, for error messages.
func (f Format) fields() string {
	switch f {
	case FormatInstruction:
		return "field instruction"
	case FormatPromptCompletion:
		return "string fields prompt and completion"
	case FormatText:
		return "field text"
	case FormatMessages:
		return "field messages"
	case FormatChatPromptCompletion:
		return "message-list fields prompt and completion"
	}
	return "no known fields"
}

// Generates reports whether rows of the format have a prompt to generate
// an answer from: all but FormatText, whose rows are scored by their loss
// alone.
func (f Format) Generates() bool { return f != FormatText && f != 0 }

// Chat reports whether rows of the format are conversations, which need a
// [ChatRenderer] to be encoded.
func (f Format) Chat() bool { return f == FormatMessages || f == FormatChatPromptCompletion }

// Message is one turn of a conversation: a role (system, developer,
// user, assistant, tool, or ipython: Llama 3.1's tool results) and its
// text.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// The roles a message may have: those of the chat templates of released
// models. The list catches a misspelt role, which a template would
// otherwise render as it is or skip without a word.
var roles = []string{"system", "developer", "user", "assistant", "tool", "ipython"}

// Row is one row of a language-modelling data file. Which fields are set
// depends on the set's Format.
type Row struct {
	// Line is the 1-based line of the file where the row starts.
	Line int
	// Instruction, Input and Output: FormatInstruction.
	Instruction, Input, Output string
	// Prompt and Completion: FormatPromptCompletion.
	Prompt, Completion string
	// Text: FormatText.
	Text string
	// Messages: FormatMessages; for FormatChatPromptCompletion the prompt's
	// messages followed by the completion's.
	Messages []Message
	// PromptMessages is, for FormatChatPromptCompletion, how many of
	// Messages are the prompt.
	PromptMessages int
	// Answer is the optional short gold answer (the "answer" field) that
	// evaluation compares extracted predictions with.
	Answer string
}

// Example returns an instruction row as an LLM-Adapters [Example].
func (r Row) Example() Example {
	return Example{Instruction: r.Instruction, Input: r.Input, Output: r.Output, Answer: r.Answer}
}

// Set is a language-modelling data file: rows that all have one format.
type Set struct {
	// Name is the file's path (or the name given to Parse), for errors.
	Name   string
	Format Format
	Rows   []Row
}

// Load reads a language-modelling data file (see [Parse]).
func Load(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return Parse(b, path)
}

// Parse parses a language-modelling data file: a JSON list of row objects,
// or JSON Lines (one row object per line; blank lines are skipped), told
// apart by the first character that is not white space ('[' or '{'). A
// UTF-8 byte-order mark is skipped. The format of the rows is found from
// their fields (see the package documentation); every row must have the
// same format. Fields that no format uses are ignored. name (usually the
// file's path) is used in errors, which name the line a row starts on, the
// row (1-based) and the field, and say what was expected.
func Parse(b []byte, name string) (*Set, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	set := &Set{Name: name}
	add := func(raw json.RawMessage, row, line int) error {
		r, f, err := parseRow(raw)
		if err != nil {
			return fmt.Errorf("data: %s:%d: row %d: %w", name, line, row, err)
		}
		switch {
		case set.Format == 0:
			set.Format = f
		case f != set.Format:
			return fmt.Errorf("data: %s:%d: row %d has the %s of the %s format, but row 1 has the %s of the %s format; every row of a file must have the same format",
				name, line, row, f.fields(), f, set.Format.fields(), set.Format)
		}
		r.Line = line
		set.Rows = append(set.Rows, r)
		return nil
	}
	t := bytes.TrimLeft(b, " \t\r\n")
	var err error
	switch {
	case len(t) == 0:
		return nil, fmt.Errorf("data: %s: the file is empty; expected %s", name, wantFile)
	case t[0] == '[':
		err = eachArrayRow(b, name, "a JSON list of row objects", add)
	case t[0] == '{':
		err = eachLine(b, name, add)
	default:
		start := t[:min(len(t), 12)]
		return nil, fmt.Errorf("data: %s:%d: expected %s; found %q", name, lineAt(b, int64(len(b)-len(t))), wantFile, start)
	}
	if err != nil {
		return nil, err
	}
	if len(set.Rows) == 0 {
		return nil, fmt.Errorf("data: %s holds no rows", name)
	}
	return set, nil
}

const wantFile = "a JSON list of row objects ('[' first) or JSON Lines (one object per line)"

// eachLine calls each with every non-blank line of the JSON Lines file b,
// its 1-based row number and its line number, and stops at the first
// error.
func eachLine(b []byte, name string, each func(raw json.RawMessage, row, line int) error) error {
	row := 0
	for i, ln := range bytes.Split(b, []byte{'\n'}) {
		ln = bytes.TrimSuffix(ln, []byte{'\r'})
		if len(bytes.TrimSpace(ln)) == 0 {
			continue
		}
		row++
		var raw json.RawMessage
		if err := json.Unmarshal(ln, &raw); err != nil {
			hint := ""
			if t := bytes.TrimSpace(ln); t[0] == '{' && !bytes.HasSuffix(t, []byte{'}'}) {
				hint = " (a JSON Lines row must be one object on one line)"
			}
			return fmt.Errorf("data: %s:%d: row %d: invalid JSON (%v)%s; expected one object per line", name, i+1, row, err, hint)
		}
		if err := each(raw, row, i+1); err != nil {
			return err
		}
	}
	return nil
}

// parseRow decides the format of one row from its fields and checks them.
func parseRow(raw json.RawMessage) (Row, Format, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return Row{}, 0, fmt.Errorf("expected an object with the fields of one format (messages; prompt and completion; instruction, input and output; or text); found %s", describeRaw(raw))
	}
	has := func(k string) bool { _, ok := fields[k]; return ok }
	var (
		r   Row
		f   Format
		err error
	)
	switch {
	case has("messages"):
		f = FormatMessages
		if r.Messages, err = messageList(fields, "messages"); err != nil {
			return r, f, err
		}
		if err = hasAssistant(r.Messages, "messages"); err != nil {
			return r, f, err
		}
	case has("prompt") || has("completion"):
		r, f, err = parsePromptCompletion(fields)
		if err != nil {
			return r, f, err
		}
	case has("instruction"):
		ex, err := parseExample(raw)
		if err != nil {
			return r, FormatInstruction, err
		}
		return Row{Instruction: ex.Instruction, Input: ex.Input, Output: ex.Output, Answer: ex.Answer}, FormatInstruction, nil
	case has("text"):
		f = FormatText
		if r.Text, err = stringField(fields, "text", true, false); err != nil {
			return r, f, err
		}
		if strings.TrimSpace(r.Text) == "" {
			return r, f, fmt.Errorf("field \"text\" is empty")
		}
	default:
		return r, 0, fmt.Errorf("no field says which format the row has: expected messages; prompt and completion; instruction, input and output; or text; found %s", fieldNames(fields))
	}
	r.Answer, err = stringField(fields, "answer", false, true)
	return r, f, err
}

// parsePromptCompletion reads a row with prompt and completion, both
// strings or both lists of messages.
func parsePromptCompletion(fields map[string]json.RawMessage) (Row, Format, error) {
	var r Row
	for _, k := range []string{"prompt", "completion"} {
		if _, ok := fields[k]; !ok {
			return r, FormatPromptCompletion, fmt.Errorf("field %q is missing (a prompt/completion row needs both)", k)
		}
	}
	p, c := bytes.TrimSpace(fields["prompt"]), bytes.TrimSpace(fields["completion"])
	pList, cList := len(p) > 0 && p[0] == '[', len(c) > 0 && c[0] == '['
	if pList != cList {
		pk, ck := "a string", "a string"
		if pList {
			pk = "a list"
		} else {
			ck = "a list"
		}
		return r, FormatPromptCompletion, fmt.Errorf("field \"prompt\" is %s but field \"completion\" is %s; expected both strings (prompt/completion) or both lists of messages (conversational prompt/completion)", pk, ck)
	}
	var err error
	if !pList {
		if r.Prompt, err = stringField(fields, "prompt", true, false); err != nil {
			return r, FormatPromptCompletion, err
		}
		r.Completion, err = stringField(fields, "completion", true, false)
		return r, FormatPromptCompletion, err
	}
	f := FormatChatPromptCompletion
	prompt, err := messageList(fields, "prompt")
	if err != nil {
		return r, f, err
	}
	completion, err := messageList(fields, "completion")
	if err != nil {
		return r, f, err
	}
	if err := hasAssistant(completion, "completion"); err != nil {
		return r, f, err
	}
	r.Messages = append(prompt, completion...)
	r.PromptMessages = len(prompt)
	return r, f, nil
}

// stringField returns the string field key: "" when it is absent or null
// and not required; a number is accepted (and kept as
// written) when number is set.
func stringField(fields map[string]json.RawMessage, key string, required, number bool) (string, error) {
	v, ok := fields[key]
	if !ok {
		if required {
			return "", fmt.Errorf("field %q is missing", key)
		}
		return "", nil
	}
	if string(bytes.TrimSpace(v)) == "null" {
		if required {
			return "", fmt.Errorf("field %q: expected a string, found null", key)
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return s, nil
	}
	if number {
		var n json.Number
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		if d.Decode(&n) == nil {
			return n.String(), nil
		}
	}
	return "", fmt.Errorf("field %q: expected a string, found %s", key, describeRaw(v))
}

// messageList reads the field key as a non-empty list of messages.
func messageList(fields map[string]json.RawMessage, key string) ([]Message, error) {
	var list []json.RawMessage
	v := fields[key]
	if t := bytes.TrimSpace(v); len(t) == 0 || t[0] != '[' || json.Unmarshal(v, &list) != nil {
		return nil, fmt.Errorf("field %q: expected a list of messages ({\"role\": …, \"content\": …}), found %s", key, describeRaw(v))
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("field %q is an empty list; expected at least one message", key)
	}
	out := make([]Message, len(list))
	for j, raw := range list {
		where := fmt.Sprintf("%s[%d]", key, j)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil || m == nil {
			return nil, fmt.Errorf("field %s: expected a message object with role and content, found %s", where, describeRaw(raw))
		}
		role, err := stringField(m, "role", true, false)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", where, err)
		}
		if !contains(roles, role) {
			return nil, fmt.Errorf("field %s: role %q; expected %s", where, role, strings.Join(roles, ", "))
		}
		if tc, ok := m["tool_calls"]; ok && string(bytes.TrimSpace(tc)) != "null" {
			return nil, fmt.Errorf("field %s: has tool_calls, which are not supported; expected text content only", where)
		}
		c, ok := m["content"]
		if !ok {
			return nil, fmt.Errorf("field %s: field \"content\" is missing", where)
		}
		if string(bytes.TrimSpace(c)) == "null" || json.Unmarshal(c, &out[j].Content) != nil {
			what := describeRaw(c)
			if what == "a list" {
				what += " (content parts are not supported)"
			}
			return nil, fmt.Errorf("field %s: field \"content\": expected a string, found %s", where, what)
		}
		out[j].Role = role
	}
	return out, nil
}

// hasAssistant checks that msgs hold an assistant message, without which a
// conversation has nothing to train.
func hasAssistant(msgs []Message, key string) error {
	if lastAssistant(msgs) < 0 {
		return fmt.Errorf("field %q has no message with role \"assistant\", so nothing to train", key)
	}
	return nil
}

// lastAssistant returns the index of the last assistant message, or -1.
func lastAssistant(msgs []Message) int {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "assistant" {
			return i
		}
	}
	return -1
}

// fieldNames lists an object's field names for an error message.
func fieldNames(fields map[string]json.RawMessage) string {
	if len(fields) == 0 {
		return "an empty object"
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, fmt.Sprintf("%q", k))
	}
	sort.Strings(names)
	if len(names) > 8 {
		names = append(names[:8], fmt.Sprintf("and %d more", len(names)-8))
	}
	return "fields " + strings.Join(names, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Gold returns row i's gold answer for evaluation: its answer field when
// not blank; otherwise, for prompt/completion rows, the completion, and for
// conversations, the content of the last assistant message. Instruction
// rows have only their answer field (their output is often a rationale),
// and text rows none. "" (or a blank answer field alone) means the row's
// answer is not scored.
func (s *Set) Gold(i int) string {
	r := s.Rows[i]
	if s.Format == FormatText {
		return ""
	}
	if strings.TrimSpace(r.Answer) != "" {
		return r.Answer
	}
	switch s.Format {
	case FormatInstruction:
		return ""
	case FormatPromptCompletion:
		return r.Completion
	case FormatMessages, FormatChatPromptCompletion:
		if j := lastAssistant(r.Messages); j >= 0 {
			return r.Messages[j].Content
		}
	}
	return ""
}
