package chat_test

import (
	"fmt"

	"github.com/sora-go/sora/models/chat"
)

func ExampleTemplate_Render() {
	// A model folder's template is usually loaded with chat.LoadDir(dir);
	// here it is given directly, with the special tokens its tokenizer
	// would pass.
	tmpl, err := chat.Parse("example", `{{ bos_token }}
{%- for m in messages %}<|{{ m.role }}|>
{{ m.content | trim }}{{ eos_token }}
{% endfor %}
{%- if add_generation_prompt %}<|assistant|>
{% endif %}`, map[string]any{"bos_token": "<s>", "eos_token": "</s>"})
	if err != nil {
		fmt.Println(err)
		return
	}
	text, err := tmpl.Render([]chat.Message{
		{Role: "system", Content: "You are terse."},
		{Role: "user", Content: "  Hi!  "},
	}, chat.Options{AddGenerationPrompt: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(text)
	// Output:
	// <s><|system|>
	// You are terse.</s>
	// <|user|>
	// Hi!</s>
	// <|assistant|>
}

func ExampleTemplate_Spans() {
	tmpl, _ := chat.Parse("example", `{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}`, nil)
	text, spans, err := tmpl.Spans([]chat.Message{
		{Role: "user", Content: "2+2?"},
		{Role: "assistant", Content: "4"},
	}, chat.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(text)
	for _, s := range spans {
		fmt.Printf("loss on %q\n", text[s.Start:s.End])
	}
	// Output:
	// <|user|>2+2?<|end|><|assistant|>4<|end|>
	// loss on "4<|end|>"
}
