package data

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// tinyChat is a hand-written chat template: each message as "<role>\n",
// its content and "\n", an assistant's content followed by "</s>" and
// both trained; with the generation prompt, "<assistant>\n" last. A
// message whose content is fail cannot be rendered.
type tinyChat struct{ fail string }

func (c tinyChat) Render(ms []Message, gen bool) (string, []Span, error) {
	var sb strings.Builder
	var spans []Span
	for i, m := range ms {
		if c.fail != "" && m.Content == c.fail {
			return "", nil, errors.New("tiny: cannot render " + c.fail)
		}
		sb.WriteString("<" + m.Role + ">\n")
		if m.Role == "assistant" {
			start := sb.Len()
			sb.WriteString(m.Content + "</s>")
			spans = append(spans, Span{start, sb.Len(), i})
		} else {
			sb.WriteString(m.Content)
		}
		sb.WriteString("\n")
	}
	if gen {
		sb.WriteString("<assistant>\n")
	}
	return sb.String(), spans, nil
}

// fixedChat renders every conversation as text with spans, whatever the
// messages.
type fixedChat struct {
	text  string
	spans []Span
}

func (c fixedChat) Render([]Message, bool) (string, []Span, error) { return c.text, c.spans, nil }

// wordEncoder is a tokenizer with SentencePiece's dummy prefix and
// merges that cross any boundary inside a word: a non-empty text gets a
// leading space, then each space followed by a run of letters, each run of
// letters not after a space, and each other byte is one token. Ids are
// handed out as pieces are first seen (BOS 1, EOS 2).
type wordEncoder struct{ ids map[string]int }

func newWordEncoder() *wordEncoder { return &wordEncoder{ids: map[string]int{}} }

func (w *wordEncoder) pieces(s string) []int {
	var out []int
	isLetter := func(b byte) bool { return b < 128 && unicode.IsLetter(rune(b)) }
	for i := 0; i < len(s); {
		j := i + 1
		if s[i] == ' ' || isLetter(s[i]) {
			for j < len(s) && isLetter(s[j]) {
				j++
			}
		}
		out = append(out, w.id(s[i:j]))
		i = j
	}
	return out
}

func (w *wordEncoder) id(p string) int {
	if id, ok := w.ids[p]; ok {
		return id
	}
	w.ids[p] = 10 + len(w.ids)
	return w.ids[p]
}

func (w *wordEncoder) piece(id int) string {
	for p, i := range w.ids {
		if i == id {
			return p
		}
	}
	return fmt.Sprintf("<%d>", id)
}

func (w *wordEncoder) Encode(s string, bos, eos bool) []int {
	var t []int
	if bos {
		t = append(t, 1)
	}
	if s != "" {
		t = append(t, w.pieces(" "+s)...)
	}
	if eos {
		t = append(t, 2)
	}
	return t
}

// trainedText returns the text of the trained tokens of a charEncoder
// sequence, as LossPositions of a one-sequence batch finds them (EOS as
// "<eos>").
func trainedText(t *testing.T, s Sequence) string {
	t.Helper()
	b, err := MakeBatch([]Sequence{s}, []int{0})
	if err != nil {
		t.Fatal(err)
	}
	pos, tgt := b.LossPositions()
	var sb strings.Builder
	for k, id := range tgt {
		if int(pos[k]) < 0 || int(pos[k])+1 >= len(s.Tokens) || s.Tokens[pos[k]+1] != id {
			t.Fatalf("position %d's target %d is not the next token", pos[k], id)
		}
		if id == 2 {
			sb.WriteString("<eos>")
		} else {
			sb.WriteByte(byte(id - 3))
		}
	}
	if n := Targets([]Sequence{s}, []int{0}, false); n != len(tgt) {
		t.Errorf("Targets %d, LossPositions %d", n, len(tgt))
	}
	return sb.String()
}

func TestSetEncodeFormats(t *testing.T) {
	conv := []Message{{"system", "sys"}, {"user", "hi"}, {"assistant", "hello"}, {"user", "more"}, {"assistant", "done"}}
	cases := []struct {
		name    string
		set     *Set
		text    string // what is encoded after BOS
		eos     bool
		trained string // the trained tokens' text
		masked  bool   // whether PromptLen alone cannot say what is trained
	}{
		{"prompt/completion", &Set{Format: FormatPromptCompletion, Rows: []Row{{Prompt: "Q: 2+2=", Completion: " 4"}}}, "Q: 2+2= 4", true, " 4<eos>", false},
		{"empty completion", &Set{Format: FormatPromptCompletion, Rows: []Row{{Prompt: "Q", Completion: ""}}}, "Q", true, "<eos>", false},
		{"empty prompt", &Set{Format: FormatPromptCompletion, Rows: []Row{{Prompt: "", Completion: "c"}}}, "c", true, "c<eos>", false},
		{"text", &Set{Format: FormatText, Rows: []Row{{Text: "Once upon"}}}, "Once upon", true, "Once upon<eos>", false},
		{"messages", &Set{Format: FormatMessages, Rows: []Row{{Messages: conv}}},
			"<system>\nsys\n<user>\nhi\n<assistant>\nhello</s>\n<user>\nmore\n<assistant>\ndone</s>\n", false, "hello</s>done</s>", true},
		{"conversational prompt/completion", &Set{Format: FormatChatPromptCompletion, Rows: []Row{{Messages: conv, PromptMessages: 4}}},
			"<system>\nsys\n<user>\nhi\n<assistant>\nhello</s>\n<user>\nmore\n<assistant>\ndone</s>\n", false, "done</s>", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seqs, st, err := c.set.Encode(charEncoder{}, tinyChat{}, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(seqs) != 1 {
				t.Fatalf("%d sequences", len(seqs))
			}
			s := seqs[0]
			want := charEncoder{}.Encode(c.text, true, c.eos)
			if !slices.Equal(s.Tokens, toInt32(want)) {
				t.Errorf("tokens %v\nwant %v", s.Tokens, want)
			}
			if got := trainedText(t, s); got != c.trained {
				t.Errorf("trained %q, want %q", got, c.trained)
			}
			if (s.Trained != nil) != c.masked {
				t.Errorf("mask %v; want one: %v", s.Trained, c.masked)
			}
			if c.masked && len(s.Trained) != len(s.Tokens) {
				t.Errorf("mask of %d for %d tokens", len(s.Trained), len(s.Tokens))
			}
			if st.Tokens != len(want) || st.Trained != len(strings.ReplaceAll(c.trained, "<eos>", "e")) || st.Split != 0 || st.Truncated != 0 || st.Dropped != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestSetEncodeSingleSpanIsPromptLen checks that a conversation whose
// trained text runs to its end is encoded with PromptLen alone, as code
// that reads no mask (train before the mask) expects.
func TestSetEncodeSingleSpanIsPromptLen(t *testing.T) {
	text := "<user>\nhi\n<assistant>\nhello"
	set := &Set{Format: FormatMessages, Rows: []Row{{Messages: []Message{{"user", "hi"}, {"assistant", "hello"}}}}}
	seqs, _, err := set.Encode(charEncoder{}, fixedChat{text, []Span{{len(text) - 5, len(text), 1}}}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if s := seqs[0]; s.Trained != nil || s.PromptLen != 1+len(text)-5 || trainedText(t, s) != "hello" {
		t.Errorf("prompt %d, mask %v; want %d and none", s.PromptLen, s.Trained, 1+len(text)-5)
	}
}

// TestSetEncodeInstructionIsEncodeLM checks that instruction rows encode
// as EncodeLM and EncodePrompts encode their examples, with any encoder.
func TestSetEncodeInstructionIsEncodeLM(t *testing.T) {
	set := &Set{Format: FormatInstruction, Rows: []Row{{Instruction: "say hello", Output: "hel lo"}, {Instruction: "x", Input: "in put", Output: "out", Answer: "out"}}}
	ex := []Example{set.Rows[0].Example(), set.Rows[1].Example()}
	for _, enc := range []Encoder{charEncoder{}, newWordEncoder()} {
		got, gst, err := set.Encode(enc, nil, 60)
		want, wst, err2 := EncodeLM(enc, ex, 60)
		if err != nil || err2 != nil || !reflect.DeepEqual(got, want) || gst != wst {
			t.Errorf("%T: Set.Encode %v %+v %v\nEncodeLM %v %+v %v", enc, got, gst, err, want, wst, err2)
		}
		gp, gst, err := set.EncodePrompts(enc, nil, 40)
		wp, wst, err2 := EncodePrompts(enc, ex, 40)
		if err != nil || err2 != nil || !reflect.DeepEqual(gp, wp) || gst != wst {
			t.Errorf("%T: Set.EncodePrompts %v %+v %v\nEncodePrompts %v %+v %v", enc, gp, gst, err, wp, wst, err2)
		}
	}
}

// TestSetEncodeBoundaries checks where a merge across the boundary of a
// trained span puts its token: the whole text's
// tokens, the crossing token trained at a span's start and at its end.
func TestSetEncodeBoundaries(t *testing.T) {
	// A conversation's text, encoded as " x ab cdef y" (the dummy prefix
	// first), with "ab cd" trained.
	text := "x ab cdef y"
	spans := []Span{{2, 7, 1}} // "ab cd"
	conv := &Set{Format: FormatMessages, Rows: []Row{{Messages: []Message{{"user", "x"}, {"assistant", "ab cd"}}}}}
	pc := func(p, c string) *Set {
		return &Set{Format: FormatPromptCompletion, Rows: []Row{{Prompt: p, Completion: c}}}
	}
	cases := []struct {
		name    string
		set     *Set
		spans   []Span   // of text, for conversations; nil for the spans above
		tokens  []string // pieces; BOS and EOS as <s> and </s>
		trained []string
		split   int
	}{
		{"aligned", pc("say", " hello"), nil, []string{"<s>", " say", " hello", "</s>"}, []string{" hello", "</s>"}, 0},
		{"crossing the start", pc("say hel", "lo world"), nil, []string{"<s>", " say", " hello", " world", "</s>"}, []string{" hello", " world", "</s>"}, 1},
		{"crossing the end", conv, nil, []string{"<s>", " x", " ab", " cdef", " y"}, []string{" ab", " cdef"}, 1},
		{"inside one token", pc("say he", "l"), nil, []string{"<s>", " say", " hel", "</s>"}, []string{" hel", "</s>"}, 1},
		{"span inside one token", conv, []Span{{6, 8, 1}}, []string{"<s>", " x", " ab", " cdef", " y"}, []string{" cdef"}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWordEncoder()
			var enc Encoder = w
			sp := spans
			if c.spans != nil {
				sp = c.spans
			}
			seqs, st, err := c.set.Encode(enc, fixedChat{text, sp}, 100)
			if err != nil {
				t.Fatal(err)
			}
			s := seqs[0]
			var toks, trained []string
			b, _ := MakeBatch(seqs, []int{0})
			_, tgt := b.LossPositions()
			name := func(id int) string {
				switch id {
				case 1:
					return "<s>"
				case 2:
					return "</s>"
				}
				return w.piece(id)
			}
			for _, id := range s.Tokens {
				toks = append(toks, name(int(id)))
			}
			for _, id := range tgt {
				trained = append(trained, name(int(id)))
			}
			if !slices.Equal(toks, c.tokens) || !slices.Equal(trained, c.trained) {
				t.Errorf("tokens %q trained %q\nwant %q trained %q", toks, trained, c.tokens, c.trained)
			}
			if st.Split != c.split {
				t.Errorf("split %d, want %d", st.Split, c.split)
			}
		})
	}
}

// TestMaskThroughBatch checks MakeBatch and LossPositions on a batch that
// mixes masked, prompt-length and classification-style sequences against
// the rule train used before the mask (from the prompt to the end).
func TestMaskThroughBatch(t *testing.T) {
	conv := []Message{{"user", "a"}, {"assistant", "b"}, {"user", "c"}, {"assistant", "d"}}
	set := &Set{Format: FormatMessages, Rows: []Row{{Messages: conv}, {Messages: conv[:2]}}}
	seqs, _, err := set.Encode(charEncoder{}, tinyChat{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	seqs = append(seqs, Sequence{Tokens: []int32{1, 5, 6, 7}, PromptLen: 2}, Sequence{Tokens: []int32{1, 9}})
	b, err := MakeBatch(seqs, []int{2, 0, 3, 1})
	if err != nil {
		t.Fatal(err)
	}
	pos, tgt := b.LossPositions()
	// The rows in the order given, each as "row:target-text".
	var got []string
	for k, p := range pos {
		r := int(p) / b.Len
		got = append(got, fmt.Sprintf("%d:%c", r, rune(tgt[k]-3)))
	}
	want := []string{"0:\x03", "0:\x04", "1:b", "1:<", "1:/", "1:s", "1:>", "1:d", "1:<", "1:/", "1:s", "1:>", "2:\x06", "3:b", "3:<", "3:/", "3:s", "3:>"}
	if !slices.Equal(got, want) {
		t.Errorf("loss positions %q\nwant %q", got, want)
	}
	if n := Targets(seqs, []int{2, 0, 3, 1}, false); n != len(pos) {
		t.Errorf("Targets %d, LossPositions %d", n, len(pos))
	}
	// Without masks, LossPositions is train's rule before them.
	plain := []Sequence{{Tokens: []int32{1, 5, 6, 7}, PromptLen: 2}, {Tokens: []int32{1, 9}}, {Tokens: []int32{1, 4, 4}, PromptLen: 3}, {Tokens: []int32{1, 8, 8}, PromptLen: 9}}
	b, _ = MakeBatch(plain, []int{0, 1, 2, 3})
	pos, tgt = b.LossPositions()
	var rpos, rtgt []int32
	for r := 0; r < b.Size; r++ {
		row := b.Tokens[r*b.Len : (r+1)*b.Len]
		for next := max(b.PromptLens[r], 1); next < b.Lengths[r]; next++ {
			rpos = append(rpos, int32(r*b.Len+next-1))
			rtgt = append(rtgt, row[next])
		}
	}
	if !slices.Equal(pos, rpos) || !slices.Equal(tgt, rtgt) {
		t.Errorf("LossPositions %v %v; train's rule %v %v", pos, tgt, rpos, rtgt)
	}
	bad := []Sequence{{Tokens: []int32{1, 2, 3}, Trained: []bool{false, true}}}
	if _, err := MakeBatch(bad, []int{0}); err == nil || !strings.Contains(err.Error(), "mask of 2") {
		t.Errorf("error %v; want one about the mask's length", err)
	}
}

func TestSetEncodeTruncation(t *testing.T) {
	conv := []Message{{"user", "a"}, {"assistant", "bb"}, {"user", "c"}, {"assistant", "dd"}}
	set := &Set{Format: FormatMessages, Rows: []Row{{Messages: conv}}}
	text, _, _ := tinyChat{}.Render(conv, false)
	first := 1 + strings.Index(text, "bb") // token where "bb" starts
	for _, c := range []struct {
		maxLen    int
		trained   string
		dropped   int
		truncated int
	}{
		{1 + len(text), "bb</s>dd</s>", 0, 0},
		{1 + len(text) - 2, "bb</s>dd</s", 0, 1},
		{first + 1, "b", 0, 1},
		{first, "", 1, 1},
	} {
		seqs, st, err := set.Encode(charEncoder{}, tinyChat{}, c.maxLen)
		if err != nil {
			t.Fatal(err)
		}
		if st.Dropped != c.dropped || st.Truncated != c.truncated || len(seqs) != 1-c.dropped {
			t.Errorf("maxLen %d: %d sequences, stats %+v", c.maxLen, len(seqs), st)
			continue
		}
		if len(seqs) == 1 {
			if len(seqs[0].Tokens) > c.maxLen {
				t.Errorf("maxLen %d: %d tokens", c.maxLen, len(seqs[0].Tokens))
			}
			if got := trainedText(t, seqs[0]); got != c.trained {
				t.Errorf("maxLen %d: trained %q, want %q", c.maxLen, got, c.trained)
			}
		}
	}
}

func TestSetEncodePrompts(t *testing.T) {
	conv := []Message{{"user", "q"}, {"assistant", "a1"}, {"user", "q2"}, {"assistant", "a2"}}
	cases := []struct {
		set  *Set
		want string
	}{
		{&Set{Format: FormatPromptCompletion, Rows: []Row{{Prompt: "2+2=", Completion: "4"}}}, "2+2="},
		{&Set{Format: FormatMessages, Rows: []Row{{Messages: conv}}}, "<user>\nq\n<assistant>\na1</s>\n<user>\nq2\n<assistant>\n"},
		{&Set{Format: FormatChatPromptCompletion, Rows: []Row{{Messages: conv[2:], PromptMessages: 1}}}, "<user>\nq2\n<assistant>\n"},
		{&Set{Format: FormatMessages, Rows: []Row{{Messages: conv[1:2]}}}, "<assistant>\n"},
	}
	for _, c := range cases {
		p, st, err := c.set.EncodePrompts(charEncoder{}, tinyChat{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		want := (charEncoder{}).Encode(c.want, true, false)
		if !reflect.DeepEqual(p, [][]int{want}) || st.Tokens != len(want) {
			t.Errorf("%v: prompt %v, want %v (%q)", c.set.Format, p, want, c.want)
		}
	}
	// A prompt that fills the model's positions keeps BOS and its end.
	p, st, _ := cases[1].set.EncodePrompts(charEncoder{}, tinyChat{}, 6)
	want := append([]int{1}, (charEncoder{}).Encode("ant>\n", false, false)[1:]...)
	if !reflect.DeepEqual(p[0], want) || st.Truncated != 1 {
		t.Errorf("cut prompt %v (%+v), want %v", p[0], st, want)
	}
	text := &Set{Name: "t.jsonl", Format: FormatText, Rows: []Row{{Text: "a"}}}
	if _, _, err := text.EncodePrompts(charEncoder{}, nil, 10); !errors.Is(err, ErrNoGeneration) || !strings.Contains(err.Error(), "t.jsonl") {
		t.Errorf("text rows: error %v; want ErrNoGeneration naming the file", err)
	}
	if _, _, err := cases[0].set.EncodePrompts(charEncoder{}, nil, 1); err == nil {
		t.Error("no error for maxLen 1")
	}
	empty := &Set{Format: FormatPromptCompletion, Rows: []Row{{Line: 4}}}
	if _, _, err := empty.EncodePrompts(noBOSEncoder{}, nil, 10); err == nil || !strings.Contains(err.Error(), ":4: the prompt has no tokens") {
		t.Errorf("empty prompt without BOS: error %v", err)
	}
}

func TestSetEncodeErrors(t *testing.T) {
	conv := []Message{{"user", "q"}, {"assistant", "a"}}
	text := "<user>\nq\n<assistant>\na\n"
	chatSet := func(f Format) *Set {
		return &Set{Name: "c.jsonl", Format: f, Rows: []Row{{Line: 7, Messages: conv, PromptMessages: 1}}}
	}
	cases := []struct {
		name string
		set  *Set
		chat ChatRenderer
		want []string
	}{
		{"no renderer", chatSet(FormatMessages), nil, []string{"c.jsonl", "messages format", "chat template"}},
		{"renderer fails", chatSet(FormatMessages), tinyChat{fail: "a"}, []string{"c.jsonl:7", "chat template", "cannot render a"}},
		{"no spans", chatSet(FormatMessages), fixedChat{text, nil}, []string{"c.jsonl:7", "marks no text", "nothing would be trained"}},
		{"empty span", chatSet(FormatMessages), fixedChat{text, []Span{{3, 3, 1}}}, []string{"c.jsonl:7", "marks no text"}},
		{"only prompt spans", chatSet(FormatChatPromptCompletion), fixedChat{text, []Span{{2, 3, 0}}}, []string{"role is \"user\""}},
		{"span past the end", chatSet(FormatMessages), fixedChat{text, []Span{{20, 99, 1}}}, []string{"c.jsonl:7", "span 1", "[20, 99)", "within the text"}},
		{"span reversed", chatSet(FormatMessages), fixedChat{text, []Span{{5, 4, 1}}}, []string{"span 1", "[5, 4)"}},
		{"spans overlap", chatSet(FormatMessages), fixedChat{text, []Span{{10, 14, 1}, {12, 16, 1}}}, []string{"span 2", "[12, 16)", "after a span ending at 14"}},
		{"span of a user message", chatSet(FormatMessages), fixedChat{text, []Span{{7, 8, 0}}}, []string{"span 1", "message 0", `"user"`}},
		{"span of no message", chatSet(FormatMessages), fixedChat{text, []Span{{7, 8, 2}}}, []string{"span 1", "message 2 of 2"}},
		{"unknown format", &Set{Name: "u", Format: 9, Rows: []Row{{}}}, nil, []string{"u", "unknown row format"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := c.set.Encode(charEncoder{}, c.chat, 100)
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
	// The completion's spans are trained, not the prompt's: a completion
	// span is enough.
	if _, _, err := chatSet(FormatChatPromptCompletion).Encode(charEncoder{}, fixedChat{text, []Span{{20, 21, 1}}}, 100); err != nil {
		t.Errorf("a completion span: %v", err)
	}
	if _, _, err := chatSet(FormatMessages).Encode(charEncoder{}, tinyChat{}, 1); err == nil {
		t.Error("no error for maxLen 1")
	}
}

// chatFuzzRenderer renders a conversation as the fuzzed text with spans
// cut from the fuzzed cuts, whatever they are.
type chatFuzzRenderer struct {
	text string
	cuts []byte
}

func (c chatFuzzRenderer) Render(ms []Message, _ bool) (string, []Span, error) {
	var spans []Span
	for k := 0; k+2 < len(c.cuts); k += 3 {
		spans = append(spans, Span{int(c.cuts[k]) - 8, int(c.cuts[k+1]) - 8, int(c.cuts[k+2]%4) - 1})
	}
	return c.text, spans, nil
}

// FuzzSetEncodeChat feeds Set.Encode whatever spans a chat template might
// return and checks that it never panics and that what it returns is
// consistent: the whole text's tokens within maxLen, a mask of one entry
// per token that trains nothing before PromptLen, and statistics that add
// up.
func FuzzSetEncodeChat(f *testing.F) {
	f.Add("x ab cdef y", []byte{10, 15, 2}, uint8(20))
	f.Add("<user>\nq\n<assistant>\nhello</s>\n", []byte{30, 40, 2, 2, 3, 1}, uint8(9))
	f.Add("", []byte{8, 8, 2}, uint8(2))
	f.Fuzz(func(t *testing.T, text string, cuts []byte, maxLen uint8) {
		msgs := []Message{{"user", "u"}, {"assistant", "a"}, {"assistant", "b"}}
		var enc Encoder = newWordEncoder()
		for _, f := range []Format{FormatMessages, FormatChatPromptCompletion} {
			set := &Set{Name: "fuzz", Format: f, Rows: []Row{{Line: 1, Messages: msgs, PromptMessages: 2}}}
			seqs, st, err := set.Encode(enc, chatFuzzRenderer{text, cuts}, int(maxLen))
			if err != nil {
				if !strings.Contains(err.Error(), "fuzz") && !strings.Contains(err.Error(), "maximum length") {
					t.Errorf("error %q names neither the file nor the length", err)
				}
				continue
			}
			if len(seqs)+st.Dropped != 1 {
				t.Fatalf("%d sequences and %d dropped from one row", len(seqs), st.Dropped)
			}
			for _, s := range seqs {
				if len(s.Tokens) > int(maxLen) || len(s.Tokens) < 2 || s.Tokens[0] != 1 {
					t.Errorf("%d tokens (maxLen %d), first %d", len(s.Tokens), maxLen, s.Tokens[0])
				}
				if s.Trained != nil && (len(s.Trained) != len(s.Tokens) || s.Trained[0]) {
					t.Errorf("mask %v for %d tokens", s.Trained, len(s.Tokens))
				}
				for i := 0; i < s.PromptLen && s.Trained != nil; i++ {
					if s.Trained[i] {
						t.Errorf("token %d before PromptLen %d trained", i, s.PromptLen)
					}
				}
				if n := Targets(seqs, []int{0}, false); n != st.Trained || n == 0 {
					t.Errorf("Targets %d, stats %+v", n, st)
				}
				// The tokens are the whole text's.
				if whole := enc.Encode(text, true, false); !slices.Equal(s.Tokens, toInt32(whole[:min(len(whole), int(maxLen))])) {
					t.Errorf("tokens %v; the whole text encodes to %v", s.Tokens, whole)
				}
			}
		}
	})
}
