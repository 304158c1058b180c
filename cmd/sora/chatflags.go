package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sora-go/sora/models/chat"
)

// chatFlags are the flags that render a prompt with a chat template
// (models/chat), as transformers' apply_chat_template does.
type chatFlags struct {
	on     bool           // --chat
	system string         // --system
	file   string         // --chat-template
	vars   map[string]any // --chat-var NAME=VALUE
}

// add defines the flags on fs.
func (c *chatFlags) add(fs *flag.FlagSet) {
	fs.BoolVar(&c.on, "chat", false, "render --prompt as a user message with the model's chat template (its folder's chat_template.jinja, chat_template.json or tokenizer_config.json), followed by the header of the assistant's turn, and print the reply alone")
	fs.StringVar(&c.system, "system", "", "`TEXT` of a system message before the user's (with --chat)")
	fs.StringVar(&c.file, "chat-template", "", "`FILE` holding a chat template (Jinja) to use instead of the model's; implies --chat")
	fs.Func("chat-var", "`NAME=VALUE` passed to the chat template as a variable (VALUE is JSON, or else a string), e.g. enable_thinking=false for Qwen3; may be repeated", func(s string) error {
		name, value, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return fmt.Errorf("%q: want NAME=VALUE", s)
		}
		var v any
		if err := json.Unmarshal([]byte(value), &v); err != nil {
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
// special tokens of the tokenizer at tokSrc (a folder, or a file in one),
// or else the tokenizer folder's own.
func (c *chatFlags) template(tokSrc string) (*chat.Template, error) {
	dir := tokSrc
	if st, err := os.Stat(tokSrc); err == nil && !st.IsDir() {
		dir = filepath.Dir(tokSrc)
	}
	if c.file != "" {
		return chat.LoadFile(c.file, dir)
	}
	t, err := chat.LoadDir(dir)
	if errors.Is(err, chat.ErrNoTemplate) {
		return nil, fmt.Errorf("--chat: %w; a base model has none: give one with --chat-template FILE, or leave out --chat", err)
	}
	return t, err
}

// render returns the text of a conversation of the --system message, if
// any, and prompt as the user's, ending with the assistant's header.
func (c *chatFlags) render(t *chat.Template, prompt string) (string, error) {
	var msgs []chat.Message
	if c.system != "" {
		msgs = append(msgs, chat.Message{Role: "system", Content: c.system})
	}
	msgs = append(msgs, chat.Message{Role: "user", Content: prompt})
	return t.Render(msgs, chat.Options{AddGenerationPrompt: true, Vars: c.vars})
}
