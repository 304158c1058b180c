package gradcheck_test

import (
	"testing"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph/gradcheck"
)

func openCPU(t *testing.T) backend.Backend {
	t.Helper()
	b, err := backend.Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestOpCases(t *testing.T) {
	b := openCPU(t)
	for _, c := range gradcheck.OpCases() {
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

func TestGraphCases(t *testing.T) {
	b := openCPU(t)
	for _, c := range gradcheck.GraphCases() {
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
