package data_test

import (
	"fmt"

	"github.com/sora-go/sora/data"
)

// ExampleSplit holds out a fifth of a JSON Lines file for evaluation and
// writes the held-out rows as they were written.
func ExampleSplit() {
	file := []byte(`{"text": "one"}
{"text": "two"}
{"text": "three"}
{"text": "four"}
{"text": "five"}
`)
	h, _ := data.ParseHoldout("0.2")
	rows, _ := data.ReadRows(file, "rows.jsonl")
	k, _ := h.Size(len(rows.Rows))
	train, held, _ := data.Split(len(rows.Rows), k, 42, nil)
	sub, _ := rows.Subset(held)
	fmt.Println(len(train), "rows to train on,", len(held), "held out, written to eval-split"+rows.Layout.Ext()+":")
	fmt.Print(string(sub))
	// Output:
	// 4 rows to train on, 1 held out, written to eval-split.jsonl:
	// {"text": "one"}
}
