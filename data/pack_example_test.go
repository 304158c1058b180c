package data_test

import (
	"fmt"

	"github.com/sora-go/sora/data"
)

// ExamplePack packs five sequences (17 tokens) into rows of at most 8
// tokens, three rows balanced to 5 and 6 tokens (18 positions), and lays
// them out as a packed batch: each row's sequences numbered in its segments, the
// padding numbered after them, and the loss positions each sequence's own
// (the first sequence's prompt, and each sequence's last token, which
// would predict the next one's first, left out).
func ExamplePack() {
	seqs := []data.Sequence{
		{Tokens: []int32{1, 11, 12, 13, 14}, PromptLen: 2},
		{Tokens: []int32{1, 21, 22}},
		{Tokens: []int32{1, 31, 32, 33}},
		{Tokens: []int32{1, 41}},
		{Tokens: []int32{1, 51, 52}},
	}
	rows, err := data.Pack(seqs, []int{0, 1, 2, 3, 4}, 8)
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := data.MakePackedBatch(seqs, rows)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("rows:", rows)
	for r := range b.Size {
		fmt.Println(b.Tokens[r*b.Len:(r+1)*b.Len], b.Segments[r*b.Len:(r+1)*b.Len])
	}
	pos, targets := b.LossPositions()
	fmt.Println("loss at", pos, "targets", targets)
	// Output:
	// rows: [[0] [2 3] [1 4]]
	// [1 11 12 13 14 0] [0 0 0 0 0 1]
	// [1 31 32 33 1 41] [0 0 0 0 1 1]
	// [1 21 22 1 51 52] [0 0 0 1 1 1]
	// loss at [1 2 3 6 7 8 10 12 13 15 16] targets [12 13 14 31 32 33 41 21 22 51 52]
}
