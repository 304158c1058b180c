package chat

import (
	"errors"
	"fmt"
	"regexp"
)

// Span is a range [Start, End) of bytes of a rendered text that the
// assistant wrote, and the index of the message it belongs to.
type Span struct {
	Start, End int
	Message    int
}

// ErrNotPrefixStable is wrapped by the error Spans returns when the
// template renders a conversation's earlier turns differently once later
// turns follow, so that the assistant turns cannot be located by
// rendering prefixes of the conversation. Qwen3's template is one: it
// drops the <think> part of assistant turns before the last user message.
var ErrNotPrefixStable = errors.New("chat: template is not prefix-stable for this conversation")

var generationTag = regexp.MustCompile(`\{%-?\s*generation\s*-?%\}`)

// Spans renders a conversation for training (opts.AddGenerationPrompt is
// ignored: the text is rendered without it) and returns the text with the
// byte spans that the assistant wrote, in order, for the loss, each with
// the index of its message.
//
// A template with {% generation %} blocks marks them itself, and those
// blocks are the spans (transformers' return_assistant_tokens_mask), the
// k-th block the k-th assistant message's (a rendering with another number
// of blocks than assistant messages is an error).
// Otherwise each assistant message i gets the span between the rendering of
// messages[:i] with the generation prompt and the rendering of
// messages[:i+1] without it: what the template adds for that message after
// the assistant header, including its end-of-turn marker (such as
// "<|im_end|>\n" or "<|eot_id|>"), which the model must learn to emit.
// This needs each of those renderings to be a prefix of the next and of
// the whole text; where one is not, Spans returns an error wrapping
// ErrNotPrefixStable that names the message.
func (t *Template) Spans(msgs []Message, opts Options) (string, []Span, error) {
	opts.AddGenerationPrompt = false
	full, err := t.render(msgs, opts)
	if err != nil {
		return "", nil, err
	}
	if generationTag.MatchString(t.Text) {
		// The k-th block belongs to the k-th assistant message.
		var assistants []int
		for i, m := range msgs {
			if m.Role == "assistant" {
				assistants = append(assistants, i)
			}
		}
		if len(full.Generation) != len(assistants) {
			return "", nil, fmt.Errorf("chat template %s: rendered %d {%% generation %%} blocks for %d assistant messages; expected one each", t.Source, len(full.Generation), len(assistants))
		}
		spans := make([]Span, 0, len(full.Generation))
		for k, g := range full.Generation {
			if g.End > g.Start {
				spans = append(spans, Span{g.Start, g.End, assistants[k]})
			}
		}
		return full.Text, spans, nil
	}
	var spans []Span
	for i, m := range msgs {
		if m.Role != "assistant" {
			continue
		}
		opts.AddGenerationPrompt = true
		prompt, err := t.render(msgs[:i], opts)
		if err != nil {
			return "", nil, fmt.Errorf("rendering the %d messages before assistant message %d: %w", i, i, err)
		}
		opts.AddGenerationPrompt = false
		turn, err := t.render(msgs[:i+1], opts)
		if err != nil {
			return "", nil, fmt.Errorf("rendering the messages up to assistant message %d: %w", i, err)
		}
		p, u := prompt.Text, turn.Text
		switch {
		case len(p) > len(u) || u[:len(p)] != p:
			return "", nil, fmt.Errorf("%w: message %d: the conversation up to it with the generation prompt is not the start of the conversation including it (%s)", ErrNotPrefixStable, i, firstDiff(p, u))
		case len(u) > len(full.Text) || full.Text[:len(u)] != u:
			return "", nil, fmt.Errorf("%w: message %d: the conversation up to it is not the start of the whole conversation (%s)", ErrNotPrefixStable, i, firstDiff(u, full.Text))
		}
		if len(u) > len(p) {
			spans = append(spans, Span{len(p), len(u), i})
		}
	}
	return full.Text, spans, nil
}

// firstDiff describes where b stops starting with a.
func firstDiff(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	clip := func(s string) string {
		if len(s) > 30 {
			s = s[:30] + "…"
		}
		return fmt.Sprintf("%q", s)
	}
	if i == len(b) {
		return fmt.Sprintf("the longer rendering is shorter, ending at byte %d", i)
	}
	return fmt.Sprintf("they differ at byte %d: %s versus %s", i, clip(a[i:]), clip(b[i:]))
}
