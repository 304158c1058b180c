package gradcheck_test

import (
	"testing"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph/gradcheck"
	"github.com/sora-go/sora/internal/testbackend"
)

func openCPU(t *testing.T) backend.Backend { return testbackend.Open(t, "cpu") }

// checkAll checks each case as a subtest, logging the report of those that
// pass.
func checkAll(t *testing.T, cases []gradcheck.Case) {
	b := openCPU(t)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			r, err := gradcheck.Check(b, c, gradcheck.Options{Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Passed() {
				t.Error(r)
			} else {
				t.Log(r)
			}
		})
	}
}

func TestOpCases(t *testing.T) { checkAll(t, gradcheck.OpCases()) }

func TestGraphCases(t *testing.T) { checkAll(t, gradcheck.GraphCases()) }
