package demo

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/sora-go/sora/data"
)

// The demonstration's vocabulary: control tokens, one token per task and
// the ten digits.
const (
	tokPad  = 0
	tokBOS  = 1
	tokEOS  = 2
	tokSep  = 3 // "=" between the digits and the answer
	tokTask = 4 // first task token
	// NumTasks task tokens follow tokTask, then the digits.
	numTaskTokens = 4
	tokDigit0     = tokTask + numTaskTokens
	numDigits     = 10
	// VocabSize is the model's vocabulary (rounded up to a multiple of 8).
	VocabSize = 24
)

// Task is one of the demonstration's sequence tasks: given a string of
// digits, write a transformed string of digits.
type Task struct {
	// Name is how the table and logs refer to the task.
	Name string
	// token is the task token that starts the prompt.
	token int32
	// apply maps the input digits to the answer digits.
	apply func(in []int32) []int32
}

// The tasks. Pretraining mixes Copy, Reverse and Sort; fine-tuning teaches
// ReverseIncrement, a task the pretrained model has never seen, under a task
// token it has never seen, that combines two skills it has (reversing,
// and mapping each digit to another).
var (
	Copy = Task{"copy", tokTask, func(in []int32) []int32 { return slices.Clone(in) }}
	// Reverse writes the digits backwards.
	Reverse = Task{"reverse", tokTask + 1, func(in []int32) []int32 {
		out := slices.Clone(in)
		slices.Reverse(out)
		return out
	}}
	// Sort writes the digits in ascending order.
	Sort = Task{"sort", tokTask + 2, func(in []int32) []int32 {
		out := slices.Clone(in)
		slices.Sort(out)
		return out
	}}
	// ReverseIncrement writes the digits backwards, each plus one modulo
	// ten.
	ReverseIncrement = Task{"reverse+1", tokTask + 3, func(in []int32) []int32 {
		out := make([]int32, len(in))
		for i, d := range in {
			out[len(in)-1-i] = (d + 1) % numDigits
		}
		return out
	}}
)

// example builds the sequence BOS task d₁…d_L = a₁…a_L EOS for the
// digits in (as digit values 0–9), with the prompt up to and including "=".
func (t Task) example(in []int32) data.Sequence {
	ans := t.apply(in)
	toks := make([]int32, 0, 2*len(in)+4)
	toks = append(toks, tokBOS, t.token)
	for _, d := range in {
		toks = append(toks, tokDigit0+d)
	}
	toks = append(toks, tokSep)
	prompt := len(toks)
	for _, d := range ans {
		toks = append(toks, tokDigit0+d)
	}
	toks = append(toks, tokEOS)
	return data.Sequence{Tokens: toks, PromptLen: prompt}
}

// Lengths of the digit strings.
const (
	minDigits = 3
	maxDigits = 8
	// MaxSeqLen fits the longest example: BOS, task, 8 digits, "=", 8
	// digits, EOS.
	MaxSeqLen = 2*maxDigits + 4
)

// key identifies an input independently of the task.
func key(t Task, in []int32) string { return fmt.Sprint(t.token, in) }

// generate draws n distinct examples of the tasks (chosen uniformly) with
// 3 to 8 digits each, skipping any whose input is in exclude, and adds the
// drawn inputs to exclude.
func generate(rng *rand.Rand, tasks []Task, n int, exclude map[string]bool) []data.Sequence {
	out := make([]data.Sequence, 0, n)
	for len(out) < n {
		t := tasks[rng.IntN(len(tasks))]
		in := make([]int32, minDigits+rng.IntN(maxDigits-minDigits+1))
		for i := range in {
			in[i] = int32(rng.IntN(numDigits))
		}
		k := key(t, in)
		if exclude[k] {
			continue
		}
		exclude[k] = true
		s := t.example(in)
		s.Row = len(out)
		out = append(out, s)
	}
	return out
}

// Format writes a sequence of the demonstration's tokens as text, e.g.
// "<reverse> 3 1 4 = 4 1 3 </s>".
func Format(toks []int32) string {
	var sb strings.Builder
	for i, t := range toks {
		if i > 0 {
			sb.WriteByte(' ')
		}
		switch {
		case t == tokBOS:
			sb.WriteString("<s>")
		case t == tokEOS:
			sb.WriteString("</s>")
		case t == tokSep:
			sb.WriteString("=")
		case t >= tokTask && t < tokDigit0:
			name := "?"
			for _, task := range []Task{Copy, Reverse, Sort, ReverseIncrement} {
				if task.token == t {
					name = task.Name
				}
			}
			sb.WriteString("<" + name + ">")
		case t >= tokDigit0 && t < tokDigit0+numDigits:
			sb.WriteByte(byte('0' + t - tokDigit0))
		default:
			fmt.Fprintf(&sb, "<%d>", t)
		}
	}
	return sb.String()
}
