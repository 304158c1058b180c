package data

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Holdout is how much of a data set to hold out for evaluation: a fraction
// of its rows, or a number of rows (sora finetune's --eval-split, as
// axolotl's val_set_size and LLaMA-Factory's val_size take it). The zero
// Holdout holds out nothing.
type Holdout struct {
	frac *big.Rat // a fraction in (0, 1), exactly as written; nil for a count
	rows int      // a number of rows ≥ 1 (frac nil)
}

// ParseHoldout parses s: a whole number of rows ≥ 1 ("200"), or a fraction
// of the rows in (0, 1) written as a decimal ("0.05", ".05", "5e-2") or a
// ratio ("1/20"). The fraction is kept exactly as written, so that
// [Holdout.Size] rounds 0.07 of 100 rows to 7, not to the 8 that the
// float64 nearest 0.07 would give. A number ≥ 1 must be whole and written
// as an integer: "1.0" and "2e3" are refused (as Hugging Face's
// train_test_split refuses a float test_size of 1 or more), so that "1"
// means one row and "1.0" cannot be read as all of them.
func ParseHoldout(s string) (Holdout, error) {
	t := strings.TrimSpace(s)
	const want = "want a fraction of the rows in (0, 1), such as 0.05, or a whole number of rows ≥ 1, such as 200"
	if t == "" {
		return Holdout{}, fmt.Errorf("empty; %s", want)
	}
	if n, err := strconv.Atoi(t); err == nil {
		if n < 1 {
			return Holdout{}, fmt.Errorf("%s: %s", t, want)
		}
		return Holdout{rows: n}, nil
	}
	r, ok := new(big.Rat).SetString(t)
	if !ok {
		return Holdout{}, fmt.Errorf("%q is not a number; %s", t, want)
	}
	switch {
	case r.Sign() <= 0:
		return Holdout{}, fmt.Errorf("%s: %s", t, want)
	case r.Cmp(big.NewRat(1, 1)) >= 0 && r.IsInt():
		return Holdout{}, fmt.Errorf("%s: a fraction must be below 1, and a number of rows is written as a whole number (%s); %s", t, r.Num(), want)
	case r.Cmp(big.NewRat(1, 1)) >= 0:
		return Holdout{}, fmt.Errorf("%s: %s", t, want)
	}
	return Holdout{frac: r}, nil
}

// IsZero reports whether h holds out nothing (the zero Holdout).
func (h Holdout) IsZero() bool { return h.frac == nil && h.rows == 0 }

// Fraction returns the fraction of the rows that h holds out, and whether
// h is a fraction (not a number of rows).
func (h Holdout) Fraction() (float64, bool) {
	if h.frac == nil {
		return 0, false
	}
	f, _ := h.frac.Float64()
	return f, true
}

// String returns h as ParseHoldout reads it, exactly: the number of
// rows, or the fraction as a decimal where it has one ("0.05" whether it
// was written 0.05, .05, 5e-2 or 1/20; "0.1000000000000000000001" as it
// was written, which holds out 2 of 10 rows where 0.1 holds out 1), and
// otherwise as a ratio in lowest terms ("1/3"); "" for the zero Holdout.
// A record of a run (run.json, a checkpoint's settings) thus says which
// rows were held out.
func (h Holdout) String() string {
	switch {
	case h.frac != nil:
		return exactDecimal(h.frac)
	case h.rows > 0:
		return strconv.Itoa(h.rows)
	}
	return ""
}

// exactDecimal returns r as a decimal with no more digits than it needs
// where its denominator in lowest terms divides a power of 10 (is
// 2^a·5^b: then max(a, b) digits after the point), and otherwise as
// big.Rat's ratio "a/b", which ParseHoldout reads back.
func exactDecimal(r *big.Rat) string {
	d := new(big.Int).Set(r.Denom())
	var twos, fives int
	two, five, rem := big.NewInt(2), big.NewInt(5), new(big.Int)
	for q := new(big.Int); ; twos++ {
		if q.QuoRem(d, two, rem); rem.Sign() != 0 {
			break
		}
		d.Set(q)
	}
	for q := new(big.Int); ; fives++ {
		if q.QuoRem(d, five, rem); rem.Sign() != 0 {
			break
		}
		d.Set(q)
	}
	if d.Cmp(big.NewInt(1)) != 0 {
		return r.RatString()
	}
	return r.FloatString(max(twos, fives))
}

// Size returns how many of n rows h holds out: its number of rows, or its
// fraction of n rounded up (as Hugging Face's train_test_split, which
// axolotl and LLaMA-Factory split with, rounds its test_size), computed
// exactly. It is an error when that leaves no row to train on (all n, or
// more), and for the zero Holdout.
func (h Holdout) Size(n int) (int, error) {
	var k int
	switch {
	case h.frac != nil:
		// ceil(a·n / b) in integers: a/b is the fraction as written.
		num := new(big.Int).Mul(h.frac.Num(), big.NewInt(int64(n)))
		den := h.frac.Denom()
		q, m := new(big.Int).QuoRem(num, den, new(big.Int))
		if m.Sign() > 0 {
			q.Add(q, big.NewInt(1))
		}
		k = int(q.Int64()) // ≤ n: the fraction is below 1
	case h.rows > 0:
		k = h.rows
	default:
		return 0, fmt.Errorf("no rows to hold out")
	}
	switch {
	case n < 2:
		return 0, fmt.Errorf("%s of %d %s leaves nothing to train on or nothing to evaluate: a split needs at least 2 rows", h, n, plural(n, "row"))
	case k >= n && h.frac != nil:
		return 0, fmt.Errorf("%s of %d rows is %d rows, rounded up, leaving no row to train on (hold out at most %d: a fraction up to %.4g)", h, n, k, n-1, float64(n-1)/float64(n))
	case k >= n:
		return 0, fmt.Errorf("%d rows of %d leaves no row to train on (hold out at most %d)", k, n, n-1)
	}
	return k, nil
}

func plural(n int, s string) string {
	if n == 1 {
		return s
	}
	return s + "s"
}

// splitStream is the second word of the PCG state of [Split], so that its
// draws are a stream of their own, unrelated to those of other uses of the
// same seed (a data order, a sample of the rows).
const splitStream = 0x65766c2d73706c74 // "evl-splt"

// Split divides the row numbers 0 … n-1 into the rows to train on and k
// rows held out for evaluation, drawn at random with seed (the same seed,
// n, k and labels always give the same split), each list in ascending
// order; 0 < k < n. With labels (one per row, each ≥ 0) the draw is
// stratified: each label is held out in proportion to its rows, k·n_c/n
// rounded down, and the rows left to make k go to the labels with the
// largest remainders (ties broken at random), as scikit-learn's
// StratifiedShuffleSplit does; within a label the rows are drawn at
// random. Without labels (nil) k rows are drawn from all n.
func Split(n, k int, seed uint64, labels []int) (train, held []int, err error) {
	switch {
	case k <= 0 || k >= n:
		return nil, nil, fmt.Errorf("data: split of %d rows: %d held out; want 1 to %d", n, k, n-1)
	case labels != nil && len(labels) != n:
		return nil, nil, fmt.Errorf("data: split of %d rows: %d labels", n, len(labels))
	}
	rng := rand.New(rand.NewPCG(seed, splitStream))
	pick := make([]bool, n)
	if labels == nil {
		for _, i := range rng.Perm(n)[:k] {
			pick[i] = true
		}
	} else {
		byLabel := map[int][]int{}
		for i, l := range labels {
			if l < 0 {
				return nil, nil, fmt.Errorf("data: split: row %d has label %d; want labels ≥ 0", i+1, l)
			}
			byLabel[l] = append(byLabel[l], i)
		}
		classes := make([]int, 0, len(byLabel))
		for l := range byLabel {
			classes = append(classes, l)
		}
		slices.Sort(classes)
		quota := make([]int, len(classes))
		rem := make([]int, len(classes))
		left := k
		for c, l := range classes {
			// k·n_c < n² fits an int for any n a slice can have rows of
			// on a 64-bit machine, and data sets far larger on 32 bits.
			prod := k * len(byLabel[l])
			quota[c], rem[c] = prod/n, prod%n
			left -= quota[c]
		}
		tie := rng.Perm(len(classes))
		order := make([]int, len(classes))
		for c := range order {
			order[c] = c
		}
		slices.SortFunc(order, func(a, b int) int {
			if r := cmp.Compare(rem[b], rem[a]); r != 0 {
				return r
			}
			return cmp.Compare(tie[a], tie[b])
		})
		for _, c := range order[:left] {
			quota[c]++
		}
		for c, l := range classes {
			rows := byLabel[l]
			for _, j := range rng.Perm(len(rows))[:quota[c]] {
				pick[rows[j]] = true
			}
		}
	}
	train, held = make([]int, 0, n-k), make([]int, 0, k)
	for i, p := range pick {
		if p {
			held = append(held, i)
		} else {
			train = append(train, i)
		}
	}
	return train, held, nil
}

// Layout is how a data file writes its rows, for writing a part of it
// again as [RowFile.Subset] does.
type Layout uint8

const (
	// JSONList is a JSON list of row objects.
	JSONList Layout = iota + 1
	// JSONLines is one JSON object per line.
	JSONLines
	// TSV is one row per line, its fields separated by tabs (CoLA).
	TSV
)

// Ext returns the file name extension of the layout: ".json", ".jsonl"
// or ".tsv", which [Load] (by content) and [LoadClassification] (by the
// extension) read back as the same layout.
func (l Layout) Ext() string {
	switch l {
	case JSONLines:
		return ".jsonl"
	case TSV:
		return ".tsv"
	}
	return ".json"
}

func (l Layout) String() string {
	switch l {
	case JSONList:
		return "JSON list"
	case JSONLines:
		return "JSON Lines"
	case TSV:
		return "TSV"
	}
	return fmt.Sprintf("Layout(%d)", uint8(l))
}

// RowFile is a data file's rows as they are written in it, byte for byte,
// in file order: the rows that [Parse], [ParseAdapters] or [ParseCoLA]
// read from it, row i of the one being row i of the other.
type RowFile struct {
	Layout Layout
	// Rows holds each row's text: a JSON list's element (with the white
	// space that indents it on its line), a JSON Lines line, a TSV line
	// (without its line end).
	Rows [][]byte
}

// ReadRows splits the data file b into its rows as they are written. name
// (usually the file's path) chooses the layout as the readers do: a name
// ending in .tsv is TSV, whose non-blank lines are rows (as [ParseCoLA]
// reads them); anything else is JSON, a list when its first character
// that is not white space is '[' and JSON Lines when it is '{' (as [Parse]
// tells them apart). A UTF-8 byte-order mark is skipped. Rows are not
// checked beyond being JSON values (the parsers check them); errors name
// the file and the row. Rows slice b.
func ReadRows(b []byte, name string) (*RowFile, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	if strings.EqualFold(filepath.Ext(name), ".tsv") {
		f := &RowFile{Layout: TSV}
		for _, line := range bytes.Split(b, []byte{'\n'}) {
			line = bytes.TrimSuffix(line, []byte{'\r'})
			if len(bytes.TrimSpace(line)) > 0 {
				f.Rows = append(f.Rows, line)
			}
		}
		return f, nil
	}
	t := bytes.TrimLeft(b, " \t\r\n")
	switch {
	case len(t) == 0:
		return nil, fmt.Errorf("data: %s: the file is empty; expected %s", name, wantFile)
	case t[0] == '[':
		f := &RowFile{Layout: JSONList}
		at := 0
		err := eachArrayRow(b, name, "a JSON list of row objects", func(raw json.RawMessage, row, line int) error {
			// Between the end of the row before and this one there are
			// only white space and a comma, neither of which a JSON value
			// starts with: its first occurrence from there is the row.
			i := bytes.Index(b[at:], raw)
			if i < 0 {
				return fmt.Errorf("data: %s:%d: row %d not found in the file as it was decoded", name, line, row)
			}
			start := at + i
			at = start + len(raw)
			// The indent of a row that starts its line goes with it.
			ind := start
			for ind > 0 && (b[ind-1] == ' ' || b[ind-1] == '\t') {
				ind--
			}
			if ind > 0 && b[ind-1] != '\n' {
				ind = start
			}
			f.Rows = append(f.Rows, b[ind:at])
			return nil
		})
		return f, err
	case t[0] == '{':
		f := &RowFile{Layout: JSONLines}
		err := eachLine(b, name, func(raw json.RawMessage, row, line int) error {
			f.Rows = append(f.Rows, raw)
			return nil
		})
		return f, err
	}
	return nil, fmt.Errorf("data: %s:%d: expected %s", name, lineAt(b, int64(len(b)-len(t))), wantFile)
}

// Subset returns a file of f's layout holding the rows whose numbers
// (0-based) keep lists, in that order: each row as it was written, a JSON
// list's rows separated by ",\n" inside "[\n" and "\n]", every row of
// JSON Lines and TSV on a line of its own, and a final newline. The
// readers read from it exactly the rows they read at those numbers from
// the whole file.
func (f *RowFile) Subset(keep []int) ([]byte, error) {
	var out bytes.Buffer
	if f.Layout == JSONList {
		out.WriteString("[\n")
	}
	for j, i := range keep {
		if i < 0 || i >= len(f.Rows) {
			return nil, fmt.Errorf("data: subset: row %d of a file of %d rows", i+1, len(f.Rows))
		}
		if j > 0 && f.Layout == JSONList {
			out.WriteString(",\n")
		}
		out.Write(f.Rows[i])
		if f.Layout != JSONList {
			out.WriteByte('\n')
		}
	}
	if f.Layout == JSONList {
		if len(keep) > 0 {
			out.WriteByte('\n')
		}
		out.WriteString("]\n")
	}
	return out.Bytes(), nil
}
