package data

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testdata"
)

// sharedData returns the path of rel in the shared data folder, or skips.
func sharedData(t *testing.T, rel string) string {
	t.Helper()
	return testdata.Path(t, rel)
}

func TestPrompt(t *testing.T) {
	got := Prompt("Say hi.", "")
	want := "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
		"### Instruction:\nSay hi.\n\n### Response:\n"
	if got != want {
		t.Errorf("no input:\n%q\nwant\n%q", got, want)
	}
	got = Prompt("Translate.", "bonjour")
	want = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n" +
		"### Instruction:\nTranslate.\n\n### Input:\nbonjour\n\n### Response:\n"
	if got != want {
		t.Errorf("with input:\n%q\nwant\n%q", got, want)
	}
	ex := Example{Instruction: "Q", Output: "A"}
	if ex.Text() != Prompt("Q", "")+"A" {
		t.Errorf("Text = %q", ex.Text())
	}
}

func TestParseAdapters(t *testing.T) {
	good := `[
  {"instruction": "is water wet?", "input": "", "output": "the correct answer is true", "answer": "true"},
  {"instruction": "add", "input": "2 3", "output": "5", "answer": 5, "extra": [1]},
  {"instruction": "no answer", "output": "x"}
]`
	ex, err := ParseAdapters([]byte(good), "good.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []Example{
		{"is water wet?", "", "the correct answer is true", "true"},
		{"add", "2 3", "5", "5"},
		{"no answer", "", "x", ""},
	}
	if len(ex) != len(want) {
		t.Fatalf("got %d rows, want %d", len(ex), len(want))
	}
	for i := range want {
		if ex[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i+1, ex[i], want[i])
		}
	}

	bad := []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"empty", "", []string{"f.json", "empty"}},
		{"not a list", `{"instruction": "x"}`, []string{"f.json", "expected a JSON list", `"{"`}},
		{"row not object", "[\n {\"instruction\": \"a\", \"output\": \"b\"},\n 3\n]", []string{"f.json:3", "row 2", "expected an object", "a number"}},
		{"missing output", "[\n{\"instruction\": \"a\"}]", []string{"f.json:2", "row 1", `"output" is missing`}},
		{"instruction number", `[{"instruction": 7, "output": "b"}]`, []string{"row 1", `"instruction"`, "expected a string, found a number"}},
		{"empty instruction", `[{"instruction": "  ", "output": "b"}]`, []string{"row 1", `"instruction" is empty`}},
		{"input list", "[{\"instruction\": \"a\", \"output\": \"b\"},\n\n{\"instruction\": \"a\", \"input\": [1], \"output\": \"b\"}]", []string{"f.json:3", "row 2", `"input"`, "found a list"}},
		{"answer object", `[{"instruction": "a", "output": "b", "answer": {}}]`, []string{"row 1", `"answer"`, "found an object"}},
		{"truncated", `[{"instruction": "a", "output": "b"}, {"instr`, []string{"f.json:1", "row 2"}},
		{"syntax", "[\n{\"instruction\": \"a\" \"output\": \"b\"}]", []string{"f.json:2", "row 1", "invalid JSON"}},
		{"trailing", `[{"instruction": "a", "output": "b"}] [`, []string{"f.json:1", "after the closing"}},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseAdapters([]byte(c.in), "f.json")
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
}

func TestLoadAdaptersRealFiles(t *testing.T) {
	for _, c := range []struct {
		rel  string
		rows int
		kind AnswerKind
	}{
		{"datasets/llm-adapters/boolq/train.json", 9427, Bool},
		{"datasets/llm-adapters/boolq/test.json", 3270, Bool},
		{"datasets/llm-adapters/ARC-Easy/test.json", 2376, Choice},
		{"datasets/llm-adapters/gsm8k/test.json", 1319, Number},
		// math_10k: the arithmetic sets' numbers and AQuA's letters.
		{"datasets/llm-adapters/math_train/math_data.json", 3260, NumberOrLetter},
	} {
		t.Run(c.rel, func(t *testing.T) {
			rows, err := LoadAdapters(sharedData(t, c.rel))
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != c.rows {
				t.Errorf("%d rows, want %d", len(rows), c.rows)
			}
			golds := make([]string, len(rows))
			for i, r := range rows {
				golds[i] = r.Answer
			}
			x, err := NewExtractor(golds)
			if err != nil {
				t.Fatal(err)
			}
			if x.Kind != c.kind {
				t.Errorf("answer kind %v, want %v", x.Kind, c.kind)
			}
			if x.Kind == Number || x.Kind == NumberOrLetter {
				// The arithmetic sets' outputs are rationales written by a
				// model, often wrong; only the answer field is gold.
				return
			}
			// BoolQ's and ARC's outputs are "the correct answer is X":
			// extraction from them must agree with the answer on every row.
			wrong := 0
			for _, r := range rows {
				p, ok := x.Extract(r.Output)
				if !ok || !x.Correct(p, r.Answer) {
					wrong++
				}
			}
			if wrong != 0 {
				t.Errorf("extraction from the gold outputs disagrees with the answer on %d of %d rows", wrong, len(rows))
			}
		})
	}
}

func TestParseCoLA(t *testing.T) {
	good := "\xef\xbb\xbfgj04\t1\t\tOur friends won't buy this analysis.\r\n" +
		"gj04\t0\t*\tThe more we study verbs, the crazier they get get.\n\n"
	set, err := ParseCoLA([]byte(good), "c.tsv")
	if err != nil {
		t.Fatal(err)
	}
	want := []Labeled{{"Our friends won't buy this analysis.", 1}, {"The more we study verbs, the crazier they get get.", 0}}
	if len(set.Examples) != 2 || set.Examples[0] != want[0] || set.Examples[1] != want[1] {
		t.Errorf("got %+v, want %+v", set.Examples, want)
	}
	if c := set.Counts(); c[0] != 1 || c[1] != 1 {
		t.Errorf("counts %v", c)
	}
	bad := []struct {
		name, in string
		want     []string
	}{
		{"three fields", "a\t1\tsentence\n", []string{"c.tsv:1", "expected 4 tab-separated fields", "found 3"}},
		{"bad label", "a\t1\t\tok\nb\tyes\t\tno\n", []string{"c.tsv:2", "label", `"yes"`}},
		{"empty sentence", "a\t1\t\tok\n\nb\t0\t*\t \n", []string{"c.tsv:3", "sentence", "empty"}},
		{"no rows", "\n\n", []string{"c.tsv", "no rows"}},
		{"bad utf8", "a\t1\t\t\xff\xfe\n", []string{"c.tsv:1", "UTF-8"}},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseCoLA([]byte(c.in), "c.tsv")
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
}

func TestLoadCoLARealFiles(t *testing.T) {
	for _, c := range []struct {
		rel  string
		rows int
	}{
		{"datasets/cola/in_domain_train.tsv", 8551},
		{"datasets/cola/in_domain_dev.tsv", 527},
		{"datasets/cola/out_of_domain_dev.tsv", 516},
	} {
		set, err := LoadClassification(sharedData(t, c.rel))
		if err != nil {
			t.Fatal(err)
		}
		if len(set.Examples) != c.rows {
			t.Errorf("%s: %d rows, want %d", c.rel, len(set.Examples), c.rows)
		}
	}
}

func TestBoolQClassification(t *testing.T) {
	rows := []Example{
		{Instruction: "Please answer the following question with true or false, question: is the sky blue?\n\nAnswer format: true/false", Output: "the correct answer is true", Answer: "true"},
		{Instruction: "Is fire cold?", Output: "the correct answer is false"},
	}
	set, err := BoolQClassification(rows, "b.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []Labeled{{"is the sky blue?", 1}, {"Is fire cold?", 0}}
	for i := range want {
		if set.Examples[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i+1, set.Examples[i], want[i])
		}
	}
	_, err = BoolQClassification([]Example{rows[0], {Instruction: "x", Output: "maybe", Answer: "maybe"}}, "b.json")
	if err == nil || !strings.Contains(err.Error(), "row 2") || !strings.Contains(err.Error(), `"answer"`) {
		t.Errorf("error %v; want one naming row 2 and the answer field", err)
	}
}

// TestParseClassificationBoolQErrorLine checks that a BoolQ file whose
// answer is neither true nor false is an error naming the file, the line
// the row starts on, the row and the field.
func TestParseClassificationBoolQErrorLine(t *testing.T) {
	in := `[
  {"instruction": "is water wet?", "input": "", "output": "the correct answer is true", "answer": "true"},

  {"instruction": "is fire cold?",
   "input": "", "output": "perhaps", "answer": "maybe"}
]`
	_, err := ParseClassification([]byte(in), "b.json")
	if err == nil || !strings.Contains(err.Error(), `b.json:4: row 2: field "answer" is "maybe"`) {
		t.Errorf("error %v; want one naming b.json:4, row 2 and the answer field", err)
	}
}

func TestBoolQClassificationRealFile(t *testing.T) {
	set, err := LoadClassification(sharedData(t, "datasets/llm-adapters/boolq/test.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := set.Counts()
	if c[0] != 1237 || c[1] != 2033 {
		t.Errorf("class counts %v, want [1237 2033]", c)
	}
	if strings.Contains(set.Examples[0].Text, "Answer format") || strings.Contains(set.Examples[0].Text, "question:") {
		t.Errorf("text %q still holds the instruction's frame", set.Examples[0].Text)
	}
}

func TestExtractor(t *testing.T) {
	cases := []struct {
		golds      []string
		kind       AnswerKind
		text, pred string
		ok         bool
		gold       string
		correct    bool
	}{
		{[]string{"true", "false"}, Bool, "the correct answer is true", "true", true, "true", true},
		{[]string{"true", "false"}, Bool, "false, not true", "false", true, "true", false},
		{[]string{"true", "false"}, Bool, "I do not know", "", false, "true", false},
		{[]string{"answer1", "answer4"}, Choice, "the correct answer is answer3 or answer2", "answer3", true, "answer3", true},
		{[]string{"answer1", "answer4"}, Choice, "answer9", "", false, "answer1", false},
		{[]string{"option1", "option2"}, Choice, "option2", "option2", true, "option2", true},
		{[]string{"576.0", "3"}, Number, "A: 24 * 24 = 576. The answer is 576.", "576.", true, "576.0", true},
		{[]string{"576.0", "3"}, Number, "it costs 1,234 dollars", "1234", true, "1234.0", true},
		{[]string{"576.0", "3"}, Number, "-2.5 then -3", "-3", true, "-3", true},
		{[]string{"576.0", "3"}, Number, "12.0004", "12.0004", true, "12", true},
		{[]string{"576.0", "3"}, Number, "12.002", "12.002", true, "12", false},
		{[]string{"576.0", "3"}, Number, "no digits", "", false, "12", false},
		{[]string{"Paris", "Rome"}, Text, "  paris ", "paris", true, "Paris", true},
		// AQuA's letters: the first capital A to E, as LLM-Adapters takes it.
		{[]string{"A", "E"}, Letter, "so the answer is (C), not D", "C", true, "C", true},
		{[]string{"A", "E"}, Letter, "Answer: B", "A", true, "B", false},
		{[]string{"A", "E"}, Letter, "no letter here", "", false, "B", false},
		{[]string{"A", "12", "E"}, NumberOrLetter, "anything", "", false, "A", false},
		{[]string{"Paris", "A"}, Text, "a", "a", true, "A", true},
	}
	for i, c := range cases {
		x, err := NewExtractor(c.golds)
		if err != nil {
			t.Fatal(err)
		}
		if x.Kind != c.kind {
			t.Errorf("case %d: kind %v, want %v", i, x.Kind, c.kind)
		}
		p, ok := x.Extract(c.text)
		if p != c.pred || ok != c.ok {
			t.Errorf("case %d: Extract(%q) = %q, %v; want %q, %v", i, c.text, p, ok, c.pred, c.ok)
		}
		if got := x.Correct(p, c.gold); got != c.correct {
			t.Errorf("case %d: Correct(%q, %q) = %v, want %v", i, p, c.gold, got, c.correct)
		}
	}
	// A set of numbers and letters: each row by its gold answer's kind.
	mixed, err := NewExtractor([]string{"12", "C", "1,500"})
	if err != nil || mixed.Kind != NumberOrLetter {
		t.Fatalf("NewExtractor of numbers and letters: %v, %v", mixed, err)
	}
	for _, c := range []struct {
		text, gold, pred string
		kind             AnswerKind
		correct          bool
	}{
		{"A train goes 12 km in 1 hour, so 1500", "1500", "1500", Number, true},
		{"A train goes 12 km", "12", "12", Number, true},
		{"Options: the answer is C", "C", "C", Letter, true},
		{"Answer: E", "C", "A", Letter, false},
		{"the answer is 12", "C", "", Letter, false},
	} {
		x := mixed.For(c.gold)
		p, ok := x.Extract(c.text)
		if x.Kind != c.kind || p != c.pred || ok != (c.pred != "") || x.Correct(p, c.gold) != c.correct || mixed.Correct(p, c.gold) != c.correct {
			t.Errorf("mixed, gold %q: kind %v, Extract(%q) = %q, %v, correct %v; want %v, %q, %v", c.gold, x.Kind, c.text, p, ok, x.Correct(p, c.gold), c.kind, c.pred, c.correct)
		}
	}
	if _, err := NewExtractor(nil); err == nil {
		t.Error("no error for no answers")
	}
	if _, err := NewExtractor([]string{"true", ""}); err == nil || !strings.Contains(err.Error(), "row 2") {
		t.Errorf("error %v for an empty answer; want one naming row 2", err)
	}
}

func TestMCCClosedForm(t *testing.T) {
	// rep builds a prediction/label list from (pred, gold, count) triples.
	rep := func(cells ...[3]int) (p, g []int) {
		for _, c := range cells {
			for range c[2] {
				p = append(p, c[0])
				g = append(g, c[1])
			}
		}
		return
	}
	cases := []struct {
		name  string
		cells [][3]int
		want  float64
	}{
		{"perfect", [][3]int{{1, 1, 5}, {0, 0, 3}}, 1},
		{"inverted", [][3]int{{0, 1, 5}, {1, 0, 3}}, -1},
		// A vanishing denominator term gives 0, as scikit-learn's
		// matthews_corrcoef does, not NaN.
		{"constant prediction", [][3]int{{1, 1, 5}, {1, 0, 3}}, 0},
		{"constant label", [][3]int{{1, 1, 5}, {0, 1, 3}}, 0},
		{"one class, all correct", [][3]int{{0, 0, 4}}, 0},
		// TP 3, TN 2, FP 1, FN 1: (6−1)/√(4·4·3·3) = 5/12.
		{"tp3 tn2 fp1 fn1", [][3]int{{1, 1, 3}, {0, 0, 2}, {1, 0, 1}, {0, 1, 1}}, 5.0 / 12},
		// scikit-learn's documented example: [+1 +1 +1 −1] vs [+1 −1 +1 +1] is −1/3.
		{"sklearn example", [][3]int{{1, 1, 2}, {0, 1, 1}, {1, 0, 1}}, -1.0 / 3},
	}
	for _, c := range cases {
		p, g := rep(c.cells...)
		got, err := MCC(p, g, 2)
		if err != nil {
			t.Fatal(err)
		}
		if !(math.Abs(got-c.want) <= 1e-12) { // NaN fails too
			t.Errorf("%s: MCC = %v, want %v", c.name, got, c.want)
		}
	}
	if _, err := MCC([]int{0, 2}, []int{0, 1}, 2); err == nil {
		t.Error("no error for a class out of range")
	}
	if _, err := MCC([]int{0}, []int{0, 1}, 2); err == nil {
		t.Error("no error for mismatched lengths")
	}
}

// TestMCCMulticlass checks the K-class formula against its definition as
// the correlation of the one-hot prediction and label matrices, computed
// here the long way.
func TestMCCMulticlass(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		K := 2 + trial%4
		n := 5 + rng.IntN(40)
		p, g := make([]int, n), make([]int, n)
		for i := range n {
			g[i] = rng.IntN(K)
			p[i] = g[i]
			if rng.Float64() < 0.5 {
				p[i] = rng.IntN(K)
			}
		}
		got, err := MCC(p, g, K)
		if err != nil {
			t.Fatal(err)
		}
		cov := func(a, b []int) float64 {
			var s float64
			for k := range K {
				var ma, mb float64
				for i := range n {
					ma += b2f(a[i] == k)
					mb += b2f(b[i] == k)
				}
				ma /= float64(n)
				mb /= float64(n)
				for i := range n {
					s += (b2f(a[i] == k) - ma) * (b2f(b[i] == k) - mb)
				}
			}
			return s
		}
		want := 0.0
		if d := math.Sqrt(cov(p, p) * cov(g, g)); d > 0 {
			want = cov(p, g) / d
		}
		if !(math.Abs(got-want) <= 1e-9) { // NaN fails too
			t.Errorf("trial %d (K=%d n=%d): MCC %v, correlation of one-hot matrices %v", trial, K, n, got, want)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func TestAccuracyMajority(t *testing.T) {
	acc, err := Accuracy([]int{1, 0, 1, 1}, []int{1, 1, 1, 0})
	if err != nil || acc != 0.5 {
		t.Errorf("Accuracy = %v, %v; want 0.5", acc, err)
	}
	l, a, err := Majority([]int{0, 1, 1, 2, 1, 0})
	if err != nil || l != 1 || a != 0.5 {
		t.Errorf("Majority = %d, %v, %v; want 1, 0.5", l, a, err)
	}
	l, a, _ = Majority([]int{3, 2})
	if l != 2 || a != 0.5 {
		t.Errorf("tie: Majority = %d, %v; want 2 (the smaller), 0.5", l, a)
	}
	s, a, err := MajorityAnswer([]string{"true", "false", "true"})
	if err != nil || s != "true" || math.Abs(a-2.0/3) > 1e-15 {
		t.Errorf("MajorityAnswer = %q, %v, %v", s, a, err)
	}
	if _, _, err := Majority(nil); err == nil {
		t.Error("no error for no labels")
	}
}

// TestMajorityAnswerEquivalent checks that the majority answer counts the
// gold answers that one constant generation would score as correct:
// numbers by value, text ignoring case, numbers and letters apart.
func TestMajorityAnswerEquivalent(t *testing.T) {
	for _, c := range []struct {
		golds []string
		want  string
		acc   float64
	}{
		// "2", "2.0" and "2.00" are one answer (3 of 5); "3" has 2.
		{[]string{"3", "2.0", "2", "3", "2.00"}, "2", 3.0 / 5},
		// "1,500" is 1500 (and the smaller string of the two).
		{[]string{"1500", "7", "1,500"}, "1,500", 2.0 / 3},
		// 0.0005 is within 0.001 of 0, "0.01" is not.
		{[]string{"0.01", "0.0005", "7", "0"}, "0", 2.0 / 4},
		// Text answers ignore case and surrounding space.
		{[]string{"Rome", "paris", "Paris", "Rome", " PARIS"}, " PARIS", 3.0 / 5},
		// Numbers and letters (math_10k): a letter never scores a number.
		{[]string{"C", "C", "3", "3.0", "3"}, "3", 3.0 / 5},
		// Exact kinds are unchanged.
		{[]string{"answer2", "answer1", "answer2"}, "answer2", 2.0 / 3},
	} {
		got, acc, err := MajorityAnswer(c.golds)
		if err != nil || got != c.want || math.Abs(acc-c.acc) > 1e-15 {
			t.Errorf("MajorityAnswer(%q) = %q, %v, %v; want %q, %v", c.golds, got, acc, err, c.want, c.acc)
		}
	}
	if _, _, err := MajorityAnswer([]string{"1", " "}); err == nil {
		t.Error("no error for a blank answer")
	}
}

// TestMajorityAnswerRealFiles checks the baselines of real sets against
// counts made independently (Python's collections.Counter over the answer
// fields, numbers as float): math_10k's most frequent value 2 is written
// "2" twice and "2.0" 125 times.
func TestMajorityAnswerRealFiles(t *testing.T) {
	for _, c := range []struct {
		rel   string
		value float64
		hits  int
	}{
		{"datasets/llm-adapters/math_train/math_data.json", 2, 127},
		{"datasets/llm-adapters/gsm8k/test.json", 5, 40},
	} {
		rows, err := LoadAdapters(sharedData(t, c.rel))
		if err != nil {
			t.Fatal(err)
		}
		golds := make([]string, len(rows))
		for i, r := range rows {
			golds[i] = r.Answer
		}
		a, acc, err := MajorityAnswer(golds)
		if err != nil {
			t.Fatal(err)
		}
		v, perr := strconv.ParseFloat(a, 64)
		if perr != nil || v != c.value || acc != float64(c.hits)/float64(len(rows)) {
			t.Errorf("%s: majority %q, %v (%v of %d rows); want the value %v, %d rows", c.rel, a, acc, acc*float64(len(rows)), len(rows), c.value, c.hits)
		}
	}
}

// charEncoder encodes one token per byte (id = byte + 3), BOS 1, EOS 2.
type charEncoder struct{}

func (charEncoder) Encode(s string, bos, eos bool) []int {
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

func TestEncodeLM(t *testing.T) {
	rows := []Example{{Instruction: "a", Output: "xyz"}, {Instruction: strings.Repeat("long ", 60), Output: "q"}}
	pl := len(rows[0].Prompt()) + 1
	seqs, st, err := EncodeLM(charEncoder{}, rows, pl+4)
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 1 || st.Dropped != 1 {
		t.Fatalf("%d sequences, %d dropped; want 1 and 1 (the long prompt leaves no answer)", len(seqs), st.Dropped)
	}
	s := seqs[0]
	if s.PromptLen != pl || len(s.Tokens) != pl+4 || s.Tokens[len(s.Tokens)-1] != 2 || s.Tokens[0] != 1 {
		t.Errorf("prompt %d of %d tokens (last %d); want %d of %d ending in EOS", s.PromptLen, len(s.Tokens), s.Tokens[len(s.Tokens)-1], pl, pl+4)
	}
	if st.Trained != 4 || Targets(seqs, []int{0}, false) != 4 {
		t.Errorf("trained %d / targets %d; want 4 (x, y, z, EOS)", st.Trained, Targets(seqs, []int{0}, false))
	}
	// One token shorter: EOS is cut, as LLM-Adapters adds it only when it fits.
	seqs, st, _ = EncodeLM(charEncoder{}, rows[:1], pl+3)
	if st.Truncated != 1 || seqs[0].Tokens[len(seqs[0].Tokens)-1] == 2 {
		t.Errorf("truncated %d, last token %d; want 1 and no EOS", st.Truncated, seqs[0].Tokens[len(seqs[0].Tokens)-1])
	}
}

// TestEncodePrompts checks where prompts are cut: only one that fills
// maxLen positions, to BOS and its last maxLen−2 tokens (its last maxLen−1
// where the tokenizer adds no BOS); and that no
// maxLen disables the limit (0 and 1 did, so that --max-new-tokens 511 or
// 600 left 512-position prompts whole while 400 cut them to 111 tokens).
func TestEncodePrompts(t *testing.T) {
	rows := []Example{{Instruction: "a"}, {Instruction: "bb"}}
	whole := [][]int{charEncoder{}.Encode(rows[0].Prompt(), true, false), charEncoder{}.Encode(rows[1].Prompt(), true, false)}
	n := len(whole[0]) // the second prompt is one token longer
	for _, tc := range []struct {
		name      string
		maxLen    int
		truncated int
	}{
		{"both fit", n + 3, 0},
		{"one position left for the longer", n + 2, 0},
		{"the longer fills maxLen", n + 1, 1},
		{"both fill maxLen", n, 2},
		{"both longer than maxLen", n - 5, 2},
		{"shortest limit", 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, st, err := EncodePrompts(charEncoder{}, rows, tc.maxLen)
			if err != nil {
				t.Fatal(err)
			}
			tokens := 0
			for i, p := range got {
				want := whole[i]
				if len(want) >= tc.maxLen {
					want = append([]int{1}, want[len(want)-(tc.maxLen-2):]...)
				}
				if !reflect.DeepEqual(p, want) {
					t.Errorf("prompt %d: %v\nwant %v", i, p, want)
				}
				if len(p) > tc.maxLen-1 || p[0] != 1 {
					t.Errorf("prompt %d: %d tokens starting %d; want at most %d starting with BOS", i, len(p), p[0], tc.maxLen-1)
				}
				tokens += len(p)
			}
			if st.Truncated != tc.truncated || st.Tokens != tokens {
				t.Errorf("stats %+v; want %d truncated, %d tokens", st, tc.truncated, tokens)
			}
		})
	}
	// A tokenizer that adds no BOS (GPT-2's): a cut prompt is its last
	// maxLen−1 tokens, its first text token not kept as if it were BOS.
	for _, maxLen := range []int{2, 5, n - 1} {
		got, st, err := EncodePrompts(noBOSEncoder{}, rows, maxLen)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range got {
			text := noBOSEncoder{}.Encode(rows[i].Prompt(), true, false)
			if want := text[len(text)-(maxLen-1):]; !reflect.DeepEqual(p, want) {
				t.Errorf("no BOS, maxLen %d: prompt %d is %v, want its last %d tokens %v", maxLen, i, p, maxLen-1, want)
			}
		}
		if st.Truncated != 2 {
			t.Errorf("no BOS, maxLen %d: %d truncated, want 2", maxLen, st.Truncated)
		}
	}
	for _, maxLen := range []int{1, 0, -3} {
		if _, _, err := EncodePrompts(charEncoder{}, rows, maxLen); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("maximum prompt length %d", maxLen)) {
			t.Errorf("maxLen %d: error %v; want one naming the length", maxLen, err)
		}
	}
}

func TestMakeBatch(t *testing.T) {
	seqs := []Sequence{{Tokens: []int32{1, 5, 6}, PromptLen: 2}, {Tokens: []int32{1, 7}, Label: 1}, {Tokens: []int32{1, 8, 9, 10}, PromptLen: 1}}
	b, err := MakeBatch(seqs, []int{2, 1})
	if err != nil {
		t.Fatal(err)
	}
	want := []int32{1, 8, 9, 10, 1, 7, 0, 0}
	if b.Size != 2 || b.Len != 4 || len(b.Tokens) != 8 {
		t.Fatalf("batch %d×%d", b.Size, b.Len)
	}
	for i := range want {
		if b.Tokens[i] != want[i] {
			t.Fatalf("tokens %v, want %v", b.Tokens, want)
		}
	}
	if b.Lengths[0] != 4 || b.Lengths[1] != 2 || b.PromptLens[0] != 1 || b.Labels[1] != 1 {
		t.Errorf("lengths %v prompts %v labels %v", b.Lengths, b.PromptLens, b.Labels)
	}
	if n := Targets(seqs, []int{0, 1, 2}, false); n != 1+1+3 {
		t.Errorf("targets %d, want 5", n)
	}
	if _, err := MakeBatch(seqs, []int{3}); err == nil {
		t.Error("no error for an index out of range")
	}
}

func FuzzParseAdapters(f *testing.F) {
	f.Add([]byte(`[{"instruction": "a", "input": "", "output": "b", "answer": "true"}]`))
	f.Add([]byte(`[{"instruction": "a", "output": "b", "answer": 3.5}, {"instruction": "c", "output": ""}]`))
	f.Add([]byte(`[1, {"x": 2}]`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ex, err := ParseAdapters(b, "fuzz.json")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.json") {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		for i, e := range ex {
			if strings.TrimSpace(e.Instruction) == "" {
				t.Errorf("row %d accepted with an empty instruction", i+1)
			}
		}
		// What was accepted survives a round trip.
		again, err := json.Marshal(ex)
		if err != nil {
			t.Fatal(err)
		}
		if len(ex) == 0 {
			again = []byte("[]")
		}
		ex2, err := ParseAdapters(again, "again.json")
		if err != nil {
			t.Fatalf("re-encoded rows rejected: %v", err)
		}
		if len(ex2) != len(ex) {
			t.Fatalf("round trip: %d rows, then %d", len(ex), len(ex2))
		}
		for i := range ex {
			if ex[i] != ex2[i] {
				t.Errorf("row %d: %+v, after a round trip %+v", i+1, ex[i], ex2[i])
			}
		}
	})
}

func FuzzParseCoLA(f *testing.F) {
	f.Add([]byte("gj04\t1\t\tA sentence.\n"))
	f.Add([]byte("gj04\t0\t*\tBad sentence sentence.\r\nx\t1\t\ty\n"))
	f.Add([]byte("a\tb\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := ParseCoLA(b, "fuzz.tsv")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.tsv") {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		for i, e := range set.Examples {
			if e.Label != 0 && e.Label != 1 {
				t.Errorf("row %d: label %d", i+1, e.Label)
			}
			if strings.TrimSpace(e.Text) == "" || strings.ContainsAny(e.Text, "\t\n") {
				t.Errorf("row %d: sentence %q", i+1, e.Text)
			}
		}
	})
}

// noBOSEncoder is charEncoder for a tokenizer without BOS or EOS.
type noBOSEncoder struct{}

func (noBOSEncoder) Encode(s string, bos, eos bool) []int {
	return charEncoder{}.Encode(s, false, false)
}

// TestEncodeClassifyEmptyWithoutBOS checks that a text that encodes to no
// tokens at all (empty, with a tokenizer that adds no BOS) is an error
// naming the example, not a sequence without a last token.
func TestEncodeClassifyEmptyWithoutBOS(t *testing.T) {
	set := &ClassifySet{Classes: []string{"no", "yes"}, Examples: []Labeled{{Text: "ok", Label: 1}, {Text: "", Label: 0}}}
	if _, _, err := EncodeClassify(charEncoder{}, set, 8); err != nil {
		t.Fatalf("with BOS, an empty text is the sequence [BOS]: %v", err)
	}
	_, _, err := EncodeClassify(noBOSEncoder{}, set, 8)
	if err == nil || !strings.Contains(err.Error(), "example 2 has no tokens") {
		t.Fatalf("error %v, want one naming example 2", err)
	}
}

func FuzzParseClassification(f *testing.F) {
	f.Add([]byte("gj04\t1\t\tA sentence.\n"), true)
	f.Add([]byte(`[{"instruction": "Please answer the following question with true or false, question: is it?\n\nAnswer format: true/false", "input": "", "output": "the correct answer is true", "answer": "true"}]`), false)
	f.Add([]byte(`[{"instruction": "x", "output": "the correct answer is false"}, {"instruction": "y", "output": "no", "answer": "maybe"}]`), false)
	f.Fuzz(func(t *testing.T, b []byte, tsv bool) {
		name := "fuzz.json"
		if tsv {
			name = "fuzz.tsv"
		}
		set, err := ParseClassification(b, name)
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		if len(set.Classes) != 2 || len(set.Examples) == 0 {
			t.Fatalf("%d classes, %d examples", len(set.Classes), len(set.Examples))
		}
		for i, e := range set.Examples {
			if e.Label != 0 && e.Label != 1 {
				t.Errorf("row %d: label %d", i+1, e.Label)
			}
		}
	})
}

// FuzzExtractor runs the answer extraction on gold answers from a data
// file (one per line here) and generated text, both outside input.
func FuzzExtractor(f *testing.F) {
	f.Add("true\nfalse", "the correct answer is true")
	f.Add("answer1\nanswer4", "answer3 or answer2")
	f.Add("576.0\n1,500\n-3", "24 * 24 = 576. The answer is 1,576.")
	f.Add("A\n12\nE", "so (C), 12")
	f.Add("Paris\nRome", "  paris ")
	f.Add("solution2\n\n", "x")
	f.Fuzz(func(t *testing.T, goldLines, text string) {
		golds := strings.Split(goldLines, "\n")
		x, err := NewExtractor(golds)
		blank := false
		for _, g := range golds {
			blank = blank || strings.TrimSpace(g) == ""
		}
		if (err != nil) != blank {
			t.Fatalf("NewExtractor(%q): %v; a blank answer among them: %v", golds, err, blank)
		}
		if err != nil {
			return
		}
		for _, g := range golds {
			rx := x.For(g)
			if rx.Kind == NumberOrLetter || (x.Kind != NumberOrLetter && rx != x) {
				t.Fatalf("For(%q) of a %v extractor is a %v extractor", g, x.Kind, rx.Kind)
			}
			p, ok := rx.Extract(text)
			if ok != (p != "") {
				t.Errorf("%v: Extract(%q) = %q, %v", rx.Kind, text, p, ok)
			}
			if src := strings.ReplaceAll(text, ",", ""); ok && !strings.Contains(src, p) && !strings.Contains(text, p) {
				t.Errorf("%v: Extract(%q) = %q, which the text does not hold", rx.Kind, text, p)
			}
			if rx.Correct(p, g) != x.Correct(p, g) {
				t.Errorf("Correct(%q, %q) differs between the set's and the row's extractor", p, g)
			}
			// Bool, Letter and Text answers generated as they are written
			// are correct (numbers need not be: "1e5" is a number to
			// ParseFloat but not to the extraction, as in LLM-Adapters).
			if k := rx.Kind; k == Bool || k == Letter || k == Text {
				if q, ok := rx.Extract(g); !ok || !rx.Correct(q, g) {
					t.Errorf("%v: gold %q generated verbatim extracts %q, %v, not correct", k, g, q, ok)
				}
			}
		}
		a, acc, err := MajorityAnswer(golds)
		if err != nil || acc < 0 || acc > 1 || !slices.Contains(golds, a) {
			t.Errorf("MajorityAnswer(%q) = %q, %v, %v", golds, a, acc, err)
		}
	})
}

func TestScoredResponse(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"the answer is 42", "the answer is 42"},
		{"42\n\n### Instruction:\nAdd 3 and 4.\n\n### Response:\n7", "42\n\n### Instruction:\nAdd 3 and 4.\n\n"},
		{"### Response: 5", ""},
		{"", ""},
		{"true ### Response: false ### Response: true", "true "},
	} {
		if got := ScoredResponse(c.in); got != c.want {
			t.Errorf("ScoredResponse(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// The marker is the one every prompt ends with.
	if p := Prompt("Say hi.", ""); !strings.HasSuffix(p, "### Response:\n") || ScoredResponse(p) == p {
		t.Errorf("Prompt ends %q; ScoredResponse does not cut at its marker", p[len(p)-20:])
	}
}
