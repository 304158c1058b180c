//go:build (!amd64 && !arm64) || noasm

package vec

import "testing"

// TestOnlyGo checks that builds without assembly (-tags noasm, or an
// architecture without kernels) run the Go set alone.
func TestOnlyGo(t *testing.T) {
	if all := All(); len(all) != 1 || all[0] != Go || Best() != Go {
		t.Fatalf("All() has %d sets, Best() = %s; want the Go set alone", len(all), Best().Name)
	}
}
