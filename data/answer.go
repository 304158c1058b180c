package data

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// AnswerKind says how a predicted answer is found in generated text and
// compared with the gold answer.
type AnswerKind uint8

// The answer kinds, as LLM-Adapters' evaluation scripts extract them.
const (
	// Bool answers are "true" or "false": the first of the two words in
	// the text (BoolQ).
	Bool AnswerKind = iota + 1
	// Choice answers are a word followed by a number, "answer1" …
	// "answer5" (ARC, OpenBookQA, Social IQa), "solution1"/"solution2"
	// (PIQA), "option1"/"option2" (WinoGrande), "ending1" … "ending4"
	// (HellaSwag): the first such word of the data set's form in the text.
	Choice
	// Number answers are numbers: the last number in the text (commas
	// removed), correct within 0.001 of the gold value (arithmetic word
	// problems).
	Number
	// Text answers are compared whole: the trimmed generated text must equal
	// the gold answer, ignoring case.
	Text
)

func (k AnswerKind) String() string {
	switch k {
	case Bool:
		return "true/false"
	case Choice:
		return "choice"
	case Number:
		return "number"
	case Text:
		return "text"
	}
	return fmt.Sprintf("AnswerKind(%d)", uint8(k))
}

var (
	reBool     = regexp.MustCompile(`true|false`)
	reNumber   = regexp.MustCompile(`-?\d+\.?\d*`)
	reChoice   = regexp.MustCompile(`^([a-z]+)([1-9])$`)
	numberTol  = 0.001
	choiceForm = map[string]string{ // the alternatives LLM-Adapters searches for
		"answer":   "answer1|answer2|answer3|answer4|answer5",
		"solution": "solution1|solution2",
		"option":   "option1|option2",
		"ending":   "ending1|ending2|ending3|ending4",
	}
)

// Extractor finds the predicted answer in generated text and decides
// whether it is correct, for one data set.
type Extractor struct {
	Kind AnswerKind
	re   *regexp.Regexp // Bool and Choice: the alternatives
}

// NewExtractor returns the extractor for a data set whose gold answers are
// golds: Bool when every answer is true or false, Choice when every answer
// is one word followed by a digit (answer1, option2, …), Number when every
// answer is a number, Text otherwise. It is an error for golds to be empty
// or to hold an empty answer.
func NewExtractor(golds []string) (*Extractor, error) {
	if len(golds) == 0 {
		return nil, fmt.Errorf("data: no gold answers to decide how to extract predictions")
	}
	allBool, allNum, word := true, true, ""
	allChoice := true
	for i, g := range golds {
		g = strings.TrimSpace(g)
		if g == "" {
			return nil, fmt.Errorf("data: row %d has an empty answer field", i+1)
		}
		if g != "true" && g != "false" {
			allBool = false
		}
		if _, err := strconv.ParseFloat(strings.ReplaceAll(g, ",", ""), 64); err != nil {
			allNum = false
		}
		m := reChoice.FindStringSubmatch(g)
		switch {
		case m == nil:
			allChoice = false
		case word == "":
			word = m[1]
		case word != m[1]:
			allChoice = false
		}
	}
	switch {
	case allBool:
		return &Extractor{Kind: Bool, re: reBool}, nil
	case allChoice:
		alt, ok := choiceForm[word]
		if !ok {
			alt = word + "[1-9]"
		}
		return &Extractor{Kind: Choice, re: regexp.MustCompile(alt)}, nil
	case allNum:
		return &Extractor{Kind: Number}, nil
	}
	return &Extractor{Kind: Text}, nil
}

// Extract returns the predicted answer in text, or "" and false when the
// text holds none.
func (x *Extractor) Extract(text string) (string, bool) {
	text = strings.TrimSpace(text)
	switch x.Kind {
	case Bool, Choice:
		if m := firstMatch(x.re, text); m != "" {
			return m, true
		}
		return "", false
	case Number:
		nums := reNumber.FindAllString(strings.ReplaceAll(text, ",", ""), -1)
		if len(nums) == 0 {
			return "", false
		}
		return nums[len(nums)-1], true
	}
	return text, text != ""
}

// Correct reports whether the predicted answer pred (from Extract) matches
// gold.
func (x *Extractor) Correct(pred, gold string) bool {
	gold = strings.TrimSpace(gold)
	switch x.Kind {
	case Number:
		p, err1 := strconv.ParseFloat(pred, 64)
		g, err2 := strconv.ParseFloat(strings.ReplaceAll(gold, ",", ""), 64)
		return err1 == nil && err2 == nil && math.Abs(p-g) <= numberTol
	case Text:
		return strings.EqualFold(strings.TrimSpace(pred), gold)
	}
	return pred == gold
}

func firstMatch(re *regexp.Regexp, s string) string { return re.FindString(s) }
