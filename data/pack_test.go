package data

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// seqsOfLengths makes sequences of the given lengths whose tokens say
// where they come from: token t of sequence i is 1000·(i+1) + t.
func seqsOfLengths(lens ...int) []Sequence {
	out := make([]Sequence, len(lens))
	for i, n := range lens {
		out[i].Tokens = make([]int32, n)
		for t := range n {
			out[i].Tokens[t] = int32(1000*(i+1) + t)
		}
		out[i].Row = i
	}
	return out
}

// checkPacking fails t unless rows hold every index of idx exactly as
// often as idx does, each row non-empty and within maxLen, and the padded
// positions no more than one sequence per row would take. It returns
// the padded positions.
func checkPacking(t *testing.T, seqs []Sequence, idx []int, maxLen int, rows [][]int, label string) int {
	t.Helper()
	var seen []int
	widest, longest := 0, 0
	for r, row := range rows {
		if len(row) == 0 {
			t.Fatalf("%s: row %d is empty", label, r)
		}
		n := 0
		for _, i := range row {
			n += len(seqs[i].Tokens)
			longest = max(longest, len(seqs[i].Tokens))
		}
		if n > maxLen {
			t.Fatalf("%s: row %d holds %d tokens, more than %d", label, r, n, maxLen)
		}
		widest = max(widest, n)
		seen = append(seen, row...)
	}
	want := slices.Clone(idx)
	slices.Sort(seen)
	slices.Sort(want)
	if !slices.Equal(seen, want) {
		t.Fatalf("%s: rows hold %v, want each of %v once", label, seen, want)
	}
	cost := len(rows) * widest
	if cost > len(idx)*longest {
		t.Fatalf("%s: %d rows of %d positions, more than %d sequences one per row (%d each)", label, len(rows), widest, len(idx), longest)
	}
	return cost
}

// TestPackProperties packs random sets of sequences (lengths spread
// evenly, mostly short with a few long, all equal; duplicated indices as
// a step longer than the data has) and checks the packing's promises:
// each sequence whole and exactly once, no row over the limit, no more
// padded positions than one sequence per row, and the same rows again
// from the same input.
func TestPackProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var tokens, padded int
	for trial := range 300 {
		maxLen := []int{1, 2, 7, 64, 256}[trial%5]
		n := 1 + rng.IntN(40)
		lens := make([]int, n)
		for i := range lens {
			switch trial % 3 {
			case 0:
				lens[i] = 1 + rng.IntN(maxLen)
			case 1:
				lens[i] = 1 + rng.IntN(max(1, maxLen/8))
				if rng.IntN(6) == 0 {
					lens[i] = maxLen - rng.IntN(max(1, maxLen/4))
				}
			default:
				lens[i] = max(1, maxLen/3)
			}
		}
		seqs := seqsOfLengths(lens...)
		idx := rng.Perm(n)
		if trial%7 == 0 {
			idx = append(idx, idx[:n/2]...)
		}
		label := fmt.Sprintf("trial %d (max %d, lengths %v, idx %v)", trial, maxLen, lens, idx)
		rows, err := Pack(seqs, idx, maxLen)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		cost := checkPacking(t, seqs, idx, maxLen, rows, label)
		again, err := Pack(seqs, slices.Clone(idx), maxLen)
		if err != nil || !reflect.DeepEqual(again, rows) {
			t.Fatalf("%s: packed again %v (%v), first %v", label, again, err, rows)
		}
		for _, i := range idx {
			tokens += lens[i]
		}
		padded += cost
	}
	t.Logf("real tokens %d of %d padded positions (%.1f%%)", tokens, padded, 100*float64(tokens)/float64(padded))
}

// TestPackCases checks packings worked out by hand.
func TestPackCases(t *testing.T) {
	for _, c := range []struct {
		lens   []int
		maxLen int
		want   [][]int
	}{
		// Two rows of 13 and 12 (26 positions) beat three of 9 (27):
		// 9, 7, then 4 to the 7, 3 to the 9, 1 to the 11, 1 to the 12.
		{[]int{7, 1, 3, 9, 1, 4}, 14, [][]int{{3, 2, 4}, {0, 5, 1}}},
		// Two rows would be 10 and 5, 20 positions: three of 5 are 15.
		{[]int{5, 5, 5}, 10, [][]int{{0}, {1}, {2}}},
		// Everything in one row.
		{[]int{2, 3, 1}, 6, [][]int{{1, 0, 2}}},
		// Each sequence fills a row.
		{[]int{4, 4}, 4, [][]int{{0}, {1}}},
		// Equal lengths go in index order.
		{[]int{1, 1, 1, 1}, 2, [][]int{{0, 2}, {1, 3}}},
	} {
		seqs := seqsOfLengths(c.lens...)
		idx := make([]int, len(seqs))
		for i := range idx {
			idx[i] = i
		}
		got, err := Pack(seqs, idx, c.maxLen)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("lengths %v, max %d: rows %v, want %v", c.lens, c.maxLen, got, c.want)
		}
	}
}

// TestPackErrors checks Pack's refusals and what they name.
func TestPackErrors(t *testing.T) {
	seqs := seqsOfLengths(3, 5)
	seqs = append(seqs, Sequence{})
	for _, c := range []struct {
		idx    []int
		maxLen int
		want   string
	}{
		{nil, 8, "nothing to pack"},
		{[]int{0}, 0, "pack length 0"},
		{[]int{0, 7}, 8, "index 7 outside 3 sequences"},
		{[]int{2}, 8, "sequence 2 is empty"},
		{[]int{0, 1}, 4, "sequence 1 has 5 tokens, more than a packed row's 4"},
	} {
		_, err := Pack(seqs, c.idx, c.maxLen)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Pack(%v, %d): error %v; want one containing %q", c.idx, c.maxLen, err, c.want)
		}
	}
	for _, c := range []struct {
		rows [][]int
		want string
	}{
		{nil, "empty packed batch"},
		{[][]int{{0}, {}}, "row 1 holds no sequence"},
		{[][]int{{0, 3}}, "index 3 outside"},
		{[][]int{{2}}, "sequence 2 is empty"},
	} {
		_, err := MakePackedBatch(seqs, c.rows)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("MakePackedBatch(%v): error %v; want one containing %q", c.rows, err, c.want)
		}
	}
	bad := seqsOfLengths(3)
	bad[0].Trained = []bool{false, true}
	if _, err := MakePackedBatch(bad, [][]int{{0}}); err == nil || !strings.Contains(err.Error(), "mask of 2") {
		t.Errorf("a mask of the wrong length: error %v", err)
	}
}

// TestMakePackedBatch lays out packed rows of sequences with prompts,
// masks and labels, and checks the tokens, the segments (padding a number
// of its own), the real lengths, and that the loss positions are each
// sequence's own: the same target tokens, as many as Targets counts and
// as MakeBatch gives one sequence per row, and never a sequence's last
// position (which would predict the next sequence's first token).
func TestMakePackedBatch(t *testing.T) {
	seqs := seqsOfLengths(7, 1, 3, 9, 1, 4, 6)
	seqs[0].PromptLen = 3
	seqs[3].PromptLen = 5
	seqs[5].Trained = []bool{false, true, false, true} // a mask with a gap
	seqs[6].PromptLen = 6                              // nothing trained (prompt only)
	for i := range seqs {
		seqs[i].Label = i % 3
	}
	idx := []int{6, 0, 1, 2, 3, 4, 5}
	rows, err := Pack(seqs, idx, 14)
	if err != nil {
		t.Fatal(err)
	}
	checkPacking(t, seqs, idx, 14, rows, "packing")
	b, err := MakePackedBatch(seqs, rows)
	if err != nil {
		t.Fatal(err)
	}
	if b.Size != len(rows) || len(b.Tokens) != b.Size*b.Len || len(b.Segments) != len(b.Tokens) {
		t.Fatalf("batch %d × %d with %d tokens and %d segments for %d rows", b.Size, b.Len, len(b.Tokens), len(b.Segments), len(rows))
	}
	lastOf := map[int32]bool{}
	for r, row := range rows {
		pos := 0
		for k, i := range row {
			d := b.Docs[r][k]
			if d.Seq != i || d.Start != pos || d.Len != len(seqs[i].Tokens) || d.Label != int32(seqs[i].Label) {
				t.Errorf("row %d document %d: %+v; want sequence %d at %d", r, k, d, i, pos)
			}
			for tk, id := range seqs[i].Tokens {
				p := r*b.Len + pos + tk
				if b.Tokens[p] != id || b.Segments[p] != int32(k) {
					t.Errorf("row %d position %d: token %d segment %d; want %d, %d", r, pos+tk, b.Tokens[p], b.Segments[p], id, k)
				}
			}
			pos += len(seqs[i].Tokens)
			lastOf[int32(r*b.Len+pos-1)] = true
		}
		if b.Lengths[r] != pos {
			t.Errorf("row %d: length %d, want %d", r, b.Lengths[r], pos)
		}
		for p := pos; p < b.Len; p++ {
			if b.Tokens[r*b.Len+p] != 0 || b.Segments[r*b.Len+p] != int32(len(row)) {
				t.Errorf("row %d padding at %d: token %d segment %d; want 0, %d", r, p, b.Tokens[r*b.Len+p], b.Segments[r*b.Len+p], len(row))
			}
		}
	}
	pos, targets := b.LossPositions()
	if n := Targets(seqs, idx, false); len(pos) != n {
		t.Errorf("%d loss positions, Targets counts %d", len(pos), n)
	}
	for k, p := range pos {
		if lastOf[p] {
			t.Errorf("loss position %d is a sequence's last token (its target %d belongs to the next sequence)", p, targets[k])
		}
		if b.Tokens[p+1] != targets[k] || b.Segments[p+1] != b.Segments[p] {
			t.Errorf("loss position %d: target %d, but the next token is %d (segment %d, this one's %d)", p, targets[k], b.Tokens[p+1], b.Segments[p+1], b.Segments[p])
		}
	}
	// The same targets as one sequence per row: the tokens encode their
	// sequence and position, so the multisets must be equal.
	ub, err := MakeBatch(seqs, idx)
	if err != nil {
		t.Fatal(err)
	}
	_, want := ub.LossPositions()
	slices.Sort(want)
	got := slices.Clone(targets)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("packed targets %v, one per row %v", got, want)
	}

	cp, labels := b.ClassifyPositions()
	up, ulabels := ub.ClassifyPositions()
	if len(cp) != len(idx) || len(up) != len(idx) {
		t.Fatalf("%d packed and %d unpacked classification positions for %d sequences", len(cp), len(up), len(idx))
	}
	// Each reads its sequence's last token, with its label.
	type read struct{ tok, label int32 }
	var pr, ur []read
	for k := range cp {
		if !lastOf[cp[k]] {
			t.Errorf("classification position %d is not a sequence's last token", cp[k])
		}
		pr = append(pr, read{b.Tokens[cp[k]], labels[k]})
		ur = append(ur, read{ub.Tokens[up[k]], ulabels[k]})
	}
	cmpRead := func(a, b read) int { return int(a.tok - b.tok) }
	slices.SortFunc(pr, cmpRead)
	slices.SortFunc(ur, cmpRead)
	if !slices.Equal(pr, ur) {
		t.Errorf("packed classification reads %v, one per row %v", pr, ur)
	}
}
