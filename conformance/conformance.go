// Package conformance checks a backend op by op, and gradient by gradient,
// against float64 references computed with gonum.
//
// It is modelled on ggml's test-backend-ops. Every op of [backend.Ops] and
// [backend.Memory], forward and backward, is run on many shapes (tiny, odd
// and prime sizes, non-square, large inner dimensions, row and column
// broadcasts, batches) with fresh random inputs, and its outputs are
// compared with a float64 reference by the normalised mean squared error
//
//	NMSE = Σ(out − ref)² / Σ ref²
//
// (the plain sum of squared errors when Σ ref² is 0) against a per-op
// threshold from the single table in thresholds.go. NaN or Inf in an output
// never passes.
//
// Every output tensor is a view in the middle of a larger buffer. Before the
// op, the view is poisoned with NaN (or, for ops that accumulate into their
// output, set to known random values that the reference includes) and the
// rest of the buffer is filled with a sentinel pattern; afterwards the
// sentinel must be intact (no write outside the view) and the view must be
// finite (no element left unwritten). Inputs sit between NaN guards, so a
// kernel that reads past its input produces NaN, and they must come back
// unchanged. After each case Sync must return nil; a few cases make invalid
// calls and check that the error is recorded, returned once by Sync and then
// cleared, as the sticky-error contract of package backend says.
//
// # Entry points
//
// [Run] checks a backend and writes a report; the command "sora
// conformance --backend NAME" calls it. The package's test runs the same
// cases, one subtest per case, against the backend named by its -backend
// flag (default cpu):
//
//	go test ./conformance -backend=cpu -run 'TestConformance/matmul/'
//
// # Adding cases
//
// Cases live in a registry, in registration order. A file of this package
// (or any other package, as the CLI's tests do) adds cases by calling
// [Register] from an init function; nothing in the core has to change.
// A [Case] has a unique name without spaces ("op/variant", which is also
// its subtest name), the op it checks (the backend must report it in
// Supports, and its threshold applies), Needs (further ops it calls, which
// must be supported too; a failure of the case may point at any of them),
// and a function that runs it against an [Env]. The Env supplies:
//
//   - a random generator seeded from the run's seed and the case's name,
//     so a case sees the same inputs alone or in the whole suite;
//   - inputs between NaN guards ([Env.Input], strided and broadcast views
//     with [Env.InputStrided]) that are verified unchanged afterwards;
//   - outputs between sentinel guards, NaN-poisoned ([Env.Output]) or
//     starting from given values for ops that accumulate or work in place
//     ([Env.OutputInit], [Env.OutputStrided]), and [Env.Rebase] for ops
//     applied several times to the same tensor;
//   - the comparison with a float64 reference: [Env.Check] (the case op's
//     threshold) or [Env.CheckTol] (another entry of the table), and
//     [Env.CheckValues] for quantities derived on the host.
//
// For example:
//
//	func init() {
//		conformance.Register(conformance.Case{
//			Name: "scale/fused_example",
//			Op:   backend.OpScale,
//			Run: func(e *conformance.Env) {
//				x := e.Uniform(100, -1, 1)
//				src := e.Input(x, 10, 10)
//				dst := e.Output(10, 10)
//				e.B.Scale(dst.T, src, 2)
//				ref := make([]float64, len(x))
//				for i, v := range x {
//					ref[i] = 2 * float64(v)
//				}
//				e.Check(dst, ref)
//			},
//		})
//	}
//
// Fused ops get their own cases this way, with their own entry in the
// threshold table (thresholds.go, the one place limits are set, each with
// its reason). Whole-graph gradient checks by central finite differences
// go in files named graph_*.go; their cases name the op whose backward
// they mainly exercise and list in Needs every other op the graph uses.
package conformance

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/sora-go/sora/backend"
)

// Options selects what Run checks.
type Options struct {
	// Filter, when non-empty, keeps only cases whose name contains it.
	Filter string
	// Verbose prints every case, not only failures and skips.
	Verbose bool
	// Seed seeds the random inputs; 0 picks a fixed default. Each case
	// derives its own generator from the seed and its name, so a case
	// sees the same inputs whether it runs alone or in the whole suite.
	Seed int64
}

// DefaultSeed is the seed used when Options.Seed is 0.
const DefaultSeed = 20240917

// Summary counts the outcomes of a run.
type Summary struct {
	Passed, Failed, Skipped int
}

// String formats the summary as the last line of a run prints it.
func (s Summary) String() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", s.Passed, s.Failed, s.Skipped)
}

// Case is one conformance check.
type Case struct {
	// Name is unique; by convention "op/variant", e.g.
	// "matmul/m=7,n=13,k=4096,tA". It contains no spaces, so that
	// "go test -run" can select it.
	Name string
	// Op is the op under test: Run skips the case when the backend does
	// not support it, and Check uses its threshold. It is empty for cases
	// that only need Upload and Download, which every backend has.
	Op backend.Op
	// Needs lists further ops the case calls, which must be supported too.
	Needs []backend.Op
	// Run performs the check, reporting through e.
	Run func(e *Env)
}

// Ops returns the ops the case calls, which the backend must support:
// Op, unless it is empty, then Needs.
func (c Case) Ops() []backend.Op {
	var ops []backend.Op
	if c.Op != "" {
		ops = append(ops, c.Op)
	}
	return append(ops, c.Needs...)
}

// SkippedOptional reports whether b skips c only for lacking ops of
// [backend.OptionalOps]: a backend that supports every op of
// [backend.AllOps] may skip those cases and no other.
func SkippedOptional(b backend.Backend, c Case) bool {
	optional := false
	for _, op := range c.Ops() {
		switch {
		case b.Supports(op):
		case slices.Contains(backend.OptionalOps, op):
			optional = true
		default:
			return false
		}
	}
	return optional
}

var (
	registryMu sync.Mutex
	registry   []Case
	names      = map[string]bool{}
)

// Register adds c to the suite. It panics if c has no name, no Run
// function, a name containing white space, or a name already registered:
// those are programming errors in an init function.
func Register(c Case) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if c.Name == "" || c.Run == nil {
		panic("conformance: Register needs a name and a Run function")
	}
	if strings.ContainsAny(c.Name, " \t\n") {
		panic("conformance: case name contains white space: " + c.Name)
	}
	if names[c.Name] {
		panic("conformance: case registered twice: " + c.Name)
	}
	names[c.Name] = true
	registry = append(registry, c)
}

// Cases returns every registered case in registration order.
func Cases() []Case {
	registryMu.Lock()
	defer registryMu.Unlock()
	return append([]Case(nil), registry...)
}

// Status is the result of one case.
type Status uint8

// The statuses of a case.
const (
	Passed Status = iota + 1
	Failed
	Skipped
)

// String returns PASS, FAIL or SKIP.
func (s Status) String() string {
	switch s {
	case Passed:
		return "PASS"
	case Failed:
		return "FAIL"
	case Skipped:
		return "SKIP"
	}
	return "Status(?)"
}

// Outcome reports how one case went.
type Outcome struct {
	Case   string
	Op     backend.Op
	Status Status
	// Reason says why a case failed (every failed check, one per line) or
	// was skipped.
	Reason string
	// Measures lists the numeric checks that passed.
	Measures []Measure
	// Notes holds what the case logged with Env.Logf.
	Notes []string
}

// Measure is one passing comparison of an output with its reference.
type Measure struct {
	What      string  // the output, e.g. "dx"
	Key       string  // its entry in the threshold table
	Metric    string  // "nmse", or "sse" when the reference is all zeros
	Value     float64 // the error
	Threshold float64 // the limit it passed
}

// String returns "what metric value (limit threshold)".
func (m Measure) String() string {
	return fmt.Sprintf("%s %s %.2g (limit %.2g)", m.What, m.Metric, m.Value, m.Threshold)
}

// String returns the status and case name, then the reason or measures.
func (o Outcome) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", o.Status, o.Case)
	switch o.Status {
	case Passed:
		var parts []string
		for _, m := range o.Measures {
			parts = append(parts, m.String())
		}
		parts = append(parts, o.Notes...)
		if len(parts) > 0 {
			fmt.Fprintf(&b, ": %s", strings.Join(parts, "; "))
		}
	default:
		for i, line := range strings.Split(o.Reason, "\n") {
			if i == 0 {
				fmt.Fprintf(&b, ": %s", line)
			} else {
				fmt.Fprintf(&b, "\n    %s", line)
			}
		}
	}
	return b.String()
}

// caseSeed derives a case's seed from the run's seed and its name.
func caseSeed(seed int64, name string) int64 {
	if seed == 0 {
		seed = DefaultSeed
	}
	h := fnv.New64a()
	io.WriteString(h, name)
	return seed ^ int64(h.Sum64()&(1<<62-1))
}

// RunCase runs one case against b with inputs drawn from seed (0: the
// default seed). A panic in the backend or the case is reported as a
// failure. Afterwards b.Sync must return nil, and every tensor the case
// allocated is freed.
func RunCase(b backend.Backend, c Case, seed int64) (out Outcome) {
	out = Outcome{Case: c.Name, Op: c.Op}
	for _, op := range c.Ops() {
		if !b.Supports(op) {
			out.Status = Skipped
			out.Reason = fmt.Sprintf("backend %s does not support op %s", b.Name(), op)
			return out
		}
	}
	e := &Env{B: b, Rand: rand.New(rand.NewSource(caseSeed(seed, c.Name))), c: c}
	e.protect(func() { c.Run(e) })
	e.protect(func() {
		if err := b.Sync(); err != nil {
			e.Errorf("Sync after the case returned %v, want nil", err)
		}
	})
	e.protect(e.verifyInputs)
	e.protect(e.freeAll)
	out.Measures = e.measures
	out.Notes = e.notes
	if len(e.failures) > 0 {
		out.Status = Failed
		out.Reason = strings.Join(e.failures, "\n")
	} else {
		out.Status = Passed
	}
	return out
}

// protect runs f, turning a panic other than Fatalf's into a failure.
func (e *Env) protect(f func()) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(abort); !ok {
				e.Errorf("panic: %v\n%s", r, firstFrames(debug.Stack(), 12))
			}
		}
	}()
	f()
}

// firstFrames keeps the first n lines of a stack trace.
func firstFrames(stack []byte, n int) string {
	lines := strings.Split(string(stack), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// Select returns the registered cases whose names contain filter (all of
// them when filter is empty).
func Select(filter string) []Case {
	var cs []Case
	for _, c := range Cases() {
		if strings.Contains(c.Name, filter) {
			cs = append(cs, c)
		}
	}
	return cs
}

// Run checks b and writes one line per failed or skipped case (every case
// when opts.Verbose) to w, followed by a per-op tally of failures when
// there are any. It does not print the summary line: the caller prints
// Summary.String() last. It returns an error when no case matches
// opts.Filter or writing to w fails.
func Run(b backend.Backend, w io.Writer, opts Options) (Summary, error) {
	if b == nil {
		return Summary{}, errors.New("conformance: nil backend")
	}
	cases := Select(opts.Filter)
	if len(cases) == 0 {
		return Summary{}, fmt.Errorf("conformance: no case name contains %q", opts.Filter)
	}
	var (
		sum    Summary
		werr   error
		failed = map[backend.Op]int{}
	)
	printf := func(format string, args ...any) {
		if werr == nil {
			_, werr = fmt.Fprintf(w, format, args...)
		}
	}
	seed := opts.Seed
	if seed == 0 {
		seed = DefaultSeed
	}
	printf("conformance: backend %s (%s), %d cases, seed %d\n", b.Name(), b.Device(), len(cases), seed)
	for _, c := range cases {
		o := RunCase(b, c, seed)
		switch o.Status {
		case Passed:
			sum.Passed++
		case Failed:
			sum.Failed++
			failed[c.Op]++
		case Skipped:
			sum.Skipped++
		}
		if opts.Verbose || o.Status != Passed {
			printf("%s\n", o)
		}
	}
	if len(failed) > 0 {
		ops := make([]string, 0, len(failed))
		for op, n := range failed {
			name := string(op)
			if name == "" {
				name = "memory"
			}
			ops = append(ops, fmt.Sprintf("%s (%d)", name, n))
		}
		sort.Strings(ops)
		printf("failing ops: %s\n", strings.Join(ops, ", "))
	}
	return sum, werr
}
