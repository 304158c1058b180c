package data_test

import (
	"fmt"
	"strings"

	"github.com/sora-go/sora/data"
)

func ExamplePrompt() {
	fmt.Print(data.Prompt("Is the sky blue?", ""))
	// Output:
	// Below is an instruction that describes a task. Write a response that appropriately completes the request.
	//
	// ### Instruction:
	// Is the sky blue?
	//
	// ### Response:
}

func ExampleExtractor() {
	x, _ := data.NewExtractor([]string{"true", "false"})
	pred, _ := x.Extract("the correct answer is false")
	fmt.Println(x.Kind, pred, x.Correct(pred, "false"))
	// Output: true/false false true
}

func ExampleMCC() {
	pred := []int{1, 1, 0, 0, 1}
	gold := []int{1, 0, 0, 0, 1}
	mcc, _ := data.MCC(pred, gold, 2)
	fmt.Printf("%.4f\n", mcc)
	// Output: 0.6667
}

func ExampleParse() {
	file := `{"messages": [{"role": "user", "content": "Is the sky blue?"}, {"role": "assistant", "content": "Yes."}]}

{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "answer": "4"}
`
	set, err := data.Parse([]byte(file), "chat.jsonl")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(set.Format, len(set.Rows), "rows")
	for i, r := range set.Rows {
		fmt.Printf("line %d: gold %q\n", r.Line, set.Gold(i))
	}
	_, err = data.Parse([]byte(file+`{"prompt": "a", "completion": "b"}`), "chat.jsonl")
	fmt.Println(err)
	// Output:
	// messages 2 rows
	// line 1: gold "Yes."
	// line 3: gold "4"
	// data: chat.jsonl:4: row 3 has the string fields prompt and completion of the prompt/completion format, but row 1 has the field messages of the messages format; every row of a file must have the same format
}

// byteEncoder encodes one token per byte (id = byte + 3), BOS 1, EOS 2.
type byteEncoder struct{}

func (byteEncoder) Encode(s string, bos, eos bool) []int {
	var t []int
	if bos {
		t = append(t, 1)
	}
	for i := range len(s) {
		t = append(t, int(s[i])+3)
	}
	if eos {
		t = append(t, 2)
	}
	return t
}

// turns renders each message as "role: content\n", training an
// assistant's content and its newline.
type turns struct{}

func (turns) Render(ms []data.Message, gen bool) (string, []data.Span, error) {
	var text string
	var spans []data.Span
	for i, m := range ms {
		text += m.Role + ": "
		start := len(text)
		text += m.Content + "\n"
		if m.Role == "assistant" {
			spans = append(spans, data.Span{Start: start, End: len(text), Message: i})
		}
	}
	if gen {
		text += "assistant: "
	}
	return text, spans, nil
}

func ExampleSet_Encode() {
	set, _ := data.Parse([]byte(`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ciao"}]}`), "chat.jsonl")
	seqs, st, _ := set.Encode(byteEncoder{}, turns{}, 512)
	// Show the trained tokens of the one sequence in brackets.
	s := seqs[0]
	for t, id := range s.Tokens[1:] {
		c := string(rune(id - 3))
		if s.Trained[t+1] {
			c = "[" + c + "]"
		}
		fmt.Print(strings.ReplaceAll(c, "\n", `\n`))
	}
	fmt.Printf("\n%d tokens, %d trained\n", st.Tokens, st.Trained)
	prompts, _, _ := set.EncodePrompts(byteEncoder{}, turns{}, 512)
	fmt.Printf("prompt: %d tokens, gold %q\n", len(prompts[0]), set.Gold(0))
	// Output:
	// user: hi\nassistant: [h][e][l][l][o][\n]user: bye\nassistant: [c][i][a][o][\n]
	// 53 tokens, 11 trained
	// prompt: 48 tokens, gold "ciao"
}
