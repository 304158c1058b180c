package data

import (
	"cmp"
	"fmt"
	"slices"
)

// Pack groups the sequences seqs[idx[0]], seqs[idx[1]], … into rows of at
// most maxLen tokens for a packed batch ([MakePackedBatch]: sequence
// packing, where several sequences share a row and attend only to
// themselves), each sequence whole and in exactly one row. It returns
// the rows, each a list of indices into seqs.
//
// A packed batch is padded to its longest row, so what costs is the
// number of rows times the longest: Pack tries every number of rows r
// from the fewest that can hold the tokens up, deals the sequences out
// longest first, each to the row with the fewest tokens so far (the
// longest-processing-time rule, which balances the rows), keeps the
// deals whose rows all fit in maxLen, and returns the one with the fewest
// padded positions (the fewest rows among equals). One sequence per row
// is among the deals, so a packed batch never has more positions than
// the same sequences padded one per row. The result depends on the
// lengths and the order of idx alone (ties go to the earlier index).
//
// A sequence longer than maxLen is an error: the encoders cut sequences
// to the maximum length before they are packed.
func Pack(seqs []Sequence, idx []int, maxLen int) ([][]int, error) {
	if len(idx) == 0 {
		return nil, fmt.Errorf("data: nothing to pack")
	}
	if maxLen < 1 {
		return nil, fmt.Errorf("data: pack length %d; want at least 1 token", maxLen)
	}
	total, longest := 0, 0
	for _, i := range idx {
		if i < 0 || i >= len(seqs) {
			return nil, fmt.Errorf("data: batch index %d outside %d sequences", i, len(seqs))
		}
		n := len(seqs[i].Tokens)
		switch {
		case n == 0:
			return nil, fmt.Errorf("data: sequence %d is empty", i)
		case n > maxLen:
			return nil, fmt.Errorf("data: sequence %d has %d tokens, more than a packed row's %d (cut sequences to the maximum length before packing)", i, n, maxLen)
		}
		total += n
		longest = max(longest, n)
	}
	// Longest first; among equals, the earlier in idx first.
	order := slices.Clone(idx)
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(len(seqs[b].Tokens), len(seqs[a].Tokens)) })

	var best [][]int
	bestCost := 0
	sums := make([]int, len(idx))
	for r := (total + maxLen - 1) / maxLen; r <= len(idx); r++ {
		if best != nil && r*longest >= bestCost {
			break // every row holds at least the longest's length from here
		}
		rows := make([][]int, r)
		clear(sums[:r])
		for _, i := range order {
			k := 0
			for j := 1; j < r; j++ {
				if sums[j] < sums[k] {
					k = j
				}
			}
			rows[k] = append(rows[k], i)
			sums[k] += len(seqs[i].Tokens)
		}
		widest := slices.Max(sums[:r])
		if widest > maxLen {
			continue
		}
		if cost := r * widest; best == nil || cost < bestCost {
			best, bestCost = rows, cost
		}
	}
	return best, nil
}

// Doc is one sequence's place in a row of a packed batch.
type Doc struct {
	// Seq is the sequence's index in the slice given to MakePackedBatch.
	Seq int
	// Start is the position of its first token in the row, Len its number
	// of tokens.
	Start, Len int
	// PromptLen, Trained and Label are the sequence's own (see [Sequence]).
	PromptLen int
	Trained   []bool
	Label     int32
}

// MakePackedBatch lays out the rows of sequences that [Pack] made (each a
// list of indices into seqs) as a packed batch: each row holds its
// sequences one after the other, then padding (id 0) up to the longest
// row. Segments numbers the sequences of each row 0, 1, … and gives the
// padding the number after the last, so that a model attending within
// segments lets each sequence see only itself. Lengths are the rows' real
// tokens, Docs where each sequence lies; PromptLens, Labels and Trained
// are nil (each [Doc] holds its sequence's). The loss positions
// ([Batch.LossPositions]) are each sequence's own: the last token of one
// never predicts the first of the next.
func MakePackedBatch(seqs []Sequence, rows [][]int) (Batch, error) {
	if len(rows) == 0 {
		return Batch{}, fmt.Errorf("data: empty packed batch")
	}
	b := Batch{Size: len(rows), Docs: make([][]Doc, len(rows)), Lengths: make([]int, len(rows))}
	for r, row := range rows {
		if len(row) == 0 {
			return Batch{}, fmt.Errorf("data: packed row %d holds no sequence", r)
		}
		for _, i := range row {
			if i < 0 || i >= len(seqs) {
				return Batch{}, fmt.Errorf("data: packed row %d: index %d outside %d sequences", r, i, len(seqs))
			}
			s := seqs[i]
			if len(s.Tokens) == 0 {
				return Batch{}, fmt.Errorf("data: sequence %d is empty", i)
			}
			if s.Trained != nil && len(s.Trained) != len(s.Tokens) {
				return Batch{}, fmt.Errorf("data: sequence %d has %d tokens but a mask of %d; want one mask entry per token", i, len(s.Tokens), len(s.Trained))
			}
			b.Docs[r] = append(b.Docs[r], Doc{Seq: i, Start: b.Lengths[r], Len: len(s.Tokens), PromptLen: s.PromptLen, Trained: s.Trained, Label: int32(s.Label)})
			b.Lengths[r] += len(s.Tokens)
		}
		b.Len = max(b.Len, b.Lengths[r])
	}
	b.Tokens = make([]int32, b.Size*b.Len)
	b.Segments = make([]int32, b.Size*b.Len)
	for r, docs := range b.Docs {
		row, seg := b.Tokens[r*b.Len:(r+1)*b.Len], b.Segments[r*b.Len:(r+1)*b.Len]
		for k, d := range docs {
			copy(row[d.Start:], seqs[d.Seq].Tokens)
			for t := d.Start; t < d.Start+d.Len; t++ {
				seg[t] = int32(k)
			}
		}
		for t := b.Lengths[r]; t < b.Len; t++ {
			seg[t] = int32(len(docs))
		}
	}
	return b, nil
}

// ClassifyPositions returns, for a classification batch, the flat position
// (row·Len + t) of each sequence's last token, which a classification
// head reads, and each sequence's label: one per row, or in a packed
// batch one per [Doc], row by row.
func (b Batch) ClassifyPositions() (positions, labels []int32) {
	if b.Docs == nil {
		for r := range b.Size {
			positions = append(positions, int32(r*b.Len+b.Lengths[r]-1))
			labels = append(labels, b.Labels[r])
		}
		return positions, labels
	}
	for r, docs := range b.Docs {
		for _, d := range docs {
			positions = append(positions, int32(r*b.Len+d.Start+d.Len-1))
			labels = append(labels, d.Label)
		}
	}
	return positions, labels
}
