package main

import (
	"fmt"
	"io"

	"github.com/sora-go/sora/conformance"
)

var conformanceDoc = usageDoc{
	synopsis: "conformance [--backend NAME] [--run FILTER] [-v] [--seed N]",
	description: "Runs the backend conformance suite: every op of the backend interface, forward and backward, " +
		"on many shapes (tiny, odd, prime, non-square, broadcast, batched, large k) with fresh random inputs, " +
		"compared against float64 references computed with gonum under the per-op error thresholds of the " +
		"suite; outputs are poisoned before each op and guarded by sentinels after it. It prints a header " +
		"naming the backend and its device, one line per failed or skipped case (every case with -v), and " +
		"last a line \"N passed, M failed, K skipped\". Exit status: 0 when nothing failed, 1 when a case " +
		"failed, 2 for a usage error, 3 when the backend cannot run on this machine.",
	examples: []string{
		"sora conformance",
		"sora conformance --backend cuda",
		"sora conformance --run softmax -v",
		"SORA_CPU_PORTABLE=1 sora conformance --backend cpu",
	},
}

func init() {
	register(command{
		name:    "conformance",
		summary: "check a backend's ops and gradients against float64 references",
		run:     runConformance,
	})
}

func runConformance(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("conformance")
	name := addBackendFlag(fs)
	filter := fs.String("run", "", "run only the cases whose name contains `FILTER`")
	verbose := fs.Bool("v", false, "print every case, not only failures and skips")
	seed := fs.Int64("seed", 0, "`N` seeds the random inputs; 0 uses the suite's fixed default")
	if code, ok := parseFlags(fs, conformanceDoc, args, stdout, stderr); !ok {
		return code
	}
	if len(conformance.Select(*filter)) == 0 {
		fmt.Fprintf(stderr, "sora conformance: no case name contains %q\n", *filter)
		return exitUsage
	}
	b, code := openBackend(*name, stderr)
	if b == nil {
		return code
	}
	defer b.Close()

	// Run writes the header naming the backend and its device, then the
	// case lines; the summary is ours to print, last.
	sum, err := conformance.Run(b, stdout, conformance.Options{Filter: *filter, Verbose: *verbose, Seed: *seed})
	if err != nil {
		// The summary still comes last, so that scripts reading the last
		// line see how far the run got.
		fmt.Fprintf(stderr, "sora conformance: %v\n", err)
		fmt.Fprintln(stdout, sum.String())
		return exitFailure
	}
	fmt.Fprintln(stdout, sum.String())
	if sum.Failed > 0 {
		return exitFailure
	}
	return exitOK
}
