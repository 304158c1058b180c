package data_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sora-go/sora/data"
	"github.com/sora-go/sora/internal/testdata"
	"github.com/sora-go/sora/models/tokenizer"
)

// chatML renders conversations in the ChatML layout, each turn
// "<|im_start|>role\ncontent<|im_end|>\n", an assistant's content and
// "<|im_end|>" trained.
type chatML struct{}

func (chatML) Render(ms []data.Message, gen bool) (string, []data.Span, error) {
	var sb strings.Builder
	var spans []data.Span
	for i, m := range ms {
		sb.WriteString("<|im_start|>" + m.Role + "\n")
		start := sb.Len()
		sb.WriteString(m.Content + "<|im_end|>")
		if m.Role == "assistant" {
			spans = append(spans, data.Span{Start: start, End: sb.Len(), Message: i})
		}
		sb.WriteString("\n")
	}
	if gen {
		sb.WriteString("<|im_start|>assistant\n")
	}
	return sb.String(), spans, nil
}

// realRows returns the first n rows of BoolQ's test set and the
// stories260K tokenizer, or skips.
func realRows(t *testing.T, n int) ([]data.Example, *tokenizer.Tokenizer) {
	t.Helper()
	_, tokPath := testdata.Stories260K(t)
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := data.LoadAdapters(testdata.Path(t, "datasets/llm-adapters/boolq/test.json"))
	if err != nil {
		t.Fatal(err)
	}
	return rows[:min(n, len(rows))], tok
}

// TestSetEncodeRealInstruction checks, with the real tokenizer, that Load
// and Set.Encode give LLM-Adapters files exactly the sequences and prompts
// LoadAdapters and EncodeLM give them, and that prompt/completion rows
// holding the same prompt and output give the same sequences too.
func TestSetEncodeRealInstruction(t *testing.T) {
	rows, tok := realRows(t, 600)
	set, err := data.Load(testdata.Path(t, "datasets/llm-adapters/boolq/test.json"))
	if err != nil {
		t.Fatal(err)
	}
	set.Rows = set.Rows[:len(rows)]
	var want []data.Sequence
	var wst data.EncodeStats
	for _, maxLen := range []int{190, 200, 512} {
		want, wst, err = data.EncodeLM(tok, rows, maxLen)
		if err != nil {
			t.Fatal(err)
		}
		got, gst, err := set.Encode(tok, nil, maxLen)
		if err != nil || !reflect.DeepEqual(got, want) || gst != wst {
			t.Fatalf("maxLen %d: Set.Encode differs from EncodeLM (%v): stats %+v, want %+v", maxLen, err, gst, wst)
		}
		t.Logf("maxLen %d: %d BoolQ rows: %d sequences, %d truncated, %d dropped, %d with a merge across the prompt's end", maxLen, len(rows), len(want), wst.Truncated, wst.Dropped, wst.Split)
	}
	wp, _, _ := data.EncodePrompts(tok, rows, 512)
	gp, _, err := set.EncodePrompts(tok, nil, 512)
	if err != nil || !reflect.DeepEqual(gp, wp) {
		t.Fatalf("Set.EncodePrompts differs from EncodePrompts (%v)", err)
	}
	pc := &data.Set{Name: "pc", Format: data.FormatPromptCompletion}
	for _, r := range rows {
		pc.Rows = append(pc.Rows, data.Row{Prompt: r.Prompt(), Completion: r.Output})
	}
	got, gst, err := pc.Encode(tok, nil, 512)
	if err != nil || !reflect.DeepEqual(got, want) || gst != wst {
		t.Fatalf("prompt/completion rows differ from EncodeLM (%v): stats %+v, want %+v", err, gst, wst)
	}
}

// TestSetEncodeRealChat checks the trained tokens of two-turn
// conversations made of BoolQ rows, encoded with the real tokenizer: the
// text of the tokens the loss trains is exactly the assistant turns'
// content and end markers, wherever no merge crosses a span's boundary.
func TestSetEncodeRealChat(t *testing.T) {
	rows, tok := realRows(t, 200)
	set := &data.Set{Name: "chat", Format: data.FormatMessages}
	for i := 0; i+1 < len(rows); i += 2 {
		set.Rows = append(set.Rows, data.Row{Line: i + 1, Messages: []data.Message{
			{Role: "system", Content: "Answer with true or false."},
			{Role: "user", Content: rows[i].Instruction}, {Role: "assistant", Content: rows[i].Output},
			{Role: "user", Content: rows[i+1].Instruction}, {Role: "assistant", Content: rows[i+1].Output},
		}})
	}
	all, st, err := set.Encode(tok, chatML{}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(set.Rows) || st.Truncated != 0 {
		t.Fatalf("%d sequences of %d rows, stats %+v", len(all), len(set.Rows), st)
	}
	exact := 0
	for i, r := range set.Rows {
		one := &data.Set{Name: "chat", Format: data.FormatMessages, Rows: []data.Row{r}}
		seqs, st, err := one.Encode(tok, chatML{}, 1024)
		if err != nil {
			t.Fatal(err)
		}
		s := seqs[0]
		if !reflect.DeepEqual(s.Tokens, all[i].Tokens) || !reflect.DeepEqual(s.Trained, all[i].Trained) {
			t.Fatalf("row %d encodes differently alone", i+1)
		}
		if s.Trained == nil {
			t.Fatalf("row %d: no mask for two assistant turns", i+1)
		}
		text, _, _ := chatML{}.Render(r.Messages, false)
		ids := make([]int, len(s.Tokens))
		for k, id := range s.Tokens {
			ids[k] = int(id)
		}
		if got := tok.DecodeAll(ids); got != text {
			t.Fatalf("row %d: tokens decode to %q, not the rendered text", i+1, got)
		}
		if st.Split > 0 {
			continue
		}
		exact++
		// The trained tokens, run by run, decode to the spans' text.
		var runs []string
		for k := 1; k < len(ids); k++ {
			if s.Trained[k] {
				if !s.Trained[k-1] {
					runs = append(runs, "")
				}
				runs[len(runs)-1] += tok.Decode(ids[k-1], ids[k])
			}
		}
		want := []string{r.Messages[2].Content + "<|im_end|>", r.Messages[4].Content + "<|im_end|>"}
		if !reflect.DeepEqual(runs, want) {
			t.Errorf("row %d: trained text %q, want %q", i+1, runs, want)
		}
	}
	if exact == 0 {
		t.Fatal("every row has a merge across a span's boundary: nothing was checked")
	}
	t.Logf("%d conversations: %d tokens, %d trained; %d with a merge across a span boundary", len(all), st.Tokens, st.Trained, st.Split)
}

// TestSetEncodeRealSplit checks, with the real tokenizer, a prompt that
// ends inside a word: the whole text's token that crosses the boundary
// (" time") is trained, and the sequence is counted in Split.
func TestSetEncodeRealSplit(t *testing.T) {
	_, tok := realRows(t, 1)
	set := &data.Set{Format: data.FormatPromptCompletion, Rows: []data.Row{{Prompt: "Once upon a ti", Completion: "me there was"}}}
	seqs, st, err := set.Encode(tok, nil, 64)
	if err != nil {
		t.Fatal(err)
	}
	s := seqs[0]
	if st.Split != 1 || s.Trained != nil {
		t.Fatalf("stats %+v, mask %v; want one split and no mask", st, s.Trained)
	}
	var trained []string
	for k := s.PromptLen; k < len(s.Tokens); k++ {
		trained = append(trained, tok.Piece(int(s.Tokens[k])))
	}
	if want := []string{" time", " there", " was", tok.Piece(tok.EOS())}; !reflect.DeepEqual(trained, want) {
		t.Errorf("trained pieces %q, want %q", trained, want)
	}
}
