package conformance_test

import (
	"fmt"
	"io"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/conformance"
)

// Run checks a backend and returns the tally; the report of failed and
// skipped cases goes to the writer (here discarded).
func ExampleRun() {
	b, err := backend.Open("cpu")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	sum, err := conformance.Run(b, io.Discard, conformance.Options{Filter: "fill/"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sum)
	// Output: 5 passed, 0 failed, 0 skipped
}

// A case checks one op on one configuration: the Env gives it random
// inputs, guarded outputs and the NMSE check against a float64 reference.
// A file of this package adds it to the suite with Register in an init
// function; RunCase runs one case on its own.
func ExampleCase() {
	c := conformance.Case{
		Name: "example/scale_by_two",
		Op:   backend.OpScale,
		Run: func(e *conformance.Env) {
			x := e.Uniform(10*7, -1, 1)
			src := e.Input(x, 10, 7)
			dst := e.Output(10, 7) // poisoned with NaN, between guards
			e.B.Scale(dst.T, src, 2)
			ref := make([]float64, len(x))
			for i, v := range x {
				ref[i] = 2 * float64(v)
			}
			e.Check(dst, ref) // the threshold of OpScale from the table
		},
	}
	b, err := backend.Open("cpu")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	fmt.Println(conformance.RunCase(b, c, 0).Status)
	// Output: PASS
}
