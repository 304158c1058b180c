package data

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseFormats(t *testing.T) {
	cases := []struct {
		name   string
		in     string
		format Format
		rows   []Row
	}{
		{"instruction list", "[\n{\"instruction\": \"add\", \"input\": \"2 3\", \"output\": \"5\", \"answer\": 5},\n{\"instruction\": \"b\", \"output\": \"c\", \"text\": \"ignored\"}\n]",
			FormatInstruction, []Row{{Line: 2, Instruction: "add", Input: "2 3", Output: "5", Answer: "5"}, {Line: 3, Instruction: "b", Output: "c"}}},
		{"instruction lines", "{\"instruction\": \"a\", \"output\": \"b\", \"answer\": \"true\"}\n\n\r\n{\"instruction\": \"c\", \"input\": null, \"output\": \"\"}\r\n",
			FormatInstruction, []Row{{Line: 1, Instruction: "a", Output: "b", Answer: "true"}, {Line: 4, Instruction: "c"}}},
		{"prompt/completion lines", "\xef\xbb\xbf{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n{\"prompt\": \"\", \"completion\": \"x\", \"answer\": \"x\", \"id\": 7}\n",
			FormatPromptCompletion, []Row{{Line: 1, Prompt: "2+2=", Completion: "4"}, {Line: 2, Completion: "x", Answer: "x"}}},
		{"text list", `[{"text": "Once upon a time"}, {"text": "The end."}]`,
			FormatText, []Row{{Line: 1, Text: "Once upon a time"}, {Line: 1, Text: "The end."}}},
		{"messages lines", `{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}` + "\n" +
			`{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "tool_calls": null}, {"role": "tool", "content": ""}, {"role": "assistant", "content": "c"}], "answer": "c"}`,
			FormatMessages, []Row{
				{Line: 1, Messages: []Message{{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello"}}},
				{Line: 2, Messages: []Message{{"user", "a"}, {"assistant", "b"}, {"tool", ""}, {"assistant", "c"}}, Answer: "c"}}},
		{"conversational prompt/completion", `[{"prompt": [{"role": "user", "content": "Sky?"}], "completion": [{"role": "assistant", "content": "Blue."}]}]`,
			FormatChatPromptCompletion, []Row{{Line: 1, Messages: []Message{{"user", "Sky?"}, {"assistant", "Blue."}}, PromptMessages: 1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set, err := Parse([]byte(c.in), "f")
			if err != nil {
				t.Fatal(err)
			}
			if set.Format != c.format || set.Name != "f" {
				t.Errorf("format %v name %q, want %v and f", set.Format, set.Name, c.format)
			}
			if !reflect.DeepEqual(set.Rows, c.rows) {
				t.Errorf("rows\n%+v\nwant\n%+v", set.Rows, c.rows)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	msgs := func(ms ...string) string { return `[` + strings.Join(ms, ", ") + `]` }
	user := `{"role": "user", "content": "q"}`
	asst := `{"role": "assistant", "content": "a"}`
	cases := []struct {
		name, in string
		want     []string
	}{
		{"empty", " \n", []string{"f:", "empty", "JSON Lines"}},
		{"no rows", "[]", []string{"f holds no rows"}},
		{"not json", "hello", []string{"f:1", "expected a JSON list", "JSON Lines"}},
		{"mixed list", "[\n{\"instruction\": \"a\", \"output\": \"b\"},\n{\"prompt\": \"p\", \"completion\": \"c\"}]",
			[]string{"f:3", "row 2", "prompt and completion", "prompt/completion format", "row 1", "field instruction", "instruction format", "same format"}},
		{"mixed lines", "{\"text\": \"a\"}\n\n{\"messages\": " + msgs(user, asst) + "}\n",
			[]string{"f:3", "row 2", "field messages", "messages format", "row 1", "field text", "text format"}},
		{"string and chat prompt/completion", "{\"prompt\": \"p\", \"completion\": \"c\"}\n{\"prompt\": " + msgs(user) + ", \"completion\": " + msgs(asst) + "}",
			[]string{"f:2", "row 2", "conversational prompt/completion format", "row 1", "prompt/completion format"}},
		{"bad line", "{\"text\": \"a\"}\n\n{\"text\": \"b\",}\n", []string{"f:3", "row 2", "invalid JSON", "one object per line"}},
		{"pretty object", "{\n  \"text\": \"a\"\n}\n", []string{"f:1", "row 1", "one object on one line"}},
		{"two values on a line", "{\"text\": \"a\"} {\"text\": \"b\"}\n", []string{"f:1", "row 1", "invalid JSON"}},
		{"line not object", "{\"text\": \"a\"}\n[1]\n", []string{"f:2", "row 2", "expected an object", "a list"}},
		{"unknown fields", `[{"question": "q", "label": 1}]`, []string{"f:1", "row 1", "no field says which format", `"label"`, `"question"`}},
		{"empty object", "{}\n", []string{"f:1", "row 1", "an empty object"}},
		{"completion missing", `{"prompt": "p"}`, []string{"f:1", "row 1", `"completion" is missing`}},
		{"prompt missing", `{"completion": "c"}`, []string{"row 1", `"prompt" is missing`}},
		{"prompt list completion string", `{"prompt": ` + msgs(user) + `, "completion": "c"}`, []string{"row 1", `"prompt" is a list`, `"completion" is a string`, "both strings"}},
		{"prompt null", `{"prompt": null, "completion": "c"}`, []string{"row 1", `"prompt"`, "found null"}},
		{"prompt number", `{"prompt": 3, "completion": "c"}`, []string{"row 1", `"prompt"`, "expected a string, found a number"}},
		{"text empty", "{\"text\": \"a\"}\n{\"text\": \" \\n\"}", []string{"f:2", "row 2", `"text" is empty`}},
		{"text list", `{"text": ["a"]}`, []string{"row 1", `"text"`, "found a list"}},
		{"answer object", `{"text": "a", "answer": {}}`, []string{"row 1", `"answer"`, "found an object"}},
		{"messages string", `{"messages": "hi"}`, []string{"row 1", `"messages"`, "expected a list of messages", "a string"}},
		{"messages empty", `{"messages": []}`, []string{"row 1", `"messages" is an empty list`}},
		{"message not object", `{"messages": ` + msgs(user, `"a"`) + `}`, []string{"row 1", "messages[1]", "expected a message object", "a string"}},
		{"bad role", `{"messages": ` + msgs(`{"role": "bot", "content": "x"}`) + `}`, []string{"row 1", "messages[0]", `role "bot"`, "system, developer, user, assistant, tool, ipython"}},
		{"role missing", `{"messages": ` + msgs(`{"content": "x"}`) + `}`, []string{"messages[0]", `"role" is missing`}},
		{"content missing", `{"messages": ` + msgs(user, `{"role": "assistant"}`) + `}`, []string{"messages[1]", `"content" is missing`}},
		{"content null", `{"messages": ` + msgs(user, `{"role": "assistant", "content": null}`) + `}`, []string{"messages[1]", `"content"`, "found null"}},
		{"content parts", `{"messages": ` + msgs(`{"role": "user", "content": [{"type": "text", "text": "q"}]}`, asst) + `}`, []string{"messages[0]", "content parts are not supported"}},
		{"tool calls", `{"messages": ` + msgs(user, `{"role": "assistant", "content": "", "tool_calls": [{}]}`) + `}`, []string{"messages[1]", "tool_calls", "not supported"}},
		{"no assistant", `{"messages": ` + msgs(user) + `}`, []string{"row 1", `"messages" has no message with role "assistant"`}},
		{"completion without assistant", `{"prompt": ` + msgs(user) + `, "completion": ` + msgs(user) + `}`, []string{"row 1", `"completion" has no message with role "assistant"`}},
		{"completion empty", `{"prompt": ` + msgs(user) + `, "completion": []}`, []string{"row 1", `"completion" is an empty list`}},
		{"instruction as today", "[\n{\"instruction\": \"a\"}]", []string{"f:2", "row 1", `"output" is missing`}},
		{"truncated list", `[{"text": "a"}, {"te`, []string{"f:1", "row 2"}},
		{"trailing after list", `[{"text": "a"}] x`, []string{"f:1", "after the closing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.in), "f")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestParseAgreesWithParseAdapters checks that Parse reads LLM-Adapters'
// files as ParseAdapters does, as a JSON list and rewritten as JSON Lines.
func TestParseAgreesWithParseAdapters(t *testing.T) {
	for _, rel := range []string{"datasets/llm-adapters/boolq/test.json", "datasets/llm-adapters/ARC-Easy/train.json", "datasets/llm-adapters/gsm8k/test.json"} {
		t.Run(rel, func(t *testing.T) {
			b, err := os.ReadFile(sharedData(t, rel))
			if err != nil {
				t.Fatal(err)
			}
			want, err := ParseAdapters(b, rel)
			if err != nil {
				t.Fatal(err)
			}
			var lines bytes.Buffer
			for _, ex := range want {
				j, _ := json.Marshal(ex)
				lines.Write(append(j, '\n'))
			}
			for _, in := range [][]byte{b, lines.Bytes()} {
				set, err := Parse(in, rel)
				if err != nil {
					t.Fatal(err)
				}
				if set.Format != FormatInstruction || len(set.Rows) != len(want) {
					t.Fatalf("format %v with %d rows; want instruction with %d", set.Format, len(set.Rows), len(want))
				}
				for i, r := range set.Rows {
					if r.Example() != want[i] {
						t.Fatalf("row %d: %+v, want %+v", i+1, r.Example(), want[i])
					}
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "train.data")
	if err := os.WriteFile(path, []byte("{\"text\": \"a\"}\n{\"text\": \"b\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := Load(path)
	if err != nil || set.Name != path || set.Format != FormatText || len(set.Rows) != 2 || set.Rows[1].Line != 2 {
		t.Errorf("Load = %+v, %v", set, err)
	}
	if _, err := Load(path + ".absent"); err == nil || !strings.Contains(err.Error(), "train.data.absent") {
		t.Errorf("missing file: error %v", err)
	}
}

func TestGold(t *testing.T) {
	chat := []Message{{"user", "q"}, {"assistant", "first"}, {"user", "q2"}, {"assistant", "last"}}
	cases := []struct {
		format Format
		row    Row
		want   string
	}{
		{FormatInstruction, Row{Instruction: "i", Output: "the answer is true", Answer: "true"}, "true"},
		{FormatInstruction, Row{Instruction: "i", Output: "the answer is true"}, ""},
		{FormatInstruction, Row{Instruction: "i", Output: "the answer is true", Answer: "  "}, ""},
		{FormatPromptCompletion, Row{Prompt: "p", Completion: ""}, ""},
		{FormatPromptCompletion, Row{Prompt: "p", Completion: "42"}, "42"},
		{FormatPromptCompletion, Row{Prompt: "p", Completion: "so 42", Answer: "42"}, "42"},
		{FormatText, Row{Text: "t", Answer: "x"}, ""},
		{FormatMessages, Row{Messages: chat}, "last"},
		{FormatMessages, Row{Messages: chat, Answer: " "}, "last"},
		{FormatChatPromptCompletion, Row{Messages: chat, PromptMessages: 3}, "last"},
	}
	for i, c := range cases {
		s := &Set{Format: c.format, Rows: []Row{c.row}}
		if got := s.Gold(0); got != c.want {
			t.Errorf("case %d (%v): Gold %q, want %q", i, c.format, got, c.want)
		}
	}
}

// FuzzParse checks that Parse never panics, that its errors name the
// file, and that what it accepts is one format whose rows keep what that
// format requires and survive being written out as JSON Lines and read
// again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`[{"instruction": "a", "input": "", "output": "b", "answer": "true"}]`))
	f.Add([]byte("{\"prompt\": \"p\", \"completion\": \"c\"}\n\n{\"prompt\": \"\", \"completion\": \"d\", \"answer\": 3}\n"))
	f.Add([]byte(`[{"text": "hello"}, {"text": "x"}]`))
	f.Add([]byte(`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}`))
	f.Add([]byte(`{"prompt": [{"role": "system", "content": ""}], "completion": [{"role": "assistant", "content": "c"}]}`))
	f.Add([]byte("{\"text\": \"a\"}\n{\"instruction\": \"b\", \"output\": \"c\"}"))
	f.Add([]byte("\xef\xbb\xbf[1, {}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := Parse(b, "fuzz.jsonl")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.jsonl") {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		if len(set.Rows) == 0 {
			t.Fatal("accepted with no rows")
		}
		var out bytes.Buffer
		for i, r := range set.Rows {
			if r.Line < 1 || r.Line > 1+bytes.Count(b, []byte{'\n'}) {
				t.Errorf("row %d: line %d outside the file", i+1, r.Line)
			}
			if i > 0 && r.Line < set.Rows[i-1].Line {
				t.Errorf("row %d starts on line %d, before row %d's %d", i+1, r.Line, i, set.Rows[i-1].Line)
			}
			obj := map[string]any{}
			if r.Answer != "" {
				obj["answer"] = r.Answer
			}
			switch set.Format {
			case FormatInstruction:
				if strings.TrimSpace(r.Instruction) == "" {
					t.Errorf("row %d: empty instruction accepted", i+1)
				}
				obj["instruction"], obj["input"], obj["output"] = r.Instruction, r.Input, r.Output
			case FormatPromptCompletion:
				obj["prompt"], obj["completion"] = r.Prompt, r.Completion
			case FormatText:
				if strings.TrimSpace(r.Text) == "" {
					t.Errorf("row %d: empty text accepted", i+1)
				}
				obj["text"] = r.Text
			case FormatMessages:
				obj["messages"] = r.Messages
			case FormatChatPromptCompletion:
				if r.PromptMessages < 1 || r.PromptMessages >= len(r.Messages) {
					t.Fatalf("row %d: %d prompt messages of %d", i+1, r.PromptMessages, len(r.Messages))
				}
				obj["prompt"], obj["completion"] = r.Messages[:r.PromptMessages], r.Messages[r.PromptMessages:]
			default:
				t.Fatalf("format %v", set.Format)
			}
			if set.Format.Chat() {
				for _, m := range r.Messages {
					if !contains(roles, m.Role) {
						t.Errorf("row %d: role %q accepted", i+1, m.Role)
					}
				}
				if lastAssistant(r.Messages[r.PromptMessages:]) < 0 {
					t.Errorf("row %d: no assistant message to train", i+1)
				}
			}
			line, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			out.Write(append(line, '\n'))
		}
		again, err := Parse(out.Bytes(), "again.jsonl")
		if err != nil {
			t.Fatalf("rows written out as JSON Lines are rejected: %v\n%s", err, out.Bytes())
		}
		if again.Format != set.Format || len(again.Rows) != len(set.Rows) {
			t.Fatalf("round trip: %v with %d rows, then %v with %d", set.Format, len(set.Rows), again.Format, len(again.Rows))
		}
		for i := range set.Rows {
			a, b := set.Rows[i], again.Rows[i]
			a.Line, b.Line = 0, 0
			if !reflect.DeepEqual(a, b) {
				t.Errorf("row %d: %+v, after a round trip %+v", i+1, a, b)
			}
		}
	})
}
