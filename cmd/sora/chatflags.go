package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/internal/atomicfile"
	"github.com/sora-go/sora/models/chat"
)

// chatFlags are the flags that render a prompt with a chat template
// (models/chat), as transformers' apply_chat_template does.
type chatFlags struct {
	on     bool           // --chat
	system string         // --system
	file   string         // --chat-template
	vars   map[string]any // --chat-var NAME=VALUE
	// adapter is the --adapter folder, whose template, where it has one,
	// wins over the model's.
	adapter string
}

// add defines generate's flags on fs: --chat and --system, and the
// template flags (see addTemplate).
func (c *chatFlags) add(fs *flag.FlagSet) {
	fs.BoolVar(&c.on, "chat", false, "render --prompt as a user message with the model's chat template (its folder's chat_template.jinja, chat_template.json or tokenizer_config.json), followed by the header of the assistant's turn, and print the reply alone")
	fs.StringVar(&c.system, "system", "", "`TEXT` of a system message before the user's (with --chat)")
	c.addTemplate(fs, "; implies --chat")
}

// addTemplate defines --chat-template and --chat-var on fs; fileNote ends
// the first's usage.
func (c *chatFlags) addTemplate(fs *flag.FlagSet, fileNote string) {
	fs.StringVar(&c.file, "chat-template", "", "`FILE` holding a chat template (Jinja) to use instead of the model's"+fileNote)
	fs.Func("chat-var", "`NAME=VALUE` passed to the chat template as a variable (VALUE is JSON, or else a string), e.g. enable_thinking=false for Qwen3; may be repeated", func(s string) error {
		name, value, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return fmt.Errorf("%q: want NAME=VALUE", s)
		}
		v, err := decodeChatVar([]byte(value))
		if err != nil {
			v = value
		}
		if c.vars == nil {
			c.vars = map[string]any{}
		}
		c.vars[name] = v
		return nil
	})
}

// enabled reports whether the prompt is to be rendered as a chat.
func (c *chatFlags) enabled() bool { return c.on || c.file != "" }

// check refuses flags that need --chat without it.
func (c *chatFlags) check() error {
	if !c.enabled() && (c.system != "" || len(c.vars) > 0) {
		return errors.New("--system and --chat-var need --chat (or --chat-template)")
	}
	return nil
}

// template reads the chat template: --chat-template's file, with the
// special tokens of the tokenizer at tokSrc (a folder, or a file in one);
// or else the one the adapter was trained with (adapterTemplateFile in
// its folder), whose saved variables (adapterVarsFile) become c.vars
// unless --chat-var gave some; or else the tokenizer folder's own, with
// the variables an adapterVarsFile there holds (sora writes one into the
// folders of fully fine-tuned and merged models). A
// folder without one is an error wrapping chat.ErrNoTemplate that ends
// with noneHint, which says what to do instead.
func (c *chatFlags) template(tokSrc, noneHint string) (*chat.Template, error) {
	dir := tokSrc
	if st, err := os.Stat(tokSrc); err == nil && !st.IsDir() {
		dir = filepath.Dir(tokSrc)
	}
	if c.file != "" {
		return chat.LoadFile(c.file, dir)
	}
	if c.adapter != "" {
		// The template an adapter was trained with goes with it, and so
		// do the variables it was rendered with, unless --chat-var gives
		// others.
		p := filepath.Join(c.adapter, adapterTemplateFile)
		if _, err := os.Stat(p); err == nil {
			if len(c.vars) == 0 {
				vars, err := readChatVars(filepath.Join(c.adapter, adapterVarsFile))
				if err != nil {
					return nil, err
				}
				c.vars = vars
			}
			return chat.LoadFile(p, dir)
		}
	}
	t, err := chat.LoadDir(dir)
	if errors.Is(err, chat.ErrNoTemplate) {
		return nil, fmt.Errorf("%w; a base model has none: %s", err, noneHint)
	}
	if err == nil && len(c.vars) == 0 {
		// A folder that sora wrote (a full fine-tune's model/, a merge)
		// keeps the variables its template was trained with beside it.
		vars, err := readChatVars(filepath.Join(dir, adapterVarsFile))
		if err != nil {
			return nil, err
		}
		c.vars = vars
	}
	return t, err
}

// encode returns the tokens to generate a reply from: a conversation of
// the --system message, if any, and prompt as the user's, rendered with
// the generation prompt and encoded exactly as evaluation encodes the
// prompts of conversation rows (data.Set.EncodePrompts through
// chatRenderer): BOS where the tokenizer has one, then the text, less the
// BOS text the template writes first. So a fine-tuned model is prompted
// as it was trained and evaluated. For a template that writes BOS first
// (Llama 3, Gemma, Mistral) or a tokenizer without BOS (Qwen) these are
// the tokens of transformers' apply_chat_template(tokenize=True), which
// adds no special tokens; a template that writes none for a tokenizer
// that has one (TinyLlama, Zephyr) gets BOS here and not there.
func (c *chatFlags) encode(t *chat.Template, tok data.Encoder, addsBOS bool, prompt string) ([]int, error) {
	var msgs []data.Message
	if c.system != "" {
		msgs = append(msgs, data.Message{Role: "system", Content: c.system})
	}
	msgs = append(msgs, data.Message{Role: "user", Content: prompt})
	text, _, err := newChatRenderer(t, c.vars, addsBOS).Render(msgs, true)
	if err != nil {
		return nil, err
	}
	return tok.Encode(text, true, false), nil
}

// chatSource gives data files of conversations their chat template: the
// --chat-template file, or the tokenizer folder's own, read once when the
// first such file needs it, so that other data needs no template.
type chatSource struct {
	flags   *chatFlags
	tokSrc  string // the tokenizer's path (see tokenizerSource)
	addsBOS bool   // the tokenizer puts BOS before a text

	r   data.ChatRenderer
	err error
}

// adapterTemplateFile is the file in an adapter folder that holds the
// chat template its conversations were rendered with, as transformers
// saves a tokenizer's template beside it.
const adapterTemplateFile = "chat_template.jinja"

// adapterVarsFile is the file beside adapterTemplateFile that holds the
// --chat-var variables the template rendered the data with, as a JSON
// object (absent when there were none).
const adapterVarsFile = "chat_template_vars.json"

// templateText returns the text of the chat template that rendered the
// data, nil where no data needed one.
func (s *chatSource) templateText() []byte {
	if r, ok := s.r.(*chatRenderer); ok {
		return []byte(r.t.Text)
	}
	return nil
}

// saveTemplate writes the chat template that rendered the data, if any
// did, into the new adapter folder dir as adapterTemplateFile, and its
// --chat-var variables, if any, as adapterVarsFile, so that eval and
// generate with the adapter render prompts as training did.
func (s *chatSource) saveTemplate(dir string) error {
	r, ok := s.r.(*chatRenderer)
	if !ok {
		return nil
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, adapterTemplateFile), []byte(r.t.Text)); err != nil {
		return err
	}
	if len(r.vars) == 0 {
		return nil
	}
	b, err := json.MarshalIndent(r.vars, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, adapterVarsFile), append(b, '\n'))
}

// readChatVars reads an adapterVarsFile: nil where there is none, and an
// error naming the file where it is not a JSON object.
func readChatVars(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v, err := decodeChatVar(b)
	vars, ok := v.(map[string]any)
	if err != nil || !ok {
		return nil, fmt.Errorf("%s: expected a JSON object of chat template variables (%v)", path, err)
	}
	return vars, nil
}

// decodeChatVar decodes one JSON value, keeping numbers as json.Number so
// that the template sees an integer as an integer, as Python's json gives
// it to transformers' templates ({{ n + 1 }} is 3 for n = 2, not 3.0). It
// fails on anything but one JSON value.
func decodeChatVar(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

// renderer returns the renderer, reading the template the first time.
func (s *chatSource) renderer() (data.ChatRenderer, error) {
	if s.r == nil && s.err == nil {
		t, err := s.flags.template(s.tokSrc, "give one with --chat-template FILE, or write the rows as prompt/completion or text rows")
		if err != nil {
			s.err = err
		} else {
			s.r = newChatRenderer(t, s.flags.vars, s.addsBOS)
		}
	}
	return s.r, s.err
}

// chatRenderer renders the conversations of data files with a chat
// template, for package data (data.ChatRenderer).
type chatRenderer struct {
	t    *chat.Template
	vars map[string]any
	bos  string // the text of BOS, which data's encoder adds itself
}

// newChatRenderer returns the renderer of conversations with t and the
// template variables vars, for a tokenizer that puts BOS before a text
// (addsBOS) or not.
func newChatRenderer(t *chat.Template, vars map[string]any, addsBOS bool) *chatRenderer {
	r := &chatRenderer{t: t, vars: vars}
	if bos, ok := t.Special["bos_token"].(string); ok && addsBOS {
		r.bos = bos
	}
	return r
}

// Render renders messages as transformers' apply_chat_template does,
// with the spans of the assistant's turns (chat.Template.Spans) unless
// gen, which ends the text with the generation prompt instead. The BOS
// text a template writes first is cut, with the spans moved to match:
// the data encoder puts BOS before every sequence.
func (r *chatRenderer) Render(messages []data.Message, gen bool) (string, []data.Span, error) {
	msgs := make([]chat.Message, len(messages))
	for i, m := range messages {
		msgs[i] = chat.Message{Role: m.Role, Content: m.Content}
	}
	opts := chat.Options{AddGenerationPrompt: gen, Vars: r.vars}
	var text string
	var spans []chat.Span
	var err error
	if gen {
		text, err = r.t.Render(msgs, opts)
	} else {
		text, spans, err = r.t.Spans(msgs, opts)
	}
	if err != nil {
		return "", nil, err
	}
	cut := 0
	if r.bos != "" && strings.HasPrefix(text, r.bos) {
		cut = len(r.bos)
	}
	out := make([]data.Span, 0, len(spans))
	for _, sp := range spans {
		out = append(out, data.Span{Start: max(sp.Start-cut, 0), End: sp.End - cut, Message: sp.Message})
	}
	return text[cut:], out, nil
}
