// Package testbackend opens backends for tests. It imports no concrete
// backend: a test that opens "cpu" blank-imports backend/cpu itself, so
// that the import direction of the packages under test stays as it is.
package testbackend

import (
	"testing"

	"github.com/sora-go/sora/backend"
)

// Open opens the registered backend name, closing it when the test ends;
// it stops the test when the backend cannot be opened.
func Open(tb testing.TB, name string) backend.Backend {
	tb.Helper()
	b, err := backend.Open(name)
	if err != nil {
		tb.Fatalf("opening backend %q: %v", name, err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}
