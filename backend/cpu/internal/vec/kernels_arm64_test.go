//go:build !noasm

package vec

import "testing"

// TestARM64Sets checks that an arm64 build runs the NEON set by default
// (NEON is baseline on arm64, so no CPU feature decides), next to the Go
// one, and that the set has no streaming twin but itself.
func TestARM64Sets(t *testing.T) {
	all := All()
	if len(all) != 2 || all[0] != Go || all[1].Name != "neon" {
		var names []string
		for _, k := range all {
			names = append(names, k.Name)
		}
		t.Fatalf("All() = %v, want [go neon]", names)
	}
	if Best() != all[1] {
		t.Errorf("Best() = %s, want neon", Best().Name)
	}
	if k := Best(); k.Streaming() != k {
		t.Error("NEON's Streaming() is another set; NEON has no streaming stores")
	}
}
