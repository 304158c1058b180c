package chat

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func conversation() []Message {
	return []Message{
		{Role: "system", Content: "You are helpful."},
		{Role: "user", Content: "Hi!"},
		{Role: "assistant", Content: "Hello. What can I do?"},
		{Role: "user", Content: "Tell me a joke."},
		{Role: "assistant", Content: "Why did the chicken cross the road?"},
	}
}

// TestSpansPrefix checks the assistant spans of templates without
// generation blocks against what each template is known to write after an
// assistant header: the message's content and the template's end-of-turn
// marker.
func TestSpansPrefix(t *testing.T) {
	tmpls := templates(t, loadCases(t))
	for _, c := range []struct {
		template string
		end      string // what follows the content in the span
	}{
		{"llama3.1", "<|eot_id|>"},
		{"qwen2.5", "<|im_end|>\n"},
		{"smollm2", "<|im_end|>\n"},
		{"tinyllama", "</s>\n"},
		{"phi4", "<|im_end|>"},
		{"deepseek-r1-distill-llama", "<｜end▁of▁sentence｜>"},
	} {
		t.Run(c.template, func(t *testing.T) {
			msgs := conversation()
			text, spans, err := tmpls[c.template].Spans(msgs, Options{})
			if err != nil {
				t.Fatal(err)
			}
			full, err := tmpls[c.template].Render(msgs, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if text != full {
				t.Fatalf("Spans text differs from Render's")
			}
			var got []string
			for k, s := range spans {
				got = append(got, text[s.Start:s.End])
				if s.Message != 2+2*k {
					t.Errorf("span %d names message %d, want %d", k, s.Message, 2+2*k)
				}
			}
			want := []string{msgs[2].Content.(string) + c.end, msgs[4].Content.(string) + c.end}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("spans %q, want %q", got, want)
			}
		})
	}
}

// TestSpansGeneration checks that a template with {% generation %} blocks
// (SmolLM3's) gets exactly the spans transformers records for them.
func TestSpansGeneration(t *testing.T) {
	cases := loadCases(t)
	tmpls := templates(t, cases)
	n := 0
	for _, c := range cases {
		if c.TemplateName != "smollm3" || c.AddGenerationPrompt || c.PythonErr != "" {
			continue
		}
		_, spans, err := tmpls[c.TemplateName].Spans(c.Messages, c.options())
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		var got [][2]int
		for _, s := range spans {
			got = append(got, [2]int{s.Start, s.End})
		}
		var want [][2]int
		for _, g := range c.PythonGeneration {
			if g[1] > g[0] {
				want = append(want, g)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: spans %v, Python %v", c.Name, got, want)
		}
		n += len(want)
	}
	if n == 0 {
		t.Fatal("no generation spans were compared")
	}
}

// TestSpansNotPrefixStable: Qwen3 drops the thinking of assistant turns
// before the last user message, so the earlier turns render differently
// once the conversation goes on.
func TestSpansNotPrefixStable(t *testing.T) {
	tmpls := templates(t, loadCases(t))
	msgs := []Message{
		{Role: "user", Content: "Is 7 prime?"},
		{Role: "assistant", Content: "<think>\nNo divisors.\n</think>\n\nYes."},
		{Role: "user", Content: "And 9?"},
		{Role: "assistant", Content: "<think>\n3 divides it.\n</think>\n\nNo."},
	}
	_, _, err := tmpls["qwen3"].Spans(msgs, Options{})
	if !errors.Is(err, ErrNotPrefixStable) || !strings.Contains(err.Error(), "message 1") {
		t.Fatalf("error %v, want ErrNotPrefixStable for message 1", err)
	}
	// Phi-3 and Phi-3.5 write EOS after the last assistant turn only.
	for _, name := range []string{"phi3", "phi3.5"} {
		if _, _, err := tmpls[name].Spans(conversation(), Options{}); !errors.Is(err, ErrNotPrefixStable) {
			t.Fatalf("%s: error %v, want ErrNotPrefixStable", name, err)
		}
	}
	// The last turn alone is prefix-stable.
	text, spans, err := tmpls["qwen3"].Spans(msgs[2:], Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 1 || text[spans[0].Start:spans[0].End] != "<think>\n3 divides it.\n</think>\n\nNo.<|im_end|>\n" {
		t.Fatalf("spans %v of %q", spans, text)
	}
}
