package data_test

import (
	"fmt"

	"github.com/sora-go/sora/data"
)

func ExamplePrompt() {
	fmt.Print(data.Prompt("Is the sky blue?", ""))
	// Output:
	// Below is an instruction that describes a task. Write a response that appropriately completes the request.
	//
	// ### Instruction:
	// Is the sky blue?
	//
	// ### Response:
}

func ExampleExtractor() {
	x, _ := data.NewExtractor([]string{"true", "false"})
	pred, _ := x.Extract("the correct answer is false")
	fmt.Println(x.Kind, pred, x.Correct(pred, "false"))
	// Output: true/false false true
}

func ExampleMCC() {
	pred := []int{1, 1, 0, 0, 1}
	gold := []int{1, 0, 0, 0, 1}
	mcc, _ := data.MCC(pred, gold, 2)
	fmt.Printf("%.4f\n", mcc)
	// Output: 0.6667
}
