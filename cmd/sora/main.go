// Command sora fine-tunes transformer models with parameter-efficient
// methods (LoRA, DoRA, Pre-Diag, SORA, …) on a CPU, an NVIDIA GPU or a
// Huawei Ascend NPU.
//
// Run "sora help" for the list of subcommands.
package main

import (
	"fmt"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run is main without os.Exit, for tests.
func run(args []string) int {
	fmt.Fprintln(os.Stderr, "sora: not implemented yet")
	return 2
}
