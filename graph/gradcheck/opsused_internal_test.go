package gradcheck

import (
	"slices"
	"testing"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/testbackend"
)

// OpsUsed runs a case on a backend that computes nothing; the ops it finds
// must be exactly those that checking the case on the CPU backend calls.
func TestOpsUsedMatchesARealCheck(t *testing.T) {
	t.Setenv(graph.AttentionEnv, "") // the fused case must run fused
	cpu := testbackend.Open(t, "cpu")
	for _, c := range append(GraphCases(), OpCases()...) {
		dry := OpsUsed(c)
		rec := &recorder{used: map[backend.Op]bool{}, inner: cpu}
		r, err := Check(rec, c, Options{Seed: 1})
		if err != nil || !r.Passed() {
			t.Fatalf("%s: %v %v", c.Name, r, err)
		}
		var real []backend.Op
		for op := range rec.used {
			real = append(real, op)
		}
		slices.Sort(real)
		if !slices.Equal(dry, real) {
			t.Errorf("%s: OpsUsed %v, a real check calls %v", c.Name, dry, real)
		}
		if c.Op == "" || !slices.Contains(dry, c.Op) {
			t.Errorf("%s: focus op %q is not among the ops it uses %v", c.Name, c.Op, dry)
		}
	}
}
