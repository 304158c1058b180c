package train

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestPruneCheckpointsNumeric checks that pruning keeps the newest
// checkpoints by step number, past the six digits of step-NNNNNN (where
// string order puts step-1000000 before step-999999), never removes the
// latest, and leaves folders that are not step-N alone.
func TestPruneCheckpointsNumeric(t *testing.T) {
	cases := []struct {
		name         string
		dirs         []string
		latest       string
		keep         int
		wantRemained []string
	}{
		{"past six digits", []string{"step-999998", "step-999999", "step-1000000"}, "step-1000000", 2,
			[]string{"step-1000000", "step-999999"}},
		{"seven digits only", []string{"step-1000000", "step-1000001", "step-999999", "step-1200000"}, "step-1200000", 1,
			[]string{"step-1200000"}},
		{"latest kept though older", []string{"step-000003", "step-000005", "step-000007"}, "step-000003", 1,
			[]string{"step-000003", "step-000007"}},
		{"not ours", []string{"step-000001", "step-000002", "step-x", "step-", "steps-000001"}, "step-000002", 1,
			[]string{"step-", "step-000002", "step-x", "steps-000001"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for _, d := range c.dirs {
				if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			pruneCheckpoints(root, c.latest, c.keep)
			ents, err := os.ReadDir(root)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range ents {
				got = append(got, e.Name())
			}
			want := slices.Sorted(slices.Values(c.wantRemained))
			if !slices.Equal(got, want) {
				t.Errorf("left %v; want %v", got, want)
			}
		})
	}
}
