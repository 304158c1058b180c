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
	// Letter answers are one of the capital letters A to E: the first of
	// them in the text, as LLM-Adapters' evaluate.py extracts AQuA's.
	Letter
	// NumberOrLetter is a data set whose answers are numbers in some rows
	// and letters A to E in others (LLM-Adapters' math_10k mixes AQuA
	// into the arithmetic sets): each row's answer is extracted as its
	// gold answer's kind ([Extractor.For]).
	NumberOrLetter
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
	case Letter:
		return "letter"
	case NumberOrLetter:
		return "number/letter"
	}
	return fmt.Sprintf("AnswerKind(%d)", uint8(k))
}

var (
	reBool     = regexp.MustCompile(`true|false`)
	reNumber   = regexp.MustCompile(`-?\d+\.?\d*`)
	reChoice   = regexp.MustCompile(`^([a-z]+)([1-9])$`)
	reLetter   = regexp.MustCompile(`A|B|C|D|E`)
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
// answer is a number, Letter when every answer is a letter A to E,
// NumberOrLetter when every answer is one or the other, Text otherwise. It
// is an error for golds to be empty or to hold an empty answer.
func NewExtractor(golds []string) (*Extractor, error) {
	if len(golds) == 0 {
		return nil, fmt.Errorf("data: no gold answers to decide how to extract predictions")
	}
	allBool, allNum, word := true, true, ""
	allChoice, allLetter, allNumOrLetter := true, true, true
	for i, g := range golds {
		g = strings.TrimSpace(g)
		if g == "" {
			return nil, fmt.Errorf("data: row %d has an empty answer field", i+1)
		}
		if g != "true" && g != "false" {
			allBool = false
		}
		_, err := strconv.ParseFloat(strings.ReplaceAll(g, ",", ""), 64)
		isNum, isLetter := err == nil, isAnswerLetter(g)
		allNum = allNum && isNum
		allLetter = allLetter && isLetter
		allNumOrLetter = allNumOrLetter && (isNum || isLetter)
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
	case allLetter:
		return &Extractor{Kind: Letter, re: reLetter}, nil
	case allNumOrLetter:
		return &Extractor{Kind: NumberOrLetter}, nil
	}
	return &Extractor{Kind: Text}, nil
}

// isAnswerLetter reports whether g is one of the letters A to E.
func isAnswerLetter(g string) bool { return len(g) == 1 && g[0] >= 'A' && g[0] <= 'E' }

// For returns the extractor for a row whose gold answer is gold: for a
// NumberOrLetter set the Letter or the Number extractor, as gold is a
// letter or not; x itself for the other kinds.
func (x *Extractor) For(gold string) *Extractor {
	if x.Kind != NumberOrLetter {
		return x
	}
	if isAnswerLetter(strings.TrimSpace(gold)) {
		return &Extractor{Kind: Letter, re: reLetter}
	}
	return &Extractor{Kind: Number}
}

// Extract returns the predicted answer in text, or "" and false when the
// text holds none. A NumberOrLetter extractor extracts nothing: take the
// row's own with [Extractor.For].
func (x *Extractor) Extract(text string) (string, bool) {
	text = strings.TrimSpace(text)
	switch x.Kind {
	case NumberOrLetter:
		return "", false
	case Bool, Choice, Letter:
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
	case NumberOrLetter:
		return x.For(gold).Correct(pred, gold)
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
