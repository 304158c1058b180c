package data

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ChatRenderer renders a conversation as a model's chat template does. It
// is what data needs of a chat-template engine.
//
// Render returns the text of messages and the byte ranges of that text
// the assistant writes, the ranges the loss trains: each a [Span] naming
// its message, in order and not overlapping, and each in an assistant
// message (usually the message's content and the end-of-turn marker after
// it, as a Hugging Face template's {% generation %} blocks mark them). An
// assistant message may have no span (a template may leave earlier turns
// out). With addGenerationPrompt the text ends with what opens a new
// assistant turn, the prompt a model generates a reply after (Hugging
// Face's add_generation_prompt=True), and the spans are not used.
//
// The text must not begin with the BOS token's text: the [Encoder] adds
// BOS itself, to every format alike. Nor is EOS added after a
// conversation: what a model learns to end its turn with is the template's
// end-of-turn marker, which the span should hold.
type ChatRenderer interface {
	Render(messages []Message, addGenerationPrompt bool) (text string, assistant []Span, err error)
}

// Span is a byte range [Start, End) of a rendered conversation that an
// assistant writes, and the index in the rendered messages of the message
// it belongs to.
type Span struct {
	Start, End int
	Message    int
}

// ErrNoGeneration is the error [Set.EncodePrompts] wraps for rows in the
// text format, which have no prompt: such rows are evaluated by their loss
// alone.
var ErrNoGeneration = errors.New("rows in the text format have no prompt to generate an answer from: they are scored by their loss alone")

// Encode tokenizes the rows for causal LM training, each cut to maxLen
// tokens, with the loss on what each format trains:
//
//   - instruction rows exactly as [EncodeLM] encodes them;
//   - prompt/completion rows as BOS, the prompt as written (no template),
//     the completion and EOS, the completion and EOS trained;
//   - text rows as BOS, the text and EOS, every token after BOS trained;
//   - conversations as BOS and the text chat renders (without a
//     generation prompt), the spans it marks trained: of every assistant
//     message for messages rows, of the completion's for conversational
//     prompt/completion rows. No EOS is added: the template ends a turn.
//
// chat may be nil unless the rows are conversations.
//
// A row is split into segments, untrained and trained, at the span
// boundaries. The tokens are the whole text's encoding, as a model sees
// the text when it generates, and a boundary at byte b falls after as
// many tokens as the encoding of the text before b (with BOS) has in
// common with it. That is exact unless a merge crosses the boundary; then
// the first token where the two encodings differ is taken to be the one
// that crosses it, and is trained, at a span's start (the rule [EncodeLM]
// applies to the prompt) as at its end, since it holds trained text; st.Split
// counts such sequences.
//
// EOS is added only when it fits, as in EncodeLM; st.Truncated counts the
// sequences cut, and a row with no trained token left is dropped and
// counted in st.Dropped. Sequence.Row is the row's index in s.Rows.
func (s *Set) Encode(enc Encoder, chat ChatRenderer, maxLen int) ([]Sequence, EncodeStats, error) {
	var st EncodeStats
	if maxLen < 2 {
		return nil, st, fmt.Errorf("data: maximum length %d; want at least 2 tokens", maxLen)
	}
	if s.Format == FormatInstruction {
		ex := make([]Example, len(s.Rows))
		for i, r := range s.Rows {
			ex[i] = r.Example()
		}
		return EncodeLM(enc, ex, maxLen)
	}
	if err := s.checkFormat(chat); err != nil {
		return nil, st, err
	}
	out := make([]Sequence, 0, len(s.Rows))
	for i, r := range s.Rows {
		var segs []segment
		eos := true
		switch s.Format {
		case FormatPromptCompletion:
			segs = []segment{{r.Prompt, false}, {r.Completion, true}}
		case FormatText:
			segs = []segment{{r.Text, true}}
		default:
			var err error
			if segs, err = s.chatSegments(chat, r); err != nil {
				return nil, st, err
			}
			eos = false
		}
		toks, mask, split := encodeSegments(enc, segs, eos)
		if split {
			st.Split++
		}
		if len(toks) > maxLen {
			toks, mask = toks[:maxLen], mask[:maxLen]
			st.Truncated++
		}
		seq, n := maskedSequence(toks, mask, i)
		if n == 0 {
			st.Dropped++
			continue
		}
		st.Tokens += len(toks)
		st.Trained += n
		out = append(out, seq)
	}
	return out, st, nil
}

// EncodePrompts tokenizes what greedy generation is prompted with for each
// row (BOS first where the tokenizer adds one), for a model with maxLen positions, cutting a prompt
// that fills them as [EncodePrompts] does:
//
//   - instruction rows: the Alpaca prompt, as EncodePrompts;
//   - prompt/completion rows: the prompt as written;
//   - conversations: the messages before the last assistant message,
//     rendered by chat with the generation prompt.
//
// The gold answer to compare with is [Set.Gold]. Text rows have no prompt:
// for them the error wraps [ErrNoGeneration].
func (s *Set) EncodePrompts(enc Encoder, chat ChatRenderer, maxLen int) ([][]int, EncodeStats, error) {
	var st EncodeStats
	if maxLen < 2 {
		return nil, st, fmt.Errorf("data: maximum prompt length %d; want at least 2 tokens (BOS and one more, leaving room for one generated token)", maxLen)
	}
	switch s.Format {
	case FormatText:
		return nil, st, fmt.Errorf("data: %s: %w", s.Name, ErrNoGeneration)
	case FormatInstruction:
		ex := make([]Example, len(s.Rows))
		for i, r := range s.Rows {
			ex[i] = r.Example()
		}
		return EncodePrompts(enc, ex, maxLen)
	}
	if err := s.checkFormat(chat); err != nil {
		return nil, st, err
	}
	bos := bosPrefix(enc)
	prompts := make([][]int, len(s.Rows))
	for i, r := range s.Rows {
		text := r.Prompt
		if s.Format.Chat() {
			var err error
			if text, _, err = chat.Render(r.Messages[:max(0, lastAssistant(r.Messages))], true); err != nil {
				return nil, st, fmt.Errorf("data: %s:%d: the chat template, rendering the prompt: %w", s.Name, r.Line, err)
			}
		}
		p := enc.Encode(text, true, false)
		if len(p) == 0 {
			return nil, st, fmt.Errorf("data: %s:%d: the prompt has no tokens (empty, and the tokenizer adds no BOS); nothing to generate from", s.Name, r.Line)
		}
		prompts[i] = cutPrompt(p, maxLen, bos, &st)
	}
	return prompts, st, nil
}

// checkFormat refuses a set that Encode cannot encode.
func (s *Set) checkFormat(chat ChatRenderer) error {
	switch {
	case s.Format.Chat() && chat == nil:
		return fmt.Errorf("data: %s: rows in the %s format need a chat template to render them, and none was given", s.Name, s.Format)
	case s.Format < FormatInstruction || s.Format > FormatChatPromptCompletion:
		return fmt.Errorf("data: %s: unknown row format %v", s.Name, s.Format)
	}
	return nil
}

// segment is a piece of a row's text that is trained or not.
type segment struct {
	text    string
	trained bool
}

// chatSegments renders a conversation row and splits its text into
// segments at the spans it trains.
func (s *Set) chatSegments(chat ChatRenderer, r Row) ([]segment, error) {
	text, spans, err := chat.Render(r.Messages, false)
	if err != nil {
		return nil, fmt.Errorf("data: %s:%d: the chat template: %w", s.Name, r.Line, err)
	}
	from := 0 // the first message whose spans are trained
	if s.Format == FormatChatPromptCompletion {
		from = r.PromptMessages
	}
	var segs []segment
	pos, trained := 0, 0
	for k, sp := range spans {
		bad := ""
		switch {
		case sp.Start < pos || sp.End < sp.Start || sp.End > len(text):
			bad = fmt.Sprintf("bytes [%d, %d) of a %d-byte text, after a span ending at %d; expected spans in order, not overlapping, within the text", sp.Start, sp.End, len(text), pos)
		case sp.Message < 0 || sp.Message >= len(r.Messages):
			bad = fmt.Sprintf("message %d of %d", sp.Message, len(r.Messages))
		case r.Messages[sp.Message].Role != "assistant":
			bad = fmt.Sprintf("in message %d, whose role is %q; expected only assistant text", sp.Message, r.Messages[sp.Message].Role)
		}
		if bad != "" {
			return nil, fmt.Errorf("data: %s:%d: the chat template's span %d is %s", s.Name, r.Line, k+1, bad)
		}
		if sp.Message < from {
			continue
		}
		segs = append(segs, segment{text[pos:sp.Start], false}, segment{text[sp.Start:sp.End], true})
		trained += sp.End - sp.Start
		pos = sp.End
	}
	if trained == 0 {
		which := "the assistant messages"
		if from > 0 {
			which = "the completion's assistant messages"
		}
		return nil, fmt.Errorf("data: %s:%d: the chat template marks no text of %s as generated, so nothing would be trained (does the template mark its assistant turns?)", s.Name, r.Line, which)
	}
	return append(segs, segment{text[pos:], false}), nil
}

// encodeSegments encodes the concatenation of segs with BOS first and,
// when eos is set, EOS last, and returns the tokens, which of them are
// trained (EOS is), and whether a boundary between an untrained and a
// trained segment fell inside a token (see Set.Encode for how it is
// resolved).
func encodeSegments(enc Encoder, segs []segment, eos bool) (toks []int, mask []bool, split bool) {
	segs = joinSegments(segs)
	var sb strings.Builder
	for _, sg := range segs {
		sb.WriteString(sg.text)
	}
	text := sb.String()
	whole := enc.Encode(text, true, eos)
	var eosToks []int
	if eos {
		eosToks = enc.Encode("", false, true)
	}
	toks, mask = whole, make([]bool, len(whole))
	start, pos := 0, 0 // token and byte where the segment begins
	for i, sg := range segs {
		if i > 0 {
			p := enc.Encode(text[:pos], true, false)
			c := commonPrefix(p, whole)
			if c < len(p) {
				split = true
				if !sg.trained && c < len(whole) {
					c++ // the crossing token ends the span before
				}
			}
			start = max(start, c)
		}
		// Marked to the end; the next segment overwrites from its
		// own start.
		for t := start; t < len(toks); t++ {
			mask[t] = sg.trained
		}
		pos += len(sg.text)
	}
	if len(eosToks) > 0 && len(toks) >= len(eosToks) && slices.Equal(toks[len(toks)-len(eosToks):], eosToks) {
		for t := len(toks) - len(eosToks); t < len(toks); t++ {
			mask[t] = true
		}
	}
	if len(mask) > 0 {
		mask[0] = false // nothing predicts the first token
	}
	return toks, mask, split
}

// joinSegments drops empty segments and joins neighbours that are both
// trained or both not, so that every boundary left is between untrained
// and trained text.
func joinSegments(segs []segment) []segment {
	var out []segment
	for _, sg := range segs {
		switch {
		case sg.text == "":
		case len(out) > 0 && out[len(out)-1].trained == sg.trained:
			out[len(out)-1].text += sg.text
		default:
			out = append(out, sg)
		}
	}
	return out
}

// maskedSequence makes the sequence of row from its tokens and mask, with
// PromptLen alone where it says what is trained, and returns it with the
// number of trained tokens.
func maskedSequence(toks []int, mask []bool, row int) (Sequence, int) {
	first, n := -1, 0
	for t, m := range mask {
		if m {
			if first < 0 {
				first = t
			}
			n++
		}
	}
	seq := Sequence{Tokens: toInt32(toks), Row: row}
	if n == 0 {
		return seq, 0
	}
	seq.PromptLen = first
	if n != len(mask)-first { // not every token from the first trained one on
		seq.Trained = mask
	}
	return seq, n
}
