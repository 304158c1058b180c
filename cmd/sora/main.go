// Command sora fine-tunes transformer models with parameter-efficient
// methods (LoRA, DoRA, Pre-Diag, SORA, …) on a CPU, an NVIDIA GPU or a
// Huawei Ascend NPU.
//
// Run "sora help" for the list of subcommands and "sora help CMD" for one
// subcommand's flags. Every subcommand that runs ops takes --backend NAME
// (default $SORA_BACKEND, else cpu); exit status 0 means success, 1 a
// failure, 2 a usage error and 3 a backend that cannot run on this machine.
//
// A subcommand lives in its own file and adds itself with register in an
// init function; the shared flag helpers are in flags.go.
package main

import (
	"fmt"
	"github.com/sora-go/sora/graph"
	"io"
	"maps"
	"os"
	"runtime/debug"
	"slices"
)

// command is one subcommand. Each lives in its own file and adds itself to
// commands in an init function, so subcommands can be added without
// touching this file.
type command struct {
	name    string
	summary string // one line for "sora help"
	// run executes the subcommand with the arguments after its name and
	// returns the process exit status (exitOK, exitFailure, exitUsage or
	// exitUnavailable). It must answer "--help" by printing its usage to
	// stdout and returning exitOK (parseFlags does that).
	run func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

// register adds a top-level command.
func register(c command) { addCommand(commands, c) }

// addCommand adds c to set. Two commands of one name are a programming
// error, caught by any run of the binary or its tests.
func addCommand(set map[string]command, c command) {
	if _, dup := set[c.name]; dup {
		panic("sora: command registered twice: " + c.name)
	}
	set[c.name] = c
}

func main() {
	tuneGC()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// gcPercent is the garbage collector's target that sora runs with unless
// GOGC is set. Go's default, 100, lets the heap grow to twice what is live
// before it collects: with a model's tensors live (gigabytes, on the CPU
// backend in the Go heap) that doubles the peak memory of a run. The
// tensors hold no pointers, so a collection costs little: a LoRA run on a
// Qwen3-0.6B-shaped model peaked at 6.7 GB with 25 against 9.4 GB with
// 100, at the same speed (measured 2026-11-27).
const gcPercent = 25

// tuneGC sets the collector's target to gcPercent where GOGC does not say
// otherwise.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
}

// run is main without os.Exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(stdout)
		return exitOK
	}
	// --version is what many tools answer their version to.
	if args[0] == "--version" || args[0] == "-version" {
		args = append([]string{"version"}, args[1:]...)
	}
	if args[0] == "help" {
		// "sora help CMD [SUB...]" is "sora CMD [SUB...] --help", so that
		// "sora help bench gemm" shows gemm's flags, not bench's list.
		if len(args) == 1 || len(args) == 2 && args[1] == "help" {
			usage(stdout)
			return exitOK
		}
		c, ok := commands[args[1]]
		if !ok {
			fmt.Fprintf(stderr, "sora: unknown command %q\n\n", args[1])
			usage(stderr)
			return exitUsage
		}
		return c.run(append(slices.Clone(args[2:]), "--help"), stdout, stderr)
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "sora: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	// Every command builds tapes; a mistyped SORA_ATTENTION would
	// otherwise surface at a training step, or never in generation.
	if err := graph.CheckAttentionEnv(); err != nil {
		fmt.Fprintf(stderr, "sora: %v\n", err)
		return exitUsage
	}
	return c.run(args[1:], stdout, stderr)
}

// listCommands prints one line per command, sorted by name, the names
// padded to width.
func listCommands(w io.Writer, cmds map[string]command, width int) {
	for _, n := range slices.Sorted(maps.Keys(cmds)) {
		fmt.Fprintf(w, "  %-*s %s\n", width, n, cmds[n].summary)
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "sora fine-tunes transformer models with LoRA, DoRA, Pre-Diag, SORA and related methods.")
	fmt.Fprintln(w, "\nUsage: sora <command> [flags]\n\nCommands:")
	listCommands(w, commands, 12)
	fmt.Fprintln(w, "\nRun \"sora help <command>\" or \"sora <command> --help\" for a command's flags.")
	fmt.Fprintf(w, "Commands that run ops take --backend NAME (default $%s, else cpu).\n", defaultBackendEnv)
}
