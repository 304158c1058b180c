package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/internal/testdata"
)

func TestParseHoldout(t *testing.T) {
	for _, c := range []struct {
		in, want string // want: String(); "" for a refusal
		frac     bool
		err      string
	}{
		{in: "0.05", want: "0.05", frac: true},
		{in: " .05 ", want: "0.05", frac: true},
		{in: "5e-2", want: "0.05", frac: true},
		{in: "1/20", want: "0.05", frac: true},
		{in: "0.999", want: "0.999", frac: true},
		{in: "0.1000000000000000000001", want: "0.1000000000000000000001", frac: true},
		{in: "0.10", want: "0.1", frac: true},
		{in: "1/3", want: "1/3", frac: true},
		{in: "2/6", want: "1/3", frac: true},
		{in: "3/8", want: "0.375", frac: true},
		{in: "1e-30", want: "0.000000000000000000000000000001", frac: true},
		{in: "1", want: "1"},
		{in: "200", want: "200"},
		{in: "0200", want: "200"},
		{in: "0", err: "want a fraction of the rows in (0, 1)"},
		{in: "0.0", err: "want a fraction"},
		{in: "-3", err: "want a fraction"},
		{in: "-0.1", err: "want a fraction"},
		{in: "1.0", err: "a number of rows is written as a whole number (1)"},
		{in: "2e3", err: "a number of rows is written as a whole number (2000)"},
		{in: "1/1", err: "a fraction must be below 1"},
		{in: "1.5", err: "1.5: want a fraction"},
		{in: "NaN", err: `"NaN" is not a number`},
		{in: "Inf", err: `"Inf" is not a number`},
		{in: "5%", err: `"5%" is not a number`},
		{in: "", err: "empty"},
	} {
		h, err := ParseHoldout(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseHoldout(%q) = %v, %v; want an error with %q", c.in, h, err, c.err)
			}
			continue
		}
		if err != nil || h.String() != c.want || h.IsZero() {
			t.Errorf("ParseHoldout(%q) = %q, %v; want %q", c.in, h, err, c.want)
			continue
		}
		if _, isFrac := h.Fraction(); isFrac != c.frac {
			t.Errorf("ParseHoldout(%q): fraction %v, want %v", c.in, isFrac, c.frac)
		}
		// What String records reads back as the same split.
		if back, err := ParseHoldout(h.String()); err != nil || back.String() != h.String() {
			t.Errorf("ParseHoldout(%q) = %q, %v; want it read back as %q", h.String(), back, err, h.String())
		}
		for _, n := range []int{10, 300, 1 << 40} {
			k, err := h.Size(n)
			back, _ := ParseHoldout(h.String())
			if kb, errb := back.Size(n); kb != k || (err == nil) != (errb == nil) {
				t.Errorf("%q holds out %d of %d rows (%v), but %q, as String records it, %d (%v)", c.in, k, n, err, h.String(), kb, errb)
			}
		}
	}
	if !(Holdout{}).IsZero() || (Holdout{}).String() != "" {
		t.Error("the zero Holdout is not zero")
	}
}

// TestHoldoutSizeExact checks the rounding of every fraction 0.001 …
// 0.999 of 1 … 120 rows against integer arithmetic: ceil(i·n/1000),
// written as (i·n + 999) / 1000. The float64 product rounds some of them
// the wrong way (0.07 · 100 = 7.000000000000001, whose ceiling is 8).
func TestHoldoutSizeExact(t *testing.T) {
	f, n := 0.07, 100.0 // variables: Go's constant arithmetic is exact
	if math.Ceil(f*n) != 8 {
		t.Fatal("the float64 case this test guards against no longer arises; pick another")
	}
	for i := 1; i < 1000; i++ {
		h, err := ParseHoldout(fmt.Sprintf("0.%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		for n := 1; n <= 120; n++ {
			want := (i*n + 999) / 1000
			k, err := h.Size(n)
			switch {
			case n < 2 || want >= n:
				if err == nil {
					t.Fatalf("%s of %d: %d rows, want a refusal (%d would leave no training row)", h, n, k, want)
				}
			case err != nil || k != want:
				t.Fatalf("%s of %d: %d, %v; want %d", h, n, k, err, want)
			}
		}
	}
}

func TestHoldoutSize(t *testing.T) {
	for _, c := range []struct {
		split string
		n     int
		want  int
		err   string
	}{
		{"0.05", 1000, 50, ""},
		{"0.07", 100, 7, ""},
		{"0.05", 10, 1, ""}, // 0.5 rounds up: a fraction holds out at least one row
		{"0.001", 2, 1, ""},
		{"0.5", 3, 2, ""},
		{"1/3", 3, 1, ""},
		{"0.3333", 3, 1, ""},
		{"0.9", 10, 9, ""},
		{"0.99", 50, 0, "0.99 of 50 rows is 50 rows, rounded up, leaving no row to train on (hold out at most 49: a fraction up to 0.98)"},
		{"5", 10, 5, ""},
		{"9", 10, 9, ""},
		{"10", 10, 0, "10 rows of 10 leaves no row to train on (hold out at most 9)"},
		{"11", 10, 0, "leaves no row to train on"},
		{"1", 1, 0, "a split needs at least 2 rows"},
		{"0.5", 1, 0, "0.5 of 1 row leaves nothing"},
	} {
		h, err := ParseHoldout(c.split)
		if err != nil {
			t.Fatal(err)
		}
		k, err := h.Size(c.n)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s of %d: %d, %v; want an error with %q", c.split, c.n, k, err, c.err)
			}
			continue
		}
		if err != nil || k != c.want {
			t.Errorf("%s of %d: %d, %v; want %d", c.split, c.n, k, err, c.want)
		}
	}
	if _, err := (Holdout{}).Size(10); err == nil {
		t.Error("the zero Holdout has a size")
	}
}

// checkSplit checks that train and held partition 0 … n-1, each ascending,
// with k held out.
func checkSplit(t *testing.T, n, k int, train, held []int) {
	t.Helper()
	if len(held) != k || len(train) != n-k {
		t.Fatalf("%d train and %d held-out rows of %d; want %d and %d", len(train), len(held), n, n-k, k)
	}
	if !slices.IsSorted(train) || !slices.IsSorted(held) {
		t.Fatalf("not in file order: train %v, held %v", train, held)
	}
	seen := make([]int, n)
	for _, i := range append(slices.Clone(train), held...) {
		if i < 0 || i >= n {
			t.Fatalf("row %d of %d", i, n)
		}
		seen[i]++
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("row %d is in %d of the two parts", i, c)
		}
	}
}

func TestSplit(t *testing.T) {
	for _, c := range []struct{ n, k int }{{2, 1}, {10, 1}, {10, 9}, {100, 37}, {1000, 50}} {
		train, held, err := Split(c.n, c.k, 42, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkSplit(t, c.n, c.k, train, held)
		// The same seed gives the same split; another seed another
		// (where there is more than one possible).
		train2, held2, _ := Split(c.n, c.k, 42, nil)
		if !slices.Equal(train, train2) || !slices.Equal(held, held2) {
			t.Errorf("n %d k %d: seed 42 split differently twice", c.n, c.k)
		}
		if c.n >= 100 {
			if _, other, _ := Split(c.n, c.k, 43, nil); slices.Equal(held, other) {
				t.Errorf("n %d k %d: seeds 42 and 43 hold out the same rows", c.n, c.k)
			}
		}
	}
	for _, c := range []struct {
		n, k   int
		labels []int
	}{{5, 0, nil}, {5, 5, nil}, {5, -1, nil}, {3, 1, []int{0, 1}}, {3, 1, []int{0, -1, 1}}} {
		if _, _, err := Split(c.n, c.k, 1, c.labels); err == nil {
			t.Errorf("Split(%d, %d, labels %v) accepted", c.n, c.k, c.labels)
		}
	}
}

// TestSplitUniform checks that every row is held out about as often as any
// other over many seeds: k/n of the time, within 5 standard deviations of
// a binomial count.
func TestSplitUniform(t *testing.T) {
	const n, k, seeds = 10, 3, 4000
	count := make([]int, n)
	for s := range uint64(seeds) {
		_, held, err := Split(n, k, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range held {
			count[i]++
		}
	}
	p := float64(k) / n
	sd := math.Sqrt(seeds * p * (1 - p))
	for i, c := range count {
		if math.Abs(float64(c)-seeds*p) > 5*sd {
			t.Errorf("row %d held out %d times in %d seeds; want about %.0f ± %.0f", i, c, seeds, seeds*p, 5*sd)
		}
	}
}

// TestSplitStratified checks that a stratified split holds out each label
// in proportion, k·n_c/n rounded down or up, with k in all, and that the
// rounding goes to the largest remainders.
func TestSplitStratified(t *testing.T) {
	for _, c := range []struct {
		counts []int // rows per label
		k      int
		want   []int // held out per label
	}{
		{[]int{50, 50}, 10, []int{5, 5}},
		{[]int{90, 10}, 10, []int{9, 1}},
		{[]int{70, 30}, 5, []int{4, 1}},        // 3.5 and 1.5: the tie goes one way, at random
		{[]int{97, 3}, 10, []int{10, 0}},       // 9.7 and 0.3: the larger remainder gets the row
		{[]int{60, 25, 15}, 7, []int{4, 2, 1}}, // 4.2, 1.75, 1.05
		{[]int{1, 1, 1, 1}, 2, nil},            // four ties for two rows
		{[]int{3, 0, 5}, 4, nil},               // a label with no rows (2 is used, 1 is not)
	} {
		var labels []int
		for l, n := range c.counts {
			for range n {
				labels = append(labels, l)
			}
		}
		// Mixed, as a file would have them.
		rand.New(rand.NewPCG(1, 2)).Shuffle(len(labels), func(i, j int) { labels[i], labels[j] = labels[j], labels[i] })
		n := len(labels)
		train, held, err := Split(n, c.k, 42, labels)
		if err != nil {
			t.Fatal(err)
		}
		checkSplit(t, n, c.k, train, held)
		got := make([]int, len(c.counts))
		for _, i := range held {
			got[labels[i]]++
		}
		for l, nc := range c.counts {
			lo := c.k * nc / n
			hi := (c.k*nc + n - 1) / n
			if got[l] < lo || got[l] > hi {
				t.Errorf("counts %v, k %d: label %d held out %d times; want %d to %d", c.counts, c.k, l, got[l], lo, hi)
			}
		}
		tie := c.counts[0] == 70 && reflect.DeepEqual(got, []int{3, 2}) // the other way to break the tie
		if c.want != nil && !reflect.DeepEqual(got, c.want) && !tie {
			t.Errorf("counts %v, k %d: held out %v per label; want %v", c.counts, c.k, got, c.want)
		}
		_, again, _ := Split(n, c.k, 42, labels)
		if !slices.Equal(held, again) {
			t.Errorf("counts %v: a stratified split is not the same twice", c.counts)
		}
	}
}

func TestReadRowsSubset(t *testing.T) {
	type row struct {
		Instruction string `json:"instruction"`
		Input       string `json:"input"`
		Output      string `json:"output"`
		Answer      any    `json:"answer,omitempty"`
		Extra       string `json:"extra,omitempty"`
	}
	rows := []row{
		{Instruction: "Is 1 odd?", Output: "the correct answer is true", Answer: "true"},
		{Instruction: "Is 2 odd?", Output: "the correct answer is false", Answer: "false", Extra: "kept as written"},
		{Instruction: "Is [3] odd? \"yes\", \\ and ]", Output: "the correct answer is true", Answer: "true"},
		{Instruction: "Is 4 odd?\n\nAnswer format: true/false", Input: "x", Output: "the correct answer is false", Answer: "false"},
	}
	indented, err := json.MarshalIndent(rows, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	indented = append(indented, '\n')
	compact, _ := json.Marshal(rows)
	var jsonl, crlf bytes.Buffer
	for i, r := range rows {
		b, _ := json.Marshal(r)
		jsonl.Write(b)
		jsonl.WriteString("\n\n")
		crlf.Write(b)
		crlf.WriteString("\r\n")
		if i == 1 {
			crlf.WriteString("  \r\n")
		}
	}
	cola := "\xef\xbb\xbfgj04\t1\t\tThe cat sat.\r\n\nsrc\t0\t*\tCat the sat.\r\nsrc\t1\t\tA dog ran.\n   \nsrc\t0\t**\tRan dog a.\n"
	keep := []int{3, 0, 2}
	for _, c := range []struct {
		name   string
		file   string
		b      []byte
		layout Layout
	}{
		{"indented list", "a.json", indented, JSONList},
		{"compact list", "a.json", compact, JSONList},
		{"JSON Lines", "a.jsonl", jsonl.Bytes(), JSONLines},
		{"JSON Lines, CRLF", "a.json", crlf.Bytes(), JSONLines},
		{"CoLA", "a.TSV", []byte(cola), TSV},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := ReadRows(c.b, c.file)
			if err != nil {
				t.Fatal(err)
			}
			if f.Layout != c.layout || len(f.Rows) != 4 {
				t.Fatalf("layout %v with %d rows; want %v with 4", f.Layout, len(f.Rows), c.layout)
			}
			sub, err := f.Subset(keep)
			if err != nil {
				t.Fatal(err)
			}
			out := "sub" + c.layout.Ext()
			if c.layout == TSV {
				all, err := ParseClassification(c.b, c.file)
				if err != nil {
					t.Fatal(err)
				}
				got, err := ParseClassification(sub, out)
				if err != nil {
					t.Fatalf("the subset does not read back: %v\n%s", err, sub)
				}
				for j, i := range keep {
					if got.Examples[j] != all.Examples[i] {
						t.Errorf("subset row %d: %+v; want row %d's %+v", j+1, got.Examples[j], i+1, all.Examples[i])
					}
				}
				return
			}
			all, err := Parse(c.b, c.file)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(sub, out)
			if err != nil {
				t.Fatalf("the subset does not read back: %v\n%s", err, sub)
			}
			if got.Format != all.Format || len(got.Rows) != len(keep) {
				t.Fatalf("subset: %d rows of %v; want %d of %v", len(got.Rows), got.Format, len(keep), all.Format)
			}
			for j, i := range keep {
				g, w := got.Rows[j], all.Rows[i]
				g.Line, w.Line = 0, 0
				if !reflect.DeepEqual(g, w) {
					t.Errorf("subset row %d: %+v; want row %d's %+v", j+1, g, i+1, w)
				}
			}
			// The rows are the file's text, fields it does not read too.
			if !bytes.Contains(sub, []byte(`"extra":"kept as written"`)) && !bytes.Contains(sub, []byte(`"extra": "kept as written"`)) {
				if slices.Contains(keep, 1) {
					t.Errorf("the subset lost a field:\n%s", sub)
				}
			}
			// BoolQ as classification data reads the same rows.
			if c.layout == JSONList {
				cl, err := ParseClassification(c.b, "a.json")
				if err != nil {
					t.Fatal(err)
				}
				sc, err := ParseClassification(sub, "sub.json")
				if err != nil {
					t.Fatal(err)
				}
				for j, i := range keep {
					if sc.Examples[j] != cl.Examples[i] {
						t.Errorf("classification subset row %d: %+v; want %+v", j+1, sc.Examples[j], cl.Examples[i])
					}
				}
			}
		})
	}
	// An indented list comes back as it was written, indents and all.
	f, _ := ReadRows(indented, "a.json")
	if all, _ := f.Subset([]int{0, 1, 2, 3}); !bytes.Equal(all, indented) {
		t.Errorf("every row of an indented list, as written:\n%s\nwant\n%s", all, indented)
	}
	if sub, _ := f.Subset([]int{1}); !bytes.HasPrefix(sub, []byte("[\n    {\n        \"instruction\"")) || !bytes.HasSuffix(sub, []byte("\n    }\n]\n")) {
		t.Errorf("one row of an indented list:\n%s", sub)
	}
	if none, _ := f.Subset(nil); string(none) != "[\n]\n" {
		t.Errorf("no rows: %q", none)
	}
	if _, err := f.Subset([]int{4}); err == nil || !strings.Contains(err.Error(), "row 5 of a file of 4 rows") {
		t.Errorf("row out of range: %v", err)
	}
	for _, c := range []struct{ b, want string }{
		{"", "the file is empty"},
		{"  \n", "the file is empty"},
		{"x", "bad.json:1: expected a JSON list"},
		{"[{}, ", "bad.json"},
		{"{\"a\": 1}\n{", "bad.json:2: row 2: invalid JSON"},
	} {
		if _, err := ReadRows([]byte(c.b), "bad.json"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ReadRows(%q): %v; want an error with %q", c.b, err, c.want)
		}
	}
}

// TestReadRowsReal reads LLM-Adapters' math_train, a JSON list written by
// Python's json.dump(indent=4): every row as written, and the file back
// byte for byte but for its final newline.
func TestReadRowsReal(t *testing.T) {
	path := testdata.Path(t, "datasets/llm-adapters/math_train/math_data.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	set, err := Parse(b, path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ReadRows(b, path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Layout != JSONList || len(f.Rows) != len(set.Rows) {
		t.Fatalf("%v with %d rows; Parse reads %d", f.Layout, len(f.Rows), len(set.Rows))
	}
	all := make([]int, len(f.Rows))
	for i := range all {
		all[i] = i
	}
	whole, err := f.Subset(all)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimRight(whole, "\n"), bytes.TrimRight(b, "\n")) {
		t.Errorf("the whole file through Subset differs from the file (%d and %d bytes)", len(whole), len(b))
	}
}

// FuzzReadRows checks that ReadRows never panics, and that for a file the
// readers accept it finds the same rows, which Subset writes out so that
// the readers read them back, in the order asked.
func FuzzReadRows(f *testing.F) {
	f.Add([]byte(`[{"instruction": "a", "input": "", "output": "b", "answer": "true"}, {"instruction": "c", "output": "d"}]`), false)
	f.Add([]byte("{\"prompt\": \"p\", \"completion\": \"c\"}\n\n{\"prompt\": \"\", \"completion\": \"d\", \"answer\": 3}\n"), false)
	f.Add([]byte("[\n  {\"text\": \"a ]\"},\n\t{\"text\": \"x\"}\n]"), false)
	f.Add([]byte("\xef\xbb\xbf[{\"text\": \"a\"},{\"text\": \"a\"}]"), false)
	f.Add([]byte("gj04\t1\t\tA sentence.\r\n\nx\t0\t*\ty z\n"), true)
	f.Fuzz(func(t *testing.T, b []byte, tsv bool) {
		name := "fuzz.json"
		if tsv {
			name = "fuzz.tsv"
		}
		rf, err := ReadRows(b, name)
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name the file", err)
			}
		}
		if tsv {
			set, err := ParseCoLA(b, name)
			if err != nil {
				return
			}
			if rf == nil || len(rf.Rows) != len(set.Examples) {
				t.Fatalf("ReadRows: %v; ParseCoLA reads %d rows", err, len(set.Examples))
			}
			keep := reversed(len(rf.Rows))
			sub, err := rf.Subset(keep)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseCoLA(sub, "sub.tsv")
			if err != nil {
				t.Fatalf("the subset does not read back: %v", err)
			}
			for j, i := range keep {
				if got.Examples[j] != set.Examples[i] {
					t.Fatalf("subset row %d: %+v; want %+v", j+1, got.Examples[j], set.Examples[i])
				}
			}
			return
		}
		set, err := Parse(b, name)
		if err != nil {
			return
		}
		if rf == nil || len(rf.Rows) != len(set.Rows) {
			t.Fatalf("ReadRows: %v; Parse reads %d rows", err, len(set.Rows))
		}
		keep := reversed(len(rf.Rows))
		sub, err := rf.Subset(keep)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(sub, "sub.json")
		if err != nil {
			t.Fatalf("the subset does not read back: %v\n%q", err, sub)
		}
		for j, i := range keep {
			g, w := got.Rows[j], set.Rows[i]
			g.Line, w.Line = 0, 0
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("subset row %d: %+v; want %+v", j+1, g, w)
			}
		}
	})
}

func reversed(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = n - 1 - i
	}
	return out
}
