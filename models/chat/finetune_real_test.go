package chat

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/models/tokenizer"
)

// finetuneRenderer is what sora finetune hands package data for a
// conversation (cmd/sora's chatRenderer): the template's rendering with
// the assistant spans, less the BOS text it starts with where the
// tokenizer adds BOS itself.
type finetuneRenderer struct {
	t   *Template
	bos string
}

func (r finetuneRenderer) Render(messages []data.Message, gen bool) (string, []data.Span, error) {
	msgs := make([]Message, len(messages))
	for i, m := range messages {
		msgs[i] = Message{Role: m.Role, Content: m.Content}
	}
	text, spans, err := r.t.Spans(msgs, Options{})
	if err != nil {
		return "", nil, err
	}
	cut := 0
	if r.bos != "" && strings.HasPrefix(text, r.bos) {
		cut = len(r.bos)
	}
	var out []data.Span
	for _, s := range spans {
		out = append(out, data.Span{Start: s.Start - cut, End: s.End - cut, Message: s.Message})
	}
	return text[cut:], out, nil
}

// TestFinetuneSpansRealFolders is the opt-in check of what sora finetune
// trains on in a conversation, with the real tokenizer folders that
// scripts/fetch-tokenizers.sh puts in SORA_TOKENIZER_DIR and their chat
// templates (Gemma 2's folder, a base model's, has none: it gets the
// instruction-tuned model's template of testdata/templates/gemma2.jinja, as
// --chat-template FILE gives it). For each: the conversation renders with
// its assistant turns located by rendering prefixes (none of these
// templates has {% generation %} blocks); package data encodes it with
// BOS and the rendered text less the template's own BOS text (no BOS
// twice); the trained tokens are exactly the encodings of the assistant's
// contents each followed by the template's end-of-turn marker, with no
// merge across a boundary, and nothing else is trained. The templates
// that cannot be split into turns this way are refused with
// ErrNotPrefixStable (Mistral Nemo's with a system message: it writes the
// system message into the last user turn only when that turn ends the
// conversation) or their own error (Gemma 2's, which has no system role).
func TestFinetuneSpansRealFolders(t *testing.T) {
	root := os.Getenv("SORA_TOKENIZER_DIR")
	if root == "" {
		t.Skip("SORA_TOKENIZER_DIR is not set (scripts/fetch-tokenizers.sh fills a folder for it)")
	}
	withSystem := conversation()
	noSystem := withSystem[1:]
	for _, c := range []struct {
		dir      string
		template string // a file in testdata/templates, "" for the folder's own
		msgs     []Message
		end      string // what the template writes after each assistant content
		refused  string // the error for the conversation with a system message, "" where it trains
	}{
		{"qwen2.5", "", withSystem, "<|im_end|>\n", ""},
		{"llama3.2", "", withSystem, "<|eot_id|>", ""},
		{"mistral-nemo", "", noSystem, "</s>", "not prefix-stable"},
		{"gemma2", "gemma2.jinja", noSystem, "<end_of_turn>\n", "System role not supported"},
	} {
		t.Run(c.dir, func(t *testing.T) {
			dir := filepath.Join(root, c.dir)
			if _, err := os.Stat(dir); err != nil {
				t.Skipf("%v (run scripts/fetch-tokenizers.sh)", err)
			}
			tok, err := tokenizer.LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var tmpl *Template
			if c.template == "" {
				tmpl, err = LoadDir(dir)
			} else {
				tmpl, err = LoadFile(filepath.Join("testdata", "templates", c.template), dir)
			}
			if err != nil {
				t.Fatal(err)
			}
			tmpl.Now = func() time.Time { return refClock } // Llama 3.2 writes today's date
			r := finetuneRenderer{t: tmpl}
			if bos, ok := tmpl.Special["bos_token"].(string); ok && tok.BOS() >= 0 {
				r.bos = bos
			}
			encode := func(msgs []Message) ([]data.Sequence, data.EncodeStats, error) {
				var row struct {
					Messages []data.Message `json:"messages"`
				}
				for _, m := range msgs {
					row.Messages = append(row.Messages, data.Message{Role: m.Role, Content: m.Content.(string)})
				}
				b, err := json.Marshal(row)
				if err != nil {
					t.Fatal(err)
				}
				set, err := data.Parse(append(b, '\n'), c.dir+".jsonl")
				if err != nil {
					t.Fatal(err)
				}
				return set.Encode(tok, r, 1<<16)
			}

			seqs, st, err := encode(c.msgs)
			if err != nil {
				t.Fatal(err)
			}
			if len(seqs) != 1 || st.Split != 0 || st.Truncated != 0 {
				t.Fatalf("%d sequences, stats %+v; want one, no split, no truncation", len(seqs), st)
			}
			seq := seqs[0]
			full, err := tmpl.Render(c.msgs, Options{})
			if err != nil {
				t.Fatal(err)
			}
			body := strings.TrimPrefix(full, r.bos)
			want := tok.Encode(body, true, false)
			got := make([]int, len(seq.Tokens))
			for i, id := range seq.Tokens {
				got[i] = int(id)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("tokens %v, want the encoding with BOS of %q: %v", got, body, want)
			}
			if tok.BOS() >= 0 && (got[0] != tok.BOS() || got[1] == tok.BOS()) {
				t.Errorf("tokens start %v; want one BOS (%d)", got[:2], tok.BOS())
			}
			trained := seq.Trained
			if trained == nil {
				trained = make([]bool, len(got))
				for i := max(seq.PromptLen, 1); i < len(got); i++ {
					trained[i] = true
				}
			}
			// The trained tokens, run by run.
			var runs [][]int
			for i, on := range trained {
				switch {
				case !on:
				case i > 0 && trained[i-1]:
					runs[len(runs)-1] = append(runs[len(runs)-1], got[i])
				default:
					runs = append(runs, []int{got[i]})
				}
			}
			var turns [][]int
			for _, m := range c.msgs {
				if m.Role == "assistant" {
					turns = append(turns, tok.Encode(m.Content.(string)+c.end, false, false))
				}
			}
			if !slices.EqualFunc(runs, turns, slices.Equal) {
				t.Errorf("trained runs %v, want the assistant turns %v", runs, turns)
			}
			for k, run := range runs {
				pieces := make([]string, len(run))
				for i, id := range run {
					pieces[i] = tok.Piece(id)
				}
				t.Logf("turn %d trains %d tokens: %q", k, len(run), pieces)
			}

			if c.refused == "" {
				return
			}
			if _, _, err := encode(withSystem); err == nil || !strings.Contains(err.Error(), c.refused) {
				t.Errorf("with a system message: error %v, want one saying %q", err, c.refused)
			} else if c.refused == "not prefix-stable" && !errors.Is(err, ErrNotPrefixStable) {
				t.Errorf("with a system message: error %v does not wrap ErrNotPrefixStable", err)
			}
		})
	}
}
