// Package chat renders Hugging Face chat templates: the Jinja2 programs in
// a model's tokenizer files that turn a list of messages into the prompt
// text the model was trained on.
//
// Rendering follows transformers' apply_chat_template: the template runs
// in Jinja2 with trim_blocks and lstrip_blocks on, the loop controls break
// and continue, the {% generation %} tag, tojson as Python's json.dumps
// (ensure_ascii off), and the globals raise_exception and strftime_now. Its
// variables are the tokenizer's special tokens (bos_token, eos_token,
// unk_token, pad_token... as strings), then Options.Vars (which win over
// them, enable_thinking for one), then messages, tools, documents and
// add_generation_prompt. The interpreter (internal/jinja) is checked
// against Python's Jinja2 on every construct and on real templates; the
// few places where it differs are listed in the package README
// (models/chat/README.md).
//
// LoadDir finds a model folder's template where transformers looks:
// chat_template.jinja, then chat_template.json, then the chat_template of
// tokenizer_config.json (a string, or a list of named templates). Parse
// takes a template's text directly.
//
// For training, Spans renders a conversation and says which bytes of the
// text belong to the assistant's turns, so that the loss can be put on
// them only.
package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/sora-go/sora/models/chat/internal/jinja"
)

// Template is a parsed chat template with the special tokens of its
// tokenizer. It is safe for concurrent use.
type Template struct {
	// Name is the template's name: "default", or the name it was chosen
	// by from a list of named templates.
	Name string
	// Source says where the template came from (a file, and the field in
	// it); errors name it.
	Source string
	// Text is the template's source.
	Text string
	// Special are the special tokens passed to the template, by variable
	// name (bos_token, eos_token, unk_token, pad_token, sep_token,
	// cls_token, mask_token as strings; additional_special_tokens as a
	// list of strings). LoadDir fills it from the tokenizer files; a
	// token the files leave out or set to null is absent, so that the
	// template sees it undefined, as in transformers.
	Special map[string]any
	// Now is the clock strftime_now reads; nil means time.Now.
	Now func() time.Time
	// Limits bound the work of one rendering; zero fields take the
	// defaults of the interpreter (32 MiB of text, 10 million steps,
	// macro calls 100 deep).
	Limits Limits

	t *jinja.Template
}

// Limits bound the work of one rendering, so that a runaway template ends
// with an error: MaxOutput bytes of text (and of any string or list it
// builds), MaxSteps loop iterations and calls, MaxDepth nested macro calls.
type Limits = jinja.Limits

// Parse parses a chat template's text. source names it in errors (a file
// name, say); special are the special tokens to pass (see
// Template.Special), which may be nil.
func Parse(source, text string, special map[string]any) (*Template, error) {
	t, err := jinja.Parse(source, text)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	return &Template{Name: "default", Source: source, Text: text, Special: special, t: t}, nil
}

// Message is one message of a conversation.
type Message struct {
	// Role is "system", "user", "assistant", "tool"...
	Role string
	// Content is the message's content: a string (the usual case); nil
	// for a message without content (JSON null, as in an assistant turn
	// that only calls tools); or a list of parts such as
	// [{"type": "text", "text": "..."}] as a []any of map[string]any or a
	// json.RawMessage.
	Content any
	// Fields are the message's other keys (tool_calls, reasoning_content,
	// name, tool_call_id...), passed to the template as they are. Values
	// are JSON-like Go values (string, bool, numbers, nil, []any,
	// map[string]any) or json.RawMessage, which keeps the order of object
	// keys (Go maps are passed with their keys sorted).
	Fields map[string]any

	// order is the order of the keys of Fields when the message was read
	// from JSON.
	order []string
}

// UnmarshalJSON reads a message from a JSON object: "role" (a string),
// "content" and any other keys, which go to Fields in their order.
func (m *Message) UnmarshalJSON(b []byte) error {
	v, err := jinja.FromJSON(b)
	if err != nil {
		return err
	}
	d, ok := v.(*jinja.Dict)
	if !ok {
		return fmt.Errorf("a message must be a JSON object")
	}
	var raws map[string]json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return err
	}
	*m = Message{}
	for i, k := range d.Keys() {
		key := k.(string)
		raw := raws[key]
		switch key {
		case "role":
			s, ok := d.Values()[i].(string)
			if !ok {
				return fmt.Errorf("message role must be a string, not %s", string(raw))
			}
			m.Role = s
		case "content":
			if s, ok := d.Values()[i].(string); ok {
				m.Content = s
			} else if d.Values()[i] == nil {
				m.Content = nil
			} else {
				m.Content = raw
			}
		default:
			if m.Fields == nil {
				m.Fields = map[string]any{}
			}
			m.Fields[key] = raw
			m.order = append(m.order, key)
		}
	}
	if m.Role == "" {
		return fmt.Errorf("message has no \"role\"")
	}
	return nil
}

// value converts the message to the dict the template sees: role,
// content, then the other fields.
func (m Message) value() (*jinja.Dict, error) {
	d := jinja.NewDict()
	_ = d.Set("role", m.Role)
	content, err := jinja.FromGo(m.Content)
	if err != nil {
		return nil, fmt.Errorf("content: %w", err)
	}
	_ = d.Set("content", content)
	keys := append([]string(nil), m.order...)
	for _, k := range slices.Sorted(maps.Keys(m.Fields)) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		f, ok := m.Fields[k]
		if !ok || k == "role" || k == "content" {
			continue
		}
		v, err := jinja.FromGo(f)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
		_ = d.Set(k, v)
	}
	return d, nil
}

// Options are the arguments of a rendering besides the messages.
type Options struct {
	// AddGenerationPrompt ends the text with the header of an assistant
	// turn, for generation.
	AddGenerationPrompt bool
	// Tools are the tool (function) schemas offered to the model, each a
	// JSON-like value or json.RawMessage; nil passes None.
	Tools []any
	// Documents are retrieval documents for templates that take them,
	// each a JSON-like value or json.RawMessage; nil passes None.
	Documents []any
	// Vars are further template variables, such as enable_thinking for
	// Qwen3: JSON-like values or json.RawMessage. They win over the
	// special tokens, as keyword arguments do in transformers.
	Vars map[string]any
}

// Render renders msgs with the template. Errors name the template's source
// and line: a syntax error, a template that raised an exception
// (raise_exception, e.g. for roles that do not alternate), or a value the
// template cannot use.
func (t *Template) Render(msgs []Message, opts Options) (string, error) {
	out, err := t.render(msgs, opts)
	if err != nil {
		return "", err
	}
	return out.Text, nil
}

func (t *Template) render(msgs []Message, opts Options) (*jinja.Output, error) {
	vars := map[string]jinja.Value{}
	for _, src := range []map[string]any{t.Special, opts.Vars} {
		for _, k := range slices.Sorted(maps.Keys(src)) {
			v, err := jinja.FromGo(src[k])
			if err != nil {
				return nil, fmt.Errorf("chat template %s: variable %s: %w", t.Source, k, err)
			}
			vars[k] = v
		}
	}
	list := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		d, err := m.value()
		if err != nil {
			return nil, fmt.Errorf("chat template %s: message %d: %w", t.Source, i, err)
		}
		list[i] = d
	}
	vars["messages"] = list
	for name, items := range map[string][]any{"tools": opts.Tools, "documents": opts.Documents} {
		if items == nil {
			vars[name] = nil
			continue
		}
		v, err := jinja.FromGo(items)
		if err != nil {
			return nil, fmt.Errorf("chat template %s: %s: %w", t.Source, name, err)
		}
		vars[name] = v
	}
	vars["add_generation_prompt"] = opts.AddGenerationPrompt
	now := t.Now
	if now == nil {
		now = time.Now
	}
	globals := map[string]jinja.Value{
		"raise_exception": jinja.RaiseException(),
		"strftime_now":    jinja.StrftimeNow(now),
	}
	out, err := t.t.Render(vars, globals, t.Limits)
	if err != nil {
		var je *jinja.Error
		if errors.As(err, &je) && je.Raised {
			return nil, fmt.Errorf("chat template %s: line %d: the template raised an exception: %s", t.Source, je.Line, je.Msg)
		}
		return nil, fmt.Errorf("chat template: %w", err)
	}
	return out, nil
}
